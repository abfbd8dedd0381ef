"""The record of a full paper-budget GMM run (issue 13, target 1): its wall clock, every cell's time, and whether its
numbers are the committed study's, read from the run's own store.

    python run_all.py --suite gmm --estimators ws,ww,dww,reinforce,vimco,concrete,relax --jobs 2 --out results/gmm_full
    python benchmarks/gmm_full_run.py [--store results/gmm_full] [--committed published/gmm/results.sqlite.gz]
                                      [--out FILE]

Everything here is measured by the run itself and stored by it: the ``runs`` row (command, commit, start, end, wall
clock), each cell's ``wall_s`` (its worker's time for the whole cell: start-up of the cell, every training step,
101 evaluations and the final evaluation) and ``finished_at``, and the ``peak_memory_mb`` metric.  A cell's start is
``finished_at − wall_s``, so the table shows when each worker ran what.  Two schedules are computed from the
measured cell times, not run: list scheduling onto 2 workers in the order the run started its cells (which should
come out near the run's own wall clock: the check of this model), and longest-first over all cells (what another
order alone would give).  Every metric row of every cell (timing rows ``sec_per_iter``, ``peak_memory_mb`` aside) is
compared with the committed store's row of the same cell key and metric: "identical" means equal floats.
Writes ``gmm_full_run.md`` next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import gzip
import heapq
import os
import shutil
import sqlite3
import sys
import tempfile
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import command_line, header, load_average, markdown, write_record  # noqa: E402

TIMING = ("sec_per_iter", "peak_memory_mb")


def list_schedule(times, workers: int = 2) -> float:
    """Makespan of starting ``times`` in the given order, each on the first worker to come free."""
    loads = [0.0] * workers
    for t in times:
        heapq.heapreplace(loads, loads[0] + t)
    return max(loads)


def open_store(path: str, keep: list) -> sqlite3.Connection:
    """A read-only connection to a store (``DIR``, ``DIR/results.sqlite`` or a ``.sqlite.gz``, unpacked to a
    temporary file kept alive in ``keep``)."""
    if os.path.isdir(path):
        path = os.path.join(path, "results.sqlite")
    if path.endswith(".gz"):
        tmp = tempfile.NamedTemporaryFile(suffix=".sqlite")
        with gzip.open(path) as src:
            shutil.copyfileobj(src, tmp)
        tmp.flush()
        keep.append(tmp)
        path = tmp.name
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=os.path.join(ROOT, "results", "gmm_full"))
    p.add_argument("--committed", default=os.path.join(ROOT, "published", "gmm", "results.sqlite.gz"))
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "gmm_full_run.md"))
    args = p.parse_args(argv)
    keep: list = []
    try:
        run_db, old_db = open_store(args.store, keep), open_store(args.committed, keep)
    except (FileNotFoundError, sqlite3.Error) as err:
        print(f"gmm_full_run: error: cannot open store {err}", file=sys.stderr)
        return 2
    load_before = load_average()
    runs = run_db.execute("SELECT id, started_at, finished_at, command, git_commit, machine, jobs, cells_total, "
                          "cells_run, wall_s, status FROM runs ORDER BY id").fetchall()
    cells = run_db.execute("SELECT key, estimator, particles, wall_s, sec_per_iter, finished_at, status, iterations "
                           "FROM cells").fetchall()
    if not runs or not cells:
        print(f"gmm_full_run: error: {args.store} holds no run or no cell", file=sys.stderr)
        return 2
    peak = dict(run_db.execute("SELECT key, MAX(value) FROM metrics WHERE metric = 'peak_memory_mb' GROUP BY key"))
    old_wall = dict(old_db.execute("SELECT key, wall_s FROM cells WHERE status = 'done'"))
    first_start = min(when(f).timestamp() - w for _, _, _, w, _, f, _, _ in cells)
    rows, starts, total_rows, total_same, worst = [], [], 0, 0, 0.0
    for key, est, K, wall, spi, finished, status, iters in cells:
        start = when(finished).timestamp() - wall
        starts.append((start, wall))
        new = {(s, i, m): v for s, i, m, v in run_db.execute(
            "SELECT seed, iteration, metric, value FROM metrics WHERE key = ?", (key,)) if m not in TIMING}
        old = {(s, i, m): v for s, i, m, v in old_db.execute(
            "SELECT seed, iteration, metric, value FROM metrics WHERE key = ?", (key,)) if m not in TIMING}
        shared = set(new) & set(old)
        same = sum(new[r] == old[r] for r in shared)  # None (a stored NaN) equals None
        diff = max((abs(new[r] - old[r]) for r in shared if None not in (new[r], old[r])), default=0.0)
        total_rows += len(shared)
        total_same += same
        worst = max(worst, diff)
        rest = 100 * (wall - iters * spi) / wall if spi else float("nan")  # evaluations, set-up, store
        rows.append([est, K, status, (start - first_start) / 60, wall / 60, 1e3 * spi if spi else float("nan"), rest,
                     peak.get(key, float("nan")), old_wall.get(key, float("nan")) / 60,
                     f"{same}/{len(shared)}" + ("" if len(new) == len(shared) else f" ({len(new) - len(shared)} new)")])
    rows.sort(key=lambda r: r[3])
    order = [w for _, w in sorted(starts)]
    worker_s = sum(order)
    as_run = list_schedule(order)
    longest_first = list_schedule(sorted(order, reverse=True))
    run = runs[-1]
    measured = [r for r in runs if r[9] is not None]
    wall = sum(r[9] for r in measured)
    lines = [f"Run{'s' if len(runs) > 1 else ''} recorded in the store ({os.path.relpath(args.store, ROOT)}):"]
    for r in runs:
        lines.append(f"* run {r[0]}: `{r[3]}` at commit {r[4][:12]}, jobs {r[6]}, {r[8]} of {r[7]} cells run, "
                     f"started {r[1]}, finished {r[2]}, status {r[10]}, wall clock "
                     + (f"**{r[9] / 60:.1f} min**" if r[9] is not None else "not recorded"))
    lines.append(f"* machine: {run[5]}")
    lines.append("")
    lines.append(f"Cells: {len(cells)} ({sum(c[6] == 'done' for c in cells)} done); worker time {worker_s / 60:.1f} "
                 f"worker-minutes (sum of the cells' wall_s); run wall clock {wall / 60:.1f} min, i.e. "
                 f"{worker_s / max(wall, 1e-9):.2f} cells running at a time on average.  Schedules of the measured "
                 f"cell times onto 2 workers: in the run's own order {as_run / 60:.1f} min (the model of the run); "
                 f"longest-first over all cells {longest_first / 60:.1f} min.")
    lines.append("")
    lines.append(f"Same numbers as the committed study (`{os.path.relpath(args.committed, ROOT)}`): "
                 f"{total_same} of {total_rows} metric rows identical (timing rows aside); largest |difference| "
                 f"{worst:.3g}.")
    columns = ["estimator", "K", "status", "start (min)", "cell wall (min)", "ms/iteration", "not training (%)",
               "peak MiB",
               "committed cell wall (min)", "rows identical to committed"]
    extra = "\n".join(lines)
    text = header(command_line(__file__, argv), extra, load_before) + "\n" + markdown(rows, columns) + (
        "\nms/iteration: the runner's `sec_per_iter` (training steps only); not training: the share of the cell's wall "
        "clock outside the training steps (101 evaluations with their gradient draws, the final evaluation, set-up); "
        "start: minutes after the run's first cell started; committed: the same cell (key) in the `--committed` store.\n")
    write_record(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
