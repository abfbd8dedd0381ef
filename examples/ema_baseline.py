"""REINFORCE for the IWAE bound with an exponential-moving-average baseline: an estimator with state.

Williams (1992), Eq. 11 (the reinforcement baseline b), with b the running mean of the learning signal
over earlier training steps (Mnih & Gregor 2014, §3.3's centring), applied to the IWAE bound as in
Revisiting Reweighted Wake-Sleep (Le et al., Eq. 2):
    ĝ_φ = (log((1/K) Σ_k w_k) − b) ∇_φ log Q_φ(z_{1:K}|x) + ∇_φ log((1/K) Σ_k w_k),
    b ← d·b + (1 − d)·mean over the batch of log((1/K) Σ_k w_k)        (after each training step),
one b per replicate.  b does not depend on the current sample, so ĝ_φ is unbiased for every b.

The pattern for state of your own: keep it in a buffer (one entry per replicate, so that replicates stay
independent), read it in ``surrogate``, and update it in ``gradients`` only when ``with_own`` is true.
The training step calls ``gradients(model, x, K)``; every measurement at frozen parameters (evaluations,
the gradient basket, ``check``, ``screen``) calls ``gradients(..., with_own=False)``.

``LeakyEMABaseline`` updates b inside ``surrogate``, so during measurement too.  The harness restores every
estimator's state after each measurement (``harness/measurement.py``), so its training does not depend on
``--eval-every``; but within one measurement its b moves from draw to draw, so its measured variance is not
that of the estimator being trained, and ``check`` fails it ("state under measurement")::

    python run_all.py check estibench.examples.ema_baseline:EMABaseline          # passes
    python run_all.py check estibench.examples.ema_baseline:LeakyEMABaseline     # fails "state under measurement"
"""
import torch

from estibench.estimators.base import Estimate, Estimator, IncompatibleError, batch_loss, logmeanexp, sample_guide


class EMABaseline(Estimator):
    unbiased = True  # for every value of its baseline b

    def __init__(self, decay: float = 0.9):
        super().__init__()
        try:
            self.decay = float(decay)
        except (TypeError, ValueError):
            raise IncompatibleError(f"decay must be a number, got {decay!r}") from None
        if not 0.0 <= self.decay < 1.0:
            raise IncompatibleError(f"decay must be in [0, 1), got {self.decay}")

    def bind(self, model):
        self.register_buffer("b", torch.zeros(model.replicates, dtype=model.dtype, device=model.device))
        return self

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = logmeanexp(log_p - log_q, 0)  # [R, B]
        per_point = (bound.detach() - self.b.unsqueeze(-1)) * log_q.sum(0) + bound
        return Estimate(batch_loss(per_point), bound.detach().mean(-1))

    def gradients(self, model, x, num_particles, with_own: bool = True):
        grads, own, objective = super().gradients(model, x, num_particles, with_own)
        if with_own:  # a training step: move the baseline (never during a measurement)
            with torch.no_grad():
                self.b.mul_(self.decay).add_((1.0 - self.decay) * objective)
        return grads, own, objective


class LeakyEMABaseline(EMABaseline):
    """The same baseline updated inside ``surrogate``: during measurement too (``check`` fails it)."""

    def surrogate(self, model, x, num_particles):
        out = super().surrogate(model, x, num_particles)
        with torch.no_grad():
            self.b.mul_(self.decay).add_((1.0 - self.decay) * out.objective)
        return out

    def gradients(self, model, x, num_particles, with_own: bool = True):
        return Estimator.gradients(self, model, x, num_particles, with_own)
