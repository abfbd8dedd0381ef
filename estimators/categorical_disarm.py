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
"""
import torch
import torch.nn.functional as F

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .binary import logit
from .onehot import NEEDS, ONEHOT_LATENTS, elbo_terms, log_probs

VARIANTS = ("iw", "sb")


def stick_breaking_logits(sorted_ell: torch.Tensor) -> torch.Tensor:
    """λ_i = log q(i) − log Σ_{j>i} q(j) for i < C, ``[*, C − 1]`` (the logits of σ_i = q(i)/Σ_{j≥i} q(j))."""
    tail = torch.logcumsumexp(sorted_ell.flip(-1), -1).flip(-1)       # log Σ_{j≥i} q(j)
    return sorted_ell[..., :-1] - tail[..., 1:]


def antithetic_pair(lam: torch.Tensor, num_particles: int):
    """K antithetic stick-breaking pairs from the (detached) logits ``[R, B, D, C − 1]``: the bits b, b̃
    ``[K, R, B, D, C − 1]`` and the sorted category indices z, z̃ ``[K, R, B, D]`` (first bit set; C − 1 if none)."""
    with torch.no_grad():
        u = torch.rand((num_particles, *lam.shape), dtype=lam.dtype, device=lam.device)
        eps = logit(u)
        b = (eps < lam).to(lam.dtype)
        bt = (-eps < lam).to(lam.dtype)
        ones = torch.ones_like(b[..., :1])
        z = torch.cat([b, ones], -1).argmax(-1)                    # argmax returns the first maximum
        zt = torch.cat([bt, ones], -1).argmax(-1)
    return b, bt, z, zt


def log_pair_weight(lam: torch.Tensor, z: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """log q(z)q(z̃)/p(z, z̃) under the antithetic stick-breaking coupling (σ_i ≤ ½), ``[K, R, B, D]``:
    Σ_{i<m} [2 log(1 − σ_i) − log(1 − 2σ_i)] + log(1 − σ_m), m = min(z, z̃) (clamped to C − 2: at m = C − 1 the
    pair agrees and the weight is not used)."""
    tiny = torch.finfo(lam.dtype).tiny
    log_1m = -F.softplus(lam)                                         # log(1 − σ)
    log_1m2 = torch.log(torch.tanh(-0.5 * lam).clamp(min=tiny))       # log(1 − 2σ) = log tanh(−λ/2)
    per_bit = 2.0 * log_1m - log_1m2
    before = torch.cumsum(per_bit, -1) - per_bit                      # Σ_{j<i}
    m = torch.minimum(z, zt).clamp(max=lam.shape[-1] - 1)[..., None]
    shape = (*z.shape, lam.shape[-1])                                  # the particle dimension in front
    return (before.expand(shape).gather(-1, m) + log_1m.expand(shape).gather(-1, m)).squeeze(-1)


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
        order_k = order.expand(K, *order.shape)
        cats = torch.stack([order_k.gather(-1, z[..., None]), order_k.gather(-1, zt[..., None])]).squeeze(-1)
        y = F.one_hot(cats, C).to(ell.dtype)                              # [2, K, R, B, D, C]
        log_p, lq = elbo_terms(model, x, ell, y)                          # [2, K, R, B]
        f = (log_p - lq).detach()
        diff = f[0] - f[1]                                                # [K, R, B]
        if self.variant == "iw":
            w = torch.exp(log_pair_weight(lam0, z, zt))                   # [K, R, B, D]
            signal = torch.where(z != zt, 0.5 * w * diff[..., None], torch.zeros_like(w))
            lq_d = (y * ell).sum(-1)                                      # log q_d, [2, K, R, B, D]
            score = (signal * (lq_d[0] - lq_d[1])).sum(-1).mean(0)
        else:
            bits = torch.arange(C - 1, device=z.device)
            reach, reach_t = bits <= z[..., None], bits <= zt[..., None]  # [K, R, B, D, C − 1]
            shared, only, only_t = reach & reach_t, reach & ~reach_t, reach_t & ~reach
            sig = torch.sigmoid(lam0)
            half = 0.5 * diff[..., None, None]
            signal = (shared * half * (b != bt) * (1.0 - 2.0 * bt) * torch.sigmoid(lam0.abs())
                      + only * half * (b - sig) - only_t * half * (bt - sig))
            score = (signal * lam).sum((-1, -2)).mean(0)
        per_point = log_p.mean((0, 1)) + score
        return Estimate(batch_loss(per_point), f.mean((0, 1)).mean(-1))
