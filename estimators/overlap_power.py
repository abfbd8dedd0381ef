"""DVAE# with power-function smoothing (Vahdat et al., 2018b, "DVAE#: Discrete variational
autoencoders with relaxed Boltzmann priors"; bounds of DVAE++ §4, Eq. 4/5).

The paper (DVAE#): λ = 1/β, R(ζ|0) = ζ^λ, r(ζ|1) = r(1 − ζ|0) on [0, 1].  DVAE# trains the
importance-weighted bound of the relaxed (marginal) model; its Boltzmann priors need approximations
of the mixtures p(ζ|·) = Σ_z p(z|·) r(ζ|z).

The reference code: the DVAE# code uses β = 40 for this smoothing (MNIST, 200 latents, linear SBN;
30 for the nonlinear one); not otherwise checked against released code.

This file: ζ is drawn with its implicit-reparameterisation gradient.  In float32 at β = 30–40 most
z = 1 draws round to ζ = 1 and some z = 0 draws underflow to 0, so the draw is carried as the exact
pair (log ζ, log(1 − ζ)) (``OverlapPower.sample_log``) and every density and posterior is evaluated
from that pair (``log_q_zeta_log``, ``posterior_logits_log``); the decoder and the next layers see ζ
itself.  Bound: as DVAE#, ``elbo="marginal"`` is the default here:
    log (1/K) Σ_k w_k,  log w_k = log p(x|ζ₀ₖ) + Σ_l Σ_i [log p(ζ_lₖᵢ | ζ_{l+1,k}) − log q(ζ_lₖᵢ | ζ_{l−1,k}, x)],
with the mixtures p(ζ|·) = Σ_z p(z|·) r(ζ|z) (exact for our factorial directed prior; DVAE#'s
approximations are not used here); ``elbo="joint"`` gives the joint bound of ``overlap_exp.py``.
β is annealed linearly from ``beta_start`` to ``beta_end``; both default to 40, the DVAE# code's
value for the linear SBN.  Biased for the discrete objective.  K ≥ 1.
"""
import torch

from . import smoothing as smoothings
from .binary import uniform_like
from .functional.smoothing import overlap_power_log_density, overlap_power_posterior_logits, overlap_power_sample
from .overlap_exp import SmoothedBound


class OverlapPower(SmoothedBound):
    display_name = "power-function"
    smoothing = smoothings.OverlapPower()
    reference_beta = 40.0
    default_elbo = "marginal"

    def draw(self, logits):
        return overlap_power_sample(logits, uniform_like(logits), self.beta)

    def value(self, draw):
        return draw[0]

    def log_density(self, logits, draw):
        return overlap_power_log_density(logits, draw[1], draw[2], self.beta)

    def posterior(self, logits, draw):
        return torch.sigmoid(overlap_power_posterior_logits(logits, draw[1], draw[2], self.beta))
