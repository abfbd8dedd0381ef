"""The 20-cluster Gaussian mixture of "Revisiting Reweighted Wake-Sleep" (Le et al., §4.3).

Generative model (paper §4.3, first display):
    p_θ(z) = Categorical(softmax(s·θ)),   p(x | z) = Normal(μ_z, σ²),  μ_c = 10c,  σ = 5,
with only θ ∈ R^C learned.  The true model has mixture probabilities ∝ (c + 5), c = 0..C-1.
Guide: q_φ(z | x) = Categorical(softmax(η_φ(x))), η_φ a tanh MLP fed the raw scalar x (neither the
paper nor the authors' code applies input scaling, so none is applied), initialised like
``torch.nn.Linear``.

Options (studies/gmm/README.md records where the paper and the authors' code differ):
    num_clusters   C, default 20 (paper).
    prior_scale    s; the code computes the prior logits as 0.5·θ, the paper's text as θ.
                   Default 0.5 (code): the published figures were made with the code.
    init           "far" (code default, θ = [2(C-1), …, 2, 0] so the prior puts almost all mass
                   on z = 0; Fig 5's start row shows this) or "uniform" (θ = 0).  Default "far".
    guide_hidden   hidden widths of η_φ; paper (16,), code (16, 16).  Default (16, 16), which
                   gives D_φ = 644, the normalisation the paper's gradient-std metric uses.
    seeds          one replicate per seed; replicate r's guide is initialised from seeds[r]
                   exactly as a single model built with that seed.

Relaxations of the joint at a relaxed one-hot z̃ (for the Concrete estimator):
    ``relaxed_log_joint``       the RWS paper's and its code's (rrws ``gmm/models.py``): the likelihood
                                is a Gaussian at the interpolated mean, log N(x; Σ_c z̃_c μ_c, σ²) (the
                                paper's §1: a relaxation "forces the evaluation of a weighted average
                                of likelihood parameters over all clusters"), the prior is the hard
                                mass at argmax z̃, log softmax(sθ)_{argmax z̃} (torch's
                                ``OneHotCategorical.log_prob`` at a relaxed value, which the code
                                calls; no pathwise term through z̃).
    ``relaxed_log_joint_mass``  a mixture of log-densities, Σ_c z̃_c (log softmax(sθ)_c + log N(x; μ_c,
                                σ²)) (this project's first variant; not the paper's, kept as the
                                Concrete option ``relaxation=mass``).

The factorial categorical interface (``models/protocols.py`` FACTORIAL_CATEGORICAL; D = 1 variable of C
states, for the estimators that work on one-hot codes): ``guide_logits(x)`` are the guide's logits
``[R, B, 1, C]`` and ``log_joint_onehot(x, y)`` = log N(x; Σ_c y_c μ_c, σ²) + Σ_c y_c log softmax(sθ)_c,
exact at a one-hot y; away from one-hot the likelihood is the interpolated-mean one of the RWS code's
relaxation (as a decoder fed the one-hot code would compute it) and the prior is linear in y (its log-mass),
so the straight-through estimators get a pathwise derivative through both.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.distributions import Normal, OneHotCategorical

from .distributions import Categorical

from .base import LatentVariableModel
from .protocols import FACTORIAL_CATEGORICAL, GMM_TRUTH, RELAXED_LOG_JOINT, RELAXED_LOG_JOINT_MASS
from .latents import CategoricalLatent
from .nn import StackedMLP


def cluster_means(num_clusters: int, mean_spacing: float) -> torch.Tensor:
    """The true means μ_c = spacing · c, c = 0 … C − 1 (float32, as the model's buffer)."""
    return mean_spacing * torch.arange(int(num_clusters), dtype=torch.float32)


def log_likelihood_table(x: torch.Tensor, means: torch.Tensor, std: float) -> torch.Tensor:
    """log N(x; μ_c, σ²) for every cluster c, ``[*x.shape, C]``: the model's likelihood as a function of its settings
    (what a report computes from a cell's option columns, without building the model)."""
    return -0.5 * ((x.unsqueeze(-1) - means) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


class GMM(LatentVariableModel):
    latent_kind = "categorical"
    obs_shape = ()
    #: GMM_TRUTH: the true model, mixture weights, means and std the GMM study measures against (Study.needs)
    provides = (RELAXED_LOG_JOINT, RELAXED_LOG_JOINT_MASS, FACTORIAL_CATEGORICAL, GMM_TRUTH)
    #: fresh batches from the paper's true model (synthetic: mixture weights ∝ c + 5)
    default_dataset = "gmm-true-model"

    def __init__(
        self,
        num_clusters: int = 20,
        prior_scale: float = 0.5,
        init: str = "far",
        guide_hidden: Sequence[int] = (16, 16),
        seeds: Sequence[int] = (0,),
        mean_spacing: float = 10.0,
        std: float = 5.0,
    ):
        super().__init__(seeds)
        if num_clusters < 2:
            raise ValueError(f"num_clusters must be at least 2, got {num_clusters}")
        if init not in ("far", "uniform", "true"):
            raise ValueError(f"unknown init {init!r}; choose 'far', 'uniform' or 'true'")
        if not (prior_scale > 0 and math.isfinite(prior_scale)):
            raise ValueError(f"prior_scale must be a positive finite number, got {prior_scale}")
        if not (std > 0 and math.isfinite(std)):
            raise ValueError(f"std (of every cluster) must be a positive finite number, got {std}")
        if not math.isfinite(mean_spacing):
            raise ValueError(f"mean_spacing must be finite, got {mean_spacing}")
        if any(int(h) < 1 for h in guide_hidden):
            raise ValueError(f"guide_hidden widths must be at least 1, got {tuple(guide_hidden)}")
        C = int(num_clusters)
        self.num_clusters = C
        self.prior_scale = float(prior_scale)
        self.init = init
        self.guide_hidden = tuple(int(h) for h in guide_hidden)
        self.latent = CategoricalLatent(C)
        self.std = float(std)
        self.register_buffer("means", cluster_means(C, mean_spacing))
        self.theta = nn.Parameter(self.initial_theta(init).expand(self.replicates, C).clone())
        self.guide_net = StackedMLP(self.seeds, [1, *self.guide_hidden, C], activation="tanh")

    # -- parameterisation -------------------------------------------------------------------
    def initial_theta(self, init: str) -> torch.Tensor:
        C = self.num_clusters
        if init == "far":
            return 2.0 * torch.arange(C - 1, -1, -1, dtype=torch.float32)
        if init == "uniform":
            return torch.zeros(C)
        return self.true_theta()

    def true_theta(self) -> torch.Tensor:
        c = torch.arange(self.num_clusters, dtype=torch.float32)
        return torch.log(c + 5) / self.prior_scale

    def true_model(self) -> "GMM":
        """A frozen copy with θ at the truth (same replicates, device and dtype)."""
        true = GMM(self.num_clusters, self.prior_scale, "true", self.guide_hidden, self.seeds, std=self.std)
        true.means.copy_(self.means)
        true = true.to(device=self.device, dtype=self.dtype)
        return true.requires_grad_(False)

    def prior_logits(self) -> torch.Tensor:
        """Normalised log p_θ(z), ``[R, C]``."""
        return torch.log_softmax(self.prior_scale * self.theta, dim=-1)

    def prior_probs(self) -> torch.Tensor:
        return self.prior_logits().exp()

    def generative_parameters(self):
        return [self.theta]

    def guide_parameters(self):
        return list(self.guide_net.parameters())

    # -- contract ---------------------------------------------------------------------------
    def guide(self, x: torch.Tensor) -> Categorical:
        logits = self.guide_net(x.unsqueeze(-1))
        return Categorical(logits=logits, validate_args=False)

    def log_likelihood_table(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z = c) for every c, ``[R, B, C]``."""
        return log_likelihood_table(x, self.means, self.std)

    def log_joint_table(self, x: torch.Tensor) -> torch.Tensor:
        """log p_θ(x, z = c) for every c, ``[R, B, C]``."""
        return self.prior_logits().unsqueeze(-2) + self.log_likelihood_table(x)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        table = self.log_joint_table(x)
        shape = torch.broadcast_shapes(z.shape, x.shape)
        index = z.expand(shape).unsqueeze(-1)
        return table.expand(*shape, self.num_clusters).gather(-1, index).squeeze(-1)

    def relaxed_log_joint(self, x: torch.Tensor, z_soft: torch.Tensor) -> torch.Tensor:
        """log N(x; Σ_c z̃_c μ_c, σ²) + log p_θ(z = argmax z̃) at relaxed one-hot z̃ ``[*particles, R, B, C]``
        (the RWS code's relaxation, module docstring)."""
        lik = Normal((z_soft * self.means).sum(-1), self.std, validate_args=False).log_prob(x)
        prior = OneHotCategorical(logits=self.prior_logits().unsqueeze(-2), validate_args=False)
        return lik + prior.log_prob(z_soft)

    def relaxed_log_joint_mass(self, x: torch.Tensor, z_soft: torch.Tensor) -> torch.Tensor:
        """Σ_c z̃_c log p_θ(x, z = c) at relaxed one-hot z̃ (the mixture of log-densities, module docstring)."""
        lik = (z_soft * self.log_likelihood_table(x)).sum(-1)
        return lik + (z_soft * self.prior_logits().unsqueeze(-2)).sum(-1)

    # -- factorial categorical interface (module docstring) --------------------------------------
    @property
    def categorical_shape(self):
        return (1, self.num_clusters)

    def guide_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.guide_net(x.unsqueeze(-1)).unsqueeze(-2)

    def log_joint_onehot(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y.squeeze(-2)
        lik = Normal((y * self.means).sum(-1), self.std, validate_args=False).log_prob(x)
        return lik + (y * self.prior_logits().unsqueeze(-2)).sum(-1)

    @torch.no_grad()
    def sample(self, n: int):
        # one prior row per replicate, [R, 1, C], drawn n times: the same uniforms in the same order as a prior
        # expanded to [R, n, C] (which normalised and summed R·n identical rows), so the same draws.  Rebuilt only
        # when θ changed (its version counter): a frozen model (the true model drawing every training batch)
        # builds it once
        ident = (self.theta._version, self.theta.data_ptr(), self.theta.device, self.theta.dtype)
        cached = self.__dict__.get("_prior_cache")
        if cached is None or cached[0] != ident:
            cached = self.__dict__["_prior_cache"] = (
                ident, Categorical(logits=self.prior_logits().unsqueeze(-2), validate_args=False))
        z = cached[1].sample_along(n)
        x = self.means[z] + self.std * torch.randn(z.shape, device=z.device, dtype=self.dtype)
        return z, x
