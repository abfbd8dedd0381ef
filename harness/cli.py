"""Command line for ``run_all.py``: build a suite's cells, validate them, run what is not done,
export the tidy table and write the report."""
from __future__ import annotations

import argparse
import ast
import datetime
import os
import re
import sys
import time
from typing import List, Optional, Tuple

import torch

import estimators
from models.registry import Registry, UnknownNameError

from .runner import Cell, build, machine_description, resolve_device, train_cell
from .store import Store, StoreError
from .studies import SUITES, TASKS

SUITE_REGISTRY = Registry("suite")
for _name in SUITES:
    SUITE_REGISTRY.register(_name)(lambda _n=_name: SUITES[_n])

#: rough relative cost per particle, used only to start the longest cells first
COST = {"relax": 6.0, "concrete": 2.5, "ws": 2.5, "vimco": 1.5}


class UsageError(ValueError):
    """Bad command-line input; reported as one line, exit status 2."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_all.py",
        description="Run an estibench suite: train every (estimator, K) cell with its seeds stacked, "
                    "store results in OUT/results.sqlite, export OUT/metrics.csv and write OUT/report.md.  "
                    "`run_all.py report --out DIR` rebuilds the report from a store alone.")
    p.add_argument("--suite", default="default",
                   help=f"suite to run: {', '.join(sorted(SUITES))} (default: default, a few minutes on a CPU)")
    p.add_argument("--estimators", help="comma-separated estimator names, each optionally with options in "
                                        "brackets, e.g. ww,concrete[final_temperature=1.0],dww[delta=0.1] "
                                        f"(default: the suite's); known: {', '.join(estimators.names())}")
    p.add_argument("--model-options", help="model options NAME=VALUE,..., e.g. init=uniform,prior_scale=1.0 "
                                           "or guide_hidden=(16,) (default: the model's defaults)")
    p.add_argument("--particles", help="comma-separated particle counts K, e.g. 2,20 (default: the suite's)")
    p.add_argument("--seeds", type=int, help="number of seeds N; seeds 0..N-1 train as one vectorised program")
    p.add_argument("--iterations", type=int, help="training iterations per cell (default: the suite's)")
    p.add_argument("--eval-every", type=int, help="iterations between evaluations (default: the suite's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)")
    p.add_argument("--out", help="output folder for the store, metrics.csv, report.md and figures "
                                 "(default: results/SUITE)")
    p.add_argument("--jobs", type=int, default=1, help="cells run in parallel through joblib (default: 1)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per worker (default: 1; the GMM's tensors are too small to share)")
    p.add_argument("--no-report", action="store_true", help="skip writing report.md and figures")
    return p


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(text: str) -> dict:
    """``"a=1,b=x"`` → ``{"a": 1, "b": "x"}``."""
    out = {}
    items = re.split(r",(?![^\(\[]*[\)\]])", text)  # commas outside brackets
    for item in filter(None, (t.strip() for t in items)):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"cannot read option {item!r}; write NAME=VALUE")
        out[key.strip()] = parse_value(value.strip())
    return out


def parse_estimators(text: str) -> List[Tuple[str, dict]]:
    """``"ww,concrete[final_temperature=1.0]"`` → [("ww", {}), ("concrete", {"final_temperature": 1.0})]."""
    specs = re.findall(r"\s*([^,\[\]]+?)\s*(?:\[([^\]]*)\])?\s*(?:,|$)", text)
    if not specs or "".join(n for n, _ in specs).strip() == "":
        raise UsageError(f"cannot read --estimators {text!r}")
    return [(name, parse_options(opts)) for name, opts in specs if name]


def split(text: Optional[str], cast=str) -> Optional[List]:
    if text is None:
        return None
    try:
        return [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"cannot read {text!r} as a comma-separated list of {cast.__name__}") from None


def make_cells(args) -> List[Cell]:
    try:
        suite = SUITE_REGISTRY.get(args.suite)
    except UnknownNameError as err:
        raise UsageError(str(err)) from None
    specs = parse_estimators(args.estimators) if args.estimators else [(n, {}) for n in suite["estimators"]]
    model_options = parse_options(args.model_options) if args.model_options else {}
    particles = split(args.particles, int) or list(suite["particles"])
    seeds = suite["seeds"] if args.seeds is None else args.seeds
    iterations = suite["iterations"] if args.iterations is None else args.iterations
    eval_every = suite["eval_every"] if args.eval_every is None else args.eval_every
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    if iterations < 1:
        raise UsageError(f"--iterations must be positive, got {iterations}")
    if eval_every < 1:
        raise UsageError(f"--eval-every must be positive, got {eval_every}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    for k in particles:
        if k < 1:
            raise UsageError(f"--particles must be at least 1, got {k}")
    try:
        resolve_device(args.device)
    except ValueError as err:
        raise UsageError(str(err)) from None
    cells = [Cell(study=suite["study"], model=suite["model"], estimator=name, particles=k,
                  seeds=tuple(range(seeds)), iterations=iterations, model_options=model_options,
                  estimator_options=options, batch_size=suite["batch_size"], lr=suite["lr"],
                  eval_every=min(eval_every, iterations), device=args.device)
             for name, options in specs for k in particles]
    # refuse unknown names and incompatible pairs before any work starts
    for cell in cells:
        try:
            probe = Cell(**{**cell.__dict__, "seeds": (0,)})
            build(probe, torch.device("cpu"))
        except (UnknownNameError, ValueError) as err:
            raise UsageError(str(err)) from None
        except TypeError as err:  # an option the model or estimator does not take
            raise UsageError(f"{cell.label()} / model options {cell.model_options}: {err}") from None
    return cells


def run_one(cell: Cell, threads: Optional[int], progress: bool):
    if threads:
        torch.set_num_threads(threads)
    return train_cell(cell, TASKS[cell.study], progress=progress)


def report_main(argv) -> int:
    """``run_all.py report --out DIR [--suite NAME] [--note TEXT]``: rebuild the report from the store alone."""
    p = argparse.ArgumentParser(prog="run_all.py report", description=report_main.__doc__)
    p.add_argument("--out", required=True, help="folder holding results.sqlite; the report is written there")
    p.add_argument("--suite", default=None, help="suite whose description heads the report")
    p.add_argument("--note", default="", help="text added under the description (e.g. how the run went)")
    args = p.parse_args(argv)
    try:
        store = Store(args.out, create=False)
        if args.suite is not None and args.suite not in SUITES:
            SUITE_REGISTRY.factory(args.suite)
    except (StoreError, UnknownNameError) as err:
        print(f"run_all.py report: error: {err}", file=sys.stderr)
        return 2
    suite = args.suite or "custom"
    description = SUITES[suite]["description"] if suite in SUITES else ""
    import reports
    path = reports.write_report(store.table(), store.cells(), args.out, suite=suite,
                                description="\n\n".join(t for t in (description, args.note) if t))
    store.export_csv()
    store.close()
    print(f"report: {path}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    args = parser().parse_args(argv)
    try:
        cells = make_cells(args)
        out = args.out or os.path.join("results", args.suite)
        store = Store(out)
    except (UsageError, StoreError) as err:
        print(f"run_all.py: error: {err}", file=sys.stderr)
        return 2
    done = store.done_keys()
    todo = [c for c in cells if c.key() not in done]
    # K groups in the order given (so an interrupted sweep leaves whole columns), longest cells first
    order = {k: i for i, k in enumerate(dict.fromkeys(c.particles for c in cells))}
    todo.sort(key=lambda c: (order[c.particles], -COST.get(c.estimator, 1.0) * (c.particles + 2)))
    print(f"{len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run -> {out}")
    from tqdm.auto import tqdm

    started = time.time()
    if todo:
        if args.jobs == 1:
            results = (run_one(c, args.threads, True) for c in todo)
        else:
            from joblib import Parallel, delayed
            results = Parallel(n_jobs=args.jobs, return_as="generator_unordered")(
                delayed(run_one)(c, args.threads, False) for c in todo)
        machine = machine_description()
        for result in tqdm(results, total=len(todo), desc="cells"):
            store.write_cell(result.cell, result.rows, result.wall_s, result.sec_per_iter, result.device,
                             machine, datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    elapsed = time.time() - started
    csv = store.export_csv()
    print(f"ran {len(todo)} cells in {elapsed:.1f} s; tidy table: {csv}")
    if not args.no_report:
        import reports
        path = reports.write_report(store.table(), store.cells(), out, suite=args.suite,
                                    description=SUITES[args.suite]["description"])
        print(f"report: {path}")
    store.close()
    return 0
