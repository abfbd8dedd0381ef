"""The names the command line's ``--help`` lists (the estimators, the suites, the studies' grid flags, the datasets,
a few constants of the engine), read without importing torch, numpy, pandas or a study, so that ``--help`` answers
at once.  Nothing here is a list kept by hand: each name is read from the source file that registers it, with
:mod:`ast`, not imported:

* the estimators: the ``REGISTRY.register("NAME")`` lines of ``estimators/__init__.py``, plus the names of the entry
  points of the group ``estibench.estimators`` (installed plug-ins; named, not loaded);
* the studies: the ``REGISTRY.register("NAME")(_lazy("package.module:STUDY"))`` lines of ``studies/__init__.py``, and
  in each study's module the ``suites`` (their names) and ``grid_flags`` of its ``STUDY = Study(...)``;
* a constant (``COMPILE_MODES``, ``MIN_DRAWS``...): its ``NAME = literal`` line at the top of its module.

A module already imported is asked instead (what this process registered counts, e.g. a test's temporary study), and
whatever the source does not say plainly (a suite dict built by a function, a study plug-in, a file that is not
there) is read by importing, as before: slower, never wrong.  ``tests/test_cli_help.py`` checks that what is read here
equals what the registries say."""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import os
import sys
from typing import Dict, List, Tuple

ESTIMATORS = "estibench.estimators"
STUDIES = "estibench.studies"


class Unreadable(Exception):
    """The source does not say it plainly; the caller imports the module instead."""


