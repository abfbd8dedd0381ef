"""Your VAE as a contract model: an encoder, a decoder and a prior (``nn.Module``s that return
``torch.distributions``) adapted to the model contract of ``models/base.py``, so that it is checked
(``estibench check`` / ``harness.checks``), screened (``estibench screen``) and swept (``--suite generic``)
without a rewrite.

What it adapts
--------------
Three *factories*: callables with no argument that each build one ``nn.Module`` (a class, or a ``lambda``).
Every replicate ``r`` of the ``R = len(seeds)`` replicates is built from its own seed by
:class:`models.nn.StackedModule` (``torch.manual_seed(seeds[r])`` then ``factory()``), and the ``R`` copies run as
one program under :func:`torch.func.vmap`.  Per replicate, with ``N`` points in a batch:

* ``encoder(x)``, x ``[N, *obs_shape]`` → a distribution over z for each point: q_φ(z | x);
* ``decoder(z)``, z ``[N, *latent_shape]`` (in the form described below) → a distribution over x for each point,
  batch and event shapes together ``[N, *obs_shape]``: p_θ(x | z);
* ``prior()`` (no argument) → a distribution over one z, batch and event shapes together ``latent_shape``:
  p_θ(z), e.g. a module holding learned logits (a prior with no parameters is a module with none).

The latents (constructor option ``latent``):

* ``latent="bernoulli"``, ``latent_shape`` any shape, e.g. ``(D,)``: the encoder and the prior return a
  ``Bernoulli`` (or an ``Independent`` of one) over ``latent_shape``; the decoder and the prior see z as floats in
  {0, 1}, ``[N, *latent_shape]``;
* ``latent="categorical"``, ``latent_shape=(C,)`` (one variable of C states) or ``(D, C)`` (D of them): the encoder
  and the prior return a ``Categorical`` (or ``Independent`` of one) and the decoder and the prior see integer
  indices ``[N]`` / ``[N, D]``; with ``onehot=True`` they return a ``OneHotCategorical`` and see one-hot floats
  ``[N, *latent_shape]``.

Inside estibench the latents are those of :mod:`models.latents`: Bernoulli latents flat, ``[*, R, B, D]`` with
``D = prod(latent_shape)``; one categorical variable as an index ``[*, R, B]``; D of them as indices
``[*, R, B, D]`` (kind ``multicategorical``).  The adapter reshapes (and one-hot encodes) z on its way to the
decoder and the prior, and ``guide(x)`` returns the project's own form of q: ``Independent(Bernoulli(logits), 1)``,
:class:`models.distributions.Categorical` or ``Independent(Categorical(logits), 1)``, from the encoder's logits.

The contract it meets
---------------------
``guide(x)`` (x ``[*particles, R, B, *obs]``; batch ``[*particles, R, B]``), ``log_joint(x, z)`` (= log p(x | z) +
log p(z), ``[*particles, R, B]``, broadcasting over leading particle dimensions of x and z), ``sample(n)``,
``latent`` and ``latent_kind``, ``enumerate_latents()``, ``generative_parameters()`` (decoder and prior: θ, first in
``parameters()``) and ``guide_parameters()`` (encoder: φ).  ``provides`` is empty: the capabilities are those of
the latent space, its kind and, when it has at most 2^20 states, ENUMERABLE (so exact log p(x), the exact gradients
of ``check``, the bias of ``screen`` and the exact metrics of the generic study).  ``default_dataset`` is ``""``
(the data are yours: ``--data FILE``; without it the model's own samples) and ``data_kinds`` admits every kind,
since the likelihood is yours.

Distributions under vmap
------------------------
``vmap`` returns tensors only, never a ``Distribution`` (it refuses one: "must only return Tensors").  So each
user module is wrapped (:class:`_Flat`) in a module whose ``forward`` calls it and returns the distribution's
parameter tensors, recording its structure (the class, which parameters, ``Independent``'s reinterpreted
dimensions) on the side; outside ``vmap`` the adapter rebuilds the same distribution from the stacked parameters,
which now lead with R (``validate_args=False``).  The user's modules are unchanged.  Rebuilt are ``Independent``,
``OneHotCategorical`` and every distribution whose constructor takes its ``arg_constraints`` as tensors
(``Bernoulli``, ``Categorical``, ``Normal``, ``ContinuousBernoulli``, ``Laplace``, ``Binomial`` …; of ``probs`` and
``logits`` the one given).  Anything else (a ``TransformedDistribution``, a mixture) is refused in one line.  The
modules' forward must be vmap-compatible (:class:`models.nn.StackedModule` lists the rules).  torch 2.13 validates
distribution arguments under vmap (tested); should an older torch refuse a validation under vmap, pass
``validate_args=False`` in the modules.  Every call checks the family and the shape of what the modules return, and
the constructor runs them once on placeholder data, so a module of the wrong shape is refused in one line when the
model is built.

What it cannot do
-----------------
It declares no capability beyond the contract: no layered interface (LAYERED_BERNOULLI), no relaxed log joint, no
factorial-categorical interface.  So ``arm``, ``disarm``, ``nvil``, ``rebar``, ``relax``, ``concrete`` … are refused
by the existing checks in one line ("… needs the layered Bernoulli interface …, which TinyVAE does not provide");
the score-function and importance-weighted estimators (``reinforce``, ``rloo``, ``vimco``, ``ws``, ``ww``, ``dww``,
``rw+rws``) run.  Continuous latents (a Normal encoder) are not adapted; write a model for them (``gaussian_vae``).

Use
---
In Python::

    from estibench.models.adapter import from_modules
    model = from_modules(encoder=lambda: Encoder(), decoder=lambda: Decoder(), prior=lambda: Prior(),
                         latent="bernoulli", latent_shape=(4,), obs_shape=(6,), seeds=(0, 1, 2))

On the command line a model is a class by import path (``--model pkg.mod:Class``), built as ``Class(seeds=...)``,
so write a tiny subclass that passes the factories and declares its latents' kind (known before it is built)::

    class TinyVAE(ModulesModel):
        latent_kind = "bernoulli"

        def __init__(self, seeds=(0,)):
            super().__init__(encoder=Encoder, decoder=Decoder, prior=Prior, latent="bernoulli",
                             latent_shape=(4,), obs_shape=(6,), seeds=seeds)

    # python run_all.py --suite generic --model pkg.mod:TinyVAE --data my.npz --estimators vimco,rloo

``examples/own_model_sweep.py`` runs one end to end.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence, Tuple

import torch
from torch import nn
from torch.distributions import (Bernoulli, Categorical as TorchCategorical, Distribution, Independent,
                                 OneHotCategorical)

from .base import LatentVariableModel
from .distributions import Categorical
from .latents import BernoulliLatent, CategoricalLatent, MultiCategoricalLatent
from .nn import StackedModule

__all__ = ["ModulesModel", "BernoulliModulesModel", "CategoricalModulesModel", "MultiCategoricalModulesModel",
           "from_modules", "kind_of"]


# -- distributions through vmap: flattened to their parameters inside, rebuilt outside --------------------------
def _describe(d) -> str:
    if isinstance(d, Independent):
        return f"Independent({_describe(d.base_dist)})"
    return type(d).__name__


def _flatten(d) -> Tuple[tuple, list]:
    """(structure, parameter tensors) of a distribution; a one-line ValueError for one it cannot rebuild."""
    if isinstance(d, Independent):
        spec, tensors = _flatten(d.base_dist)
        return ("independent", int(d.reinterpreted_batch_ndims), spec), tensors
    own = d._categorical.__dict__ if isinstance(d, OneHotCategorical) else d.__dict__
    names = [k for k in d.arg_constraints if isinstance(own.get(k), torch.Tensor)]
    if "logits" in names and "probs" in names:  # both computed (a lazy property was read): the logits suffice
        names.remove("probs")
    if not names:
        raise ValueError(f"returns a {_describe(d)}, which the adapter cannot pass through vmap (it rebuilds "
                         f"Independent, OneHotCategorical and distributions whose constructor takes their "
                         f"arg_constraints as tensors: Bernoulli, Categorical, Normal, …)")
    return (type(d), tuple(names)), [own[k] for k in names]


def _rebuild(spec, tensors: list, at: int = 0):
    """The distribution of :func:`_flatten`'s structure from (stacked) parameter tensors; (distribution, next)."""
    if spec[0] == "independent":
        base, at = _rebuild(spec[2], tensors, at)
        return Independent(base, spec[1], validate_args=False), at
    cls, names = spec
    params = dict(zip(names, tensors[at:at + len(names)]))
    return cls(**params, validate_args=False), at + len(names)


