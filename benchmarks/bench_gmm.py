"""airspeed-velocity benchmarks on the GMM cell (benchmarks/README.md).

Every registered estimator that accepts categorical latents, K ∈ {2, 20}; R = 10 stacked seeds
(the paper-budget suite's), batch 100 (``benchmarks/common.py``).

``GMMStep.time_step`` / ``peakmem_step``   one training step of the runner (fresh batch,
                                           ``gradients``, Adam) / peak RSS over three steps
``GMMStepCompiled.time_step``          the same step with ``--compile default`` (torch.compile of the
                                           surrogate; compilation happens in ``setup``) for the
                                           first-order estimators at K ∈ {2, 20}
``GMMVariance.time_gradient_draws``        the frozen-parameter variance measurement,
                                           ``gradient_draws`` with n = 100 on the study's 100
                                           test points (the loop the study uses)
``GMMVariance.time_gradient_draws_batched`` the same draws by ``gradient_draws_batched``
``GMMVariance.track_grad_var_phi``         seeded value of that measurement: mean over
                                           replicates and φ coordinates of the sample variance of
                                           n = 100 loop draws after ``torch.manual_seed``; it
                                           changes only when an estimator's (or the model's)
                                           numerics change
"""
import torch

from benchmarks.common import (GMM_PARTICLES, TRACK_SEED, VARIANCE_DRAWS, Trainer, bind, compatible,
                               gmm_batcher, gmm_model, gmm_test_points, mean_variance)
from estibench import estimators
from estibench.harness.gradients import gradient_draws, gradient_draws_batched

ESTIMATORS = compatible(gmm_model(seeds=(0,)), particles=GMM_PARTICLES)


class GMMStep:
    params = (ESTIMATORS, list(GMM_PARTICLES))
    param_names = ["estimator", "K"]
    timeout = 120

    def setup(self, estimator, K):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.model = gmm_model()
        self.est = bind(estimator, self.model, K)
        self.step = Trainer(self.model, self.est, gmm_batcher(self.model), K)
        self.step()  # allocate Adam's state outside the timing

    def time_step(self, estimator, K):
        self.step()

    def peakmem_step(self, estimator, K):
        for _ in range(3):
            self.step()


class GMMStepCompiled:
    params = ([e for e in ESTIMATORS if not estimators.get(e).second_order], list(GMM_PARTICLES))
    param_names = ["estimator", "K"]
    timeout = 300  # compilation (tens of seconds on a CPU) happens in setup

    def setup(self, estimator, K):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.model = gmm_model()
        self.est = bind(estimator, self.model, K)
        self.step = Trainer(self.model, self.est, gmm_batcher(self.model), K, compile="default")
        self.step()  # compile and allocate Adam's state outside the timing
        self.step()

    def time_step(self, estimator, K):
        self.step()


class GMMVariance:
    params = (ESTIMATORS, list(GMM_PARTICLES))
    param_names = ["estimator", "K"]
    timeout = 300
    number = 1
    repeat = (1, 5, 20.0)
    warmup_time = 0.0
    unit = "mean variance"

    def setup(self, estimator, K):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.model = gmm_model()
        self.est = bind(estimator, self.model, K)
        self.x = gmm_test_points(self.model)

    def time_gradient_draws(self, estimator, K):
        gradient_draws(self.model, self.est, self.x, K, VARIANCE_DRAWS)

    def time_gradient_draws_batched(self, estimator, K):
        gradient_draws_batched(self.model, self.est, self.x, K, VARIANCE_DRAWS)

    def track_grad_var_phi(self, estimator, K):
        torch.manual_seed(TRACK_SEED)
        return mean_variance(gradient_draws(self.model, self.est, self.x, K, VARIANCE_DRAWS))
