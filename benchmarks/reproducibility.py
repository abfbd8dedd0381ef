"""Which settings give bit-identical results: the same sweep run under several settings, each store's
tidy table compared value by value with the first one's (same cell keys).

    python benchmarks/reproducibility.py [--out DIR] [--write benchmarks/reproducibility.md]

Runs (8 small GMM cells each, ``run_all.py`` as a user would): the reference (``--jobs 1 --threads 1``),
the same command again, ``--jobs 2``, and ``--threads 2``.  For each it prints how many values differ
from the reference and the largest relative difference, over every metric except the timings
(:data:`TIMINGS`: time and memory, which differ from run to run by nature).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SWEEP = ["--estimators", "ws,ww,vimco,reinforce", "--particles", "2,5", "--seeds", "2", "--iterations", "400",
         "--eval-every", "100", "--device", "cpu", "--no-report"]
#: metrics that measure time, left out of the comparison
TIMINGS = ("sec_per_iter", "peak_memory_mb")  # harness.definitions.MEASUREMENTS (this script also runs old checkouts)
RUNS = {"reference (--jobs 1 --threads 1)": [], "same command again": [], "--jobs 2": ["--jobs", "2"],
        "--threads 2": ["--threads", "2"]}


def table(folder):
    from estibench.harness.store import Store
    store = Store(folder, readonly=True)
    out = store.table()
    out = out[~out.metric.isin(TIMINGS)].sort_values(["key", "seed", "iteration", "metric"]).reset_index(drop=True)
    store.close()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="folder for the stores (default: a temporary folder)")
    p.add_argument("--write", help="also write the result table as Markdown to this file")
    args = p.parse_args(argv)
    base = args.out or tempfile.mkdtemp(prefix="estibench-repro-")
    rows, reference = [], None
    for i, (name, extra) in enumerate(RUNS.items()):
        folder = os.path.join(base, f"run{i}")
        started = time.time()
        subprocess.run([sys.executable, "run_all.py", *SWEEP, *extra, "--out", folder], cwd=ROOT, check=True,
                       capture_output=True)
        t = table(folder)
        if reference is None:
            reference = t
        same_cells = list(t.key) == list(reference.key) and list(t.metric) == list(reference.metric)
        a, b = reference.value.to_numpy(), t.value.to_numpy()
        differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        rel = np.abs(a - b)[differ] / np.maximum(np.abs(a[differ]), 1e-30) if differ.any() else np.array([0.0])
        rows.append((name, len(t), bool(same_cells), int(differ.sum()), float(np.nanmax(rel)), time.time() - started))
    lines = [f"| run | values (timings {', '.join(TIMINGS)} left out) | same cell keys | values that differ | largest relative difference | wall s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {v:,} | {'yes' if k else 'NO'} | {d:,} | {r:.2g} | {w:.1f} |" for n, v, k, d, r, w in rows]
    text = "\n".join(lines)
    print(text)
    if args.write:
        import platform
        import torch
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        with open(args.write, "w") as fh:
            fh.write(f"# Bit-reproducibility\n\n`python benchmarks/reproducibility.py --write {args.write}` on commit "
                     f"{commit}, {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                     f"{time.strftime('%Y-%m-%d')}; 8 GMM cells ({' '.join(SWEEP)}).\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
