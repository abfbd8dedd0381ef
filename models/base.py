"""The model contract (stated once; every registered model follows it).

A model is a ``torch.nn.Module`` holding ``R = len(seeds)`` independent replicates of a
generative model p_θ(z, x) and an inference network (guide) q_φ(z | x).  Shapes are those of
:mod:`models.latents`: data ``[R, B, *obs]``, latents ``[*particles, R, B, *event]``.

Required
--------
``obs_shape``                  the shape of one observation (``()`` for a scalar)
``latent``                     a :class:`models.latents.LatentSpace` (kind, enumeration, uniform)
``guide(x)``                   a ``torch.distributions.Distribution`` over z, batch shape ``[R, B]``
``log_joint(x, z)``            log p_θ(x, z), shape ``[*particles, R, B]``.  A model whose prior is
                               known only up to a constant (RBM priors) provides the
                               UNNORMALISED_PRIOR capability instead (``log_partition()``,
                               ``negative_samples(n)``): the exact harness subtracts log Z, and an
                               estimator that does not declare it handles −∇ log Z is refused.
``sample(n)``                  (z, x) ~ p_θ, shapes ``[R, n, *event]`` and ``[R, n, *obs]`` (no grad)
``generative_parameters()``    θ, in ``parameters()`` order
``guide_parameters()``         φ, in ``parameters()`` order; θ and φ partition ``parameters()``
``enumerate_latents()``        every latent state ``[S, *event]`` (enumerable latents only)
``set_progress(fraction)``     the training progress in [0, 1] before every step (a no-op unless the model
                               anneals something of its own)

Capabilities
------------
``provides``                   the capabilities (:mod:`models.protocols`) the model declares beyond the
                               contract above, e.g. ``(LAYERED_BERNOULLI, RELAXED_LOG_JOINT)``; its
                               latent space adds its kind and, when small enough, ENUMERABLE.  Each
                               declared capability's members must all exist (checked before any work).
"""
from __future__ import annotations

import abc
import sys

from typing import List, Sequence

import torch
from torch import nn

from .latents import LatentSpace


class LatentVariableModel(nn.Module, abc.ABC):
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__doc__:  # one module per plugin: its docstring (paper, equation) documents the class
            cls.__doc__ = sys.modules[cls.__module__].__doc__

    latent: LatentSpace
    #: the ``kind`` of :attr:`latent`, declared so that what depends on it (which implementation of an estimator
    #: family runs, and that implementation's revisions) is known before the model is built; a test checks every
    #: registered model's instances agree
    latent_kind: str = ""
    #: the changes of this class's code that altered its numbers, oldest first (``models.registry.Revision``)
    revisions: tuple = ()
    provides: tuple = ()
    #: the dataset a model trains on when its options do not say (a column of every results table)
    default_dataset: str = ""
    #: training statistics the model needs (keyword arguments of its constructor, e.g. ``train_mean``);
    #: the harness reads them from the data layer (``statistics_query(options)`` says for which data)
    data_statistics: tuple = ()
    #: the kinds of dataset it trains on (``estibench.data.kind``: ``binary``, ``colour``, ``synthetic``); the
    #: harness refuses another in one line before building it
    data_kinds: tuple = ("binary", "synthetic")
    #: buffers (qualified names) holding estimates that measurement refreshes and that no gradient reads (the
    #: RBM-prior VAE's AIS estimate of log Z): kept after a measurement; every other parameter, buffer and
    #: plain attribute is restored (``harness/measurement.py``)
    measurement_caches: tuple = ()

    def __init__(self, seeds: Sequence[int] = (0,)):
        super().__init__()
        seeds = tuple(int(s) for s in seeds)
        if not seeds:
            raise ValueError("a model needs at least one seed (one replicate)")
        self.seeds = seeds

    @classmethod
    def statistics_query(cls, options: dict) -> dict:
        """Keyword arguments of ``estibench.data.statistics`` for a model with these options."""
        return {"name": str(options.get("dataset", cls.default_dataset))}

    @property
    def replicates(self) -> int:
        return len(self.seeds)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def enumerate_latents(self) -> torch.Tensor:
        return self.latent.enumerate(device=self.device, dtype=self.dtype)

    @abc.abstractmethod
    def generative_parameters(self) -> List[nn.Parameter]:
        """θ, in ``parameters()`` order."""

    @abc.abstractmethod
    def guide_parameters(self) -> List[nn.Parameter]:
        """φ, in ``parameters()`` order."""

    @abc.abstractmethod
    def guide(self, x: torch.Tensor) -> torch.distributions.Distribution:
        """q_φ(z | x), batch shape ``[R, B]``."""

    @abc.abstractmethod
    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p_θ(x, z), ``[*particles, R, B]``."""

    @abc.abstractmethod
    def sample(self, n: int):
        """(z, x) ~ p_θ, ``[R, n, *event]`` and ``[R, n, *obs]``."""

    def set_progress(self, fraction: float) -> None:
        """The training progress in [0, 1], from the harness before every step (schedules of the model itself,
        e.g. AIR's annealed step-count prior); nothing by default."""

    def parameter_group(self, which: str) -> List[nn.Parameter]:
        if which == "guide":
            return list(self.guide_parameters())
        if which == "generative":
            return list(self.generative_parameters())
        raise ValueError(f"unknown parameter group {which!r}; choose 'guide' or 'generative'")
