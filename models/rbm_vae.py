"""VAEs with a restricted Boltzmann machine prior over binary latents (DVAE++, Vahdat et al. 2018,
§5 and §7.2, Table 2, Fig. 2(d); the RBM-prior hybrid model, ``000_…`` §3).

Generative model: z = (z₁, z₂) ∈ {0,1}^{n₁} × {0,1}^{n₂} (``latent_bits`` split in two halves, DVAE++'s
200 = 100 + 100), p(z) = e^{−E(z₁, z₂)} / Z an RBM (:mod:`estibench.models.rbm`, z₁ its visible and z₂
its hidden side), and p(x | z) = Bern(σ(dec(z))) with the decoder families of the SBN suite:

* ``arch="linear"``     dec(z) = V z + c;
* ``arch="nonlinear"``  z → ``hidden`` → ``hidden`` → x, tanh (as the SBN suite's nonlinear model);
* ``arch="elu"``        the RBM-prior paper's (``000_…`` §3.3) ELU MLPs: encoder x → 200 → 200 → 100 → 100 → z
                        (its 784–200–200–100–100–200 at 200 latents) and the reverse decoder
                        z → 100 → 100 → 200 → 200 → x (``hidden`` is not used).

With ``rbm_hidden`` = H > 0 the prior is instead the RBM-prior paper's (``000_…`` §3): every latent is a
visible unit of an RBM with H hidden units summed out, p(z) = e^{−F(z)} / Z (its MNIST model: 200 + 400).

Inference model (``groups``): 1 — q(z | x) factorial, Bern(σ(enc(x − x̄))) over all bits (DVAE++'s
one-latent-layer case, where its KL reduces to the mean-field form); 2 — hierarchical,
q(z₁ | x) q(z₂ | x, z₁) (DVAE++ Fig. 2(d)), the second encoder reading [x − x̄, z₁].  As in the SBN
suite the encoder input is centred by the training mean x̄ and the decoder's output bias starts at
logit(clip(x̄, 0.001, 0.999)); weights start like ``torch.nn.Linear``, the RBM's W at U(±0.01) and its
biases at 0, one seed per replicate.

The prior is known up to log Z, so the model declares the UNNORMALISED_PRIOR capability
(:mod:`estibench.models.protocols`), with RELAXED_BOLTZMANN (the guide's groups and the decoder at relaxed
latents, for ``gumbolt`` and the DVAE++ smoothings) and, when the prior is the energy over both halves
(``rbm_hidden`` = 0), MULTILINEAR_ENERGY (DVAE++'s analytic cross-entropy): ``log_joint`` = log p(x | z) − E(z) (no −log Z);
``log_prior_unnormalised(z)`` = −E(z); ``log_partition()`` is exact and differentiable when the RBM's
smaller side has at most :data:`EXACT_LOG_Z_BITS` bits (``rbm_vae_tiny``), else the last AIS estimate
(``estimate_log_partition``); ``negative_samples(n)`` are exact samples of the RBM when it is that
small, else the states of ``chains`` persistent chains advanced by ``gibbs_sweeps`` block-Gibbs sweeps
per call (DVAE# code: 1,000 chains, 40 sweeps; the chains are a buffer, part of the model's state).
``log_z="exact"`` insists on enumeration and is refused, with one line, for a large prior.

``rbm_vae_tiny`` is the same model on images max-pooled by ``downsample`` (default 4: 7×7) with at most
16 latent bits (default 8 = 4 + 4), so exact log p(x), the exact posterior and exact gradients
including the log Z term come from enumeration.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, constraints

from .base import LatentVariableModel
from .latents import BernoulliLatent
from .nn import StackedLinear, StackedMLP
from .protocols import (MULTILINEAR_ENERGY, RELAXED_BOLTZMANN, TRAINING_MEAN, UNNORMALISED_PRIOR,
                        bernoulli_log_mass)
from .rbm import RBM, PersistentChains
from .sbn import apply_stacked, image_statistics_query

ARCHS = ("linear", "nonlinear", "elu")
#: the RBM-prior paper's networks (``000_…`` §3.3): ELU MLPs 784–200–200–100–100–200 and the reverse
ELU_ENCODER_HIDDEN = (200, 200, 100, 100)
#: log Z (and negative samples) are exact when the RBM's smaller side has at most this many bits
EXACT_LOG_Z_BITS = 16
#: how log Z and the negative samples are obtained: exact when enumerable, else AIS and chains (auto); exact or refused
LOG_Z_MODES = ("auto", "exact")
TINY_MAX_BITS = 16


class HierarchicalBernoulli(Distribution):
    """q(z₁ | x) q(z₂ | x, z₁) over z = [z₁, z₂], batch ``[R, B]`` (DVAE++ Fig. 2(d))."""
    arg_constraints = {}
    support = constraints.boolean
    has_rsample = False

    def __init__(self, model: "RBMVAE", x: torch.Tensor):
        self.model, self.x = model, x
        self.first_logits = model.encoder_logits(0, x)
        super().__init__(batch_shape=x.shape[:-1], event_shape=(model.latent_bits,), validate_args=False)

    def _second_logits(self, z1: torch.Tensor) -> torch.Tensor:
        return self.model.encoder_logits(1, self.x.expand(*z1.shape[:-1], self.x.shape[-1]), z1)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.first_logits.shape
            z1 = torch.bernoulli(torch.sigmoid(self.first_logits).expand(shape))
            z2 = torch.bernoulli(torch.sigmoid(self._second_logits(z1)))
            return torch.cat([z1, z2], -1)

    #: ancestral draws of z₁ behind the Monte Carlo mean of z₂ (noise variance ≤ 1/(4·100))
    mean_samples = 100

    @property
    def mean(self) -> torch.Tensor:
        """E_q[z | x], ``[R, B, D]``: exact for z₁, for z₂ the mean of σ(logits of q(z₂ | x, z₁)) over
        :attr:`mean_samples` draws of z₁ (the same estimate as ``harness.metrics.active_units`` uses for SBNs)."""
        p1 = torch.sigmoid(self.first_logits)
        z1 = torch.bernoulli(p1.expand(self.mean_samples, *p1.shape))
        return torch.cat([p1, torch.sigmoid(self._second_logits(z1)).mean(0)], -1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        z1, z2 = z.split(self.model.split_sizes, dim=-1)
        return bernoulli_log_mass(self.first_logits, z1) + bernoulli_log_mass(self._second_logits(z1), z2)


class RBMVAE(LatentVariableModel):
    latent_kind = "bernoulli"
    provides = (UNNORMALISED_PRIOR, RELAXED_BOLTZMANN, MULTILINEAR_ENERGY, TRAINING_MEAN)  # narrowed per instance (rbm_hidden)
    default_dataset = "mnist5k-bern0"
    data_statistics = ("train_mean",)
    #: the AIS estimate of log Z, refreshed by the RBM study before each evaluation: read by objective values
    #: (``log_partition_term``'s value), never by a gradient, so measurement keeps it (harness/measurement.py)
    measurement_caches = ("log_z",)

    def __init__(self, seeds: Sequence[int] = (0,), arch: str = "linear", groups: int = 1,
                 dataset: str = "mnist5k-bern0", latent_bits: int = 200, hidden: int = 200, downsample: int = 1,
                 chains: int = 1000, gibbs_sweeps: int = 40, ais_chains: int = 1000, ais_steps: int = 1000,
                 rbm_hidden: int = 0, log_z: str = "auto", train_mean: Optional[torch.Tensor] = None):
        super().__init__(seeds)
        if arch not in ARCHS:
            raise ValueError(f"unknown RBM-VAE arch {arch!r}; choose from {', '.join(ARCHS)}")
        if int(groups) not in (1, 2):
            raise ValueError(f"groups must be 1 (factorial guide) or 2 (hierarchical guide), got {groups}")
        if int(latent_bits) < 2 or int(hidden) < 1:
            raise ValueError(f"latent_bits must be at least 2 and hidden at least 1, got {latent_bits}, {hidden}")
        for name, value in (("chains", chains), ("gibbs_sweeps", gibbs_sweeps), ("ais_chains", ais_chains)):
            if int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if int(ais_steps) < 1:
            raise ValueError(f"an AIS schedule needs at least 2 temperatures (ais_steps >= 1), got {ais_steps}")
        if log_z not in LOG_Z_MODES:
            raise ValueError(f"log_z must be one of {', '.join(LOG_Z_MODES)}, got {log_z!r}")
        if int(rbm_hidden) < 0:
            raise ValueError(f"rbm_hidden must be 0 (both RBM sides are latents) or positive, got {rbm_hidden}")
        if int(downsample) < 1 or 28 % int(downsample) != 0:
            raise ValueError(f"downsample must divide 28, got {downsample}")
        if train_mean is None:  # data → models: the harness passes it (estibench.harness.build_model)
            raise ValueError(f"{type(self).__name__} needs train_mean, the training statistics of {dataset!r}: "
                             "build it with estibench.harness.build_model or pass train_mean")
        self.arch, self.groups, self.dataset = arch, int(groups), str(dataset)
        self.latent_bits, self.hidden, self.downsample = int(latent_bits), int(hidden), int(downsample)
        self.gibbs_sweeps, self.ais_chains, self.ais_steps = int(gibbs_sweeps), int(ais_chains), int(ais_steps)
        side = 28 // self.downsample
        pixels = side * side
        self.obs_shape = (pixels,)
        self.register_buffer("train_mean", torch.as_tensor(train_mean, dtype=torch.float32).reshape(pixels))
        n1 = self.latent_bits // 2
        self.split_sizes = (n1, self.latent_bits - n1)
        self.latent = BernoulliLatent(self.latent_bits)
        seeds, D, H = self.seeds, self.latent_bits, self.hidden
        # θ: the RBM prior and the decoder
        self.rbm_hidden = int(rbm_hidden)
        # −E(z₁, z₂) is affine in every bit (DVAE++'s analytic cross-entropy applies); −F(z) is not
        self.provides = ((UNNORMALISED_PRIOR, RELAXED_BOLTZMANN, TRAINING_MEAN)
                         + ((MULTILINEAR_ENERGY,) if not self.rbm_hidden else ()))
        self.hierarchical_guide = self.groups == 2
        # DVAE++: the RBM's two sides are the two latent halves; the RBM-prior paper: every latent is a
        # visible unit and ``rbm_hidden`` hidden units are summed out
        self.rbm = RBM(seeds, *self.split_sizes) if self.rbm_hidden == 0 else RBM(seeds, D, self.rbm_hidden)
        if arch == "nonlinear":
            self.decoder = StackedMLP(seeds, [D, H, H, pixels], activation="tanh", salt=62)
            out_bias = self.decoder.layers[-1].bias
        elif arch == "elu":
            self.decoder = StackedMLP(seeds, [D, *reversed(ELU_ENCODER_HIDDEN), pixels], activation="elu", salt=64)
            out_bias = self.decoder.layers[-1].bias
        else:
            self.decoder = StackedLinear(seeds, D, pixels, salt=60)
            out_bias = self.decoder.bias
        with torch.no_grad():
            out_bias.copy_(torch.logit(self.train_mean.clamp(0.001, 0.999)).expand_as(out_bias))
        # φ: one encoder per group
        outs = (D,) if self.groups == 1 else self.split_sizes
        ins = (pixels,) if self.groups == 1 else (pixels, pixels + n1)
        if arch == "nonlinear":
            self.encoders = nn.ModuleList(StackedMLP(seeds, [i, H, H, o], activation="tanh", salt=70 + g)
                                          for g, (i, o) in enumerate(zip(ins, outs)))
        elif arch == "elu":
            self.encoders = nn.ModuleList(StackedMLP(seeds, [i, *ELU_ENCODER_HIDDEN, o], activation="elu", salt=74 + g)
                                          for g, (i, o) in enumerate(zip(ins, outs)))
        else:
            self.encoders = nn.ModuleList(StackedLinear(seeds, i, o, salt=80 + g)
                                          for g, (i, o) in enumerate(zip(ins, outs)))
        self.log_z_mode = log_z
        if log_z == "exact" and not self.enumerable_prior():
            raise ValueError(f"log_z='exact' needs an RBM whose smaller side has at most {EXACT_LOG_Z_BITS} bits to "
                             f"enumerate; this one is {self.rbm.n_visible} + {self.rbm.n_hidden}: use log_z='auto' (AIS)")
        self.chains = PersistentChains(self.rbm, chains=chains, seed=self.seeds[0])
        self.register_buffer("log_z", self.rbm.log_base_partition(torch.zeros(1)).detach().float())

    statistics_query = classmethod(image_statistics_query)

    # -- parameter groups ----------------------------------------------------------------------
    def generative_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in [*self.rbm.parameters(), *self.decoder.parameters()]}
        return [p for p in self.parameters() if id(p) in ids]

    def guide_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in self.encoders.parameters()}
        return [p for p in self.parameters() if id(p) in ids]

    # -- networks ------------------------------------------------------------------------------
    def encoder_logits(self, group: int, x: torch.Tensor, z1: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = x - self.train_mean
        if group == 1:
            h = torch.cat([h, z1], -1)
        return apply_stacked(self.encoders[group], h)

    def decoder_logits(self, z: torch.Tensor) -> torch.Tensor:
        return apply_stacked(self.decoder, z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z), ``[*particles, R, B]``; a relaxed z ∈ [0, 1] (RELAXED_BOLTZMANN) is evaluated as is."""
        return bernoulli_log_mass(self.decoder_logits(z), x)

    def log_likelihood_discrete(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) at binary z (the same as :meth:`log_likelihood`; a model with latents of its own inside the
        decoder, ``conv_vae``, evaluates them in the binary limit here)."""
        return self.log_likelihood(x, z)

    def prior_image_means(self, z: torch.Tensor) -> torch.Tensor:
        """σ(dec(z)): the decoded means of latents ``[R, n, D]``, ``[R, n, pixels]`` (the report's image grid)."""
        return torch.sigmoid(self.decoder_logits(z))

    def split(self, z: torch.Tensor):
        return z.split(self.split_sizes, dim=-1)

    # -- the model contract --------------------------------------------------------------------
    def guide(self, x: torch.Tensor) -> Distribution:
        if self.groups == 1:
            return Independent(Bernoulli(logits=self.encoder_logits(0, x), validate_args=False), 1)
        return HierarchicalBernoulli(self, x)

    def log_prior_unnormalised(self, z: torch.Tensor) -> torch.Tensor:
        """log p*(z), ``[*particles, R, B]`` (z ``[*particles, R, B, D]``): −E(z₁, z₂), or −F(z) with the
        RBM's hidden units summed out when ``rbm_hidden`` > 0."""
        if self.rbm_hidden:
            return -self.rbm.free_energy(z.movedim(-2, 0)).movedim(0, -1)
        z1, z2 = self.split(z)
        return -self.rbm.energy(z1.movedim(-2, 0), z2.movedim(-2, 0)).movedim(0, -1)

    @torch.no_grad()
    def log_prior_raise(self, z: torch.Tensor, chains: int, steps: int) -> torch.Tensor:
        """RAISE estimate of log p(z), ``[*particles, R, B]`` (no log Z; conservative): RAISE on the RBM's
        visible side, plus the exact log p(z₂ | z₁) when both sides are latents."""
        # [..., R, B, ·] → [..., B, R, ·]: the RBM wants R second to last (this order fixes RAISE's draws)
        if self.rbm_hidden:
            return self.rbm.log_prob_raise(z.movedim(-2, -3), chains=chains, steps=steps).movedim(-2, -1)
        z1, z2 = (t.movedim(-2, -3) for t in self.split(z))
        log_p = self.rbm.log_prob_raise(z1, chains=chains, steps=steps)
        log_p = log_p + bernoulli_log_mass(self.rbm.hidden_logits(z1), z2).to(log_p.dtype)
        return log_p.movedim(-2, -1)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) − E(z): the joint without −log Z (UNNORMALISED_PRIOR)."""
        return self.log_likelihood(x, z) + self.log_prior_unnormalised(z)

    def enumerable_prior(self) -> bool:
        """Whether the RBM's smaller side has at most :data:`EXACT_LOG_Z_BITS` bits (exact log Z and samples)."""
        return min(self.rbm.n_visible, self.rbm.n_hidden) <= EXACT_LOG_Z_BITS

    def exact_prior(self) -> bool:
        """Whether training and evaluation use the exact log Z and exact prior samples: when the prior is
        enumerable (``log_z="exact"`` insists on it and is refused at construction for a large prior)."""
        return self.enumerable_prior()

    def log_partition(self) -> torch.Tensor:
        """log Z per replicate ``[R]``: exact and differentiable for a small RBM, else the last AIS
        estimate (:meth:`estimate_log_partition`; a buffer, no gradient)."""
        if self.exact_prior():
            return self.rbm.log_partition()
        return self.log_z

    @torch.no_grad()
    def estimate_log_partition(self, chains: Optional[int] = None, steps: Optional[int] = None) -> torch.Tensor:
        """Refresh :meth:`log_partition`'s estimate by forward AIS (``ais_chains`` × ``ais_steps``)."""
        log_z, _ = self.rbm.log_partition_ais(chains=chains or self.ais_chains, steps=steps or self.ais_steps)
        self.log_z.copy_(log_z.to(self.log_z.dtype))
        return self.log_z

    @torch.no_grad()
    def negative_samples(self, n: Optional[int] = None) -> torch.Tensor:
        """Samples of the prior for the negative phase, ``[n, R, D]``: exact for a small RBM (n defaults
        to the number of chains), else the persistent chains' states after ``gibbs_sweeps`` more sweeps
        (``n`` must then be the number of chains or None)."""
        if self.exact_prior():
            v, h = self.rbm.sample_exact(n or self.chains.v.shape[1])
        else:
            if n not in (None, self.chains.v.shape[1]):
                raise ValueError(f"the persistent chains hold {self.chains.v.shape[1]} states, {n} were asked for")
            v, h = self.chains.advance(self.rbm, self.gibbs_sweeps)
        return self.latents_of(v, h)

    def latents_of(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The latents of RBM states (v, h): [v, h] when both sides are latents, else v."""
        return (v if self.rbm_hidden else torch.cat([v, h], -1)).to(self.dtype)

    @torch.no_grad()
    def sample_observations(self, z: torch.Tensor) -> torch.Tensor:
        """x ~ p(x | z) for prior samples ``z [n, R, D]`` (e.g. :meth:`negative_samples`), ``[R, n, pixels]``."""
        return torch.bernoulli(torch.sigmoid(self.decoder_logits(z.transpose(0, 1).to(self.dtype))))

    @torch.no_grad()
    def sample(self, n: int):
        """(z, x) ~ p: z exact for a small RBM, else after 25 × ``gibbs_sweeps`` sweeps of fresh chains."""
        if self.exact_prior():
            v, h = self.rbm.sample_exact(n)
        else:
            v, h = self.rbm.gibbs(self.rbm.random_visible(n), 25 * self.gibbs_sweeps)
        z = self.latents_of(v, h)  # [n, R, D]
        return z.transpose(0, 1), self.sample_observations(z)


class TinyRBMVAE(RBMVAE):
    """The enumerable RBM-prior VAE: down-sampled images, at most 16 latent bits, exact log Z."""

    def __init__(self, seeds: Sequence[int] = (0,), arch: str = "linear", groups: int = 1,
                 dataset: str = "mnist5k-bern0", latent_bits: int = 8, hidden: int = 32, downsample: int = 4,
                 chains: int = 100, gibbs_sweeps: int = 1, ais_chains: int = 100, ais_steps: int = 100,
                 rbm_hidden: int = 0, log_z: str = "auto", train_mean: Optional[torch.Tensor] = None):
        if int(latent_bits) > TINY_MAX_BITS:
            raise ValueError(f"rbm_vae_tiny allows at most {TINY_MAX_BITS} latent bits, got {latent_bits}")
        super().__init__(seeds, arch=arch, groups=groups, dataset=dataset, latent_bits=latent_bits, hidden=hidden,
                         downsample=downsample, chains=chains, gibbs_sweeps=gibbs_sweeps, ais_chains=ais_chains,
                         ais_steps=ais_steps, rbm_hidden=rbm_hidden, log_z=log_z, train_mean=train_mean)
