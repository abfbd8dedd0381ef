"""DVAE++ with overlapping exponential smoothing (Vahdat et al., 2018, "DVAE++", §3 Eq. 3, §4).

The paper: every binary latent z is paired with a continuous ζ ~ r(ζ|z), r(ζ|0) ∝ e^{−βζ},
r(ζ|1) ∝ e^{β(ζ−1)} on [0, 1] (Eq. 3), and dependencies on z are moved to ζ (Fig. 2c–f); ζ is drawn
from the mixture q(ζ|·) = Σ_z q(z|·) r(ζ|z) (Eq. 2) by its inverse CDF.  The paper's two-layer model
has prior p(z₁) p(z₂|ζ₁), guide q(z₁|x) q(z₂|x, ζ₁) and decoder p(x|ζ₁, ζ₂).  Bounds: the joint
(z, ζ) ELBO (Eq. 4, §4.1, KL terms between factorial Bernoullis in closed form) and the marginal one
(Eq. 5, §4.2, z marginalised out, KL terms by Monte Carlo; Appendix D: tighter than Eq. 4).  §5 (RBM
prior) evaluates the energy's expectation with ν = q(z = 1 | x, ζ) = σ(logit μ + log r(ζ|1) − log r(ζ|0))
in place of z.  §7.1 anneals β linearly, start ∈ {5..8}, end ∈ {12..18}; at test time all models are
evaluated in the binary limit (β = ∞).

The reference code: the DVAE# code uses β = 12 for this smoothing (MNIST, 200 latents, linear SBN;
14 for the nonlinear one); not otherwise checked against released code.

This file: every binary latent z_l ~ q(z_l | ζ_{l−1}, x) = Bern(σ(g_l)) is paired with ζ_l ~
r(ζ_l | z_l).  In our SBN the generative model is p(z₁) r(ζ₁|z₁) p(z₀|ζ₁) r(ζ₀|z₀) p(x|ζ₀) and the guide
q(z₀|x) r(ζ₀|z₀) q(z₁|ζ₀) r(ζ₁|z₁) (layer 0 nearest x; the decoder sees ζ₀ only).  ζ_l is drawn from
the mixture q(ζ_l|·) = Σ_z q(z_l|·) r(ζ_l|z_l) by its inverse CDF (``estimators/smoothing.py``), so
both bounds below are differentiated pathwise for θ and φ.  Notation: g_l = guide_layer(l, ζ_{l−1})
(g₀ from x), a_l = prior_layer(l, ζ_{l+1}) (a top = the prior logits), μ_l = σ(g_l),
ν_l = q(z_l = 1 | ζ_l, ·) = σ(g_l + log r(ζ_l|1) − log r(ζ_l|0)) (§5), c(m; h) = Σ_i m_i h_i − softplus(h_i)
(the Bernoulli log-mass, linear in m).

``elbo="joint"`` (Eq. 4, the (z, ζ) model).  K = 1:
    L = log p(x|ζ₀) + Σ_l [c(m_l; a_l) − c(μ_l; g_l)],   m_l = μ_l for the top layer, ν_l below,
i.e. one layer: log p(x|ζ₀) − KL(Bern(μ₀) ‖ Bern(σ(a₀))) in closed form (Eq. 4 exactly); two
layers: log p(x|ζ₀) + H(q(z₀|x)) + c(ν₀; a₀(ζ₁)) − KL(q(z₁|ζ₀) ‖ p(z₁)), the KL terms at the
sampled ζ (one-sample MC).  Our prior runs top-down while the guide runs bottom-up, so p(z₀|ζ₁)
depends on ζ₁, which is drawn after z₀; E[z₀ · f(ζ₁)] is evaluated with ν₀ = E[z₀ | ζ₀] (z₀ ⊥ ζ₁
given ζ₀ in the guide; the coupling trick of §5, where μ is replaced by ν).
K > 1 (the IWAE form): log (1/K) Σ_k w_k with
    log w_k = log p(x|ζ₀ₖ) + Σ_l [c(ν_lₖ; a_lₖ) − c(ν_lₖ; g_lₖ)],
z integrated out of each weight given its particle's ζ (ν replaces z).  By Jensen (log-sum-exp is
convex in the weights' z-terms) this lies below the joint model's IWAE bound, hence below log p(x);
for K = 1 it equals Eq. 4 in expectation; as β → ∞, ν → z and ζ → z, so it tends to ELBO_IS^K.
Deviation, stated: the z-sampled weight log p(x|ζ) + log p(z) − log q(z|x) with z from
``sample_joint`` has the right value but no pathwise gradient through z (its −KL part would get
a zero-mean φ-gradient), which is why z is integrated out instead.

``elbo="marginal"`` (Eq. 5, z marginalised out; Appendix D: tighter than Eq. 4):
    log w_k = log p(x|ζ₀ₖ) + Σ_l Σ_i [log p(ζ_lₖᵢ | ζ_{l+1,k}) − log q(ζ_lₖᵢ | ζ_{l−1,k}, x)],
with the conditional mixtures p(ζ_l|ζ_{l+1}) = Σ_z p(z_l|ζ_{l+1}) r(ζ_l|z) and likewise for q;
K = 1 is Eq. 5 with one-sample MC KLs, K > 1 its IWAE.

β (inverse temperature) is annealed linearly from ``beta_start`` to ``beta_end`` by
``set_progress`` (as DVAE++ §7.1); each defaults to 12, the DVAE# code's value for the linear SBN,
i.e. a constant β unless a preset anneals.  Evaluation is in the binary limit (the harness's discrete
model).  Biased for the discrete objective (bias → 0 as β → ∞, tested).  K ≥ 1.

:class:`SmoothedBound` below is shared by ``spike_exp``, ``overlap_logistic`` and ``overlap_power``.
"""
from __future__ import annotations