class _Flat(nn.Module):
    """Calls the user's module and returns its distribution's parameters (tensors, which vmap can return); the
    distribution's structure is left in ``self.spec``.  ``forward(x)`` passes x on; ``forward(x)`` of a prior
    (``takes_input=False``) ignores x (a ``[0]`` placeholder that carries the replicate dimension)."""

    def __init__(self, inner: nn.Module, takes_input: bool = True):
        super().__init__()
        if not isinstance(inner, nn.Module):
            raise ValueError(f"the factory built a {type(inner).__name__}, not a torch.nn.Module")
        self.inner = inner
        self.takes_input = takes_input
        self.spec = None

    def forward(self, x):
        d = self.inner(x) if self.takes_input else self.inner()
        if not isinstance(d, Distribution):
            raise ValueError(f"returns a {type(d).__name__}, not a torch.distributions.Distribution")
        spec, tensors = _flatten(d)
        self.spec = spec
        return tuple(tensors)


class _Stacked(nn.Module):
    """R seeded copies of one user module (:class:`StackedModule` of :class:`_Flat`): ``forward(x)`` → the rebuilt
    distribution, every parameter leading with R."""

    def __init__(self, role: str, factory: Callable[[], nn.Module], seeds: Sequence[int], takes_input: bool = True):
        super().__init__()
        if not callable(factory):
            raise ValueError(f"{role} must be a factory (a callable returning an nn.Module), got "
                             f"{type(factory).__name__}")
        self.role = role
        self.net = StackedModule(lambda: _Flat(factory(), takes_input), seeds)

    def forward(self, x: torch.Tensor) -> Distribution:
        try:
            tensors = self.net(x)
        except ValueError as err:
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"the {self.role} {text}") from None
        return _rebuild(self.net.base.spec, list(tensors))[0]


