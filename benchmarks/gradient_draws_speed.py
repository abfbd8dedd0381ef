"""Seconds for n = 1,000 frozen-parameter gradient draws (the variance metric): the loop of plain
backward passes (``harness.gradients.gradient_draws``, what the studies use) against the batched
draws (``gradient_draws_batched``: the parameters replicated as extra replicates, ``chunk``
draws per vectorised pass), same model, estimator, data and machine, one run.

    python benchmarks/gradient_draws_speed.py [--draws 1000] [--out FILE]

Cases: the GMM (R = 1, the study's 100 test points, K ∈ {2, 20}) and the linear SBN (R = 1, the
first 24 mnist5k-bern0 training images, K = 1), every compatible estimator; one torch thread.
Per case: loop seconds, batched seconds (automatic chunk), their ratio, and the mean
per-coordinate variance of both sets of draws (same distribution: the two columns agree up to
sampling noise; ``tests/test_benchmarks.py`` tests it).  The first call of each is untimed
(warm-up with 10 draws).  Writes ``gradient_draws_speed.md`` next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.common import command_line, write_record  # noqa: E402
from benchmarks.common import (GMM_PARTICLES, bind, compatible, gmm_model, gmm_test_points, header,  # noqa: E402
                               load_average, markdown, mean_variance, sbn_fixed_batch, sbn_model)
from estibench.harness.gradients import auto_chunk, gradient_draws, gradient_draws_batched  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def case(model_name, model, x, name, K, n):
    try:
        est = bind(name, model, K)
    except NotImplementedError:
        return None
    gradient_draws(model, est, x, K, 10)
    gradient_draws_batched(model, est, x, K, 10)
    torch.manual_seed(1)
    t_loop, loop = timed(lambda: gradient_draws(model, est, x, K, n))
    v_loop = mean_variance(loop)
    del loop
    gc.collect()
    torch.manual_seed(2)
    t_batch, batch = timed(lambda: gradient_draws_batched(model, est, x, K, n))
    v_batch = mean_variance(batch)
    shape = tuple(batch.shape)
    del batch
    gc.collect()
    chunk = auto_chunk(model, x, K, n)
    row = [model_name, name, K, shape[-1], chunk, t_loop, t_batch, t_loop / t_batch, v_loop, v_batch]
    print(row, flush=True)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--estimators", help="comma-separated names (default: every compatible one)")
    p.add_argument("--models", default="gmm,sbn")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "gradient_draws_speed.md"),
                   help="Markdown output (default: next to this script); '-' for stdout only")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load_before = load_average()
    started = time.perf_counter()
    rows = []
    wanted = args.models.split(",")
    if "gmm" in wanted:
        model = gmm_model(seeds=(0,))
        x = gmm_test_points(model)
        names = args.estimators.split(",") if args.estimators else compatible(model, particles=GMM_PARTICLES)
        for name in names:
            for K in GMM_PARTICLES:
                rows.append(case("gmm", model, x, name, K, args.draws))
    if "sbn" in wanted:
        model = sbn_model()
        x = sbn_fixed_batch()
        names = args.estimators.split(",") if args.estimators else compatible(model, particles=(1,))
        for name in names:
            rows.append(case("sbn linear1", model, x, name, 1, args.draws))
    rows = [r for r in rows if r is not None]
    columns = ["model", "estimator", "K", "D_φ", "chunk", f"loop s ({args.draws} draws)",
               f"batched s ({args.draws} draws)", "speed-up", "mean Var (loop)", "mean Var (batched)"]
    summary = []
    for model_name in dict.fromkeys(r[0] for r in rows):
        ratios = [r[7] for r in rows if r[0] == model_name]
        summary.append(f"{model_name}: speed-up median {statistics.median(ratios):.1f}×, "
                       f"range {min(ratios):.1f}–{max(ratios):.1f}×, ≥ 5× in {sum(x >= 5 for x in ratios)} "
                       f"of {len(ratios)} cases")
    command = command_line(__file__, argv)
    extra = (f"{args.draws} φ-gradient draws at frozen parameters, R = 1, one torch thread.  Loop = "
             f"`gradient_draws` ({args.draws} plain backward passes of the estimator's surrogate); batched = "
             f"`gradient_draws_batched` with the automatic chunk (replicated parameters ≤ 2^21 elements and "
             f"chunk·R·B·K ≤ 2^17 per pass).  Target: batched ≥ 5× faster.  Whole run: "
             f"{time.perf_counter() - started:.0f} s.\n\n" + "  \n".join(summary))
    text = header(command, extra, load_before) + "\n" + markdown(rows, columns, floatfmt=".3g")
    write_record(text, args.out)


if __name__ == "__main__":
    main()
