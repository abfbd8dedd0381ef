"""Concrete / Gumbel-softmax relaxation of the IWAE bound (Maddison et al., 2017; Jang et al., 2017).

The paper (Revisiting Reweighted Wake-Sleep, Le et al., §2.2 and §4.3): every categorical z_k is
replaced by a relaxed one-hot z̃_k ~ Concrete(τ, logits of q_φ(·|x)) drawn by reparameterisation,
and the relaxed bound
    L̃_τ = log (1/K) Σ_k p̃_θ(x, z̃_k) / q̃_{φ,τ}(z̃_k | x)
is differentiated pathwise for θ and φ (one Adam).  τ is annealed linearly from
``initial_temperature`` to ``final_temperature`` over training: paper 3 → 0.5 (default), reference
code 3 → 1 (``final_temperature=1.0``).  The paper's §1 says what p̃ is: a relaxation "forces the
evaluation of a weighted average of likelihood parameters over all clusters".

Option ``relaxation`` (which relaxed densities; every table label carries it when not the default):
  ``reference`` (default)  the reference code's densities.  Categorical latents (rrws ``gmm/models.py``,
             ``losses.py``): log q̃ is the Concrete density at τ (``RelaxedOneHotCategorical(τ,
             logits).log_prob(z̃)``, evaluated here in log space from the ``ExpRelaxedCategorical``
             sample, the same value without underflow of z̃ at small τ), and log p̃_θ(x, z̃) is the
             model's ``relaxed_log_joint`` (GMM: the hard prior mass at argmax z̃ plus a Gaussian at
             the interpolated mean Σ_c z̃_c μ_c, ``models/gmm.py``).  With these densities the
             inference network learns badly ("Concrete fails", RWS §4.3).
  ``mass``   a mixture of log-masses: log q̃ = Σ_c z̃_c log q_c and the model's
             ``relaxed_log_joint_mass`` (GMM: Σ_c z̃_c log p_θ(x, z = c)).  Not the paper's nor its
             code's (this file's first variant, kept for comparison): as τ → 0 the bound tends to
             the discrete ELBO_IS^K, so its bias against the discrete gradient shrinks with τ.
Both are biased for the discrete objective; the exact-gradient metrics measure that bias against
∇ ELBO_IS^K of the discrete model (the relaxed bound of ``reference`` has no closed form).

Bernoulli latents (binary Concrete, :class:`ConcreteBernoulli`, registered with
:class:`ConcreteCategorical` under the one name ``concrete``; models with the layered interface):
z̃_l ~ RelaxedBernoulli(τ, logits a_l), i.e. z̃ = σ((a + logit u)/τ), drawn layer by layer (the
relaxed z̃_l feeds guide_layer(l + 1, ·)), log q̃(z̃) = Σ_l z̃_l·a_l − softplus(a_l) (linear in z̃) and
log p_θ(x, z̃) = ``relaxed_log_joint`` (linear in z̃ for the SBNs); the relaxed bound is
differentiated pathwise.  This is the one relaxation offered for Bernoulli latents (both option
values give it); whether it is the REBAR code's is stated in README's SBN section.
"""
import torch
from torch.distributions import RelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from estibench.models.protocols import (CATEGORICAL, LAYERED_BERNOULLI, RELAXED_LOG_JOINT,
                                        RELAXED_LOG_JOINT_MASS)

from estibench.models.registry import Revision

from .base import Estimate, Estimator, IncompatibleError, batch_loss, logmeanexp
from .binary import relaxed_bound

RELAXATIONS = ("reference", "mass")


class ConcreteOptions(Estimator):  # the options of ``concrete``, shared by both implementations
    display_name = "Concrete"
    cost_hint = 2.5
    unbiased = False

    def __init__(self, initial_temperature: float = 3.0, final_temperature: float = 0.5,
                 relaxation: str = "reference"):
        super().__init__()
        if not (initial_temperature > 0 and final_temperature > 0):
            raise IncompatibleError("concrete needs positive temperatures, got "
                                    f"{initial_temperature} → {final_temperature}")
        if relaxation not in RELAXATIONS:
            raise IncompatibleError(f"concrete: unknown relaxation {relaxation!r}; choose "
                                    f"{' or '.join(RELAXATIONS)}")
        self.initial_temperature = float(initial_temperature)
        self.final_temperature = float(final_temperature)
        self.temperature = self.initial_temperature
        self.relaxation = relaxation

    def set_progress(self, fraction: float) -> None:
        self.temperature = self.initial_temperature + (self.final_temperature - self.initial_temperature) * fraction


class ConcreteCategorical(ConcreteOptions):  # one categorical latent: the first part of the docstring
    revisions = (Revision(2, "scores the reference code's relaxed densities (option relaxation=mass: the old ones)"),)
    latent_types = frozenset({"categorical"})

    @property
    def needs(self):
        extra = {RELAXED_LOG_JOINT_MASS} if self.relaxation == "mass" else {RELAXED_LOG_JOINT}
        return frozenset({CATEGORICAL, *extra})

    def relaxed_sample(self, logits, num_particles):
        """(z̃, log q̃_τ(z̃)) ``[K, R, B, C]``, ``[K, R, B]`` for the chosen relaxation."""
        tau = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        log_z = ExpRelaxedCategorical(tau, logits=logits, validate_args=False).rsample((num_particles,))
        z = log_z.exp()
        if self.relaxation == "mass":  # the guide's logits are normalised (a Categorical's)
            return z, (z * logits).sum(-1)
        # RelaxedOneHotCategorical = exp(ExpRelaxedCategorical): density of z̃ = density of log z̃ − Σ_c log z̃_c
        log_q = ExpRelaxedCategorical(tau, logits=logits, validate_args=False).log_prob(log_z) - log_z.sum(-1)
        return z, log_q

    def surrogate(self, model, x, num_particles):
        z, log_q = self.relaxed_sample(model.guide(x).logits, num_particles)
        joint = model.relaxed_log_joint_mass if self.relaxation == "mass" else model.relaxed_log_joint
        bound = logmeanexp(joint(x, z) - log_q, 0)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))


class ConcreteBernoulli(ConcreteOptions):  # layered Bernoulli latents: binary Concrete
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI, RELAXED_LOG_JOINT})

    def surrogate(self, model, x, num_particles):
        def draw(l, a):
            tau = torch.tensor(self.temperature, dtype=a.dtype, device=a.device)
            return RelaxedBernoulli(tau, logits=a, validate_args=False).rsample()

        bound = relaxed_bound(model, x, num_particles, draw, model.relaxed_log_joint)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))
