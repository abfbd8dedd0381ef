"""Gumbel-Rao: the straight-through Gumbel-softmax backward pass averaged over the Gumbel noise conditional on
the sampled category, for factorial categorical latents (Paulus, Maddison & Krause, 2021).

The paper: Paulus et al., "Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient Estimator", ICLR 2021:
the GR estimator and its Monte Carlo form GR-MCK (Equation and section numbers not verified: the paper's text past
its abstract was not available here; the formulas below are as the two codes named below implement them).
ST-GS draws X = θ + G, G i.i.d. standard Gumbel, D = onehot(argmax X), and back-propagates ∂f/∂D through
softmax(X/τ).  GR replaces that Jacobian by its conditional expectation given D, estimated with M draws
X^(m) ~ X | D:
    ∇_GR-MCM = (1/M) Σ_m d softmax_τ(X^(m))/dθ · ∂f/∂D,
X | D drawn from M i.i.d. Exp(1) vectors E (the top of θ + G is Gumbel(log Z)):
    X_D = log Z − log E_D,   X_j = −log(E_j e^{−θ_j} + E_D / Z)  (j ≠ D).
The paper says (as quoted by the nshepperd README below) that the total derivative d softmax_τ(θ + G_k)/dθ is
taken through both θ and G_k (G_k = X − θ is a function of θ at fixed E), and that for K = 1 (here M = 1) the
estimator reduces to ST-GS.

The reference code: no released code of the authors was checked.  github nshepperd/gumbel-rao-pytorch
(``gumbel_rao.py``) argues that the total derivative is a mistake: only the derivative at fixed G (X − θ
detached), as ST-GS's own backward, makes the estimator the conditional expectation of ST-GS given D (so that its
mean is ST-GS's mean and, for M = 1, its value is distributed as ST-GS's); the chijames/GST ``rao_gumbel``
reproduction also detaches (its default M = 100).

This file: option ``variant`` (``variants``):
  ``paper`` (default)   softmax(X(θ)/τ) differentiated through θ and through X's dependence on θ at fixed E;
  ``nshepperd``         softmax((θ + stopgrad(X − θ))/τ): the derivative at fixed conditional noise, i.e. the
                        ST-GS Jacobian averaged over G | D (the Rao-Blackwellisation proper).
The two differ exactly in whether the gradient flows through the conditional Gumbel sample's dependence on the
logits (tests/test_st_estimators.py, which also shows: only ``nshepperd`` keeps ST-GS's mean, and its τ → 0 limit
is ZGR, estimators/zgr.py, while the paper's total derivative tends to 0 with τ, the conditional construction
keeping D on top whatever θ).  Computed with θ = ℓ, the normalised log-probabilities (Z = 1: the softmax
is invariant to the shift log Z, which removes that term from the total derivative as well), and
X_j = −logaddexp(log E_j − ℓ_j, log E_D) (no overflow).  Options ``samples`` M (default 100, the GST code's
value; the paper's own choice of M not verified) and ``temperature`` τ (default 1), annealed
linearly to ``final_temperature`` over training when given.  The surrogate is the K-sample ELBO average at the
hard one-hot codes with this backward for φ (estimators/onehot.py ``straight_through_elbo``: log q is
straight-through too, plus its zero-mean direct score term); θ's gradient is the exact-in-expectation
mean_k ∇_θ log p_θ(x, y_k).  Biased.
"""
from __future__ import annotations

import torch

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .binary import check_temperatures
from .onehot import NEEDS, ONEHOT_LATENTS, log_probs, onehot_sample, straight_through_elbo

VARIANTS = ("paper", "nshepperd")


def conditional_perturbed_logits(ell: torch.Tensor, y: torch.Tensor, samples: int) -> torch.Tensor:
    """M draws of X = ℓ + G given argmax X = y (one-hot), ``[M, *y.shape]``, a differentiable function of ℓ at
    fixed exponential noise: X_D = −log E_D, X_j = −log(E_j e^{−ℓ_j} + E_D) for normalised ℓ (Z = 1)."""
    shape = (int(samples), *torch.broadcast_shapes(ell.shape, y.shape))
    tiny = torch.finfo(ell.dtype).tiny
    log_e = torch.empty(shape, dtype=ell.dtype, device=ell.device).exponential_().clamp_(min=tiny).log()
    log_e_top = (y * log_e).sum(-1, keepdim=True)  # log E_D
    others = -torch.logaddexp(log_e - ell, log_e_top)
    return y * (-log_e_top) + (1.0 - y) * others


def gumbel_rao_soft(ell: torch.Tensor, y: torch.Tensor, samples: int, temperature: float,
                    through_noise: bool = True) -> torch.Tensor:
    """The backward surrogate (1/M) Σ_m softmax(X^(m)/τ), ``y.shape``: its Jacobian in ℓ is GR-MCM's.
    ``through_noise``: the paper's total derivative (True) or the derivative at fixed G = X − ℓ (nshepperd)."""
    if through_noise:
        x = conditional_perturbed_logits(ell, y, samples)
    else:
        with torch.no_grad():
            g = conditional_perturbed_logits(ell, y, samples) - ell
        x = ell + g
    return torch.softmax(x / temperature, -1).mean(0)


class GumbelRao(Estimator):
    latent_types = ONEHOT_LATENTS
    needs = NEEDS
    variants = VARIANTS
    display_name = "Gumbel-Rao"
    cost_hint = 1.5
    guide_target = "elbo"
    generative_target = "elbo"
    unbiased = False

    def __init__(self, samples: int = 100, temperature: float = 1.0, final_temperature: float = None,
                 variant: str = "paper"):
        super().__init__()
        if variant not in VARIANTS:
            raise IncompatibleError(f"gumbel_rao: unknown variant {variant!r}; choose {' or '.join(VARIANTS)}")
        if int(samples) != samples or samples < 1:
            raise IncompatibleError(f"gumbel_rao needs samples ≥ 1 (an integer), got {samples}")
        final = temperature if final_temperature is None else final_temperature
        check_temperatures("gumbel_rao", temperature, final)
        self.samples, self.variant = int(samples), variant
        self.initial_temperature, self.final_temperature = float(temperature), float(final)
        self.temperature = self.initial_temperature

    def set_progress(self, fraction: float) -> None:
        self.temperature = self.initial_temperature + (self.final_temperature - self.initial_temperature) * fraction

    def surrogate(self, model, x, num_particles):
        ell = log_probs(model, x)
        y = onehot_sample(ell, num_particles)
        soft = gumbel_rao_soft(ell, y, self.samples, self.temperature, through_noise=self.variant == "paper")
        f = straight_through_elbo(model, x, ell, y, soft)
        return Estimate(batch_loss(f), f.detach().mean(-1))
