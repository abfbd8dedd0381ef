"""A tiny name -> factory registry shared by :mod:`models` and :mod:`estimators`.

Names are stable strings (``"gmm"``, ``"vimco"``).  ``get`` refuses an unknown name with a
one-line error that suggests the closest registered names.

Bring your own: a name of the form ``package.module:Attribute`` is imported on first use and
registered under that name (so it runs through every suite, the store and the reports like a
built-in, with that stable label; worker processes resolve it the same way), and installed
packages may declare plugins in the entry-point group ``estibench.<kind>s`` (e.g.
``estibench.estimators``), registered under the entry point's name.
"""
from __future__ import annotations

import difflib
import importlib
import os
import sys
from importlib import metadata
from typing import Callable, Dict, List, Optional


class UnknownNameError(KeyError):
    """An unknown registry name; ``str()`` is a one-line message with suggestions."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


def import_path(spec: str):
    """``package.module:Attribute`` → the attribute (the current folder is searched too, as a
    console command does not put it on ``sys.path``).  One-line errors."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UnknownNameError(f"cannot read {spec!r}; write package.module:Attribute")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.append(os.getcwd())
            module = importlib.import_module(module_name)
    except ImportError as err:
        raise UnknownNameError(f"cannot import {module_name!r} for {spec!r}: {err}") from None
    try:
        out = module
        for part in attr.split("."):
            out = getattr(out, part)
    except AttributeError:
        raise UnknownNameError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})") from None
    return out


class Registry:
    def __init__(self, kind: str, base: Optional[type] = None, group: Optional[str] = None):
        self.kind = kind
        self.base = base
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

    def _admit(self, name: str, factory) -> None:
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
        return self.factory(name)(**options)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
