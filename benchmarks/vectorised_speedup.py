"""Per-replicate seconds per training iteration: the vectorised runner (R replicates stacked)
against a plain single run (R = 1), same GMM cell, same machine, one run.

    python benchmarks/vectorised_speedup.py [--replicates 10,40] [--iterations 300] [--out FILE]

For every GMM estimator (default: every registered one that accepts categorical latents) and K,
it builds one trainer per R (1 and each of ``--replicates``): the runner's training step (fresh
batch of 100 from the true model, estimator gradients, Adam; ``benchmarks/common.py``), one
torch thread, 20 warm-up steps each.  Then ``--iterations`` ÷ 20 rounds in which every trainer
runs a block of 20 steps, so a change in the machine's load hits every R alike; ms/it = median
block ÷ 20; speed-up per replicate = median over rounds of (single block) / (stacked block / R).
Writes the Markdown table next to this script (``vectorised_speedup.md``) unless ``--out``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.common import command_line, write_record  # noqa: E402
from benchmarks.common import (GMM_PARTICLES, Trainer, bind, compatible, gmm_batcher, gmm_model,  # noqa: E402
                               header, load_average, markdown)

WARMUP = 20
BLOCK = 20


def trainer(estimator: str, K: int, R: int) -> Trainer:
    torch.manual_seed(0)
    model = gmm_model(seeds=tuple(range(R)))
    est = bind(estimator, model, K)
    return Trainer(model, est, gmm_batcher(model), K)


def block_seconds(step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def measure(estimator: str, K: int, replicates, iterations: int):
    """({R: median seconds per iteration of the whole cell}, {R: per-replicate speed-up}), R = 1 and
    each of ``replicates``."""
    trainers = {R: trainer(estimator, K, R) for R in (1, *replicates)}
    for step in trainers.values():
        for _ in range(WARMUP):
            step()
    times = {R: [] for R in trainers}
    for _ in range(max(1, iterations // BLOCK)):  # a block of every trainer per round
        for R, step in trainers.items():
            times[R].append(block_seconds(step, BLOCK))
    ratio = {R: statistics.median(a / (b / R) for a, b in zip(times[1], times[R])) for R in trainers}
    return {R: statistics.median(t) for R, t in times.items()}, ratio


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicates", default="10,40", help="comma-separated R values (default: 10,40)")
    p.add_argument("--iterations", type=int, default=300, help="timed steps per trainer (default: 300)")
    p.add_argument("--estimators", help="comma-separated names (default: every GMM-compatible one)")
    p.add_argument("--particles", default=",".join(map(str, GMM_PARTICLES)))
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "vectorised_speedup.md"),
                   help="Markdown output (default: next to this script); '-' for stdout only")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    replicates = [int(r) for r in args.replicates.split(",")]
    particles = [int(k) for k in args.particles.split(",")]
    names = args.estimators.split(",") if args.estimators else compatible(gmm_model((0,)), particles=particles)
    load_before = load_average()
    started = time.perf_counter()
    rows = []
    for name in names:
        for K in particles:
            try:
                t, speedup = measure(name, K, replicates, args.iterations)
            except NotImplementedError:
                continue
            row = [name, K, 1e3 * t[1]]
            for R in replicates:
                row += [1e3 * t[R], 1e3 * t[R] / R, speedup[R]]
            rows.append(row)
            print(row, flush=True)
    columns = ["estimator", "K", "single run ms/it"]
    for R in replicates:
        columns += [f"R={R} ms/it (cell)", f"R={R} ms/it per replicate", f"R={R} speed-up"]
    command = command_line(__file__, argv)
    extra = (f"GMM cell (batch 100, fresh batch each step), the runner's step (gradients + Adam), one torch "
             f"thread; {WARMUP} warm-up steps per trainer, then {args.iterations // BLOCK} rounds of a {BLOCK}-step "
             f"block of each R ∈ {{1, {', '.join(map(str, replicates))}}}; ms/it = median block ÷ {BLOCK}.  "
             f"Speed-up per replicate = median over rounds of single block ÷ (cell block ÷ R).  Whole run: "
             f"{time.perf_counter() - started:.0f} s.")
    text = header(command, extra, load_before) + "\n" + markdown(rows, columns)
    write_record(text, args.out)


if __name__ == "__main__":
    main()
