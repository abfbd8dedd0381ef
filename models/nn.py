"""Stacked (replicated) layers: ``R`` independent networks evaluated as one batched matmul.

Every parameter carries a leading replicate dimension, so summing the replicates' losses and
stepping an elementwise optimiser (Adam) trains ``R`` exactly independent networks.  Replicate
``r`` is initialised from its own seed, identically to a single network built with that seed.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "elu": torch.nn.functional.elu}


def seeded_uniform(seeds: Sequence[int], shape, bound: float, salt: int) -> torch.Tensor:
    """``[R, *shape]`` draws from U(-bound, bound), replicate r from ``seeds[r]`` (CPU, then moved)."""
    out = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + salt)
        out.append((torch.rand(shape, generator=gen) * 2 - 1) * bound)
    return torch.stack(out)


class StackedLinear(nn.Module):
    """``y = x W + b`` per replicate; x is ``[R, ..., in]``.

    Initialised like ``torch.nn.Linear`` (U(±1/√in) for weight and bias), one seed per replicate.
    """

    def __init__(self, seeds: Sequence[int], in_features: int, out_features: int, salt: int = 0):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(seeded_uniform(seeds, (in_features, out_features), bound, 2 * salt))
        self.bias = nn.Parameter(seeded_uniform(seeds, (1, out_features), bound, 2 * salt + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-1])
        out = torch.baddbmm(self.bias, flat, self.weight)
        return out.reshape(*shape[:-1], out.shape[-1])


class StackedMLP(nn.Module):
    """An MLP ``sizes[0] → … → sizes[-1]`` with a nonlinearity between layers (none after the last)."""

    def __init__(self, seeds: Sequence[int], sizes: Sequence[int], activation: str = "tanh", salt: int = 0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.activation = ACTIVATIONS[activation]
        self.layers = nn.ModuleList(
            StackedLinear(seeds, a, b, salt=100 * salt + i) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x
