"""The GMM study at the paper's budget (issue 13, target 1): per-cell step times before and after a change,
measured side by side in one run, and the wall clock they imply for ``run_all.py --suite gmm --jobs 2``.

    python benchmarks/gmm_budget.py [--before REV] [--rounds 3] [--block 20] [--out FILE]

The paper's budget (``studies/gmm/__init__.py``, suite ``gmm``): 7 estimators × K ∈ {2, 5, 10, 20}, 10 seeds stacked per
cell (R = 10), 100,000 iterations, an evaluation every 1,000.  Two worker processes
(``benchmarks/_step_worker.py``), one on this checkout and one on a git worktree of ``--before`` (default: the
commit before the speed work, 0c25e87), each one torch thread, time the same cell's training step as
their own ``train_cell`` runs it (the study's task drawing the batches; the old loop body rebuilt line for line
by the worker) in alternating blocks, ``--rounds``
rounds per cell; ms/step = median block ÷ block size, speed-up = median over rounds of before ÷ after.  One
evaluation of the study's task is timed once per cell on this checkout.

Projection (not a run): a cell's time = 100,000 × its step + 101 evaluations; the suite's wall clock on two
workers = those times started in the sweep's own order (``harness.sweep.dispatch_order``: K groups in turn, the
costliest cells of a group first), each on the first of two cores to come free.
Start-up, the final evaluation and the report are left out, so the real run takes somewhat longer.  The
committed study (``published/gmm``) records the real per-cell times of its run beside the projection.
Writes ``gmm_budget.md`` next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import gzip
import heapq
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import command_line, write_record  # noqa: E402
from benchmarks.common import header, load_average, markdown  # noqa: E402

ESTIMATORS = ("ws", "ww", "dww", "reinforce", "vimco", "concrete", "relax")
PARTICLES = (2, 5, 10, 20)
ITERATIONS, EVALUATIONS, R = 100_000, 101, 10
BEFORE = "0c25e87"


class Worker:
    def __init__(self, checkout: str):
        env = {**os.environ, "PYTHONPATH": checkout, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "benchmarks", "_step_worker.py")],
                                     cwd=checkout, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"worker ended while answering {line!r}")
        return answer.strip()

    def close(self):
        try:
            self.ask("quit")
        except (RuntimeError, BrokenPipeError):
            pass
        self.proc.wait(timeout=30)


def schedule(cells, workers: int = 2) -> float:
    """Wall clock of starting ``cells`` [(estimator, K, seconds)] in the sweep's order, each on the first of
    ``workers`` to come free."""
    from estibench.harness.runner import Cell
    from estibench.harness.sweep import dispatch_order
    seconds = {(e, k): t for e, k, t in cells}
    order = dispatch_order([Cell(study="gmm", model="gmm", estimator=e, particles=k, seeds=(0,), iterations=ITERATIONS)
                            for e, k, _ in cells])
    loads = [0.0] * workers
    for t in (seconds[c.estimator, c.particles] for c in order):
        heapq.heapreplace(loads, loads[0] + t)
    return max(loads)


def committed_cells():
    """{(estimator, K): (wall s, sec_per_iter)} of the committed paper-budget study, if present."""
    path = os.path.join(ROOT, "published", "gmm", "results.sqlite.gz")
    if not os.path.exists(path):
        return {}
    with tempfile.NamedTemporaryFile(suffix=".sqlite") as tmp:
        with gzip.open(path) as src:
            shutil.copyfileobj(src, tmp)
        tmp.flush()
        conn = sqlite3.connect(tmp.name)
        rows = conn.execute("SELECT estimator, particles, wall_s, sec_per_iter FROM cells WHERE status = 'done' "
                            "AND iterations = 100000").fetchall()
        conn.close()
    return {(e, k): (w, s) for e, k, w, s in rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default=BEFORE, help=f"git revision to compare with (default: {BEFORE})")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--block", type=int, default=20, help="steps per timed block (default: 20)")
    p.add_argument("--estimators", default=",".join(ESTIMATORS))
    p.add_argument("--particles", default=",".join(map(str, PARTICLES)))
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "gmm_budget.md"))
    args = p.parse_args(argv)
    names = args.estimators.split(",")
    particles = [int(k) for k in args.particles.split(",")]
    old_tree = tempfile.mkdtemp(prefix="estibench-before-")
    made = subprocess.run(["git", "worktree", "add", "--detach", old_tree, args.before], cwd=ROOT,
                          capture_output=True, text=True)
    if made.returncode != 0:
        print(f"gmm_budget: error: cannot check out {args.before!r}: {made.stderr.strip().splitlines()[-1]}",
              file=sys.stderr)
        return 2
    load_before = load_average()
    started = time.perf_counter()
    workers = {"before": Worker(old_tree), "after": Worker(ROOT)}
    for tree, w in ((old_tree, workers["before"]), (ROOT, workers["after"])):
        where = w.ask("where")  # each worker must run its own checkout's code
        if not os.path.realpath(where).startswith(os.path.realpath(tree) + os.sep):
            raise RuntimeError(f"a worker for {tree} imported {where}")
    committed = committed_cells()
    rows, projected = [], []
    try:
        for name in names:
            for K in particles:
                for w in workers.values():
                    assert w.ask(f"setup {name} {K} {R}") == "ok"
                blocks = {"before": [], "after": []}
                for _ in range(args.rounds):
                    for label, w in workers.items():
                        blocks[label].append(float(w.ask(f"run {args.block}")) / args.block)
                evaluation = float(workers["after"].ask("eval"))
                before, after = (statistics.median(blocks[k]) for k in ("before", "after"))
                ratio = statistics.median(b / a for b, a in zip(blocks["before"], blocks["after"]))
                cell_s = ITERATIONS * after + EVALUATIONS * evaluation
                projected.append((name, K, cell_s))
                wall, spi = committed.get((name, K), (float("nan"), float("nan")))
                rows.append([name, K, 1e3 * before, 1e3 * after, ratio, 1e3 * evaluation, cell_s, 1e3 * spi, wall])
                print(rows[-1], flush=True)
    finally:
        for w in workers.values():
            w.close()
        subprocess.run(["git", "worktree", "remove", "--force", old_tree], cwd=ROOT, capture_output=True)
    total = schedule(projected)
    committed_total = sum(r[-1] for r in rows if r[-1] == r[-1])
    columns = ["estimator", "K", f"before ({args.before}) ms/step", "after ms/step", "speed-up", "evaluation ms",
               "projected cell s", "committed study ms/step", "committed study cell s"]
    command = command_line(__file__, argv)
    extra = (f"Paper budget: {len(names)} estimators × K ∈ {{{', '.join(map(str, particles))}}}, R = {R} seeds per "
             f"cell, {ITERATIONS:,} iterations, {EVALUATIONS} evaluations.  Step times: {args.rounds} rounds of "
             f"{args.block}-step blocks per cell, before and after alternating, one torch thread each.  Whole run: "
             f"{time.perf_counter() - started:.0f} s.\n\n"
             f"**Projected wall clock of `run_all.py --suite gmm --jobs 2` (the sweep's order on 2 cores, start-up and "
             f"final evaluations left out): {total / 60:.0f} min** (target ≤ 30 min; {sum(t for _, _, t in projected) / 60:.0f} "
             f"worker-minutes).  The committed study's cells took {committed_total / 60:.0f} worker-minutes in "
             f"all (their recorded `wall_s`: `benchmarks/gmm_full_run.md` says when and how they ran).")
    text = header(command, extra, load_before) + "\n" + markdown(rows, columns)
    write_record(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
