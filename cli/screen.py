"""``estibench screen --model NAME``: which estimator should I use for this model?

At the model's initial parameters and at a few points along a short training run of a reference estimator,
every compatible registered estimator draws ``--draws`` φ-gradient estimates at those same frozen parameters on
one fixed batch (a gradient basket, ``harness/basket.py``, at a handful of points).  Per estimator and point:

* ``variance``     mean over the guide's parameters of the per-coordinate variance of ĝ_φ;
* ``sec/draw``     wall seconds per gradient estimate (forward and backward of one estimate, on this machine, on
                   ``--threads`` torch threads: default 1, as a training cell runs);
* ``work×var``     variance × sec/draw, the work-normalised variance (lower is better: the variance reached per
                   second of compute, Glynn & Whitt's efficiency);
* ``rel. bias``    √max(‖mean ĝ − g*‖² − Σ Var/N, 0)/‖g*‖ against the exact gradient g* of the estimator's own target
                   objective, where the model is enumerable (median over the points), and ``bias detected``: at how
                   many points ``estibench check``'s whole-vector test (Student t per coordinate, Bonferroni over
                   the guide's coordinates, false-alarm rate 1e-3 per point; zero-variance coordinates must match
                   g*) rejects "mean ĝ = g*".  The test runs only with ``--draws`` ≥ 2,000
                   (``harness.checks.MIN_DRAWS``: the studentised mean of fewer skewed gradient draws is far from t,
                   and the rate is not held); below it the column reads "not tested" and the caveats say why;

variance and work×var with percentile-bootstrap intervals over the draws (``--bootstrap`` resamples of the
centred draws, so that rounding cannot push a bound below 0; bounds clamped at 0 all the same).  sec/draw is the
median wall time of 20 estimates (fewer if ``--draws`` is smaller) computed one after another (as a training loop
does), the other draws vectorised.  The intervals cover the draws' randomness only, not the timing's: the same
command gives bit-identical variances (every stream is seeded) but times that vary with the machine's load, and
work×var ranks of estimators within a few tens of per cent of each other can swap between runs.

**Zero variance.**  An estimator's draws at a point have zero variance when their mean per-coordinate variance is
at most :data:`ZERO_VARIANCE_RTOL` (1e-10) times the mean squared coordinate of their mean, i.e. a relative spread
below 1e-5, a hundred times float32 rounding between summation orders (an exactly repeated draw gives 0).  An
unbiased estimator with zero variance at every point is **exact** (IndeCateR on a model with one categorical
variable enumerates it; shown as ``0 (exact)``, and "exact: zero variance, X ms per draw" in its recommendation);
a biased one is deterministic.

**Targets.**  Estimators estimate the gradients of different objectives (``target`` = ``guide_target``): ``elbo``
(the ELBO, VAE-style K-sample averages), ``iwae`` (the K-sample importance-weighted bound ELBO_IS^K) and
``inclusive_kl`` (reweighted wake-sleep's wake-φ, −KL(p‖q)).  Their variances are not comparable across groups, so
the output says which objective each group belongs to and recommends per group; ``--target`` names the user's
objective (its group is recommended for alone and shown first; the others stay in the table).

**Output.**  A header, one line per point, then the table ordered by target group and, within a group, exact
estimators first (by cost) and the others by median work×var over the points (``rank`` is the rank within the
group; ``led (in group)``: at how many points the estimator had the lowest work×var among its group's unbiased
ones).  Then one line naming each group's objective and one recommendation line per group: the best unbiased
estimator with its evidence (median work×var with its interval, points led, the runner-up's ratio and whether
the two intervals overlap: "not separated"); an exact estimator is recommended with its cost, beside the
non-exact unbiased estimator with the lowest work×var, its cost ratio and variance (zero variance beats any
work×var; a cheaper noisy estimator is named so the user can weigh per-step cost); a group with no unbiased
estimator gets "none unbiased" and its lowest-work×var member with its bias.  Last, what could not be measured:
refused estimators grouped by reason, bias on a non-enumerable model, estimators whose state moves under
measurement, own parameters (baselines, control variates) measured as first bound (untrained), and that times
are this machine's.  ``--out DIR`` writes every (point, estimator) row to ``screen.csv`` and the table and
lines to ``screen.md``.

**Faults are one line.**  Bad input is refused before any work with one line and exit status 2: besides the
arguments themselves, ``--seed`` outside torch's 64-bit range, and ``--draws`` / ``--particles`` / ``--batch-size``
whose draws, bootstrap or particles cannot fit in the memory available (:func:`memory_needed`, a lower bound,
against /proc/meminfo's MemAvailable and any cgroup limit).  A reference run that diverges (a non-finite objective, gradient
or parameter, or a model that raises on them) stops with one line naming the step (exit 2); memory that runs out
all the same is one line too (exit 2).  An estimator whose draws at a point raise or are not finite gets a blank row
there (it leads nowhere) and a caveat line.  ``screen.md`` and ``screen.csv`` are written through temporary files
moved over them (:func:`write_outputs`): a full disk is one line, exit status 1, and leaves both as they were.

**Measurement never changes what it measures.**  Each estimator's draws at a point run inside
:func:`harness.measurement.frozen` on a random stream of their own (seeded from ``--seed``, the estimator's label
and the point; binding an estimator likewise), and the model's and the estimator's parameters, buffers and plain
attributes are restored afterwards: an estimator that updates a baseline in ``surrogate`` is measured without
moving it, and the reference's training trajectory (and every estimator's draws) are the same whichever and
however many estimators are screened.  The bootstrap of each (estimator, point) has its own generator too.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from estibench import estimators, models
from estibench.models.registry import UnknownNameError
from estibench.harness.task import task_class

# the reference estimators, the targets and the parser: built without torch, for --help (cli/parsers.py)
from .parsers import REFERENCES, TARGETS, screen_parser as parser  # noqa: F401

#: zero variance at a point: mean per-coordinate variance ≤ ZERO_VARIANCE_RTOL × mean squared coordinate of the
#: draws' mean (a relative spread below 1e-5; float32 rounding between summation orders is about 1e-7)
ZERO_VARIANCE_RTOL = 1e-10


def target_words(target: str) -> str:
    return TARGETS.get(target, (f"target {target!r}",))[0]


class ScreenError(ValueError):
    """Bad input to ``screen`` (one line, exit status 2)."""


def _check_args(args) -> None:
    for flag, value, low in (("--particles", args.particles, 1), ("--draws", args.draws, 3), ("--points", args.points, 1),
                             ("--steps", args.steps, 0), ("--batch-size", args.batch_size, 1),
                             ("--bootstrap", args.bootstrap, 10), ("--threads", args.threads, 1)):
        if value < low:
            raise ScreenError(f"{flag} must be at least {low}, got {value}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ScreenError(f"--lr must be a positive finite number, got {args.lr}")
    if not -2 ** 63 <= args.seed < 2 ** 64:
        raise ScreenError(f"--seed must be a 64-bit integer (torch's seed range), got {args.seed}")
    if args.points > 1 and args.steps < args.points - 1:
        raise ScreenError(f"--steps ({args.steps}) must be at least --points − 1 ({args.points - 1})")
    if args.out is not None:
        from .common import check_output_folder
        from estibench.harness.store import StoreError
        try:
            check_output_folder(args.out)
        except (StoreError, ValueError) as err:
            raise ScreenError(str(err).splitlines()[0]) from None


def build(args):
    """(model, data task or None, candidates [(label, estimator)], refused {label: why}, reference label)."""
    from estibench.harness.grammar import UsageError, parse_estimators, parse_options
    from estibench.harness.runner import build_model, option_label, resolve_device
    try:
        options = parse_options(args.model_options, "--model-options") if args.model_options else {}
        device = resolve_device(args.device)
        factory = models.REGISTRY.factory(args.model)
        model = build_model(args.model, seeds=(0,), **options).to(device)
    except (UnknownNameError, UsageError) as err:
        raise ScreenError(str(err).splitlines()[0]) from None
    except (ValueError, TypeError, RuntimeError) as err:
        raise ScreenError(f"model {args.model!r}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    try:
        specs = ([(n, {}) for n in estimators.names()] if args.estimators.strip() == "all"
                 else parse_estimators(args.estimators))
        built = [(option_label(n, o), estimators.get(n, **o)) for n, o in specs]
    except (UnknownNameError, UsageError, ValueError) as err:
        raise ScreenError(str(err).splitlines()[0]) from None
    except TypeError as err:
        raise ScreenError(f"--estimators: {str(err).splitlines()[0]}") from None
    candidates, refused = [], {}
    for label, est in built:
        try:
            est.check(model, args.particles)
        except estimators.IncompatibleError as err:
            refused[label] = str(err).splitlines()[0]
            continue
        candidates.append((label, est))
    if not candidates:
        raise ScreenError(f"no estimator fits model {args.model!r} at K = {args.particles}")
    reference = args.reference
    if reference is None:
        reference = next((r for r in REFERENCES if r in dict(candidates)), candidates[0][0])
        rname, ropts = {option_label(n, o): (n, o) for n, o in specs}[reference]
        ref = estimators.get(rname, **ropts)
    else:
        try:
            (rname, ropts), = parse_estimators(reference)
            ref = estimators.get(rname, **ropts)
            ref.check(model, args.particles)
        except (UnknownNameError, UsageError, ValueError, TypeError) as err:
            raise ScreenError(f"--reference: {str(err).splitlines()[0]}") from None
        reference = option_label(rname, ropts)
    task = None
    from estibench import studies
    homes = studies.studies_of(factory)  # the studies that declare they train this model (Study.models)
    if homes:
        from estibench.harness.runner import Cell
        cell = Cell(study=homes[0], model=args.model, estimator=reference.split("[")[0], task=studies.get(homes[0]).task,
                    particles=args.particles, seeds=(0,), iterations=max(1, args.steps), batch_size=args.batch_size,
                    lr=args.lr, eval_every=max(1, args.steps), model_options=options)
        try:
            task = task_class(cell.task)(model, cell)
        except Exception as err:  # noqa: BLE001 - a study task that cannot be built for these options
            raise ScreenError(f"model {args.model!r}: its study {homes[0]!r} cannot give data "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    return model, task, candidates, refused, reference, ref


#: bytes per particle-point and latent-or-data element that one estimate holds at least (the float32 sample and one
#: more value of its size): a lower bound, so that nothing that fits is refused (measured peaks at K = 10⁵, batch
#: 24: 14 bytes per element on sbn_tiny, 92 on the GMM); what passes the estimate and still runs out of memory is
#: one line too (:func:`_out_of_memory`)
PARTICLE_BYTES = 8


def _numel(value) -> int:
    """Elements of a tensor, or of the tensors in a (nested) tuple, list or dict (a structured latent)."""
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return sum(_numel(v) for v in value)
    return 0


def memory_needed(args, model) -> Tuple[int, str]:
    """(bytes, what dominates) that measuring one estimator at one point holds at once, at least: one estimate's
    particles (K × batch × the latent and data elements of a point, :data:`PARTICLE_BYTES` each) and the draws with
    their bootstrap (n × D float32 draws, three float64 copies, the n × n Gram matrix and the resample counts)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        z, x = model.sample(1)
    per_point = max(1, (_numel(z) + _numel(x)) // max(1, model.replicates))
    particles = PARTICLE_BYTES * args.particles * args.batch_size * per_point
    D = sum(p.numel() for p in model.guide_parameters())
    n = args.draws
    draws = 4 * n * D + 8 * (3 * n * D + n * n + args.bootstrap * n)
    if particles >= draws:
        return particles + draws, (f"--particles {args.particles} × --batch-size {args.batch_size} × {per_point} "
                                   f"elements per point")
    return particles + draws, f"--draws {n} × {D:,} guide coordinates (and the {n} × {n} bootstrap Gram matrix)"


def check_memory(args, model) -> None:
    """:class:`ScreenError` (one line) before any work when :func:`memory_needed` exceeds the memory available."""
    from estibench.harness.checks import _gb, available_memory
    need, what = memory_needed(args, model)
    room = available_memory()
    if room is not None and need > room:
        raise ScreenError(f"not enough memory: measuring one estimator at one point needs at least {_gb(need)} "
                          f"({what}), and {_gb(room)} is available; lower --draws, --particles or --batch-size")


def _out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation that failed (CPU or GPU)."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(
        words in text for words in ("can't allocate memory", "not enough memory", "out of memory",
                                    "defaultcpuallocator"))


