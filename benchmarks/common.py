"""Shared set-up of the benchmarks (asv suites and speed scripts): cells, compatibility filters and
the training step they time.  No benchmark lives here (asv collects ``time_``/``peakmem_``/
``track_`` names only).

Conventions
-----------
* GMM: the runner's cell (batch 100, fresh batch from the true model each step) with R = 10
  stacked seeds (the paper-budget suite's seeds, trained as one vectorised program).
* SBN: ``linear1`` (784–200 linear sigmoid belief net) on the embedded ``mnist5k-bern0`` data
  (loaded from its disk cache; about 0.1 s), R = 1 seed, batch 24 drawn uniformly from the
  training images per step, as ``estibench.studies.sbn.task.SBNTask`` does.
* One training step = ``harness.runner.TrainingStep``, the very object ``train_cell`` calls per iteration:
  schedules, fresh batch, ``estimator.gradients`` (θ, φ and the estimator's own parameters), the
  per-replicate finiteness bookkeeping, ``p.grad = g``, one Adam step (``make_optimiser``, own
  parameters at the estimator's learning-rate multiplier).  ``benchmarks/step_speed.py --runner`` also times
  ``train_cell`` itself (:class:`RunnerBlock`: with the task's trajectory hook and the evaluations' bookkeeping).
* Every estimator in ``estimators.names()`` is included; pairs whose ``check(model, K)`` raises
  ``IncompatibleError`` are skipped (asv: ``NotImplementedError`` in ``setup``).
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from estibench import estimators  # noqa: E402
from estibench import models  # noqa: E402
from estibench.harness.runner import TrainingStep, make_optimiser  # noqa: E402
from estibench.harness.task import Task  # noqa: E402

GMM_SEEDS = tuple(range(10))
GMM_BATCH = 100
GMM_PARTICLES = (2, 20)
SBN_SEEDS = (0,)
SBN_BATCH = 24
SBN_PARTICLES = (1, 5)
SBN_DATASET = "mnist5k-bern0"
#: draws of the gradient-variance benchmarks (time and track)
VARIANCE_DRAWS = 100
TRACK_SEED = 20240611


def compatible(model, names=None, particles=None):
    """Registered estimators accepted by ``model`` for at least one K in ``particles``."""
    out = []
    for name in (estimators.names() if names is None else names):
        try:
            est = estimators.get(name)
        except Exception:  # noqa: BLE001 - an estimator under construction must not break the suite
            continue
        for K in particles:
            try:
                est.check(model, K)
            except estimators.IncompatibleError:
                continue
            out.append(name)
            break
    return out


def check_or_skip(est, model, K):
    """asv skips a parameter combination whose setup raises NotImplementedError."""
    try:
        est.check(model, K)
    except estimators.IncompatibleError as err:
        raise NotImplementedError(str(err)) from None


@functools.lru_cache(maxsize=1)
def sbn_data():
    from estibench import data as estidata
    return estidata.load(SBN_DATASET)


def sbn_model(seeds=SBN_SEEDS, train_mean=None):
    """The linear SBN; ``train_mean`` defaults to the dataset's (no data needed if given)."""
    if train_mean is None:
        train_mean = sbn_data().train_mean
    return models.get("sbn", seeds=tuple(seeds), arch="linear1", train_mean=train_mean)


def sbn_fixed_batch(R=1, B=SBN_BATCH):
    """A fixed batch: the first B training images, the same for every replicate ``[R, B, 784]``."""
    return sbn_data().train[:B].expand(R, B, -1).contiguous()


def sbn_batcher(model, B=SBN_BATCH):
    train = sbn_data().train.to(device=model.device, dtype=model.dtype)
    R = model.replicates

    def batch():
        return train[torch.randint(train.shape[0], (R, B), device=train.device)]
    return batch


def gmm_model(seeds=GMM_SEEDS):
    return models.get("gmm", seeds=tuple(seeds))


def gmm_batcher(model, B=GMM_BATCH):
    true = model.true_model()
    return lambda: true.sample(B)[1]


def gmm_test_points(model, M=100, seed=20190501):
    """The GMM study's 100 fixed test points (``estibench.studies.gmm.task.GMMTask``), ``[R, M]``."""
    true = model.true_model()
    gen = torch.Generator().manual_seed(seed)
    probs = true.prior_probs()[0].detach()
    z = torch.multinomial(probs, M, replacement=True, generator=gen)
    x = true.means[z] + true.std * torch.randn(M, generator=gen)
    return x.expand(model.replicates, M).contiguous()


