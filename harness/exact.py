"""Exact ground truth by enumerating the latent states (or, for a model that declares
CLOSED_FORM_GAUSSIAN, from its closed forms: log p(x), the ELBO and the inclusive KL).

Everything here is computed in float64 on a copy of the model, for models whose
``latent.enumerable`` is true.  Shapes follow :mod:`models.latents`: x is ``[R, B, *obs]``,
results per data point are ``[R, B]``.

The K-particle IWAE bound E_{z_{1:K} ~ q}[log (1/K) Σ_k w_{z_k}] would need C^K terms by brute
force.  It is computed instead from Frullani's integral log s = ∫_0^∞ (e^{−t} − e^{−ts}) dt/t and
the closed-form Laplace transform of the sum of K i.i.d. weights,
    E[log Σ_k w_{z_k}] = ∫_0^∞ (e^{−t} − φ(t)^K) dt/t,   φ(t) = Σ_s q_s e^{−t w_s},
with t = e^u and the trapezoid rule in u.  The integrand is analytic in the strip |Im u| < π/2,
so the step h = 0.25 has a discretisation error of order e^{−π²/h} ≈ 1e−17; the range of u
is chosen per call so the truncated tails are below 1e−15.  The tests check it against brute
force over every K-tuple.  Gradients come from autograd through the quadrature.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Dict

import torch
import torch.utils.checkpoint

from estibench.models.protocols import CLOSED_FORM_GAUSSIAN, UNNORMALISED_PRIOR, capabilities

#: exact objectives per data point: name -> f(model, x, num_particles) -> [R, B]
OBJECTIVES: Dict[str, Callable] = {}

QUADRATURE_STEP = 0.25


def register_objective(name: str):
    def decorator(fn):
        OBJECTIVES[name] = fn
        return fn

    return decorator


def float64_copy(model):
    return copy.deepcopy(model).to(torch.float64)


def check_enumerable(model) -> None:
    if not getattr(model.latent, "enumerable", False):
        raise ValueError(f"{type(model).__name__} has {model.latent.kind} latents with "
                         f"{model.latent.num_states} states: exact results need an enumerable model")


def enumerate_joint(model, x: torch.Tensor):
    """(log p_θ(x, z_s), log q_φ(z_s | x)) for every state s, each ``[S, R, B]``."""
    check_enumerable(model)
    states = model.enumerate_latents()
    q = model.guide(x)
    batch = len(q.batch_shape)
    z = states.view(states.shape[0], *([1] * batch), *states.shape[1:])
    z = z.expand(states.shape[0], *q.batch_shape, *states.shape[1:])
    log_p = model.log_joint(x, z)
    if UNNORMALISED_PRIOR in capabilities(model):
        log_p = log_p - model.log_partition().unsqueeze(-1)  # [R] → [R, 1]: every data point
    return log_p, q.log_prob(z)


def closed_form(model) -> bool:
    """Whether the model gives its ground truth in closed form (CLOSED_FORM_GAUSSIAN) instead of by enumeration."""
    return CLOSED_FORM_GAUSSIAN in capabilities(model)


def log_marginal(model, x):
    """Exact log p_θ(x), ``[R, B]``."""
    if closed_form(model):
        return model.log_marginal_exact(x)
    log_p, _ = enumerate_joint(model, x)
    return torch.logsumexp(log_p, 0)


def log_posterior(model, x):
    """Exact log p_θ(z_s | x), ``[S, R, B]``."""
    log_p, _ = enumerate_joint(model, x)
    return log_p - torch.logsumexp(log_p, 0, keepdim=True)


def expected_log_sum(log_q: torch.Tensor, log_w: torch.Tensor, num_particles: int) -> torch.Tensor:
    """E[log Σ_{k=1}^K w_{z_k}], z_k ~ q i.i.d., over the state dimension 0 (see module doc)."""
    K = int(num_particles)
    if K == 1:
        return (log_q.exp() * torch.where(log_q > -math.inf, log_w, torch.zeros_like(log_w))).sum(0)
    support = log_q > -math.inf
    log_w = torch.where(support, log_w, torch.full_like(log_w, -math.inf))
    shift = log_w.max(0).values  # [...]
    rel = log_w - shift  # ≤ 0
    # the smallest relative weight that carries mass decides how far the integral reaches
    floor = torch.where(support & (log_q > math.log(1e-300) / K), rel, torch.zeros_like(rel)).min().item()
    u_min = -math.log(K + 1) - 36.0
    u_max = math.log(40.0) - max(floor, -1400.0)
    u = torch.arange(u_min, u_max + QUADRATURE_STEP, QUADRATURE_STEP, dtype=log_w.dtype, device=log_w.device)
    total = torch.zeros_like(shift)
    chunk = max(1, int(4e6 // max(1, log_w.numel())))
    # differentiated (the exact-gradient tables), each chunk of nodes is recomputed in the backward pass instead of
    # keeping its [chunk, S, R, B] intermediates for all chunks at once (the same arithmetic, bounded memory: the
    # sbn_tiny K = 5 cells peaked at 4.4 GiB before)
    recompute = torch.is_grad_enabled() and (log_q.requires_grad or rel.requires_grad)
    for start in range(0, u.numel(), chunk):
        uc = u[start:start + chunk].view(-1, *([1] * log_w.dim()))
        if recompute:
            part = torch.utils.checkpoint.checkpoint(_quadrature_chunk, uc, log_q, rel, K, use_reentrant=False)
        else:
            part = _quadrature_chunk(uc, log_q, rel, K)
        total = total + part * QUADRATURE_STEP
    return shift + total


def _quadrature_chunk(uc: torch.Tensor, log_q: torch.Tensor, rel: torch.Tensor, K: int) -> torch.Tensor:
    """The sum over the nodes ``uc`` of :func:`expected_log_sum`'s integrand."""
    # log φ(t) = logsumexp_s(log q_s − t w_s), with t w_s = exp(u + log w_s) (no overflow)
    log_phi = torch.logsumexp(log_q.unsqueeze(0) - torch.exp((uc + rel.unsqueeze(0)).clamp(max=700.0)), dim=1)
    integrand = torch.exp(-uc.squeeze(1).exp()) - torch.exp(K * log_phi)
    return integrand.sum(0)