def _oom(args, err: BaseException, where: str) -> ScreenError:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ScreenError(f"out of memory {where} (K = {args.particles}, batch {args.batch_size}, {args.draws} draws): "
                       f"{first[:200]}; lower --particles, --batch-size or --draws")


class _OwnSamples:
    """Training batches for a model that declares no study: points drawn from the model itself."""

    def __init__(self, model, batch_size):
        self.model, self.batch_size = model, batch_size

    def train_batch(self):
        return self.model.sample(self.batch_size)[1]


def _bootstrap_var(draws: torch.Tensor, B: int, gen: np.random.Generator):
    """(mean per-coordinate variance, lo, hi) of ``draws`` [n, D], percentile bootstrap over draws.  Through the
    n × n Gram matrix G = X Xᵀ: a resample with counts w has mean variance (w·diag G − wᵀGw/n) / ((n − 1) D), so
    each resample costs O(n²) whatever D (the SBN's guide has D ≈ 157,000 coordinates); the resampled values are
    scaled by n/(n − 1), the bias of a resample's variance.  The draws are centred first (a variance does not
    change when every draw moves by the same vector): without it the two terms are of the size of ‖ĝ‖² and their
    difference, for an estimator of (near) zero variance, is rounding of either sign (−1e-14 where 0 is right);
    every value is clamped at 0 all the same, since a variance is never negative."""
    d = draws.double().cpu().numpy()
    n, D = d.shape
    d = d - d.mean(0)
    point = float(d.var(0, ddof=1).mean())
    gram = d @ d.T
    counts = np.stack([np.bincount(gen.integers(0, n, n), minlength=n) for _ in range(B)]).astype(float)  # [B, n]
    quad = np.einsum("bi,ij,bj->b", counts, gram, counts)
    # a resample's variance has mean (n − 1)/n times the sample's (its duplicates): rescaled, so that the interval
    # is centred on the estimate rather than (1 − 1/n) below it (visible when D is large and the interval narrow)
    stats = np.maximum((counts @ np.diag(gram) - quad / n) / ((n - 1) * D) * n / (n - 1), 0.0)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return point, float(lo), float(hi), stats


