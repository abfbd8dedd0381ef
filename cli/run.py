"""``run_all.py [run] FLAGS``: a run of a suite (a command line that starts with a flag is a run).  A run builds a
suite's cells (:func:`make_cells`, in named steps), validates them, runs what is not done, exports the tidy table and
writes the report.  The suites and the grid flags are the studies' (``estibench.studies``), read when a parser or the
cells are built, not on import: :func:`parser` (``cli/parsers.py``, which needs no torch) registers each study's
flags."""
from __future__ import annotations

import argparse
import difflib
import itertools
import math
import os
import sys
import time
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import torch

from estibench import estimators
from estibench import studies as study_registry
from estibench.argparse_oneline import parse
# the option grammar (estimator specs, NAME=VALUE options, comma lists) and its UsageError: harness/grammar.py
from estibench.harness.grammar import (UsageError, parse_estimators, parse_options, parse_value,  # noqa: F401
                                       refuse_twice as _refuse_twice, split, split_top)
from estibench.harness.runner import CONFIG_VERSION, Cell, compile_refusal, resolve_device
from estibench.harness.store import Store, StoreError
from estibench.harness.sweep import check_backend, dispatch_order, plan, run_sweep
from estibench.models.registry import UnknownNameError
from estibench.studies.base import Preset, Settings, Suite

from .common import (check_output_folder, prog, study_descriptions, suite_registry,
                     suites)


def grid_flags() -> Dict[str, Tuple[str, str]]:
    """The flags that pick values of a suite's model grid, as each study declares them (``Study.grid_flags``):
    flag → (model option, help)."""
    out: Dict[str, Tuple[str, str]] = {}
    for study in study_registry.names():
        out.update(study_registry.get(study).grid_flags)
    return out


_READ_WHEN_USED = {"SUITES": suites, "SUITE_REGISTRY": suite_registry, "GRID_FLAGS": grid_flags}


