"""Wall clock of a sweep with ``--jobs 2`` against ``--jobs 1`` (same cells, fresh stores), one run.

    python benchmarks/sweep_speedup.py [--estimators ww,vimco,reinforce,dww] [--particles 2,20]
                                       [--seeds 3] [--iterations 2000] [--rounds 2] [--out FILE]

Each measurement is the command line a user runs, ``python run_all.py --estimators … --jobs N
--out TMP --no-report`` (one torch thread per worker, loky processes), timed from start to exit
in a fresh temporary folder, so it includes Python start-up, worker start-up, every evaluation
and the store writes.  The child processes' CPU seconds (user + system, from ``wait4``) are
recorded beside the wall clock: CPU ÷ wall is the number of cores the sweep actually got (other
work on the machine shows as a ratio below 2 for ``--jobs 2``).  With ``--rounds N`` the order
is jobs 1, jobs 2, jobs 2, jobs 1, … (ABBA) and the medians are compared.
Writes the Markdown table next to this script (``sweep_speedup.md``) unless ``--out``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import command_line, write_record  # noqa: E402
from benchmarks.common import header, load_average, markdown  # noqa: E402


def run_sweep_cli(jobs: int, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="sweep-speed-") as out:
        cmd = [sys.executable, os.path.join(ROOT, "run_all.py"), "--estimators", args.estimators,
               "--particles", args.particles, "--seeds", str(args.seeds), "--iterations", str(args.iterations),
               "--eval-every", str(args.iterations), "--jobs", str(jobs), "--threads", "1", "--device", "cpu",
               "--out", out, "--no-report"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, _ = proc.communicate()
        wall = time.perf_counter() - start
        # getrusage(RUSAGE_CHILDREN) covers the driver and, once reaped, its worker processes
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
        summary = [line for line in output.splitlines() if line.startswith("ran ")]
        return {"wall": wall, "summary": summary[-1] if summary else ""}


def cpu_seconds_children() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimators", default="ww,vimco,reinforce,dww")
    p.add_argument("--particles", default="2,20")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2, help="ABBA rounds (default: 2: jobs 1, 2, 2, 1)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweep_speedup.md"),
                   help="Markdown output (default: next to this script); '-' for stdout only")
    args = p.parse_args(argv)
    cells = len(args.estimators.split(",")) * len(args.particles.split(","))
    order = []
    for r in range(args.rounds):
        order += [1, 2] if r % 2 == 0 else [2, 1]
    load_before = load_average()
    results = {1: [], 2: []}
    rows = []
    for jobs in order:
        cpu0 = cpu_seconds_children()
        load = load_average()
        res = run_sweep_cli(jobs, args)
        cpu = cpu_seconds_children() - cpu0
        results[jobs].append(res["wall"])
        rows.append([jobs, res["wall"], cpu, cpu / res["wall"], load.split(" (")[0], res["summary"]])
        print(rows[-1], flush=True)
    one, two = statistics.median(results[1]), statistics.median(results[2])
    table = markdown(rows, ["--jobs", "wall s", "CPU s (all processes)", "cores used (CPU ÷ wall)",
                            "load average at start (1/5/15 min)", "run_all.py's summary"], floatfmt=".1f")
    command = command_line(__file__, argv)
    extra = (f"{cells} GMM cells: estimators {args.estimators} × K ∈ {{{args.particles}}}, {args.seeds} seeds "
             f"stacked per cell, {args.iterations} iterations, one evaluation at the end (plus the runner's "
             f"evaluations at iteration 0), `python run_all.py … --jobs N --threads 1 --no-report` into a "
             f"fresh folder.\n\n**Speed-up of --jobs 2 over --jobs 1: {one / two:.2f}×** "
             f"(median wall {one:.1f} s against {two:.1f} s; target ≥ 1.7×).")
    text = header(command, extra, load_before) + "\n" + table
    write_record(text, args.out)


if __name__ == "__main__":
    main()
