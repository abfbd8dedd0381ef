"""The training task of a study: what the runner (``harness/runner.py``) calls while it trains one cell.

A study names its task class (``Study.task``, ``"pkg.mod:Class"``); whoever makes a cell from the study copies that name
into the cell (``Cell.task``), and the engine imports it from there (:func:`task_class`) without knowing any study.
The runner builds it once per cell as
``Task(model, cell)`` after the model and the estimator, and then calls exactly the hooks below, in this order:

1. ``evaluate(model, estimator, 0)`` and ``final_evaluate(model, estimator, 0)``: the metrics at initialisation;
2. every iteration: ``train_batch()``, the estimator's gradients on it, ``observe(model_grads)``, one optimiser step;
3. every ``eval_every`` iterations and at the last one: ``evaluate(model, estimator, it, extra)``;
4. after the last iteration: ``final_evaluate(model, estimator, n)``, then ``final_artifacts(model)``.

``train_batch`` and ``evaluate`` are required (abstract); every other hook has a no-op default, so a task states only
what it measures.  Every measurement (``evaluate``, ``final_evaluate``, ``final_artifacts``) runs on a random stream
of its own with the model's and estimator's state restored afterwards (``harness/measurement.py``): it cannot change
the training trajectory.  A metric row is ``(seed, iteration, metric name, value)``, one per replicate.

The runner refuses (one line) an object that is not an instance of :class:`Task`.
"""
from __future__ import annotations

import abc
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

#: one metric value of one replicate: (seed, iteration, metric name, value)
Row = Tuple[int, int, str, float]


class Task(abc.ABC):
    """Base class of every study's training task (see the module's docstring for the order of the calls).

    Attributes set by :meth:`__init__`: ``cell`` (the :class:`harness.runner.Cell` being trained), ``model`` (the
    bound, replicated model) and ``options`` (the class's :attr:`defaults` updated by ``cell.study_options``).
    """

    #: the study options' defaults; ``self.options`` is these updated by the cell's ``study_options``
    defaults: Mapping[str, Any] = MappingProxyType({})

    #: the gradient basket's members for this cell, label → bound estimator, built at the first evaluation by
    #: ``harness.basket.evaluate_basket`` when the study options name a basket (None until then, or without one)
    basket: Optional[Dict[str, Any]] = None
    #: label → why the basket left that member out on this cell (set with :attr:`basket`)
    basket_skipped: Mapping[str, str] = MappingProxyType({})

    def __init__(self, model, cell):
        """Build the task for ``cell`` on ``model`` (already built, bound and on its device): load or draw the data,
        fix the test sets.  Subclasses call ``super().__init__(model, cell)`` first."""
        self.cell = cell
        self.model = model
        self.options: Dict[str, Any] = {**self.defaults, **cell.study_options}

    @classmethod
    def refusal(cls, model, cell) -> Optional[str]:
        """One line saying why this task cannot train ``model`` (built with one replicate, before any work) under
        ``cell``'s options (data it cannot read, observations of another shape than the model's), or None when it
        can.  The command line asks it where the cells are planned, before the store is opened.  Default: None."""
        return None

    @abc.abstractmethod
    def train_batch(self) -> torch.Tensor:
        """The next training batch ``[R, B, ...]`` (one per replicate), drawn from the cell's training stream."""

    @abc.abstractmethod
    def evaluate(self, model, estimator, iteration: int, extra: Optional[Dict[str, torch.Tensor]] = None
                 ) -> List[Row]:
        """The metric rows at ``iteration`` (0, every ``eval_every`` iterations, and the last).  ``extra``: metrics
        the runner measured itself (``sec_per_iter``, ``train_objective``, each ``[R]``; absent at iteration 0) to be
        recorded with the task's."""

    def final_evaluate(self, model, estimator, iteration: int) -> List[Row]:
        """The metric rows measured only at initialisation (``iteration`` 0) and after training (the last
        iteration).  Default: none."""
        return []

    def observe(self, model_grads: Sequence[torch.Tensor]) -> None:
        """Called every training iteration with the estimator's model-parameter gradients (``[R, ...]`` per
        parameter, before the optimiser step), e.g. for trajectory statistics.  It must not read a tensor back to
        the host (the training step never synchronises).  Default: nothing."""

    def final_artifacts(self, model) -> Optional[Dict[str, Tuple[str, bytes]]]:
        """Files stored beside the cell after its final metrics: name → (MIME type, bytes) (``harness.store``).
        Default: none."""
        return None


def rows_from(metrics: Dict[str, torch.Tensor], seeds, iteration: int) -> List[Row]:
    """Metric rows ``(seed, iteration, name, value)`` from ``name → [R]`` values, one per replicate (``seeds``)."""
    out = []
    for name, values in metrics.items():
        for seed, v in zip(seeds, values.detach().cpu().tolist()):
            out.append((seed, iteration, name, v))
    return out



def task_class(spec: str) -> type:
    """The :class:`Task` subclass a cell names (``Cell.task``, ``"package.module:Class"``); one-line errors for an
    empty name (a cell made without its study's task), a name that does not import, or a class that is not a Task."""
    from estibench.models.registry import import_path
    if not spec:
        raise TypeError("the cell names no task: set Cell.task to the study's task (\"package.module:Class\"), "
                        "e.g. estibench.studies.get(study).task")
    return require_task(import_path(spec))


def require_task(task) -> Task:
    """``task`` itself if it is a :class:`Task` (or a subclass of it), else a one-line :class:`TypeError`."""
    if not (isinstance(task, Task) or isinstance(task, type) and issubclass(task, Task)):
        kind = task.__name__ if isinstance(task, type) else type(task).__name__
        raise TypeError(f"a study's task must subclass estibench.harness.task.Task; got {kind}")
    return task


__all__ = ["Row", "Task", "require_task", "rows_from", "task_class"]
