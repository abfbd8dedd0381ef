"""DVAE++ with overlapping logistic smoothing (Vahdat et al., 2018, "DVAE++", App. B; §4 Eq. 4/5).

r(ζ|z) = Logistic(mean z, scale 1/β) on ℝ, mixture CDF F(ζ) = (1−q) σ(βζ) + q σ(β(ζ − 1)), posterior
logits g + log r(ζ|1) − log r(ζ|0).  No closed-form inverse CDF: ζ is drawn with its
implicit-reparameterisation gradient ∂ζ/∂g (``estimators/smoothing.py``, REFERENCE §3).
The decoder and the next layers see ζ ∈ ℝ (not clipped to [0, 1]).  Joint (Eq. 4, default) or
marginal (Eq. 5) bound and its IWAE form for K > 1 exactly as in ``overlap_exp.py``.

β is annealed linearly from ``beta_start`` to ``beta_end``; no reference value is published for
this smoothing (DVAE++'s experiments use the exponential one), so both default to the
exponential's 12.  Biased for the discrete objective.  K ≥ 1.
"""
from . import smoothing as smoothings
from .overlap_exp import SmoothedBound


class OverlapLogistic(SmoothedBound):
    smoothing = smoothings.OverlapLogistic()
    reference_beta = 12.0
    default_elbo = "joint"
