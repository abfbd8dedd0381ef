"""Train one cell: one (model, estimator, K) with all its seeds stacked as replicates.

Replicate r of a cell is initialised from seed r exactly as a single run with that seed; the
replicates' losses are summed and one Adam steps them all, which (Adam being elementwise, and
no term coupling replicates) is R independent runs.  The training noise comes from one torch
RNG seeded from the cell's configuration hash, so the same cell reproduces the same numbers.
Measurement (every evaluation, the final metrics and artifacts) runs on streams of its own and leaves the
model's and estimator's state as it was (``harness/measurement.py``), so the training stream, and with it
the trajectory, does not depend on how often the cell is measured.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.distributions import Distribution

from estibench import estimators
from estibench import models

from estibench.models.registry import Revision, UnknownNameError

from .store.schema import config_key
from .task import Task, require_task

#: the version of a cell's identity: 2 records the effective model and estimator options (defaults resolved from
#: the factories' signatures, ``Registry.effective``), so that a changed default changes the key by itself.  The
#: training stream's seed is still derived from the settings as requested, in the form of version 1
#: (:meth:`Cell.rng_seed`), so that a cell keeps its numbers
CONFIG_VERSION = 2

#: the changes of the engine's own code that altered the numbers of every cell (the classes a cell runs declare
#: their own: ``Model.revisions``, ``Estimator.revisions``)
ENGINE_REVISIONS: Tuple[Revision, ...] = (
    Revision(6, "measurement (every evaluation, the gradient basket, the final metrics) draws from its own random "
                "stream, forked from the cell's seed, and leaves the model's and estimator's state as it was "
                "(harness/measurement.py): a cell's trajectory no longer depends on --eval-every; earlier cells "
                "stay valid under their version", invalidates=False),
)


def _revisions(model_factory, estimator_factory) -> Tuple[Revision, ...]:
    """The revisions that apply to a (model, estimator) pair, oldest first: the engine's, the model class's and
    those of the estimator's implementation for the model's declared ``latent_kind``."""
    implementation = estimators.implementation_for(estimator_factory, getattr(model_factory, "latent_kind", ""))
    own = tuple(getattr(model_factory, "revisions", ())) + tuple(getattr(implementation, "revisions", ()))
    return tuple(sorted(ENGINE_REVISIONS + own, key=lambda r: r.order))


def numerics_history(model: str, estimator: str, known_only: bool = False) -> Optional[List[Tuple[int, Revision]]]:
    """(version, revision) for every revision that applies to (model, estimator), oldest first: version v is the
    numbers after it.  ``known_only``: look the names up without importing anything (``Registry.known``; a
    store is read as data) and answer None for a name this process does not know."""
    if known_only:
        factories = models.REGISTRY.known(model), estimators.REGISTRY.known(estimator)
        if None in factories:
            return None
    else:
        factories = _factory(models.REGISTRY, model), _factory(estimators.REGISTRY, estimator)
    return [(i + 2, r) for i, r in enumerate(_revisions(*factories))]


def _factory(registry, name: str):
    """The factory of ``name`` (importing a ``package.module:Class``), None for a name no registry knows: a cell
    of such a name cannot be built (:func:`build` says so in one line), but it can be described and stored (tests,
    tools), with its options as passed and the engine's revisions only."""
    try:
        return registry.factory(name)
    except UnknownNameError:
        return None


def _effective(registry, name: str, options: dict) -> dict:
    factory = _factory(registry, name)
    return dict(sorted(options.items())) if factory is None else registry.effective(name, options)


def numerics_version(model: str, estimator: str) -> int:
    """The numerics version this code computes for (model, estimator) cells: 1 + the revisions that apply."""
    return 1 + len(numerics_history(model, estimator))


def numerics_stale(model: str, estimator: str, version: int) -> bool:
    """Whether a stored cell of numerics ``version`` is wrong under this code: a later revision that applies to
    it ``invalidates`` earlier cells (False for a name this process does not know)."""
    history = numerics_history(model, estimator, known_only=True) or ()
    return any(v > int(version) and r.invalidates for v, r in history)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but no CUDA device is available")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda")


def option_label(name: str, options: dict) -> str:
    if not options:
        return name
    inner = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{name}[{inner}]"