def _finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:200] if str(err) else ""


def unmeasured(point: int, label: str, est, why: str) -> dict:
    """The row of an estimator that could not be measured at a point (its draws raised or were not finite): every
    measured column NaN, ``failed`` says why."""
    nan = float("nan")
    return {"point": point, "estimator": label, "unbiased": bool(est.unbiased), "target": est.guide_target,
            "variance": nan, "variance_lo": nan, "variance_hi": nan, "sec_per_draw": nan, "work_var": nan,
            "work_var_lo": nan, "work_var_hi": nan, "zero_variance": False, "rel_bias": nan, "bias_z": nan,
            "bias_threshold": nan, "bias_rejected": nan, "state_moved": "", "failed": why}


def measure(model, x, label, est, K: int, draws: int, B: int, enumerable: bool, point: int, gen,
            timed: int = 20) -> dict:
    """One estimator at the model's current parameters: ``draws`` estimates (vectorised when the model can be
    replicated, harness.gradients.gradient_draws_batched; else the loop) for the variance and bias, of which
    ``timed`` single estimates, one after another as a training loop computes them, each timed, give the time
    per draw (their median: a stall of the shared machine during one of them does not move it).
    Called inside :func:`harness.measurement.frozen` (see :func:`measure_frozen`): it uses the live estimator."""
    from estibench.harness.checks import FAMILY_ALPHA, MIN_DRAWS, unbiased_test
    from estibench.harness.exact import exact_objective_gradient
    from estibench.harness.gradients import _draw, _group_indices, gradient_draws, gradient_draws_batched
    est.prepare(model, K)  # checks the pair (bound before, by ``bind``)
    gradient_draws(model, est, x, K, 1)  # warm up (first-call allocations) outside the timing
    n_timed = max(2, min(int(timed), draws))
    index, R = _group_indices(model, "guide"), model.replicates
    times, single = [], []
    for _ in range(n_timed):  # one estimate at a time, each timed: the median is robust to a one-off stall
        started = time.perf_counter()
        grads = _draw(model, est, x, K, index)
        times.append(time.perf_counter() - started)
        single.append(torch.cat([g.reshape(R, -1) for g in grads], 1).neg())
    sec = float(np.median(times))
    single = torch.stack(single)[:, 0]
    parts = [single]
    if draws > n_timed:
        try:
            parts.append(gradient_draws_batched(model, est, x, K, draws - n_timed, which="guide")[:, 0])
        except NotImplementedError:  # a model the replication recipe does not fit: the loop
            parts.append(gradient_draws(model, est, x, K, draws - n_timed, which="guide")[:, 0])
    d = torch.cat(parts)  # [n, D]
    if not bool(torch.isfinite(d).all()):
        bad = int((~torch.isfinite(d).all(1)).sum())
        return unmeasured(point, label, est, f"{bad} of {len(d)} draws not finite")
    var, lo, hi, _ = _bootstrap_var(d, B, gen)
    mean_sq = float((d.double().mean(0) ** 2).mean())
    zero = bool(var <= ZERO_VARIANCE_RTOL * mean_sq)
    row = {"point": point, "estimator": label, "unbiased": bool(est.unbiased), "target": est.guide_target,
           "variance": var, "variance_lo": lo, "variance_hi": hi, "sec_per_draw": sec,
           "work_var": var * sec, "work_var_lo": lo * sec, "work_var_hi": hi * sec, "zero_variance": zero,
           "rel_bias": float("nan"), "bias_z": float("nan"), "bias_threshold": float("nan"),
           "bias_rejected": float("nan"), "failed": ""}
    if enumerable:
        exact = exact_objective_gradient(model, x, est.guide_target, K, "guide").to(d.dtype)
        n = d.shape[0]
        b2 = float(((d.mean(0) - exact) ** 2).sum() - d.var(0).sum() / n)
        row["rel_bias"] = math.sqrt(max(b2, 0.0)) / max(float(exact.norm()), 1e-30)
        if n >= MIN_DRAWS:  # fewer: the test's false-alarm rate does not hold for skewed draws (not tested)
            passed, row["bias_z"], row["bias_threshold"] = unbiased_test(d.double(), exact.double(), FAMILY_ALPHA)
            row["bias_rejected"] = float(not passed)
    return row


