"""The estimator contract (stated once; every registered estimator follows it).

An estimator turns (model, x, K particles) into gradient estimates for the model's θ and φ and
for its own parameters (baselines, control variates, temperatures).

* ``surrogate(model, x, K)`` returns an :class:`Estimate`: ``loss`` is a scalar to *minimise*
  whose gradient with respect to θ and φ is minus the estimator's gradient estimate of the
  objective, averaged over the B data points of each replicate and summed over replicates
  (so replicates stay independent); ``objective`` is the value, per replicate ``[R]``, of the
  objective the estimator targets (for logging).
* ``gradients(model, x, K)`` returns ``(model_grads, own_grads, objective)``: gradients of the
  loss for ``model.parameters()`` and ``self.parameters()`` in order.  The default
  differentiates ``surrogate``; estimators whose own parameters follow a different objective
  (RELAX minimises the variance of the φ-gradient) override it.
* ``guide_target`` names the exact objective whose φ-gradient the estimator estimates
  ("iwae": ELBO_IS^K of RWS Eq. 1, "inclusive_kl": −KL(p_θ(z|x) ‖ q_φ(z|x)) on the data of
  RWS Eq. 4, "elbo": the ELBO whatever K, for K-sample ELBO averages); θ is always trained with the wake-θ / IWAE gradient, so ``generative_target``
  is "iwae" unless said otherwise.  ``unbiased`` says whether E[estimate] equals that exact
  gradient; the statistical tests check it.
* ``latent_types`` (the latent kinds it supports), ``min_particles``, ``needs`` (the model
  capabilities it uses, :mod:`models.protocols`: e.g. the layered Bernoulli interface, a relaxed log
  joint) and ``handles`` (special capabilities it deals with: an unnormalised prior's −∇ log Z) let
  :meth:`check` refuse an incompatible model, particle count or setting with a one-line error
  before any work starts.  ``uses`` names the capabilities it uses where a model provides them and
  does without otherwise (the training mean, to centre a baseline's inputs): never a reason to refuse.
  An estimator never inspects a model beyond what it declared: it asks :meth:`provided` whether the
  model offers a capability it declared, and reads only that capability's members.
* One name, one implementation per latent kind: an estimator whose algorithm differs between
  latent kinds is a :class:`Family` of implementations (registered as ``one_of(A, B)``); the
  implementation that fits the model is chosen by the declarations above, and :meth:`bind` binds
  it and returns it; the family holds it and delegates to it.
* ``variants`` names the reference variants the estimator offers through its ``variant`` option
  (e.g. a paper's form and its authors' released code), the default first; the generic tests run
  every one of them.
* ``own_lr_multiplier`` scales the learning rate of the estimator's own parameters (baselines and
  control variates: 10 in the REBAR code for NVIL, MuProp, REBAR and RELAX on SBNs).
* ``bind(model)`` creates the estimator's own parameters for the model (one replicate per model
  replicate); ``set_progress(fraction)`` receives the training progress in [0, 1] for schedules.
  ``bound_replicates`` records the replicate count of the model it was last bound to (``None``:
  never bound); :meth:`prepare` checks a pair and binds an estimator that was never bound, which
  the harness's entry points call, so an unbound estimator works there instead of failing deep
  inside (and one bound to a model of another replicate count is refused with one line).
"""
from __future__ import annotations

import abc
import functools
import sys
from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch import nn

from estibench.models.protocols import SPECIAL, capabilities, refusal


#: every latent kind: for estimators that only sample the guide and score its draws (score function,
#: self-normalised weights), whatever the latents are
ANY_LATENT = frozenset({"categorical", "multicategorical", "bernoulli", "normal"})
#: ANY_LATENT and structured latents (AIR: the guide samples a sequence of discrete and continuous choices and
#: scores it): for the estimators that only need z ~ q_φ(·|x), log q_φ(z|x) and log p_θ(x, z)
SAMPLED_LATENTS = ANY_LATENT | {"structured"}


class IncompatibleError(ValueError):
    """An estimator cannot be used with this model / particle count / setting."""


@dataclass
class Estimate:
    loss: torch.Tensor
    objective: torch.Tensor


from .functional import weights as _weights  # noqa: E402  (the arithmetic of logmeanexp, wake_phi, wake_theta)
logmeanexp = _weights.logmeanexp  # re-exported: log (1/n) Σ exp x along dim


def batch_loss(per_point: torch.Tensor) -> torch.Tensor:
    """Minus the per-replicate mean over data points, summed over replicates (``[R, B]`` → scalar)."""
    return -per_point.mean(-1).sum()


