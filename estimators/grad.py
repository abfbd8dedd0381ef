"""``estibench.grad``: the registered estimators on a ``torch.distributions`` object and a function of your own, for
your own training loop (Storchastic's ``storch.method``, Pyro's baselines, TensorFlow Probability's
``tfp.vi.GradientEstimators`` offer the same kind of call).

    import estibench
    q = torch.distributions.Independent(torch.distributions.Bernoulli(logits=encoder(x)), 1)
    out = estibench.grad(q, lambda z: decoder_log_prob(x, z) - q.log_prob(z), "disarm")
    (-out.surrogate.mean()).backward()           # or out.loss
    optimiser.step()

``grad(dist, f, estimator, particles=None, **options)`` draws the samples the estimator needs from ``dist``,
evaluates ``f`` at them and returns a :class:`GradEstimate`: ``surrogate`` ``[*batch]`` (``dist.batch_shape``),
whose gradient — with respect to the distribution's parameters and to whatever ``f`` closes over — is the
estimator's estimate of ∇ E_q[f(z)] per item; ``value``, the mean of f over the particles (no gradient); and
``samples``, the points f was evaluated at.  ``f(z)`` takes ``z`` ``[K, *batch, *event]`` and returns
``[K, *batch]``: one value per particle and item, to maximise.

Distributions: ``Bernoulli``, ``Categorical``, ``OneHotCategorical``, ``Independent`` of one of them, and, for the
score-function estimators, a tuple of distributions with one batch shape (a factorised product: ``f`` gets a tuple)
or any other distribution with ``sample`` and ``log_prob``.  What each estimator needs:

* score function (``reinforce``, ``rloo``): any distribution; ``rloo`` needs ``particles ≥ 2``;
* ``arm``, ``disarm``: Bernoulli latents; f is evaluated at each sample and at its antithetic partner;
* relaxations and straight-through (``concrete``, ``straight_through``, ``gumbel_st``, ``reinmax``, ``gumbel_rao``,
  ``gst``): ``f`` must accept relaxed values (numbers in [0, 1], or for categorical latents one-hot codes relaxed
  on the simplex, ``[K, *batch, *event, C]``, whether ``dist`` is a ``Categorical`` or a ``OneHotCategorical``);
  they are biased (their docstrings say how);
* ``relax`` (Grathwohl et al., 2018) and ``rebar`` (Tucker et al., 2017): Bernoulli or categorical latents and a
  control variate whose parameters you train by minimising :meth:`GradEstimate.variance`: for ``relax`` an
  ``nn.Module`` of the relaxed sample (``control_variate=``; a default: :class:`RelaxControlVariate`), for ``rebar``
  η·f(σ_λ(z)) with learnable η and λ (:class:`RebarControlVariate`; f must accept relaxed values); both unbiased for
  every value of those parameters, also where the control variate depends on f's or q's parameters;
* estimators that need a model's structure (its data x, its layers, its bound: ``vimco``, ``nvil``, ``muprop``,
  the wake-sleep family, the DVAE smoothings, …) are refused in one line that says what they need; use
  them through a model (``estibench.models``' contract).

One implementation: the arithmetic of every estimator here is the function the registered estimator calls
(:mod:`estimators.functional`, and the soft functions of ``reinmax``, ``gumbel_rao`` and ``gst``; ``rebar`` here is
RELAX's surrogate with REBAR's control variate, while the registered ``rebar`` runs on a model's layers with its
reference-code variants), and the
temperatures' and options' defaults are the registered estimators' (the final temperature where those anneal: anneal
by passing your own).  ``tests/test_grad.py`` checks that, on the same draws, this API and the registered estimator
on an equivalent model give the same gradient, and that every unbiased method matches the exact gradient of an
enumerable E_q[f] at randomised parameters.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, OneHotCategorical, RelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from .base import IncompatibleError
from .functional import (arm_logit_gradient, disarm_logit_gradient, gumbel_straight_through_bernoulli, logit, relax,
                         rloo, score_function, straight_through, straight_through_bernoulli)
from .gst import gst_soft
from .gumbel_rao import gumbel_rao_soft
from .onehot import onehot_sample
from .rebar import conditional_logit, uniform_noise
from .reinmax import reinmax_soft
from .relax import gumbel_pair

__all__ = ["grad", "GradEstimate", "METHODS", "available", "RelaxControlVariate", "RebarControlVariate"]


@dataclass
class GradEstimate:
    """What :func:`grad` returns: ``surrogate`` ``[*batch]`` (its gradient is the estimate of ∇ E_q[f] per item),
    ``value`` ``[*batch]`` (mean_k f(z_k), no gradient) and ``samples`` (the points f was evaluated at)."""

    surrogate: torch.Tensor
    value: torch.Tensor
    samples: object

    @property
    def loss(self) -> torch.Tensor:
        """−surrogate averaged over the items: a scalar to minimise."""
        return -self.surrogate.mean()

    def variance(self, parameters) -> torch.Tensor:
        """‖∇ loss‖² over ``parameters`` (the distribution's, e.g. the encoder's), differentiable (``create_graph``):
        the single-sample estimate of the gradient's second moment, whose gradient with respect to a control
        variate's parameters is that of the estimate's variance (its mean does not depend on them; RELAX,
        Grathwohl et al., 2018, Eq. 10).  Minimise it for the control variate's parameters only, e.g.
        ``cv_opt.zero_grad(); out.variance(encoder.parameters()).backward(inputs=list(cv.parameters()))``."""
        grads = torch.autograd.grad(self.loss, [p for p in parameters], create_graph=True, allow_unused=True)
        return sum((g ** 2).sum() for g in grads if g is not None)


# -- the distribution, as the methods see it ------------------------------------------------------------------------
@dataclass
class _View:
    kind: str  # "bernoulli", "categorical", "product" or "any"
    dist: object
    batch: Tuple[int, ...]
    logits: Optional[torch.Tensor] = None  # bernoulli: [*batch, *event]; categorical: normalised [*batch, *e, C]
    indices: bool = False  # categorical given as a Categorical (f gets one-hot codes from the relaxations)


def _view(dist) -> _View:
    if isinstance(dist, (tuple, list)):
        if not dist or not all(isinstance(d, Distribution) for d in dist):
            raise TypeError("estibench.grad: a product is a non-empty tuple of torch.distributions objects")
        batches = {tuple(d.batch_shape) for d in dist}
        if len(batches) != 1:
            raise ValueError(f"estibench.grad: the factors of a product need one batch shape, got {sorted(batches)}")
        return _View("product", tuple(dist), batches.pop())
    if not isinstance(dist, Distribution):
        raise TypeError(f"estibench.grad: dist must be a torch.distributions object (or a tuple of them), got "
                        f"{type(dist).__name__}")
    base = dist.base_dist if isinstance(dist, Independent) else dist
    batch = tuple(dist.batch_shape)
    if isinstance(base, Bernoulli):
        return _View("bernoulli", dist, batch, logits=base.logits)
    if isinstance(base, OneHotCategorical):
        return _View("categorical", dist, batch, logits=torch.log_softmax(base.logits, -1))
    if isinstance(base, Categorical):
        return _View("categorical", dist, batch, logits=torch.log_softmax(base.logits, -1), indices=True)
    return _View("any", dist, batch)


def _sample(view: _View, K: int):
    if view.kind == "product":
        return tuple(d.sample((K,)) for d in view.dist)
    return view.dist.sample((K,))


def _log_prob(view: _View, z) -> torch.Tensor:
    if view.kind == "product":
        return sum(d.log_prob(zi) for d, zi in zip(view.dist, z))
    return view.dist.log_prob(z)


def _evaluate(f: Callable, z, K: int, batch: Tuple[int, ...]) -> torch.Tensor:
    out = f(z)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (K, *batch):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"estibench.grad: f must return one value per particle and item, a tensor of shape "
                         f"[K, *batch] = {[K, *batch]}; got {got}")
    return out


# -- the methods ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """One estimator offered by :func:`grad`: the distributions it takes (``kinds``), its particle count (default and
    least), its options with their defaults, whether it is unbiased and whether f gets relaxed values; ``run(view, f,
    K, **options)`` → (surrogate, value, samples)."""

    name: str
    kinds: frozenset
    run: Callable
    options: Dict[str, object]
    unbiased: bool
    relaxed: bool = False
    particles: int = 1
    min_particles: int = 1


def _score(view, f, K):
    z = _sample(view, K)
    fz = _evaluate(f, z, K, view.batch)
    return score_function(fz, _log_prob(view, z)).mean(0), fz.detach().mean(0), z


def _rloo(view, f, K):
    z = _sample(view, K)
    fz = _evaluate(f, z, K, view.batch)
    return rloo(fz, _log_prob(view, z)), fz.detach().mean(0), z


def _antithetic(pair_gradient):
    def run(view, f, K):
        a = view.logits
        event = a.shape[len(view.batch):]
        flat = a.reshape(*view.batch, -1)
        flat_k = flat.expand(K, *flat.shape)
        u = torch.rand(flat_k.shape, dtype=a.dtype, device=a.device)
        eps = logit(u)
        b = (eps < flat_k.detach()).to(a.dtype)
        b_anti = (-eps < flat_k.detach()).to(a.dtype)
        z = b.reshape(K, *view.batch, *event)
        f_base = _evaluate(f, z, K, view.batch)
        with torch.no_grad():
            f_anti = _evaluate(f, b_anti.reshape(K, *view.batch, *event), K, view.batch)
            weight = pair_gradient(u, flat_k.detach(), b, b_anti, f_base.detach(), f_anti)
        return (weight * flat_k).sum(-1).mean(0) + f_base.mean(0), f_base.detach().mean(0), z
    return run


def _arm_weight(u, a, b, b_anti, f_base, f_anti):
    return arm_logit_gradient(u, f_base, f_anti)


def _disarm_weight(u, a, b, b_anti, f_base, f_anti):
    return disarm_logit_gradient(a, b, b_anti, f_base, f_anti)


def _bernoulli_pathwise(draw):
    def run(view, f, K, **options):
        a = view.logits
        a_k = a.expand(K, *a.shape)
        z = draw(a_k, **options)
        fz = _evaluate(f, z, K, view.batch)
        return fz.mean(0), fz.detach().mean(0), z
    return run


def _concrete(view, f, K, temperature):
    a = view.logits
    tau = torch.tensor(temperature, dtype=a.dtype, device=a.device)
    if view.kind == "bernoulli":
        z = RelaxedBernoulli(tau, logits=a.expand(K, *a.shape), validate_args=False).rsample()
    else:
        z = ExpRelaxedCategorical(tau, logits=a, validate_args=False).rsample((K,)).exp()
    fz = _evaluate(f, z, K, view.batch)
    return fz.mean(0), fz.detach().mean(0), z


def _straight_through_onehot(soft_of):
    def run(view, f, K, **options):
        ell = view.logits
        y = onehot_sample(ell, K)
        z = straight_through(y, soft_of(ell, y, **options))
        fz = _evaluate(f, z, K, view.batch)
        return fz.mean(0), fz.detach().mean(0), z
    return run


def _st_bernoulli(a_k):
    return straight_through_bernoulli(a_k, torch.rand(a_k.shape, dtype=a_k.dtype, device=a_k.device))


def _gumbel_st(a_k, temperature):
    return gumbel_straight_through_bernoulli(a_k, torch.rand(a_k.shape, dtype=a_k.dtype, device=a_k.device),
                                             temperature)


def _reinmax(ell, y, temperature):
    if not temperature >= 1.0:
        raise IncompatibleError(f"estibench.grad: reinmax needs a temperature ≥ 1 (as its reference code), got "
                                f"{temperature}")
    return reinmax_soft(ell, y, temperature)


def _gumbel_rao(ell, y, samples, temperature):
    return gumbel_rao_soft(ell, y, int(samples), temperature)


def _gst(ell, y, gap, temperature):
    return gst_soft(ell, y, gap, temperature)


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
    registered ``rebar``'s starting values)."""

    def __init__(self, eta: float = 1.0, temperature: float = 0.5):
        super().__init__()
        if not temperature > 0:
            raise IncompatibleError(f"estibench.grad: rebar needs a positive temperature, got {temperature}")
        self.eta = nn.Parameter(torch.tensor(float(eta)))
        self.log_temperature = nn.Parameter(torch.tensor(float(temperature)).log())

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
    return _control_variate_surrogate(view, f, K, lambda t: control_variate(t, nb))


