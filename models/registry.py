"""A tiny name -> factory registry shared by :mod:`models` and :mod:`estimators`.

Names are stable strings (``"gmm"``, ``"vimco"``).  ``get`` refuses an unknown name with a
one-line error that suggests the closest registered names.

Bring your own: a name of the form ``package.module:Attribute``, typed on the command line for a run,
is imported on first use and registered under that name (so it runs through every suite, the store
and the reports like a built-in, with that stable label; worker processes resolve it the same way),
and installed packages may declare plugins in the entry-point group ``estibench.<kind>s`` (e.g.
``estibench.estimators``), registered under the entry point's name.  The module is found on
``sys.path`` only: the current folder is not searched (install the package, or run with
``PYTHONPATH=.``).  What it loads must be of the registry's kind (a subclass of ``base``, or what
``admits`` accepts — the suite registry takes only a suite grid, and calls nothing it loads);
anything else, and a module that raises while it is imported (NameError, SyntaxError, any
Exception), is refused with one line naming the plug-in and the error.

Reading is not running: :meth:`Registry.known` returns what is already registered under a name, or
None, and never imports a module or loads an entry point.  The reports, ``--dry-run`` and the
store's upgrades look names up only through it, so a store that names ``helper:X`` is read as data
and ``helper.py`` is never imported by opening it.

Options are checked before the factory runs (:func:`check_options`): an option the factory does
not take, or a value of the wrong kind for its default (text for a number, a non-finite number, a
number for a tuple of sizes), is refused with one line naming the option and what it takes.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import math
import numbers
import os
import sys
import traceback
from importlib import metadata
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional


class UnknownNameError(KeyError):
    """An unknown registry name; ``str()`` is a one-line message with suggestions."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class PluginImportError(UnknownNameError):
    """A plug-in module that raised while it was imported; ``str()`` names the plug-in, the error and where."""


def _where(err: BaseException) -> str:
    """`` (mod.py line 3)``: where an error raised while importing a module comes from (its innermost frame
    outside the import machinery; a SyntaxError's own file and line)."""
    if isinstance(err, SyntaxError) and err.filename:
        return f" ({os.path.basename(err.filename)} line {err.lineno})" if err.lineno else \
            f" ({os.path.basename(err.filename)})"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<frozen")]
    if not frames:
        return ""
    return f" ({os.path.basename(frames[-1].filename)} line {frames[-1].lineno})"