def _full_shape(d: Distribution) -> tuple:
    return tuple(d.batch_shape) + tuple(d.event_shape)


def _family(d: Distribution):
    return d.base_dist if isinstance(d, Independent) else d


KINDS = ("bernoulli", "categorical", "multicategorical")


def kind_of(latent: str, latent_shape: Sequence[int]) -> str:
    """The project's latent kind of the adapter's ``latent`` option and ``latent_shape``: ``bernoulli``;
    ``categorical`` for ``(C,)``, ``multicategorical`` for ``(D, C)``."""
    shape = tuple(int(s) for s in latent_shape)
    if latent == "bernoulli":
        return "bernoulli"
    if latent in ("categorical", "multicategorical"):
        if len(shape) == 1:
            return "categorical"
        if len(shape) == 2:
            return "multicategorical"
        raise ValueError(f"latent_shape {shape}: categorical latents are (C,) (one variable of C states) or (D, C) "
                         f"(D variables)")
    raise ValueError(f"latent={latent!r}: choose 'bernoulli' or 'categorical'")


class ModulesModel(LatentVariableModel):
    """An encoder, a decoder and a prior (factories of ``nn.Module``s returning distributions) as a contract model;
    see the module docstring.  A subclass declares ``latent_kind`` (``bernoulli``, ``categorical`` or
    ``multicategorical``) and passes the factories (the module docstring shows the pattern)."""

    #: every kind of data: the likelihood is the user's
    data_kinds = ("binary", "colour", "synthetic")
    default_dataset = ""
    provides = ()

    def __init__(self, encoder: Callable[[], nn.Module], decoder: Callable[[], nn.Module],
                 prior: Callable[[], nn.Module], latent: str = "", latent_shape: Sequence[int] = (),
                 obs_shape: Sequence[int] = (), seeds: Sequence[int] = (0,), onehot: bool = False):
        super().__init__(seeds)
        name = type(self).__name__
        latent = str(latent or type(self).latent_kind)
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.obs_shape = tuple(int(s) for s in obs_shape)
        if not self.latent_shape or any(s < 1 for s in self.latent_shape):
            raise ValueError(f"{name}: latent_shape must be a non-empty shape of positive sizes, got "
                             f"{tuple(latent_shape)}")
        if any(s < 1 for s in self.obs_shape):
            raise ValueError(f"{name}: obs_shape must have positive sizes, got {tuple(obs_shape)}")
        try:
            kind = kind_of(latent, self.latent_shape)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        declared = type(self).latent_kind
        if declared != kind:
            fix = ("use from_modules(...), or subclass one of BernoulliModulesModel, CategoricalModulesModel, "
                   "MultiCategoricalModulesModel" if not declared else "declare it so on the class")
            raise ValueError(f"{name}: latent={latent!r} with latent_shape {self.latent_shape} gives {kind} latents, "
                             f"but the class declares latent_kind = {declared!r}: {fix}")
        if onehot and kind == "bernoulli":
            raise ValueError(f"{name}: onehot=True applies to categorical latents only")
        self.onehot = bool(onehot)
        if kind == "bernoulli":
            self.latent = BernoulliLatent(math.prod(self.latent_shape))
        elif kind == "categorical":
            self.latent = CategoricalLatent(self.latent_shape[0])
        else:
            self.latent = MultiCategoricalLatent(*self.latent_shape)
        # θ first, in parameters() order (decoder, prior), then φ (encoder)
        self.decoder = _Stacked("decoder", decoder, self.seeds)
        self.prior = _Stacked("prior", prior, self.seeds, takes_input=False)
        self.encoder = _Stacked("encoder", encoder, self.seeds)
        self._check_modules()

    # -- the user's forms of z and their checks ----------------------------------------------------------------
    @property
    def _user_event(self) -> tuple:
        """The full shape (batch + event) of one z in the user's distributions: ``latent_shape``, except for integer
        indices, whose last dimension (C) is the number of states."""
        if self.latent.kind == "bernoulli" or self.onehot:
            return self.latent_shape
        return self.latent_shape[:-1]

    def _expected_family(self) -> type:
        if self.latent.kind == "bernoulli":
            return Bernoulli
        return OneHotCategorical if self.onehot else TorchCategorical

    def _check_latent_dist(self, role: str, d: Distribution, lead: tuple) -> None:
        """A one-line ValueError unless ``d`` (from the encoder or the prior) is a distribution over z of the
        declared kind and shape, with batch shape starting with ``lead`` (``(R, N)`` or ``(R,)``)."""
        family = self._expected_family()
        want = (*lead, *self._user_event)
        fine = isinstance(_family(d), family) and _full_shape(d) == want and tuple(d.batch_shape[:len(lead)]) == lead
        if fine and family is TorchCategorical:
            fine = _family(d).logits.shape[-1] == self.latent_shape[-1]
        if not fine:
            per = "per observation" if len(lead) == 2 else "for one z"
            batch = tuple(d.batch_shape)
            batch = batch[len(lead):] if batch[:len(lead)] == lead else batch[1:]
            states = (f" over {_family(d).logits.shape[-1]} states" if isinstance(_family(d), TorchCategorical)
                      else "")
            need = f"{family.__name__} (or Independent of it) of shape {self._user_event}"
            if family is TorchCategorical:
                need += f" over {self.latent_shape[-1]} states"
            raise ValueError(f"{type(self).__name__}: the {role} returns {_describe(d)} with batch shape {batch} and "
                             f"event shape {tuple(d.event_shape)}{states} {per}; latent={self.latent.kind!r}"
                             f"{' (onehot)' if self.onehot else ''} with latent_shape {self.latent_shape} needs "
                             f"{need} {per}")

    def _check_obs_dist(self, d: Distribution, lead: tuple) -> None:
        want = (*lead, *self.obs_shape)
        if _full_shape(d) != want or tuple(d.batch_shape[:len(lead)]) != lead:
            raise ValueError(f"{type(self).__name__}: the decoder returns {_describe(d)} of shape "
                             f"{_full_shape(d)[1:]} for {lead[1]} latents (batch {tuple(d.batch_shape)[1:]}, event "
                             f"{tuple(d.event_shape)}); obs_shape {self.obs_shape} needs shape "
                             f"{(lead[1], *self.obs_shape)} with the points in the batch")

    @torch.no_grad()
    def _check_modules(self) -> None:
        """One pass of every module on two placeholder points, so a module of the wrong shape or family is refused
        (one line) when the model is built, not at its first step."""
        R = self.replicates
        x = torch.zeros(R, 2, *self.obs_shape, device=self.device, dtype=self.dtype)
        q = self.guide(x)
        self._prior()
        self.log_joint(x, q.sample())

    def _to_user(self, z: torch.Tensor) -> torch.Tensor:
        """z of the project's form ``[R, N, *event]`` → the user's form ``[R, N, …]``."""
        if self.latent.kind == "bernoulli":
            return z.reshape(*z.shape[:2], *self.latent_shape)
        if self.onehot:
            return torch.nn.functional.one_hot(z.long(), self.latent_shape[-1]).to(self.dtype)
        return z.long()

    def _from_user(self, z: torch.Tensor) -> torch.Tensor:
        """The user's form of z ``[R, N, …]`` → the project's ``[R, N, *event]``."""
        if self.latent.kind == "bernoulli":
            return z.reshape(*z.shape[:2], self.latent.num_bits).to(self.dtype)
        return z.argmax(-1) if self.onehot else z.long()

    # -- the user's modules, called on [R, N, ...] -----------------------------------------------------------------
    def _prior(self) -> Distribution:
        """p_θ(z) with batch shape ``[R]`` (+ the user's batch dimensions of z)."""
        d = self.prior(torch.zeros(self.replicates, 0, device=self.device, dtype=self.dtype))
        self._check_latent_dist("prior", d, (self.replicates,))
        return d

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of q(z | x) for x ``[R, N, *obs]``: ``[R, N, D]`` (Bernoulli), ``[R, N, C]`` or
        ``[R, N, D, C]``."""
        d = self.encoder(x)
        self._check_latent_dist("encoder", d, tuple(x.shape[:2]))
        base = _family(d)
        logits = base._categorical.logits if isinstance(base, OneHotCategorical) else base.logits
        if self.latent.kind == "bernoulli":
            return logits.reshape(*x.shape[:2], self.latent.num_bits)
        return logits.reshape(*x.shape[:2], *self.latent_shape)

    # -- shapes: [*lead, R, B, ...] <-> [R, N, ...] ---------------------------------------------------------------
    def _split_obs(self, x: torch.Tensor) -> tuple:
        n = len(self.obs_shape)
        if x.dim() < 2 + n or tuple(x.shape[x.dim() - n:]) != self.obs_shape:
            raise ValueError(f"{type(self).__name__}: x has shape {tuple(x.shape)}; it needs [*particles, R, B, "
                             f"*obs_shape] with obs_shape {self.obs_shape}")
        return tuple(x.shape[:x.dim() - n])

    @staticmethod
    def _to_rn(t: torch.Tensor, lead: tuple) -> torch.Tensor:
        """``[*P, R, B, *rest]`` (``lead`` = (*P, R, B)) → ``[R, P·B, *rest]``."""
        p = len(lead) - 2
        t = t.movedim(p, 0)
        return t.reshape(lead[p], math.prod(lead[:p]) * lead[-1], *t.shape[len(lead):])

    @staticmethod
    def _from_rn(t: torch.Tensor, lead: tuple) -> torch.Tensor:
        """The inverse of :meth:`_to_rn`: ``[R, P·B, *rest]`` → ``[*P, R, B, *rest]``."""
        p = len(lead) - 2
        t = t.reshape(lead[p], *lead[:p], lead[-1], *t.shape[2:])
        return t.movedim(0, p)

    # -- the contract ----------------------------------------------------------------------------------------------
    def generative_parameters(self):
        return list(self.decoder.parameters()) + list(self.prior.parameters())

    def guide_parameters(self):
        return list(self.encoder.parameters())

    def guide(self, x: torch.Tensor) -> Distribution:
        lead = self._split_obs(x)
        logits = self._from_rn(self._encode(self._to_rn(x, lead)), lead)
        if self.latent.kind == "bernoulli":
            return Independent(Bernoulli(logits=logits, validate_args=False), 1)
        if self.latent.kind == "categorical":
            return Categorical(logits=logits, validate_args=False)
        return Independent(Categorical(logits=logits, validate_args=False), 1)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p_θ(x | z) + log p_θ(z), ``[*particles, R, B]``: the decoder's log-density of x summed over the
        observation's dimensions, the prior's over the latent's."""
        event = len(self.latent.event_shape)
        lead = torch.broadcast_shapes(self._split_obs(x), tuple(z.shape[:z.dim() - event]))
        if len(lead) < 2:
            raise ValueError(f"{type(self).__name__}: z has shape {tuple(z.shape)}; it needs [*particles, R, B, "
                             f"*event] with event {tuple(self.latent.event_shape)}")
        xs = self._to_rn(x.expand(*lead, *self.obs_shape), lead)
        zs = self._to_rn(z.expand(*lead, *self.latent.event_shape), lead)
        zu = self._to_user(zs)
        lik = self.decoder(zu)
        self._check_obs_dist(lik, tuple(xs.shape[:2]))
        log_lik = lik.log_prob(xs)
        log_lik = log_lik.reshape(*log_lik.shape[:2], -1).sum(-1)
        prior = self._prior()
        prior = _rebuild(_spec_of(prior), [t.unsqueeze(1) for t in _params_of(prior)])[0]  # batch [R, 1, …]
        log_prior = prior.log_prob(zu)
        log_prior = log_prior.reshape(*log_prior.shape[:2], -1).sum(-1)
        return self._from_rn(log_lik + log_prior, lead)

    @torch.no_grad()
    def sample(self, n: int):
        """(z, x) ~ p_θ: ``[R, n, *event]`` (the project's form) and ``[R, n, *obs]``."""
        zu = self._prior().sample((int(n),)).movedim(0, 1)  # [R, n, …]
        lik = self.decoder(zu)
        self._check_obs_dist(lik, (self.replicates, int(n)))
        return self._from_user(zu), lik.sample()


