"""A linear-Gaussian latent-variable model with closed-form ground truth: the continuous counterpart of the
enumerable models, for the statistical exact-gradient tests of the reparameterised and continuous-latent
estimators (factor analysis / probabilistic PCA, e.g. Tipping & Bishop 1999, Eqs. 2–7; the Gaussian
identities of Bishop, "Pattern Recognition and Machine Learning", §2.3.3, Eqs. 2.113–2.117).

Generative model (θ = W, b):  p(z) = N(0, I_d),  p(x | z) = N(W z + b, σ² I_D), σ = ``noise_std`` fixed.
Guide (φ = A, c, ℓ):          q(z | x) = N(A x + c, diag(e^{2ℓ})).
Closed forms, per data point and differentiable in θ and φ (CLOSED_FORM_GAUSSIAN):
* log p(x) = log N(x; b, W Wᵀ + σ² I)                                         (Eq. 2.115);
* p(z | x) = N(Σ Wᵀ(x − b) / σ², Σ),  Σ = (I + Wᵀ W / σ²)⁻¹                     (Eq. 2.116);
* ELBO = E_q[log p(x | z)] + E_q[log p(z)] + H(q) with, for q = N(μ, diag(s²)),
      E_q[log p(x | z)] = −(D/2) log 2πσ² − (‖x − Wμ − b‖² + Σ_j s_j² ‖W_{:j}‖²) / (2σ²),
      E_q[log p(z)] = −(d/2) log 2π − (‖μ‖² + Σ_j s_j²) / 2,   H(q) = Σ_j (½ log 2πe + log s_j);
* −KL(p(z | x) ‖ q(z | x)) by ``torch.distributions.kl_divergence`` of the two Gaussians (RWS Eq. 4's
  wake-φ objective).
There is no closed form for the K-particle bound ELBO_IS^K with K > 1; the harness refuses it for this model
(tests compare the K > 1 estimators against each other instead).

Parameters start seeded (one seed per replicate): W, A ~ U(±0.5), b, c ~ U(±0.1), ℓ = log 0.8.  Defaults
d = 2 latents, D = 4 observations, σ = 0.5: small enough that every test runs in seconds.  Synthetic data
come from the model itself (``sample``); it belongs to no study yet.
"""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from .base import LatentVariableModel
from .latents import NormalLatent
from .nn import seeded_uniform
from .protocols import CLOSED_FORM_GAUSSIAN, REPARAMETERISED


