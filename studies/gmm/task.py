"""The GMM study's training task (:class:`GMMTask`, a :class:`estibench.harness.task.Task`): where a cell's data
come from and what is measured on it; the metrics' definitions are written once, in ``harness/definitions.py`` (the
engine's and the shared ones) and in ``settings.py`` (``DEFINITIONS``: the ones this task alone records)."""
from __future__ import annotations

from typing import List

import torch

from estibench.harness.basket import evaluate_basket
from estibench.harness.definitions import METRIC_DEFINITIONS, described
from estibench.harness.exact import exclusive_kl, inclusive_kl, log_marginal, log_posterior
from estibench.harness.gradients import gradient_draws
from estibench.harness.metrics import (exact_gradient_errors, gradient_std, leading_size_sum,
                                       normalised_weight_diagnostics)
from estibench.harness.task import Task, rows_from
from estibench.studies.gmm.settings import DEFINITIONS


GMM_DEFAULTS = {"test_points": 100, "test_seed": 20190501, "grad_std_samples": 10, "exact_samples": 100,
                "hinton_x": (20.0, 70.0, 120.0, 170.0)}


class GMMTask(Task):
    """The GMM study (RWS §4.3; studies/gmm/README.md): every iteration draws a fresh batch of B = 100 points per
    replicate from the true model (the data layer's synthetic ``gmm-true-model``); every ``eval_every``
    iterations, on M = 100 test points drawn once (seed 20190501) from the true model, it records per
    replicate the metrics below; at iterations 0, N/2 and N also the PMF snapshots (Fig 5), and at 0
    and N the exact-gradient errors from N_exact = 100 draws.
    """
    defaults = GMM_DEFAULTS

    def __init__(self, model, cell):
        super().__init__(model, cell)
        from estibench import data
        # "gmm-true-model": the paper's true model, from the model's GMM_TRUTH (Study.needs), whatever its default
        self.true = data.synthetic(model.default_dataset or "gmm-true-model").bind(model)
        self.batch_size = cell.batch_size
        M = int(self.options["test_points"])
        gen = torch.Generator().manual_seed(int(self.options["test_seed"]))
        probs = self.true.prior_probs()[0].detach().cpu()
        z = torch.multinomial(probs, M, replacement=True, generator=gen)
        x = self.true.means.cpu()[z] + self.true.std * torch.randn(M, generator=gen)
        self.x_test = x.to(device=model.device, dtype=model.dtype).expand(model.replicates, M).contiguous()
        hx = torch.tensor(self.options["hinton_x"], dtype=model.dtype, device=model.device)
        self.x_hinton = hx.expand(model.replicates, len(hx)).contiguous()
        with torch.no_grad():
            self.true_posterior = log_posterior(self.true, self.x_test).exp()  # [C, R, M]
        self.snapshot_at = {0, cell.iterations // 2, cell.iterations}
        self.leading = leading_size_sum(model.guide_parameters())

    def train_batch(self) -> torch.Tensor:
        return self.true.sample(self.batch_size)[1]

    def evaluate(self, model, estimator, iteration: int, extra=None) -> List[tuple]:
        seeds = model.seeds
        with torch.no_grad():
            q = model.guide(self.x_test).probs  # [R, M, C]
            metrics = {
                "model_error": (model.prior_probs() - self.true.prior_probs()).norm(dim=-1),
                "inference_error": (q - self.true_posterior.permute(1, 2, 0)).norm(dim=-1).mean(-1),
                "log_px": log_marginal(model, self.x_test).mean(-1),
                "kl_qp": exclusive_kl(model, self.x_test).mean(-1),
                "kl_pq": inclusive_kl(model, self.x_test).mean(-1),
            }
            if self.cell.particles > 1:  # the normalised weights of the cell's own K (002_… Eq. 23)
                metrics.update(normalised_weight_diagnostics(model, self.x_test, self.cell.particles))
        draws = gradient_draws(model, estimator, self.x_test, self.cell.particles,
                               self.options["grad_std_samples"], which="guide")
        metrics.update(gradient_std(draws, self.leading))
        metrics.update(evaluate_basket(self, model, estimator, self.x_test, int(self.options["grad_std_samples"])))
        if extra:
            metrics.update(extra)
        rows = rows_from(metrics, seeds, iteration)
        if iteration in self.snapshot_at:
            rows += self.snapshot(model, iteration)
        return rows

    @torch.no_grad()
    def snapshot(self, model, iteration) -> List[tuple]:
        pmfs = {f"prior_pmf[z={c}]": p for c, p in enumerate(model.prior_probs().unbind(-1))}
        guide = model.guide(self.x_hinton).probs  # [R, n_x, C]
        for j, v in enumerate(self.options["hinton_x"]):
            for c in range(guide.shape[-1]):
                pmfs[f"guide_pmf[x={v:g},z={c}]"] = guide[:, j, c]
        return rows_from(pmfs, model.seeds, iteration)

    def final_evaluate(self, model, estimator, iteration: int) -> List[tuple]:
        errors = exact_gradient_errors(model, estimator, self.x_test, self.cell.particles,
                                       int(self.options["exact_samples"]))
        return rows_from(errors, model.seeds, iteration)


GMMTask.__doc__ += "\n" + described(["model_error", "inference_error", "grad_std_phi", "grad_std_phi_code", "log_px",
                                      "kl_qp", "kl_pq", "ess[K=k]", "resampling_entropy[K=k]", "train_objective", "sec_per_iter", "prior_pmf[z=c]",
                                      "guide_pmf[x=v,z=c]", "exact_grad/variance", "exact_grad/bias_sq",
                                      "exact_grad/mse", "exact_grad/rel_bias", "exact_grad/norm",
                                      "peak_memory_mb"],
                                     known={**METRIC_DEFINITIONS, **DEFINITIONS}) + "\n"
