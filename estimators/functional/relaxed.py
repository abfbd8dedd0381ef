"""Relaxations, straight-through and RELAX's control-variate surrogate; ``logit``, the logistic noise they share."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def logit(u: torch.Tensor) -> torch.Tensor:
    """log u − log(1 − u): standard logistic noise from uniform u (−∞ at u = 0, which ``torch.rand`` can return;
    then 1[ε < a] = 1, no NaN)."""
    return u.log() - torch.log1p(-u)


def relax(f: torch.Tensor, log_q: torch.Tensor, c_relaxed: torch.Tensor, c_conditional: torch.Tensor,
          c_conditional_own: torch.Tensor) -> torch.Tensor:
    """RELAX (Grathwohl et al., 2018, §3.3; RWS §2.2's display): the surrogate (f − c(z̃))·log q(b) + c(z) − c(z̃) + f
    with c(z) at the relaxed sample z, c(z̃) at the conditional one z̃ ~ z | b (both reparameterised), and in the
    coefficient ``c_conditional_own`` = c at a detached z̃ (its gradient reaches c's own parameters only, for the
    variance objective).  Unbiased for every c that does not depend on f's or q's parameters."""
    return (f.detach() - c_conditional_own) * log_q + c_relaxed - c_conditional + f


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """The straight-through value ``hard + (soft − soft.detach())``: forward the hard sample, backward ``soft``'s
    Jacobian (Bengio, Léonard & Courville, 2013, §4; the straight-through family's common step)."""
    return hard + (soft - soft.detach())


def straight_through_bernoulli(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Bernoulli straight-through, the "sigmoid-adjusted" variant (Bengio et al., 2013, §4): z = 1[logit u < a]
    forward, σ(a)'s derivative backward."""
    z = (logit(u) < a.detach()).to(a.dtype)
    return straight_through(z, torch.sigmoid(a))


def gumbel_straight_through_bernoulli(a: torch.Tensor, u: torch.Tensor, temperature) -> torch.Tensor:
    """Straight-through Gumbel-softmax for Bernoulli latents (Jang, Gu & Poole, 2017, §2.2; Maddison et al., 2017,
    binary Concrete): y = a + logit u, forward 1[y > 0], backward σ(y / τ)'s derivative."""
    y = a + logit(u)
    relaxed = torch.sigmoid(y / temperature)
    return straight_through((y.detach() > 0).to(a.dtype), relaxed)


def conditional_logit(logits: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """REBAR's conditional reparameterisation (Tucker et al., 2017, §3 and its appendix; the formulas of
    ``estimators/rebar.py``): logit ũ for ũ ~ u | b (u's cell for b at Bernoulli mean σ(logits)), from v ~ U(0,1),
    in log space."""
    log_t, log_1mt = F.logsigmoid(logits), F.logsigmoid(-logits)
    log_v, log_1mv = v.log(), torch.log1p(-v)
    one = b > 0.5
    log_u = torch.where(one, torch.logaddexp(log_1mt, log_t + log_v), log_v + log_1mt)
    log_1mu = torch.where(one, log_t + log_1mv, torch.logaddexp(log_t, log_1mt + log_1mv))
    return log_u - log_1mu


def tied_uniform(logits: torch.Tensor, b: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """REBAR's tied noise: the v for which the conditional uniform ũ(b, v) equals u (the REBAR code's ``_u_to_v``): v =
    (u − (1 − θ))/θ for b = 1, u/(1 − θ) for b = 0 (θ = σ(logits)), held fixed; ũ(b, v; φ) then has
    u's value and the conditional reparameterisation's φ-derivative.  Clamped to [ε, 1 − ε]."""
    eps = torch.finfo(u.dtype).eps
    theta = torch.sigmoid(logits)
    v = torch.where(b > 0.5, (u - (1 - theta)) / theta.clamp_min(eps), u / (1 - theta).clamp_min(eps))
    return v.clamp(eps, 1 - eps).detach()


def conditional_gumbel(log_probs: torch.Tensor, z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """g̃ ~ g | argmax g = z for g = log p + Gumbel, from *fresh* Exp(1) noise E' (= −log v, v ~ U(0,1))
    independent of the noise that produced z (REBAR App. C; RWS code ``gmm/util.py``):
        g̃_b = −log E'_b,   g̃_i = −log(E'_i / p_i + E'_b)  (i ≠ b = z),
    reparameterised in the log-probabilities given z.  ``log_probs`` ``[..., C]`` normalised,
    ``z`` ``[...]`` (broadcast against ``noise``'s leading dims), ``noise`` ``[..., C]``."""
    onehot = torch.nn.functional.one_hot(z, log_probs.shape[-1]).bool()
    top = noise.gather(-1, z.unsqueeze(-1))
    return -torch.where(onehot, top, top + noise * torch.exp(-log_probs)).log()
