"""GumBolt: the Gumbel (binary Concrete) relaxation extended to Boltzmann priors (Khoshaman & Amin, 2018,
"GumBolt: extending Gumbel trick to Boltzmann priors"), as PixelVAE++ (Sadeghi et al., 2019, §2.1,
Eqs. 3–4) trains its RBM prior.

The paper (PixelVAE++ §2.1): the relaxed objective
    L(x) = E_ρ[ log p_θ(x | ζ) − log (p_θ(ζ) / q_φ(ζ | x)) ]            (Eq. 3, as printed; read
    log p_θ(x | ζ) + log p_θ(ζ) − log q_φ(ζ | x), the ELBO with ζ in place of z),
    ζ = σ[(l_φ + σ⁻¹(ρ)) / τ],  ρ ~ U(0, 1)                              (Eq. 4),
with a temperature τ "around 0.25" (its §4 ablation: 0.5 too high, 0.1 too noisy), and discrete z (τ → 0)
at test time.  GumBolt's relaxed prior is the Boltzmann energy evaluated at ζ, p̃(ζ) = e^{−E(ζ)} / Z with
the discrete Z, and q(ζ | x) is the discrete posterior's mass evaluated at ζ,
log q̃(ζ | x) = Σ_i ζ_i log σ(l_i) + (1 − ζ_i) log σ(−l_i) (both tend to the discrete terms as τ → 0, so the
objective tends to the discrete ELBO; the Concrete density itself would not match e^{−E(ζ)} / Z's base
measure).  GumBolt also trains the importance-weighted form, which K > 1 gives here.  GumBolt's paper is not
in this project's collection: the proxy q̃ and Z's treatment follow our reading of it, stated here.

This file: for K particles,
    L̂ = log (1/K) Σ_k exp[ log p(x | ζ_k) + log p*(ζ_k) − Σ_g c(ζ_gk; l_gk) ] − log Z,
    c(m; h) = Σ_i m_i h_i − softplus(h_i),
the guide's groups as the model declares them (RELAXED_BOLTZMANN: one factorial group, or q(z₁ | x) and
q(z₂ | x, ζ₁) with ζ₁ fed to the second encoder), log p*(ζ) = −E(ζ) of the model (for the RBM-prior paper's
prior, −F(ζ) with the hidden units summed out: the same relaxation of its visible units, our extension).
ζ is reparameterised, so θ and φ get pathwise gradients (the relaxation and the log-weights:
:mod:`estimators.functional.smoothing`, shared with ``estibench.grad``'s ``gumbolt``); −∇ log Z is the negative phase of
:func:`estimators.base.log_partition_term` (exact prior samples on ``rbm_vae_tiny``, persistent chains
otherwise).  ``temperature`` τ (default 0.25, the paper's value) may be annealed to ``final_temperature``
linearly over training.  Biased for the discrete objective; the bias falls as τ → 0 (tested on
``rbm_vae_tiny`` against the exact gradient including log Z).  K ≥ 1.
"""
import math

import torch

from estibench.models.protocols import RELAXED_BOLTZMANN, UNNORMALISED_PRIOR, bernoulli_log_mass

from .base import Estimate, Estimator, IncompatibleError, batch_loss, log_partition_term, logmeanexp
from .binary import uniform_like
from .functional.smoothing import binary_concrete_sample, gumbolt_log_weight, gumbolt_pd_log_weight
from .smoothed_rbm import relaxed_guide