class Estimator(nn.Module, abc.ABC):
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__doc__:  # one module per plugin: its docstring (paper, equation) documents the class
            cls.__doc__ = sys.modules[cls.__module__].__doc__
        if "bind" in cls.__dict__:  # every bind records what it bound to
            inner = cls.__dict__["bind"]

            @functools.wraps(inner)
            def bind(self, model, _inner=inner):
                out = _inner(self, model)
                self.bound_replicates = model.replicates
                return out

            cls.bind = bind

    latent_types: frozenset = frozenset({"categorical", "bernoulli"})
    min_particles: int = 1
    needs: frozenset = frozenset()
    handles: frozenset = frozenset()
    #: capabilities it uses where the model provides them and does without otherwise (never a reason to refuse)
    uses: frozenset = frozenset()
    #: the named variants it offers (option ``variant``), default first; every table label names a non-default one
    variants: Tuple[str, ...] = ()
    #: how the reports print its name (default: the registry name)
    display_name: str = ""
    #: rough cost per particle relative to REINFORCE, used only to start the longest cells first
    cost_hint: float = 1.0
    guide_target: str = "iwae"
    generative_target: str = "iwae"
    unbiased: bool = True
    own_lr_multiplier: float = 1.0
    #: True when :meth:`gradients` differentiates the estimate itself (a variance objective for the estimator's
    #: own parameters: REBAR, RELAX); ``--compile`` then leaves the estimator eager (harness.runner)
    second_order: bool = False
    #: the changes of this class's code that altered its numbers, oldest first (``models.registry.Revision``): each
    #: raises the numerics version, and with it the key, of every cell it runs in (``harness.runner``)
    revisions: Tuple = ()
    bound_replicates = None

    @property
    def name(self) -> str:
        return self.registry_name  # the registry sets it on the class (a family's implementations: on the instance)

    def check(self, model, num_particles: int) -> None:
        kind = model.latent.kind
        if kind not in self.latent_types:
            raise IncompatibleError(
                f"estimator {self.name!r} does not support {kind} latents (model "
                f"{type(model).__name__}); it supports {', '.join(sorted(self.latent_types))}"
            )
        why = refusal(model, self.needs, self.handles, who=f"estimator {self.name!r}")
        if why:
            raise IncompatibleError(why)
        if int(num_particles) != num_particles or num_particles < self.min_particles:
            raise IncompatibleError(f"estimator {self.name!r} needs at least {self.min_particles} "
                                    f"particle(s), got {num_particles}")

    def provided(self, model, capability) -> bool:
        """Whether ``model`` provides ``capability``, one this estimator declared (``needs``, ``handles`` or
        ``uses``): the one way an estimator asks what a model offers (an undeclared one is a TypeError)."""
        if capability not in self.needs | self.handles | self.uses:
            raise TypeError(f"estimator {self.name!r} asks for the {capability}, which it does not declare "
                            f"(needs, handles or uses)")
        return capability in capabilities(model)

    def bind(self, model) -> "Estimator":
        self.bound_replicates = model.replicates
        return self

    def prepare(self, model, num_particles: int) -> "Estimator":
        """:meth:`check` the pair, then bind the estimator if it was never bound (its own parameters
        do not exist yet, so nothing is lost); refuse one bound to a model of another size."""
        self.check(model, num_particles)
        if self.bound_replicates is None:
            self.bind(model)
            self.to(model.device)
        elif self.bound_replicates != model.replicates:
            raise IncompatibleError(f"estimator {self.name!r} is bound to a model with {self.bound_replicates} "
                                    f"replicate(s), this one has {model.replicates}: call "
                                    f"estimators.get({self.name!r}).bind(model) for it")
        return self

    def set_progress(self, fraction: float) -> None:
        pass

    @abc.abstractmethod
    def surrogate(self, model, x: torch.Tensor, num_particles: int) -> Estimate:
        """The estimator's surrogate loss and objective value (see the module docstring)."""

    def gradients(self, model, x, num_particles, with_own: bool = True
                  ) -> Tuple[List[torch.Tensor], List[torch.Tensor], torch.Tensor]:
        """Gradients of the loss; ``with_own=False`` lets an estimator skip work for its own parameters."""
        est = self.surrogate(model, x, num_particles)
        model_params, own = list(model.parameters()), list(self.parameters())
        grads = torch.autograd.grad(est.loss, model_params + own, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(model_params + own, grads)]
        return grads[: len(model_params)], grads[len(model_params):], est.objective


class _Declared:
    """A declaration of a :class:`Family` (``latent_types``, ``needs``, ``own_lr_multiplier``, …): read on the
    class, or on a family not yet bound, it is what the name promises over all its implementations (set by
    :func:`one_of`); read on a bound family, it is its implementation's own."""

    def __init__(self, value):
        self.value = value

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, family, owner=None):
        implementation = None if family is None else family.__dict__.get("_modules", {}).get("implementation")
        return self.value if implementation is None else getattr(implementation, self.name)


