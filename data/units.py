"""The unit each dataset's likelihoods are reported in, as the published tables report them.

* Binary data (the binarised MNIST, Omniglot, Caltech-101 sets, multi-MNIST) and the synthetic GMM: the
  negative log-likelihood of one example in **nats**, −log p(x) (e.g. "84.4 nats" on binarised MNIST).
* 8-bit colour data (``cifar10``): **bits per dimension**, −log₂ p(x) / D with D = 3·32·32 = 3,072 sub-pixels
  (PixelCNN, PixelCNN++, Glow... report e.g. "2.92 bits/dim"); :func:`bits_per_dim` converts nats to it.

``unit(name)`` reads a dataset's unit from its name alone (nothing is loaded); a loaded dataset says the same in
its ``unit`` attribute.  Torch-free: reports may import this without the models.
"""
from __future__ import annotations

import math

NATS = "nats"
BITS_PER_DIM = "bits/dim"
UNITS = (NATS, BITS_PER_DIM)

#: dataset name -> unit, for the datasets not reported in nats (every other name, binary or synthetic, is in nats)
_NOT_NATS = {"cifar10": BITS_PER_DIM}


def unit(name: str) -> str:
    """``"bits/dim"`` for a colour dataset (``cifar10``), ``"nats"`` for every other (binary or synthetic) one.
    The name is not checked against the known datasets here (:func:`estibench.data.load` does that)."""
    return _NOT_NATS.get(name, NATS)


def bits_per_dim(log_px_nats, dims: int):
    """Bits per dimension from a log-likelihood in nats: −log p(x) / (dims · ln 2).

    ``log_px_nats`` is log p(x) of one example (≤ 0 for a discrete model; a float, numpy array or torch tensor,
    returned as the same kind), ``dims`` the number of dimensions of x (3,072 for a 32x32 RGB image).  For an
    average over examples pass the mean log-likelihood.  A log-likelihood of a continuous density on [0, 256)
    must first include the discretisation (−D·log 256 for data scaled to [0, 1]); that is the model's business.
    """
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ValueError(f"bits_per_dim: dims must be a positive int, got {dims!r}")
    return -log_px_nats / (dims * math.log(2.0))


def report_value(log_px_nats, unit_name: str, dims: int):
    """The number a table shows for a log-likelihood in nats: −log p(x) in nats, or bits/dim (see :func:`unit`)."""
    if unit_name == NATS:
        return -log_px_nats
    if unit_name == BITS_PER_DIM:
        return bits_per_dim(log_px_nats, dims)
    raise ValueError(f"unknown unit {unit_name!r} (known: {', '.join(UNITS)})")
