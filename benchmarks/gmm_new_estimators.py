"""The training step of the estimators published since the seed papers (issue 14) on the GMM at the paper's
budget's cell size, and the cell time it implies: which of them fit the paper-budget suite (``studies/gmm/__init__.py``).

    python benchmarks/gmm_new_estimators.py [--particles 2,20] [--estimators NAMES] [--seconds 2] [--out FILE]

Cell: ``gmm`` with R = 10 stacked seeds, batch 100 drawn fresh from the true model each step, Adam 1e-3
(``benchmarks/common.py``: ``Trainer``, the runner's own loop body ``harness.runner.TrainingStep``).  Each
(estimator, K): 2 warm-up steps, then blocks of steps until ``--seconds`` of CPU time have passed (at least 3
steps); ms/step = the process CPU time of the timed steps ÷ their number (CPU time, not wall time, so that a
machine shared with other work inflates it less; one torch thread).  Projection: 100,000 × ms/step (the
evaluations, about 0.1 s each × 101, left out).  Writes ``gmm_new_estimators.md`` next to this script unless
``--out``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.common import (Trainer, bind, command_line, gmm_batcher, gmm_model, header,  # noqa: E402
                               load_average, markdown, write_record)
from estibench.studies.gmm import NEW_ESTIMATORS, NEW_K2_ONLY, NEW_PAPER_BUDGET  # noqa: E402

ITERATIONS = 100_000


def step_ms(name: str, K: int, seconds: float) -> float:
    torch.manual_seed(0)
    model = gmm_model()
    trainer = Trainer(model, bind(name, model, K), gmm_batcher(model), K)
    for _ in range(2):
        trainer()
    n, start = 0, time.process_time()
    while n < 3 or time.process_time() - start < seconds:
        trainer()
        n += 1
    return 1000.0 * (time.process_time() - start) / n


def in_suite(name: str, K: int) -> str:
    if name in NEW_PAPER_BUDGET:
        return "yes"
    if name in NEW_K2_ONLY:
        return "yes" if K == 2 else "no (K = 2 only)"
    return "no"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--particles", default="2,20")
    p.add_argument("--estimators", default=",".join(NEW_ESTIMATORS))
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "gmm_new_estimators.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load_before = load_average()
    started = time.perf_counter()
    rows = []
    for name in args.estimators.split(","):
        for K in (int(k) for k in args.particles.split(",")):
            ms = step_ms(name, K, args.seconds)
            rows.append({"estimator": name, "K": K, "ms/step (CPU)": ms,
                         "projected 100,000 steps (min)": ms * ITERATIONS / 60_000.0,
                         "in the paper-budget suite": in_suite(name, K)})
            print(f"{name} K={K}: {ms:.1f} ms/step", file=sys.stderr)
    text = (header(command_line(__file__, argv), load_before=load_before) + "\n"
            + f"GMM cell of the paper's budget: R = 10 seeds stacked, batch 100, one torch thread; CPU time per step "
              f"after 2 warm-up steps, at least 3 steps and {args.seconds:g} s per row.  Whole run: "
              f"{time.perf_counter() - started:.0f} s.\n\n"
            + markdown(rows, list(rows[0]), floatfmt=".1f") + "\n")
    write_record(text, args.out)


if __name__ == "__main__":
    main()
