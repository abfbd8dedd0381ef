"""Studies: where a cell's data come from and what is measured on it; suites: grids of cells.

GMM study (RWS §4.3; REFERENCE.md §1): every iteration draws a fresh batch of B = 100 points
per replicate from the true model; every ``eval_every`` iterations, on M = 100 test points drawn
once (seed 20190501) from the true model, it records per replicate:
  model_error        ‖p_θ(z) − p_θtrue(z)‖₂
  inference_error    (1/M) Σ_m ‖q_φ(·|x_m) − p_θtrue(·|x_m)‖₂ (exact posterior of the true model)
  grad_std_phi       paper definition (see harness.metrics), n = 10 estimates at frozen parameters
  grad_std_phi_code  the reference code's normalisation (compatibility only)
  log_px             exact (1/M) Σ_m log p_θ(x_m)
  kl_qp, kl_pq       exact (1/M) Σ_m KL(q_φ ‖ p_θ(·|x_m)) and KL(p_θ(·|x_m) ‖ q_φ)
  train_objective    mean over the window of the objective the estimator targets (its estimate)
  sec_per_iter       wall seconds per training iteration of the whole vectorised cell
At iterations 0, N/2 and N it also stores prior_pmf[z=c] and guide_pmf[x=v,z=c] (Fig 5), and
at 0 and N the exact-gradient errors ``exact_grad/*`` from N_exact = 100 draws (harness.metrics).
"""
from __future__ import annotations

from typing import Dict, List

import torch

from .exact import exclusive_kl, inclusive_kl, log_marginal, log_posterior
from .gradients import gradient_draws
from .metrics import exact_gradient_errors, gradient_std, leading_size_sum

GMM_DEFAULTS = {"test_points": 100, "test_seed": 20190501, "grad_std_samples": 10, "exact_samples": 100,
                "hinton_x": (20.0, 70.0, 120.0, 170.0)}


def rows_from(metrics: Dict[str, torch.Tensor], seeds, iteration: int) -> List[tuple]:
    out = []
    for name, values in metrics.items():
        for seed, v in zip(seeds, values.detach().cpu().tolist()):
            out.append((seed, iteration, name, v))
    return out


class GMMTask:
    def __init__(self, model, cell):
        self.options = {**GMM_DEFAULTS, **cell.study_options}
        self.cell = cell
        self.true = model.true_model()
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
        draws = gradient_draws(model, estimator, self.x_test, self.cell.particles,
                               self.options["grad_std_samples"], which="guide")
        metrics.update(gradient_std(draws, self.leading))
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


TASKS = {"gmm": GMMTask}

ALL_GMM_ESTIMATORS = ("ws", "ww", "dww", "vimco", "reinforce", "concrete", "relax")

#: suites: name -> grid.  The CLI's common flags override any entry.
SUITES = {
    "default": dict(study="gmm", model="gmm", estimators=ALL_GMM_ESTIMATORS, particles=(2, 20), seeds=3,
                    iterations=3000, eval_every=250, batch_size=100, lr=1e-3,
                    description="GMM of RWS §4.3 at a reduced budget (3 seeds × 3,000 iterations, K ∈ {2, 20})"),
    "gmm": dict(study="gmm", model="gmm", estimators=ALL_GMM_ESTIMATORS, particles=(2, 5, 10, 20), seeds=10,
                iterations=100_000, eval_every=1000, batch_size=100, lr=1e-3,
                description="GMM of RWS §4.3 at the paper's budget (10 seeds × 100,000 iterations, K ∈ {2, 5, 10, 20})"),
}
