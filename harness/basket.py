"""The gradient basket: every other estimator's φ-gradient variance (and bias, where the model is enumerable)
measured at the parameters of one training trajectory.

As the DisARM and RODEO authors' code's "gradient basket" does, the cell trains with its own (reference)
estimator, and at every evaluation each estimator of the basket draws ``basket_samples`` φ-gradient estimates at
those same frozen parameters on the same batch: the differences between the lines then come from the
estimators, not from where each one's training wandered.  Study options (SBN-like and GMM tasks):

* ``basket``          a tuple of estimator labels (``"rloo"``, ``"gst[gap=1.0]"``), or ``("all",)``: every registered
                      estimator that accepts the model and the cell's K; the cell's own estimator is always
                      measured too (its line is the reference).  A named member applies to every cell of the run,
                      and the cells of one run differ in model and K: a member the estimator's own check refuses on
                      some cells is left out of those (:func:`members`), named with the cells and the reason in a
                      note line before any work (``estibench.cli.run``) and listed under "members not measured" in the
                      report (``reports/basket.py``); a member that fits none of the run's cells is refused with
                      one line, exit status 2, before any work;
* ``basket_samples``  draws per estimator and evaluation (default: the task's gradient draws).

Estimators with parameters of their own (baselines, control variates) are measured with those parameters as
first bound, untrained: the basket says what each estimator does without adapting along the reference's
trajectory (the report says so).  Metrics (``harness/definitions.py``): ``basket_logvar[e=label]``,
``basket_bias_sq[e=label]`` and ``basket_rel_bias[e=label]`` (enumerable models only) for every member e.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch

from estibench import estimators

from .exact import exact_objective_gradient
from .grammar import parse_estimators
from .gradients import gradient_draws
from .metrics import log_mean_variance


def parse_members(spec: Sequence[str]) -> List[Tuple[str, dict]]:
    """(name, options) for every label of ``spec`` (one-line errors for an unknown name or option)."""
    out = []
    for label in spec:
        out += parse_estimators(str(label))
    for name, options in out:
        estimators.get(name, **options)  # refuse an unknown name or option now
    return out


def members(spec: Sequence[str], model, num_particles: int, reference, ref_label: str
            ) -> Tuple[Dict[str, object], Dict[str, str]]:
    """(label → bound estimator, label → why it was left out) for the basket ``spec`` on this model and K; the
    reference estimator (the cell's, labelled ``ref_label``) is the first member."""
    from .runner import option_label
    chosen: Dict[str, object] = {}
    skipped: Dict[str, str] = {}
    if tuple(spec) == ("all",):
        pairs = [(n, {}) for n in estimators.names()]
    else:
        pairs = parse_members(spec)
    for name, options in pairs:
        label = option_label(name, options)
        if label == ref_label or label in chosen:
            continue
        est = estimators.get(name, **options)
        try:
            est.check(model, num_particles)
        except estimators.IncompatibleError as err:
            skipped[label] = str(err).splitlines()[0]
            continue
        est.bind(model)
        est.to(model.device)
        chosen[label] = est
    return {ref_label: reference, **chosen}, skipped


def _per_replicate(model, flat: torch.Tensor) -> torch.Tensor:
    """The exact gradient's parameter-major flat layout → ``[R, D_r]`` like the draws."""
    R, pieces, start = model.replicates, [], 0
    for p in model.guide_parameters():
        pieces.append(flat[start:start + p.numel()].view(R, -1))
        start += p.numel()
    return torch.cat(pieces, 1)


def basket_metrics(model, basket: Dict[str, object], x: torch.Tensor, num_particles: int, samples: int,
                   enumerable: bool) -> Dict[str, torch.Tensor]:
    """``basket_logvar[e]`` (and, enumerable, ``basket_bias_sq[e]``, ``basket_rel_bias[e]``) per replicate ``[R]``
    for every member e, at the model's current parameters on the batch ``x``."""
    out: Dict[str, torch.Tensor] = {}
    exact_cache: Dict[str, torch.Tensor] = {}
    for label, est in basket.items():
        draws = gradient_draws(model, est, x, num_particles, samples, which="guide")  # [n, R, D]
        var = draws.var(0, unbiased=True)
        out[f"basket_logvar[e={label}]"] = log_mean_variance(var)
        if enumerable:
            target = est.guide_target
            if target not in exact_cache:
                exact_cache[target] = _per_replicate(
                    model, exact_objective_gradient(model, x, target, num_particles, "guide"))
            exact = exact_cache[target]
            bias_sq = ((draws.mean(0) - exact) ** 2).sum(-1) - var.sum(-1) / samples
            out[f"basket_bias_sq[e={label}]"] = bias_sq
            out[f"basket_rel_bias[e={label}]"] = bias_sq.clamp(min=0).sqrt() / exact.norm(dim=-1).clamp(min=1e-30)
    return out


def evaluate_basket(task, model, estimator, x: torch.Tensor, default_samples: int) -> Dict[str, torch.Tensor]:
    """The basket metrics of a task whose study options name a basket (none otherwise).  The members are built
    at the first evaluation; the draws run on a forked random stream, so the reference's training trajectory
    is the one the same cell without a basket follows."""
    spec = tuple(task.options.get("basket") or ())
    if not spec:
        return {}
    cell = task.cell
    if task.basket is None:
        task.basket, task.basket_skipped = members(spec, model, cell.particles, estimator, cell.label())
    samples = int(task.options.get("basket_samples") or default_samples)
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return basket_metrics(model, task.basket, x, cell.particles, samples, model.latent.enumerable)


def gradient_variance_metrics(task, model, estimator, x: torch.Tensor, samples: int, iteration: int
                              ) -> Dict[str, torch.Tensor]:
    """The φ-gradient's variance metrics a task reports at each evaluation: ``grad_logvar_frozen`` (``samples``
    draws at frozen parameters on ``x``), ``grad_logvar_ema`` (along training, from ``task.trajectory``, once it has
    steps) and the task's gradient basket (:func:`evaluate_basket`), in that order (the draws' random stream)."""
    draws = gradient_draws(model, estimator, x, task.cell.particles, int(samples), which="guide")
    metrics = {"grad_logvar_frozen": log_mean_variance(draws.var(0, unbiased=True))}
    if task.trajectory.steps > 0 and iteration > 0:
        metrics["grad_logvar_ema"] = task.trajectory.log_variance()
    metrics.update(evaluate_basket(task, model, estimator, x, int(samples)))
    return metrics
