"""Categorical DisARM: coupled (antithetic stick-breaking) gradient estimators (Dong, Mnih & Tucker, 2021).

The paper: Dong et al., "Coupled Gradient Estimators for Discrete Latent Variables", NeurIPS 2021 (arXiv
2106.08056; only its abstract could be read here: Eq. numbers not verified, and the formulas below come from
the authors' code and the derivations stated here).  A categorical z_d ∈ {1..C} is built by stick breaking
from C − 1 binaries, b_i ~ Bern(σ_i), σ_i = q_d(i) / Σ_{j≥i} q_d(j), z_d = the first i with b_i = 1 (C when
none).  The antithetic coupling uses u for z_d and 1 − u for z̃_d (every bit), so z_d and z̃_d are each
distributed as q_d and are negatively correlated.  Two estimators are built on this coupling:

* ``iw`` (the default: ``--importance_weight`` in the authors' README command).  For any coupling p(z, z̃)
  of q with itself, ∇E_q[f] = E_{q(z)q(z̃)}[½(f(z) − f(z̃))(∇log q(z) − ∇log q(z̃))] (E∇log q = 0), and importance
  sampling it from p gives, per variable d (its pair independent of the other variables' pairs),
      ĝ_d = ½ w_d (f(z) − f(z̃)) (∇log q_d(z_d) − ∇log q_d(z̃_d)),   w_d = q_d(z_d) q_d(z̃_d) / p_d(z_d, z̃_d),
  which is unbiased where p_d covers every pair z_d ≠ z̃_d (the diagonal terms vanish).  With m = min(z_d,
  z̃_d), w_d = Π_{i<m} (1 − σ_i)²/(1 − 2σ_i) · (1 − σ_m).  The coverage needs σ_i ≤ ½ for all i, which holds
  when the categories are ordered by ascending probability (σ_i ≤ 1/(C − i + 1)); the code's
  ``--logits_order=ascending``.
* ``sb``: DisARM on the binary reparameterisation, for the stick-breaking logits λ_i = logit σ_i: bits
  reached by both draws (i ≤ min(z_d, z̃_d)) get DisARM's ½(f(z) − f(z̃))·1[b_i ≠ b̃_i]·(−1)^{b̃_i}·σ(|λ_i|);
  bits reached by one draw only get that draw's REINFORCE term ½(f_own − f_other)(b_i − σ_i), the other
  draw's f (which does not depend on bit i) as its baseline; gradients reach φ through λ(φ).  Unbiased
  whatever the order (it is ½ of the two draws' REINFORCE estimators, Rao-Blackwellised on the shared bits).

The reference code (google-research/google-research ``disarm/categorical/networks.py``,
``CategoricalVAE.get_layer_grad_estimation`` with ``grad_type='disarm'``, ``get_importance_weight_vector``,
``get_stick_breaking_samples``, ``convert_softmax_logits_to_stickbreaking``): read to learn the estimators
above; its tree-structured variant (``tree_structure``) is not implemented here.

This file: f(y) = log p_θ(x, y) − log q_φ(y|x) at one-hot codes (``estimators/onehot.py``); K particles are
K independent antithetic pairs (2K evaluations of f, as ``disarm`` on Bernoulli latents); the φ-estimate is
the mean over pairs; θ gets the mean over the 2K draws of ∇_θ log p_θ(x, y); the objective is the mean of the
2K values of f (the ELBO: ``guide_target = generative_target = "elbo"``).  Categories are sorted by
ascending guide probability in both variants (ties are harmless: σ_i = ½ only at a pair that cannot be passed
by both draws).  Deviation: the direct term E[∇_φ f] = −E[∇_φ log q] = 0 is dropped (zero mean).  Unbiased.
The arithmetic (stick breaking, the pair from given noise, weights, scores) is
``estimators/functional/coupled.py``'s, shared with ``estibench.grad``.
"""
import torch
import torch.nn.functional as F

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .functional.coupled import CATEGORICAL_DISARM_VARIANTS as VARIANTS
from .functional.coupled import stick_breaking_log_pair_weight as log_pair_weight  # noqa: F401 (re-exported)
from .functional.coupled import (antithetic_stick_breaking, categorical_disarm_iw_score, categorical_disarm_sb_score,
                                 stick_breaking_categories, stick_breaking_logits)
from .onehot import NEEDS, ONEHOT_LATENTS, elbo_terms, log_probs


def antithetic_pair(lam: torch.Tensor, num_particles: int):
    """K antithetic stick-breaking pairs from the (detached) logits ``[R, B, D, C − 1]``: the bits b, b̃
    ``[K, R, B, D, C − 1]`` and the sorted category indices z, z̃ ``[K, R, B, D]`` (first bit set; C − 1 if none);
    :func:`estimators.functional.coupled.antithetic_stick_breaking` of uniforms drawn here."""
    u = torch.rand((num_particles, *lam.shape), dtype=lam.dtype, device=lam.device)
    return antithetic_stick_breaking(u, lam)


class CategoricalDisarm(Estimator):
    display_name = "DisARM (categorical)"
    latent_types = ONEHOT_LATENTS
    needs = NEEDS
    guide_target = "elbo"
    generative_target = "elbo"
    variants = VARIANTS
    cost_hint = 2.0

    def __init__(self, variant: str = "iw"):
        super().__init__()
        if variant not in VARIANTS:
            raise IncompatibleError(f"categorical_disarm: unknown variant {variant!r}; choose {' or '.join(VARIANTS)}")
        self.variant = variant

    def surrogate(self, model, x, num_particles):
        K = num_particles
        ell = log_probs(model, x)                                         # [R, B, D, C]
        C = ell.shape[-1]
        order = torch.argsort(ell.detach(), -1)                           # ascending probability
        lam = stick_breaking_logits(ell.gather(-1, order))               # [R, B, D, C − 1], differentiable
        lam0 = lam.detach()
        b, bt, z, zt = antithetic_pair(lam0, K)
        cats = stick_breaking_categories(order, z, zt)
        y = F.one_hot(cats, C).to(ell.dtype)                              # [2, K, R, B, D, C]
        log_p, lq = elbo_terms(model, x, ell, y)                          # [2, K, R, B]
        f = (log_p - lq).detach()
        if self.variant == "iw":
            lq_d = (y * ell).sum(-1)                                      # log q_d, [2, K, R, B, D]
            score = categorical_disarm_iw_score(f[0], f[1], lam0, z, zt, lq_d[0], lq_d[1])
        else:
            score = categorical_disarm_sb_score(f[0], f[1], lam, b, bt, z, zt)
        per_point = log_p.mean((0, 1)) + score
        return Estimate(batch_loss(per_point), f.mean((0, 1)).mean(-1))
