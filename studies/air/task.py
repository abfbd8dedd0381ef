"""The AIR study's training task (:class:`AIRTask`, a :class:`estibench.harness.task.Task`): where a cell's data
come from and what is measured on it; the metrics' definitions are written once, in ``harness/definitions.py`` (the
engine's and the shared ones) and in ``settings.py`` (``DEFINITIONS``: the ones this task alone records)."""
from __future__ import annotations

from typing import Dict, List

import torch

from estibench.harness.definitions import METRIC_DEFINITIONS, described
from estibench.harness.metrics import iwae_log_likelihood, normalised_weight_diagnostics
from estibench.harness.task import rows_from
from estibench.studies.sbn.task import SBN_DEFAULTS, SBNTask
from estibench.studies.air.settings import DEFINITIONS


AIR_DEFAULTS = {**SBN_DEFAULTS, "eval_particles": 10, "eval_points": 100, "test_points": 100, "final_particles": (200,),
                "elbo_samples": 5, "grad_samples": 5, "count_particles": 10, "reconstructions": 8,
                "failure_accuracy": 0.5}


class AIRTask(SBNTask):
    """Attend-Infer-Repeat on multi-MNIST (the RWS paper ``004_…`` §4.1, Fig. 1; ``models/air.py``): training batches
    as :class:`SBNTask` (re-binarised per batch); validation and test images binarised once (``test_seed``), the
    first ``eval_points`` (default 100) and ``test_points`` (default 100) of their splits, with their true counts.
    Every ``eval_every`` iterations: the validation IWAE bound (``eval_particles``, default 10), the count accuracy
    (the fraction of ``count_particles`` guide draws per image whose number of steps equals the true count, the
    ``ws_air`` code's), the normalised weights' ESS and resampling entropy at the cell's K, the φ-gradient variance
    at frozen parameters (``grad_samples`` draws) and along training, and the step-count prior's s.  At the end: the
    test log evidence by a ``final_particles``-particle IWAE estimate (default 200; the paper: 5,000), the ELBO
    (``elbo_samples`` one-particle estimates), KL(q ‖ p_θ(z|x)) as their difference, the test count accuracy and
    its confusion matrix, peak memory; and, as the cell's artifacts, ``reconstructions`` (default 8) test images
    of the first replicate with one guide draw's reconstruction and inferred boxes.  The metrics:

    """

    defaults = AIR_DEFAULTS

    def __init__(self, model, cell):
        super().__init__(model, cell)
        targets = self.data.targets
        if "valid" not in targets or "test" not in targets:
            raise ValueError(f"the AIR study needs a dataset that records object counts (multi-MNIST), "
                             f"not {model.dataset!r}")
        dev = model.device
        self.valid_counts = targets["valid"]["counts"][:self.valid.shape[1]].to(dev)
        self.test_counts = targets["test"]["counts"][:self.test.shape[1]].to(dev)
        self.test_boxes = targets["test"]["boxes"][:self.test.shape[1]]

    @staticmethod
    @torch.no_grad()
    def inferred_counts(model, x: torch.Tensor, particles: int) -> torch.Tensor:
        """``[n, R, B]`` numbers of steps of n guide draws."""
        return model.counts(model.guide(x).sample((int(particles),)))

    def count_accuracy(self, model, x, counts) -> torch.Tensor:
        inferred = self.inferred_counts(model, x, int(self.options["count_particles"]))
        return (inferred == counts).to(model.dtype).mean(0).mean(-1)

    @torch.no_grad()
    def evaluation_metrics(self, model) -> Dict[str, torch.Tensor]:
        o = self.options
        metrics = {
            "valid_ll": iwae_log_likelihood(model, self.valid, int(o["eval_particles"]), particle_chunk=20,
                                            point_chunk=50).mean(-1),
            "count_accuracy": self.count_accuracy(model, self.valid, self.valid_counts),
            "prior_step_prob": torch.full((model.replicates,), float(model.success), dtype=model.dtype),
        }
        if self.cell.particles > 1:
            metrics.update(normalised_weight_diagnostics(model, self.valid, self.cell.particles))
        return metrics

    def final_evaluate(self, model, estimator, iteration: int) -> List[tuple]:
        o = self.options
        metrics: Dict[str, torch.Tensor] = {}
        if iteration > 0:
            with torch.no_grad():
                for k in o["final_particles"]:
                    metrics[f"test_ll[K={k}]"] = iwae_log_likelihood(model, self.test, int(k), particle_chunk=20,
                                                                     point_chunk=50).mean(-1)
                elbo = torch.stack([iwae_log_likelihood(model, self.test, 1)
                                    for _ in range(int(o["elbo_samples"]))]).mean(0).mean(-1)
                metrics["test_elbo"] = elbo
                metrics["kl_posterior"] = metrics[f"test_ll[K={max(o['final_particles'])}]"] - elbo
                inferred = self.inferred_counts(model, self.test, int(o["count_particles"]))  # [n, R, B]
                metrics["test_count_accuracy"] = (inferred == self.test_counts).to(model.dtype).mean(0).mean(-1)
                for true in range(int(self.test_counts.max()) + 1):
                    rows = inferred[:, :, self.test_counts == true]  # [n, R, B_true]
                    for found in range(model.steps + 1):
                        metrics[f"count_confusion[true={true},inferred={found}]"] = (
                            (rows == found).to(model.dtype).mean(0).mean(-1))
        return rows_from(metrics, model.seeds, iteration)

    @torch.no_grad()
    def final_artifacts(self, model) -> Dict[str, tuple]:
        """``reconstructions``: for the first ``reconstructions`` test images of the first replicate, the binarised
        image and the decoder mean p(x | z) at one guide draw z, float16 ``[n, 2, H, W]``; ``boxes``: JSON, per image
        the inferred boxes (top, left, height, width in pixels; the glimpse's extent) of the present steps and the
        true boxes.  Drawn after every metric."""
        import json
        n = min(int(self.options["reconstructions"]), self.test.shape[1])
        if n < 1:
            return {}
        x = self.test[:, :n]
        z = model.guide(x).sample()  # [R, n, D]
        means = model.pixel_log_probs(z)[0].exp()[0]  # first replicate, [n, pixels]
        H, W = model.image_shape
        images = torch.stack([x[0], means], 1).reshape(n, 2, H, W)
        pres, where, _ = model.unpack(z[0])
        scale, shift = torch.sigmoid(where[..., :2]), torch.tanh(where[..., 2:])
        boxes = []
        for i in range(n):
            found = []
            for t in range(model.steps):
                if pres[i, t] > 0.5:
                    sx, sy, tx, ty = (float(v) for v in (scale[i, t, 0], scale[i, t, 1], shift[i, t, 0], shift[i, t, 1]))
                    found.append([(ty - sy + 1) * H / 2, (tx - sx + 1) * W / 2, sy * H, sx * W])
            true = [[int(v) for v in b] for b in self.test_boxes[i].tolist() if b[0] >= 0]
            boxes.append({"inferred": [[round(v, 2) for v in b] for b in found], "true": true,
                          "true_count": int(self.test_counts[i])})
        data = images.to(torch.float16).cpu().numpy().tobytes()
        return {"reconstructions": (f"application/x-float16; shape={n}x2x{H}x{W}", data),
                "boxes": ("application/json", json.dumps(boxes).encode())}


AIRTask.__doc__ += described(["valid_ll", "count_accuracy", "prior_step_prob", "ess[K=k]", "resampling_entropy[K=k]",
                              "grad_logvar_frozen", "grad_logvar_ema", "train_objective", "sec_per_iter",
                              "test_ll[K=k]", "test_elbo", "kl_posterior", "test_count_accuracy",
                              "count_confusion[true=i,inferred=j]", "peak_memory_mb"],
                             known={**METRIC_DEFINITIONS, **DEFINITIONS}) + "\n"
