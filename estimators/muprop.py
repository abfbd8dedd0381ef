"""MuProp: a first-order Taylor control variate around the mean-field point (Gu et al., 2016).

The paper: Gu, Levine, Sutskever & Mnih, "MuProp: Unbiased backpropagation for stochastic neural
networks", ICLR 2016, §3 (the estimator and its multi-layer form, Algorithm 1): a first-order Taylor
control variate around the mean-field point, per stochastic layer.  The paper's own baseline details
are not checked.

The reference code: not checked against released code (the input-dependent baseline's 10× learning
rate below follows the REBAR code's NVIL baseline).

This file: with f = L̂ = log (1/K) Σ_k w_k (K = 1: the ELBO's log p − log q) and, for stochastic layer
l, the expansion point ẑ^{(l)}: the sampled upstream layers z_{<l}, the mean z̄_l = σ(a_l) for layer l
and the mean-field pass below it (z̄_m = σ(a_m(z̄_{m−1})), m > l), evaluated with the relaxed masses
(log q = Σ z·a − softplus(a), log p_θ(x, ·) of the model, both linear extensions to [0,1]):
    h_l(z) = f(ẑ^{(l)}) + f'_lᵀ (z_l − z̄_l),     f'_l = ∂f/∂z_l at ẑ^{(l)} (through the mean-field pass),
    ĝ_φ = Σ_l [(f(z) − h_l(z) − c_l − C_ψ,l(x)) ∇_φ Σ_k log q(z_l^k|z_{l−1}^k) + f'_lᵀ ∇_φ σ(a_l)]
          + Σ_k (1/K − w̃_k) ∇_φ log q(z_k)   (direct term, zero for K = 1; see estimators/arm.py).
f'_l and z̄_l are held fixed in the score term, so E[h_l ∇ log q_l] = f'_lᵀ ∇_φ E[z_l] and the
estimate is unbiased whatever the expansion point.  For K > 1 all K particles are expanded at their
own ẑ^{(l)} (one linear control variate in the K·D bits of layer l).  Centring and input-dependent
baseline borrowed from NVIL (``estimators/nvil.py``): c_l the running mean of layer l's residual
f − h_l (exponential average, option ``decay``, default 0.8), C_ψ an MLP x − x̄ → 100 tanh → L
(``hidden``, default 100; one output per layer) trained by the squared error, own learning rate × 10
(REBAR code).  Variance normalisation is off by default (option
``normalise_variance``: it divides layer l's terms by max(1, √v_l), i.e. rescales the gradient of
layer l's guide parameters, assuming, as in the SBN, that each layer has its own).  θ gets the
wake-θ / IWAE gradient.  Cost: one extra forward/backward pass per layer.  Unbiased.
"""
import torch

from .base import Estimate, batch_loss
from .binary import chain, hard_sample, log_mass
from .functional.baselines import muprop_layer, taylor_mean, taylor_residual
from .functional.weights import direct_coefficient, importance_bound, wake_theta
from .nvil import StatefulSignalEstimator


class MuProp(StatefulSignalEstimator):
    display_name = "MuProp"
    cost_hint = 1.5
    salt = 13

    def __init__(self, decay: float = 0.8, hidden: int = 100, normalise_variance: bool = False):
        super().__init__(decay=decay, hidden=hidden, normalise_variance=normalise_variance)

    def signals(self, model) -> int:
        return len(model.layer_sizes)

    @staticmethod
    def expansion(model, x, logits, layers, l):
        """f at the mean-field point of layer l and its gradient with respect to z_l, ``[R, B]``, ``[K, R, B, D]``."""
        with torch.enable_grad():
            mean = torch.sigmoid(logits[l].detach()).requires_grad_(True)
            point = list(layers[:l]) + [mean]
            log_q = log_mass(logits[l].detach(), mean)
            for m in range(l):
                log_q = log_q + log_mass(logits[m].detach(), layers[m])
            for m in range(l + 1, len(layers)):
                a = model.guide_layer(m, point[-1])
                point.append(torch.sigmoid(a))
                log_q = log_q + log_mass(a, point[-1])
            value = importance_bound(model.log_joint(x, model.join(point)) - log_q)
            grad, = torch.autograd.grad(value.sum(), mean)
        return value.detach(), grad

    def surrogate(self, model, x, num_particles):
        logits, layers = chain(model, x, num_particles, hard_sample)
        layer_log_q = [log_mass(a, z) for a, z in zip(logits, layers)]
        log_q = sum(layer_log_q)
        log_p = model.log_joint(x, model.join(layers))
        log_w = log_p - log_q
        signal = importance_bound(log_w.detach())
        residuals, analytic = [], []
        for l in range(len(layers)):
            value, grad = self.expansion(model, x, logits, layers, l)
            mean = torch.sigmoid(logits[l])
            residuals.append(taylor_residual(signal, value, grad, layers[l], mean))
            analytic.append(taylor_mean(grad, mean))
        centred, scale = self.centre(x, torch.stack(residuals, -1))
        coefficient = direct_coefficient(log_w)
        phi = 0
        for l in range(len(layers)):
            phi = phi + muprop_layer(centred[..., l], scale[..., l], analytic[l], coefficient, layer_log_q[l])
        per_point = wake_theta(log_p, log_q) + phi
        loss = batch_loss(per_point) + centred.pow(2).mean(1).sum()
        return Estimate(loss, signal.mean(-1))
