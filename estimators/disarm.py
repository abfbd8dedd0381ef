"""DisARM: ARM with the augmentation integrated out (Dong, Mnih & Tucker, 2020).

The paper: Dong et al., "DisARM: An Antithetic Gradient Estimator for Binary Latent Variables", NeurIPS
2020, Eq. 5 and its multivariate form: with the antithetic pair b = 1[u < σ(a)], b̃ = 1[1 − u < σ(a)],
    ĝ_a = ½ (f(b) − f(b̃)) · (−1)^{b̃} · 1[b ≠ b̃] · σ(|a|)      (per bit),
which is E[ĝ_ARM | b, b̃] (the conditional mean of u − ½ given the pair is ∓σ(|a|)/2 where the pair
differs and 0 where it agrees), so its variance is at most ARM's at the same point (tested).  For
K > 1 the paper has its own multi-sample estimator ("local DisARM", with leave-one-out signals per
particle).

The reference code: not checked against released code.

This file: the per-bit ĝ_a above.  Everything else — f = L̂ = log (1/K) Σ_k w_k, the direct term, θ's
wake-θ gradient, K > 1 as one factorial vector of K·D bits (each particle's own antithetic pair, 2
evaluations), several layers with shared upstream samples and common downstream uniforms (L + 1
evaluations) — is ARM's, see ``estimators/arm.py``.  Deviation: the paper's "local DisARM" for K > 1
is not implemented; the joint K·D-bit form used here is unbiased but does not have its per-particle
credit assignment.  Unbiased.
"""
from .arm import Arm
from .functional import disarm_logit_gradient


class DisArm(Arm):
    display_name = "DisARM"

    def pair_weight(self, u, a, b, b_anti, f_base, f_anti):
        return disarm_logit_gradient(a, b, b_anti, f_base[None], f_anti[None])