def import_path(spec: str):
    """``package.module:Attribute`` → the attribute, the module found on ``sys.path`` (never the current
    folder implicitly).  One-line errors (:class:`UnknownNameError`): a module not found, an attribute it
    lacks, and (:class:`PluginImportError`) any exception the module raises while it is imported."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UnknownNameError(f"cannot read {spec!r}; write package.module:Attribute")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        hint = ""
        if err.name == module_name.split(".")[0]:  # the package itself, not a module it imports
            hint = " (the current folder is not searched: install the package or run with PYTHONPATH=.)"
        raise UnknownNameError(f"cannot import {module_name!r} for {spec!r}: {err}{hint}") from None
    except ImportError as err:
        raise UnknownNameError(f"cannot import {module_name!r} for {spec!r}: {err}") from None
    except Exception as err:  # noqa: BLE001 - SyntaxError, NameError, whatever the plug-in raises at import
        text = str(err).splitlines()[0] if str(err) else ""
        if isinstance(err, SyntaxError):
            text = err.msg or text
        raise PluginImportError(f"plug-in {spec!r} failed to import: {type(err).__name__}"
                                f"{': ' + text if text else ''}{_where(err)}") from None
    try:
        out = module
        for part in attr.split("."):
            out = getattr(out, part)
    except AttributeError:
        raise UnknownNameError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})") from None
    return out


def _signature(factory) -> Optional[inspect.Signature]:
    target = factory
    implementations = getattr(factory, "implementations", None)  # an estimator family: its first implementation
    if implementations:
        target = implementations[0]
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Revision:
    """A change of a class's code that altered the numbers it computes, declared on that class (``revisions``).
    A cell's numerics version is 1 + the number of revisions of the engine, its model class and its estimator
    implementation (``harness.runner.numerics_history``); it is part of the cell's key, so a revised cell is
    computed anew.  ``order``: the project-wide sequence of revisions (how a cell's revisions are ordered into
    versions; the next one takes the next number); ``invalidates``: a cell computed before it is wrong (a bias
    fixed) and is left out of every table until rerun; otherwise it stays valid under its own version."""

    order: int
    what: str
    invalidates: bool = True


def signature_defaults(factory) -> Dict[str, object]:
    """See :meth:`Registry.defaults`.  A constructor that passes ``**kwargs`` on (``def __init__(self, num_clusters=5,
    **kw): super().__init__(num_clusters=num_clusters, **kw)``) takes its parents' options too: their defaults are
    read up the class hierarchy, the nearest class's winning, until a constructor without ``**kwargs``."""
    signature = _signature(factory)
    first = getattr(factory, "implementations", (factory,))[0]
    if signature is None or _init_owner(first).startswith("torch."):
        return {}
    derived = set(getattr(factory, "data_statistics", ())) | {"self", "seeds"}
    out: Dict[str, object] = {}
    owners = [k for k in getattr(first, "__mro__", ()) if "__init__" in vars(k)] or [first]
    for owner in owners:
        if owner is not first and (owner.__module__.startswith("torch.") or owner is object):
            break
        try:
            params = (signature if owner is first else inspect.signature(owner.__init__)).parameters
        except (TypeError, ValueError):
            break
        for n, p in params.items():
            if n not in derived and n not in out and p.default is not inspect.Parameter.empty \
                    and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                out[n] = p.default
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break
    return out


def _init_owner(cls) -> str:
    """The module of the class in ``cls``'s MRO that defines the ``__init__`` it runs.  By owner, not by
    the function's name: once ``torch.compile`` has run, ``nn.Module.__init__`` is a dynamo wrapper."""
    for klass in getattr(cls, "__mro__", ()):
        if "__init__" in vars(klass):
            return klass.__module__
    return ""


def _kind_of(default, annotation) -> Optional[str]:
    """What an option takes, from its default value (else its annotation's text)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, numbers.Integral):
        return "int"
    if isinstance(default, numbers.Real):
        return "number"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (tuple, list)):
        return "ints" if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in default) else "seq"
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace("Optional[", "").rstrip("]")
    return {"float": "number", "int": "int", "str": "str", "bool": "bool"}.get(text)


def _fits(kind: str, value) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "ints":
        return isinstance(value, (tuple, list)) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    if kind == "seq":
        return isinstance(value, (tuple, list))
    return True


_TAKES = {"bool": "True or False", "int": "an integer", "number": "a finite number", "str": "a word or quoted text",
          "ints": "a tuple of integers, e.g. (16,) or (16, 16)", "seq": "a tuple"}


def check_options(factory, options: dict, who: str) -> None:
    """Refuse (``TypeError`` for an unknown option, ``ValueError`` for a bad value; one line each) what
    the factory's signature says it cannot take.  A value of ``None`` is left to the factory."""
    signature = _signature(factory)
    if signature is None:
        return
    params = signature.parameters
    if _init_owner(getattr(factory, "implementations", (factory,))[0]).startswith("torch."):
        params = {}  # torch's own __init__ (nn.Module's, or the wrapper torch.compile installs on it): no options
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name, value in options.items():
        param = params.get(name)
        if param is None or param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            if takes_any:
                continue
            known = [n for n, p in params.items() if p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                                    inspect.Parameter.VAR_KEYWORD)
                     and n not in ("self", "seeds")]
            raise TypeError(f"{who} has no option {name!r} (its options: {', '.join(known) or 'none'})")
        default = None if param.default is inspect.Parameter.empty else param.default
        kind = _kind_of(default, param.annotation)
        if value is not None and kind is not None and not _fits(kind, value):
            raise ValueError(f"{who}: option {name}={value!r} is not {_TAKES[kind]}")


