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
a model with several layers is refused.  Unbiased.
"""
import torch
import torch.nn.functional as F
from torch import nn

from estibench.models.nn import StackedLinear

from .base import IncompatibleError
from .double_cv import SingleLayerControlVariate, leave_one_out_mean


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

    def control_values(self, z, f, g):
        """H_k at z_k and at its D neighbours: ``[K, R, B, 2]`` and ``[K, R, B, D, 2]``."""
        K = z.shape[0]
        # lin[k, j] = g_jᵀ (z_k − z_j); flips[k, j, i] = g_jᵀ (z_k^{(i)} − z_j)
        gz = (g * z).sum(-1)  # [K(j), R, B]
        cross = torch.einsum("jrbd,krbd->kjrb", g, z)
        lin = cross - gz.unsqueeze(0)  # [K(k), K(j), R, B]
        flips = lin.unsqueeze(-1) + g.unsqueeze(0) * (1 - 2 * z).unsqueeze(1)  # [K, K, R, B, D]
        value = f.unsqueeze(0).expand_as(lin)  # f_j
        at_z = torch.stack([lin, value], -1)  # [K, K, R, B, 2]
        at_flips = torch.stack([flips, value.unsqueeze(-1).expand_as(flips)], -1)  # [K, K, R, B, D, 2]
        rows = torch.arange(K, device=z.device).unsqueeze(1)
        others = (rows + torch.arange(1, K, device=z.device)) % K  # [K, K − 1]: the j ≠ k of each k

        def evaluate(t):  # the pairs j ≠ k, NN_ψ over the replicate-leading layout, the mean over j
            pairs = t[rows, others]  # [K, K − 1, R, ...]
            return self.control(pairs.movedim(2, 0)).movedim(0, 2).mean(1)

        return evaluate(at_z), evaluate(at_flips)

    def logit_gradient(self, a, z, f, g):
        theta = torch.sigmoid(a)
        s = z - theta  # [K, R, B, D]
        at_z, at_flips = self.control_values(z, f, g)
        rate = theta * (1 - z) + (1 - theta) * z  # q_i(1 − z_i)
        c = (rate * (at_flips[..., 0] - at_z[..., 0:1])).mean(-1)  # (A H⁰_k)(z_k), [K, R, B]
        # (A [H¹ s])(z_k)_d = (1/D) Σ_i rate_i [H¹(z^{(i)}) s(z^{(i)})_d − H¹(z) s(z)_d],
        # with s(z^{(i)})_d = s_d + δ_id (1 − 2 z_d)
        h1_flips, h1_z = at_flips[..., 1], at_z[..., 1:2]  # [K, R, B, D], [K, R, B, 1]
        D = z.shape[-1]
        v = ((rate * h1_flips).sum(-1, keepdim=True) * s + rate * h1_flips * (1 - 2 * z)
             - rate.sum(-1, keepdim=True) * h1_z * s) / D
        alpha, beta = self.alpha.unsqueeze(0), self.beta.unsqueeze(0)  # [1, R, 1, 1]
        baseline = leave_one_out_mean(f + alpha[..., 0] * c)
        return ((f - baseline).unsqueeze(-1) * s + beta * v).mean(0)
