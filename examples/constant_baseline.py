"""REINFORCE for the IWAE bound with a constant baseline: an example of an estimator of your own.

Williams (1992), Eq. 11 (the reinforcement baseline b), applied to the IWAE bound as in Revisiting
Reweighted Wake-Sleep (Le et al., Eq. 2):
    ĝ_φ = (log((1/K) Σ_k w_k) − b) ∇_φ log Q_φ(z_{1:K}|x) + ∇_φ log((1/K) Σ_k w_k),
unbiased for ∇ ELBO_IS^K for every b, since E[∇_φ log Q_φ] = 0.

Run it like a built-in::

    python run_all.py check estibench.examples.constant_baseline:ConstantBaseline[baseline=-50.0]
    python run_all.py --estimators estibench.examples.constant_baseline:ConstantBaseline,reinforce --particles 2
"""
from estibench.estimators.base import Estimate, Estimator, IncompatibleError, batch_loss, logmeanexp, sample_guide


class ConstantBaseline(Estimator):
    unbiased = True  # for every value of the option `baseline`

    def __init__(self, baseline: float = 0.0):
        super().__init__()
        try:
            self.baseline = float(baseline)
        except (TypeError, ValueError):
            raise IncompatibleError(f"baseline must be a number, got {baseline!r}") from None

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = logmeanexp(log_p - log_q, 0)
        per_point = (bound.detach() - self.baseline) * log_q.sum(0) + bound
        return Estimate(batch_loss(per_point), bound.detach().mean(-1))


class SampleBaseline(ConstantBaseline):
    """A deliberately wrong variant that still claims to be unbiased, so that ``check`` has something to
    catch: its "baseline" is computed from the very sample it corrects (b = log((1/K) Σ_k w_k) itself),
    which cancels the score-function term of Le et al., Eq. 2, and leaves only the pathwise term."""

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = logmeanexp(log_p - log_q, 0)
        baseline = bound.detach()  # depends on z: the mistake
        per_point = (bound.detach() - baseline) * log_q.sum(0) + bound
        return Estimate(batch_loss(per_point), bound.detach().mean(-1))
