"""The RBM study's training task (:class:`RBMTask`, a :class:`estibench.harness.task.Task`): where a cell's data
come from and what is measured on it; the metrics' definitions are written once, in ``harness/definitions.py`` (the
engine's and the shared ones) and in ``settings.py`` (``DEFINITIONS``: the ones this task alone records)."""
from __future__ import annotations

import math
from typing import Dict, List

import torch

from estibench.models.protocols import UNNORMALISED_PRIOR, capabilities
from estibench.harness.definitions import METRIC_DEFINITIONS, described
from estibench.harness.metrics import iwae_log_likelihood
from estibench.harness.task import rows_from
from estibench.studies.sbn.task import SBN_DEFAULTS, SBNTask
from estibench.studies.rbm.settings import DEFINITIONS


RBM_DEFAULTS = {**SBN_DEFAULTS, "raise_points": 20, "raise_particles": 10, "raise_chains": 1,
                # the RBM-prior paper's two-stage pretraining (harness/pretrain.py): 0 steps = none
                "pretrain_ae_steps": 0, "pretrain_cd_steps": 0, "pretrain_pcd_steps": 0, "pretrain_rbm_lr": 0.05,
                # decoded prior samples kept as the cell's artifact (the report's image grid)
                "prior_samples": 16}
PRETRAIN_OPTIONS = ("pretrain_ae_steps", "pretrain_cd_steps", "pretrain_pcd_steps")


