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
or any other distribution with ``sample`` and ``log_prob``.  What each estimator needs (one module per family):

* score function (:mod:`.score`): ``reinforce``, ``rloo`` (``particles ≥ 2``), any distribution; ``vimco`` (Mnih &
  Rezende, 2016; ``particles ≥ 2``) is the one method with another objective (``Method.objective == "bound"``): f
  returns per-particle log-weights log w(z_k) (e.g. log p(x, z) − log q(z)), the estimate is of
  ∇ E[log (1/K) Σ_k exp f(z_k)], the K-sample bound, and ``value`` is that bound;
* coupled samples (:mod:`.coupled`): ``arm``, ``disarm`` and ``arms`` (``particles ≥ 2``, K mutually antithetic
  samples from a Dirichlet copula) on Bernoulli latents; ``carms`` (``particles ≥ 2``) and ``categorical_disarm``
  (``particles`` counts antithetic pairs: f is evaluated at 2K points) on categorical latents; option ``variant`` as
  the registered estimators' (the unbiased default; ``arms_code``, ``carms_code`` are the reference codes' biased
  variants);
* relaxations and straight-through (:mod:`.relaxed`; biased, their docstrings say how): ``f`` must accept relaxed
  values — numbers in [0, 1] for Bernoulli latents, for categorical ones one-hot codes relaxed on the simplex,
  ``[K, *batch, *event, C]``, whether ``dist`` is a ``Categorical`` or a ``OneHotCategorical``.  ``concrete`` and
  ``zgr`` (Bernoulli or categorical), ``straight_through`` and ``gumbel_st`` (Bernoulli), ``reinmax``,
  ``gumbel_rao`` and ``gst`` (categorical), and on Bernoulli latents the DVAE smoothings ``spike_exp``,
  ``overlap_exp``, ``overlap_power``, ``overlap_logistic`` (option ``beta``; f gets ζ, on the real line for the
  logistic) and GumBolt's relaxation ``gumbolt``, which estimate the gradient of the smoothed objective E_ρ[f(ζ)];
* learned control variates (:mod:`.control_variates`), each an ``nn.Module`` whose parameters you train by
  minimising :meth:`GradEstimate.variance`, all unbiased for every value of those parameters: ``relax`` (Grathwohl
  et al., 2018; Bernoulli or categorical) with ``control_variate=`` a module of the relaxed sample (default
  :class:`RelaxControlVariate`) or RELAX's discrete form η·f(σ_λ(z)) + r_ρ(z) (``RebarControlVariate(residual=…)``,
  f must accept relaxed values); ``rebar`` (Tucker et al., 2017) with η·f(σ_λ(z)) (:class:`RebarControlVariate`);
  ``double_cv`` and ``rodeo`` (Bernoulli, ``particles ≥ 2``; f must be differentiable in z, as their Taylor and
  Stein terms take its gradient at the binary samples) with :class:`DoubleCVControlVariate` and
  :class:`RodeoControlVariate` (none: the coefficients held at 0, which is RLOO);
* f beyond the samples (:mod:`.enumeration`): ``indecater`` (Bernoulli or categorical; f is also evaluated, without
  gradient, at D·C·K points: each sample with one variable set to each category) and ``unordered_set`` (Bernoulli
  or categorical, 2 ≤ K ≤ C^D distinct states from a stochastic beam search, option ``nodes``; ``value`` is the
  set's unbiased estimate of E[f]);
* estimators that need a model's structure (``nvil``, ``muprop``, the wake-sleep family, ``gumbolt_pd``, the
  continuous ``vae``/``iwae``) are refused in one line that says what they need; use them through a model
  (``estibench.models``' contract).

One implementation: the arithmetic of every estimator here is the function the registered estimator calls
(:mod:`estimators.functional`, and the soft functions of ``reinmax``, ``gumbel_rao``, ``gst`` and ``zgr``), the
samplers are the registered ones, and the options' defaults are the registered estimators' (the final temperature or
β where those anneal: anneal by passing your own).  The registered ``rebar`` and Bernoulli ``relax`` run on a
model's layers with the reference codes' variants; on one layer with the paper's options they give this module's
gradient.  ``tests/test_grad*.py`` check that, on the same draws, this API and the registered estimator on an
equivalent model give the same gradient, and that every unbiased method matches the exact gradient of an
enumerable E_q[f] at randomised parameters (and, for the learned control variates, at trained ones).
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Optional, Tuple

from ..base import IncompatibleError
from . import control_variates, coupled, enumeration, relaxed, score
from .control_variates import DoubleCVControlVariate, RebarControlVariate, RelaxControlVariate, RodeoControlVariate
from .core import GradEstimate, Method, _view

__all__ = ["grad", "GradEstimate", "METHODS", "NOT_OFFERED", "available", "DoubleCVControlVariate",
           "RebarControlVariate", "RelaxControlVariate", "RodeoControlVariate"]


#: the estimators :func:`grad` offers, by their registry names (one family per module)
METHODS: Dict[str, Method] = {m.name: m for family in (score, coupled, relaxed, control_variates, enumeration)
                              for m in family.METHODS}


def available() -> Tuple[str, ...]:
    """The estimator names :func:`grad` takes."""
    return tuple(METHODS)


#: why some registered estimators are not offered here (the others: the model capabilities they declare)
NOT_OFFERED = {
    "iwae": "reparameterised continuous latents and a model's bound",
    "vae": "reparameterised continuous latents and a model's bound",
    "ws": "a model's joint p(x, z) to sample (its sleep phase) and the data x",
    "ww": "a model's log p(x, z) and log q(z | x) (self-normalised weights), not f(z)",
    "dww": "a model's log p(x, z), log q(z | x) and its prior (defensive mixture), not f(z)",
    "rw+rws": "a model's joint p(x, z) and the data x",
    "contrastive_rws": "a model's joint p(x, z) and the data x",
    "nvil": ("a baseline network of the data x and a model's layered Bernoulli interface (its learning signal is the "
             "K-sample bound with a direct term that assumes f = log p − log q)"),
    "muprop": ("a model's layered Bernoulli interface (the mean-field pass through its layers, f at relaxed values) "
               "and a baseline network of the data x"),
    "gumbolt_pd": ("a model's bound split into its terms (log q̃ with its logits held constant, the KL-annealing "
                   "weight on the prior and entropy terms); on samples and f(z) it is 'gumbolt' with that f"),
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