@dataclass
class Cell:
    """A small picklable job spec; workers rebuild model and estimator from it."""

    study: str
    model: str
    estimator: str
    particles: int
    seeds: Tuple[int, ...]
    iterations: int
    model_options: Dict = field(default_factory=dict)
    estimator_options: Dict = field(default_factory=dict)
    batch_size: int = 100
    lr: float = 1e-3
    eval_every: int = 1000
    study_options: Dict = field(default_factory=dict)
    device: str = "auto"
    #: optimiser settings beyond the lr (betas, eps, weight_decay, ...); empty = plain Adam
    optimiser: Dict = field(default_factory=dict)
    #: the suite preset these settings came from (recorded beside the cell, like the device, not part of
    #: its identity: two presets with the same settings are the same computation); "" when none
    preset: str = ""
    #: ``torch.compile`` mode of the training step's surrogate (:data:`COMPILE_MODES`; "off": eager).  Part of
    #: the cell's identity when on (compiled kernels round differently), absent when off so that eager cells
    #: keep their keys
    compile: str = "off"
    #: the training task, ``"package.module:Class"`` of a :class:`harness.task.Task` subclass, set by whoever makes
    #: the cell from its study (the CLI, ``screen``); the engine imports it from here and knows no study.  Not part
    #: of the cell's identity: the study, which is, names the task
    task: str = ""

    def requested(self) -> dict:
        """The cell's settings as requested (its options as passed), in the form of config version 1, with the
        numerics version: what the training stream's seed is derived from (:meth:`rng_seed`)."""
        cfg = dataclasses.asdict(self)
        cfg.pop("device")  # where it ran is recorded beside the result, not part of its identity
        cfg.pop("task")  # named by the study, which is in the identity
        cfg.pop("preset")  # the settings are in the identity; the preset's name is recorded beside them
        if not cfg["optimiser"]:  # absent when default, so existing cells keep their keys
            cfg.pop("optimiser")
        if cfg["compile"] == "off":  # likewise
            cfg.pop("compile")
        cfg["seeds"] = list(self.seeds)
        cfg["config_version"] = 1
        version = numerics_version(self.model, self.estimator)
        if version != 1:
            cfg["numerics_version"] = version
        return cfg

    def effective_model_options(self) -> dict:
        """The model options the cell runs with: the model's defaults overridden by those passed."""
        return _effective(models.REGISTRY, self.model, self.model_options)

    def effective_estimator_options(self) -> dict:
        """The estimator options the cell runs with: the estimator's defaults overridden by those passed."""
        return _effective(estimators.REGISTRY, self.estimator, self.estimator_options)

    def config(self) -> dict:
        """The cell's identity (stored with it; :meth:`key` hashes it): its settings with the effective model
        and estimator options, the config version and the numerics version."""
        cfg = self.requested()
        cfg["model_options"] = self.effective_model_options()
        cfg["estimator_options"] = self.effective_estimator_options()
        cfg["config_version"] = CONFIG_VERSION
        return cfg

    def key(self) -> str:
        return config_key(self.config())

    def label(self) -> str:
        return option_label(self.estimator, self.estimator_options)

    def model_label(self) -> str:
        return option_label(self.model, self.model_options)

    def rng_seed(self) -> int:
        """The training stream's seed: a hash of the cell's settings as requested (:meth:`requested`, the form in
        which every stored cell was seeded) without the settings that only measure it (``eval_every`` and the
        gradient basket's options, :data:`harness.measurement.MEASUREMENT_OPTIONS`), so the same cell measured
        more or less often, or with a basket, trains exactly the same trajectory.  Two requests that differ only
        by passing an option at its default are one cell (one key) seeded differently: the store keeps the
        first computed."""
        from .measurement import MEASUREMENT_OPTIONS
        cfg = self.requested()
        cfg.pop("eval_every")
        cfg["study_options"] = {k: v for k, v in cfg["study_options"].items() if k not in MEASUREMENT_OPTIONS}
        blob = json.dumps(cfg, sort_keys=True, default=str)
        return int(hashlib.sha256(("training " + blob).encode()).hexdigest()[:12], 16)


def build_model(name: str, seeds=(0,), **options):
    """``models.get(name, seeds=..., **options)`` plus the training statistics the model declares it needs
    (``data_statistics``), read from the data layer: data → models, models never load data."""
    factory = models.REGISTRY.factory(name)
    needed = [k for k in factory.data_statistics if options.get(k) is None]
    from estibench import data
    if factory.default_dataset or options.get("dataset"):
        dataset = factory.statistics_query(options)["name"]
        try:
            kind = data.kind(dataset)
        except data.UnknownDatasetError:  # a source of the model's own (e.g. the linear-Gaussian model's draws)
            kind = None
        if kind is not None and kind not in factory.data_kinds:
            raise ValueError(f"model {name!r} trains on {' or '.join(factory.data_kinds)} data; {dataset!r} is "
                             f"{kind} data: choose another dataset")
    if needed:
        stats = data.statistics(**factory.statistics_query(options))
        options = {**options, **{k: stats[k] for k in needed}}
    return models.get(name, seeds=tuple(seeds), **options)


