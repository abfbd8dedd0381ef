"""Train one cell: one (model, estimator, K) with all its seeds stacked as replicates.

Replicate r of a cell is initialised from seed r exactly as a single run with that seed; the
replicates' losses are summed and one Adam steps them all, which (Adam being elementwise, and
no term coupling replicates) is R independent runs.  The training noise comes from one torch
RNG seeded from the cell's configuration hash, so the same cell reproduces the same numbers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

import estimators
import models

#: bump when a change alters the numbers a cell produces; part of every cell's key
CONFIG_VERSION = 1


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

    def config(self) -> dict:
        cfg = dataclasses.asdict(self)
        cfg.pop("device")  # where it ran is recorded beside the result, not part of its identity
        cfg["seeds"] = list(self.seeds)
        cfg["config_version"] = CONFIG_VERSION
        return cfg

    def key(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def label(self) -> str:
        return option_label(self.estimator, self.estimator_options)

    def model_label(self) -> str:
        return option_label(self.model, self.model_options)

    def rng_seed(self) -> int:
        return int(self.key()[:12], 16)


def build(cell: Cell, device: Optional[torch.device] = None):
    """(model, estimator) for a cell, checked for compatibility before any work."""
    model = models.get(cell.model, seeds=tuple(cell.seeds), **cell.model_options)
    estimator = estimators.get(cell.estimator, **cell.estimator_options)
    estimator.check(model, cell.particles)
    if device is not None:
        model = model.to(device)
    estimator.bind(model)
    estimator.to(model.device)
    return model, estimator


def make_optimiser(params, lr: float) -> torch.optim.Optimizer:
    """Adam with default betas (RWS §4.3); one Adam over θ, φ and the estimator's parameters is
    the same as separate Adams per group, Adam being elementwise."""
    return torch.optim.Adam(params, lr=lr)


def machine_description() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}"


@dataclass
class CellResult:
    cell: Cell
    rows: List[Tuple[int, int, str, float]]
    wall_s: float
    sec_per_iter: float
    device: str


def train_cell(cell: Cell, task_factory: Callable, progress: bool = False) -> CellResult:
    """Run a cell; ``task_factory(model, cell)`` supplies data and metrics (see harness.studies)."""
    device = resolve_device(cell.device)
    started = time.perf_counter()
    fork = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(cell.rng_seed())
        model, estimator = build(cell, device)
        task = task_factory(model, cell)
        params = list(model.parameters()) + list(estimator.parameters())
        optimiser = make_optimiser(params, cell.lr)
        rows: List[Tuple[int, int, str, float]] = []
        rows += task.evaluate(model, estimator, 0)
        rows += task.final_evaluate(model, estimator, 0)
        objective_sum = torch.zeros(model.replicates, device=device)
        n = cell.iterations
        train_time, window_start, window = 0.0, time.perf_counter(), 0
        iterator = range(1, n + 1)
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(iterator, desc=f"{cell.label()} K={cell.particles}", leave=False, mininterval=1.0)
        for it in iterator:
            estimator.set_progress((it - 1) / max(1, n - 1))
            x = task.train_batch()
            model_grads, own_grads, objective = estimator.gradients(model, x, cell.particles)
            for p, g in zip(params, model_grads + own_grads):
                p.grad = g
            optimiser.step()
            objective_sum += objective
            window += 1
            if it % cell.eval_every == 0 or it == n:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                elapsed = time.perf_counter() - window_start
                train_time += elapsed
                extra = {"sec_per_iter": torch.full((model.replicates,), elapsed / window),
                         "train_objective": objective_sum / window}
                rows += task.evaluate(model, estimator, it, extra)
                objective_sum.zero_()
                window, window_start = 0, time.perf_counter()
        rows += task.final_evaluate(model, estimator, n)
    wall = time.perf_counter() - started
    return CellResult(cell, rows, wall, train_time / max(1, n), str(device))
