"""airspeed-velocity benchmarks of the GMM cell (run: see README, "Benchmarks").

``time_step``/``peakmem_step``: one training step of the vectorised runner (R = 10 replicates,
batch 100) per estimator and K.  ``time_grad_std``: the φ-gradient-std metric (10 draws on the
100 test points).  ``track_grad_std_phi``: its seeded value, so a change in an estimator's
numbers shows up in asv as well as its speed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from harness.gradients import gradient_draws  # noqa: E402
from harness.metrics import gradient_std, leading_size_sum  # noqa: E402
from harness.runner import Cell, build, make_optimiser  # noqa: E402
from harness.studies import GMMTask  # noqa: E402

ESTIMATORS = ["ws", "ww", "dww", "vimco", "reinforce", "concrete", "relax"]


class GMMStep:
    params = (ESTIMATORS, [2, 20])
    param_names = ["estimator", "K"]
    timeout = 120

    def setup(self, estimator, K):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.cell = Cell(study="gmm", model="gmm", estimator=estimator, particles=K, seeds=tuple(range(10)),
                         iterations=1, device="cpu")
        self.model, self.est = build(self.cell, torch.device("cpu"))
        self.task = GMMTask(self.model, self.cell)
        self.params_ = list(self.model.parameters()) + list(self.est.parameters())
        self.opt = make_optimiser(self.params_, 1e-3)

    def _step(self):
        x = self.task.train_batch()
        grads, own, _ = self.est.gradients(self.model, x, self.cell.particles)
        for p, g in zip(self.params_, grads + own):
            p.grad = g
        self.opt.step()

    def time_step(self, estimator, K):
        self._step()

    def peakmem_step(self, estimator, K):
        for _ in range(3):
            self._step()

    def time_grad_std(self, estimator, K):
        gradient_draws(self.model, self.est, self.task.x_test, K, 10)

    def track_grad_std_phi(self, estimator, K):
        torch.manual_seed(1)
        draws = gradient_draws(self.model, self.est, self.task.x_test, K, 10)
        return float(gradient_std(draws, leading_size_sum(self.model.guide_parameters()))["grad_std_phi"].mean())