class LinearGaussian(LatentVariableModel):
    latent_kind = "normal"
    provides = (REPARAMETERISED, CLOSED_FORM_GAUSSIAN)
    default_dataset = "linear-gaussian-model"

    def __init__(self, seeds: Sequence[int] = (0,), latent_dim: int = 2, obs_dim: int = 4, noise_std: float = 0.5):
        super().__init__(seeds)
        if int(latent_dim) < 1 or int(obs_dim) < 1:
            raise ValueError(f"latent_dim and obs_dim must be positive, got {latent_dim}, {obs_dim}")
        if not (math.isfinite(noise_std) and noise_std > 0):
            raise ValueError(f"noise_std must be a positive finite number, got {noise_std}")
        d, D = int(latent_dim), int(obs_dim)
        self.latent = NormalLatent(d)
        self.obs_shape = (D,)
        self.noise_std = float(noise_std)
        seeds = self.seeds
        self.W = nn.Parameter(seeded_uniform(seeds, (D, d), 0.5, 1))
        self.b = nn.Parameter(seeded_uniform(seeds, (D,), 0.1, 2))
        self.A = nn.Parameter(seeded_uniform(seeds, (d, D), 0.5, 3))
        self.c = nn.Parameter(seeded_uniform(seeds, (d,), 0.1, 4))
        self.log_scale = nn.Parameter(torch.full((len(seeds), d), math.log(0.8)))

    def generative_parameters(self) -> List[nn.Parameter]:
        return [self.W, self.b]

    def guide_parameters(self) -> List[nn.Parameter]:
        return [self.A, self.c, self.log_scale]

    # -- the contract ---------------------------------------------------------------------------
    def _guide_moments(self, x: torch.Tensor):
        loc = torch.einsum("rbD,rdD->rbd", x, self.A) + self.c.unsqueeze(1)
        return loc, self.log_scale.exp().unsqueeze(1).expand_as(loc)

    def guide(self, x: torch.Tensor) -> Independent:
        loc, scale = self._guide_moments(x)
        return Independent(Normal(loc, scale, validate_args=False), 1)

    def guide_rsample(self, x: torch.Tensor, num_particles: int):
        """(z, log q(z | x)), z = μ + s ε reparameterised, ``[K, R, B, d]`` and ``[K, R, B]``."""
        q = self.guide(x)
        z = q.rsample((int(num_particles),))
        return z, q.log_prob(z)

    def _mean(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...rbd,rDd->...rbD", z, self.W) + self.b.unsqueeze(1)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        prior = Normal(torch.zeros((), dtype=z.dtype, device=z.device), 1.0).log_prob(z).sum(-1)
        likelihood = Normal(self._mean(z), self.noise_std).log_prob(x).sum(-1)
        return prior + likelihood

    @torch.no_grad()
    def sample(self, n: int):
        R, d = self.replicates, self.latent.dim
        z = torch.randn(R, int(n), d, dtype=self.dtype, device=self.device)
        x = self._mean(z) + self.noise_std * torch.randn(R, int(n), self.obs_shape[0], dtype=self.dtype, device=self.device)
        return z, x

    # -- closed forms (CLOSED_FORM_GAUSSIAN) ----------------------------------------------------------
    def _marginal_covariance(self) -> torch.Tensor:
        eye = torch.eye(self.obs_shape[0], dtype=self.W.dtype, device=self.W.device)
        return self.W @ self.W.transpose(-1, -2) + self.noise_std ** 2 * eye  # [R, D, D]

    def log_marginal_exact(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x), ``[R, B]``."""
        marginal = MultivariateNormal(self.b.unsqueeze(1), self._marginal_covariance().unsqueeze(1))
        return marginal.log_prob(x)

    def posterior(self, x: torch.Tensor) -> MultivariateNormal:
        """p(z | x), batch ``[R, B]``."""
        s2 = self.noise_std ** 2
        eye = torch.eye(self.latent.dim, dtype=self.W.dtype, device=self.W.device)
        cov = torch.linalg.inv(eye + self.W.transpose(-1, -2) @ self.W / s2)  # [R, d, d]
        mean = torch.einsum("rde,rDe,rbD->rbd", cov, self.W, x - self.b.unsqueeze(1)) / s2
        return MultivariateNormal(mean, cov.unsqueeze(1).expand(*mean.shape, self.latent.dim))

    def elbo_exact(self, x: torch.Tensor) -> torch.Tensor:
        """ELBO = E_q[log p(x, z) − log q(z | x)], ``[R, B]``."""
        mu, s = self._guide_moments(x)
        D, d, s2 = self.obs_shape[0], self.latent.dim, self.noise_std ** 2
        residual = x - self._mean(mu)
        spread = (s * s * (self.W * self.W).sum(-2).unsqueeze(1)).sum(-1)  # Σ_j s_j² ‖W_{:j}‖²
        likelihood = -0.5 * D * math.log(2 * math.pi * s2) - ((residual ** 2).sum(-1) + spread) / (2 * s2)
        prior = -0.5 * d * math.log(2 * math.pi) - 0.5 * ((mu ** 2).sum(-1) + (s * s).sum(-1))
        entropy = (0.5 * math.log(2 * math.pi * math.e) + s.log()).sum(-1)
        return likelihood + prior + entropy

    def negative_inclusive_kl_exact(self, x: torch.Tensor) -> torch.Tensor:
        """−KL(p(z | x) ‖ q(z | x)), ``[R, B]``."""
        loc, scale = self._guide_moments(x)
        q = MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
        return -kl_divergence(self.posterior(x), q)
