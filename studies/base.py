"""The study base: what a study is made of, imported by every study (``studies/<name>/``) and by the registry
(``studies/__init__.py``), which names every study.

A :class:`Study` bundles what distinguishes one line of experiments: its training task (a
:class:`estibench.harness.task.Task`, where the data come from and what is measured), its suites (grids of cells, in
the benchopt manner: every key of a grid is a parameter and becomes a column of the results table) and presets, the
command-line flags that pick values of its model grid, the estimators' order in its report, the published numbers it
compares with (as data, with their source: :class:`Published`) and its report page.  The task and the page are named
as ``package.module:Attribute`` and imported when first used, so that reading a study's settings imports no torch
code and no report code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from estibench.models.registry import import_path


@dataclass(frozen=True)
class PublishedValue:
    """One published number with the budget behind it, as data (a leaderboard prints both on the row):
    ``value`` as the source prints it, ``source`` (short: paper and table), ``steps`` (training steps) and
    ``data`` (training data)."""

    value: str
    source: str = ""
    steps: Optional[int] = None
    data: str = ""

    def __str__(self) -> str:
        return str(self.value)

    @property
    def cost(self) -> str:
        """``2M steps, static MNIST, 50k images``: what the number cost (training steps and data)."""
        return ", ".join(([steps_text(self.steps)] if self.steps else []) + ([self.data] if self.data else []))

    @property
    def budget(self) -> str:
        """``DVAE++ Table 1: 2M steps, static MNIST …``: where the number comes from, what it cost."""
        text = self.cost
        return f"{self.source}: {text}" if text and self.source else (text or self.source)


def steps_text(steps: int) -> str:
    """A training budget in steps, short: ``2M steps``, ``1k steps``, ``300 steps``, ``2.5k steps``."""
    steps = int(steps)
    for size, unit in ((1_000_000, "M"), (1_000, "k")):
        if steps >= size:
            return f"{steps / size:g}{unit} steps"
    return f"{steps} steps"


@dataclass(frozen=True)
class Published:
    """Published numbers as data: ``values[(data, architecture)][estimator label]`` with their source and, where
    the source states them, the budget behind them (``steps``, training ``data``; ``short``: the source's short
    name, e.g. "DVAE++ Table 1")."""

    source: str
    values: Dict
    note: str = ""
    steps: Optional[int] = None
    data: str = ""
    short: str = ""

    def lookup(self, key, label: str) -> Optional[PublishedValue]:
        """The published value of ``label`` under ``key`` with this table's budget (None where there is none)."""
        value = self.values.get(key, {}).get(label)
        if value is None:
            return None
        return PublishedValue(str(value), self.short or self.source, self.steps, self.data)


@dataclass(frozen=True)
class Headline:
    """The one metric a study's leaderboard ranks by (the site's index opens with it): its final value per seed,
    mean and interval over seeds, per model and K.  ``figure``: the name of the page section whose figure the
    index shows as a thumbnail; ``published``: ``module:function(model_name, model_options, label)`` returning the
    published value to print beside ours (a :class:`PublishedValue`, whose budget the row prints too; plain text
    is printed without one; None where there is none)."""

    metric: str
    higher_is_better: bool = True
    figure: str = ""
    published: str = ""
    note: str = ""


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    #: ``module:Class`` of the training task: ``Task(model, cell)`` with train_batch / evaluate / final_evaluate
    task: str
    #: suite name → grid (study, model, estimators, particles, seeds, iterations, eval_every, batch_size,
    #: lr, model_grid, presets, default_preset, study_options, parts, description)
    suites: Dict[str, dict]
    #: ``module:function`` of the report page: ``sections(table, cells, artifacts=None) -> list[Section]``
    page: str = ""
    #: command-line flag → (model option of the suite's ``model_grid``, help text)
    grid_flags: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    #: estimators in the order the report lists them (others follow, alphabetically)
    order: Tuple[str, ...] = ()
    #: published tables this study prints beside its numbers
    published: Dict[str, Published] = field(default_factory=dict)
    #: the metrics its report defines, in the order it lists them (definitions: ``harness/definitions.py``)
    metrics: Tuple[str, ...] = ()
    #: definitions of metrics this study records beyond the built-in ones (``harness/definitions.py``)
    definitions: Dict[str, str] = field(default_factory=dict)
    #: the metric its leaderboard on the site's index ranks by (none: no leaderboard)
    headline: Optional[Headline] = None
    #: the registered models its task trains (by registry name); a subclass of one of them is accepted too (a
    #: plug-in model with another default needs no line here).  Models do not name studies.
    models: Tuple[str, ...] = ()
    #: ``module:function`` of what the study adds to the site's index under the leaderboards (optional):
    #: ``index_sections(table, folder) -> (heading, list[Section])``, ``table`` its rows, ``folder`` its page's folder
    #: relative to the index (the GMM study's paper-budget reference beside a short run)
    index_page: str = ""

    def accepts(self, model_class: type) -> bool:
        """Whether this study's task trains ``model_class``: it is (a subclass of) one of :attr:`models`."""
        from estibench import models
        return any(isinstance(model_class, type) and issubclass(model_class, models.REGISTRY.factory(name))
                   for name in self.models)

    def task_class(self) -> type:
        return import_path(self.task)

    def page_function(self) -> Callable:
        return import_path(self.page)

    def index_function(self) -> Optional[Callable]:
        """The function :attr:`index_page` names, or None when the study adds nothing to the index."""
        return import_path(self.index_page) if self.index_page else None


__all__ = ["Headline", "Published", "PublishedValue", "Study", "steps_text"]
