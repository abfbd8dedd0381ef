"""REBAR for Bernoulli latents (Tucker et al., 2017), dynamic: λ and η learned by minimising the variance.

Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein, "REBAR: Low-variance, unbiased gradient
estimates for discrete latent variable models" (NIPS 2017), §3: the final estimator, with the
conditional relaxation z̃ | b (Eq. 4–6 in the project's citation; the paper is not in papers/, so
section and equation numbers are unchecked), and the appendix's conditional noise, for the IWAE bound
f(b_{1:K}) = log (1/K) Σ_k w_k, w_k = p_θ(x, b_k) / q_φ(b_k | x) (K = 1: the ELBO, as in the
paper; any K ≥ 1 works).  Notation: θ_l = σ(l_l) the guide's Bernoulli means at logits l_l;
u, v ~ U(0, 1) i.i.d., clamped to [ε, 1 − ε] (ε = the dtype's machine epsilon).

One layer
---------
    z = l + logit u,  b = H(z) = [z > 0]                                  (b ~ q_φ(b|x))
    z̃ = l + logit ũ,  ũ | b the uniform on b's cell of u:  ũ = (1 − θ) + θ v  if b = 1,
                                                         ũ = (1 − θ) v       if b = 0,
computed in log space (no cancellation near θ ∈ {0, 1}):
    b = 1:  log ũ = logaddexp(log(1 − θ), log θ + log v),   log(1 − ũ) = log θ + log(1 − v)
    b = 0:  log ũ = log v + log(1 − θ),   log(1 − ũ) = logaddexp(log θ, log(1 − θ) + log(1 − v))
with log θ = logsigmoid(l), log(1 − θ) = logsigmoid(−l); z̃ is reparameterised in φ given b.
Relaxed objective f̃(ζ) = log (1/K) Σ_k exp(log p_θ(x, s_k) − log q_φ(s_k | x)), s = σ_λ(ζ) = σ(ζ/λ),
with both log-masses evaluated at the relaxed s ∈ (0, 1) (the Bernoulli log-mass s·l − softplus(l)
is linear in s; ``model.relaxed_log_joint`` when the model has one, else ``log_joint``).  The estimator:
    ĝ_φ = [f(b) − η f̃(z̃)] ∇_φ log q_φ(b) + ∇_φ f(b) + η ∇_φ f̃(z) − η ∇_φ f̃(z̃),
where ∇_φ f(b) is the direct dependence through −log q_φ(b) inside w_k, ∇_φ f̃ is the total
derivative (through z, z̃ and through q_φ inside f̃), and f̃(z̃) in the first bracket is a value
(its φ-gradient is not taken).  θ gets the plain ∇_θ log (1/K) Σ_k w_k (b held fixed).

Several stochastic layers (``model.layer_sizes``, ``model.guide_layer``), as in the REBAR code's
"soft" and "soft_v" recognition passes: three chains share the noise u_l, v_l of every layer l.
  hard chain         b_l = H(l_l(b_{l−1}) + logit u_l),  l_l(·) = guide_layer(l, ·), b_{−1} = x;
  relaxed chain      ζ_l = l_l(s_{l−1}) + logit u_l,  s_l = σ(ζ_l / λ_l),  s_{−1} = x;
  conditional chain  ζ̃_l = l_l(s̃_{l−1}) + logit ũ_l,  s̃_l = σ(ζ̃_l / λ_l),  s̃_{−1} = x,
where ũ_l is the conditional uniform of u_l given b_l computed with the *hard* chain's logits
θ_l = σ(l_l(b_{l−1})) (the formulas above), so each relaxed layer takes the previous relaxed
sample as input while the hard chain takes the previous hard sample.  f̃(u) and f̃(ũ) are the
relaxed objectives of the two relaxed chains (log p_θ(x, s) − Σ_l log q_φ(s_l | s_{l−1})), and
    ĝ_φ = [f(b) − η f̃(ũ)] Σ_l ∇_φ log q_φ(b_l | b_{l−1}) + ∇_φ f(b) + η ∇_φ f̃(u) − η ∇_φ f̃(ũ).
Unbiased: (b, v) ↦ ũ(b, v; φ) reparameterises u | b exactly (b ~ q_φ, v ⟂ b), so for any c(ω, φ)
smooth in the noise ω and in φ, E[∇c(u)] = E[c(ũ) ∇ log q_φ(b)] + E[∇c(ũ)] (ũ's φ-derivative
taken with b and v fixed); that c here runs the relaxed inputs through other logits than the
hard chain's does not matter, whereas conditioning ũ_l on the relaxed chain's logits l_l(s̃_{l−1})
would be biased (tests/test_rebar_relax.py rejects that variant).  With one layer this is the
one-layer estimator above; for K particles u holds all K·D uniforms and the score is
Σ_k ∇ log q_φ(b_k).

Scale and temperature (``learn=True``, the paper's "dynamic REBAR"): λ_l = exp(log λ_l) per
stochastic layer (start 0.5) and one η per guide-parameter tensor (start 1; the REBAR code's
``multiply_by_eta_per_layer``: η_p multiplies the control-variate part of ĝ for tensor p, which
keeps every coordinate unbiased; η in the formulas above is η_p for tensor p), one set per replicate.  They minimise the variance of ĝ_φ
(mean over the B data points) through the single-sample gradient ∇‖ĝ_φ‖² (E ĝ_φ does not
depend on them), by a second-order pass; their learning rate is 10× the model's
(``own_lr_multiplier``, as the REBAR code's control-variate optimiser).  ``learn=False`` keeps
λ = ``temperature`` and η = ``eta`` fixed (buffers).

Deviation from the REBAR code: ũ uses fresh uniforms v (z̃ a fresh draw from p(z | b), as the
paper describes it); the code ties v to u (ũ = u in value, only its φ-derivative differs).
Bernoulli latents only; models with the layered interface (``layer_sizes``, ``guide_layer``,
``join``) or, as one layer, any model whose guide is a factorised ``Independent(Bernoulli)``
(so ``requires`` is empty; anything else is refused with IncompatibleError at the first call).
Unbiased for ∇ ELBO_IS^K.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Independent

from models.nn import StackedMLP

from .base import Estimate, Estimator, IncompatibleError, logmeanexp


def bernoulli_log_mass(logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Σ_d z_d l_d − softplus(l_d): log Bern(z; σ(l)) at z ∈ {0,1}, linear in z on [0,1]."""
    return (z * logits - F.softplus(logits)).sum(-1)