@register_objective("iwae")
def iwae_bound(model, x, num_particles):
    """ELBO_IS^K (RWS Eq. 1) per data point, ``[R, B]``; K = 1 is the ELBO (closed form for a
    CLOSED_FORM_GAUSSIAN model, which has none for K > 1)."""
    if closed_form(model):
        if int(num_particles) != 1:
            raise ValueError(f"{type(model).__name__} has the ELBO in closed form but not ELBO_IS^K for K = "
                             f"{num_particles} > 1")
        return model.elbo_exact(x)
    log_p, log_q = enumerate_joint(model, x)
    return expected_log_sum(log_q, log_p - log_q, num_particles) - math.log(num_particles)


@register_objective("elbo")
def elbo(model, x, num_particles=None):
    """The ELBO (ELBO_IS^1) per data point whatever K, ``[R, B]``: the target of K-sample ELBO averages."""
    return iwae_bound(model, x, 1)


@register_objective("inclusive_kl")
def negative_inclusive_kl(model, x, num_particles=None):
    """−KL(p_θ(z|x) ‖ q_φ(z|x)) per data point (the wake-φ objective, RWS Eq. 4), ``[R, B]``."""
    if closed_form(model):
        return model.negative_inclusive_kl_exact(x)
    log_p, log_q = enumerate_joint(model, x)
    log_post = log_p - torch.logsumexp(log_p, 0, keepdim=True)
    post = log_post.exp()
    return (post * (log_q - log_post)).sum(0)


def exclusive_kl(model, x):
    """KL(q_φ(z|x) ‖ p_θ(z|x)) per data point, ``[R, B]``."""
    log_p, log_q = enumerate_joint(model, x)
    log_post = log_p - torch.logsumexp(log_p, 0, keepdim=True)
    return (log_q.exp() * (log_q - log_post)).sum(0)


def inclusive_kl(model, x):
    """KL(p_θ(z|x) ‖ q_φ(z|x)) per data point, ``[R, B]``."""
    return -negative_inclusive_kl(model, x)


def point_chunk(model, x, limit: int = 25, max_elements: float = 2e7) -> int:
    """Data points per chunk so that one enumerated tensor [S, R, chunk, *obs] stays under
    ``max_elements`` (and at most ``limit``)."""
    obs = 1
    for d in x.shape[2:]:
        obs *= int(d)
    per_point = model.latent.num_states * x.shape[0] * obs
    return int(max(1, min(limit, max_elements // per_point)))


def log_marginal_chunked(model, x, max_elements: float = 2e7):
    """:func:`log_marginal` over chunks of data points (for models with many states and pixels)."""
    chunk = point_chunk(model, x, limit=x.shape[1], max_elements=max_elements)
    return torch.cat([log_marginal(model, x[:, s:s + chunk]) for s in range(0, x.shape[1], chunk)], 1)


def exact_objective_gradient(model, x, objective: str, num_particles: int, which: str,
                             chunk: int = 25) -> torch.Tensor:
    """Gradient of Σ_r mean_b objective(x_rb) for the ``which`` group, flattened ``[D]``; data
    points are processed ``chunk`` at a time (fewer when the enumerated tensors would be large)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"no exact objective {objective!r}; known: {sorted(OBJECTIVES)}")
    exact = float64_copy(model)
    params = exact.parameter_group(which)
    x64 = x.to(torch.float64)
    grads = [torch.zeros_like(p) for p in params]
    B = x64.shape[1]
    chunk = point_chunk(exact, x64, limit=chunk)
    for start in range(0, B, chunk):
        xc = x64[:, start:start + chunk]
        value = OBJECTIVES[objective](exact, xc, num_particles).sum() / B
        for acc, g in zip(grads, torch.autograd.grad(value, params, allow_unused=True)):
            if g is not None:
                acc += g
    return torch.cat([g.reshape(-1) for g in grads]).to(model.dtype)
