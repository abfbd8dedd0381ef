"""Peak memory of the suites' heaviest cells on their default settings (issue 13, target 5: ≤ 4 GB per cell).

    python benchmarks/suite_memory.py [--suites gmm,sbn,rbm,vae,air] [--out FILE]

For each suite, the cells ``run_all.py --suite NAME`` would run (``estibench.cli.run.make_cells``, the default preset),
narrowed to the costliest estimator and largest K of each part (the memory of a cell is set by its model, K, and
evaluation settings; the estimator's own networks add little), are trained for 2 iterations with their default
evaluation settings (the final evaluation, with the many-particle test bounds and the exact quantities of the
enumerable models, is where memory peaks) through ``harness.runner.train_cell``, one after another in this
process; the runner records ``peak_memory_mb`` per cell (peak RSS since the cell started, Linux).  Writes
``suite_memory.md`` next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.common import command_line, write_record  # noqa: E402
from benchmarks.common import header, load_average, markdown  # noqa: E402
from estibench import estimators  # noqa: E402
from estibench.cli.run import make_cells, parser  # noqa: E402
from estibench.harness.runner import train_cell  # noqa: E402
from estibench.studies import TASKS  # noqa: E402

LIMIT_MB = 4000 * 1e6 / 2 ** 20  # 4 GB in MiB


def heaviest(cells, only=None):
    """Per (study, model, model options): the cell of largest K, then largest cost hint (among ``only``'s
    estimators if given)."""
    best = {}
    for cell in cells:
        if only and cell.estimator not in only:
            continue
        ident = (cell.study, cell.model, str(sorted(cell.model_options.items())))
        score = (cell.particles, estimators.get(cell.estimator).cost_hint)
        if ident not in best or score > best[ident][0]:
            best[ident] = (score, cell)
    return [cell for _, cell in best.values()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suites", default="gmm,sbn,rbm,vae,air")
    p.add_argument("--estimators", help="comma-separated: choose each part's cell among these estimators only")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "suite_memory.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load_before = load_average()
    started = time.perf_counter()
    rows = []
    for suite in args.suites.split(","):
        cells = make_cells(parser().parse_args(["--suite", suite, "--device", "cpu"]))
        for cell in heaviest(cells, args.estimators.split(",") if args.estimators else None):
            cell = dataclasses.replace(cell, iterations=2, eval_every=2)
            t0 = time.perf_counter()
            result = train_cell(cell, TASKS[cell.study])
            peak = max(v for _, _, m, v in result.rows if m == "peak_memory_mb")
            rows.append([suite, cell.model_label(), cell.label(), cell.particles, len(cell.seeds), peak,
                         "yes" if peak <= LIMIT_MB else "no", time.perf_counter() - t0])
            print(rows[-1], flush=True)
    columns = ["suite", "model", "estimator", "K", "seeds", "peak MiB", "≤ 4 GB", "seconds"]
    command = command_line(__file__, argv)
    extra = (f"Each cell trained for 2 iterations with its suite's default evaluation settings, one after another "
             f"in one process (the runner resets the peak at each cell's start).  4 GB = {LIMIT_MB:.0f} MiB.  "
             f"Whole run: {time.perf_counter() - started:.0f} s.")
    text = header(command, extra, load_before) + "\n" + markdown(rows, columns)
    write_record(text, args.out)


if __name__ == "__main__":
    main()
