"""Relaxations, straight-through and RELAX's control-variate surrogate; ``logit``, the logistic noise they share."""
from __future__ import annotations

import torch


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