import math

import torch

from estibench.models.protocols import LAYERED_BERNOULLI
from estibench.models.protocols import bernoulli_log_mass_two_sums as log_mass

from . import smoothing as smoothings
from .base import Estimate, Estimator, IncompatibleError, batch_loss, logmeanexp
from .binary import uniform_like
from .functional.smoothing import mixture_log_density, mixture_posterior_logits, smoothed_sample, spike_boundary_term


class SmoothedBound(Estimator):
    """The smoothed joint / marginal bound of DVAE++ §4 for one smoothing (see overlap_exp.py)."""

    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})
    unbiased = False
    smoothing: smoothings.Smoothing = smoothings.OverlapExp()
    reference_beta: float = 12.0
    default_elbo: str = "joint"
    #: q(z|ζ) is deterministic (spike): z is read off ζ and the jump terms are added (spike_exp.py)
    atom: bool = False

    def __init__(self, beta_start: float = None, beta_end: float = None, elbo: str = None):
        super().__init__()
        name = getattr(type(self), "registry_name", type(self).__name__)
        start = self.reference_beta if beta_start is None else beta_start
        end = self.reference_beta if beta_end is None else beta_end
        for b in (start, end):
            if not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
                raise IncompatibleError(f"{name} needs a finite positive inverse temperature β, "
                                        f"got beta_start={start!r}, beta_end={end!r}")
        elbo = self.default_elbo if elbo is None else elbo
        if elbo not in ("joint", "marginal"):
            raise IncompatibleError(f"{name}: elbo must be 'joint' or 'marginal', got {elbo!r}")
        self.beta_start, self.beta_end, self.elbo = float(start), float(end), elbo
        self.beta = self.beta_start

    def set_progress(self, fraction: float) -> None:
        self.beta = self.beta_start + (self.beta_end - self.beta_start) * float(fraction)

    # --- the smoothing, behind one interface (overlap_power carries log pairs) ---------------
    def draw(self, logits: torch.Tensor):
        """ζ ~ q(ζ|·), reparameterised w.r.t. the logits (any representation ``value`` understands)."""
        return smoothed_sample(self.smoothing, logits, uniform_like(logits), self.beta)

    def value(self, draw) -> torch.Tensor:
        """ζ itself (the input of the decoder and of the next layers)."""
        return draw

    def log_density(self, logits: torch.Tensor, draw) -> torch.Tensor:
        """log of the mixture Σ_z Bern(z; σ(logits)) r(ζ|z), per unit."""
        return mixture_log_density(self.smoothing, logits, draw, self.beta)

    def posterior(self, logits: torch.Tensor, draw) -> torch.Tensor:
        """ν = q(z = 1 | ζ) under Bern(σ(logits)), per unit."""
        return torch.sigmoid(mixture_posterior_logits(self.smoothing, logits, draw, self.beta))

    # --- the bound ---------------------------------------------------------------------------
    def surrogate(self, model, x, num_particles):
        K, L = num_particles, len(model.layer_sizes)
        g = model.guide_layer(0, x)
        g = g.expand(K, *g.shape)
        guide, draws = [], []
        for l in range(L):
            if l > 0:
                g = model.guide_layer(l, self.value(draws[-1]))
            guide.append(g)
            draws.append(self.draw(g))
        prior = [None] * L
        for l in reversed(range(L)):
            prior[l] = model.prior_layer(l, self.value(draws[l + 1]) if l + 1 < L else None)
        log_w = model.log_likelihood(x, self.value(draws[0]))
        jumps = []
        if self.elbo == "marginal" and not self.atom:
            for l in range(L):
                log_w = log_w + (self.log_density(prior[l], draws[l]) - self.log_density(guide[l], draws[l])).sum(-1)
        else:
            for l in range(L):
                a, g, d = prior[l], guide[l], draws[l]
                nu = self.posterior(g, d)
                if K == 1:  # closed forms where the coefficient depends only on upstream ζ
                    m_guide = torch.sigmoid(g)
                    m_prior = m_guide if l == L - 1 else nu
                else:
                    m_guide = m_prior = nu
                log_w = log_w + log_mass(a, m_prior) - log_mass(g, m_guide)
                if self.atom and m_prior is nu:  # coefficient of the hard z in log w
                    jumps.append((nu, g, a - g if m_guide is nu else a))
        bound = logmeanexp(log_w, 0)
        if jumps:
            bound = bound + self.jump_terms(log_w, jumps)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))

    @staticmethod
    def jump_terms(log_w, jumps) -> torch.Tensor:
        """Zero-valued surrogate, ``[R, B]``, whose φ-gradient is the boundary term of a deterministic
        q(z|ζ) (spike_exp.py): :func:`estimators.functional.smoothing.spike_boundary_term`."""
        return spike_boundary_term(log_w, jumps)


class OverlapExp(SmoothedBound):
    display_name = "overlapping exp."
    smoothing = smoothings.OverlapExp()
    reference_beta = 12.0
    default_elbo = "joint"
