"""Command line for ``run_all.py``: build a suite's cells, validate them, run what is not done,
export the tidy table and write the report."""
from __future__ import annotations

import argparse
import ast
import itertools
import os
import re
import sys
import time
from typing import List, Optional, Tuple

import torch

from estibench import estimators
from estibench.models.registry import Registry, UnknownNameError

from .runner import CONFIG_VERSION, OPTIMISER_KEYS, Cell, build, resolve_device
from .store import Store, StoreError
from estibench import studies as study_registry
from .sweep import BACKENDS, check_backend, plan, run_sweep

#: every study's suites (``estibench.studies``): suite name → grid
SUITES = study_registry.suites()
SUITE_REGISTRY = Registry("suite")
for _name in SUITES:
    SUITE_REGISTRY.register(_name)(lambda _n=_name: SUITES[_n])
#: flags that pick values of a suite's model grid, declared by the studies: flag → (model option, help)
GRID_FLAGS = {}
for _study in study_registry.names():
    GRID_FLAGS.update(study_registry.get(_study).grid_flags)


def prog() -> str:
    """The program's name as the user typed it: ``run_all.py`` from a checkout, else ``estibench``."""
    return "run_all.py" if os.path.basename(sys.argv[0] or "") == "run_all.py" else "estibench"


class UsageError(ValueError):
    """Bad command-line input; reported as one line, exit status 2."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog(),
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
    p.add_argument("--lr", type=float, help="learning rate (default: the suite's / preset's)")
    p.add_argument("--batch-size", type=int, help="data points per training step (default: the suite's / preset's)")
    p.add_argument("--model", help="model name or package.module:Class, overriding the suite's (it must declare "
                                   "the suite's study in its `studies`)")
    for flag, (option, text) in GRID_FLAGS.items():
        p.add_argument(flag, dest=option, help=text)
    p.add_argument("--preset", help="optimiser/budget preset of the suite, e.g. rebar, dvaepp, disarm, paper")
    p.add_argument("--force", action="store_true", help="recompute cells already in the store")
    p.add_argument("--dry-run", action="store_true", help="list the cells and what is already done; run nothing")
    p.add_argument("--backend", default="loky", choices=BACKENDS,
                   help="joblib backend for --jobs: loky (this machine), dask (--scheduler) or ray (--address)")
    p.add_argument("--scheduler", help="address of a running dask.distributed scheduler (tcp://HOST:PORT)")
    p.add_argument("--address", help="address of a running Ray cluster (or 'auto')")
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


def _csv_flag(value: Optional[str], flag: str, suite: dict, option: str) -> Optional[List]:
    if value is None:
        return None
    if option not in suite.get("model_grid", {}):
        raise UsageError(f"{flag} does not apply to suite {suite['study']!r} (model {suite['model']!r})")
    return split(value)


def _preset(args, suite: dict) -> Tuple[str, dict]:
    presets = suite.get("presets", {})
    name = getattr(args, "preset", None) or suite.get("default_preset")
    if getattr(args, "preset", None) and not presets:
        raise UsageError(f"--preset does not apply to suite {args.suite!r}")
    if name is not None and name not in presets:
        reg = Registry("preset")
        for known in presets:
            reg.register(known)(dict)
        try:
            reg.get(name)
        except UnknownNameError as err:
            raise UsageError(f"{err} (suite {args.suite!r})") from None
    return (name or ""), presets.get(name, {})


def _assign(specs, parts) -> List[List[Tuple[str, dict]]]:
    """Spread the user's --estimators over the suite's parts: each goes to every part that lists
    it (an estimator no part lists goes to the first part); parts that list none get nothing."""
    out = [[] for _ in parts]
    for name, options in specs:
        homes = [i for i, part in enumerate(parts) if name in part["estimators"]] or [0]
        for i in homes:
            out[i].append((name, options))
    return out


def make_cells(args) -> List[Cell]:
    """The suite's cells after the command-line overrides.  A suite may have ``parts`` (e.g. the
    SBN suite: single-sample estimators at K = 1, multi-sample ones at K = 5, and the enumerable
    model for the exact-gradient table); every common flag applies to every part."""
    try:
        suite = SUITE_REGISTRY.get(args.suite)
    except UnknownNameError as err:
        raise UsageError(str(err)) from None
    preset_name, preset_settings = _preset(args, suite)
    settings = {**suite, **preset_settings}
    parts = [{**settings, **part} for part in settings.get("parts", [{}])]
    if getattr(args, "model", None):
        from estibench import models
        try:
            model_class = models.REGISTRY.factory(args.model)
        except UnknownNameError as err:
            raise UsageError(str(err)) from None
        if suite["study"] not in model_class.studies:  # declared by the model (a plugin inherits or states it)
            fits = [n for n in models.names() if suite["study"] in models.REGISTRY.factory(n).studies]
            raise UsageError(f"model {args.model!r} does not fit suite {args.suite!r} (study {suite['study']!r} "
                             f"takes {', '.join(fits)})")
        parts = [{**part, "model": args.model} for part in parts]
    model_options = parse_options(args.model_options) if args.model_options else {}
    user_particles = split(args.particles, int)
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    if args.iterations is not None and args.iterations < 1:
        raise UsageError(f"--iterations must be positive, got {args.iterations}")
    if args.eval_every is not None and args.eval_every < 1:
        raise UsageError(f"--eval-every must be positive, got {args.eval_every}")
    if getattr(args, "lr", None) is not None and not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    for k in user_particles or []:
        if k < 1:
            raise UsageError(f"--particles must be at least 1, got {k}")
    try:
        resolve_device(args.device)
        check_backend(getattr(args, "backend", "loky"))
    except ValueError as err:
        raise UsageError(str(err)) from None
    if getattr(args, "backend", "loky") == "dask" and not getattr(args, "scheduler", None):
        raise UsageError("--backend dask needs --scheduler ADDRESS of a running dask.distributed scheduler")
    flags = {option: _csv_flag(getattr(args, option, None), flag, suite, option)
             for flag, (option, _) in GRID_FLAGS.items()}
    user_specs = parse_estimators(args.estimators) if args.estimators else None
    part_specs = _assign(user_specs, parts) if user_specs else [[(n, {}) for n in part["estimators"]] for part in parts]
    cells = []
    for part, specs in zip(parts, part_specs):
        preset_options = part.get("estimator_options", {})
        specs = [(n, {**preset_options.get(n, {}), **o}) for n, o in specs]
        particles = user_particles or list(part["particles"])
        seeds = part["seeds"] if args.seeds is None else args.seeds
        iterations = part["iterations"] if args.iterations is None else args.iterations
        eval_every = part["eval_every"] if args.eval_every is None else args.eval_every
        lr = part["lr"] if getattr(args, "lr", None) is None else args.lr
        batch_size = part["batch_size"] if getattr(args, "batch_size", None) is None else args.batch_size
        grid = dict(part.get("model_grid", {}))
        for option, chosen in flags.items():
            if chosen:
                grid[option] = tuple(chosen)
        for option in list(grid):
            if option in model_options:  # --model-options wins over the suite's grid
                grid.pop(option)
        variants = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
        cells += [Cell(study=part["study"], model=part["model"], estimator=name, particles=k,
                       seeds=tuple(range(seeds)), iterations=iterations,
                       model_options={**part.get("model_options", {}), **variant, **model_options},
                       estimator_options=options, batch_size=batch_size, lr=lr,
                       eval_every=min(eval_every, iterations), study_options=dict(part.get("study_options", {})),
                       device=args.device, optimiser=dict(part.get("optimiser", {})), preset=preset_name)
                  for variant in variants for name, options in specs for k in particles]
    # refuse unknown names, incompatible pairs and missing data before any work starts
    probes = {}
    for cell in cells:
        try:
            ident = (cell.model, tuple(sorted(cell.model_options.items(), key=str)))
            if ident not in probes:
                from .runner import build_model
                probes[ident] = build_model(cell.model, seeds=(0,), **cell.model_options)
            est = estimators.get(cell.estimator, **cell.estimator_options)
            est.check(probes[ident], cell.particles)
            from .runner import make_optimiser
            make_optimiser([torch.zeros(1, requires_grad=True)], cell.lr, options=cell.optimiser)
        except (UnknownNameError, ValueError) as err:
            raise UsageError(str(err).splitlines()[0] if str(err) else repr(err)) from None
        except TypeError as err:  # an option the model or estimator does not take
            raise UsageError(f"{cell.label()} / model options {cell.model_options}: {err}") from None
        except RuntimeError as err:  # e.g. estidata.DatasetMissingError: a dataset absent offline
            raise UsageError(str(err).splitlines()[0]) from None
    return cells


def study_descriptions(suite: Optional[str]) -> dict:
    """study → the text heading its report page: the description of the suite run (when given), else
    that of the study itself."""
    out = {name: study_registry.get(name).description for name in study_registry.names()}
    if suite in SUITES:
        out[SUITES[suite]["study"]] = SUITES[suite]["description"]
    return out


def report_main(argv) -> int:
    """``run_all.py report --out DIR [--suite NAME] [--note TEXT]``: rebuild the report from the store alone."""
    p = argparse.ArgumentParser(prog=f"{prog()} report", description=report_main.__doc__)
    p.add_argument("--out", required=True, help="folder holding results.sqlite; the report is written there")
    p.add_argument("--suite", default=None, help="suite whose description heads the report")
    p.add_argument("--note", default="", help="text added under the description (e.g. how the run went)")
    args = p.parse_args(argv)
    try:
        store = Store(args.out, create=False)
        if args.suite is not None and args.suite not in SUITES:
            SUITE_REGISTRY.factory(args.suite)
    except (StoreError, UnknownNameError) as err:
        print(f"{prog()} report: error: {err}", file=sys.stderr)
        return 2
    from estibench import reports
    descriptions = study_descriptions(args.suite)
    path = reports.build_site(store.table(), store.cells(), store.runs(), args.out, descriptions=descriptions,
                              note=args.note)
    store.export_csv()
    store.close()
    print(f"report: {path}")
    return 0


def check_main(argv) -> int:
    """``run_all.py check ESTIMATOR [--draws N] [--alpha A] [--seed S]``: run the contract checks and,
    for an estimator that says it is unbiased, the exact-gradient tests on every enumerable model it
    accepts; prints a pass/fail table with the statistics.  Exit status 0 when every check passes,
    1 when one fails, 2 for bad input."""
    from .checks import FAMILY_ALPHA, run_checks
    p = argparse.ArgumentParser(prog=f"{prog()} check", description=check_main.__doc__)
    p.add_argument("estimator", help="a registered name or package.module:Class, with options in brackets, "
                                     "e.g. rebar[variant=rebar_code] or examples.constant_baseline:ConstantBaseline")
    p.add_argument("--draws", type=int, help="gradient draws per exact-gradient test (default: per model, 2000)")
    p.add_argument("--alpha", type=float, default=FAMILY_ALPHA,
                   help=f"false-alarm rate of one whole-vector test (default {FAMILY_ALPHA:g})")
    p.add_argument("--seed", type=int, default=0, help="global torch seed before every check (default 0)")
    args = p.parse_args(argv)
    try:
        specs = parse_estimators(args.estimator)
        if len(specs) != 1:
            raise UsageError(f"check one estimator at a time, got {args.estimator!r}")
        if args.draws is not None and args.draws < 2:
            raise UsageError(f"--draws must be at least 2, got {args.draws}")
        if not 0 < args.alpha < 1:
            raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
        name, options = specs[0]
        results = run_checks(name, options, n=args.draws, alpha=args.alpha, seed=args.seed)
    except (UsageError, UnknownNameError, ValueError) as err:
        print(f"{prog()} check: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except TypeError as err:  # an option the estimator does not take
        print(f"{prog()} check: error: {args.estimator}: {err}", file=sys.stderr)
        return 2
    import pandas as pd
    frame = pd.DataFrame([{"model": r.model, "K": r.particles, "check": r.check, "statistic": r.statistic,
                           "threshold": r.threshold, "result": "pass" if r.passed else "FAIL", "detail": r.detail}
                          for r in results])
    est = estimators.get(name, **options)
    print(f"estibench check {args.estimator}: unbiased = {est.unbiased} (declared), targets {est.guide_target}; "
          f"seed {args.seed}, false-alarm rate α = {args.alpha:g} per exact-gradient test (Bonferroni over "
          f"the guide's coordinates)")
    print(frame.to_string(index=False))
    failed = int((~frame.result.eq("pass")).sum())
    print(f"{len(frame) - failed} of {len(frame)} checks passed" + (f"; {failed} FAILED" if failed else ""))
    return 1 if failed else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    if argv[:1] == ["check"]:
        return check_main(argv[1:])
    if argv[:1] == ["fetch-data"]:
        from estibench import data as estidata
        return estidata.main(argv[1:])
    args = parser().parse_args(argv)
    out = args.out or os.path.join("results", args.suite)
    try:
        cells = make_cells(args)
        if args.dry_run:
            listing = plan(cells, out)
        else:
            store = Store(out)
            store.check_config_version(CONFIG_VERSION)
    except (UsageError, StoreError) as err:
        print(f"{prog()}: error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        for cell, status in listing:
            print(f"{cell.model_label():<40} {cell.label():<32} K={cell.particles:<3} seeds={len(cell.seeds):<3} "
                  f"{'(forced) ' if args.force and status != 'todo' else ''}{status}")
        n_done = sum(s == "done" or s.startswith("diverged") for _, s in listing)
        todo = len(listing) if args.force else len(listing) - n_done
        print(f"{len(listing)} cells, {n_done} already finished, {todo} would run -> {out} (dry run: nothing ran)")
        return 0
    finished = set() if args.force else store.done_keys()
    n_todo = sum(c.key() not in finished for c in cells)
    # K groups in the order given (so an interrupted sweep leaves whole columns), longest cells first
    order = {k: i for i, k in enumerate(dict.fromkeys(c.particles for c in cells))}
    cells.sort(key=lambda c: (order[c.particles], -estimators.REGISTRY.factory(c.estimator).cost_hint
                              * (c.particles + 2)))
    print(f"{len(cells)} cells, {len(cells) - n_todo} already done, {n_todo} to run -> {out}")
    started = time.time()
    counts = run_sweep(cells, store, jobs=args.jobs, threads=args.threads, backend=args.backend,
                       address=args.scheduler if args.backend == "dask" else args.address, force=args.force,
                       command=" ".join([prog(), *argv]))
    elapsed = time.time() - started
    csv = store.export_csv()
    print(f"ran {n_todo} cells in {elapsed:.1f} s ({counts['done']} done, {counts['diverged']} diverged, "
          f"{counts['failed']} failed); tidy table: {csv}")
    if not args.no_report:
        from estibench import reports
        descriptions = study_descriptions(args.suite)
        path = reports.build_site(store.table(), store.cells(), store.runs(), out, descriptions=descriptions)
        print(f"report: {path} (and report.md)")
    store.close()
    return 1 if counts["failed"] else 0