def check_latent_kind(model, estimator_factory) -> None:
    """The model's declared ``latent_kind`` (what a cell's numerics version is computed from before the model is
    built) is its latents' kind; a model that declares none passes unless the estimator implementation for its
    latents declares revisions (its cells' versions would miss them).  Otherwise a one-line ValueError."""
    declared, kind = type(model).latent_kind, model.latent.kind
    if declared == kind:
        return
    implementation = estimators.implementation_for(estimator_factory, kind)
    if declared or getattr(implementation, "revisions", ()):
        raise ValueError(f"model {type(model).__name__} declares latent_kind = {declared!r} but its latents are "
                         f"{kind!r}: declare latent_kind = {kind!r} on the class")


def build(cell: Cell, device: Optional[torch.device] = None):
    """(model, estimator) for a cell, checked for compatibility before any work."""
    model = build_model(cell.model, seeds=tuple(cell.seeds), **cell.model_options)
    estimator = estimators.get(cell.estimator, **cell.estimator_options)
    estimator.check(model, cell.particles)
    check_latent_kind(model, estimators.REGISTRY.factory(cell.estimator))
    if device is not None:
        model = model.to(device)
    estimator.bind(model)
    estimator.to(model.device)
    return model, estimator


OPTIMISER_KEYS = ("betas", "eps", "weight_decay", "own_weight_decay")


def make_optimiser(params, lr: float, own_params=(), own_lr_multiplier: float = 1.0,
                   options: Optional[Dict] = None) -> torch.optim.Optimizer:
    """Adam (default betas, RWS §4.3) over θ, φ and the estimator's own parameters; one Adam is
    the same as separate Adams per group, Adam being elementwise.  The estimator's parameters
    get ``lr × own_lr_multiplier`` (10 for control variates in the REBAR code); ``options`` may
    set betas, eps and weight decay (``own_weight_decay`` for the estimator's parameters only)."""
    options = dict(options or {})
    unknown = set(options) - set(OPTIMISER_KEYS)
    if unknown:
        raise ValueError(f"unknown optimiser option(s) {sorted(unknown)}; known: {', '.join(OPTIMISER_KEYS)}")
    own_params = list(own_params)
    own_decay = options.pop("own_weight_decay", options.get("weight_decay", 0.0))
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    # foreach: one multi-tensor kernel per Adam operation instead of one per parameter tensor (bit-identical
    # to the per-tensor loop, benchmarks/same_numbers.py; torch's default on the CPU is the loop)
    options.setdefault("foreach", True)
    if not own_params or (own_lr_multiplier == 1.0 and own_decay == options.get("weight_decay", 0.0)):
        return torch.optim.Adam(list(params) + own_params, lr=lr, **options)
    groups = [{"params": list(params)},
              {"params": own_params, "lr": lr * own_lr_multiplier, "weight_decay": own_decay}]
    return torch.optim.Adam(groups, lr=lr, **options)


#: the modes of ``--compile`` ("off": eager; the others are ``torch.compile`` modes; "reduce-overhead" adds CUDA
#: graphs on a GPU)
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


def compile_refusal(estimator, mode: str) -> Optional[str]:
    """Why ``estimator``'s training step cannot be compiled in ``mode`` (None: it can)."""
    if mode not in COMPILE_MODES:
        return f"unknown compile mode {mode!r}; choose {', '.join(COMPILE_MODES)}"
    if mode != "off" and estimator.second_order:
        return (f"estimator {estimator.name!r} differentiates its own gradient estimate (second order), which "
                f"torch.compile's autograd does not support; it runs eagerly")
    return None


def compile_surrogate(estimator, mode: str) -> None:
    """Replace ``estimator.surrogate`` (on this instance) by its ``torch.compile`` form.

    Inductor is told to draw random numbers through eager torch's generator (``fallback_random``), so a
    compiled cell consumes the same random stream as the eager one and differs from it only by the rounding
    of fused kernels (tests/test_speed.py checks the agreement).  θ/φ gradients come from the compiled
    graph's own backward (AOTAutograd)."""
    import torch._inductor.config as inductor_config
    inductor_config.fallback_random = True
    estimator.surrogate = torch.compile(estimator.surrogate, mode=None if mode == "default" else mode,
                                        dynamic=False)