def measure_frozen(model, x, label, est, K: int, draws: int, B: int, enumerable: bool, point: int,
                   seed: int) -> dict:
    """:func:`measure` as a measurement: the model's and the estimator's state restored afterwards and the draws
    (and the bootstrap) on streams of their own, seeded from ``seed``, the label and the point.  First one draw
    through :func:`harness.measurement.changed_state`: ``state_moved`` names the estimator's parameters, buffers
    and attributes that a draw at frozen parameters moves (restored, but its draws then come from an estimator
    whose state moves from draw to draw; ``estibench check`` fails it)."""
    from estibench.harness.measurement import changed_state, frozen, measurement_seed
    with frozen(model, est, seed=measurement_seed(seed, "screen", label, point)):
        est.prepare(model, K)
        moved = changed_state(est, lambda: est.gradients(model, x, K, with_own=False))
        gen = np.random.default_rng(measurement_seed(seed, "screen-bootstrap", label, point))
        return {**measure(model, x, label, est, K, draws, B, enumerable, point, gen), "state_moved": ", ".join(moved)}


def bind(model, candidates, K: int, seed: int) -> None:
    """Bind every candidate to the model (creating its own parameters), each on a stream of its own, so that
    the training stream does not depend on which estimators are screened."""
    from estibench.harness.measurement import frozen, measurement_seed
    for label, est in candidates:
        with frozen(model, seed=measurement_seed(seed, "screen-bind", label)):
            est.prepare(model, K)


