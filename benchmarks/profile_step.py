"""Where one GMM training step's time goes: ``torch.profiler``'s operator table for the gmm suite's cell
(R = 10 stacked seeds, batch 100) of one estimator, the runner's own ``TrainingStep``, one torch thread.

    python benchmarks/profile_step.py ESTIMATOR K [--steps 20] [--rows 25]

Prints ms per step (50 steps after 10 warm-up steps, unprofiled) and the profile of ``--steps`` further steps, sorted
by self CPU time.  Used for benchmarks/README.md's "Why the GMM budget is far from 30 minutes" (RELAX at K = 20).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("estimator")
    p.add_argument("K", type=int)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from torch.profiler import ProfilerActivity, profile
    from estibench import estimators
    from estibench.harness.runner import Cell, TrainingStep, build, make_optimiser
    from estibench.studies import TASKS
    if args.estimator not in estimators.names():
        print(f"profile_step: error: unknown estimator {args.estimator!r}", file=sys.stderr)
        return 2
    cell = Cell(study="gmm", model="gmm", estimator=args.estimator, particles=args.K, seeds=tuple(range(10)),
                iterations=100_000, eval_every=1000, device="cpu")
    torch.manual_seed(0)
    try:
        model, est = build(cell, torch.device("cpu"))
    except estimators.IncompatibleError as err:
        print(f"profile_step: error: {err}", file=sys.stderr)
        return 2
    task = TASKS["gmm"](model, cell)
    params, own = list(model.parameters()), list(est.parameters())
    opt = make_optimiser(params, cell.lr, own, est.own_lr_multiplier, cell.optimiser)
    step = TrainingStep(model, est, task, args.K, cell.iterations, opt, params + own)
    for it in range(1, 11):
        step(it)
    start = time.perf_counter()
    for it in range(11, 61):
        step(it)
    print(f"{args.estimator} K={args.K}: {(time.perf_counter() - start) / 50 * 1e3:.2f} ms/step (50 steps)")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for it in range(61, 61 + args.steps):
            step(it)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
