"""GST: the gapped straight-through estimator for factorial categorical latents (Fan et al., 2022).

The paper: Fan, Chi, Rudnicky & Ramadge, "Training Discrete Deep Generative Models via Gapped Straight-Through
Estimator", ICML 2022: a straight-through estimator whose backward pass is the tempered softmax of a
deterministic perturbation of the logits built from the sampled category D, keeping the properties of ST-GS that
the paper finds essential (the sampled category is the arg max of the perturbed logits, with a gap to the rest)
without resampling Gumbel noise.  Two gaps: GST-1.0 (gap κ = 1) and GST-p (κ = −log(1 − π_D)/π_D, π_D the
sampled category's probability).  Equation and section numbers not verified (the paper's text past its abstract
was not available here); the construction below is the reference code's.

The reference code: github chijames/GST, ``model/basic.py`` ``gst_mover`` (modes ``gst-1.0``, ``gst-p``): with
θ_max = max_c θ_c, the perturbed logits are
    m_D = θ_max,   m_j = min(θ_j, θ_max − κ)  (j ≠ D),
the shift m − θ computed from detached logits (so it is a constant in the backward pass; the code's
``nd_gst`` mode, not detached, is an ablation and not offered here), centred (no effect on the softmax), and
D_st = D + softmax(m/τ) − stopgrad(softmax(m/τ)).  For GST-p it scales π_D by (1 − 1e-5) before the log.

This file: that construction, written anew, on the normalised log-probabilities ℓ (the perturbation and the
softmax are shift invariant, so ℓ and raw logits give the same estimator); option ``variant`` (``variants``):
``fixed`` (default; GST-1.0 at the default ``gap`` κ = 1.0, any positive κ allowed) or ``p`` (GST-p, π_D clipped
to ≤ 1 − 1e-5 as the code's factor does; ``gap`` unused), option
``temperature`` τ (default 1, the code's default; its VAE example also runs 0.5), annealed linearly to
``final_temperature`` over training when given.  The surrogate is the K-sample ELBO average at the hard one-hot
codes with the GST backward for φ (estimators/onehot.py ``straight_through_elbo``: log q straight-through too,
plus its zero-mean direct score term); θ's gradient is mean_k ∇_θ log p_θ(x, y_k) at the hard codes.
Deviation: the code's VAE uses the analytic KL to a uniform prior; here log q and the learned prior enter the
sampled ELBO like every estimator of this benchmark.  Biased.
"""
from __future__ import annotations

import torch

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .binary import check_temperatures
from .onehot import NEEDS, ONEHOT_LATENTS, log_probs, onehot_sample, straight_through_elbo

#: the reference code clips π_D to this before −log(1 − π_D)/π_D
MAX_PROBABILITY = 1.0 - 1e-5
VARIANTS = ("fixed", "p")


def gapped_logits(ell: torch.Tensor, y: torch.Tensor, gap) -> torch.Tensor:
    """The perturbed logits m (no gradient), ``y.shape``: m_D = max ℓ, m_j = min(ℓ_j, max ℓ − κ); ``gap`` κ, or
    ``"p"`` for κ = −log(1 − π_D)/π_D."""
    with torch.no_grad():
        top = ell.max(-1, keepdim=True).values
        if gap == "p":
            pi = (y * ell).sum(-1, keepdim=True).exp().clamp(max=MAX_PROBABILITY)
            gap = -torch.log1p(-pi) / pi
        return y * top + (1.0 - y) * torch.minimum(ell, top - gap)


def gst_soft(ell: torch.Tensor, y: torch.Tensor, gap, temperature: float) -> torch.Tensor:
    """softmax((ℓ + stopgrad(m − ℓ))/τ), ``y.shape``: the surrogate whose Jacobian in ℓ is GST's."""
    shift = gapped_logits(ell, y, gap) - ell.detach()
    return torch.softmax((ell + shift) / temperature, -1)


class Gst(Estimator):
    latent_types = ONEHOT_LATENTS
    needs = NEEDS
    variants = VARIANTS
    display_name = "GST"
    guide_target = "elbo"
    generative_target = "elbo"
    unbiased = False

    def __init__(self, gap: float = 1.0, temperature: float = 1.0, final_temperature: float = None,
                 variant: str = "fixed"):
        super().__init__()
        if variant not in VARIANTS:
            raise IncompatibleError(f"gst: unknown variant {variant!r}; choose {' or '.join(VARIANTS)}")
        if not gap > 0:
            raise IncompatibleError(f"gst needs a positive gap, got {gap}")
        final = temperature if final_temperature is None else final_temperature
        check_temperatures("gst", temperature, final)
        self.variant = variant
        self.gap = "p" if variant == "p" else float(gap)
        self.initial_temperature, self.final_temperature = float(temperature), float(final)
        self.temperature = self.initial_temperature

    def set_progress(self, fraction: float) -> None:
        self.temperature = self.initial_temperature + (self.final_temperature - self.initial_temperature) * fraction

    def surrogate(self, model, x, num_particles):
        ell = log_probs(model, x)
        y = onehot_sample(ell, num_particles)
        f = straight_through_elbo(model, x, ell, y, gst_soft(ell, y, self.gap, self.temperature))
        return Estimate(batch_loss(f), f.detach().mean(-1))
