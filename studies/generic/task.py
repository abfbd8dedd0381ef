"""The generic study's training task (:class:`GenericTask`, a :class:`estibench.harness.task.Task`): any model that
satisfies the model contract (``models/base.py``), trained on the data ``--data`` names or on its own samples; the
metrics are the engine's and the shared ones (``harness/metrics.py``, ``harness/exact.py``; definitions in
``harness/definitions.py`` and ``settings.py``), nothing new is computed here."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch

from estibench.harness.basket import gradient_variance_metrics
from estibench.harness.definitions import METRIC_DEFINITIONS, described
from estibench.harness.exact import log_marginal_chunked
from estibench.harness.metrics import (TrajectoryVariance, exact_gradient_errors, iwae_log_likelihood,
                                       normalised_weight_diagnostics)
from estibench.harness.task import Task, rows_from
from estibench.models.protocols import CLOSED_FORM_GAUSSIAN, ENUMERABLE, capabilities

from .data import observations
from .settings import DEFAULTS, DEFINITIONS


class GenericTask(Task):
    """Any contract model (studies/generic/README.md).  Data: the ``train`` observations of ``--data`` (a ``.npz`` /
    ``.pt`` file or a dataset of the data layer), measured on its ``test`` split (else ``valid``; a file with
    ``train`` alone is measured on the training observations only); without ``--data``, ``train_samples`` +
    ``test_samples`` draws of the model's own ``sample(n)`` per replicate at its initial parameters, from the seed
    ``data_seed`` on a stream of their own.  Training batches: each replicate draws ``batch_size`` training
    observations uniformly with replacement from the cell's stream.  Every ``eval_every`` iterations it records per
    replicate train_ll, test_ll, train_elbo, grad_logvar_frozen, grad_logvar_ema, the normalised weights' ESS and
    entropy (K > 1), train_objective and sec_per_iter; at the end test_ll[K=k], test_elbo, kl_posterior,
    train_ll[K=k] and peak_memory_mb; where the latents can be enumerated test_log_px_exact and train_log_px_exact
    (also in closed form), and at iteration 0 and the end exact_grad/*.  The metrics:

    """

    defaults = DEFAULTS

    @classmethod
    def refusal(cls, model, cell) -> Optional[str]:
        """Data the task cannot read, or observations of another shape than ``model.obs_shape`` (one line)."""
        try:
            observations({**cls.defaults, **cell.study_options}, model, cell.model)
        except (ValueError, OSError, RuntimeError) as err:  # RuntimeError: a dataset not in the cache, offline
            return f"--data {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        return None

    def __init__(self, model, cell):
        super().__init__(model, cell)
        o = self.options
        dev, dt, R = model.device, model.dtype, model.replicates
        splits = observations(o, model, cell.model)
        if splits is None:  # the model's own samples, [R, N, *obs], on a stream of their own
            n_train, n_test = int(o["train_samples"]), int(o["test_samples"])
            fork = [dev] if dev.type == "cuda" else []
            with torch.random.fork_rng(devices=fork), torch.no_grad():
                torch.manual_seed(int(o["data_seed"]))
                x = model.sample(n_train + n_test)[1].detach().to(device=dev, dtype=dt)
            train, test = x[:, :n_train], x[:, n_train:] if n_test > 0 else None
        else:  # one set for every replicate: [N, *obs] viewed as [R, N, *obs]
            rep = lambda t: t.to(device=dev, dtype=dt).expand(R, *t.shape)  # noqa: E731
            train = rep(splits["train"])
            held = splits.get("test", splits.get("valid"))
            test = rep(held) if held is not None else None
        self.train = train
        M = int(o["eval_points"])
        self.train_eval = train[:, :M].contiguous()
        T = o["test_points"]
        self.test = None if test is None else (test if T is None else test[:, :int(T)]).contiguous()
        self.test_eval = None if self.test is None else self.test[:, :M].contiguous()
        gen = torch.Generator().manual_seed(int(o["grad_batch_seed"]))
        idx = torch.randint(train.shape[1], (cell.batch_size,), generator=gen).to(dev)
        self.grad_batch = train[:, idx].contiguous()
        self.rows = torch.arange(R, device=dev).unsqueeze(-1)
        guide = {id(q) for q in model.guide_parameters()}
        self.phi_index = [i for i, p in enumerate(model.parameters()) if id(p) in guide]
        self.trajectory = TrajectoryVariance(float(o["ema_decay"]))
        caps = capabilities(model)
        self.enumerable = ENUMERABLE in caps
        self.exact_px = self.enumerable or CLOSED_FORM_GAUSSIAN in caps

    def train_batch(self) -> torch.Tensor:
        R, B = self.model.replicates, self.cell.batch_size
        idx = torch.randint(self.train.shape[1], (R, B), device=self.train.device)
        return self.train[self.rows, idx]

    def observe(self, grads) -> None:
        self.trajectory.update([grads[i] for i in self.phi_index])

    def evaluate(self, model, estimator, iteration: int, extra=None) -> List[tuple]:
        o = self.options
        with torch.no_grad():
            metrics: Dict[str, torch.Tensor] = {
                "train_ll": iwae_log_likelihood(model, self.train_eval, int(o["eval_particles"])).mean(-1),
                "train_elbo": torch.stack([iwae_log_likelihood(model, self.train_eval, 1)
                                           for _ in range(int(o["elbo_samples"]))]).mean(0).mean(-1),
            }
            if self.test_eval is not None:
                metrics["test_ll"] = iwae_log_likelihood(model, self.test_eval, int(o["eval_particles"])).mean(-1)
            if self.cell.particles > 1:  # the normalised weights of the cell's own K (002_… Eq. 23)
                held = self.test_eval if self.test_eval is not None else self.train_eval
                metrics.update(normalised_weight_diagnostics(model, held, self.cell.particles))
        metrics.update(gradient_variance_metrics(self, model, estimator, self.grad_batch, o["grad_samples"], iteration))
        if extra:
            metrics.update(extra)
        return rows_from(metrics, model.seeds, iteration)

    def final_evaluate(self, model, estimator, iteration: int) -> List[tuple]:
        o = self.options
        metrics: Dict[str, torch.Tensor] = {}
        if iteration > 0:
            with torch.no_grad():
                ks = [int(k) for k in o["final_particles"]]
                for k in ks:
                    metrics[f"train_ll[K={k}]"] = iwae_log_likelihood(model, self.train_eval, k).mean(-1)
                if self.test is not None:
                    for k in ks:
                        metrics[f"test_ll[K={k}]"] = iwae_log_likelihood(model, self.test, k).mean(-1)
                    elbo = torch.stack([iwae_log_likelihood(model, self.test, 1)
                                        for _ in range(int(o["elbo_samples"]))]).mean(0).mean(-1)
                    metrics["test_elbo"] = elbo
                    metrics["kl_posterior"] = metrics[f"test_ll[K={max(ks)}]"] - elbo
                if self.exact_px:
                    metrics["train_log_px_exact"] = log_marginal_chunked(model, self.train_eval).mean(-1)
                    if self.test is not None:
                        metrics["test_log_px_exact"] = log_marginal_chunked(model, self.test).mean(-1)
        if self.enumerable:
            xg = self.grad_batch[:, :int(o["exact_points"])]
            metrics.update(exact_gradient_errors(model, estimator, xg, self.cell.particles, int(o["exact_samples"])))
        return rows_from({k: v.to(torch.float64) for k, v in metrics.items()}, model.seeds, iteration)


GenericTask.__doc__ += described(["train_ll", "test_ll", "train_elbo", "grad_logvar_frozen", "grad_logvar_ema",
                                  "ess[K=k]", "resampling_entropy[K=k]", "train_objective", "sec_per_iter",
                                  "test_ll[K=k]", "test_elbo", "kl_posterior", "train_ll[K=k]", "peak_memory_mb",
                                  "test_log_px_exact", "train_log_px_exact", "exact_grad/variance",
                                  "exact_grad/bias_sq", "exact_grad/mse", "exact_grad/rel_bias", "exact_grad/norm"],
                                 known={**METRIC_DEFINITIONS, **DEFINITIONS}) + "\n"