def _spec_of(d: Distribution):
    return _flatten(d)[0]


def _params_of(d: Distribution):
    return _flatten(d)[1]


class BernoulliModulesModel(ModulesModel):
    """:class:`ModulesModel` with Bernoulli latents (``latent="bernoulli"``)."""

    latent_kind = "bernoulli"


class CategoricalModulesModel(ModulesModel):
    """:class:`ModulesModel` with one categorical latent (``latent="categorical"``, ``latent_shape=(C,)``)."""

    latent_kind = "categorical"


class MultiCategoricalModulesModel(ModulesModel):
    """:class:`ModulesModel` with D categorical latents (``latent="categorical"``, ``latent_shape=(D, C)``)."""

    latent_kind = "multicategorical"


_CLASSES = {"bernoulli": BernoulliModulesModel, "categorical": CategoricalModulesModel,
            "multicategorical": MultiCategoricalModulesModel}


def from_modules(encoder: Callable[[], nn.Module], decoder: Callable[[], nn.Module], prior: Callable[[], nn.Module],
                 latent: str = "bernoulli", latent_shape: Sequence[int] = (), obs_shape: Sequence[int] = (),
                 seeds: Sequence[int] = (0,), onehot: bool = False) -> ModulesModel:
    """A contract model of ``R = len(seeds)`` replicates from three factories of ``nn.Module``s (module docstring):
    a :class:`BernoulliModulesModel`, :class:`CategoricalModulesModel` or :class:`MultiCategoricalModulesModel` by
    ``latent`` and ``latent_shape``.  A one-line ValueError for modules of the wrong family or shape."""
    kind = kind_of(latent, latent_shape)
    return _CLASSES[kind](encoder=encoder, decoder=decoder, prior=prior, latent=latent, latent_shape=latent_shape,
                          obs_shape=obs_shape, seeds=seeds, onehot=onehot)
