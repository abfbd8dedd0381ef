"""Sigmoid belief networks (SBNs) on binarised 28×28 images, as in REBAR, RELAX and DVAE++ Table 1.

Tucker et al., "REBAR" (2017) §6 / Grathwohl et al., "RELAX" (2018) §6.2 / Vahdat et al.,
"DVAE++" (2018) §7.1 and Table 1; settings in studies/sbn/README.md.  Architectures (``arch``):

* ``linear1``    q(z|x) = Bern(σ(W(x − x̄) + b));  p(z) = Bern(σ(a));  p(x|z) = Bern(σ(Vz + c)).
* ``linear2``    two stochastic layers of ``latent_bits`` each: q(z₁|x) q(z₂|z₁) and
                 p(z₂) p(z₁|z₂) p(x|z₁), every conditional linear-sigmoid.
* ``nonlinear``  one stochastic layer; two deterministic tanh layers of ``hidden`` units between
                 x and z in both directions (encoder x→200→200→z, decoder z→200→200→x).

As in the REBAR code, the encoder input is centred by the training mean x̄ and the decoder's
output bias starts at logit(clip(x̄, 0.001, 0.999)); prior logits are learned.  Every other
weight starts like ``torch.nn.Linear`` (U(±1/√fan_in)), one seed per replicate (deviation: the
REBAR code uses Glorot-uniform weights and zero biases).  The second guide layer takes the raw
z₁ ∈ {0,1} (or its relaxation) as input, uncentred.

Layered interface (used by the estimators for Bernoulli latents; layer 0 is nearest x)
-------------------------------------------------------------------------------------
``layer_sizes``            stochastic layer sizes, e.g. (200,) or (200, 200); z = cat(z₀, z₁, …)
``guide_layer(l, h)``      logits of q(z_l | h): h = x for l = 0 (centred inside), else z_{l−1}
``prior_layer(l, h)``      logits of p(z_l | h): h = z_{l+1}; the top layer ignores h
``decoder_logits(z0)``     logits of p(x | z₀)
``log_likelihood(x, z0)``  log p(x | z₀), ``[*particles, R, B]``
``log_prior(layers)``      Σ_l log p(z_l | z_{l+1})
``split(z)`` / ``join``    z ↔ list of layers
Every function accepts relaxed z ∈ [0, 1] as well (the Bernoulli log-mass z·l − softplus(l) is
evaluated as is), so ``relaxed_log_joint`` is ``log_joint``.

``sbn_tiny`` is the same model on images max-pooled by ``downsample`` (default 4: 7×7 = 49
pixels) with at most 16 latent bits (default 8), so exact log p(x) and exact gradients are
available by enumerating the 2^bits latent states.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, constraints

from .base import LatentVariableModel
from .latents import BernoulliLatent
from .nn import StackedLinear, StackedMLP
from .protocols import LAYERED_BERNOULLI, RELAXED_LOG_JOINT, TRAINING_MEAN, bernoulli_log_mass

ARCHS = ("linear1", "linear2", "nonlinear")
TINY_MAX_BITS = 16


def image_statistics_query(cls, options: dict) -> dict:
    """What an image model with these options asks the data layer for (``estibench.data.statistics``):
    its dataset and resolution (``dataset`` and ``downsample`` options, else the class's defaults)."""
    import inspect
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
    return {"name": str(options.get("dataset", defaults["dataset"])),
            "downsample": int(options.get("downsample", defaults["downsample"]))}


def apply_stacked(net: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Apply a stacked (replicated) layer to ``[*particles, R, B, D]`` (stacked layers want R first)."""
    if h.dim() == 3:
        return net(h)
    moved = h.movedim(-3, 0)
    return net(moved).movedim(0, -3)


class LayeredBernoulli(Distribution):
    """q(z|x) = Π_l q(z_l | z_{l−1}) for a chain of factorial Bernoulli layers; event ``[Σ D_l]``."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 1)
    has_rsample = False

    def __init__(self, model: "SigmoidBeliefNet", x: torch.Tensor, first_logits: Optional[torch.Tensor] = None):
        self.model, self.x = model, x
        self.first_logits = model.guide_layer(0, x) if first_logits is None else first_logits
        super().__init__(batch_shape=x.shape[:-1], event_shape=(sum(model.layer_sizes),), validate_args=False)

    @property
    def logits(self) -> torch.Tensor:
        """Logits of the first layer (the whole z for one-layer models)."""
        return self.first_logits

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()):
        logits = self.first_logits.expand(*sample_shape, *self.first_logits.shape)
        layers = []
        for l in range(len(self.model.layer_sizes)):
            if l > 0:
                logits = self.model.guide_layer(l, layers[-1])
            layers.append(torch.bernoulli(torch.sigmoid(logits)))
        return self.model.join(layers)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        layers = self.model.split(z)
        total = bernoulli_log_mass(self.first_logits, layers[0])
        for l in range(1, len(layers)):
            total = total + bernoulli_log_mass(self.model.guide_layer(l, layers[l - 1]), layers[l])
        return total


class SigmoidBeliefNet(LatentVariableModel):
    latent_kind = "bernoulli"
    provides = (LAYERED_BERNOULLI, RELAXED_LOG_JOINT, TRAINING_MEAN)
    default_dataset = "mnist5k-bern0"
    #: the training statistics it needs, which the harness reads from the data layer and passes in
    data_statistics = ("train_mean",)

    def __init__(self, seeds: Sequence[int] = (0,), arch: str = "linear1", dataset: str = "mnist5k-bern0",
                 latent_bits: int = 200, hidden: int = 200, downsample: int = 1,
                 train_mean: Optional[torch.Tensor] = None):
        super().__init__(seeds)
        if arch not in ARCHS:
            raise ValueError(f"unknown SBN arch {arch!r}; choose from {', '.join(ARCHS)}")
        if int(latent_bits) < 1 or int(hidden) < 1:
            raise ValueError(f"latent_bits and hidden must be positive, got {latent_bits}, {hidden}")
        if int(downsample) < 1 or 28 % int(downsample) != 0:
            raise ValueError(f"downsample must divide 28, got {downsample}")
        self.arch, self.dataset, self.downsample = arch, str(dataset), int(downsample)
        self.latent_bits, self.hidden = int(latent_bits), int(hidden)
        side = 28 // self.downsample
        self.obs_shape = (side * side,)
        pixels = side * side
        if train_mean is None:  # data → models: the harness passes it (estibench.harness.build_model)
            raise ValueError(f"{type(self).__name__} needs train_mean, the training statistics of {self.dataset!r}: "
                             f"build it with estibench.harness.build_model (which reads them from the data "
                             f"layer) or pass train_mean")
        train_mean = torch.as_tensor(train_mean, dtype=torch.float32).reshape(pixels)
        self.register_buffer("train_mean", train_mean)
        self.layer_sizes = (self.latent_bits,) * (2 if arch == "linear2" else 1)
        self.latent = BernoulliLatent(sum(self.layer_sizes))
        D, H, R = self.latent_bits, self.hidden, self.replicates
        seeds = self.seeds
        # θ: prior logits of the top layer, top-down conditionals, decoder
        self.prior_logits = nn.Parameter(torch.zeros(R, 1, D))
        self.prior_nets = nn.ModuleList(StackedLinear(seeds, D, D, salt=40 + l)
                                        for l in range(len(self.layer_sizes) - 1))
        if arch == "nonlinear":
            self.decoder = StackedMLP(seeds, [D, H, H, pixels], activation="tanh", salt=2)
            self.encoders = nn.ModuleList([StackedMLP(seeds, [pixels, H, H, D], activation="tanh", salt=3)])
            out_bias = self.decoder.layers[-1].bias
        else:
            self.decoder = StackedLinear(seeds, D, pixels, salt=20)
            self.encoders = nn.ModuleList(StackedLinear(seeds, pixels if l == 0 else D, D, salt=30 + l)
                                          for l in range(len(self.layer_sizes)))
            out_bias = self.decoder.bias
        with torch.no_grad():
            out_bias.copy_(torch.logit(train_mean.clamp(0.001, 0.999)).expand_as(out_bias))

    statistics_query = classmethod(image_statistics_query)

    # -- parameter groups ----------------------------------------------------------------------
    def generative_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in [self.prior_logits, *self.prior_nets.parameters(), *self.decoder.parameters()]}
        return [p for p in self.parameters() if id(p) in ids]

    def guide_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in self.encoders.parameters()}
        return [p for p in self.parameters() if id(p) in ids]

    # -- layered interface ---------------------------------------------------------------------
    def split(self, z: torch.Tensor) -> List[torch.Tensor]:
        return list(z.split(self.layer_sizes, dim=-1)) if len(self.layer_sizes) > 1 else [z]

    def join(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        return layers[0] if len(layers) == 1 else torch.cat(list(layers), dim=-1)

    def guide_layer(self, l: int, h: torch.Tensor) -> torch.Tensor:
        if l == 0:
            h = h - self.train_mean
        return apply_stacked(self.encoders[l], h)

    def prior_layer(self, l: int, h: Optional[torch.Tensor] = None) -> torch.Tensor:
        if l == len(self.layer_sizes) - 1:
            return self.prior_logits
        return apply_stacked(self.prior_nets[l], h)

    def decoder_logits(self, z0: torch.Tensor) -> torch.Tensor:
        return apply_stacked(self.decoder, z0)

    def log_likelihood(self, x: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_mass(self.decoder_logits(z0), x)  # x broadcasts over particles; 2× faster than BCE

    def log_prior(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        L = len(layers)
        total = bernoulli_log_mass(self.prior_logits, layers[L - 1])
        for l in range(L - 1):
            total = total + bernoulli_log_mass(self.prior_layer(l, layers[l + 1]), layers[l])
        return total

    # -- the model contract --------------------------------------------------------------------
    def guide(self, x: torch.Tensor) -> Distribution:
        if len(self.layer_sizes) == 1:
            return Independent(Bernoulli(logits=self.guide_layer(0, x), validate_args=False), 1)
        return LayeredBernoulli(self, x)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        layers = self.split(z)
        return self.log_likelihood(x, layers[0]) + self.log_prior(layers)

    relaxed_log_joint = log_joint

    @torch.no_grad()
    def sample(self, n: int):
        R = self.replicates
        layers = [None] * len(self.layer_sizes)
        top = len(self.layer_sizes) - 1
        layers[top] = torch.bernoulli(torch.sigmoid(self.prior_logits.expand(R, n, -1)))
        for l in range(top - 1, -1, -1):
            layers[l] = torch.bernoulli(torch.sigmoid(self.prior_layer(l, layers[l + 1])))
        x = torch.bernoulli(torch.sigmoid(self.decoder_logits(layers[0])))
        return self.join(layers), x


class TinySigmoidBeliefNet(SigmoidBeliefNet):
    """The enumerable SBN (REBAR/DVAE++ architectures, studies/sbn/README.md) on down-sampled images, at most
    16 latent bits in all, so that exact log p(x) and exact gradients come from enumeration."""

    def __init__(self, seeds: Sequence[int] = (0,), arch: str = "linear1", dataset: str = "mnist5k-bern0",
                 latent_bits: int = 8, hidden: int = 32, downsample: int = 4,
                 train_mean: Optional[torch.Tensor] = None):
        layers = 2 if arch == "linear2" else 1
        if int(latent_bits) * layers > TINY_MAX_BITS:
            raise ValueError(f"sbn_tiny allows at most {TINY_MAX_BITS} latent bits in all, got "
                             f"{layers} × {latent_bits}")
        super().__init__(seeds, arch=arch, dataset=dataset, latent_bits=latent_bits, hidden=hidden,
                         downsample=downsample, train_mean=train_mean)
