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
is linear in s; ``model.relaxed_log_joint`` when the model provides RELAXED_LOG_JOINT, else ``log_joint``).
The estimator:
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

The paper, the reference code and this file (option ``variant`` picks a column; every option below
can also be set on its own, e.g. ``rebar[variant=rebar_code,noise=fresh]``; REBAR code = Tucker et al.'s
released TF code, SBNDynamicRebar with its default hparams; RELAX code = Grathwohl et al.'s SBN code,
whose REBAR is the RELAX paper's REBAR column):

  option              ``paper`` (default)     ``rebar_code``               ``relax_code``
  noise               fresh v                 tied                         tied
  relaxation          concrete σ(ζ/λ)         muprop σ(ζ/λ + λ/(λ+1)·a)    concrete
  layerwise           False                   True                         True
  baseline            False                   True                         False
  eta_param           free                    sigmoid (η = 2σ(ξ) ∈ (0,2))  free
  theta_cv            False                   True                         False
  variance_over       guide (φ)               all (θ and φ)                guide
  shared_temperature  False (λ per layer)     True (one λ)                 False

* ``noise=tied``: v is chosen so that ũ(b, v) = u in value (v = (u − (1 − θ))/θ for b = 1, u/(1 − θ)
  for b = 0, held fixed; the code's ``_u_to_v``), so z̃ = z and only the φ-derivative of the
  conditional reparameterisation differs; ``fresh`` draws v independently (z̃ a fresh draw from
  p(z | b)).  Both are unbiased (the conditional law of u given b is the same).
* ``relaxation=muprop``: s = σ(ζ/λ + λ/(λ+1)·a) with a the layer's logits (the code's default
  ``muprop_relaxation``), instead of σ(ζ/λ).
* ``layerwise`` (the code's ``quadratic``): one control-variate term per stochastic layer l, whose
  relaxed chains keep the hard samples b_{<l} upstream, relax layer l from u_l (resp. ũ_l) and the
  layers below from u; term l's REINFORCE part multiplies log q(b_l | b_{l−1}) only.  Unbiased by
  conditioning on u_{>l} (independent of u_l and b_l).  The codes also drive the layers below l of
  the conditional chain by ũ; this file uses u there (the argument above needs it).
* ``baseline``: an input-dependent baseline B_ψ(x) (x − x̄ → 100 tanh → 1, per replicate; x̄ the model's
  TRAINING_MEAN where it provides one, else x is not centred) subtracted
  from f(b) in the REINFORCE term, trained with λ and η by the variance objective (REBAR code).
* ``eta_param=sigmoid``: η = 2σ(ξ) per tensor, ξ learned (start η = 1); ``free``: η itself.
* ``theta_cv``: the control variate is applied to θ too (one η per θ tensor); its θ-part,
  η(∇_θ f̃(u) − ∇_θ f̃(ũ)), has zero mean, and is identically zero with tied noise.
* ``variance_over=all``: λ, η (and ψ, ρ) minimise Σ ‖ĝ‖² over θ and φ together (REBAR code's
  mean of squared gradients over all parameters) instead of over φ.
* ``shared_temperature``: one λ for all layers (REBAR code) instead of one per layer.
Remaining differences from the REBAR code: its φ-estimate drops the direct term ∇_φ f(b) (zero mean
for K = 1); this file keeps it.  The RELAX code's variance objective is taken per layer at the level
of the logits' gradients; this file's is over the parameters' gradients.
Bernoulli latents only; needs the layered Bernoulli interface (``models/protocols.py``
LAYERED_BERNOULLI; a one-layer model provides it with one layer), refused up front otherwise.
Unbiased for ∇ ELBO_IS^K for every λ, η, ψ, ρ and every option (tests/test_rebar_relax.py,
tests/test_own_parameters.py).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import nn

from estibench.models.nn import StackedMLP
from estibench.models.protocols import LAYERED_BERNOULLI, RELAXED_LOG_JOINT, TRAINING_MEAN, bernoulli_log_mass

from estibench.models.registry import Revision

from .base import Estimate, Estimator, IncompatibleError, logmeanexp
from .functional.relaxed import conditional_logit, tied_uniform  # noqa: F401 (imported from here too)


def uniform_noise(shape, like: torch.Tensor) -> torch.Tensor:
    """U(0,1) draws clamped to [ε, 1 − ε] (finite logits), on ``like``'s device and dtype."""
    eps = torch.finfo(like.dtype).eps
    return torch.rand(shape, dtype=like.dtype, device=like.device).clamp_(eps, 1.0 - eps)






#: what the reference code does, per option (the ``variant`` presets; individual options override them)
VARIANTS = {
    # Tucker et al.'s released REBAR code (SBNDynamicRebar with its default hparams)
    "rebar_code": dict(noise="tied", relaxation="muprop", layerwise=True, baseline=True, eta_param="sigmoid",
                       theta_cv=True, variance_over="all", shared_temperature=True),
    # Grathwohl et al.'s released RELAX code for the SBN experiments (its REBAR part)
    "relax_code": dict(noise="tied", relaxation="concrete", layerwise=True, baseline=False, eta_param="free",
                       theta_cv=False, variance_over="guide", shared_temperature=False),
    # the REBAR paper as this file first implemented it
    "paper": dict(noise="fresh", relaxation="concrete", layerwise=False, baseline=False, eta_param="free",
                  theta_cv=False, variance_over="guide", shared_temperature=False),
}
CHOICES = {"noise": ("fresh", "tied"), "relaxation": ("concrete", "muprop"), "eta_param": ("free", "sigmoid"),
           "variance_over": ("guide", "all")}


def resolve_variant(variant: str, overrides: dict) -> dict:
    """The option values of ``variant`` with ``overrides`` (those not None) applied, validated."""
    if variant not in VARIANTS:
        raise IncompatibleError(f"unknown variant {variant!r}; choose {', '.join(VARIANTS)}")
    out = dict(VARIANTS[variant])
    out.update({k: v for k, v in overrides.items() if v is not None})
    for name, allowed in CHOICES.items():
        if out[name] not in allowed:
            raise IncompatibleError(f"{name} must be one of {', '.join(allowed)}, got {out[name]!r}")
    for name in ("layerwise", "baseline", "theta_cv", "shared_temperature"):
        out[name] = bool(out[name])
    return out


class BernoulliControlVariate(nn.Module):
    """The relaxed control variate of REBAR, and with a residual MLP r_ρ that of RELAX, for the
    IWAE bound over Bernoulli latents (see the module docstring for every formula and option).

    ``estimate`` returns the ascent estimates for ``model.parameters()`` and the bound ``[R, B]``;
    with ``create_graph`` the estimates stay differentiable in λ, η, ρ and the baseline ψ (for
    ∇‖ĝ‖²).  It inspects no model: the estimator that owns it says, on :meth:`bind`, what the model
    provides of what it declared (:data:`USES`)."""

    def __init__(self, temperature: float = 0.5, eta: float = 1.0, learn: bool = True,
                 hidden: Optional[Sequence[int]] = None, zero_output: bool = True, salt: int = 11,
                 variant: str = "paper", **overrides):
        super().__init__()
        if not (float(temperature) > 0 and math.isfinite(float(temperature))):
            raise IncompatibleError(f"the temperature must be positive and finite, got {temperature}")
        if not math.isfinite(float(eta)):
            raise IncompatibleError(f"eta must be finite, got {eta}")
        self.temperature, self.eta_init, self.learn = float(temperature), float(eta), bool(learn)
        self.hidden = None if hidden is None else tuple(int(h) for h in hidden)
        self.zero_output, self.salt = bool(zero_output), int(salt)
        self.options = resolve_variant(variant, overrides)
        if self.options["eta_param"] == "sigmoid" and not 0 < self.eta_init < 2:
            raise IncompatibleError(f"eta_param=sigmoid keeps η in (0, 2); got eta={eta}")
        self.baseline_net = None
        self.residuals = None
        self.relaxed_joint = False

    def bind(self, model, input_mean: Optional[torch.Tensor] = None,
             relaxed_log_joint: bool = False) -> "BernoulliControlVariate":
        """Create λ, η (and ψ, ρ) for ``model``; ``input_mean``: x̄ for the baseline's inputs (None: not centred);
        ``relaxed_log_joint``: evaluate f̃ with ``model.relaxed_log_joint`` (else ``log_joint``)."""
        o = self.options
        self.relaxed_joint = bool(relaxed_log_joint)
        sizes, R = tuple(int(d) for d in model.layer_sizes), model.replicates
        like = dict(dtype=model.dtype, device=model.device)
        n_cv = len(list(model.parameters())) if o["theta_cv"] else len(model.guide_parameters())
        eta0 = (math.log(self.eta_init / (2 - self.eta_init)) if o["eta_param"] == "sigmoid" else self.eta_init)
        values = {"log_temperature": torch.full((R, 1 if o["shared_temperature"] else len(sizes)),
                                                math.log(self.temperature), **like),
                  "eta_raw": torch.full((R, n_cv), eta0, **like)}
        for name, value in values.items():
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            if self.learn:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        obs = int(math.prod(model.obs_shape))
        if o["baseline"]:  # the REBAR code's input-dependent baseline: x − x̄ → 100 tanh → 1
            self.baseline_net = StackedMLP(model.seeds, [obs, 100, 1], activation="tanh", salt=self.salt + 1)
            self.register_buffer("input_mean",
                                 None if input_mean is None else input_mean.detach().reshape(-1).to(**like).clone())
            self.baseline_net.to(**like)
        if self.hidden is not None:  # r_ρ: one network, or one per layer's term (layerwise)
            count = len(sizes) if o["layerwise"] else 1
            nets = [StackedMLP(model.seeds, [obs + sum(sizes), *self.hidden, 1], activation="relu",
                               salt=self.salt + 17 * j) for j in range(count)]
            if self.zero_output:  # r_ρ starts at 0: RELAX starts as REBAR
                with torch.no_grad():
                    for net in nets:
                        for p in net.layers[-1].parameters():
                            p.zero_()
            self.residuals = nn.ModuleList(nets).to(**like)
        return self

    @property
    def eta(self) -> torch.Tensor:
        """η per control-variate tensor ``[R, n]`` (2σ(·) of the raw parameter for eta_param=sigmoid)."""
        return 2 * torch.sigmoid(self.eta_raw) if self.options["eta_param"] == "sigmoid" else self.eta_raw

    def temperatures(self, layers: int) -> torch.Tensor:
        t = self.log_temperature.exp()
        return t.expand(t.shape[0], layers) if self.options["shared_temperature"] else t

    # -- the relaxed chains -----------------------------------------------------------------------
    def relax(self, logits, zeta, temperature):
        """σ(ζ/λ) (``concrete``) or the REBAR code's σ(ζ/λ + λ/(λ+1)·a) (``muprop``)."""
        if self.options["relaxation"] == "muprop":
            return torch.sigmoid(zeta / temperature + logits * (temperature / (temperature + 1)))
        return torch.sigmoid(zeta / temperature)

    def relaxed_objective(self, model, x, first_logits, logit_noise: List[torch.Tensor],
                          upstream: Sequence[torch.Tensor] = ()):
        """f̃ of the chain whose layers < L = len(upstream) are the given hard samples and whose layers
        ≥ L are relaxed, driven by ``logit_noise`` (one per relaxed layer; ``first_logits``: the
        logits of layer L): (log (1/K) Σ_k exp(log p̃ − log q̃) ``[R, B]``, features per layer
        ``[K, R, B, D_l]``: 2b − 1 for hard layers, tanh(ζ/2) for relaxed ones)."""
        R = x.shape[0]
        L = len(upstream)
        temperature = self.temperatures(L + len(logit_noise))
        soft, feats, log_q = list(upstream), [2 * b - 1 for b in upstream], 0.0
        for j, noise in enumerate(logit_noise):
            l = L + j
            logits = first_logits if j == 0 else model.guide_layer(l, soft[-1])
            zeta = logits + noise
            s = self.relax(logits, zeta, temperature[:, l].reshape(R, 1, 1))
            log_q = log_q + bernoulli_log_mass(logits, s)
            soft.append(s)
            feats.append(torch.tanh(0.5 * zeta))
        log_joint = model.relaxed_log_joint if self.relaxed_joint else model.log_joint
        return logmeanexp(log_joint(x, model.join(soft)) - log_q, 0), feats

    def residual_value(self, x, feats: List[torch.Tensor], index: int = 0) -> torch.Tensor:
        """r_ρ: (1/K) Σ_k MLP_ρ([x, features_k]) ``[R, B]``."""
        K, R, B = feats[0].shape[:3]
        f = torch.cat(feats, -1)
        xin = x.reshape(R, B, -1).to(f.dtype).unsqueeze(0).expand(K, R, B, -1)
        return self.residuals[index](torch.cat([xin, f], -1).transpose(0, 1)).squeeze(-1).mean(1)

    def baseline_value(self, x) -> torch.Tensor:
        R, B = x.shape[:2]
        flat = x.reshape(R, B, -1)
        if self.input_mean is not None:
            flat = flat - self.input_mean
        return self.baseline_net(flat).squeeze(-1)

    # -- the estimate -----------------------------------------------------------------------------
    def estimate(self, model, x, num_particles, create_graph: bool = False):
        o = self.options
        K, sizes = int(num_particles), tuple(int(d) for d in model.layer_sizes)
        R, B = x.shape[0], x.shape[1]
        hard, noise, cond, logits_hard, log_q_layers = [], [], [], [], []
        for l, D in enumerate(sizes):
            logits = model.guide_layer(l, x if l == 0 else hard[-1])
            u = uniform_noise((K, R, B, D), logits)
            logit_u = u.log() - torch.log1p(-u)
            b = (logits.detach() + logit_u > 0).to(logits.dtype)
            if o["noise"] == "tied":  # v such that ũ(v) = u: same value, the conditional's φ-derivative
                v = tied_uniform(logits.detach(), b, u)
            else:
                v = uniform_noise((K, R, B, D), logits)
            log_q_layers.append(bernoulli_log_mass(logits, b))
            hard.append(b)
            noise.append(logit_u)
            cond.append(conditional_logit(logits, b, v))
            logits_hard.append(logits)
        log_q = sum(log_q_layers)
        bound = logmeanexp(model.log_joint(x, model.join(hard)) - log_q, 0)  # [R, B]
        # the control-variate terms: one over all layers, or one per layer l with the hard layers
        # < l upstream, layer l relaxed from u_l / ũ_l and the layers below from u (layerwise)
        terms = []
        if o["layerwise"] and len(sizes) > 1:
            for l in range(len(sizes)):
                f_u, feat_u = self.relaxed_objective(model, x, logits_hard[l], noise[l:], hard[:l])
                f_c, feat_c = self.relaxed_objective(model, x, logits_hard[l], [cond[l]] + noise[l + 1:], hard[:l])
                terms.append((log_q_layers[l].sum(0), f_u, f_c, feat_u, feat_c, l))
        else:
            f_u, feat_u = self.relaxed_objective(model, x, logits_hard[0], noise)
            f_c, feat_c = self.relaxed_objective(model, x, logits_hard[0], cond)
            terms.append((log_q.sum(0), f_u, f_c, feat_u, feat_c, 0))

        params = list(model.parameters())
        phi_ids = {id(p) for p in model.guide_parameters()}
        cv_params = params if o["theta_cv"] else [p for p in params if id(p) in phi_ids]
        signal, score = bound.detach(), log_q.sum(0)
        keep = create_graph  # own parameters' graph is needed for ∇‖ĝ‖² only
        if self.baseline_net is not None:
            base = self.baseline_value(x)
            signal = signal - (base if keep else base.detach())
        weight = torch.full_like(bound, 1.0 / B)  # mean over data points, summed over replicates
        # (i) REINFORCE with the baseline, the direct term and θ, plus the residuals r_ρ (RELAX), unscaled
        outputs, grad_outputs = [score, bound], [signal * weight, weight]
        if self.residuals is not None:
            for t, (sc, f_u, f_c, feat_u, feat_c, l) in enumerate(terms):
                index = t if o["layerwise"] and len(sizes) > 1 else 0
                r_u, r_c = self.residual_value(x, feat_u, index), self.residual_value(x, feat_c, index)
                outputs += [sc, r_u - r_c]
                grad_outputs += [-(r_c if keep else r_c.detach()) * weight, weight]
        first_part = torch.autograd.grad(outputs, params, grad_outputs, retain_graph=True,
                                         create_graph=keep and (self.residuals is not None or
                                                                self.baseline_net is not None),
                                         allow_unused=True)
        # (ii) the relaxed control variates Σ_terms −f̃(ũ)∇log q_term + ∇f̃(u) − ∇f̃(ũ), scaled by η per tensor
        cv_out, cv_grad = [], []
        for sc, f_u, f_c, *_ in terms:
            cv_out += [sc, f_u - f_c]
            cv_grad += [-(f_c if keep else f_c.detach()) * weight, weight]
        cv_part = torch.autograd.grad(cv_out, cv_params, cv_grad, create_graph=keep, allow_unused=True)
        eta = self.eta
        cv = {id(p): (j, g) for j, (p, g) in enumerate(zip(cv_params, cv_part))}
        out = []
        for p, g in zip(params, first_part):
            g = torch.zeros_like(p) if g is None else g
            if id(p) in cv and cv[id(p)][1] is not None:
                j, h = cv[id(p)]
                g = g + eta[:, j].reshape(R, *([1] * (p.dim() - 1))) * h
            out.append(g)
        return out, bound

    def own_gradients(self, model, ascent, own, weight_decay: float = 0.0):
        """∇ Σ ‖ĝ‖² for ``own`` (single-sample gradient of the estimate's variance) over the φ-estimates
        (``variance_over=guide``) or the θ- and φ-estimates (``all``), plus ``weight_decay``·ρ for
        the residuals' parameters."""
        phi_ids = {id(p) for p in model.guide_parameters()}
        every = self.options["variance_over"] == "all"
        variance = sum((g ** 2).sum() for p, g in zip(model.parameters(), ascent) if every or id(p) in phi_ids)
        grads = torch.autograd.grad(variance, own, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(own, grads)]
        if weight_decay and self.residuals is not None:
            decayed = {id(p) for p in self.residuals.parameters()}
            grads = [g + weight_decay * p.detach() if id(p) in decayed else g for p, g in zip(own, grads)]
        return grads


#: what the estimators built on :class:`BernoulliControlVariate` use where the model provides it: x̄ for the
#: baseline's inputs, and the relaxed log joint for f̃
USES = frozenset({TRAINING_MEAN, RELAXED_LOG_JOINT})


def bind_control_variate(estimator: Estimator, cv: "BernoulliControlVariate", model) -> "BernoulliControlVariate":
    """Bind ``cv`` (the control variate of ``estimator``, which declares :data:`USES`) to ``model``, passing it
    what the model provides of those capabilities."""
    return cv.bind(model, input_mean=model.train_mean if estimator.provided(model, TRAINING_MEAN) else None,
                   relaxed_log_joint=estimator.provided(model, RELAXED_LOG_JOINT))


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
    revisions = (Revision(4, "the reference code's variants (the rebar preset runs rebar_code)"),)
    display_name = "REBAR"
    cost_hint = 4.0
    variants = ("paper", "rebar_code", "relax_code")
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})
    uses = USES
    own_lr_multiplier = 10.0
    second_order = True  # η and λ follow ∇‖ĝ_φ‖²

    def __init__(self, temperature: float = 0.5, eta: float = 1.0, learn: bool = True, variant: str = "paper",
                 noise=None, relaxation=None, layerwise=None, baseline=None, eta_param=None, theta_cv=None,
                 variance_over=None, shared_temperature=None):
        super().__init__()
        self.relaxation = BernoulliControlVariate(
            temperature, eta, learn, variant=variant, noise=noise, relaxation=relaxation, layerwise=layerwise,
            baseline=baseline, eta_param=eta_param, theta_cv=theta_cv, variance_over=variance_over,
            shared_temperature=shared_temperature)

    def bind(self, model):
        bind_control_variate(self, self.relaxation, model)
        return self

    def surrogate(self, model, x, num_particles):
        return control_variate_surrogate(self.relaxation, model, x, num_particles)

    def gradients(self, model, x, num_particles, with_own: bool = True):
        return control_variate_gradients(self.relaxation, list(self.parameters()), model, x, num_particles,
                                         with_own)