class RBMTask(SBNTask):
    """VAEs with an RBM prior on binarised images (DVAE++ §7.2, Table 2; the RBM-prior paper ``000_…``
    §3.3): the data, batches and metrics of :class:`SBNTask`, every log-likelihood normalised by the
    model's log Z (the RBM-prior paper's Eq. 6: the IWAE bound with the unnormalised prior minus log Z),
    which is exact on an enumerable prior (``rbm_vae_tiny``) and otherwise the AIS estimate, refreshed
    before every evaluation.  It also records log Z along training and, at the end, the forward- and
    reverse-AIS estimates that bracket it (and the exact value where it exists) and, on the first
    ``raise_points`` (default 20) test images, the RAISE check: the IWAE bound with ``raise_particles``
    (default 10) particles whose log p(z) comes from RAISE (``raise_chains`` reverse chains of the model's
    ``ais_steps`` temperatures per particle) beside the same bound with the log Z estimate.  With the study
    options ``pretrain_ae_steps``, ``pretrain_cd_steps``, ``pretrain_pcd_steps`` (default 0: none) and
    ``pretrain_rbm_lr``, the model is first pretrained by the RBM-prior paper's two stages
    (:mod:`harness.pretrain`) on the cell's training batches.  A directed model in the study (DVAE++ Table 2's
    directed-prior columns) gets SBNTask's metrics only.  The metrics:

    """

    defaults = RBM_DEFAULTS

    def __init__(self, model, cell):
        super().__init__(model, cell)
        #: a directed model in the study (DVAE++ Table 2's directed-prior columns) is evaluated as SBNTask does
        self.boltzmann = UNNORMALISED_PRIOR in capabilities(model)
        self.pretrained = {}
        steps = {k: int(self.options[k]) for k in PRETRAIN_OPTIONS}
        if any(v < 0 for v in steps.values()):
            raise ValueError(f"pretraining steps must be 0 or more, got {steps}")
        if any(steps.values()):
            if not self.boltzmann:
                raise ValueError(f"the two-stage pretraining is for RBM priors; {type(model).__name__} has none")
            from estibench.harness.pretrain import pretrain
            self.pretrained = pretrain(model, self.train_batch, cell.lr, ae_steps=steps["pretrain_ae_steps"],
                                       cd_steps=steps["pretrain_cd_steps"], pcd_steps=steps["pretrain_pcd_steps"],
                                       rbm_lr=float(self.options["pretrain_rbm_lr"]))

    def _refresh(self, model) -> None:
        if self.boltzmann and not model.exact_prior():
            model.estimate_log_partition()

    @staticmethod
    @torch.no_grad()
    def raise_log_likelihood(model, x: torch.Tensor, num_particles: int, chains: int, steps: int) -> torch.Tensor:
        """``[R, B]`` IWAE estimate of log p(x) with log p(z) from RAISE instead of log Z
        (``model.log_prior_raise``: a reverse chain per particle, conservative)."""
        q = model.guide(x)
        z = q.sample((int(num_particles),))  # [K, R, B, D]
        log_pz = model.log_prior_raise(z, chains=chains, steps=steps)
        log_px = model.log_likelihood_discrete(x, z).to(log_pz.dtype)
        log_w = log_px + log_pz - q.log_prob(z).to(log_pz.dtype)
        return (torch.logsumexp(log_w, 0) - math.log(int(num_particles))).to(x.dtype)

    def evaluate(self, model, estimator, iteration: int, extra=None) -> List[tuple]:
        self._refresh(model)
        rows = super().evaluate(model, estimator, iteration, extra)
        if not self.boltzmann:
            return rows
        if iteration == 0 and self.pretrained:
            rows += rows_from({f"pretrain_{k}": v for k, v in self.pretrained.items()}, model.seeds, 0)
        return rows + rows_from({"log_z": model.log_partition().detach()}, model.seeds, iteration)

    @torch.no_grad()
    def final_artifacts(self, model) -> Dict[str, tuple]:
        """``prior_means``: decoder means σ(dec(z)) of ``prior_samples`` (default 16) draws z of the trained
        prior of the first replicate — exact samples on an enumerable prior, else fresh Gibbs chains run
        25 × ``gibbs_sweeps`` sweeps from random states (``model.sample``) — as float16 bytes, shape in the
        MIME type (the report's image grid).  Drawn after every metric, so the metrics do not depend on it."""
        n = int(self.options["prior_samples"])
        if not self.boltzmann or n < 1:
            return {}
        z = model.sample(n)[0]  # [R, n, D]
        means = model.prior_image_means(z.to(model.dtype))[0]  # [n, obs] of the first replicate
        side = int(round(means.shape[-1] ** 0.5))
        data = means.to(torch.float16).cpu().numpy().tobytes()
        return {"prior_means": (f"application/x-float16; shape={n}x{side}x{side}", data)}

    def final_evaluate(self, model, estimator, iteration: int) -> List[tuple]:
        self._refresh(model)
        rows = super().final_evaluate(model, estimator, iteration)
        if not self.boltzmann:
            return rows
        rbm = model.rbm
        with torch.no_grad():
            # (no log_z here: :meth:`evaluate` records it at this same iteration, 0 or the last, and the store
            # keeps one row per seed, iteration and metric)
            metrics = {"log_z_ais": rbm.log_partition_ais(chains=model.ais_chains, steps=model.ais_steps)[0]}
            samples = rbm.sample_exact(model.ais_chains)[0] if model.enumerable_prior() else model.chains.states
            metrics["log_z_reverse_ais"] = rbm.log_partition_reverse_ais(samples, steps=model.ais_steps)[0]
            if model.enumerable_prior():
                metrics["log_z_exact"] = rbm.log_partition_exact()
            if iteration > 0 and int(self.options["raise_points"]) > 0:  # the conservative check (§3.3)
                x = self.test[:, :int(self.options["raise_points"])]
                K = int(self.options["raise_particles"])
                metrics[f"test_ll_raise[K={K}]"] = self.raise_log_likelihood(
                    model, x, K, int(self.options["raise_chains"]), model.ais_steps).mean(-1)
                metrics[f"test_ll_subset[K={K}]"] = iwae_log_likelihood(model, x, K).mean(-1)
        return rows + rows_from(metrics, model.seeds, iteration)


RBMTask.__doc__ += described(["valid_ll", "train_elbo", "grad_logvar_frozen", "grad_logvar_ema", "active_units",
                              "ess[K=k]", "resampling_entropy[K=k]",
                              "train_objective", "sec_per_iter", "test_ll[K=k]", "valid_ll[K=k]", "test_elbo",
                              "kl_posterior", "peak_memory_mb", "test_log_px_exact", "exact_grad/variance",
                              "exact_grad/bias_sq", "exact_grad/mse", "exact_grad/rel_bias", "exact_grad/norm",
                              "log_z", "log_z_ais", "log_z_reverse_ais", "log_z_exact", "test_ll_raise[K=k]",
                              "test_ll_subset[K=k]", "pretrain_ae_first", "pretrain_ae_last",
                              "pretrain_ae_binary"],
                             known={**METRIC_DEFINITIONS, **DEFINITIONS}) + "\n"