class GumBolt(Estimator):
    display_name = "GumBolt"
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({UNNORMALISED_PRIOR, RELAXED_BOLTZMANN})
    handles = frozenset({UNNORMALISED_PRIOR})
    unbiased = False

    def __init__(self, temperature: float = 0.25, final_temperature: float = None):
        super().__init__()
        final = temperature if final_temperature is None else final_temperature
        for t in (temperature, final):
            if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
                raise IncompatibleError(f"gumbolt needs a finite positive temperature, got temperature={temperature!r}, "
                                        f"final_temperature={final_temperature!r}")
        self.initial, self.final = float(temperature), float(final)
        self.temperature = self.initial

    def set_progress(self, fraction: float) -> None:
        self.temperature = self.initial + (self.final - self.initial) * float(fraction)

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        """ζ = σ((l + logit ρ) / τ) (PixelVAE++ Eq. 4)."""
        return binary_concrete_sample(logits, uniform_like(logits), self.temperature)

    def surrogate(self, model, x, num_particles):
        groups = relaxed_guide(model, x, num_particles, self.draw, lambda zeta: zeta)
        zeta = torch.cat([d for _, d in groups], -1)
        log_w = gumbolt_log_weight(model.log_likelihood(x, zeta), model.log_prior_unnormalised(zeta),
                                   sum(bernoulli_log_mass(g, d) for g, d in groups))
        bound = logmeanexp(log_w, 0)
        log_z = log_partition_term(model)
        return Estimate(batch_loss(bound - log_z.unsqueeze(-1)), bound.detach().mean(-1) - log_z.detach())


class GumBoltPathDerivative(GumBolt):
    """GumBolt as PixelVAE++ trains its RBM prior (Sadeghi et al., 2019, §2.1 and §4: "the encoder is trained with
    path derivatives" and "KL annealing"): the objective of :class:`GumBolt` with

    * the path-derivative encoder gradient (Roeder, Wu & Duvenaud, 2017, "Sticking the landing", §3: the total
      derivative of the ELBO with its score-function term dropped):
      in log q̃(ζ | x) the logits are held constant, so φ gets only the gradient through the reparameterised ζ and
      not the score-like term ∇_φ log q̃(ζ | x) at fixed ζ (its expectation is not zero for the proxy q̃, so this
      changes the relaxed objective's gradient, as the paper's choice does); θ's gradient is unchanged;
    * KL annealing: the prior and entropy terms log p*(ζ) − log q̃(ζ | x) − log Z are weighted by
      w = min(1, progress / ``kl_warmup``) (linear warm-up over the first ``kl_warmup`` fraction of training; 0
      means no annealing).  PixelVAE++ states KL annealing without its schedule: the linear warm-up and its default
      length (a tenth of training) are ours.

    The value it reports is the unweighted bound (w = 1), so cells at different stages of annealing compare.
    Biased for the discrete objective, like :class:`GumBolt`.
    """

    display_name = "GumBolt (path derivative, KL annealing)"

    def __init__(self, temperature: float = 0.25, final_temperature: float = None, kl_warmup: float = 0.1):
        super().__init__(temperature, final_temperature)
        if not (isinstance(kl_warmup, (int, float)) and math.isfinite(kl_warmup) and 0.0 <= kl_warmup <= 1.0):
            raise IncompatibleError(f"gumbolt_pd needs kl_warmup in [0, 1] (a fraction of training), got {kl_warmup!r}")
        self.kl_warmup = float(kl_warmup)
        self.kl_weight = 0.0 if self.kl_warmup > 0 else 1.0

    def set_progress(self, fraction: float) -> None:
        super().set_progress(fraction)
        self.kl_weight = 1.0 if self.kl_warmup == 0 else min(1.0, float(fraction) / self.kl_warmup)

    def surrogate(self, model, x, num_particles):
        groups = relaxed_guide(model, x, num_particles, self.draw, lambda zeta: zeta)
        zeta = torch.cat([d for _, d in groups], -1)
        log_px = model.log_likelihood(x, zeta)
        log_z = log_partition_term(model)
        # the prior and entropy terms, log q̃ with its logits held constant (path derivative)
        rest = model.log_prior_unnormalised(zeta) - sum(bernoulli_log_mass(g.detach(), d) for g, d in groups)
        log_w = gumbolt_pd_log_weight(log_px, rest, self.kl_weight)
        bound = logmeanexp(log_w, 0) - self.kl_weight * log_z.unsqueeze(-1)
        with torch.no_grad():
            value = logmeanexp(log_px + rest, 0).mean(-1) - log_z
        return Estimate(batch_loss(bound), value)
