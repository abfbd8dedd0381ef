"""The unordered set estimator with its built-in baseline (Kool, van Hoof & Welling, 2020).

The paper: Kool et al., "Estimating Gradients for Discrete Random Variables by Sampling without Replacement",
ICLR 2020 (Eq. numbers not verified).  S is an unordered set of K distinct states drawn without
replacement from q (Gumbel-top-k; for a product of D categoricals, stochastic beam search over the product
space, Kool et al. 2019), P(S) its probability and P^{D∖s}(S∖s) that of S∖s drawn from q restricted to D∖s.
With the leave-one-out ratio R(S, s) = P^{D∖s}(S∖s) / P(S):
    e^US(S)   = Σ_{s∈S} q(s) R(S, s) f(s)                                  unbiased for E_q[f],
    e^USBL(S) = Σ_{s∈S} ∇q(s) R(S, s) [f(s) − Σ_{s'∈S} q(s') R^{D∖s}(S, s') f(s')]   for ∇ E_q[f],
R^{D∖s}(S, s') = P^{D∖{s,s'}}(S∖{s,s'}) / P^{D∖s}(S∖s) for s' ≠ s and 1 for s' = s: the baseline of s is
q(s) f(s) plus the unordered set estimate of Σ_{x≠s} q(x) f(x) from S∖s, whose mean given s is E_q[f]
whatever s, so it needs K ≥ 2 (with K = 1, S∖s is empty and the baseline would be biased).

The reference code (github wouterkool/estimating-gradients-without-replacement, ``vae/vae.py``
estimator ``rf_unord``, ``vae/lib/beam_search.py``, ``vae/lib/gumbel.py`` ``compute_log_R_O_nfac``, read to
learn the setting): the categorical VAE of 20 variables × 10 categories; the set drawn by stochastic beam
search; P(S) and the ratios computed by enumerating the orderings of S (K! terms), with the ratios set to 1
when S holds more than 1 − 1e-5 of the mass; the decoder trained with e^US of the ELBO.

This file: f(y) = log p_θ(x, y) − log q_φ(y|x) at one-hot codes (``estimators/onehot.py``), e^USBL for φ
(direct term E[∇_φ f] = −E[∇_φ log q] = 0 dropped), e^US of ∇_θ log p_θ(x, y) for θ, and e^US of f, the
unbiased estimate of the ELBO, as the objective.  The set: stochastic beam search (D levels, beam K, Gumbels
of every expansion conditioned on the parent's perturbed log-probability through the truncated-Gumbel
shift), one beam search for any D.  The ratios: instead of enumerating orderings, the integral form of the
Gumbel-top-k set probability (paper's appendix, not verified: it follows from exponential races),
    P(S) = ∫_0^1 Π_{s∈S} (1 − u^{a_s}) du,   a_s = q(s) / q(D∖S),
where restricting q to D∖s renormalises numerator and denominator alike, so P^{D∖s}(S∖s) and
P^{D∖{s,s'}}(S∖{s,s'}) are the same integral over S∖s and S∖{s,s'}; evaluated (float64, no gradient) by
the trapezoid rule in v = log(−log u) on a per-point grid of ``nodes`` nodes (error far below the Monte
Carlo noise; checked against enumerated orderings in tests/test_categorical_estimators.py).  q(D∖S) is a
log-sum-exp over the unselected categories for D = 1 and log(1 − Σ_{s∈S} q(s)) for D > 1 (S covering the
whole space gives a_s = ∞ and every ratio 1, the exact answer; for D > 1, float rounding of Σ_S q makes the
ratios 1 also when S holds all but about 1e-7 of the mass).  Deviation: no 1 − 1e-5 cut-off (the integral
is stable there).  K ≥ 2 and K ≤ C^D (K distinct states).  Unbiased.  The arithmetic (the ratios, q(D∖S) and
the surrogate) is ``estimators/functional/enumeration.py`` (:func:`log_set_ratios`, :func:`log_rest_mass`,
:func:`unordered_set`), shared with ``estibench.grad``; the beam search, the draw, stays here.
"""
import math

import torch
import torch.nn.functional as F

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .functional.enumeration import log1mexp, log_rest_mass, log_set_ratios, unordered_set
from .onehot import NEEDS, ONEHOT_LATENTS, elbo_terms, gumbel_like, log_probs


@torch.no_grad()
def stochastic_beam_search(ell: torch.Tensor, K: int) -> torch.Tensor:
    """K distinct states of q = Π_d Cat(exp ℓ_d) without replacement (Gumbel-top-k over the product space by
    stochastic beam search), as indices ``[K, R, B, D]`` in decreasing order of their perturbed log-probability.
    ℓ ``[R, B, D, C]`` normalised; needs K ≤ C^D.  The beam starts as the root plus K − 1 empty slots (log-prob
    −inf), so the first levels, with fewer than K prefixes, need no special case."""
    *lead, D, C = ell.shape
    phi = torch.full((*lead, K), -math.inf, dtype=ell.dtype, device=ell.device)
    phi[..., 0] = 0.0
    g = phi.clone()
    codes = torch.zeros((*lead, K, 0), dtype=torch.long, device=ell.device)
    for d in range(D):
        child = phi[..., :, None] + ell[..., d, None, :]                     # [*, K, C]
        raw = child + gumbel_like(child.shape, ell)
        top = raw.max(-1, keepdim=True).values
        # the children's Gumbels conditioned on their maximum being the parent's: T − log(1 + e^u)
        T = g[..., None]
        u = T - raw + log1mexp((raw - top).clamp(max=0.0))
        shifted = torch.where(torch.isfinite(child), T - F.softplus(u), torch.full_like(child, -math.inf))
        g, idx = shifted.flatten(-2).topk(K, dim=-1)
        parent, action = idx // C, idx % C
        phi = child.flatten(-2).gather(-1, idx)
        codes = torch.cat([codes.gather(-2, parent[..., None].expand(*parent.shape, d)), action[..., None]], -1)
    return codes.movedim(-2, 0)


class UnorderedSet(Estimator):
    display_name = "unordered set"
    latent_types = ONEHOT_LATENTS
    needs = NEEDS
    guide_target = "elbo"
    generative_target = "elbo"
    min_particles = 2

    def __init__(self, nodes: int = 256):
        super().__init__()
        if int(nodes) < 16:
            raise ValueError(f"unordered_set needs at least 16 quadrature nodes, got {nodes}")
        self.nodes = int(nodes)

    def check(self, model, num_particles):
        super().check(model, num_particles)
        D, C = model.categorical_shape
        if num_particles > C ** D:
            raise IncompatibleError(f"estimator {self.name!r} draws K = {num_particles} distinct states without "
                                    f"replacement, but {type(model).__name__} has only C^D = {C}^{D} = {C ** D}")

    def surrogate(self, model, x, num_particles):
        K = num_particles
        ell = log_probs(model, x)                                          # [R, B, D, C]
        codes = stochastic_beam_search(ell.detach(), K)                    # [K, R, B, D]
        y = F.one_hot(codes, ell.shape[-1]).to(ell.dtype)                  # [K, R, B, D, C]
        log_p, lq = elbo_terms(model, x, ell, y)                           # [K, R, B]
        f = (log_p - lq).detach()
        lq0 = lq.detach()
        log_r1, log_r2 = log_set_ratios(lq0, log_rest_mass(ell.detach(), codes, lq0), self.nodes)
        per_point, estimate = unordered_set(f, lq, log_r1, log_r2, own=log_p)   # e^USBL for φ, e^US for θ
        return Estimate(batch_loss(per_point), estimate.mean(-1))
