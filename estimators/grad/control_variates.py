"""Methods of :func:`estibench.grad` with learned control variates, each an ``nn.Module`` the user trains with
:meth:`GradEstimate.variance`: RELAX, REBAR, double control variates and RODEO."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..base import IncompatibleError
from ..functional import logit, relax
from ..functional.control_variates import double_cv_logit_gradient, rodeo_logit_gradient
from ..functional.relaxed import conditional_logit
from ..rebar import uniform_noise
from ..relax import gumbel_pair

from .core import _evaluate, Method, _BERNOULLI, _DISCRETE


class RelaxControlVariate(nn.Module):
    """A default RELAX control variate c_ρ: an MLP (tanh) of the relaxed sample, one value per particle and item.
    Its input is what :func:`grad` gives a control variate: for Bernoulli latents the logistic pre-threshold sample
    z = a + logit u (squashed here by tanh(z/2), as the registered RELAX's free-form part), for categorical latents
    the Gumbel-perturbed log-probabilities g (``[..., C]``).  ``event_size``: the number of values per item (bits, or
    variables × categories); ``hidden``: the hidden widths (the registered categorical RELAX's (16, 16)).  The
    output layer starts at zero (``zero_output``), so RELAX starts as REINFORCE with the reparameterised terms
    cancelling."""

    def __init__(self, event_size: int, hidden=(16, 16), zero_output: bool = True, bernoulli: bool = True):
        super().__init__()
        sizes = [int(event_size), *(int(h) for h in hidden), 1]
        layers = []
        for i in range(len(sizes) - 1):
            layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.Tanh()]
        self.net = nn.Sequential(*layers[:-1])
        if zero_output:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)
        self.event_size, self.bernoulli = int(event_size), bool(bernoulli)

    def forward(self, z: torch.Tensor, batch_dims: int) -> torch.Tensor:
        lead = z.shape[:1 + batch_dims]
        flat = z.reshape(*lead, -1)
        if self.bernoulli:
            flat = torch.tanh(flat / 2)
        return self.net(flat).squeeze(-1)


class RebarControlVariate(nn.Module):
    """REBAR's control variate c(z) = η·f(σ_λ(z)) (Tucker et al., 2017, §3, Eq. 8 with the concrete relaxation σ_λ:
    σ(z/λ) for Bernoulli latents, softmax(g/λ) for categorical ones), with learnable η and log λ (the "dynamic"
    REBAR of §3.4; train them by minimising :meth:`GradEstimate.variance`).  Defaults: η = 1, λ = 0.5 (the
    registered ``rebar``'s starting values).

    With ``residual`` (an ``nn.Module`` of the relaxed sample, called as ``residual(z, batch_dims)``, e.g.
    :class:`RelaxControlVariate`), c(z) = η·f(σ_λ(z)) + r_ρ(z): RELAX's control variate for discrete latents
    (Grathwohl et al., 2018, §3.3 and its SBN experiments; the registered Bernoulli ``relax``); pass it to ``relax``,
    not to ``rebar``."""

    def __init__(self, eta: float = 1.0, temperature: float = 0.5, residual: Optional[nn.Module] = None):
        super().__init__()
        if not temperature > 0:
            raise IncompatibleError(f"estibench.grad: rebar needs a positive temperature, got {temperature}")
        if residual is not None and not isinstance(residual, nn.Module):
            raise IncompatibleError(f"estibench.grad: the residual must be an nn.Module of the relaxed sample, got "
                                    f"{type(residual).__name__}")
        self.eta = nn.Parameter(torch.tensor(float(eta)))
        self.log_temperature = nn.Parameter(torch.tensor(float(temperature)).log())
        self.residual = residual

    def relaxed(self, z: torch.Tensor, bernoulli: bool) -> torch.Tensor:
        tau = self.log_temperature.exp()
        return torch.sigmoid(z / tau) if bernoulli else torch.softmax(z / tau, -1)


def _relaxed_pair(view, K):
    """(z, sample b = H(z), z̃ ~ z | b from fresh noise): Bernoulli latents by the logistic reparameterisation
    (:func:`estimators.rebar.conditional_logit`), categorical ones by Gumbels (:func:`estimators.relax.gumbel_pair`);
    z and z̃ are reparameterised in the logits."""
    if view.kind == "bernoulli":
        a = view.logits
        a_k = a.expand(K, *a.shape)
        z = a_k + logit(uniform_noise(a_k.shape, a))
        b = (z.detach() > 0).to(a.dtype)
        return z, b, a_k + conditional_logit(a_k, b, uniform_noise(a_k.shape, a))
    g, index, g_tilde = gumbel_pair(view.logits, K)
    sample = index if view.indices else torch.nn.functional.one_hot(index, g.shape[-1]).to(g.dtype)
    return g, sample, g_tilde


def _control_variate_surrogate(view, f, K, c):
    """The RELAX / REBAR surrogate (:func:`estimators.functional.relax`) per particle, for a control variate
    ``c(relaxed)`` → ``[K, *batch]``, plus log q(b)·(c(z̃) − stopgrad c(z̃)) at the detached z̃: a term of value 0 that
    removes the first-order gradient of the coefficient's c, so that a c which depends on f's or q's parameters (REBAR's
    η f(σ_λ(z)), or a module that closes over them) does not bias their gradients; the φ-gradient's dependence on c's
    parameters (the variance objective) is unchanged."""
    z, sample, z_tilde = _relaxed_pair(view, K)
    fz = _evaluate(f, sample, K, view.batch)
    log_q = view.dist.log_prob(sample)
    c_z, c_tilde, c_tilde_own = (c(t) for t in (z, z_tilde, z_tilde.detach()))
    for value in (c_z, c_tilde, c_tilde_own):
        if tuple(value.shape) != (K, *view.batch):
            raise ValueError(f"estibench.grad: the control variate must give one value per particle and item, "
                             f"[K, *batch] = {[K, *view.batch]}; got {tuple(value.shape)}")
    surrogate = relax(fz, log_q, c_z, c_tilde, c_tilde_own) + log_q.detach() * (c_tilde_own - c_tilde_own.detach())
    return surrogate.mean(0), fz.detach().mean(0), sample


def _relax(view, f, K, control_variate):
    """RELAX (Grathwohl et al., 2018, §3.3 and Alg. 2; the registered ``relax``'s display, ``estimators/relax.py``)
    per particle: [f(b) − c(z̃)] ∇ log q(b) + ∇c(z) − ∇c(z̃) + ∇f(b), with z the relaxed sample, b = H(z) and z̃ ~ z | b
    from fresh noise, both reparameterised; c is ``control_variate(relaxed, batch_dims)`` (:class:`RelaxControlVariate`
    or any module).  Unbiased for every value of c's parameters (:func:`_control_variate_surrogate`)."""
    if not isinstance(control_variate, nn.Module):
        raise IncompatibleError("estibench.grad: 'relax' needs control_variate=, an nn.Module of the relaxed sample "
                                "(e.g. estibench.estimators.grad.RelaxControlVariate(event_size)), got "
                                f"{type(control_variate).__name__}")
    nb = len(view.batch)
    if isinstance(control_variate, RebarControlVariate):  # RELAX's discrete form: η·f(σ_λ(z)) + r_ρ(z)
        cv, bernoulli = control_variate, view.kind == "bernoulli"
        if cv.residual is None:
            raise IncompatibleError("estibench.grad: a RebarControlVariate without a residual is REBAR's: call "
                                    "'rebar', or give it residual= (RELAX's r_ρ)")
        return _control_variate_surrogate(view, f, K, lambda t: cv.eta * _evaluate(f, cv.relaxed(t, bernoulli), K,
                                                                                      view.batch) + cv.residual(t, nb))
    return _control_variate_surrogate(view, f, K, lambda t: control_variate(t, nb))


def _rebar(view, f, K, control_variate):
    """REBAR (Tucker et al., 2017, §3, Eq. 8): RELAX's surrogate with c(z) = η·f(σ_λ(z)) (:class:`RebarControlVariate`;
    a fresh one, η = 1 and λ = 0.5 held, when none is given), so f must accept relaxed values.  Unbiased for every η,
    λ; f's own parameters get ∇f(b) plus η(∇f(σ_λ(z)) − ∇f(σ_λ(z̃))), of zero mean."""
    cv = RebarControlVariate() if control_variate is None else control_variate
    if not isinstance(cv, RebarControlVariate):
        raise IncompatibleError("estibench.grad: 'rebar' takes control_variate=RebarControlVariate(eta, temperature) "
                                f"(its η and λ), got {type(cv).__name__}")
    if cv.residual is not None:
        raise IncompatibleError("estibench.grad: a RebarControlVariate with a residual r_ρ is RELAX's control "
                                "variate: call 'relax' with it")
    bernoulli = view.kind == "bernoulli"
    return _control_variate_surrogate(view, f, K, lambda t: cv.eta * _evaluate(f, cv.relaxed(t, bernoulli), K,
                                                                                  view.batch))


class DoubleCVControlVariate(nn.Module):
    """Double control variates' coefficient α (Titsias & Shi, 2022; ``estimators/double_cv.py``), one scalar, starting
    at 0 (where the estimator is RLOO); train it by minimising :meth:`GradEstimate.variance`."""

    def __init__(self, alpha: float = 0.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))


class RodeoControlVariate(nn.Module):
    """RODEO's adapted state (Shi et al., 2022; ``estimators/rodeo.py``): the control network NN_ψ, 2 → ``hidden``
    (LeakyReLU 0.3) → 2 on (g_jᵀ(y − z_j), f_j) (the reference code's; default width 100 as the registered ``rodeo``),
    and the scalars α, β, starting at 0 (where the estimator is RLOO whatever ψ); train all three by minimising
    :meth:`GradEstimate.variance`."""

    def __init__(self, hidden: int = 100):
        super().__init__()
        if int(hidden) < 1:
            raise IncompatibleError(f"estibench.grad: rodeo needs hidden ≥ 1, got {hidden}")
        self.net = nn.Sequential(nn.Linear(2, int(hidden)), nn.LeakyReLU(0.3), nn.Linear(int(hidden), 2))
        self.alpha = nn.Parameter(torch.zeros(()))
        self.beta = nn.Parameter(torch.zeros(()))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.net(t)


def _with_gradient(view, f, K):
    """K Bernoulli samples (as the registered estimators draw them: u ~ U(0, 1), z = 1[logit u < a]), f there and
    g = ∇_z f at them (f differentiated as a function of real z).  Returns (a ``[*batch, D]``, z ``[K, *batch, D]``,
    f ``[K, *batch]`` with f's own graph, g ``[K, *batch, D]`` detached, z as f took it)."""
    a = view.logits
    event = a.shape[len(view.batch):]
    flat = a.reshape(*view.batch, -1)
    flat_k = flat.expand(K, *flat.shape)
    z = (logit(torch.rand(flat_k.shape, dtype=a.dtype, device=a.device)) < flat_k.detach()).to(a.dtype)
    with torch.enable_grad():
        zr = z.reshape(K, *view.batch, *event).clone().requires_grad_(True)
        fz = _evaluate(f, zr, K, view.batch)
        g = None
        if fz.requires_grad:
            g, = torch.autograd.grad(fz.sum(), zr, retain_graph=True, allow_unused=True)
    g = torch.zeros_like(z) if g is None else g.detach().reshape(z.shape)
    return flat, z, fz, g, zr.detach()


def _logit_surrogate(flat, fz, grad_a):
    """mean_k f(z_k) (f's own parameters) + Σ_d ĝ_a (a − stopgrad a): value mean_k f, gradient ĝ_a in the logits, and
    ĝ_a's dependence on a control variate's parameters kept for :meth:`GradEstimate.variance` (the term is 0, so
    the surrogate itself gives them no gradient)."""
    return (grad_a * (flat - flat.detach())).sum(-1) + fz.mean(0)


def _double_cv(view, f, K, control_variate):
    """Double control variates (Titsias & Shi, 2022; :func:`estimators.functional.double_cv_logit_gradient`): ĝ_a for
    the logits, f's own gradient at the samples; α from ``control_variate`` (:class:`DoubleCVControlVariate`; none:
    α = 0 held, RLOO).  f must be differentiable in z (it is differentiated at the binary samples).  The direct
    dependence of f on the logits is kept (zero-mean; the registered estimator drops it)."""
    if control_variate is not None and not isinstance(control_variate, DoubleCVControlVariate):
        raise IncompatibleError("estibench.grad: 'double_cv' takes control_variate=DoubleCVControlVariate() (its α), "
                                f"got {type(control_variate).__name__}")
    flat, z, fz, g, sample = _with_gradient(view, f, K)
    alpha = (control_variate.alpha if control_variate is not None else flat.new_zeros(())).reshape(1)
    grad_a = double_cv_logit_gradient(flat.detach(), z, fz.detach(), g, alpha)
    return _logit_surrogate(flat, fz, grad_a), fz.detach().mean(0), sample


def _rodeo(view, f, K, control_variate):
    """RODEO (Shi et al., 2022; :func:`estimators.functional.rodeo_logit_gradient`): ĝ_a for the logits, f's own
    gradient at the samples; NN_ψ, α and β from ``control_variate`` (:class:`RodeoControlVariate`; none: α = β = 0
    held, RLOO).  f must be differentiable in z.  The direct dependence of f on the logits is kept (zero-mean)."""
    if control_variate is not None and not isinstance(control_variate, RodeoControlVariate):
        raise IncompatibleError("estibench.grad: 'rodeo' takes control_variate=RodeoControlVariate(hidden) (its "
                                f"NN_ψ, α and β), got {type(control_variate).__name__}")
    flat, z, fz, g, sample = _with_gradient(view, f, K)
    if control_variate is None:
        control, alpha, beta = torch.zeros_like, flat.new_zeros(1), flat.new_zeros(1)
    else:
        control, alpha, beta = control_variate, control_variate.alpha.reshape(1), control_variate.beta.reshape(1)
    grad_a = rodeo_logit_gradient(flat.detach(), z, fz.detach(), g, control, alpha, beta)
    return _logit_surrogate(flat, fz, grad_a), fz.detach().mean(0), sample


#: the methods of this family, by their registry names
METHODS = (
    Method("relax", _DISCRETE, _relax, {"control_variate": None}, unbiased=True),
    Method("rebar", _DISCRETE, _rebar, {"control_variate": None}, unbiased=True, relaxed=True),
    Method("double_cv", _BERNOULLI, _double_cv, {"control_variate": None}, unbiased=True, particles=2,
           min_particles=2),
    Method("rodeo", _BERNOULLI, _rodeo, {"control_variate": None}, unbiased=True, particles=2, min_particles=2),
)
