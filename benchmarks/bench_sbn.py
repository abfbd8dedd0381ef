"""airspeed-velocity benchmarks on the linear sigmoid belief net (benchmarks/README.md).

Every registered estimator that accepts the SBN's Bernoulli latents; K = 1, and K = 5 for the
estimators that accept it (asv shows the refused pairs as skipped: ``check(model, K)`` raised).
R = 1 seed, batch 24 from ``mnist5k-bern0`` (its embedded data, read from the disk cache once
per benchmark process), ``linear1`` = 784–200 encoder and 200–784 decoder
(``benchmarks/common.py``).

``SBNStep.time_step`` / ``peakmem_step``    one training step (fresh batch, ``gradients``, Adam)
                                            / peak RSS over three steps
``SBNVariance.time_gradient_draws``         ``gradient_draws`` with n = 100 on a fixed batch (the
                                            first 24 training images)
``SBNVariance.time_gradient_draws_batched`` the same by ``gradient_draws_batched``
``SBNVariance.track_grad_var_phi``          mean over φ coordinates of the sample variance of
                                            n = 100 seeded loop draws on that batch
"""
import torch

from benchmarks.common import (SBN_PARTICLES, TRACK_SEED, VARIANCE_DRAWS, Trainer, bind, compatible,
                               mean_variance, sbn_batcher, sbn_fixed_batch, sbn_model)
from estibench.harness.gradients import gradient_draws, gradient_draws_batched

# compatibility is decided without data (a constant training mean); the data load in setup only
ESTIMATORS = compatible(sbn_model(train_mean=torch.full((784,), 0.13)), particles=SBN_PARTICLES)


class SBNStep:
    params = (ESTIMATORS, list(SBN_PARTICLES))
    param_names = ["estimator", "K"]
    timeout = 120

    def setup(self, estimator, K):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.model = sbn_model()
        self.est = bind(estimator, self.model, K)
        self.step = Trainer(self.model, self.est, sbn_batcher(self.model), K)
        self.step()  # allocate Adam's state outside the timing

    def time_step(self, estimator, K):
        self.step()

    def peakmem_step(self, estimator, K):
        for _ in range(3):
            self.step()


class SBNVariance:
    params = (ESTIMATORS, list(SBN_PARTICLES))
    param_names = ["estimator", "K"]
    timeout = 300
    number = 1
    repeat = (1, 5, 20.0)
    warmup_time = 0.0
    unit = "mean variance"

    def setup(self, estimator, K):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.model = sbn_model()
        self.est = bind(estimator, self.model, K)
        self.x = sbn_fixed_batch()

    def time_gradient_draws(self, estimator, K):
        gradient_draws(self.model, self.est, self.x, K, VARIANCE_DRAWS)

    def time_gradient_draws_batched(self, estimator, K):
        gradient_draws_batched(self.model, self.est, self.x, K, VARIANCE_DRAWS)

    def track_grad_var_phi(self, estimator, K):
        torch.manual_seed(TRACK_SEED)
        return mean_variance(gradient_draws(self.model, self.est, self.x, K, VARIANCE_DRAWS))


def categorical_model(train_mean=None):
    """The categorical SBN (20 × 10-way latents, linear; ``models/categorical_sbn.py``) on the same data."""
    from estibench import models
    if train_mean is None:
        from benchmarks.common import sbn_data
        train_mean = sbn_data().train_mean
    return models.get("sbn_categorical", seeds=(0,), arch="linear", train_mean=train_mean)


CATEGORICAL_PARTICLES = (1, 2)
CATEGORICAL_ESTIMATORS = compatible(categorical_model(train_mean=torch.full((784,), 0.13)),
                                    particles=CATEGORICAL_PARTICLES)


class CategoricalSBNStep:
    """One training step on the categorical SBN, batch 24, R = 1: every estimator that accepts its 20 × 10-way
    latents (IndeCateR at K = 1 costs D·C = 200 evaluations of f)."""
    params = (CATEGORICAL_ESTIMATORS, list(CATEGORICAL_PARTICLES))
    param_names = ["estimator", "K"]
    timeout = 120

    def setup(self, estimator, K):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.model = categorical_model()
        self.est = bind(estimator, self.model, K)
        self.step = Trainer(self.model, self.est, sbn_batcher(self.model), K)
        self.step()

    def time_step(self, estimator, K):
        self.step()

    def peakmem_step(self, estimator, K):
        for _ in range(3):
            self.step()
