"""RODEO: RLOO with discrete-Stein-operator control variates adapted online (Shi et al., 2022).

The paper: Shi, Zhou, Hwang, Titsias & Mackey, "Gradient Estimation with Discrete Stein Operators",
NeurIPS 2022 (arXiv 2202.09497).  Only its abstract was available here: control variates for the RLOO
estimator built from Stein operators of discrete distributions (E_q[(A h)(z)] = 0 for every h), with a
function h adapted online to minimise variance and no extra evaluation of f.  Its equations (Eq. numbers
included) are therefore not verified; what follows is the reference code's estimator, whose unbiasedness
is shown below (and tested).

The reference code (github thjashin/rodeo, ``networks.py`` ``DiscreteVAE.get_grad_estimation``, branches
``discrete_stein_avg`` for K = 2 and ``discrete_stein_output_avg`` for K > 2, the README's RODEO; the two
coincide at K = 2; the control network ``SteinControlNNSingleLayer``; training in
``experiment_launcher_singlelayer.py`` ``estimate_gradients``).  With z_k ~ Bern(θ) independent, θ = σ(a),
f_k = f(z_k), g_k = ∇_z f(z)|_{z_k}, s(y) = y − θ (the score in a) and y^{(i)} = y with bit i flipped:
  * the Gibbs Stein operator (random-scan Gibbs kernel minus the identity, q-reversible, so E_q[A h] = 0):
        (A h)(y) = (1/D) Σ_i q_i(1 − y_i) [h(y^{(i)}) − h(y)],   q_i(1 − y_i) = θ_i (1 − y_i) + (1 − θ_i) y_i;
  * the control function of sample k, built from the other samples only (the leave-one-out trick):
        H_k(y) = (1/(K−1)) Σ_{j≠k} NN_ψ(g_jᵀ (y − z_j), f_j) ∈ R²  (outputs H⁰, H¹),
    NN_ψ: 2 inputs (the code's two 100-unit input layers added, i.e. one layer on both) → 100 LeakyReLU(0.3)
    → 2, inputs held constant (stop-gradient);
  * with α, β scalars (start 0) and c_k = (A H⁰_k)(z_k), v_k = (A [H¹_k s])(z_k) ∈ R^D,
        ĝ_a = (1/K) Σ_k [(f_k − (1/(K−1)) Σ_{j≠k} (f_j + α c_j)) s(z_k) + β v_k];
  * α, β (Adam, 1e-3) and ψ (Adam, 1e-3) minimise the mean of ĝ_a² over points and logits.
Unbiased for every (α, β, ψ): H_k depends on z_{−k} only, so E[v_k | z_{−k}] = 0, and E[c_j | z_{−j}] = 0
while s(z_k) (k ≠ j) is fixed given z_{−j}.  At α = β = 0 it is RLOO.  The code's f is −ELBO; the
estimator is linear in f given the network's (learned) response, so the sign is immaterial.  Not
implemented: the code's other operators (``MPF``, ``DIFF``), its ``mu``/``oldavg``/``jointavg``/``fast``
expansions, and the hierarchical-VAE launcher.

This file: f(z) = log p_θ(x, z) − log q_φ(z|x), the ELBO's integrand (``guide_target = generative_target
= "elbo"``), g_k and the RLOO part shared with ``estimators/double_cv.py``; the code's estimator above for
any K ≥ 2 (g_jᵀ(y^{(i)} − z_j) = g_jᵀ(z_k − z_j) + g_{j,i}(1 − 2 z_{k,i}), no D × D tensor); NN_ψ one network
per replicate (StackedLinear layers, seeded by the model's seeds, torch.nn.Linear's initialisation where the
code has Keras' default; not zero: with α = β = 0 a constant H would leave every own gradient at zero),
α and β one per replicate; all trained by the
surrogate's extra term Σ_r mean_{b,d} ĝ_a² (first order: ĝ_a is an explicit function of the own
parameters given the samples), own learning rate ×1 (the code: 1e-3 for the model and the estimator's
parameters alike).  φ gets Σ_d ĝ_a ∂a/∂φ (the zero-mean direct term is dropped, as in the code), θ gets
(1/K) Σ_k ∇_θ log p_θ(x, z_k).  Deviation: one stochastic layer only (the single-layer launcher's setting);
a model with several layers is refused.  Unbiased.  The arithmetic of ĝ_a (H_k at z_k and its flips, the Stein
operator, the leave-one-out baseline) is ``estimators/functional/control_variates.py``
(:func:`stein_control_values`, :func:`rodeo_logit_gradient`), shared with ``estibench.grad``.
"""
import torch
import torch.nn.functional as F
from torch import nn

from estibench.models.nn import StackedLinear

from .base import IncompatibleError
from .double_cv import SingleLayerControlVariate
from .functional.control_variates import rodeo_logit_gradient, stein_control_values


class SteinControl(nn.Module):
    """NN_ψ per replicate: [R, …, 2] → [R, …, 2], 2 → hidden (LeakyReLU 0.3) → 2."""

    def __init__(self, seeds, hidden: int, salt: int = 17):
        super().__init__()
        self.inner = StackedLinear(seeds, 2, hidden, salt=100 * salt)
        self.outer = StackedLinear(seeds, hidden, 2, salt=100 * salt + 1)

    def forward(self, t):
        return self.outer(F.leaky_relu(self.inner(t), 0.3))


class Rodeo(SingleLayerControlVariate):
    display_name = "RODEO"

    def __init__(self, hidden: int = 100):
        super().__init__()
        if int(hidden) < 1:
            raise IncompatibleError(f"rodeo needs hidden ≥ 1, got {hidden}")
        self.hidden = int(hidden)
        self.control = None
        self.alpha = self.beta = None

    def bind(self, model):
        R = model.replicates
        self.control = SteinControl(model.seeds, self.hidden).to(device=model.device, dtype=model.dtype)
        self.alpha = nn.Parameter(torch.zeros(R, 1, 1, device=model.device, dtype=model.dtype))
        self.beta = nn.Parameter(torch.zeros(R, 1, 1, device=model.device, dtype=model.dtype))
        return self

    def pairs_control(self, t):
        """NN_ψ on the pairs' inputs [K, K − 1, R, …, 2], through StackedLinear's replicate-leading layout."""
        return self.control(t.movedim(2, 0)).movedim(0, 2)

    def control_values(self, z, f, g):
        """H_k at z_k and at its D neighbours: ``[K, R, B, 2]`` and ``[K, R, B, D, 2]``."""
        return stein_control_values(z, f, g, self.pairs_control)

    def logit_gradient(self, a, z, f, g):
        return rodeo_logit_gradient(a, z, f, g, self.pairs_control, self.alpha, self.beta)  # α, β [R, 1, 1]
