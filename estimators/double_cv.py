"""Double control variates: RLOO plus a Taylor-expansion control variate (Titsias & Shi, 2022).

The paper: Titsias & Shi, "Double control variates for gradient estimation in discrete latent variable
models", AISTATS 2022 (arXiv 2111.05300).  Only its abstract was available here: a control variate acting
on top of the leave-one-out baseline of REINFORCE (RLOO, Kool et al., 2019), built from a Taylor
expansion of f, at no extra evaluation of f.  Its equations (Eq. numbers included) are therefore not
verified; what follows is the reference code's estimator, whose unbiasedness is shown below (and tested).

The reference code (github thjashin/double-cv, ``src/networks.py`` ``DiscreteVAE.get_grad_estimation``,
branch ``double_cv``, written out for K = 2 and K = 4; the general-K branch of the same function in
github thjashin/rodeo ``networks.py`` is the same algebra): for z_k ~ Bern(θ), θ = σ(a), k = 1..K
independent, f_k = f(z_k), g_k = ∇_z f(z)|_{z_k} (f differentiated at the binary sample as a function of
real z), s_k = z_k − θ = ∇_a log q(z_k) and ḡ_{−k} = (1/(K−1)) Σ_{j≠k} g_j,
    h_k = ḡ_{−k}ᵀ s_k                    (the linear term of a Taylor expansion of f around θ, its
                                          gradient taken from the other samples)
    ĝ_a = (1/K) Σ_k [f_k + α h_k − (1/(K−1)) Σ_{j≠k} (f_j + α h_j)] s_k − α ḡ ⊙ θ(1 − θ),
ḡ = (1/K) Σ_k g_k, with one scalar α trained to minimise the mean of ĝ_a² (over points and logits; Adam,
learning rate 1e-3 as the model's) and starting at 0, where ĝ_a is RLOO's.  Unbiased for every α:
E[h_k s_k | z_{−k}] = ḡ_{−k} ⊙ θ(1 − θ), whose mean over k is ḡ ⊙ θ(1 − θ); h_j (j ≠ k) is linear in s_j,
which has mean 0 given the other samples, s_k included.  The code's f is −ELBO (a loss); the estimator is
linear in (f, g), so the sign does not matter.

This file (reused by ``estimators/rodeo.py``): f(z) = log p_θ(x, z) − log q_φ(z|x), the ELBO's integrand
(``guide_target = generative_target = "elbo"``), g_k by one backward pass through log p at the K samples
(the layered members accept real z; log q's part is −a); the estimator above for any K ≥ 2; φ gets
Σ_d ĝ_a ∂a/∂φ (the zero-mean direct term −(1/K) Σ_k ∇_φ log q(z_k) is dropped, as in the reference code);
θ gets (1/K) Σ_k ∇_θ log p_θ(x, z_k).  α: one per replicate, own parameter, trained by the surrogate's
extra term Σ_r mean_{b,d} ĝ_a² (its gradient reaches α only; at the logits' level as the reference code,
so no second-order pass); own learning rate ×1.  Deviation: one stochastic layer only (the paper's
setting); a model with several layers is refused.  Unbiased.  The arithmetic of ĝ_a is
``estimators/functional/control_variates.py`` (:func:`double_cv_logit_gradient`), shared with ``estibench.grad``.
"""
import abc
import torch
from torch import nn

from estibench.models.protocols import LAYERED_BERNOULLI

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .binary import hard_sample, log_mass
from .functional import leave_one_out
from .functional.control_variates import double_cv_logit_gradient


#: (1/(K−1)) Σ_{j≠k} t_j for every k, along dim 0 (RLOO's baseline, :func:`estimators.functional.leave_one_out`)
leave_one_out_mean = leave_one_out


def sample_with_gradient(model, x, num_particles):
    """K independent z ~ q(·|x) on one layer and the ELBO integrand there: (a [R, B, D] with φ's graph,
    z [K, R, B, D], log p [K, R, B] with θ's graph, f [K, R, B] and g = ∇_z f [K, R, B, D], both detached)."""
    a = model.guide_layer(0, x)
    z = hard_sample(0, a.expand(num_particles, *a.shape)).detach()
    with torch.enable_grad():
        zr = z.clone().requires_grad_(True)
        log_p = model.log_likelihood(x, zr) + model.log_prior([zr])
        f = log_p - log_mass(a.detach(), zr)
        g, = torch.autograd.grad(f.sum(), zr, retain_graph=True)
    return a, z, log_p, f.detach(), g.detach()


class SingleLayerControlVariate(Estimator):
    """Shared by double_cv and rodeo: one layer, K ≥ 2, ELBO targets, a variance-trained ĝ_a."""
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})
    min_particles = 2
    guide_target = "elbo"
    generative_target = "elbo"

    def check(self, model, num_particles):
        super().check(model, num_particles)
        if len(model.layer_sizes) > 1:
            raise IncompatibleError(f"estimator {self.name!r} handles one stochastic layer; "
                                    f"{type(model).__name__} has {len(model.layer_sizes)}")

    def require_bound(self):
        if self.bound_replicates is None:
            raise IncompatibleError(f"estimator {self.name!r} must be bound to a model first (bind(model))")

    @abc.abstractmethod
    def logit_gradient(self, a, z, f, g):
        """ĝ_a ``[R, B, D]`` (differentiable in the own parameters only); each estimator of the family defines it."""

    def surrogate(self, model, x, num_particles):
        self.require_bound()
        a, z, log_p, f, g = sample_with_gradient(model, x, num_particles)
        grad_a = self.logit_gradient(a.detach(), z, f, g)
        per_point = log_p.mean(0) + (grad_a.detach() * a).sum(-1)
        variance = grad_a.pow(2).mean((-2, -1)).sum()  # Σ_r mean_{b,d} ĝ_a²: reaches the own parameters only
        return Estimate(batch_loss(per_point) + variance, f.mean(0).mean(-1))


class DoubleCV(SingleLayerControlVariate):
    display_name = "double CV"

    def __init__(self):
        super().__init__()
        self.alpha = None

    def bind(self, model):
        self.alpha = nn.Parameter(torch.zeros(model.replicates, 1, 1, device=model.device, dtype=model.dtype))
        return self

    def logit_gradient(self, a, z, f, g):
        return double_cv_logit_gradient(a, z, f, g, self.alpha)  # α [R, 1, 1]
