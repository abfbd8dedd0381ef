"""Training tasks: where a cell's data come from and what is measured on it (the suites, presets and
report page of each study are bundled by its :class:`estibench.studies.Study`).

Every metric's definition is written once, in ``harness/definitions.py``; each task's docstring
lists the metrics it records from there.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Dict, List

import torch

from estibench.models.protocols import UNNORMALISED_PRIOR, bernoulli_log_mass, capabilities

from .basket import evaluate_basket
from .task import Task
from .exact import exclusive_kl, inclusive_kl, log_marginal, log_marginal_chunked, log_posterior
from .definitions import described
from .gradients import gradient_draws
from .metrics import (TrajectoryVariance, active_units, exact_gradient_errors, gradient_std, iwae_log_likelihood,
                      leading_size_sum, log_mean_variance, normalised_weight_diagnostics)

GMM_DEFAULTS = {"test_points": 100, "test_seed": 20190501, "grad_std_samples": 10, "exact_samples": 100,
                "hinton_x": (20.0, 70.0, 120.0, 170.0)}


def rows_from(metrics: Dict[str, torch.Tensor], seeds, iteration: int) -> List[tuple]:
    out = []
    for name, values in metrics.items():
        for seed, v in zip(seeds, values.detach().cpu().tolist()):
            out.append((seed, iteration, name, v))
    return out


class GMMTask(Task):
    """The GMM study (RWS §4.3; docs/gmm.md): every iteration draws a fresh batch of B = 100 points per
    replicate from the true model (the data layer's synthetic ``gmm-true-model``); every ``eval_every``
    iterations, on M = 100 test points drawn once (seed 20190501) from the true model, it records per
    replicate the metrics below; at iterations 0, N/2 and N also the PMF snapshots (Fig 5), and at 0
    and N the exact-gradient errors from N_exact = 100 draws.
    """
    defaults = GMM_DEFAULTS

    def __init__(self, model, cell):
        super().__init__(model, cell)
        from estibench import data
        self.true = data.synthetic(model.default_dataset).bind(model)  # "gmm-true-model": the paper's true model
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


SBN_DEFAULTS = {"eval_particles": 100, "final_particles": (100, 1000), "valid_final_particles": None,
                "eval_points": 500, "test_points": None, "elbo_samples": 10,
                "grad_samples": 10, "grad_batch_seed": 7, "ema_decay": 0.999, "exact_samples": 100,
                "test_seed": 20180705}


class SBNTask(Task):
    """Sigmoid belief networks on binarised images (REBAR §6, DVAE++ §7.1; docs/sbn.md, docs/conventions.md).

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
        draws = gradient_draws(model, estimator, self.grad_batch, self.cell.particles, int(o["grad_samples"]),
                               which="guide")
        metrics["grad_logvar_frozen"] = log_mean_variance(draws.var(0, unbiased=True))
        if self.trajectory.steps > 0 and iteration > 0:
            metrics["grad_logvar_ema"] = self.trajectory.log_variance()
        metrics.update(evaluate_basket(self, model, estimator, self.grad_batch, int(o["grad_samples"])))
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


class VAETask(SBNTask):
    """The continuous-latent VAE of the RWS paper (``004_…`` §4.2; Burda et al.'s model, ``gaussian_vae``) on
    stochastically binarised digits: the batches and metrics of :class:`SBNTask` (training batches re-sampled
    per batch; valid/test binarised once with ``test_seed``): the many-particle IWAE estimate of the test log
    marginal (``final_particles``; the paper: 5,000), KL(q ‖ p_θ(z|x)) as that estimate minus the ELBO
    (``kl_posterior``), active units (Burda et al. §5.2), the φ-gradient variance at frozen parameters and along
    training, and the normalised weights' ESS and resampling entropy.  The metrics:

    """


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
            from .pretrain import pretrain
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
        log_px = bernoulli_log_mass(model.decoder_logits(z), x).to(log_pz.dtype)
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
        means = torch.sigmoid(model.decoder_logits(z.to(model.dtype)))[0]  # [n, pixels] of the first replicate
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


class _Tasks(Mapping):
    """study name → its training task class, looked up in the study registry (``estibench.studies``)."""

    def __getitem__(self, study):
        from estibench import studies
        return studies.get(study).task_class()

    def __iter__(self):
        from estibench import studies
        return iter(studies.names())

    def __len__(self):
        from estibench import studies
        return len(studies.names())


TASKS = _Tasks()

GMMTask.__doc__ += "\n" + described(["model_error", "inference_error", "grad_std_phi", "grad_std_phi_code", "log_px",
                                      "kl_qp", "kl_pq", "ess[K=k]", "resampling_entropy[K=k]", "train_objective", "sec_per_iter", "prior_pmf[z=c]",
                                      "guide_pmf[x=v,z=c]", "exact_grad/variance", "exact_grad/bias_sq",
                                      "exact_grad/mse", "exact_grad/rel_bias", "exact_grad/norm",
                                      "peak_memory_mb"]) + "\n"
SBNTask.__doc__ += described(["valid_ll", "train_elbo", "grad_logvar_frozen", "grad_logvar_ema", "active_units",
                              "ess[K=k]", "resampling_entropy[K=k]",
                              "train_objective", "sec_per_iter", "test_ll[K=k]", "valid_ll[K=k]", "test_elbo",
                              "kl_posterior", "peak_memory_mb", "test_log_px_exact", "exact_grad/variance",
                              "exact_grad/bias_sq", "exact_grad/mse", "exact_grad/rel_bias",
                              "exact_grad/norm"]) + "\n"
VAETask.__doc__ += described(["valid_ll", "train_elbo", "grad_logvar_frozen", "grad_logvar_ema", "active_units",
                              "ess[K=k]", "resampling_entropy[K=k]", "train_objective", "sec_per_iter",
                              "test_ll[K=k]", "valid_ll[K=k]", "test_elbo", "kl_posterior", "peak_memory_mb"]) + "\n"
RBMTask.__doc__ += described(["valid_ll", "train_elbo", "grad_logvar_frozen", "grad_logvar_ema", "active_units",
                              "ess[K=k]", "resampling_entropy[K=k]",
                              "train_objective", "sec_per_iter", "test_ll[K=k]", "valid_ll[K=k]", "test_elbo",
                              "kl_posterior", "peak_memory_mb", "test_log_px_exact", "exact_grad/variance",
                              "exact_grad/bias_sq", "exact_grad/mse", "exact_grad/rel_bias", "exact_grad/norm",
                              "log_z", "log_z_ais", "log_z_reverse_ais", "log_z_exact", "test_ll_raise[K=k]",
                              "test_ll_subset[K=k]", "pretrain_ae_first", "pretrain_ae_last",
                              "pretrain_ae_binary"]) + "\n"
AIRTask.__doc__ += described(["valid_ll", "count_accuracy", "prior_step_prob", "ess[K=k]", "resampling_entropy[K=k]",
                              "grad_logvar_frozen", "grad_logvar_ema", "train_objective", "sec_per_iter",
                              "test_ll[K=k]", "test_elbo", "kl_posterior", "test_count_accuracy",
                              "count_confusion[true=i,inferred=j]", "peak_memory_mb"]) + "\n"
