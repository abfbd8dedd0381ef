"""The study base: what a study is made of, imported by every study (``studies/<name>/``) and by the registry
(``studies/__init__.py``), which names every study.

A :class:`Study` bundles what distinguishes one line of experiments: its training task (a
:class:`estibench.harness.task.Task`, where the data come from and what is measured), its suites (grids of cells, in
the benchopt manner: every key of a grid is a parameter and becomes a column of the results table: a
:class:`Suite` with its :class:`Part` and :class:`Preset` objects) and presets, the command-line flags that pick
values of its model grid, the estimators' order in its report, the published numbers it compares with (as data,
with their source: :class:`Published`) and its report page.  The task and the page are named as
``package.module:Attribute`` and imported when first used, so that reading a study's settings imports no torch code
and no report code.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

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
    index shows as a thumbnail; ``published``: ``module:function(cell, label)`` returning the published value to
    print beside ours for a cell (a mapping of its columns: ``model_name``, its option columns ``model__<option>``,
    …) and an estimator label (a :class:`PublishedValue`, whose budget the row prints too; plain text is printed
    without one; None where there is none)."""

    metric: str
    higher_is_better: bool = True
    figure: str = ""
    published: str = ""
    note: str = ""


@dataclass(frozen=True)
class Settings:
    """What one part of a suite trains, every field given: the model, the estimators and their particle counts K,
    the budget (seeds, iterations, evaluations), the optimiser, and the options of the model, the study and the
    estimators; ``model_grid`` (model option → values) makes one cell per combination.  A :class:`Suite` is its
    settings plus presets and parts; :meth:`Suite.resolved_parts` gives one ``Settings`` per part."""

    model: str
    estimators: Tuple[str, ...]
    particles: Tuple[int, ...]
    seeds: int
    iterations: int
    eval_every: int
    batch_size: int
    lr: float
    model_options: Dict[str, Any] = field(default_factory=dict)
    study_options: Dict[str, Any] = field(default_factory=dict)
    #: estimator name → the options it gets unless the command line gives others
    estimator_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    #: keyword options of the optimiser (``betas``, ``eps``, ``weight_decay``)
    optimiser: Dict[str, Any] = field(default_factory=dict)
    #: model option → the values it takes: one cell per combination, each a column of the results table
    model_grid: Dict[str, Tuple] = field(default_factory=dict)
    #: the study the suite belongs to (set by its :class:`Study`)
    study: str = ""

    def over(self, overrides: "Part") -> "Settings":
        """These settings (as :class:`Settings`) with the fields ``overrides`` sets (not None) in their place;
        a dict-valued field is replaced whole, not merged."""
        own = {f.name: getattr(self, f.name) for f in fields(Settings)}
        return Settings(**{**own, **overrides.overrides()})


