"""ReinMax: second-order (Heun's method) straight-through for factorial categorical latents (Liu et al., 2023).

The paper: Liu, Dong, Liu, Yu & Gao, "Bridging Discrete and Backpropagation: Straight-Through and Beyond",
NeurIPS 2023: ST is a first-order (forward Euler) approximation of the gradient; ReinMax integrates with Heun's
method (the trapezoid rule, exact when f is quadratic in the one-hot code), second-order accurate without second
derivatives (abstract).  Its algorithm, with π₀ = softmax(θ), D ~ π₀ one-hot and temperature τ:
    π₁ = (D + softmax(θ/τ))/2,   π₁ ← softmax(stopgrad(ln π₁ − θ) + θ)   (value π₁, Jacobian diag π₁ − π₁π₁ᵀ),
    π₂ = 2 π₁ − π₀/2,            D_st = π₂ − stopgrad(π₂) + D,
so the backward is ∂f/∂θ = [2 (diag π₁ − π₁π₁ᵀ) − ½ (diag π₀ − π₀π₀ᵀ)] ∂f/∂D.  The paper recommends τ ≥ 1
(the code's docstring) where Gumbel-softmax prefers τ < 1.  Equation and algorithm numbers not verified (the
paper's text past its abstract was not available here): the steps above are the reference code's backward.

The reference code: github microsoft/ReinMax (pip ``reinmax``), ``reinmax/reinmax.py``: a custom autograd
backward computing exactly the Jacobian above (plus a centring of the logit gradient, a no-op since every
softmax Jacobian's rows sum to zero); the function refuses τ < 1.  No difference from the paper was found (its
text was not checked); no variants.

This file: that backward, written anew as the surrogate form (π₁'s value and Jacobian through the
stop-gradient trick on ℓ, the normalised log-probabilities; ln π₁ clamped at the smallest positive float so an
underflowing π₁ gives no −∞ − ℓ), option ``temperature`` τ (default 1; τ < 1 refused, as the code does),
annealed linearly to ``final_temperature`` over training when given.  The surrogate is the K-sample ELBO average
at the hard one-hot codes with the ReinMax backward for φ (estimators/onehot.py ``straight_through_elbo``: log q
straight-through too, plus its zero-mean direct score term); θ's gradient is mean_k ∇_θ log p_θ(x, y_k) at the
hard codes.  At τ = 1 the backward is ZGR's draw by draw (π₁ = (D + π₀)/2 gives ½ π_c (g_c − g_D) off D;
estimators/zgr.py), exact in expectation for an f quadratic in the code (the trapezoid rule), so unbiased on
the GMM, whose ELBO integrand is quadratic in y; tests/test_st_estimators.py.  Biased in general.
"""
from __future__ import annotations

import torch

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .onehot import NEEDS, ONEHOT_LATENTS, log_probs, onehot_sample, straight_through_elbo


def reinmax_soft(ell: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """π₂ = 2 π₁ − π₀/2 with π₁'s Jacobian diag π₁ − π₁π₁ᵀ, ``y.shape``: the surrogate of ReinMax's backward."""
    p0 = ell.exp()
    with torch.no_grad():
        p1 = 0.5 * (y + torch.softmax(ell / temperature, -1))
        shift = p1.clamp(min=torch.finfo(ell.dtype).tiny).log() - ell
    p1 = torch.softmax(ell + shift, -1)
    return 2.0 * p1 - 0.5 * p0


class ReinMax(Estimator):
    latent_types = ONEHOT_LATENTS
    needs = NEEDS
    display_name = "ReinMax"
    guide_target = "elbo"
    generative_target = "elbo"
    unbiased = False

    def __init__(self, temperature: float = 1.0, final_temperature: float = None):
        super().__init__()
        final = temperature if final_temperature is None else final_temperature
        if not (temperature >= 1.0 and final >= 1.0):
            raise IncompatibleError(f"reinmax needs temperatures ≥ 1 (as its reference code), got {temperature} → "
                                    f"{final}")
        self.initial_temperature, self.final_temperature = float(temperature), float(final)
        self.temperature = self.initial_temperature

    def set_progress(self, fraction: float) -> None:
        self.temperature = self.initial_temperature + (self.final_temperature - self.initial_temperature) * fraction

    def surrogate(self, model, x, num_particles):
        ell = log_probs(model, x)
        y = onehot_sample(ell, num_particles)
        f = straight_through_elbo(model, x, ell, y, reinmax_soft(ell, y, self.temperature))
        return Estimate(batch_loss(f), f.detach().mean(-1))