def _source(module: str) -> str:
    """The path of ``module``'s source file, found without importing it (nor its package: only ``estibench``
    itself, which imports nothing, is imported to find the subpackages' folders)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "estibench":
        raise Unreadable(module)
    try:
        spec = importlib.util.find_spec(".".join(parts[:2]))
    except (ImportError, ValueError):
        raise Unreadable(module) from None
    if spec is None:
        raise Unreadable(module)
    if len(parts) == 2 or not spec.submodule_search_locations:
        path = spec.origin
    else:
        path = os.path.join(list(spec.submodule_search_locations)[0], *parts[2:])
        path = os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"
    if not path or not path.endswith(".py") or not os.path.isfile(path):
        raise Unreadable(module)
    return path


@functools.lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    try:
        with open(_source(module), encoding="utf-8") as f:
            return ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        raise Unreadable(module) from None


def _assigned(module: str, name: str) -> ast.expr:
    """The expression of the last top-level ``name = ...`` (or ``name: T = ...``) of ``module``."""
    found = None
    for node in _tree(module).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name \
                and node.value is not None:
            found = node.value
    if found is None:
        raise Unreadable(f"{module}.{name}")
    return found


def _literal(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise Unreadable(ast.dump(node)[:80]) from None


def literal(module: str, name: str):
    """The value of the top-level constant ``name`` of ``module``: the module's own when it is imported, else the
    literal its source assigns (the module imported when the source does not assign a literal)."""
    if module not in sys.modules:
        try:
            return _literal(_assigned(module, name))
        except Unreadable:
            pass
    return getattr(importlib.import_module(module), name)


def _registrations(module: str) -> List[Tuple[str, List[ast.expr]]]:
    """``(NAME, [what is registered])`` for each top-level ``REGISTRY.register("NAME")(...)`` line of ``module``."""
    out = []
    for node in _tree(module).body:
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Call)):
            continue
        register = call.func
        if not (isinstance(register.func, ast.Attribute) and register.func.attr == "register"
                and isinstance(register.func.value, ast.Name) and register.func.value.id == "REGISTRY"):
            continue
        if len(register.args) != 1 or not isinstance(register.args[0], ast.Constant) \
                or not isinstance(register.args[0].value, str):
            raise Unreadable(f"{module}: a registration whose name is not written out")
        out.append((register.args[0].value, list(call.args)))
    if not out:
        raise Unreadable(f"{module}: no registration")
    return out


def _entry_point_names(group: str) -> List[str]:
    from importlib import metadata
    try:
        return [entry.name for entry in metadata.entry_points(group=group)]
    except Exception:  # noqa: BLE001 - broken metadata: the names the registry itself would find, by importing
        raise Unreadable(group) from None


def estimator_names() -> List[str]:
    """``estimators.names()``: the registered estimators and the installed plug-ins (by their entry points' names),
    sorted; not the ``package.module:Class`` paths this process has admitted as it used them (a plug-in named by
    its path is not a registered name)."""
    if ESTIMATORS not in sys.modules:
        try:
            return sorted({name for name, _ in _registrations(ESTIMATORS)} | set(_entry_point_names(ESTIMATORS)))
        except Unreadable:
            pass
    return [name for name in importlib.import_module(ESTIMATORS).names() if ":" not in name]


def _study_from_source(spec: str) -> Tuple[List[str], Dict[str, Tuple[str, str]]]:
    """(suite names, grid flags) of the study that ``package.module:ATTRIBUTE`` names, from its ``ATTRIBUTE =
    Study(...)`` line."""
    module, _, attribute = spec.partition(":")
    call = _assigned(module, attribute)
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Study"):
        raise Unreadable(spec)
    keywords = {k.arg: k.value for k in call.keywords}
    if None in keywords or not isinstance(keywords.get("suites"), ast.Dict):  # **options, or suites computed
        raise Unreadable(spec)
    suites = []
    for key in keywords["suites"].keys:
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise Unreadable(spec)
        suites.append(key.value)
    flags = _literal(keywords["grid_flags"]) if "grid_flags" in keywords else {}
    if not isinstance(flags, dict):
        raise Unreadable(spec)
    return suites, flags


@functools.lru_cache(maxsize=None)
def _studies_from_source() -> Dict[str, Tuple[List[str], Dict[str, Tuple[str, str]]]]:
    if _entry_point_names(STUDIES):  # a study plug-in's suites are known only by loading it
        raise Unreadable(STUDIES)
    out = {}
    for name, registered in _registrations(STUDIES):
        lazy = registered[0] if len(registered) == 1 else None
        if not (isinstance(lazy, ast.Call) and isinstance(lazy.func, ast.Name) and lazy.func.id == "_lazy"
                and len(lazy.args) == 1 and isinstance(lazy.args[0], ast.Constant)
                and isinstance(lazy.args[0].value, str)):
            raise Unreadable(f"study {name}")
        out[name] = _study_from_source(lazy.args[0].value)
    return out


def studies() -> Dict[str, Tuple[List[str], Dict[str, Tuple[str, str]]]]:
    """study name → (its suites' names, its grid flags ``{flag: (model option, help)}``), in the order of
    ``studies.names()``."""
    if STUDIES not in sys.modules:
        try:
            found = _studies_from_source()
            return {name: found[name] for name in sorted(found)}
        except Unreadable:
            pass
    registry = importlib.import_module(STUDIES)
    return {name: (list(registry.get(name).suites), dict(registry.get(name).grid_flags))
            for name in registry.names()}


def suite_names() -> List[str]:
    """Every study's suites by name, sorted (the names of ``studies.suites()``)."""
    return sorted(name for suites, _ in studies().values() for name in suites)


def grid_flags() -> Dict[str, Tuple[str, str]]:
    """The flags that pick values of a suite's model grid, as each study declares them (``Study.grid_flags``):
    flag → (model option, help); what ``cli.run.grid_flags()`` returns."""
    out: Dict[str, Tuple[str, str]] = {}
    for _, flags in studies().values():
        out.update(flags)
    return out


def dataset_names() -> List[str]:
    """``data.names()``: the dataset names, the embedded (no-download) one first."""
    module = "estibench.data.datasets"
    if module in sys.modules:
        return sys.modules[module].names()
    return list(literal(module, "_NAMES"))
