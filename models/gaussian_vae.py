"""The single-stochastic-layer VAE of Burda, Grosse & Salakhutdinov (2016, "Importance weighted
autoencoders", §5 and App. A: 784–200–200–50 with tanh, 50 Gaussian latents, Bernoulli observations), the
continuous model of the RWS paper (Le et al., "Revisiting Reweighted Wake-Sleep", §4.2, Fig. 2, Table 1).

Generative model (θ): p(z) = N(0, I_50), p(x | z) = Bern(σ(dec(z))), dec = 50 → 200 → 200 → 784 (tanh).
Guide (φ): q(z | x) = N(μ(x), diag(σ(x)²)), enc = 784 → 200 → 200 → (μ, log σ) (tanh hidden layers, linear
heads), as Burda et al.'s App. A; the decoder's output bias starts at logit(clip(x̄, 0.001, 0.999)) of the
training mean (as the SBN suite; ours, stated), every weight like ``torch.nn.Linear``, one seed per
replicate.  ``latent_dim``, ``hidden`` and ``downsample`` (max-pooled images, for quick tests) are options
(defaults 50, 200 and 1).

Capabilities: REPARAMETERISED (``guide_rsample``: z = μ + σ ⊙ ε), so ``vae`` and ``iwae`` apply, and the
score-function and wake-sleep estimators that handle real-valued latents (``reinforce``, ``vimco``, ``ws``,
``ww``, ``dww``, ``rw+rws``).  No closed forms: the study measures log p(x) by a many-particle IWAE bound.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.distributions import Independent, Normal

from .base import LatentVariableModel
from .latents import NormalLatent
from .nn import StackedMLP
from .protocols import REPARAMETERISED, TRAINING_MEAN, bernoulli_log_mass
from .sbn import apply_stacked, image_statistics_query


class GaussianVAE(LatentVariableModel):
    latent_kind = "normal"
    provides = (REPARAMETERISED, TRAINING_MEAN)
    default_dataset = "mnist5k-dynamic"
    data_statistics = ("train_mean",)

    def __init__(self, seeds: Sequence[int] = (0,), dataset: str = "mnist5k-dynamic", latent_dim: int = 50,
                 hidden: int = 200, downsample: int = 1, train_mean: Optional[torch.Tensor] = None):
        super().__init__(seeds)
        if int(latent_dim) < 1 or int(hidden) < 1:
            raise ValueError(f"latent_dim and hidden must be positive, got {latent_dim}, {hidden}")
        if int(downsample) < 1 or 28 % int(downsample) != 0:
            raise ValueError(f"downsample must divide 28, got {downsample}")
        if train_mean is None:  # data → models: the harness passes it (estibench.harness.build_model)
            raise ValueError(f"{type(self).__name__} needs train_mean, the training statistics of {dataset!r}: "
                             "build it with estibench.harness.build_model or pass train_mean")
        self.dataset, self.latent_dim, self.hidden = str(dataset), int(latent_dim), int(hidden)
        self.downsample = int(downsample)
        pixels = (28 // self.downsample) ** 2
        self.obs_shape = (pixels,)
        self.latent = NormalLatent(self.latent_dim)
        self.register_buffer("train_mean", torch.as_tensor(train_mean, dtype=torch.float32).reshape(pixels))
        d, H = self.latent_dim, self.hidden
        self.decoder = StackedMLP(self.seeds, [d, H, H, pixels], activation="tanh", salt=90)
        with torch.no_grad():
            bias = self.decoder.layers[-1].bias
            bias.copy_(torch.logit(self.train_mean.clamp(0.001, 0.999)).expand_as(bias))
        self.encoder = StackedMLP(self.seeds, [pixels, H, H, 2 * d], activation="tanh", salt=92)

    statistics_query = classmethod(image_statistics_query)

    def generative_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in self.decoder.parameters()}
        return [p for p in self.parameters() if id(p) in ids]

    def guide_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) in ids]

    def guide(self, x: torch.Tensor) -> Independent:
        loc, log_scale = apply_stacked(self.encoder, x).chunk(2, dim=-1)
        return Independent(Normal(loc, log_scale.exp(), validate_args=False), 1)

    def guide_rsample(self, x: torch.Tensor, num_particles: int):
        q = self.guide(x)
        z = q.rsample((int(num_particles),))
        return z, q.log_prob(z)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        prior = Normal(torch.zeros((), dtype=z.dtype, device=z.device), 1.0).log_prob(z).sum(-1)
        return prior + bernoulli_log_mass(apply_stacked(self.decoder, z), x)

    @torch.no_grad()
    def sample(self, n: int):
        z = torch.randn(self.replicates, int(n), self.latent_dim, dtype=self.dtype, device=self.device)
        return z, torch.bernoulli(torch.sigmoid(apply_stacked(self.decoder, z)))
