"""The estimators' arithmetic, written once as functions of samples, scores and objective values (the pattern of
DeepMind's ``mc_gradients``): no model, no distribution object, no state.  The registered estimators (the files of
this folder, which see a model through its contract) and the functional API :func:`estibench.grad`
(:mod:`estimators.grad`, which sees a ``torch.distributions`` object and a function f) both call these functions,
so an estimator's formula lives in one place.  Each function's docstring names the estimator and the paper's
equation; the estimator's own file states the paper, the reference code and the deviations.

Conventions: a *surrogate* is a tensor whose gradient is the estimate of ∇ E[f] (to maximise; a training loss is its
negative); particles lead (dimension 0, K); f values are per particle and item; logits ``a`` of Bernoulli latents
have one trailing bit dimension D that f values do not have.  Nothing here draws random numbers but from the noise
it is given (``u``, ``eps``), so a caller controls and shares the draws.
"""
from __future__ import annotations

import torch


def score_function(f: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """REINFORCE (Williams, 1992; RWS, Le et al., Eq. 2 for the IWAE bound): ``f.detach() · log q + f``.  Its gradient
    is f ∇ log q (the score term) plus f's own gradient at the fixed sample: an unbiased estimate of ∇ E_q[f]."""
    return f.detach() * log_q + f


def leave_one_out(f: torch.Tensor) -> torch.Tensor:
    """(1/(K−1)) Σ_{j≠k} f_j for every k, along dim 0 (RLOO's baseline)."""
    K = f.shape[0]
    return (f.sum(0, keepdim=True) - f) / (K - 1)


def rloo(f: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """RLOO (Kool, van Hoof & Welling, 2019): mean_k [(f_k − mean_{j≠k} f_j) ∇ log q(z_k)] plus f's own gradient,
    as the surrogate mean_k [(f_k − loo_k).detach() · log q_k + f_k]; K ≥ 2, unbiased.  ``f``, ``log_q``:
    ``[K, ...]`` → ``[...]``."""
    signal = (f - leave_one_out(f)).detach()
    return (signal * log_q + f).mean(0)


def relax(f: torch.Tensor, log_q: torch.Tensor, c_relaxed: torch.Tensor, c_conditional: torch.Tensor,
          c_conditional_own: torch.Tensor) -> torch.Tensor:
    """RELAX (Grathwohl et al., 2018, §3.3; RWS §2.2's display): the surrogate (f − c(z̃))·log q(b) + c(z) − c(z̃) + f
    with c(z) at the relaxed sample z, c(z̃) at the conditional one z̃ ~ z | b (both reparameterised), and in the
    coefficient ``c_conditional_own`` = c at a detached z̃ (its gradient reaches c's own parameters only, for the
    variance objective).  Unbiased for every c that does not depend on f's or q's parameters."""
    return (f.detach() - c_conditional_own) * log_q + c_relaxed - c_conditional + f


def logit(u: torch.Tensor) -> torch.Tensor:
    """log u − log(1 − u): standard logistic noise from uniform u (−∞ at u = 0, which ``torch.rand`` can return;
    then 1[ε < a] = 1, no NaN)."""
    return u.log() - torch.log1p(-u)


def arm_logit_gradient(u: torch.Tensor, f_base: torch.Tensor, f_anti: torch.Tensor) -> torch.Tensor:
    """ARM (Yin & Zhou, 2019, §2, as restated by Dong et al., 2020): ĝ_a = (f(b̃) − f(b)) (u − ½) per bit, with
    b = 1[u < σ(a)], b̃ = 1[1 − u < σ(a)].  ``u`` ``[..., D]``; ``f_*`` broadcastable to ``u.shape[:-1]``."""
    return (f_anti - f_base)[..., None] * (u - 0.5)


def disarm_logit_gradient(a: torch.Tensor, b: torch.Tensor, b_anti: torch.Tensor, f_base: torch.Tensor,
                          f_anti: torch.Tensor) -> torch.Tensor:
    """DisARM (Dong, Mnih & Tucker, 2020, Eq. 5): ĝ_a = ½ (f(b) − f(b̃)) (−1)^{b̃} 1[b ≠ b̃] σ(|a|) per bit, ARM with
    the augmentation integrated out.  ``a``, ``b``, ``b_anti`` ``[..., D]``; ``f_*`` broadcastable to
    ``a.shape[:-1]``."""
    differ = (b != b_anti).to(a.dtype)
    sign = 1.0 - 2.0 * b_anti
    return 0.5 * (f_base - f_anti)[..., None] * sign * differ * torch.sigmoid(a.abs())


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