def _rebar(view, f, K, control_variate):
    """REBAR (Tucker et al., 2017, §3, Eq. 8): RELAX's surrogate with c(z) = η·f(σ_λ(z)) (:class:`RebarControlVariate`;
    a fresh one, η = 1 and λ = 0.5 held, when none is given), so f must accept relaxed values.  Unbiased for every η,
    λ; f's own parameters get ∇f(b) plus η(∇f(σ_λ(z)) − ∇f(σ_λ(z̃))), of zero mean."""
    cv = RebarControlVariate() if control_variate is None else control_variate
    if not isinstance(cv, RebarControlVariate):
        raise IncompatibleError("estibench.grad: 'rebar' takes control_variate=RebarControlVariate(eta, temperature) "
                                f"(its η and λ), got {type(cv).__name__}")
    bernoulli = view.kind == "bernoulli"
    return _control_variate_surrogate(view, f, K, lambda t: cv.eta * _evaluate(f, cv.relaxed(t, bernoulli), K,
                                                                                  view.batch))


# -- ANCHOR-COUPLED: coupled samples (arms, carms, categorical_disarm) go above this line ------------------------------
# -- ANCHOR-ENUMERATION: enumeration, sets and Stein/double control variates (indecater, unordered_set, rodeo,
#    double_cv, zgr) go above this line -------------------------------------------------------------------------------
# -- ANCHOR-WEIGHTS: multi-sample bounds and baselines (vimco, nvil, muprop) go above this line -----------------------
# -- ANCHOR-SMOOTHING: the DVAE smoothings (spike_exp, overlap_*, gumbolt) go above this line ------------------------