def bind(name, model, K):
    est = estimators.get(name)
    check_or_skip(est, model, K)
    est.bind(model)
    est.to(model.device)
    return est


class _Batches(Task):
    """A task that only supplies training batches (a training step asks nothing else of it; it evaluates nothing)."""

    def __init__(self, batch):  # no cell: only the training step uses it
        self._batch = batch

    def train_batch(self):
        return self._batch()

    def evaluate(self, model, estimator, iteration, extra=None):
        return []


class Trainer:
    """The runner's per-iteration work (``harness.runner.TrainingStep``, see the module docstring), as one
    callable; ``compile`` is the runner's ``--compile`` mode."""

    def __init__(self, model, est, batch, K, lr=1e-3, compile="off"):
        self.model, self.est, self.batch, self.K = model, est, batch, K
        own = list(est.parameters())
        self.params = list(model.parameters()) + own
        self.opt = make_optimiser(list(model.parameters()), lr, own, getattr(est, "own_lr_multiplier", 1.0))
        # a long nominal budget: the schedules stay at their start, as a benchmark's few hundred steps would
        self.step = TrainingStep(model, est, _Batches(batch), K, 10 ** 9, self.opt, self.params, compile=compile)
        self.it = 0

    def __call__(self):
        self.it += 1
        self.step(self.it)


def block(step, n: int) -> float:
    """Seconds per call of ``step`` over a block of ``n`` calls (wall clock)."""
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def harness_trainer(name, batch=SBN_BATCH, K=1):
    """The harness step of ``name`` on the linear SBN (R = 1), after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    model = sbn_model()
    return Trainer(model, bind(name, model, K), sbn_batcher(model, batch), K)


class RunnerBlock:
    """Each call trains a fresh ``train_cell`` on the ``sbn`` study (linear SBN, K = 1, R = 1, cheap evaluation
    options) for ``steps`` iterations and returns its ``sec_per_iter`` (evaluations excluded)."""

    def __init__(self, estimator):
        self.estimator = estimator

    def seconds_per_step(self, steps):
        from estibench.harness.runner import Cell, train_cell
        from estibench.studies import TASKS
        cell = Cell(study="sbn", model="sbn", estimator=self.estimator, particles=1, seeds=(0,),
                    iterations=steps, eval_every=steps, batch_size=SBN_BATCH, lr=1e-3, device="cpu",
                    model_options={"arch": "linear1", "dataset": "mnist5k-bern0"},
                    study_options={"eval_particles": 1, "final_particles": (1,), "eval_points": 8,
                                   "elbo_samples": 1, "grad_samples": 2})
        result = train_cell(cell, TASKS["sbn"])
        if result.status != "done":
            raise RuntimeError(f"runner: {self.estimator} {result.status}: {result.error}")
        return result.sec_per_iter


def mean_variance(draws: torch.Tensor) -> float:
    """Mean over replicates and coordinates of the sample variance (ddof 1) of ``[n, R, D]`` draws."""
    return float(draws.double().var(0, unbiased=True).mean())


# -- for the Markdown records ----------------------------------------------------------------
def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head + (" + uncommitted changes" if dirty else "")) if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def header(command: str, extra: str = "", load_before: str = "", threads: str = "1 torch thread per process") -> str:
    """A record's header; ``threads`` says how many torch threads the measured processes used."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Command: `{command}`  ",
             f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
             f"Python {platform.python_version()}, torch {torch.__version__}, {threads}  ",
             f"Commit: {git_commit()}; measured {now}  ",
             f"Load average before / after: {load_before or 'n/a'} / {load_average()}"]
    if extra:
        lines.append("")
        lines.append(extra)
    return "\n".join(lines) + "\n"


def command_line(script: str, argv=None) -> str:
    """The command that produced a record: ``python benchmarks/SCRIPT ARGS`` (``argv`` default: this process's)."""
    args = argv if argv is not None else sys.argv[1:]
    return " ".join(["python", f"benchmarks/{os.path.basename(script)}", *args])


def write_record(text: str, out: str) -> None:
    """Print a Markdown record and write it to ``out`` (``"-"``: print only)."""
    print(text)
    if out != "-":
        with open(out, "w") as fh:
            fh.write(text)


def markdown(rows, columns, floatfmt=".2f") -> str:
    import pandas as pd
    return pd.DataFrame(rows, columns=columns).to_markdown(index=False, floatfmt=floatfmt) + "\n"