#: the declarations a family answers with its bound implementation's values (see :class:`_Declared`)
DECLARATIONS = ("latent_types", "min_particles", "needs", "handles", "uses", "variants", "display_name", "cost_hint",
                "guide_target", "generative_target", "unbiased", "own_lr_multiplier", "second_order")


class Family(Estimator):
    """One registered name with one implementation per latent kind (``one_of(A, B, ...)``), by composition.

    Constructed with the name's options, it builds one instance of every implementation (each accepts the
    same options, so they are validated up front).  :meth:`check` picks the first implementation whose
    declarations (``latent_types``, ``needs``, ``handles``) fit the model, or refuses with the first reason
    of the implementation whose capabilities the model lacks least (the first on a tie).  :meth:`bind` binds
    that implementation, keeps it as the submodule ``implementation`` and returns it; the family then
    delegates to it: :meth:`check`, :meth:`surrogate`, :meth:`gradients`, :meth:`set_progress`, its
    declarations (:data:`DECLARATIONS`) and every attribute the family does not have itself (its options,
    before binding those of the first implementation).  Its parameters are the implementation's (under the
    prefix ``implementation.``).  Set an implementation's attribute on the object :meth:`bind` returns: the
    family's own attributes stay the family's."""

    implementations: Tuple[type, ...] = ()

    def __init__(self, **options):
        super().__init__()
        candidates = [impl(**options) for impl in self.implementations]
        for candidate in candidates:  # an implementation answers to the family's name
            object.__setattr__(candidate, "registry_name", type(self).registry_name)
        object.__setattr__(self, "_candidates", candidates)  # a plain list: not submodules until one is bound

    @property
    def implementation(self) -> "Estimator":
        """The implementation the family is bound to (None before :meth:`bind`)."""
        return self._modules.get("implementation")

    @property
    def candidates(self) -> Tuple["Estimator", ...]:
        """One instance of every implementation, built with the family's options (what :meth:`choose` picks from)."""
        return tuple(self._candidates)

    def choose(self, model, num_particles: int = None) -> "Estimator":
        """The implementation that fits ``model`` (and K); otherwise one line saying why none does."""
        fitting_kind = [c for c in self._candidates if model.latent.kind in c.latent_types]
        if not fitting_kind:
            kinds = ", ".join(sorted(type(self).latent_types))
            raise IncompatibleError(f"estimator {self.name!r} does not support {model.latent.kind} latents "
                                    f"(model {type(model).__name__}); it supports {kinds}")
        reasons = []
        for candidate in fitting_kind:
            try:
                candidate.check(model, candidate.min_particles if num_particles is None else num_particles)
            except IncompatibleError as err:
                # the implementation the model lacks least for says best why the pair fails
                have = capabilities(model)
                lacking = (len(set(candidate.needs) - have)
                           + len([c for c in SPECIAL if c in have and c not in candidate.handles]))
                reasons.append((lacking, len(reasons), err))
                continue
            return candidate
        raise min(reasons, key=lambda r: r[:2])[2]

    def check(self, model, num_particles: int) -> None:
        """Before binding: whether some implementation fits; once bound: whether the bound one does."""
        if self.implementation is None:
            self.choose(model, num_particles)
        else:
            self.implementation.check(model, num_particles)

    def bind(self, model) -> "Estimator":
        chosen = self.choose(model)
        chosen.train(self.training)
        chosen.bind(model)
        self._modules["implementation"] = chosen
        return chosen

    def _bound(self, model) -> "Estimator":
        return self.bind(model) if self.implementation is None else self.implementation

    def set_progress(self, fraction: float) -> None:
        for implementation in ([self.implementation] if self.implementation is not None else self._candidates):
            implementation.set_progress(fraction)

    def surrogate(self, model, x, num_particles):
        return self._bound(model).surrogate(model, x, num_particles)

    def gradients(self, model, x, num_particles, with_own: bool = True):
        implementation = self._bound(model)
        if type(implementation).gradients is Estimator.gradients:
            # the default differentiates ``self.surrogate``: the family's, which an instance may replace
            # (``--compile``, harness.runner.compile_surrogate); its parameters are the implementation's, in order
            return Estimator.gradients(self, model, x, num_particles, with_own)
        return implementation.gradients(model, x, num_particles, with_own)

    def __getattr__(self, name):  # what the family does not have: its implementation's (before binding: the first's)
        try:
            return super().__getattr__(name)
        except AttributeError:
            state = self.__dict__
            target = state.get("_modules", {}).get("implementation")
            if target is None:
                candidates = state.get("_candidates")
                if not candidates:
                    raise
                target = candidates[0]
            return getattr(target, name)