def _median_point(frame, column: str):
    """Per estimator, the row of its (lower) median point by ``column``, so a value and its interval come from
    the same point."""
    idx = frame.groupby("estimator")[column].apply(
        lambda v: v.sort_values(kind="stable").index[(len(v) - 1) // 2])
    return frame.loc[idx.values].set_index("estimator")


def group_order(targets, first: Optional[str] = None) -> List[str]:
    """The targets present, in :data:`TARGETS` order (others after, alphabetically), ``first`` first."""
    order = [t for t in TARGETS if t in set(targets)] + sorted(set(targets) - set(TARGETS))
    if first in order:
        order.remove(first)
        order.insert(0, first)
    return order


def ranked(frame, first: Optional[str] = None):
    """One row per estimator: work×var and variance (each with its interval) at the estimator's median point by
    that quantity, median sec/draw and relative bias over the points, at how many points its variance was zero
    (``exact``: unbiased and zero at every point; ``deterministic``: biased and zero at every point), the points
    it led among its target group's unbiased estimators and at how many the bias test rejected.  Ordered by target
    group (:func:`group_order`), then zero-variance estimators by cost, then the others by median work×var;
    ``rank`` counts within the group."""
    import pandas as pd
    unbiased = frame[frame.unbiased & frame.work_var.notna()]  # an estimator not measured at a point leads nowhere
    leaders = (unbiased.loc[unbiased.groupby(["point", "target"]).work_var.idxmin().values].estimator.value_counts()
               if len(unbiased) else pd.Series(dtype=int))
    agg = frame.groupby("estimator").agg(
        unbiased=("unbiased", "first"), target=("target", "first"),
        sec_per_draw=("sec_per_draw", "median"), rel_bias=("rel_bias", "median"),
        zero_points=("zero_variance", "sum"), points=("point", "count"),
        bias_detected=("bias_rejected", lambda r: int((r == 1).sum())),
        bias_tested=("bias_rejected", lambda r: int(r.notna().sum())))
    work = _median_point(frame, "work_var")[["work_var", "work_var_lo", "work_var_hi"]]
    var = _median_point(frame, "variance")[["variance", "variance_lo", "variance_hi"]]
    agg = agg.join(work).join(var).reset_index()
    always_zero = agg.zero_points == agg.points
    agg["exact"] = always_zero & agg.unbiased
    agg["deterministic"] = always_zero & ~agg.unbiased
    agg["led"] = agg.estimator.map(lambda e: int(leaders.get(e, 0)))
    order = group_order(agg.target, first)
    agg["_group"] = agg.target.map(order.index)
    agg["_noisy"] = ~always_zero
    agg["_key"] = agg.sec_per_draw.where(always_zero, agg.work_var)
    agg = agg.sort_values(["_group", "_noisy", "_key"], kind="stable").drop(columns=["_group", "_noisy", "_key"])
    agg = agg.reset_index(drop=True)
    agg.insert(0, "rank", agg.groupby("target").cumcount() + 1)
    return agg


def _ratio(a: float, b: float) -> Optional[str]:
    """``a/b`` as "1.23×", or None where b is not a positive finite number (no ``inf×``, no division warning)."""
    if not (b > 0 and math.isfinite(b) and math.isfinite(a)):
        return None
    return f"{a / b:.3g}×"


def _ms(row) -> str:
    return f"{1000 * row.sec_per_draw:.3g} ms"


def _bias_text(row) -> str:
    if math.isnan(row.rel_bias):
        return "bias not measured"
    return f"relative bias {row.rel_bias:.2g}, detected at {row.bias_detected} of {row.bias_tested} points"


def recommendation(table, points: int, target: str) -> str:
    """The recommendation line for one target group (see the module docstring)."""
    head = f"Recommendation for {target_words(target)} (target {target}): "
    group = table[table.target == target]
    if group.empty:
        return head + ("none — no estimator of this target was measured (none fits this model at this K, or none "
                       "was asked for).")
    unbiased = group[group.unbiased]
    if unbiased.empty:
        b = group.iloc[0]
        return (head + f"none unbiased — the {len(group)} estimator(s) of this target are biased; the lowest "
                       f"work×var among them: {b.estimator} ({_fmt(b.work_var, b.work_var_lo, b.work_var_hi)} "
                       f"variance × s, {_bias_text(b)}).")
    exact, noisy = unbiased[unbiased.exact], unbiased[~unbiased.exact]
    if len(exact):
        best = exact.iloc[0]
        text = (head + f"{best.estimator} — exact: zero variance at all {points} point(s) (relative tolerance "
                       f"{ZERO_VARIANCE_RTOL:g}), {_ms(best)} per draw")
        if best.bias_detected:
            text += f" (but the bias test rejected at {best.bias_detected} of {best.bias_tested} points)"
        for _, e in exact.iloc[1:].iterrows():
            text += (f"; also exact: {e.estimator}, {_ms(e)} per draw "
                     f"({_ratio(e.sec_per_draw, best.sec_per_draw)} the cost)")
        if len(noisy):
            alt = noisy.iloc[0]
            ratio = alt.sec_per_draw / best.sec_per_draw
            text += (f"; the non-exact unbiased estimator with the lowest work×var: {alt.estimator}, "
                     f"{_ms(alt)} per draw ({_ratio(alt.sec_per_draw, best.sec_per_draw)} the cost) with variance "
                     f"{_fmt(alt.variance, alt.variance_lo, alt.variance_hi)}")
            text += (" (cheaper per draw, but noisy)" if ratio < 1 else " (no cheaper per draw, and noisy)")
        else:
            text += "; no non-exact unbiased estimator of this target was measured"
        return text + "."
    best = noisy.iloc[0]
    text = (head + f"{best.estimator} — the lowest work-normalised variance among this target's unbiased estimators "
                   f"(median over {points} point(s): {_fmt(best.work_var, best.work_var_lo, best.work_var_hi)} "
                   f"variance × s), lowest at {best.led} of {points} point(s)")
    if len(noisy) > 1:
        second = noisy.iloc[1]
        ratio = _ratio(second.work_var, best.work_var)
        at = f"at {ratio}" if ratio else f"at work×var {second.work_var:.3g}"
        overlap = second.work_var_lo <= best.work_var_hi
        text += (f"; runner-up {second.estimator} {at} "
                 f"({'intervals overlap: the two are not separated' if overlap else 'intervals separate'})")
    else:
        text += "; the only unbiased estimator of this target measured"
    biased = group[~group.unbiased]
    if len(biased) and biased.iloc[0].work_var < best.work_var:
        b = biased.iloc[0]
        text += f".  Biased {b.estimator} has lower work×var ({b.work_var:.3g}) but {_bias_text(b)}"
    return text + "."


def objectives_line(table, target: Optional[str]) -> str:
    """Which objective each target group's gradients belong to (and, with ``--target``, which one is the user's)."""
    counts = table.target.value_counts()
    order = group_order(table.target, target)

    def says(t):
        return f"{TARGETS.get(t, (None, f'an objective of its own ({t})'))[1]} → target {t} ({counts.get(t, 0)})"
    if target is not None:
        others = [t for t in order if t != target]
        text = f"Your objective (--target {target}): {says(target)}"
        if others:
            text += (f"; the other groups ({', '.join(f'{t}: {counts[t]}' for t in others)}) estimate other "
                     f"objectives' gradients: in the table, not recommended for")
        return text + "."
    return ("Objectives (estimators per target in brackets): " + "; ".join(says(t) for t in order)
            + ".  Gradients of different targets are different vectors: compare within a group (--target picks yours).")


def _fmt(v, lo, hi):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.3g} [{lo:.3g}, {hi:.3g}]"


def display(table):
    import pandas as pd

    def cell(row, column):
        if row.exact:
            return "0 (exact)"
        if row.deterministic:
            return "0 (deterministic)"
        return _fmt(getattr(row, column), getattr(row, f"{column}_lo"), getattr(row, f"{column}_hi"))
    rows = list(table.itertuples(index=False))
    return pd.DataFrame({
        "target": table.target, "rank": table["rank"], "estimator": table.estimator,
        "unbiased": table.unbiased.map({True: "yes", False: "no"}),
        "work×var": [cell(r, "work_var") for r in rows],
        "variance": [cell(r, "variance") for r in rows],
        "ms/draw": (1000 * table.sec_per_draw).map(lambda v: f"{v:.3g}"),
        "rel. bias": table.rel_bias.map(lambda v: "—" if math.isnan(v) else f"{v:.2g}"),
        "bias detected": [f"{d} of {t} points" if t else "not tested"
                          for d, t in zip(table.bias_detected, table.bias_tested)],
        "led (in group)": table.led})


#: short reasons for ``estimators.IncompatibleError``'s lines (estimators/base.py, models/protocols.py), so that
#: refusals group by reason; a line none of them reads is kept whole, the estimator's name taken out
_REASONS = (
    (re.compile(r"does not support \S+ latents \(model [^)]*\); it supports (.+)$"), "supports only {0} latents"),
    (re.compile(r"needs at least (\d+) particle\(s\), got \d+$"), "needs at least {0} particles"),
    (re.compile(r"needs the (.+?)(?: \([^()]*\))?, which .+ does not provide$"), "needs the {0}"),
    (re.compile(r"needs the ([^;]+); .+ lacks (.+)$"), "needs the {0} (the model lacks {1})"),
    (re.compile(r"has an? (.+?) \(log Z\): .+ does not handle its gradient"),
     "does not handle the {0}'s gradient −∇ log Z"),
    (re.compile(r"declares the (.+?) but lacks ([^;]+);"), "the model declares the {0} but lacks {1}"),
)


def refusal_reason(message: str) -> str:
    """The reason of a refusal line, without the estimator's name (so that estimators refused alike group)."""
    line = message.splitlines()[0] if message else "refused"
    for pattern, words in _REASONS:
        found = pattern.search(line)
        if found:
            return words.format(*found.groups())
    return re.sub(r"estimator '[^']*'", "the estimator", line)


def refused_groups(refused: Dict[str, str]) -> List[Tuple[str, List[str]]]:
    """(reason, labels) for the refused estimators, the largest group first."""
    groups: Dict[str, List[str]] = {}
    for label, why in sorted(refused.items()):
        groups.setdefault(refusal_reason(why), []).append(label)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


@dataclass
class Screen:
    """What :func:`collect` measured: the model at the last point, the frame of every (point, estimator) row and
    what the report needs."""

    args: argparse.Namespace
    model: object
    reference: str
    at: List[int]
    frame: object
    candidates: List[tuple]
    refused: Dict[str, str] = field(default_factory=dict)
    enumerable: bool = False


def collect(args, out=print) -> Screen:
    """Build, train the reference between the points and measure every candidate at each (header and one line per
    point through ``out``), on ``--threads`` torch threads (the caller's setting restored afterwards)."""
    _check_args(args)
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _collect(args, out)
    finally:
        torch.set_num_threads(before)


def _collect(args, out) -> Screen:
    import pandas as pd
    from estibench.harness.runner import make_optimiser
    model, task, candidates, refused, reference, ref = build(args)
    check_memory(args, model)
    torch.manual_seed(args.seed)
    source = task if task is not None else _OwnSamples(model, args.batch_size)
    data_note = (f"data: batches of {args.batch_size} from study {type(task).__name__}'s training set"
                 if task is not None else f"data: {args.batch_size} points sampled from the model itself (it declares "
                                          f"no study, so no dataset)")
    x = source.train_batch()
    enumerable = model.latent.enumerable
    ref.prepare(model, args.particles)  # its own instance: the candidates' own parameters stay as first bound
    bind(model, candidates, args.particles, args.seed)
    opt = make_optimiser(list(model.parameters()) + list(ref.parameters()), args.lr)
    at = sorted({0, *[round(args.steps * i / max(1, args.points - 1)) for i in range(1, args.points)]})
    out(f"estibench screen: model {args.model} ({type(model).__name__}, {model.latent.kind} latents"
        f"{', enumerable' if enumerable else ''}), K = {args.particles}, {args.draws} draws per estimator and point, "
        f"points at steps {at} of a training run of {reference} (Adam, lr {args.lr}); {data_note}; seed {args.seed}; "
        f"{args.threads} torch thread(s)")
    rows, step = [], 0
    params = list(model.parameters()) + list(ref.parameters())
    for i, target in enumerate(at):
        while step < target:
            step += 1
            try:
                model_grads, own_grads, objective = ref.gradients(model, source.train_batch(), args.particles)
            except Exception as err:  # noqa: BLE001 - a diverged model's distributions refuse NaN, an allocation fails
                if _out_of_memory(err):
                    raise _oom(args, err, f"in step {step} of the reference {reference}") from None
                why = "non-finite parameters" if not _finite(params) else "it raised"
                raise ScreenError(f"the reference run ({reference}, Adam lr {args.lr:g}) failed at step {step} ({why}: "
                                  f"{type(err).__name__}: {_first_line(err)}); lower --lr") from None
            if not (_finite(model_grads + own_grads) and bool(torch.isfinite(objective).all())):
                raise ScreenError(f"the reference run ({reference}, Adam lr {args.lr:g}) diverged at step {step}: "
                                  f"non-finite objective or gradients; lower --lr (or --steps)")
            for p, g in zip(params, model_grads + own_grads):
                p.grad = g
            opt.step()
            if not _finite(params):
                raise ScreenError(f"the reference run ({reference}, Adam lr {args.lr:g}) diverged at step {step}: "
                                  f"non-finite parameters; lower --lr (or --steps)")
        started = time.perf_counter()
        for label, est in candidates:
            try:
                row = measure_frozen(model, x, label, est, args.particles, args.draws, args.bootstrap, enumerable, i,
                                     args.seed)
            except Exception as err:  # noqa: BLE001 - one estimator that cannot be measured here is a row, not a crash
                if _out_of_memory(err):
                    raise _oom(args, err, f"measuring {label} at point {i + 1}") from None
                row = unmeasured(i, label, est, f"{type(err).__name__}: {_first_line(err)}")
            rows.append({"step": step, **row})
        out(f"  point {i + 1}/{len(at)} (step {step}): {len(candidates)} estimators in "
            f"{time.perf_counter() - started:.1f} s")
    frame = pd.DataFrame(rows)
    if (frame.failed != "").all():
        raise ScreenError(f"no estimator could be measured at any point (e.g. {frame.estimator.iloc[0]} at point 1: "
                          f"{frame.failed.iloc[0]}); the model's parameters may have diverged: lower --lr")
    return Screen(args=args, model=model, reference=reference, at=at, frame=frame,
                  candidates=candidates, refused=refused, enumerable=enumerable)


def report(result: Screen, out=print) -> None:
    """The ranked table, the objectives line, one recommendation per target group (``--target``: that one alone)
    and what could not be measured; ``--out``: screen.csv and screen.md."""
    from estibench.harness.checks import MIN_DRAWS
    args = result.args
    target = getattr(args, "target", None)
    table = ranked(result.frame, target)
    shown = display(table)
    out(shown.to_string(index=False))
    lines = [objectives_line(table, target)]
    lines += [recommendation(table, len(result.at), t) for t in ([target] if target else group_order(table.target))]
    for line in lines:
        out(line)
    missing: List[Tuple[str, List[str]]] = []
    if result.refused:
        groups = refused_groups(result.refused)
        missing.append((f"refused ({len(result.refused)}): do not fit this model at K = {args.particles}, by reason",
                        [f"{reason} ({len(labels)}): {', '.join(labels)}" for reason, labels in groups]))
    if not result.enumerable:
        missing.append(("bias: not measured (the model's latent space is not enumerable, no exact gradient)", []))
    moved = result.frame[result.frame.state_moved.fillna("") != ""].groupby("estimator").state_moved.first()
    if len(moved):
        missing.append(("state that moves under measurement (restored after each measurement, so training is "
                        "unaffected; but the draws come from an estimator whose state moves from draw to draw, so "
                        "their variance is not the trained estimator's, and estibench check fails it)",
                        [f"{label}: {names}" for label, names in moved.items()]))
    failed = result.frame[result.frame.failed.fillna("") != ""] if "failed" in result.frame else result.frame[:0]
    if len(failed):
        missing.append(("not measured at some points (draws that raised or were not finite; their columns are blank "
                        "there and they lead nowhere)",
                        [f"{label}: {len(rows)} of {len(result.at)} point(s): {rows.failed.iloc[0]}"
                         for label, rows in failed.groupby("estimator")]))
    if result.enumerable and args.draws < MIN_DRAWS:
        missing.append((f"bias test: not run at {args.draws} draws per point (fewer than {MIN_DRAWS:,}: the test's "
                        f"false-alarm rate does not hold for skewed gradient draws; --draws {MIN_DRAWS} runs it); "
                        f"the relative bias is the point estimate", []))
    own = [label for label, est in result.candidates if any(True for _ in est.parameters())]
    if own:
        missing.append((f"own parameters measured as first bound, untrained: {', '.join(own)} (their baselines / "
                        f"control variates would adapt during their own training)", []))
    missing.append((f"times are this machine's (one process, {args.threads} torch thread(s), median of up to 20 draws in "
                    f"a row per point); the intervals cover the draws' randomness, not the timing's: the ranking by work×var can "
                    f"change on other hardware or under other load", []))
    out("Not measured / caveats:")
    for line, subs in missing:
        out(f"  - {line}" + (":" if subs else ""))
        for sub in subs:
            out(f"      {sub}")
    if args.out:
        write_outputs(args, result.frame, shown, lines, missing)
        out(f"wrote {os.path.join(args.out, 'screen.csv')} and screen.md")


def write_outputs(args, frame, shown, lines, missing) -> None:
    """screen.md and screen.csv under ``--out``, each through a temporary file beside it moved over it
    (:func:`estibench.files.atomic_write`): a reader sees the old file or the new one, never a part, and a full disk
    raises :class:`harness.store.StoreFullError` (one line) with no temporary file left.  screen.csv is written
    and moved into place while screen.md's temporary file is complete, so a failed write of either leaves both
    as they were (only a failing final rename of screen.md could leave a new screen.csv beside the old md)."""
    from estibench.files import atomic_write
    from estibench.harness.store import StoreFullError
    text = f"# estibench screen: {args.model}\n\n`{' '.join(sys.argv)}`\n\n"
    text += shown.to_markdown(index=False) + "\n\n" + "\n\n".join(lines) + "\n\n"
    for line, subs in missing:
        text += f"- {line}" + (":" if subs else "") + "\n" + "".join(f"    - {sub}\n" for sub in subs)

    def write_both(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        atomic_write(os.path.join(args.out, "screen.csv"), lambda tmp_csv: frame.to_csv(tmp_csv, index=False),
                     full=StoreFullError)

    os.makedirs(args.out, exist_ok=True)
    atomic_write(os.path.join(args.out, "screen.md"), write_both, full=StoreFullError)


def run(args, out=print) -> int:
    report(collect(args, out), out)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Exit status 0; 2 for bad input (one line, before any work where it can be known then: the arguments, the
    memory the draws and particles need) and for a run its input makes fail (a reference run that diverges, memory
    that runs out); 1 when screen.csv / screen.md cannot be written (a full disk: one line, the old files as they
    were, no temporary file left)."""
    from .common import prog
    from estibench.harness.store import StoreError
    p = parser()
    args = p.parse_args(argv)
    try:
        return run(args)
    except ScreenError as err:
        print(f"{prog()} screen: error: {err}", file=sys.stderr)
        return 2
    except StoreError as err:  # a full disk under --out
        print(f"{prog()} screen: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 1
    except OSError as err:  # --out became unusable after the check before the work
        print(f"{prog()} screen: error: cannot write to --out {args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