class TrainingStep:
    """One training iteration of a cell, the runner's loop body as one object (benchmarks time this very
    step): the schedules' progress, a training batch from the task, the estimator's gradients, per-replicate
    finiteness bookkeeping, the task's ``observe`` hook (trajectory statistics; a no-op by default), one Adam step.

    Nothing in it reads a tensor back to the host (tests/test_speed.py counts): the first non-finite
    iteration of each replicate is kept on the device (``first_bad``, −1 while finite) and the training
    objective summed there (``objective_sum``), both read by the runner only at evaluations."""

    def __init__(self, model, estimator, task: Task, particles: int, iterations: int, optimiser, params,
                 compile: str = "off"):
        self.model, self.estimator, self.task, self.particles = model, estimator, require_task(task), particles
        self.optimiser, self.params = optimiser, list(params)
        self.span = max(1, iterations - 1)
        self.R = model.replicates
        self.first_bad = torch.full((self.R,), -1, dtype=torch.long, device=model.device)
        self.objective_sum = torch.zeros(self.R, device=model.device)
        if compile != "off" and compile_refusal(estimator, compile) is None:
            compile_surrogate(estimator, compile)

    def __call__(self, it: int) -> None:
        # torch.distributions checks its arguments by default, and a check reads a tensor back to the host (a
        # device synchronisation); classes that build an inner distribution (ExpRelaxedCategorical,
        # OneHotCategorical) do not pass their own validate_args=False on, so the step turns the default off
        validate = Distribution._validate_args
        Distribution.set_default_validate_args(False)
        try:
            self._step(it)
        finally:
            Distribution.set_default_validate_args(validate)

    def _step(self, it: int) -> None:
        progress = (it - 1) / self.span
        self.estimator.set_progress(progress)
        self.model.set_progress(progress)
        x = self.task.train_batch()
        model_grads, own_grads, objective = self.estimator.gradients(self.model, x, self.particles)
        grads = model_grads + own_grads
        objective = objective.detach()
        bad = _nonfinite_per_replicate(objective, grads, self.R)
        self.first_bad.masked_fill_(bad & (self.first_bad < 0), it)
        self.task.observe(model_grads)
        for p, g in zip(self.params, grads):
            p.grad = g
        self.optimiser.step()
        self.objective_sum += objective