_ANY = frozenset({"bernoulli", "categorical", "product", "any"})
_BERNOULLI = frozenset({"bernoulli"})
_CATEGORICAL = frozenset({"categorical"})
_DISCRETE = frozenset({"bernoulli", "categorical"})

#: the estimators :func:`grad` offers, by their registry names
METHODS: Dict[str, Method] = {m.name: m for m in (
    Method("reinforce", _ANY, lambda v, f, K: _score(v, f, K), {}, unbiased=True),
    Method("rloo", _ANY, lambda v, f, K: _rloo(v, f, K), {}, unbiased=True, particles=2, min_particles=2),
    Method("arm", _BERNOULLI, _antithetic(_arm_weight), {}, unbiased=True),
    Method("disarm", _BERNOULLI, _antithetic(_disarm_weight), {}, unbiased=True),
    Method("straight_through", _BERNOULLI, _bernoulli_pathwise(_st_bernoulli), {}, unbiased=False, relaxed=True),
    Method("gumbel_st", _BERNOULLI, _bernoulli_pathwise(_gumbel_st), {"temperature": 0.5}, unbiased=False,
           relaxed=True),
    Method("concrete", _DISCRETE, _concrete, {"temperature": 0.5}, unbiased=False, relaxed=True),
    Method("reinmax", _CATEGORICAL, _straight_through_onehot(_reinmax), {"temperature": 1.0}, unbiased=False,
           relaxed=True),
    Method("gumbel_rao", _CATEGORICAL, _straight_through_onehot(_gumbel_rao), {"samples": 100, "temperature": 1.0},
           unbiased=False, relaxed=True),
    Method("gst", _CATEGORICAL, _straight_through_onehot(_gst), {"gap": 1.0, "temperature": 1.0}, unbiased=False,
           relaxed=True),
    Method("relax", _DISCRETE, _relax, {"control_variate": None}, unbiased=True),
    Method("rebar", _DISCRETE, _rebar, {"control_variate": None}, unbiased=True, relaxed=True),
    # METHODS-ANCHOR-COUPLED (entries above this line)
    # METHODS-ANCHOR-ENUMERATION (entries above this line)
    # METHODS-ANCHOR-WEIGHTS (entries above this line)
    # METHODS-ANCHOR-SMOOTHING (entries above this line)
)}


