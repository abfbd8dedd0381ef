"""The study registry: every study by name.  A study is one folder, ``studies/<name>/``: its ``Study`` (suites,
presets, flags, published numbers: ``studies/<name>/__init__.py``, built on :mod:`estibench.studies.base`), its
training task (``task.py``), its report page and its settings page (``README.md``).

Adding a study: one folder defining ``STUDY = Study(...)`` plus one registry line below (or an entry point in the
group ``estibench.studies``); nothing in the engine (``harness/``), the CLI, ``reports/`` or another study changes.
The registry names the studies as ``package.module:STUDY`` strings imported on first use, so importing it is cheap;
a study imports the study base (:mod:`estibench.studies.base`), never this registry, so the imports point one way
(study base → each study → this registry → reports, CLI).  The CLI and the site look a study up by name; the engine
never does (a cell carries its task: ``Cell.task``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Dict, Optional

from estibench.models.registry import Registry, UnknownNameError, import_path

from .base import Headline, Part, Preset, Published, PublishedValue, Settings, Study, Suite, steps_text


def _lazy(spec: str) -> Callable[[], Study]:
    return lambda: import_path(spec)


REGISTRY = Registry("study", group="estibench.studies")
REGISTRY.register("gmm")(_lazy("estibench.studies.gmm:STUDY"))
REGISTRY.register("sbn")(_lazy("estibench.studies.sbn:STUDY"))
REGISTRY.register("rbm")(_lazy("estibench.studies.rbm:STUDY"))
REGISTRY.register("vae")(_lazy("estibench.studies.vae:STUDY"))
REGISTRY.register("air")(_lazy("estibench.studies.air:STUDY"))
REGISTRY.register("conv")(_lazy("estibench.studies.conv:STUDY"))
REGISTRY.register("generic")(_lazy("estibench.studies.generic:STUDY"))

_CACHE: Dict[str, Study] = {}


def get(name: str) -> Study:
    """The study registered as ``name`` (one-line :class:`UnknownNameError` otherwise)."""
    if name not in _CACHE:
        study = REGISTRY.get(name)
        if not isinstance(study, Study) or study.name != name:
            raise UnknownNameError(f"study {name!r} is registered as {study!r}, not a Study named {name!r}")
        _CACHE[name] = study
    return _CACHE[name]


def lookup(name: str) -> Optional[Study]:
    """The study registered as ``name``, or None when no study is: a name a store or a table holds is data, so an
    unregistered one (``"pkg.mod:X"`` included) is never imported.  A registered study that fails to load raises."""
    return None if REGISTRY.known(name) is None else get(name)


def names():
    return REGISTRY.names()


def unregister(name: str) -> None:
    """Forget the study registered as ``name`` in this process (a test's temporary study, registered with
    ``REGISTRY.register(name)``); an unknown name is ignored."""
    if name in REGISTRY:
        REGISTRY.unregister(name)
    _CACHE.pop(name, None)


def suites() -> Dict[str, Suite]:
    """Every suite of every study: suite name → :class:`Suite` (its ``study`` set; suite names are unique across
    studies)."""
    out: Dict[str, Suite] = {}
    for study in names():
        for name, suite in get(study).suites.items():
            if name in out:
                raise ValueError(f"suite {name!r} is defined by two studies")
            out[name] = suite
    return out


def studies_of(model_class: type) -> list:
    """The names of the registered studies whose task trains ``model_class`` (``Study.accepts``), in registry order; a
    study that trains any model (``Study.any_model``, the generic study) is not listed: it would be for every model."""
    return [name for name in names() if get(name).accepts(model_class)]


def task_class(study: str) -> type:
    """The training task class of the study registered as ``study`` (its ``Study.task``)."""
    return get(study).task_class()


class _Tasks(Mapping):
    """study name → its training task class (:func:`task_class`), for scripts and tests that train a cell directly
    (``train_cell(cell, TASKS["gmm"])``)."""

    def __getitem__(self, study):
        return task_class(study)

    def __iter__(self):
        return iter(names())

    def __len__(self):
        return len(names())


TASKS = _Tasks()

__all__ = ["Study", "Suite", "Part", "Preset", "Settings", "Published", "PublishedValue", "Headline", "REGISTRY",
           "TASKS", "get", "lookup", "names", "steps_text", "studies_of", "suites", "task_class", "unregister"]
