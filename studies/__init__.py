"""Studies: each study is one object, registered once.

A :class:`Study` bundles what distinguishes one line of experiments: its training task (where the
data come from and what is measured), its suites (grids of cells, in the benchopt manner: every
key of a grid is a parameter and becomes a column of the results table) and presets, the
command-line flags that pick values of its model grid, the estimators' order in its report, the
published numbers it compares with (as data, with their source) and its report page.  The CLI, the
sweep and the site look a study up by name.

Adding a study: one module (or folder) defining ``STUDY = Study(...)`` plus one registry line below
(or an entry point in the group ``estibench.studies``); nothing in ``harness/cli.py``,
``reports/site.py`` or another study changes.  The task and the page are named as
``package.module:Attribute`` and imported when first used, so importing the registry is cheap and
the dependencies point one way (studies → harness, reports).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from estibench.models.registry import Registry, UnknownNameError, import_path


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

    def task_class(self) -> type:
        return import_path(self.task)

    def page_function(self) -> Callable:
        return import_path(self.page)


def _lazy(spec: str) -> Callable[[], Study]:
    return lambda: import_path(spec)


REGISTRY = Registry("study", group="estibench.studies")
REGISTRY.register("gmm")(_lazy("estibench.studies.gmm:STUDY"))
REGISTRY.register("sbn")(_lazy("estibench.studies.sbn:STUDY"))
REGISTRY.register("rbm")(_lazy("estibench.studies.rbm:STUDY"))
REGISTRY.register("vae")(_lazy("estibench.studies.vae:STUDY"))
REGISTRY.register("air")(_lazy("estibench.studies.air:STUDY"))

_CACHE: Dict[str, Study] = {}


def get(name: str) -> Study:
    """The study registered as ``name`` (one-line :class:`UnknownNameError` otherwise)."""
    if name not in _CACHE:
        study = REGISTRY.get(name)
        if not isinstance(study, Study) or study.name != name:
            raise UnknownNameError(f"study {name!r} is registered as {study!r}, not a Study named {name!r}")
        _CACHE[name] = study
    return _CACHE[name]


def names():
    return REGISTRY.names()


def unregister(name: str) -> None:
    """Forget the study registered as ``name`` in this process (a test's temporary study, registered with
    ``REGISTRY.register(name)``); an unknown name is ignored."""
    if name in REGISTRY:
        REGISTRY.unregister(name)
    _CACHE.pop(name, None)


def suites() -> Dict[str, dict]:
    """Every suite of every study: suite name → grid (suite names are unique across studies)."""
    out: Dict[str, dict] = {}
    for study in names():
        for suite, grid in get(study).suites.items():
            if suite in out:
                raise ValueError(f"suite {suite!r} is defined by two studies")
            out[suite] = {**grid, "study": study}
    return out


__all__ = ["Study", "Published", "PublishedValue", "REGISTRY", "get", "names", "suites", "unregister"]
