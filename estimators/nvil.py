"""NVIL: the score-function estimator with an input-dependent baseline (Mnih & Gregor, 2014), in the
REBAR code's variant by default.

The paper: Mnih & Gregor, "Neural variational inference and learning in belief networks", ICML 2014,
§3: the learning signal ℓ is centred by a running mean c, an input-dependent baseline C_ψ(x) is
subtracted, and the result is divided by a running estimate of its standard deviation (variance
normalisation).
The reference code whose NVIL numbers the REBAR / RELAX / DVAE++ tables print (REBAR code of Tucker et al., 2017,
``get_nvil_gradient``, comment "no variance normalization"): signal stop(ℓ) − C_ψ(x) with C_ψ an MLP
on x − x̄ (x̄ the model's training mean, ``models.protocols.TRAINING_MEAN``, declared in ``uses``: x itself
on a model without one; 100 tanh units → 1, its output bias playing the constant), no running mean, no
normalisation; C_ψ is trained by the squared error (ℓ − C_ψ(x))² at 10× the learning rate.
This file: option ``variant``
  ``rebar_code`` (default)  the REBAR code's: ĝ_φ = (ℓ − C_ψ(x)) ∇_φ Σ_k log q_φ(z_k|x) + direct term.
  ``mnih_gregor``           the paper's: ĝ_φ = [(ℓ − c − C_ψ(x)) / max(1, √v)] ∇_φ Σ_k log q_φ(z_k|x)
                            + direct term / max(1, √v), c the running mean of ℓ and v the running
                            mean of (ℓ − c − C_ψ(x))² (exponential averages with ``decay``, default
                            0.8, the paper's α; bias-corrected; both from *earlier* steps, so they do
                            not depend on the current sample).
Common to both: ℓ = L̂ = log (1/K) Σ_k w_k (K = 1: log p_θ(x, z) − log q_φ(z|x)); C_ψ one network per
replicate (StackedMLP with the model's seeds), ψ minimising (ℓ − c − C_ψ(x))² (c = 0 for
``rebar_code``), own learning rate × 10 as in the REBAR code; the direct term
Σ_k (1/K − w̃_k) ∇_φ log q(z_k) is ∇_φ L̂ at fixed z minus a zero-mean term, zero for K = 1 (the
REBAR code drops it, which for K = 1 is the same); θ gets the wake-θ / IWAE gradient.  Several
layers: one shared learning signal for all layers (NVIL's per-layer local signals are not used: for
K > 1 the bound does not split over layers).

Unbiasedness: ``rebar_code`` is unbiased for ∇_φ ELBO_IS^K for every ψ.  ``mnih_gregor`` divides the
whole φ-gradient by the per-replicate factor max(1, √v), so it is unbiased up to that positive factor
(an adaptive step size) and exactly unbiased at a fresh state (v = 0); the gradient-variance metrics
of a ``mnih_gregor`` cell are those of the normalised gradient, the one the optimiser applies.  The
running statistics are updated by training steps only (``surrogate`` in training mode, ``gradients``
with ``with_own=True``), never by the harness's frozen-parameter draws.
"""
import math

import torch
from torch import nn

from estibench.models.nn import StackedMLP

from estibench.models.protocols import LAYERED_BERNOULLI, TRAINING_MEAN

from estibench.models.registry import Revision

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .binary import chain, hard_sample, log_mass
from .functional.baselines import centred_signal, nvil, variance_scale
from .functional.weights import importance_bound, wake_theta


