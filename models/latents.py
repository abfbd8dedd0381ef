"""Latent-space descriptors: what kind of latent a model has, how to enumerate it, and its
uniform distribution (the defensive component of δ-WW).

Shapes, stated once for the whole project
-----------------------------------------
* ``R`` replicates (independent seeds trained as one program) lead every parameter and every
  data tensor: data are ``[R, B, *obs_shape]``.
* A guide's distribution has batch shape ``[R, B]``; latents drawn with ``K`` particles are
  ``[K, R, B, *event_shape]``; any leading dimensions of ``z`` before ``[R, B]`` are particle
  dimensions, and ``log_joint`` / ``log_prob`` broadcast over them.
* ``enumerate()`` returns every latent state as ``[S, *event_shape]``.
"""
from __future__ import annotations

import itertools
import math

import torch
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from .distributions import Categorical
from .protocols import BERNOULLI, CATEGORICAL, MULTICATEGORICAL, NORMAL, STRUCTURED

#: Enumeration is refused beyond this many states (exact results would not fit in memory).
MAX_ENUMERABLE_STATES = 2 ** 20


class LatentSpace:
    kind: str = "abstract"
    #: the capability (models.protocols) a model with this latent space provides
    capability = None
    event_shape: tuple = ()

    @property
    def num_states(self) -> float:
        return math.inf

    @property
    def enumerable(self) -> bool:
        return self.num_states <= MAX_ENUMERABLE_STATES

    def enumerate(self, device=None, dtype=None) -> torch.Tensor:  # pragma: no cover - abstract
        raise ValueError(f"{self.kind} latents cannot be enumerated")

    def uniform(self, batch_shape, device=None) -> Distribution:  # pragma: no cover - abstract
        raise ValueError(f"{self.kind} latents have no uniform distribution")


class CategoricalLatent(LatentSpace):
    """One categorical variable with ``num_categories`` states, stored as an integer index."""

    kind = "categorical"
    capability = CATEGORICAL

    def __init__(self, num_categories: int):
        self.num_categories = int(num_categories)

    @property
    def num_states(self) -> int:
        return self.num_categories

    def enumerate(self, device=None, dtype=None) -> torch.Tensor:
        return torch.arange(self.num_categories, device=device)

    def uniform(self, batch_shape, device=None) -> Distribution:
        logits = torch.zeros(*batch_shape, self.num_categories, device=device)
        return Categorical(logits=logits, validate_args=False)


class BernoulliLatent(LatentSpace):
    """A vector of ``num_bits`` binary variables, stored as floats in {0, 1}."""

    kind = "bernoulli"
    capability = BERNOULLI

    def __init__(self, num_bits: int):
        self.num_bits = int(num_bits)
        self.event_shape = (self.num_bits,)

    @property
    def num_states(self) -> int:
        return 2 ** self.num_bits

    def enumerate(self, device=None, dtype=torch.float32) -> torch.Tensor:
        if not self.enumerable:
            raise ValueError(f"{self.num_bits} Bernoulli latents have too many states to enumerate")
        states = list(itertools.product((0.0, 1.0), repeat=self.num_bits))
        return torch.tensor(states, device=device, dtype=dtype or torch.float32)

    def uniform(self, batch_shape, device=None) -> Distribution:
        probs = torch.full((*batch_shape, self.num_bits), 0.5, device=device)
        return Independent(Bernoulli(probs=probs, validate_args=False), 1)


class MultiCategoricalLatent(LatentSpace):
    """A vector of ``num_vars`` categorical variables of ``num_categories`` states each, stored as integer
    indices (``[*, num_vars]``, int64)."""

    kind = "multicategorical"
    capability = MULTICATEGORICAL

    def __init__(self, num_vars: int, num_categories: int):
        self.num_vars, self.num_categories = int(num_vars), int(num_categories)
        self.event_shape = (self.num_vars,)

    @property
    def num_states(self) -> float:
        return float(self.num_categories) ** self.num_vars

    def enumerate(self, device=None, dtype=None) -> torch.Tensor:
        if not self.enumerable:
            raise ValueError(f"{self.num_vars} categorical latents of {self.num_categories} states have too many "
                             f"states to enumerate")
        states = list(itertools.product(range(self.num_categories), repeat=self.num_vars))
        return torch.tensor(states, device=device, dtype=torch.long)

    def uniform(self, batch_shape, device=None) -> Distribution:
        logits = torch.zeros(*batch_shape, self.num_vars, self.num_categories, device=device)
        return Independent(Categorical(logits=logits, validate_args=False), 1)


class NormalLatent(LatentSpace):
    """A vector of ``dim`` real-valued variables.  Not enumerable.  It has no uniform distribution; its
    ``uniform`` (the defensive component of δ-WW) is the broad N(0, ``defensive_scale``² I), wider than the
    standard-normal priors of the continuous models."""

    kind = "normal"
    capability = NORMAL

    def __init__(self, dim: int, defensive_scale: float = 3.0):
        self.dim = int(dim)
        self.event_shape = (self.dim,)
        self.defensive_scale = float(defensive_scale)

    def enumerate(self, device=None, dtype=None) -> torch.Tensor:
        raise ValueError("normal latents have too many states to enumerate (closed forms stand in: CLOSED_FORM_GAUSSIAN)")

    def uniform(self, batch_shape, device=None) -> Distribution:
        loc = torch.zeros(*batch_shape, self.dim, device=device)
        return Independent(Normal(loc, torch.full_like(loc, self.defensive_scale), validate_args=False), 1)


class StructuredLatent(LatentSpace):
    """A sequence of discrete and continuous choices stored flat as ``dim`` numbers (e.g. AIR: per step a
    presence bit, a where and a what vector; the model's docstring gives the layout).  Not enumerable.  Its
    ``uniform`` (the defensive component of δ-WW) is the model's own broad distribution over the same layout,
    ``defensive(batch_shape, device)`` (a Distribution with event shape ``[dim]``)."""

    kind = "structured"
    capability = STRUCTURED

    def __init__(self, dim: int, defensive=None):
        self.dim = int(dim)
        self.event_shape = (self.dim,)
        self.defensive = defensive

    def enumerate(self, device=None, dtype=None) -> torch.Tensor:
        raise ValueError("structured latents have too many states to enumerate")

    def uniform(self, batch_shape, device=None) -> Distribution:
        if self.defensive is None:
            raise ValueError("this structured latent space has no defensive distribution")
        return self.defensive(batch_shape, device)