class Registry:
    """Names → factories of one kind.  ``base``: what a loaded plug-in must subclass; ``admits(name, loaded)``:
    for a kind that is no class, the factory to register for what ``package.module:Attribute`` loaded, or a
    one-line :class:`UnknownNameError` (it must not call what it was given unless that is known to be of the
    kind)."""

    def __init__(self, kind: str, base: Optional[type] = None, group: Optional[str] = None,
                 admits: Optional[Callable[[str, object], Callable]] = None):
        self.kind = kind
        self.base = base
        self.admits = admits
        self.group = group if group is not None else f"estibench.{kind}s"
        self._entries: Dict[str, Callable] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable:
        def decorator(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            factory.registry_name = name
            return factory

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` from this registry (for tests and plug-in reloading); a name that is not registered
        raises a one-line :class:`UnknownNameError`.  Entry points already loaded are not loaded again."""
        if name not in self._entries:
            raise UnknownNameError(f"cannot unregister {self.kind} {name!r}: it is not registered")
        del self._entries[name]

    def _admit(self, name: str, factory) -> None:
        if self.admits is not None:
            factory = self.admits(name, factory)
        if self.base is not None and not (isinstance(factory, type) and issubclass(factory, self.base)):
            raise UnknownNameError(f"{name!r} is not a {self.kind}: {factory!r} is not a subclass of "
                                   f"{self.base.__module__}.{self.base.__name__}")
        if getattr(factory, "__dict__", {}).get("registry_name") not in (None, name):
            factory = type(factory.__name__, (factory,), {"__module__": factory.__module__,
                                                          "__doc__": factory.__doc__})  # one class per name
        self.register(name)(factory)

    def _load_plugins(self) -> None:
        """Entry points of the group ``estibench.<kind>s`` (installed packages), once."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in metadata.entry_points(group=self.group):
            if entry.name not in self._entries:
                try:
                    self._admit(entry.name, entry.load())
                except Exception as err:  # a broken plugin must not break the built-ins
                    print(f"estibench: skipping {self.kind} plugin {entry.name!r} ({entry.value}): {err}",
                          file=sys.stderr)

    def names(self) -> List[str]:
        self._load_plugins()
        return sorted(self._entries)

    def known(self, name: str) -> Optional[Callable]:
        """The factory registered under ``name`` in this process, else None: never imports a module nor loads an
        entry point (what the reports and the store use to read names as data)."""
        return self._entries.get(name) if isinstance(name, str) else None

    def factory(self, name: str) -> Callable:
        if name not in self._entries and ":" in name:
            self._admit(name, import_path(name))
        if name not in self._entries:
            self._load_plugins()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())}; or package.module:Class)"
            )
        return self._entries[name]

    def get(self, name: str, **options):
        factory = self.factory(name)
        check_options(factory, options, f"{self.kind} {name!r}")
        return factory(**options)

    def defaults(self, name: str) -> Dict[str, object]:
        """The options ``name`` takes and their defaults, read from its signature (an estimator family: its first
        implementation's, on which every implementation agrees; ``tests/test_registry.py`` checks it): every
        keyword parameter with a default but ``seeds`` and the training statistics a model reads from its data
        (``data_statistics``, resolved from its ``dataset``).  Empty for a factory whose signature cannot be read."""
        return signature_defaults(self.factory(name))

    def effective(self, name: str, options: dict) -> Dict[str, object]:
        """The options ``name`` runs with: its :meth:`defaults` overridden by ``options`` (what a cell records,
        so that a changed default changes the cell)."""
        return dict(sorted({**self.defaults(name), **options}.items()))

    def __contains__(self, name: str) -> bool:
        return name in self._entries
