"""DVAE++ with overlapping logistic smoothing (Vahdat et al., 2018, "DVAE++", App. B; §4 Eq. 4/5).

The paper (DVAE++ App. B): r(ζ|z) = Logistic(mean z, scale 1/β) on ℝ, mixture CDF
F(ζ) = (1−q) σ(βζ) + q σ(β(ζ − 1)), posterior logits g + log r(ζ|1) − log r(ζ|0); no closed-form
inverse CDF.  Bounds: the joint (Eq. 4) and marginal (Eq. 5) ELBOs of §4.  DVAE++'s experiments use
the exponential smoothing, so no β is published for this one.

The reference code: not checked against released code.

This file: ζ is drawn with its implicit-reparameterisation gradient ∂ζ/∂g (``estimators/smoothing.py``;
∂ζ/∂q = [R(ζ|0) − R(ζ|1)] / [q r(ζ|1) + (1−q) r(ζ|0)], R the CDF of r, attached through a
straight-through surrogate).  The decoder and the next layers see ζ ∈ ℝ (not clipped to [0, 1]).
Joint (Eq. 4, default) or marginal (Eq. 5) bound and its IWAE form for K > 1 exactly as in
``overlap_exp.py`` (option ``elbo``).  β is annealed linearly from ``beta_start`` to ``beta_end``;
both default to the exponential's 12.  Biased for the discrete objective.  K ≥ 1.
"""
from . import smoothing as smoothings
from .overlap_exp import SmoothedBound


class OverlapLogistic(SmoothedBound):
    display_name = "overlapping logistic"
    smoothing = smoothings.OverlapLogistic()
    reference_beta = 12.0
    default_elbo = "joint"
