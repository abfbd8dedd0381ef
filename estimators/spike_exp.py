"""DVAE with spike-and-exponential smoothing (Rolfe, 2016, "Discrete variational autoencoders").

The paper: the smoothing r(ζ|0) = δ(ζ), r(ζ|1) = β e^{βζ}/(e^β − 1) on [0, 1] (Rolfe), as summarised
in Vahdat et al., "DVAE++" (2018), §2 (Eq. 2, the mixture q(ζ|x) = Σ_z q(z|x) r(ζ|z)).  The bound is
the joint one of DVAE++ §4.1 (Eq. 4), with its KL terms in closed form.  DVAE++ §7.1 anneals β
linearly during training.

The reference code: the DVAE# code uses β = 5 for spike-and-exponential smoothing (MNIST, 200
latents); not otherwise checked against released code.

This file: ζ = F⁻¹(ρ) in closed form (0 for ρ ≤ 1 − q), so ζ is continuous in the uniform ρ and the
decoder term is differentiated pathwise.  The joint bound with the hierarchy of ``overlap_exp.py``
(our prior top-down, guide bottom-up):
    K = 1:  log p(x|ζ₀) + Σ_l [c(m_l; a_l) − c(μ_l; g_l)],  m_l = μ_l (top layer), z_l (below),
one layer: log p(x|ζ₀) − KL(Bern(μ₀) ‖ Bern(σ(a₀))) in closed form, exactly Rolfe's / Eq. 4;
    K > 1:  log (1/K) Σ_k w_k,  log w_k = log p(x|ζ₀ₖ) + Σ_l [log p(z_lₖ | ζ_{l+1,k}) − log q(z_lₖ | ζ_{l−1,k}, x)].
Here z = 1[ζ > 0] is read off ζ: q(z|ζ) is deterministic, so joint = marginal (the marginal density
ratio w.r.t. δ₀ + Lebesgue equals the joint one); ``elbo`` is accepted for symmetry and both values
give this bound.

Gradient (deviation from a plain pathwise derivative, stated): where a hard z multiplies a
coefficient that depends on later draws (p(z₀|ζ₁) in two layers; every weight when K > 1) the
bound jumps when ρ crosses the spike's edge b = 1 − q, and the pathwise derivative misses that.
The missing boundary term is added exactly, by Rolfe's observation that the edge ζ = 0 is the
whole spike region: for each particle k, layer l and unit i,
    ∂/∂φ ⊃ (∂q/∂φ) E[J | ζ = 0] = E[(1 − z) J q] ∂g/∂φ,
J the jump of the bound when z_{k,l,i} flips 0 → 1 (the unit's coefficient for K = 1;
log(1 − w̃_k + w̃_k e^{a − g}) for K > 1), added as a zero-valued surrogate.  So the φ-gradient is
unbiased for the smoothed bound, whose bias against the discrete gradient vanishes as β → ∞ (tested).

β is annealed linearly from ``beta_start`` to ``beta_end`` (as DVAE++ §7.1); both default to 5, the
DVAE# code's value.  Biased for the discrete objective.  K ≥ 1.
"""

from . import smoothing as smoothings
from .overlap_exp import SmoothedBound


class SpikeExp(SmoothedBound):
    display_name = "spike-and-exp"
    smoothing = smoothings.SpikeExp()
    reference_beta = 5.0
    default_elbo = "joint"
    atom = True

    def posterior(self, logits, draw):
        return (draw > 0).to(logits.dtype)