@dataclass(frozen=True)
class Part:
    """What one part of a suite changes in the suite's settings (or the preset's): each field set replaces that
    setting whole (a dict is not merged); None keeps it.  The SBN suite's parts: the single-sample estimators at
    K = 1, the multi-sample ones at K = 5, the enumerable model with its own budget, ..."""

    model: Optional[str] = None
    estimators: Optional[Tuple[str, ...]] = None
    particles: Optional[Tuple[int, ...]] = None
    seeds: Optional[int] = None
    iterations: Optional[int] = None
    eval_every: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    model_options: Optional[Dict[str, Any]] = None
    study_options: Optional[Dict[str, Any]] = None
    estimator_options: Optional[Dict[str, Dict[str, Any]]] = None
    optimiser: Optional[Dict[str, Any]] = None
    model_grid: Optional[Dict[str, Tuple]] = None

    def overrides(self) -> Dict[str, Any]:
        """The settings this sets: field name → value, the None fields left out."""
        return {f.name: getattr(self, f.name) for f in fields(Part) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class Preset(Part):
    """An optimiser / budget preset of a suite (``--preset NAME``): the settings it changes, over the suite's and
    under each part's (a :class:`Part`'s fields), and, where given, ``parts`` that replace the suite's."""

    parts: Optional[Tuple[Part, ...]] = None
    description: str = ""


@dataclass(frozen=True)
class Suite(Settings):
    """A grid of cells (``run_all.py --suite NAME``): its settings, and ``parts``, each changing some of them
    (one part that changes nothing: the settings alone); ``presets`` by name, ``default_preset`` the one used
    without ``--preset``.  Precedence: suite < preset < part < command-line flags."""

    description: str = ""
    presets: Dict[str, Preset] = field(default_factory=dict)
    default_preset: Optional[str] = None
    parts: Tuple[Part, ...] = (Part(),)

    def resolved_parts(self, preset: Optional[Preset] = None) -> List[Settings]:
        """One :class:`Settings` per part: the suite's settings, ``preset``'s over them, the part's over those (the
        preset's ``parts``, where it has them, in place of the suite's)."""
        settings = self.over(preset or Part())
        parts = preset.parts if preset is not None and preset.parts is not None else self.parts
        return [settings.over(part) for part in parts]

    @classmethod
    def from_dict(cls, grid: Mapping[str, Any]) -> "Suite":
        """A suite written as a dict (``--suite module:Attr`` naming one; a plug-in study's): its presets and parts
        as dicts too.  A TypeError names a key that is no field."""
        def parts(entries) -> Tuple[Part, ...]:
            return tuple(p if isinstance(p, Part) else Part(**p) for p in entries)

        def preset(entry) -> Preset:
            if isinstance(entry, Preset):
                return entry
            entry = dict(entry)
            if entry.get("parts") is not None:
                entry["parts"] = parts(entry["parts"])
            return Preset(**entry)

        grid = dict(grid)
        if "presets" in grid:
            grid["presets"] = {name: preset(p) for name, p in grid["presets"].items()}
        if "parts" in grid:
            grid["parts"] = parts(grid["parts"])
        return cls(**grid)


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    #: ``module:Class`` of the training task: ``Task(model, cell)`` with train_batch / evaluate / final_evaluate
    task: str
    #: suite name → :class:`Suite` (its settings, presets and parts; a dict is read as :meth:`Suite.from_dict`); each
    #: suite's ``study`` is set to this study's name
    suites: Dict[str, Suite]
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
    #: what its task needs from a model, as the names of declared capabilities (``models/protocols.py``, e.g.
    #: ``("GMM_TRUTH",)``): a model whose ``provides`` (or latent space) lacks one is refused in one line where the
    #: cells are planned, before any work (:meth:`refusal`); names, so that reading a study imports no torch
    needs: Tuple[str, ...] = ()
    #: True: its task trains any model that satisfies the model contract (``models/base.py``), whatever its class
    #: (the generic study); ``models`` then names none, and :func:`estibench.studies.studies_of` does not list it
    any_model: bool = False
    #: ``module:function`` reading the run's ``--data VALUE`` into the study options of every cell
    #: (``function(value) -> dict``, a one-line ValueError for input it cannot use, before any work); empty: the
    #: study takes no ``--data``
    data: str = ""

    def __post_init__(self):
        suites = {name: replace(Suite.from_dict(suite) if isinstance(suite, Mapping) else suite, study=self.name)
                  for name, suite in self.suites.items()}
        object.__setattr__(self, "suites", suites)

    def accepts(self, model_class: type) -> bool:
        """Whether this study's task trains ``model_class``: it is (a subclass of) one of :attr:`models`, or, for a
        study that states its :attr:`needs`, it declares every one of them (``provides``)."""
        from estibench import models
        if self.needs and isinstance(model_class, type) and self.lacking(model_class) is None:
            return True
        return any(isinstance(model_class, type) and issubclass(model_class, models.REGISTRY.factory(name))
                   for name in self.models)

    def trains(self, model_class: type) -> bool:
        """Whether ``--model`` may name ``model_class`` for this study's suites: any model for a study that trains
        any (:attr:`any_model`), else :meth:`accepts`."""
        return self.any_model or self.accepts(model_class)

    def needed(self) -> tuple:
        """The capabilities :attr:`needs` names (``models.protocols`` objects; imports torch)."""
        from estibench.models import protocols
        return tuple(protocols.named(name) for name in self.needs)

    def lacking(self, model_class: type) -> Optional[str]:
        """The name of the first capability of :attr:`needs` that ``model_class`` does not declare in ``provides``
        (read from the class, before it is built), or None."""
        from estibench.models import protocols
        declared = set(getattr(model_class, "provides", ()))
        return next((name for name in self.needs if protocols.named(name) not in declared), None)

    def refusal(self, model, suite: str, model_name: str) -> Optional[str]:
        """One line saying why suite ``suite`` of this study cannot train ``model`` (an instance, built before any
        work) named ``model_name``: a capability of :attr:`needs` it does not provide, or a member of one it lacks;
        None when it can."""
        from estibench.models import protocols
        have = protocols.capabilities(model)
        for name in self.needs:
            cap = protocols.named(name)
            if cap not in have:
                return self.lacking_text(name, suite, model_name)
            lost = cap.missing(model)
            if lost:
                return (f"model {model_name!r} does not fit suite {suite!r}: it needs a model providing the "
                        f"{cap.name} ({name}); {model_name} declares it but lacks {', '.join(lost)}")
        return None

    def lacking_text(self, name: str, suite: str, model_name: str) -> str:
        """The one line refusing ``model_name`` for ``suite`` because it does not provide capability ``name``."""
        from estibench.models.protocols import named
        return (f"model {model_name!r} does not fit suite {suite!r}: it needs a model providing the "
                f"{named(name).name} ({name}); {model_name} does not"
                + ("" if self.any_model else ": use --suite generic"))

    def data_function(self) -> Optional[Callable]:
        """The function :attr:`data` names, or None when the study takes no ``--data``."""
        return import_path(self.data) if self.data else None

    def task_class(self) -> type:
        return import_path(self.task)

    def page_function(self) -> Callable:
        return import_path(self.page)

    def index_function(self) -> Optional[Callable]:
        """The function :attr:`index_page` names, or None when the study adds nothing to the index."""
        return import_path(self.index_page) if self.index_page else None


__all__ = ["Headline", "Part", "Preset", "Published", "PublishedValue", "Settings", "Study", "Suite", "steps_text"]