def __getattr__(name):  # ``from estibench.cli.run import SUITES``: the studies are read then, not on import
    if name in _READ_WHEN_USED:
        return _READ_WHEN_USED[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parser(command: str = "") -> argparse.ArgumentParser:
    """The run's parser: ``command`` ``"run"`` for ``run_all.py run ...``; ``""`` for the run written without a
    command, whose ``--help`` also lists the commands.  Built without torch (:func:`estibench.cli.parsers.run_parser`),
    so that ``--help`` is answered before this module is imported."""
    from .parsers import run_parser
    return run_parser(command)


def _suites_with(option: str) -> List[str]:
    return sorted(n for n, s in suites().items() if option in s.model_grid
                  or any(option in (p.model_grid or {}) for p in s.parts))


def _csv_flag(value: Optional[str], flag: str, suite: Suite, option: str, suite_name: str) -> Optional[List]:
    if value is None:
        return None
    if option not in suite.model_grid:
        raise UsageError(f"{flag} does not apply to suite {suite_name!r} (study {suite.study!r}, model "
                         f"{suite.model!r}; suites that take it: {', '.join(_suites_with(option)) or 'none'})")
    values = [parse_value(v) for v in split(value, str, flag)]  # "1,2" → [1, 2]; words stay words
    return _refuse_twice(values, flag, value)  # "1,01" is refused by split, "1,1.0" here


def _preset(args, suite: Suite) -> Tuple[str, Optional[Preset]]:
    """``(name, preset)``: ``--preset`` or the suite's default preset ("", None where there is neither)."""
    presets = suite.presets
    name = getattr(args, "preset", None) or suite.default_preset
    if getattr(args, "preset", None) and not presets:
        raise UsageError(f"--preset does not apply to suite {args.suite!r}")
    if name is not None and name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown preset {name!r} of suite {args.suite!r}{hint} (known: {', '.join(presets)})")
    return (name or ""), presets.get(name)


def _assign(specs, parts) -> List[List[Tuple[str, dict]]]:
    """Spread the user's --estimators over the suite's parts: each goes to every part that lists
    it (an estimator no part lists goes to the first part); parts that list none get nothing."""
    out = [[] for _ in parts]
    for name, options in specs:
        homes = [i for i, part in enumerate(parts) if name in part.estimators] or [0]
        for i in homes:
            out[i].append((name, options))
    return out


def make_cells(args) -> List[Cell]:
    """The cells of ``args.suite`` after the command-line overrides, every one checked before any work.  In steps:

    1. :func:`_suite_parts`: the suite with its preset, as parts (a suite without ``parts`` is one part; the SBN
       suite has single-sample estimators at K = 1, multi-sample ones at K = 5, the enumerable model, ...);
       ``--model`` replaces every part's model.
    2. :func:`_check_numbers`: the counts, the learning rate, the device and the backend are usable.
    3. :func:`_grid_choices`, :func:`_parts_taking`: a grid flag (``--arch``, ``--dataset``, ``--groups``; the
       studies declare them) keeps the parts whose model takes it, each with the values it takes.
    4. :func:`_basket`: ``--basket`` and ``--basket-samples`` as study options; :func:`_data`: ``--data`` as study
       options (the suite's study reads it: ``Study.data``; a file's path, size and hash, so a changed file is
       another cell).
    5. :func:`_assign`, :func:`_part_cells`: the user's ``--estimators`` spread over the parts, each part's cells
       (its grid × its estimators × its K) with every common flag applied.
    6. :func:`_check_cells`: each model built once and each estimator checked against it (names, options,
       compatibility, data on disk, the capabilities the study needs: ``Study.needs``, and what its task refuses:
       ``Task.refusal``, e.g. observations of another shape than the model's); :func:`_same_cell_once`: a cell that
       two parts make (the same key: the same effective options) is kept once; :func:`_check_basket_fits`: the
       basket's members against the cells."""
    suite = _suite(args.suite)
    preset_name, parts = _suite_parts(args, suite)
    model_options = parse_options(args.model_options, "--model-options") if args.model_options is not None else {}
    user_particles = split(args.particles, int, "--particles")
    _check_numbers(args, user_particles)
    parts = _parts_taking(parts, _grid_choices(args, suite), args.suite)
    basket, basket_members = _basket(args)
    data = _data(args, suite)
    user_specs = parse_estimators(args.estimators) if args.estimators is not None else None
    part_specs = _assign(user_specs, parts) if user_specs else [[(n, {}) for n in part.estimators] for part in parts]
    cells, part_of = [], []  # part_of: the index of the part each cell comes from
    for part_index, (part, specs) in enumerate(zip(parts, part_specs)):
        cells += _part_cells(part, specs, args, model_options=model_options, particles=user_particles,
                             preset=preset_name, extra_study_options={**data, **basket})
        part_of += [part_index] * (len(cells) - len(part_of))
    probes = _check_cells(cells, args.suite)  # (names first: a cell's key resolves its names' defaults)
    cells = _same_cell_once(cells, part_of, args)
    if basket_members:
        _check_basket_fits(cells, basket_members, probes)
    return cells


def _suite(name: str) -> Suite:
    """The suite named ``name`` (a registered suite or ``package.module:Attribute``)."""
    try:
        return suite_registry().get(name)
    except UnknownNameError as err:
        raise UsageError(str(err)) from None


def _suite_parts(args, suite: Suite) -> Tuple[str, List[Settings]]:
    """``(preset name, parts)``: the suite's settings with the preset's over them, one :class:`Settings` per part (a
    part's own over those: :meth:`Suite.resolved_parts`); ``--model`` replaces every part's model (it must declare
    the suite's study)."""
    preset_name, preset = _preset(args, suite)
    parts = suite.resolved_parts(preset)
    if getattr(args, "model", None):
        from estibench import models
        try:
            model_class = models.REGISTRY.factory(args.model)
        except UnknownNameError as err:
            raise UsageError(str(err)) from None
        study = study_registry.get(suite.study)
        if not study.trains(model_class):  # the models it names (Study.models), subclasses, or what it needs declared
            lacking = study.lacking(model_class) if study.needs else None
            if lacking is not None:
                raise UsageError(study.lacking_text(lacking, args.suite, args.model))
            fits = [n for n in models.names() if study.accepts(models.REGISTRY.factory(n))]
            raise UsageError(f"model {args.model!r} does not fit suite {args.suite!r} (study {suite.study!r} "
                             f"takes {', '.join(fits)}); --suite generic trains any model")
        parts = [replace(part, model=args.model) for part in parts]
    return preset_name, parts


def _check_numbers(args, user_particles: Optional[List[int]]) -> None:
    """A UsageError for a count below its least value, a learning rate that is not a positive finite number, an
    unknown device, or a backend without its address (or an address without its backend)."""
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    if args.iterations is not None and args.iterations < 1:
        raise UsageError(f"--iterations must be positive, got {args.iterations}")
    if args.eval_every is not None and args.eval_every < 1:
        raise UsageError(f"--eval-every must be positive, got {args.eval_every}")
    if getattr(args, "lr", None) is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise UsageError(f"--lr must be a positive finite number, got {args.lr}")
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
    for flag, backend in (("scheduler", "dask"), ("address", "ray")):  # never ignored silently
        if getattr(args, flag, None) and getattr(args, "backend", "loky") != backend:
            raise UsageError(f"--{flag} is for --backend {backend} (this run's backend is "
                             f"{getattr(args, 'backend', 'loky')}); add --backend {backend} or drop --{flag}")
    if getattr(args, "backend", "loky") == "dask":  # before the store or a run row exists
        from estibench.harness.sweep import check_scheduler
        try:
            check_scheduler(args.scheduler)
        except ValueError as err:
            raise UsageError(str(err)) from None


def _grid_choices(args, suite: Suite) -> Dict[str, Tuple[str, List]]:
    """model option → (flag, values) of every grid flag given (:func:`_csv_flag`: a flag the suite's grid does not
    name is a UsageError)."""
    out = {}
    for flag, (option, _) in grid_flags().items():
        values = _csv_flag(getattr(args, option, None), flag, suite, option, args.suite)
        if values:
            out[option] = (flag, values)
    return out


def _parts_taking(parts: List[Settings], choices: Dict[str, Tuple[str, List]], suite_name: str) -> List[Settings]:
    """The parts that the grid flags apply to, each with the flag's values in its grid; no flag, every part.

    A part takes a grid flag when its grid names the flag's option (``--groups`` on the rbm suite: the RBM-prior
    VAEs, not the directed-prior SBNs beside them).  Of the values given, a part takes those its grid lists
    (``--arch linear1`` on the sbn suite: the binary SBNs, not the categorical ones, whose grid lists linear and
    nonlinear; ``--arch nonlinear``: not the enumerable sbn_tiny, whose grid lists linear1 and linear2) and every
    value that no part lists (``--dataset mnist-static`` where the suite lists only the embedded subset: whether
    the model can use it is the model's to say when it is built).  A part that takes none of the values is left
    out; no part left is a UsageError."""
    for option, (flag, values) in choices.items():
        listed = [v for part in parts for v in (part.model_grid or {}).get(option, ())]
        kept = []
        for part in parts:
            grid = part.model_grid or {}
            taken = [v for v in values if v in grid[option] or v not in listed] if option in grid else []
            if taken:
                kept.append(replace(part, model_grid={**grid, option: tuple(taken)}))
        if not kept:
            raise UsageError(f"{flag} applies to no part of suite {suite_name!r}"
                             + (" left by the other grid flags" if len(choices) > 1 else ""))
        parts = kept
    return parts


def _basket(args) -> Tuple[dict, list]:
    """``(study options, members)`` of ``--basket`` and ``--basket-samples``: the options every cell gets, and for
    an explicit basket its members ``[(label, (name, options))]`` (``all`` has none to check here)."""
    basket, members = {}, []
    if getattr(args, "basket", None):
        from estibench.harness.basket import parse_members
        from estibench.harness.runner import option_label
        spec = split_top(args.basket, "--basket")
        if [t.strip() for t in spec] == ["all"]:
            basket["basket"] = ("all",)
        else:
            try:
                pairs = parse_members(spec)
            except (UnknownNameError, ValueError, TypeError) as err:
                raise UsageError(f"--basket: {str(err).splitlines()[0]}") from None
            labels = _refuse_twice([option_label(n, o) for n, o in pairs], "--basket", args.basket)
            basket["basket"] = tuple(labels)
            members = list(zip(labels, pairs))
    if getattr(args, "basket_samples", None) is not None:
        if args.basket_samples < 2:
            raise UsageError(f"--basket-samples must be at least 2 (a variance needs two draws), got {args.basket_samples}")
        if not basket:
            raise UsageError("--basket-samples needs --basket")
        basket["basket_samples"] = int(args.basket_samples)
    return basket, members


def _data(args, suite: Suite) -> dict:
    """The study options of ``--data`` (``{}`` without it), read by the function the suite's study names
    (``Study.data``): the file checked (its arrays) and hashed, or the dataset named; a UsageError for a study that
    takes no ``--data`` or input it cannot use, before any work."""
    value = getattr(args, "data", None)
    if value is None:
        return {}
    study = study_registry.get(suite.study)
    if not study.data:
        takes = sorted(name for name, s in suites().items() if study_registry.get(s.study).data)
        raise UsageError(f"--data does not apply to suite {args.suite!r} (study {suite.study!r} draws its own data; "
                         f"suites that take it: {', '.join(takes) or 'none'})")
    try:
        return dict(study.data_function()(value))
    except (ValueError, OSError, RuntimeError) as err:
        raise UsageError(f"--data {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def _part_cells(part: Settings, specs: List[Tuple[str, dict]], args, *, model_options: dict,
                particles: Optional[List[int]], preset: str, extra_study_options: dict) -> List[Cell]:
    """One part's cells: every variant of its model grid × its estimators (the preset's options under the
    user's) × its particle counts, with the common flags over the part's settings; ``--model-options`` wins over
    the grid."""
    specs = [(n, {**part.estimator_options.get(n, {}), **o}) for n, o in specs]
    particles = particles or list(part.particles)
    seeds = part.seeds if args.seeds is None else args.seeds
    iterations = part.iterations if args.iterations is None else args.iterations
    eval_every = part.eval_every if args.eval_every is None else args.eval_every
    lr = part.lr if getattr(args, "lr", None) is None else args.lr
    batch_size = part.batch_size if getattr(args, "batch_size", None) is None else args.batch_size
    grid = {option: values for option, values in part.model_grid.items() if option not in model_options}
    variants = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    return [Cell(study=part.study, model=part.model, estimator=name, particles=k,
                 seeds=tuple(range(seeds)), iterations=iterations,
                 model_options={**part.model_options, **variant, **model_options},
                 estimator_options=options, batch_size=batch_size, lr=lr,
                 eval_every=min(eval_every, iterations),
                 study_options={**part.study_options, **extra_study_options},
                 device=args.device, optimiser=dict(part.optimiser), preset=preset,
                 compile=getattr(args, "compile", "off"), task=study_registry.get(part.study).task)
            for variant in variants for name, options in specs for k in particles]


def _check_cells(cells: List[Cell], suite: str = "") -> dict:
    """Refuse unknown names, incompatible pairs and missing data before any work starts: each model is built once
    (the probes, returned: (model, options) → model), checked against what its cell's study needs
    (``Study.needs``) and what its task refuses (``Task.refusal``: the data), and each cell's estimator checked
    against it.  A cell whose
    estimator ``--compile`` would leave eager is marked eager (the same computation; its key says so), in one note
    line."""
    probes, eager_under_compile, fitted = {}, set(), set()
    for cell in cells:
        try:
            ident = (cell.model, tuple(sorted(cell.model_options.items(), key=str)))
            if ident not in probes:
                from estibench.harness.runner import build_model
                probes[ident] = build_model(cell.model, seeds=(0,), **cell.model_options)
            fit = (ident, cell.study, cell.task, repr(sorted(cell.study_options.items(), key=str)))
            if fit not in fitted:
                fitted.add(fit)
                _check_fits(probes[ident], cell, suite or cell.study)
            est = estimators.get(cell.estimator, **cell.estimator_options)
            est.check(probes[ident], cell.particles)
            if cell.compile != "off" and compile_refusal(est, cell.compile):
                cell.compile = "off"  # the same computation as an eager cell (its key says so)
                eager_under_compile.add(cell.label())
            from estibench.harness.runner import make_optimiser
            make_optimiser([torch.zeros(1, requires_grad=True)], cell.lr, options=cell.optimiser)
        except (UnknownNameError, ValueError) as err:
            raise UsageError(str(err).splitlines()[0] if str(err) else repr(err)) from None
        except TypeError as err:  # an option the model or estimator does not take
            raise UsageError(f"{cell.label()} / model options {cell.model_options}: {err}") from None
        except RuntimeError as err:  # e.g. estidata.DatasetMissingError: a dataset absent offline
            raise UsageError(str(err).splitlines()[0]) from None
        except (ArithmeticError, LookupError, AttributeError, OSError) as err:  # a setting the code cannot use
            raise UsageError(f"{cell.label()} / model options {cell.model_options}: cannot build with these "
                             f"settings ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if eager_under_compile:
        print(f"{prog()}: note: --compile leaves {', '.join(sorted(eager_under_compile))} eager (second-order "
              f"gradients)", file=sys.stderr)
    return probes


def _check_fits(probe, cell: Cell, suite: str) -> None:
    """A UsageError when ``cell``'s study cannot train ``probe`` (a capability of ``Study.needs`` it does not
    provide) or its task refuses it (``Task.refusal``: data it cannot read, observations of another shape)."""
    from estibench.harness.task import task_class
    refusal = study_registry.get(cell.study).refusal(probe, suite, cell.model)
    if refusal is None:
        refusal = task_class(cell.task).refusal(probe, cell)
    if refusal:
        raise UsageError(refusal.splitlines()[0])


def _same_cell_once(cells: List[Cell], part_of: List[int], args) -> List[Cell]:
    """``cells`` with each cell once, so that the run counts what it stores.  Two parts of a suite that become the
    same cell once a flag overrides what told them apart (``--suite sbn --particles 2``: DisARM of the K = 1 part and
    of the K = 2 part) are one cell, kept once.  Two specs of one part that make the same cell
    (``--estimators rebar,rebar[variant=X]`` where the preset already sets ``variant=X``) are a UsageError: the
    user asked for one cell twice."""
    seen: dict = {}  # key → the part of its first cell
    out = []
    for cell, part in zip(cells, part_of):
        key = cell.key()
        if key not in seen:
            seen[key] = part
            out.append(cell)
        elif seen[key] == part:
            said = (f"--estimators {args.estimators!r} names it twice (an option equal to the suite's or preset's?)"
                    if args.estimators is not None else "the suite lists it twice")
            raise UsageError(f"cell {cell.label()} on {cell.model_label()}, K={cell.particles} is asked for twice: "
                             f"{said}")
    return out


def _check_basket_fits(cells: List[Cell], basket_members, probes: dict) -> None:
    """The ``--basket`` members against every cell, as :func:`harness.basket.members` will measure them: a member
    that fits none of the cells (e.g. ``vimco`` with only K = 1) is a UsageError before any work; one that fits
    only some is named, with the cells it leaves out and the estimator's reason, in one note line on stderr (the
    basket report lists the same cells as "not measured").  A member equal to a cell's own estimator is that
    cell's reference: measured."""
    skipped = {label: [] for label, _ in basket_members}  # label → [(cell, reason)]
    for label, (name, options) in basket_members:
        for cell in cells:
            if label == cell.label():
                continue
            probe = probes[(cell.model, tuple(sorted(cell.model_options.items(), key=str)))]
            try:
                estimators.get(name, **options).check(probe, cell.particles)
            except estimators.IncompatibleError as err:
                skipped[label].append((cell, str(err).splitlines()[0] if str(err) else type(err).__name__))
            except (UnknownNameError, ValueError, TypeError) as err:
                raise UsageError(f"--basket: {label} on {cell.model_label()}, K={cell.particles}: "
                                 f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    n = len(cells)
    for label, missed in skipped.items():
        if len(missed) == n:
            raise UsageError(f"--basket member {label} fits none of the {n} cell{'s' if n != 1 else ''} of this run "
                             f"({missed[0][1]}); leave it out")
    for label, missed in skipped.items():
        if missed:
            by_reason: dict = {}
            for cell, reason in missed:
                by_reason.setdefault(reason, []).append(f"{cell.model_label()} {cell.label()} K={cell.particles}")
            where = "; ".join(f"{', '.join(names[:6])}{f' and {len(names) - 6} more' if len(names) > 6 else ''} "
                              f"({reason})" for reason, names in by_reason.items())
            print(f"{prog()}: note: --basket measures {label} on {n - len(missed)} of {n} cells; not on {where}",
                  file=sys.stderr)


def main(rest: List[str], *, command: str = "run", argv: Optional[List[str]] = None,
         state: Optional[dict] = None) -> int:
    """``run_all.py [run] FLAGS``: the cells of a suite, run unless stored.  ``rest``: the run's flags; ``command``:
    ``"run"``, or ``""`` for a run written without the command (its ``--help`` lists the commands); ``argv``: the
    whole command line, as the run's record keeps it (default: ``rest``); ``state``: filled with the store, the out
    folder and the cells as they exist, for :func:`estibench.cli.main` to close the store and say what is stored when
    the run is interrupted."""
    argv = list(rest) if argv is None else argv
    state = {} if state is None else state
    args, status = parse(parser(command), rest)  # argparse's errors: one line, status 2 (--help: 0)
    if args is None:
        return status
    if args.out is not None and not args.out.strip():
        print(f"{prog()}: error: --out is empty; name a folder", file=sys.stderr)
        return 2
    out = args.out or os.path.join("results", args.suite)
    try:
        cells = make_cells(args)
        if args.dry_run:
            listing = plan(cells, out)
        else:
            check_output_folder(out)
            store = Store(out)
            state.update(store=store, out=out)
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
    state["cells"] = cells
    finished = set() if args.force else store.done_keys()
    n_todo = sum(c.key() not in finished for c in cells)
    cells[:] = dispatch_order(cells)
    print(f"{len(cells)} cells, {len(cells) - n_todo} already done, {n_todo} to run -> {out}", flush=True)
    started = time.time()
    try:
        counts = run_sweep(cells, store, jobs=args.jobs, threads=args.threads, backend=args.backend,
                           address=args.scheduler if args.backend == "dask" else args.address, force=args.force,
                           command=" ".join([prog(), *argv]))
        elapsed = time.time() - started
        csv = store.export_csv()
    except StoreError as err:  # a full disk, a lock held past the patience: stored cells are intact
        from estibench.harness.sweep import stored_count
        print(f"{prog()}: error: {err} ({stored_count(cells, store)} of {len(cells)} cells are stored)",
              file=sys.stderr)
        return 1
    other = counts.get("by_other_run", 0)
    print(f"ran {n_todo - other} cells in {elapsed:.1f} s ({counts['done']} done, {counts['diverged']} diverged, "
          f"{counts['failed']} failed" + (f"; {other} computed by another run on this folder" if other else "")
          + f"); tidy table: {csv}")
    if counts["failed"]:  # each printed one line as it failed; say where the whole traceback is
        command = "python run_all.py" if prog() == "run_all.py" else prog()
        print(f"{counts['failed']} failed cell(s), retried by the next run; full tracebacks: 'Failed cells' on "
              f"{os.path.join(out, 'index.html')} ({command} report --out {out} writes it), or the error "
              f"column of the cells table in {os.path.join(out, 'results.sqlite')}", flush=True)
    if not args.no_report:
        from estibench import reports
        descriptions = study_descriptions(args.suite)
        try:
            path = reports.build_site(store.table(), store.cells(), store.runs(), out, descriptions=descriptions,
                                      artifacts=store.artifacts())
        except OSError as err:
            print(f"{prog()}: error: the cells are stored, but the report could not be written into {out}: "
                  f"{err.strerror or err}", file=sys.stderr)
            return 1
        print(f"report: {path} (and report.md)")
    return 1 if counts["failed"] else 0