def machine_description() -> str:
    """Where a cell ran, as stored beside it: the CPU's kernels (ATen's CPU capability, e.g. AVX512 or AVX2) are
    part of it because they set the rounding: the same code and seed give different floats on AVX-512 and AVX2
    hosts (published/gmm/README.md, the GMM study's status)."""
    try:
        kernels = f", ATen {torch.backends.cpu.get_cpu_capability()}"
    except (AttributeError, RuntimeError):
        kernels = ""
    return (f"{platform.machine()}, {os.cpu_count()} CPUs{kernels}, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


@dataclass
class CellResult:
    cell: Cell
    rows: List[Tuple[int, int, str, float]]
    wall_s: float
    sec_per_iter: float
    device: str
    status: str = "done"
    error: Optional[str] = None
    diverged_at: Optional[int] = None
    #: torch's intra-op thread count the cell ran with (recorded beside the cell, not in its key)
    threads: Optional[int] = None
    #: name → (MIME type, bytes) made by the task's ``final_artifacts(model)`` (harness.store; None by default)
    artifacts: Optional[dict] = None


class Diverged(Exception):
    def __init__(self, iteration: int):
        super().__init__(f"non-finite loss or gradients at iteration {iteration}")
        self.iteration = iteration


def _nonfinite_per_replicate(objective: torch.Tensor, grads: List[torch.Tensor], R: int) -> torch.Tensor:
    """``[R]``: True where replicate r's objective or any of its gradient entries is not finite (a non-finite
    entry makes its tensor's per-replicate sum non-finite; one stack and one test for all tensors)."""
    sums = torch.stack([objective, *(g.reshape(R, -1).sum(1) for g in grads)])
    return ~torch.isfinite(sums).all(0)


def _params_finite(params) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak-memory window for :func:`peak_memory_mb`; False where the platform cannot (the CPU off
    Linux: the process's peak so far is what it can report)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # "5": reset the peak RSS (VmHWM), Linux ≥ 4.0
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: torch.device) -> float:
    """MiB: CUDA max allocated since :func:`reset_peak_memory` on a GPU; on the CPU the peak RSS (VmHWM) since
    then, or the process's ``ru_maxrss`` where /proc is absent."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class _Measurement:
    """``with measured(what, iteration):`` runs a task's measurement as :func:`harness.measurement.frozen` does: the
    model's and estimator's state restored afterwards (the model's declared ``measurement_caches`` kept) and the
    draws on a stream of their own, seeded from the cell's seed, ``what`` and the iteration.  The training stream
    is therefore the same whatever ``eval_every`` is, and so is the trajectory (tests/test_measurement.py)."""

    def __init__(self, cell: Cell, model, estimator):
        self.base, self.model, self.estimator = cell.rng_seed(), model, estimator

    def __call__(self, what: str, iteration: int):
        from .measurement import frozen, measurement_seed
        return frozen(self.model, self.estimator, seed=measurement_seed(self.base, what, iteration))


def _finite_rows(rows):
    return [r for r in rows if math.isfinite(r[3])]


def train_cell(cell: Cell, task_factory: Callable[..., Task], progress: bool = False) -> CellResult:
    """Run a cell; ``task_factory(model, cell)`` (a :class:`harness.task.Task` subclass) supplies data and metrics
    (its hooks: ``harness/task.py``); anything else is refused with a one-line :class:`TypeError`."""
    if isinstance(task_factory, type):
        require_task(task_factory)  # refused before any work
    device = resolve_device(cell.device)
    started = time.perf_counter()
    fork = [device] if device.type == "cuda" else []
    reset_peak_memory(device)
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(cell.rng_seed())
        model, estimator = build(cell, device)
        task = require_task(task_factory(model, cell))
        params, own = list(model.parameters()), list(estimator.parameters())
        optimiser = make_optimiser(params, cell.lr, own, estimator.own_lr_multiplier, cell.optimiser)
        params = params + own
        R = model.replicates
        rows: List[Tuple[int, int, str, float]] = []
        measured = _Measurement(cell, model, estimator)
        with measured("evaluate", 0):
            rows += task.evaluate(model, estimator, 0)
        with measured("final", 0):
            rows += task.final_evaluate(model, estimator, 0)
        step = TrainingStep(model, estimator, task, cell.particles, cell.iterations, optimiser, params,
                            compile=cell.compile)
        first_bad = step.first_bad
        n = cell.iterations
        train_time, window_start, window = 0.0, time.perf_counter(), 0
        iterator = range(1, n + 1)
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(iterator, desc=f"{cell.label()} K={cell.particles}", leave=False, mininterval=1.0,
                            disable=None)  # None: bars on a terminal only, never in a log
        it = 0
        try:
            for it in iterator:
                step(it)
                window += 1
                if it % cell.eval_every == 0 or it == n:
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    elapsed = time.perf_counter() - window_start
                    train_time += elapsed
                    if bool((first_bad >= 0).any()):
                        raise Diverged(int(first_bad[first_bad >= 0].min()))
                    extra = {"sec_per_iter": torch.full((R,), elapsed / window),
                             "train_objective": step.objective_sum / window}
                    with measured("evaluate", it):
                        rows += task.evaluate(model, estimator, it, extra)
                    step.objective_sum.zero_()
                    window, window_start = 0, time.perf_counter()
            with measured("final", n):
                rows += task.final_evaluate(model, estimator, n)
            with measured("artifacts", n):  # after every metric
                artifacts = task.final_artifacts(model)
            peak = peak_memory_mb(device)
            rows += [(seed, n, "peak_memory_mb", peak) for seed in model.seeds]
        except Diverged as err:
            return _diverged(cell, rows, started, train_time, it, device, err.iteration, first_bad, model.seeds)
        except Exception:
            if _params_finite(params) and not bool((first_bad >= 0).any()):
                raise
            bad = first_bad[first_bad >= 0]
            at = int(bad.min()) if len(bad) else it
            return _diverged(cell, rows, started, train_time, it, device, at, first_bad, model.seeds)
    wall = time.perf_counter() - started
    return CellResult(cell, rows, wall, train_time / max(1, n), str(device), artifacts=artifacts)


def _diverged(cell, rows, started, train_time, it, device, at, first_bad, seeds) -> CellResult:
    per_seed = [(s, 0, "diverged_at", float(b)) for s, b in zip(seeds, first_bad.tolist()) if b >= 0]
    kept = [r for r in _finite_rows(rows) if r[1] < at]
    wall = time.perf_counter() - started
    return CellResult(cell, kept + per_seed, wall, train_time / max(1, it), str(device), status="diverged",
                      error=f"non-finite loss or gradients first at iteration {at}", diverged_at=at)
