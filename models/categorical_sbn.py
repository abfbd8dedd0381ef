"""The categorical variant of the sigmoid belief networks: a VAE with D categorical latents of C states each
on binarised 28×28 images (default D = 20, C = 10, the size of the categorical experiments of Dong, Mnih &
Tucker, "Coupled gradient estimators for discrete latent variables", NeurIPS 2021, and of CARMS).

Model (``arch``; everything else as :mod:`models.sbn`, whose data handling it shares):

* ``linear``     q(z|x) = Π_d Cat(z_d; softmax([W(x − x̄) + b]_d));  p(z) = Π_d Cat(z_d; softmax(a_d));
                 p(x|z) = Bern(σ(V·onehot(z) + c)), onehot(z) the D·C one-hot code flattened.
* ``nonlinear``  two deterministic tanh layers of ``hidden`` units between x and the D·C logits and between
                 the code and the pixel logits (encoder x→200→200→D·C, decoder D·C→200→200→x).

As in ``sbn``: the encoder input is centred by the training mean x̄, the decoder's output bias starts at
logit(clip(x̄, 0.001, 0.999)), prior logits are learned (starting at 0, uniform), every other weight starts
like ``torch.nn.Linear``, one seed per replicate.  Deviation / not verified: the coupled-estimators paper's
exact architecture, prior (learned or uniform) and initialisation were not checked against its code; the
sizes above are the ones this project's categorical study uses.

Latents are integer indices ``[*particles, R, B, D]`` (``MultiCategoricalLatent``).  The model provides the
factorial categorical interface (``models/protocols.py`` FACTORIAL_CATEGORICAL): ``guide_logits(x)``
``[R, B, D, C]`` and ``log_joint_onehot(x, y)``, which evaluates the prior's log-mass Σ_{d,c} y_dc log π_dc
and the decoder at the one-hot code y as they are (both are defined for any y in the product of simplices:
linear in y for the prior, the decoder's network for the likelihood).

``sbn_categorical_tiny`` is the same model on images max-pooled by ``downsample`` (default 4: 7×7 pixels)
with at most 4,096 latent states (default D = 3, C = 3: 27 states), so exact log p(x) and exact gradients
come from enumeration.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent

from .base import LatentVariableModel
from .distributions import Categorical
from .latents import MultiCategoricalLatent
from .nn import StackedLinear, StackedMLP
from .protocols import FACTORIAL_CATEGORICAL, TRAINING_MEAN, bernoulli_log_mass
from .sbn import apply_stacked, image_statistics_query

ARCHS = ("linear", "nonlinear")
TINY_MAX_STATES = 4096


class CategoricalSBN(LatentVariableModel):
    latent_kind = "multicategorical"
    provides = (FACTORIAL_CATEGORICAL, TRAINING_MEAN)
    default_dataset = "mnist5k-bern0"
    data_statistics = ("train_mean",)

    def __init__(self, seeds: Sequence[int] = (0,), arch: str = "linear", dataset: str = "mnist5k-bern0",
                 num_vars: int = 20, num_categories: int = 10, hidden: int = 200, downsample: int = 1,
                 train_mean: Optional[torch.Tensor] = None):
        super().__init__(seeds)
        if arch not in ARCHS:
            raise ValueError(f"unknown categorical SBN arch {arch!r}; choose from {', '.join(ARCHS)}")
        if int(num_vars) < 1 or int(num_categories) < 2 or int(hidden) < 1:
            raise ValueError(f"num_vars ≥ 1, num_categories ≥ 2 and hidden ≥ 1 needed, got {num_vars}, "
                             f"{num_categories}, {hidden}")
        if int(downsample) < 1 or 28 % int(downsample) != 0:
            raise ValueError(f"downsample must divide 28, got {downsample}")
        if train_mean is None:
            raise ValueError(f"{type(self).__name__} needs train_mean, the training statistics of {dataset!r}: build "
                             f"it with estibench.harness.build_model (which reads them from the data layer) or pass "
                             f"train_mean")
        self.arch, self.dataset, self.downsample = arch, str(dataset), int(downsample)
        self.num_vars, self.num_categories, self.hidden = int(num_vars), int(num_categories), int(hidden)
        side = 28 // self.downsample
        pixels = side * side
        self.obs_shape = (pixels,)
        self.register_buffer("train_mean", torch.as_tensor(train_mean, dtype=torch.float32).reshape(pixels))
        self.latent = MultiCategoricalLatent(self.num_vars, self.num_categories)
        D, C, H, R = self.num_vars, self.num_categories, self.hidden, self.replicates
        seeds = self.seeds
        self.prior_logits = nn.Parameter(torch.zeros(R, 1, D, C))
        if arch == "nonlinear":
            self.decoder = StackedMLP(seeds, [D * C, H, H, pixels], activation="tanh", salt=52)
            self.encoder = StackedMLP(seeds, [pixels, H, H, D * C], activation="tanh", salt=53)
            out_bias = self.decoder.layers[-1].bias
        else:
            self.decoder = StackedLinear(seeds, D * C, pixels, salt=50)
            self.encoder = StackedLinear(seeds, pixels, D * C, salt=51)
            out_bias = self.decoder.bias
        with torch.no_grad():
            out_bias.copy_(torch.logit(self.train_mean.clamp(0.001, 0.999)).expand_as(out_bias))

    statistics_query = classmethod(image_statistics_query)

    def generative_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in [self.prior_logits, *self.decoder.parameters()]}
        return [p for p in self.parameters() if id(p) in ids]

    def guide_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) in ids]

    # -- factorial categorical interface --------------------------------------------------------
    @property
    def categorical_shape(self):
        return (self.num_vars, self.num_categories)

    def guide_logits(self, x: torch.Tensor) -> torch.Tensor:
        out = apply_stacked(self.encoder, x - self.train_mean)
        return out.reshape(*out.shape[:-1], self.num_vars, self.num_categories)

    def log_prior_onehot(self, y: torch.Tensor) -> torch.Tensor:
        return (y * torch.log_softmax(self.prior_logits, -1)).sum((-1, -2))

    def log_likelihood_onehot(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_mass(apply_stacked(self.decoder, y.flatten(-2)), x)

    def log_joint_onehot(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_likelihood_onehot(x, y) + self.log_prior_onehot(y)

    # -- the model contract ---------------------------------------------------------------------
    def onehot(self, z: torch.Tensor) -> torch.Tensor:
        return F.one_hot(z.long(), self.num_categories).to(self.dtype)

    def guide(self, x: torch.Tensor) -> Distribution:
        return Independent(Categorical(logits=self.guide_logits(x), validate_args=False), 1)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.log_joint_onehot(x, self.onehot(z))

    @torch.no_grad()
    def sample(self, n: int):
        R = self.replicates
        prior = Categorical(logits=self.prior_logits.expand(R, n, self.num_vars, self.num_categories))
        z = prior.sample()
        x = torch.bernoulli(torch.sigmoid(apply_stacked(self.decoder, self.onehot(z).flatten(-2))))
        return z, x


class TinyCategoricalSBN(CategoricalSBN):
    """The enumerable categorical SBN on down-sampled images, at most 4,096 latent states."""

    def __init__(self, seeds: Sequence[int] = (0,), arch: str = "linear", dataset: str = "mnist5k-bern0",
                 num_vars: int = 3, num_categories: int = 3, hidden: int = 32, downsample: int = 4,
                 train_mean: Optional[torch.Tensor] = None):
        if int(num_categories) ** int(num_vars) > TINY_MAX_STATES:
            raise ValueError(f"sbn_categorical_tiny allows at most {TINY_MAX_STATES} latent states, got "
                             f"{num_categories}^{num_vars}")
        super().__init__(seeds, arch=arch, dataset=dataset, num_vars=num_vars, num_categories=num_categories,
                         hidden=hidden, downsample=downsample, train_mean=train_mean)
