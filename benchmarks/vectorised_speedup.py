"""Per-replicate seconds per training iteration: the vectorised runner (R replicates stacked)
against a plain single-run loop (R = 1), same cell, same machine, one run.

    python benchmarks/vectorised_speedup.py [--replicates 10] [--iterations 300] [--out FILE]

Each measurement runs the runner's training step (fresh batch from the true model, estimator
gradients, Adam step) for ``--iterations`` steps after 20 warm-up steps, one torch thread.
The plain loop trains one seed; the vectorised one trains R seeds at once; the speed-up is
(single seconds per iteration) / (vectorised seconds per iteration / R).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from harness.runner import Cell, build, make_optimiser  # noqa: E402


def seconds_per_iteration(estimator: str, particles: int, replicates: int, iterations: int) -> float:
    cell = Cell(study="gmm", model="gmm", estimator=estimator, particles=particles,
                seeds=tuple(range(replicates)), iterations=iterations, device="cpu")
    torch.manual_seed(0)
    model, est = build(cell, torch.device("cpu"))
    true = model.true_model()
    params = list(model.parameters()) + list(est.parameters())
    opt = make_optimiser(params, cell.lr)

    def step():
        x = true.sample(cell.batch_size)[1]
        grads, own, _ = est.gradients(model, x, particles)
        for p, g in zip(params, grads + own):
            p.grad = g
        opt.step()

    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - start) / iterations


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicates", type=int, default=10)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--estimators", default="ws,ww,dww,vimco,reinforce,concrete,relax")
    p.add_argument("--particles", default="2,20")
    p.add_argument("--out", help="write the table as Markdown here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.estimators.split(","):
        for K in (int(k) for k in args.particles.split(",")):
            single = seconds_per_iteration(name, K, 1, args.iterations)
            stacked = seconds_per_iteration(name, K, args.replicates, args.iterations)
            rows.append({"estimator": name, "K": K, "single run ms/it": 1e3 * single,
                         f"R={args.replicates} ms/it (whole cell)": 1e3 * stacked,
                         "per replicate ms/it": 1e3 * stacked / args.replicates,
                         "speed-up per replicate": single / (stacked / args.replicates)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    text = (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread, "
            f"commit {commit}; "
            f"{args.iterations} iterations after 20 warm-up, GMM cell (batch 100), R = {args.replicates}.\n\n"
            + table.to_markdown(index=False, floatfmt=".2f") + "\n")
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