def implementation_for(factory, kind: str):
    """The class that runs for a model whose latents are of ``kind``: a family's first implementation that
    supports it (what :meth:`Family.choose` tries first), any other estimator class itself; None when none does."""
    implementations = getattr(factory, "implementations", None) or (factory,)
    return next((i for i in implementations if kind in getattr(i, "latent_types", ())), None)


def one_of(*implementations) -> type:
    """A :class:`Family` of ``implementations`` behind one registry name (``REGISTRY.register(name)(one_of(A, B))``).
    The implementations must agree on what the name promises: its targets and unbiasedness."""
    first = implementations[0]
    for impl in implementations[1:]:
        for attr in ("guide_target", "generative_target", "unbiased"):
            if getattr(impl, attr) != getattr(first, attr):
                raise TypeError(f"{impl.__name__} and {first.__name__} disagree on {attr}")
    name = first.__name__.removesuffix("Categorical").removesuffix("Bernoulli") or first.__name__
    promised = {  # what the name promises before it is bound (the class's values; declarations not named: the default)
        "latent_types": frozenset().union(*(i.latent_types for i in implementations)),
        "handles": frozenset().union(*(i.handles for i in implementations)),  # what some implementation handles
        "uses": frozenset().union(*(i.uses for i in implementations)),
        "guide_target": first.guide_target, "generative_target": first.generative_target,
        "unbiased": first.unbiased, "min_particles": min(i.min_particles for i in implementations),
        "variants": first.variants, "display_name": first.display_name, "cost_hint": first.cost_hint,
        "second_order": any(i.second_order for i in implementations)}
    declared = {attr: _Declared(promised.get(attr, getattr(Estimator, attr))) for attr in DECLARATIONS}
    family = type(name, (Family,), {
        "implementations": tuple(implementations), "__doc__": first.__doc__, "__module__": first.__module__,
        **declared})
    return family


def log_partition_term(model, negatives=None) -> torch.Tensor:
    """The −log Z part of the objective, per replicate ``[R]``, for a model with an unnormalised prior
    (UNNORMALISED_PRIOR; 0 for any other model).  Subtract it from a per-point objective built on
    ``log_joint`` (which omits −log Z).  Its value is ``model.log_partition()`` (exact, or the model's
    estimate), without gradient; its θ-gradient is the negative-phase estimate of
    ∇_θ log Z = E_p[∇_θ log p*(z)], the mean of ∇_θ log p*(z⁻) over ``model.negative_samples()``
    (unbiased when those are exact samples of the prior: DVAE#'s surrogate −mean E(stop-grad z⁻), the
    RBM-prior paper's Eq. 5 negative phase).  ``negatives``: samples ``[n, R, D]`` already drawn (so an
    estimator that also uses them, e.g. for a sleep phase, advances the chains once).  The one place the
    estimators handle −∇ log Z."""
    from estibench.models.protocols import UNNORMALISED_PRIOR, capabilities
    if UNNORMALISED_PRIOR not in capabilities(model):
        return torch.zeros((), dtype=model.dtype, device=model.device)
    negatives = (model.negative_samples() if negatives is None else negatives).detach()  # [n, R, D]
    surrogate = model.log_prior_unnormalised(negatives.transpose(0, 1)).mean(-1)  # [R]
    return model.log_partition().detach() + surrogate - surrogate.detach()


def sample_guide(model, x: torch.Tensor, num_particles: int):
    """z ~ q_φ(·|x) with K particles; returns (z, log q, log p_θ(x, z)), each ``[K, R, B, ...]``."""
    q = model.guide(x)
    z = q.sample((num_particles,))
    return z, q.log_prob(z), model.log_joint(x, z)


def wake_phi(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Σ_k w̃_k log q(z_k|x) with the normalised weights held constant: its φ-gradient is the wake-φ estimate
    of RWS Eq. 5, ``[R, B]`` (:func:`estimators.functional.weights.wake_phi`)."""
    return _weights.wake_phi(log_p, log_q)


def sleep_phi(model, n: int) -> torch.Tensor:
    """log q_φ(z|x) at n draws (z, x) ~ p_θ per replicate, ``[R, n]``: its φ-gradient is the sleep-φ estimate
    of RWS Eq. 3."""
    z_sleep, x_sleep = model.sample(n)
    return model.guide(x_sleep).log_prob(z_sleep)


def wake_theta(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k w_k with log q detached: its θ-gradient is the wake-θ / IWAE θ-gradient
    (:func:`estimators.functional.weights.wake_theta`)."""
    return _weights.wake_theta(log_p, log_q)