def available() -> Tuple[str, ...]:
    """The estimator names :func:`grad` takes."""
    return tuple(METHODS)


#: why some registered estimators are not offered here (the others: the model capabilities they declare)
NOT_OFFERED = {
    "vimco": "a model's log p(x, z) and log q(z | x): its baselines come from the K-sample bound, not from f(z)",
    "iwae": "reparameterised continuous latents and a model's bound",
    "vae": "reparameterised continuous latents and a model's bound",
    "ws": "a model's joint p(x, z) to sample (its sleep phase) and the data x",
    "ww": "a model's log p(x, z) and log q(z | x) (self-normalised weights), not f(z)",
    "dww": "a model's log p(x, z), log q(z | x) and its prior (defensive mixture), not f(z)",
    "rw+rws": "a model's joint p(x, z) and the data x",
    "contrastive_rws": "a model's joint p(x, z) and the data x",
    "nvil": "a baseline network of the data x and a model's layered Bernoulli interface",
    "muprop": "a baseline network of the data x and a model's layered Bernoulli interface",
}


def _refusal(name: str) -> str:
    """Why a registered estimator is not offered here, in one line."""
    from estibench.estimators import REGISTRY
    offered = ", ".join(METHODS)
    if name in NOT_OFFERED:
        return (f"estibench.grad: {name!r} needs {NOT_OFFERED[name]}; use it through a model (estibench.models' "
                f"contract); offered here: {offered}")
    if name not in REGISTRY.names():
        close = difflib.get_close_matches(name, sorted(set(METHODS) | set(REGISTRY.names())), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"estibench.grad: unknown estimator {name!r}{hint} (offered here: {offered})"
    factory = REGISTRY.factory(name)
    impls = getattr(factory, "implementations", (factory,))
    declared = [impl.needs for impl in impls if not isinstance(impl.needs, property)]  # a property: per option
    needs = sorted({str(n) for group in declared for n in group})
    what = f"the model capabilities {', '.join(needs)}" if needs else "a model's log p(x, z) and log q(z | x)"
    return (f"estibench.grad: {name!r} needs {what}, not only samples and f(z): use it through a model "
            f"(estibench.models' contract); offered here: {offered}")


def grad(dist, f: Callable, estimator: str = "rloo", particles: Optional[int] = None, **options) -> GradEstimate:
    """The estimate of ∇ E_{z ~ dist}[f(z)] by ``estimator`` (see the module docstring): draws ``particles`` samples
    (default: the estimator's, 2 for ``rloo``, else 1), evaluates ``f`` and returns a :class:`GradEstimate`.
    Unknown names, options, particle counts and distributions an estimator cannot take are refused with one line
    (``ValueError``/``TypeError``) before anything is drawn."""
    method = METHODS.get(estimator)
    if method is None:
        raise IncompatibleError(_refusal(str(estimator)))
    unknown = sorted(set(options) - set(method.options))
    if unknown:
        known = ", ".join(method.options) or "none"
        raise IncompatibleError(f"estibench.grad: {estimator!r} takes no option {', '.join(unknown)} (its options: "
                                f"{known})")
    K = method.particles if particles is None else particles
    if isinstance(K, bool) or not isinstance(K, int) or K < method.min_particles:
        raise IncompatibleError(f"estibench.grad: {estimator!r} needs an integer particles ≥ {method.min_particles}, "
                                f"got {particles!r}")
    if not callable(f):
        raise TypeError(f"estibench.grad: f must be a function of the samples, got {type(f).__name__}")
    view = _view(dist)
    if view.kind not in method.kinds:
        takes = {"bernoulli": "Bernoulli", "categorical": "Categorical or OneHotCategorical"}
        wanted = " or ".join(takes[k] for k in sorted(method.kinds) if k in takes)
        given = "a product" if view.kind == "product" else type(dist).__name__
        raise IncompatibleError(f"estibench.grad: {estimator!r} takes {wanted} latents (or Independent of them); "
                                f"got {given}")
    settings = {**method.options, **options}
    surrogate, value, samples = method.run(view, f, K, **settings)
    return GradEstimate(surrogate, value, samples)
