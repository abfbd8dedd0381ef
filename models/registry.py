"""A tiny name -> factory registry shared by :mod:`models` and :mod:`estimators`.

Names are stable strings (``"gmm"``, ``"vimco"``).  ``get`` refuses an unknown name with a
one-line error that suggests the closest registered names.
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict, List


class UnknownNameError(KeyError):
    """An unknown registry name; ``str()`` is a one-line message with suggestions."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable] = {}

    def register(self, name: str) -> Callable:
        def decorator(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            factory.registry_name = name
            return factory

        return decorator

    def names(self) -> List[str]:
        return sorted(self._entries)

    def factory(self, name: str) -> Callable:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"
            )
        return self._entries[name]

    def get(self, name: str, **options):
        return self.factory(name)(**options)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