class SignalBaseline(nn.Module):
    """c (running mean), C_ψ(x) (MLP on x − x̄) and v (running mean square of the centred signal),
    per replicate and per signal (``outputs`` signals: one for NVIL, one per layer for MuProp).
    ``input_mean``: x̄ (None: the inputs are not centred)."""

    def __init__(self, model, outputs: int, hidden: int, decay: float, salt: int, running_mean: bool = True,
                 input_mean=None):
        super().__init__()
        self.running_mean = bool(running_mean)
        obs = int(math.prod(model.obs_shape))
        self.decay = float(decay)
        self.net = StackedMLP(model.seeds, [obs, hidden, outputs], activation="tanh", salt=salt)
        R = model.replicates
        for name in ("mean", "square"):
            self.register_buffer(name, torch.zeros(R, outputs))
        self.register_buffer("weight", torch.zeros(R, 1))  # 1 − decay^steps, for bias correction
        self.register_buffer("input_mean", None if input_mean is None else input_mean.detach().reshape(-1).clone())
        self.to(device=model.device, dtype=model.dtype)

    def inputs(self, x):
        R, B = x.shape[:2]
        flat = x.reshape(R, B, -1)
        return flat if self.input_mean is None else flat - self.input_mean

    def corrected(self, buffer):
        w = self.weight
        return torch.where(w > 0, buffer / w.clamp_min(1e-12), torch.zeros_like(buffer))

    def centre(self, x, signal):
        """signal ``[R, B, S]`` → (ℓ − c − C_ψ(x) with ψ's gradient, scale max(1, √v) ``[R, 1, S]``)."""
        running_mean = self.corrected(self.mean).unsqueeze(1) if self.running_mean else None
        centred = centred_signal(signal, self.net(self.inputs(x)), running_mean)
        scale = variance_scale(self.corrected(self.square)).unsqueeze(1)
        return centred, scale

    @torch.no_grad()
    def update(self, signal, centred):
        d = self.decay
        self.mean.mul_(d).add_((1 - d) * signal.mean(1))
        self.square.mul_(d).add_((1 - d) * centred.detach().pow(2).mean(1))
        self.weight.mul_(d).add_(1 - d)


class StatefulSignalEstimator(Estimator):
    display_name = "NVIL"
    cost_hint = 1.3
    """Running statistics change only on training steps (see the module docstring)."""
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})
    uses = frozenset({TRAINING_MEAN})  # x̄ centres the baseline's inputs where the model has it
    own_lr_multiplier = 10.0
    salt = 11

    def __init__(self, decay: float = 0.8, hidden: int = 100, normalise_variance: bool = True,
                 running_mean: bool = True):
        super().__init__()
        if not 0.0 <= decay < 1.0 or int(hidden) < 1:
            raise IncompatibleError(f"{type(self).__name__.lower()} needs 0 ≤ decay < 1 and hidden ≥ 1, "
                                    f"got decay={decay}, hidden={hidden}")
        self.decay, self.hidden = float(decay), int(hidden)
        self.normalise_variance = bool(normalise_variance)
        self.running_mean = bool(running_mean)
        self.baseline = None
        self._update = True

    def signals(self, model) -> int:
        return 1

    def bind(self, model):
        centre = model.train_mean if self.provided(model, TRAINING_MEAN) else None
        self.baseline = SignalBaseline(model, self.signals(model), self.hidden, self.decay, self.salt,
                                       self.running_mean, input_mean=centre)
        return self

    def centre(self, x, signal):
        if self.baseline is None:
            raise IncompatibleError(f"estimator {self.name!r} must be bound to a model first (bind(model))")
        centred, scale = self.baseline.centre(x, signal)
        if not self.normalise_variance:
            scale = torch.ones_like(scale)
        if self.training and self._update:
            self.baseline.update(signal, centred)
        return centred, scale

    def gradients(self, model, x, num_particles, with_own: bool = True):
        self._update = with_own
        try:
            return super().gradients(model, x, num_particles, with_own)
        finally:
            self._update = True


VARIANTS = {"rebar_code": dict(normalise_variance=False, running_mean=False),
            "mnih_gregor": dict(normalise_variance=True, running_mean=True)}


class Nvil(StatefulSignalEstimator):
    revisions = (Revision(3, "its default variant is the REBAR code's (variant=mnih_gregor: the old one)"),)
    variants = ("rebar_code", "mnih_gregor")

    def __init__(self, variant: str = "rebar_code", decay: float = 0.8, hidden: int = 100):
        if variant not in VARIANTS:
            raise IncompatibleError(f"nvil: unknown variant {variant!r}; choose {' or '.join(VARIANTS)}")
        super().__init__(decay=decay, hidden=hidden, **VARIANTS[variant])
        self.variant = variant

    def surrogate(self, model, x, num_particles):
        logits, layers = chain(model, x, num_particles, hard_sample)
        log_q = sum(log_mass(a, z) for a, z in zip(logits, layers))
        log_p = model.log_joint(x, model.join(layers))
        log_w = log_p - log_q
        signal = importance_bound(log_w.detach())
        centred, scale = self.centre(x, signal.unsqueeze(-1))
        centred, scale = centred.squeeze(-1), scale.squeeze(-1)
        phi = nvil(centred, scale, log_w, log_q)
        per_point = wake_theta(log_p, log_q) + phi
        loss = batch_loss(per_point) + centred.pow(2).mean(-1).sum()
        return Estimate(loss, signal.mean(-1))