def uniform_noise(shape, like: torch.Tensor) -> torch.Tensor:
    """U(0,1) draws clamped to [ε, 1 − ε] (finite logits), on ``like``'s device and dtype."""
    eps = torch.finfo(like.dtype).eps
    return torch.rand(shape, dtype=like.dtype, device=like.device).clamp_(eps, 1.0 - eps)


def conditional_logit(logits: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """logit ũ for ũ ~ u | b (u's cell for b at Bernoulli mean σ(logits)), from v ~ U(0,1), in log space."""
    log_t, log_1mt = F.logsigmoid(logits), F.logsigmoid(-logits)
    log_v, log_1mv = v.log(), torch.log1p(-v)
    one = b > 0.5
    log_u = torch.where(one, torch.logaddexp(log_1mt, log_t + log_v), log_v + log_1mt)
    log_1mu = torch.where(one, log_t + log_1mv, torch.logaddexp(log_t, log_1mt + log_1mv))
    return log_u - log_1mu


# -- the layered view of a Bernoulli model --------------------------------------------------------
def layer_sizes(model) -> Tuple[int, ...]:
    if hasattr(model, "guide_layer"):
        return tuple(int(d) for d in model.layer_sizes)
    return (int(model.latent.num_bits),)


def guide_logits(model, l: int, h: torch.Tensor) -> torch.Tensor:
    """Logits of q(z_l | h): ``model.guide_layer`` or, for one-layer models, the factorised guide's."""
    if hasattr(model, "guide_layer"):
        return model.guide_layer(l, h)
    q = model.guide(h)
    base = q.base_dist if isinstance(q, Independent) else q
    if not isinstance(base, Bernoulli):
        raise IncompatibleError(f"{type(model).__name__} has neither guide_layer() nor a factorised "
                                f"Bernoulli guide; REBAR/RELAX need one of them")
    return base.logits


def join_layers(model, layers: Sequence[torch.Tensor]) -> torch.Tensor:
    return model.join(layers) if hasattr(model, "join") else layers[0]


class BernoulliControlVariate(nn.Module):
    """The relaxed control variate of REBAR, and with a residual MLP r_ρ that of RELAX, for the
    IWAE bound over Bernoulli latents (see the module docstring for every formula).

    ``estimate`` returns the ascent estimates for ``model.parameters()`` and the bound ``[R, B]``;
    with ``create_graph`` the φ-estimates stay differentiable in λ, η and ρ (for ∇‖ĝ_φ‖²)."""

    def __init__(self, temperature: float = 0.5, eta: float = 1.0, learn: bool = True,
                 hidden: Optional[Sequence[int]] = None, zero_output: bool = True, salt: int = 11):
        super().__init__()
        if not (float(temperature) > 0 and math.isfinite(float(temperature))):
            raise IncompatibleError(f"the temperature must be positive and finite, got {temperature}")
        if not math.isfinite(float(eta)):
            raise IncompatibleError(f"eta must be finite, got {eta}")
        self.temperature, self.eta_init, self.learn = float(temperature), float(eta), bool(learn)
        self.hidden = None if hidden is None else tuple(int(h) for h in hidden)
        self.zero_output, self.salt = bool(zero_output), int(salt)

    def bind(self, model) -> "BernoulliControlVariate":
        sizes, R = layer_sizes(model), model.replicates
        like = dict(dtype=model.dtype, device=model.device)
        values = {"log_temperature": torch.full((R, len(sizes)), math.log(self.temperature), **like),
                  "eta": torch.full((R, len(model.guide_parameters())), self.eta_init, **like)}
        for name, value in values.items():
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            if self.learn:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        if self.hidden is not None:
            obs = int(math.prod(model.obs_shape))
            self.residual = StackedMLP(model.seeds, [obs + sum(sizes), *self.hidden, 1], activation="relu",
                                       salt=self.salt)
            if self.zero_output:  # r_ρ starts at 0: RELAX starts as REBAR
                with torch.no_grad():
                    for p in self.residual.layers[-1].parameters():
                        p.zero_()
            self.residual.to(**like)
        else:
            self.residual = None
        return self

    # -- the relaxed chains -----------------------------------------------------------------------
    def relaxed_objective(self, model, x, first_logits, logit_noise: List[torch.Tensor]):
        """f̃ of the relaxed chain driven by ``logit_noise`` (logit u_l or logit ũ_l per layer):
        (log (1/K) Σ_k exp(log p̃ − log q̃) ``[R, B]``, pre-activations ζ_l ``[K, R, B, D_l]``)."""
        R = x.shape[0]
        temperature = self.log_temperature.exp()
        soft, pre, log_q = [], [], 0.0
        for l, noise in enumerate(logit_noise):
            logits = first_logits if l == 0 else guide_logits(model, l, soft[-1])
            zeta = logits + noise
            s = torch.sigmoid(zeta / temperature[:, l].reshape(R, 1, 1))
            log_q = log_q + bernoulli_log_mass(logits, s)
            soft.append(s)
            pre.append(zeta)
        log_joint = getattr(model, "relaxed_log_joint", model.log_joint)
        return logmeanexp(log_joint(x, join_layers(model, soft)) - log_q, 0), pre

    def residual_value(self, x, pre: List[torch.Tensor]) -> torch.Tensor:
        """r_ρ: (1/K) Σ_k MLP_ρ([x, tanh(ζ_k/2)]) (tanh(ζ/2) = 2σ(ζ) − 1, all layers), ``[R, B]``."""
        K, R, B = pre[0].shape[:3]
        feats = torch.cat([torch.tanh(0.5 * z) for z in pre], -1)
        xin = x.reshape(R, B, -1).to(feats.dtype).unsqueeze(0).expand(K, R, B, -1)
        return self.residual(torch.cat([xin, feats], -1).transpose(0, 1)).squeeze(-1).mean(1)

    # -- the estimate -----------------------------------------------------------------------------
    def estimate(self, model, x, num_particles, create_graph: bool = False):
        K, sizes = int(num_particles), layer_sizes(model)
        R, B = x.shape[0], x.shape[1]
        hard, noise, cond, log_q, first = [], [], [], 0.0, None
        for l, D in enumerate(sizes):
            logits = guide_logits(model, l, x if l == 0 else hard[-1])
            first = logits if l == 0 else first
            u = uniform_noise((K, R, B, D), logits)
            v = uniform_noise((K, R, B, D), logits)
            logit_u = u.log() - torch.log1p(-u)
            b = (logits.detach() + logit_u > 0).to(logits.dtype)
            log_q = log_q + bernoulli_log_mass(logits, b)
            hard.append(b)
            noise.append(logit_u)
            cond.append(conditional_logit(logits, b, v))
        bound = logmeanexp(model.log_joint(x, join_layers(model, hard)) - log_q, 0)  # [R, B]
        f_u, pre_u = self.relaxed_objective(model, x, first, noise)
        f_c, pre_c = self.relaxed_objective(model, x, first, cond)

        params = list(model.parameters())
        phi_ids = {id(p) for p in model.guide_parameters()}
        phi = [p for p in params if id(p) in phi_ids]
        signal, score = bound.detach(), log_q.sum(0)
        weight = torch.full_like(signal, 1.0 / B)  # mean over data points, summed over replicates
        # (i) REINFORCE, the direct term and θ, plus the residual r_ρ (RELAX), unscaled
        outputs, grad_outputs = [score, bound], [signal * weight, weight]
        if self.residual is not None:
            r_u, r_c = self.residual_value(x, pre_u), self.residual_value(x, pre_c)
            r_coef = r_c if create_graph else r_c.detach()
            outputs.append(r_u - r_c)
            grad_outputs = [(signal - r_coef) * weight, weight, weight]
        first_part = torch.autograd.grad(outputs, params, grad_outputs, retain_graph=True,
                                         create_graph=create_graph and self.residual is not None,
                                         allow_unused=True)
        # (ii) the relaxed control variate −f̃(ũ)∇log q + ∇f̃(u) − ∇f̃(ũ), scaled by η per tensor
        f_coef = f_c if create_graph else f_c.detach()
        cv_part = torch.autograd.grad([score, f_u - f_c], phi, [-f_coef * weight, weight],
                                      create_graph=create_graph, allow_unused=True)
        cv = {id(p): (j, g) for j, (p, g) in enumerate(zip(phi, cv_part))}
        out = []
        for p, g in zip(params, first_part):
            g = torch.zeros_like(p) if g is None else g
            if id(p) in cv and cv[id(p)][1] is not None:
                j, h = cv[id(p)]
                g = g + self.eta[:, j].reshape(R, *([1] * (p.dim() - 1))) * h
            out.append(g)
        return out, bound

    def own_gradients(self, model, ascent, own, weight_decay: float = 0.0):
        """∇ Σ_{φ} ‖ĝ_φ‖² for ``own`` (single-sample gradient of the φ-estimate's variance), plus
        ``weight_decay``·ρ for the residual's parameters."""
        phi_ids = {id(p) for p in model.guide_parameters()}
        variance = sum((g ** 2).sum() for p, g in zip(model.parameters(), ascent) if id(p) in phi_ids)
        grads = torch.autograd.grad(variance, own, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(own, grads)]
        if weight_decay and self.residual is not None:
            decayed = {id(p) for p in self.residual.parameters()}
            grads = [g + weight_decay * p.detach() if id(p) in decayed else g for p, g in zip(own, grads)]
        return grads


def control_variate_gradients(cv: BernoulliControlVariate, own, model, x, num_particles, with_own: bool,
                              weight_decay: float = 0.0):
    """``Estimator.gradients`` for an estimator whose own parameters are ``own`` (those of ``cv``)."""
    train_own = with_own and len(own) > 0
    ascent, bound = cv.estimate(model, x, num_particles, create_graph=train_own)
    if train_own:
        own_grads = cv.own_gradients(model, ascent, own, weight_decay)
    else:
        own_grads = [torch.zeros_like(p) for p in own]
    return [-g.detach() for g in ascent], own_grads, bound.detach().mean(-1)


def control_variate_surrogate(cv: BernoulliControlVariate, model, x, num_particles) -> Estimate:
    """A loss whose θ/φ-gradient is minus the estimate: −Σ_p ⟨p − stop(p), ĝ_p⟩ (value 0) plus
    minus the bound (value only)."""
    ascent, bound = cv.estimate(model, x, num_particles)
    objective = bound.detach().mean(-1)
    loss = -objective.sum()
    for p, g in zip(model.parameters(), ascent):
        loss = loss - ((p - p.detach()) * g.detach()).sum()
    return Estimate(loss, objective)


class Rebar(Estimator):
    latent_types = frozenset({"bernoulli"})
    own_lr_multiplier = 10.0

    def __init__(self, temperature: float = 0.5, eta: float = 1.0, learn: bool = True):
        super().__init__()
        self.relaxation = BernoulliControlVariate(temperature, eta, learn)

    def bind(self, model):
        self.relaxation.bind(model)
        return self

    def surrogate(self, model, x, num_particles):
        return control_variate_surrogate(self.relaxation, model, x, num_particles)

    def gradients(self, model, x, num_particles, with_own: bool = True):
        return control_variate_gradients(self.relaxation, list(self.parameters()), model, x, num_particles,
                                         with_own)
