"""``estibench screen --model NAME``: which estimator should I use for this model?

At the model's initial parameters and at a few points along a short training run of a reference estimator,
every compatible registered estimator draws ``--draws`` φ-gradient estimates at those same frozen parameters on
one fixed batch (a gradient basket, ``harness/basket.py``, at a handful of points).  Per estimator and point:

* ``variance``     mean over the guide's parameters of the per-coordinate variance of ĝ_φ;
* ``sec/draw``     wall seconds per gradient estimate (forward and backward of one estimate, on this machine);
* ``work×var``     variance × sec/draw, the work-normalised variance (lower is better: the variance reached per
                   second of compute, Glynn & Whitt's efficiency);
* ``rel. bias``    √max(‖mean ĝ − g*‖² − Σ Var/N, 0)/‖g*‖ against the exact gradient g* of the estimator's own target
                   objective, where the model is enumerable (median over the points), and ``bias detected``: at how
                   many points the whole-vector z-test of ``estibench check`` (Bonferroni over the guide's coordinates,
                   false-alarm rate 1e-3 per point) rejects "mean ĝ = g*";

variance and work×var with percentile-bootstrap intervals over the draws (``--bootstrap`` resamples, seed 0);
sec/draw from 20 estimates computed one after another (as a training loop does), the other draws vectorised.  The ranked table orders
the estimators by their median work×var over the points; the recommendation line names the best unbiased one and
the evidence (in how many points it led, its ratio to the runner-up), and the output says what it could not
measure: estimators refused by the model (and why), bias where the model is not enumerable, own parameters
(baselines, control variates) measured as first bound (untrained), and that estimators target different
objectives (the ELBO or the K-sample IWAE bound; see the ``target`` column).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import List, Optional

import numpy as np
import torch

from estibench import estimators, models
from estibench.models.registry import UnknownNameError

#: the reference estimator that trains the model between the points: the first of these that fits
REFERENCES = ("rloo", "reinforce", "vimco", "ww")


class ScreenError(ValueError):
    """Bad input to ``screen`` (one line, exit status 2)."""


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    from .cli import prog
    p = _OneLineParser(prog=f"{prog()} screen", description=(
        "Which estimator should I use for this model?  Every compatible estimator's φ-gradient variance, time per "
        "draw, work-normalised variance and (enumerable models) bias, at the initial parameters and along a short "
        "training run; a ranked table, a recommendation and what could not be measured."))
    p.add_argument("--model", required=True, help="a registered model name or package.module:Class")
    p.add_argument("--model-options", help="model options NAME=VALUE,... (default: the model's defaults)")
    p.add_argument("--estimators", default="all", help="comma-separated estimators (with options in brackets) or "
                                                       "'all' (default): every registered one that fits")
    p.add_argument("--particles", type=int, default=2, help="particles K per estimate (default 2: the smallest K "
                                                             "every multi-sample estimator accepts)")
    p.add_argument("--draws", type=int, default=200, help="gradient draws per estimator and point (default 200)")
    p.add_argument("--points", type=int, default=3, help="points: the initial parameters and points−1 more along "
                                                         "training (default 3)")
    p.add_argument("--steps", type=int, default=200, help="training steps of the reference between the first and "
                                                          "the last point (default 200)")
    p.add_argument("--reference", help=f"the estimator that trains the model (default: the first of "
                                        f"{', '.join(REFERENCES)} that fits)")
    p.add_argument("--batch-size", type=int, default=24, help="data points per batch (default 24)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the short training run (default 1e-3)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the draws (default 200)")
    p.add_argument("--seed", type=int, default=0, help="torch seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--out", help="folder for screen.csv (every point) and screen.md (the ranked table)")
    return p


def _check_args(args) -> None:
    for flag, value, low in (("--particles", args.particles, 1), ("--draws", args.draws, 3), ("--points", args.points, 1),
                             ("--steps", args.steps, 0), ("--batch-size", args.batch_size, 1),
                             ("--bootstrap", args.bootstrap, 10)):
        if value < low:
            raise ScreenError(f"{flag} must be at least {low}, got {value}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ScreenError(f"--lr must be a positive finite number, got {args.lr}")
    if args.points > 1 and args.steps < args.points - 1:
        raise ScreenError(f"--steps ({args.steps}) must be at least --points − 1 ({args.points - 1})")
    if args.out is not None:
        from .cli import check_output_folder
        from .store import StoreError
        try:
            check_output_folder(args.out)
        except (StoreError, ValueError) as err:
            raise ScreenError(str(err).splitlines()[0]) from None


def build(args):
    """(model, data task or None, candidates [(label, estimator)], refused {label: why}, reference label)."""
    from .cli import UsageError, parse_estimators, parse_options
    from .runner import build_model, option_label, resolve_device
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
    if factory.studies:
        from .runner import Cell
        from .studies import TASKS
        cell = Cell(study=factory.studies[0], model=args.model, estimator=reference.split("[")[0],
                    particles=args.particles, seeds=(0,), iterations=max(1, args.steps), batch_size=args.batch_size,
                    lr=args.lr, eval_every=max(1, args.steps), model_options=options)
        try:
            task = TASKS[factory.studies[0]](model, cell)
        except Exception as err:  # noqa: BLE001 - a study task that cannot be built for these options
            raise ScreenError(f"model {args.model!r}: its study {factory.studies[0]!r} cannot give data "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    return model, task, candidates, refused, reference, ref


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
    scaled by n/(n − 1), the bias of a resample's variance."""
    d = draws.double().cpu().numpy()
    n, D = d.shape
    point = float(d.var(0, ddof=1).mean())
    gram = d @ d.T
    counts = np.stack([np.bincount(gen.integers(0, n, n), minlength=n) for _ in range(B)]).astype(float)  # [B, n]
    quad = np.einsum("bi,ij,bj->b", counts, gram, counts)
    # a resample's variance has mean (n − 1)/n times the sample's (its duplicates): rescaled, so that the interval
    # is centred on the estimate rather than (1 − 1/n) below it (visible when D is large and the interval narrow)
    stats = (counts @ np.diag(gram) - quad / n) / ((n - 1) * D) * n / (n - 1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return point, float(lo), float(hi), stats


def measure(model, x, label, est, K: int, draws: int, B: int, enumerable: bool, point: int, gen,
            timed: int = 20) -> dict:
    """One estimator at the model's current parameters: ``draws`` estimates (vectorised when the model can be
    replicated, harness.gradients.gradient_draws_batched; else the loop) for the variance and bias, of which
    ``timed`` single estimates, one after another as a training loop computes them, give the time per draw."""
    from .checks import FAMILY_ALPHA, unbiased_test
    from .exact import exact_objective_gradient
    from .gradients import gradient_draws, gradient_draws_batched
    est.prepare(model, K)
    gradient_draws(model, est, x, K, 1)  # warm up (first-call allocations) outside the timing
    n_timed = max(2, min(int(timed), draws))
    started = time.perf_counter()
    single = gradient_draws(model, est, x, K, n_timed, which="guide")[:, 0]
    sec = (time.perf_counter() - started) / n_timed
    parts = [single]
    if draws > n_timed:
        try:
            parts.append(gradient_draws_batched(model, est, x, K, draws - n_timed, which="guide")[:, 0])
        except NotImplementedError:  # a model the replication recipe does not fit: the loop
            parts.append(gradient_draws(model, est, x, K, draws - n_timed, which="guide")[:, 0])
    d = torch.cat(parts)  # [n, D]
    var, lo, hi, _ = _bootstrap_var(d, B, gen)
    row = {"point": point, "estimator": label, "unbiased": bool(est.unbiased), "target": est.guide_target,
           "variance": var, "variance_lo": lo, "variance_hi": hi, "sec_per_draw": sec,
           "work_var": var * sec, "work_var_lo": lo * sec, "work_var_hi": hi * sec,
           "rel_bias": float("nan"), "bias_z": float("nan"), "bias_threshold": float("nan")}
    if enumerable:
        exact = exact_objective_gradient(model, x, est.guide_target, K, "guide").to(d.dtype)
        n = d.shape[0]
        b2 = float(((d.mean(0) - exact) ** 2).sum() - d.var(0).sum() / n)
        row["rel_bias"] = math.sqrt(max(b2, 0.0)) / max(float(exact.norm()), 1e-30)
        _, row["bias_z"], row["bias_threshold"] = unbiased_test(d.double(), exact.double(), FAMILY_ALPHA)
    return row


def _median_point(frame, column: str):
    """Per estimator, the row of its (lower) median point by ``column``, so a value and its interval come from
    the same point."""
    idx = frame.groupby("estimator")[column].apply(
        lambda v: v.sort_values(kind="stable").index[(len(v) - 1) // 2])
    return frame.loc[idx.values].set_index("estimator")


def ranked(frame):
    """One row per estimator: work×var and variance (each with its interval) at the estimator's median point by
    that quantity, median sec/draw and relative bias over the points, the points it led among the unbiased ones
    and at how many the bias test rejected; ordered by median work×var."""
    unbiased = frame[frame.unbiased]
    leaders = unbiased.loc[unbiased.groupby("point").work_var.idxmin()].estimator.value_counts() if len(unbiased) else {}
    agg = frame.groupby("estimator").agg(
        unbiased=("unbiased", "first"), target=("target", "first"),
        sec_per_draw=("sec_per_draw", "median"), rel_bias=("rel_bias", "median"),
        bias_detected=("bias_z", lambda z: int((z >= frame.loc[z.index, "bias_threshold"]).sum())),
        bias_tested=("bias_z", lambda z: int(z.notna().sum())))
    work = _median_point(frame, "work_var")[["work_var", "work_var_lo", "work_var_hi"]]
    var = _median_point(frame, "variance")[["variance", "variance_lo", "variance_hi"]]
    agg = agg.join(work).join(var).reset_index()
    agg["led"] = agg.estimator.map(lambda e: int(leaders.get(e, 0)) if len(unbiased) else 0)
    return agg.sort_values("work_var").reset_index(drop=True)


def recommendation(table, points: int) -> str:
    unbiased = table[table.unbiased]
    if unbiased.empty:
        return "Recommendation: none — no unbiased estimator fits this model; compare the biased ones by their bias."
    best = unbiased.iloc[0]
    text = (f"Recommendation: {best.estimator} — the lowest work-normalised variance among the unbiased estimators "
            f"(median over {points} point(s): {best.work_var:.3g} [{best.work_var_lo:.3g}, {best.work_var_hi:.3g}] "
            f"variance × s), lowest at {best.led} of {points} point(s)")
    if len(unbiased) > 1:
        second = unbiased.iloc[1]
        text += (f"; runner-up {second.estimator} at {second.work_var / best.work_var:.2f}× "
                 f"({'intervals overlap: the two are not separated' if second.work_var_lo <= best.work_var_hi else 'intervals separate'})")
    biased = table[~table.unbiased]
    if len(biased) and biased.iloc[0].work_var < best.work_var:
        b = biased.iloc[0]
        bias = ("bias not measured" if math.isnan(b.rel_bias) else
                f"relative bias {b.rel_bias:.2g}, detected at {b.bias_detected} of {b.bias_tested} points")
        text += f".  Biased {b.estimator} has lower work×var ({b.work_var:.3g}) but {bias}"
    return text + "."


def _fmt(v, lo, hi):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.3g} [{lo:.3g}, {hi:.3g}]"


def display(table):
    import pandas as pd
    return pd.DataFrame({
        "rank": range(1, len(table) + 1), "estimator": table.estimator,
        "unbiased": table.unbiased.map({True: "yes", False: "no"}), "target": table.target,
        "work×var": [_fmt(*r) for r in table[["work_var", "work_var_lo", "work_var_hi"]].itertuples(index=False)],
        "variance": [_fmt(*r) for r in table[["variance", "variance_lo", "variance_hi"]].itertuples(index=False)],
        "ms/draw": (1000 * table.sec_per_draw).map(lambda v: f"{v:.3g}"),
        "rel. bias": table.rel_bias.map(lambda v: "—" if math.isnan(v) else f"{v:.2g}"),
        "bias detected": [f"{d} of {t} points" if t else "not tested"
                          for d, t in zip(table.bias_detected, table.bias_tested)],
        "led (unbiased)": table.led})


def run(args, out=print) -> int:
    import pandas as pd
    from .runner import make_optimiser
    _check_args(args)
    model, task, candidates, refused, reference, ref = build(args)
    torch.manual_seed(args.seed)
    source = task if task is not None else _OwnSamples(model, args.batch_size)
    data_note = (f"data: batches of {args.batch_size} from study {type(task).__name__}'s training set"
                 if task is not None else f"data: {args.batch_size} points sampled from the model itself (it declares "
                                          f"no study, so no dataset)")
    x = source.train_batch()
    enumerable = model.latent.enumerable
    ref.prepare(model, args.particles)  # its own instance: the candidates' own parameters stay as first bound
    opt = make_optimiser(list(model.parameters()) + list(ref.parameters()), args.lr)
    at = sorted({0, *[round(args.steps * i / max(1, args.points - 1)) for i in range(1, args.points)]})
    out(f"estibench screen: model {args.model} ({type(model).__name__}, {model.latent.kind} latents"
        f"{', enumerable' if enumerable else ''}), K = {args.particles}, {args.draws} draws per estimator and point, "
        f"points at steps {at} of a training run of {reference} (Adam, lr {args.lr}); {data_note}; seed {args.seed}")
    gen = np.random.default_rng(0)
    rows, step = [], 0
    for i, target in enumerate(at):
        while step < target:
            step += 1
            model_grads, own_grads, _ = ref.gradients(model, source.train_batch(), args.particles)
            for p, g in zip(list(model.parameters()) + list(ref.parameters()), model_grads + own_grads):
                p.grad = g
            opt.step()
        started = time.perf_counter()
        for label, est in candidates:
            rows.append({"step": step, **measure(model, x, label, est, args.particles, args.draws, args.bootstrap,
                                                 enumerable, i, gen)})
        out(f"  point {i + 1}/{len(at)} (step {step}): {len(candidates)} estimators in "
            f"{time.perf_counter() - started:.1f} s")
    frame = pd.DataFrame(rows)
    table = ranked(frame)
    shown = display(table)
    out(shown.to_string(index=False))
    rec = recommendation(table, len(at))
    out(rec)
    missing = []
    if refused:
        missing.append(f"{len(refused)} estimator(s) do not fit this model at K = {args.particles}: "
                       + "; ".join(f"{k}: {v.split(': ', 1)[-1] if ': ' in v else v}" for k, v in sorted(refused.items())))
    if not enumerable:
        missing.append("bias: not measured (the model's latent space is not enumerable, no exact gradient)")
    own = [label for label, est in candidates if any(True for _ in est.parameters())]
    if own:
        missing.append(f"own parameters measured as first bound, untrained: {', '.join(own)} (their baselines / "
                       f"control variates would adapt during their own training)")
    missing.append("targets differ: estimators whose target is 'iwae' estimate the gradient of the K-sample IWAE "
                   "bound, 'elbo' ones that of the ELBO, 'inclusive_kl' ones −KL(p‖q); variances compare "
                   "estimators of different gradients across those groups")
    missing.append("times are this machine's, one process, one thread setting; the ranking by work×var can change on "
                   "other hardware")
    out("Not measured / caveats:")
    for line in missing:
        out(f"  - {line}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        frame.to_csv(os.path.join(args.out, "screen.csv"), index=False)
        with open(os.path.join(args.out, "screen.md"), "w", encoding="utf-8") as fh:
            fh.write(f"# estibench screen: {args.model}\n\n`{' '.join(sys.argv)}`\n\n")
            fh.write(shown.to_markdown(index=False) + "\n\n" + rec + "\n\n" + "\n".join(f"- {m}" for m in missing) + "\n")
        out(f"wrote {os.path.join(args.out, 'screen.csv')} and screen.md")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from .cli import prog
    p = parser()
    args = p.parse_args(argv)
    try:
        return run(args)
    except ScreenError as err:
        print(f"{prog()} screen: error: {err}", file=sys.stderr)
        return 2
