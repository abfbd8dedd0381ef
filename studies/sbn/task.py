"""The SBN study's training task (:class:`SBNTask`, a :class:`estibench.harness.task.Task`): where a cell's data
come from and what is measured on it; the metrics' definitions are written once, in ``harness/definitions.py``."""
from __future__ import annotations

from typing import Dict, List

import torch

from estibench.harness.basket import gradient_variance_metrics
from estibench.harness.definitions import described
from estibench.harness.exact import log_marginal_chunked
from estibench.harness.metrics import (TrajectoryVariance, active_units, exact_gradient_errors, iwae_log_likelihood,
                                       normalised_weight_diagnostics)
from estibench.harness.task import Task, rows_from


SBN_DEFAULTS = {"eval_particles": 100, "final_particles": (100, 1000), "valid_final_particles": None,
                "eval_points": 500, "test_points": None, "elbo_samples": 10,
                "grad_samples": 10, "grad_batch_seed": 7, "ema_decay": 0.999, "exact_samples": 100,
                "test_seed": 20180705}


def downsampler(model):
    """Flattened images → the resolution the model's ``downsample`` option asks for (max-pooling; the identity at 1)."""
    from estibench import data as estidata
    return (lambda t: t) if model.downsample == 1 else (lambda t: estidata.downsample(t, model.downsample))


class SBNTask(Task):
    """Sigmoid belief networks on binarised images (REBAR §6, DVAE++ §7.1; studies/sbn/README.md, docs/conventions.md).

    Training batches: each replicate draws its own ``batch_size`` training images uniformly with
    replacement from the cell's RNG (re-binarised per batch for a dynamically binarised set).
    Every ``eval_every`` iterations it records per replicate valid_ll, train_elbo, grad_logvar_frozen,
    grad_logvar_ema, active_units, train_objective and sec_per_iter; at the end test_ll[K=k],
    valid_ll[K=k], test_elbo, kl_posterior, peak_memory_mb and, on an enumerable model, test_log_px_exact
    and exact_grad/* (settings: ``eval_particles``, ``eval_points``, ``elbo_samples``, ``grad_samples``,
    ``final_particles``, ``valid_final_particles``, ``test_points``, ``exact_samples``).  The metrics:

    """

    defaults = SBN_DEFAULTS

    def __init__(self, model, cell):
        super().__init__(model, cell)
        from estibench import data as estidata
        data = estidata.load(model.dataset)
        self.data = data
        fix = self.observations(model, data)
        dev, dt = model.device, model.dtype
        # grey if dynamic: binarised per batch
        self.train = downsampler(model)(data.train.flatten(1)).to(device=dev, dtype=dt)
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
        self.dynamic = data.kind == "binary" and data.dynamic
        self.phi_index = [i for i, p in enumerate(model.parameters())
                          if id(p) in {id(q) for q in model.guide_parameters()}]
        self.trajectory = TrajectoryVariance(float(self.options["ema_decay"]))
        self.enumerable = model.latent.enumerable

    def observations(self, model, data):
        """The function that turns a split's images into the fixed observations the metrics read (binarised once
        with the ``test_seed`` stream, down-sampled as the model's ``downsample`` option says)."""
        down = downsampler(model)
        gen = torch.Generator().manual_seed(int(self.options["test_seed"]))
        return lambda t: down(data.binarise(t, generator=gen)).to(device=model.device, dtype=model.dtype)

    def train_batch(self) -> torch.Tensor:
        R, B = self.model.replicates, self.cell.batch_size
        idx = torch.randint(self.train.shape[0], (R, B), device=self.train.device)
        x = self.train[idx]
        return torch.bernoulli(x) if self.dynamic else x

    def observe(self, grads) -> None:
        self.trajectory.update([grads[i] for i in self.phi_index])

    @torch.no_grad()
    def evaluation_metrics(self, model) -> Dict[str, torch.Tensor]:
        """The metrics of every evaluation that need no gradient (a subclass's own set replaces them)."""
        o = self.options
        metrics = {
            "valid_ll": iwae_log_likelihood(model, self.valid, int(o["eval_particles"])).mean(-1),
            "train_elbo": torch.stack([iwae_log_likelihood(model, self.train_eval, 1)
                                       for _ in range(int(o["elbo_samples"]))]).mean(0).mean(-1),
            "active_units": active_units(model, self.test),
        }
        if self.cell.particles > 1:  # the normalised weights of the cell's own K (002_… Eq. 23)
            metrics.update(normalised_weight_diagnostics(model, self.valid, self.cell.particles))
        return metrics

    def evaluate(self, model, estimator, iteration: int, extra=None) -> List[tuple]:
        """:meth:`evaluation_metrics`, then the φ-gradient variance at frozen parameters and along training."""
        o = self.options
        metrics = self.evaluation_metrics(model)
        metrics.update(gradient_variance_metrics(self, model, estimator, self.grad_batch, o["grad_samples"], iteration))
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
        if self.enumerable:
            xg = self.grad_batch[:, :8]
            metrics.update(exact_gradient_errors(model, estimator, xg, self.cell.particles, int(o["exact_samples"])))
        return rows_from(metrics, model.seeds, iteration)


SBNTask.__doc__ += described(["valid_ll", "train_elbo", "grad_logvar_frozen", "grad_logvar_ema", "active_units",
                              "ess[K=k]", "resampling_entropy[K=k]",
                              "train_objective", "sec_per_iter", "test_ll[K=k]", "valid_ll[K=k]", "test_elbo",
                              "kl_posterior", "peak_memory_mb", "test_log_px_exact", "exact_grad/variance",
                              "exact_grad/bias_sq", "exact_grad/mse", "exact_grad/rel_bias",
                              "exact_grad/norm"]) + "\n"
