"""The command line's option grammar, one module that the CLI, ``screen`` and the gradient basket share: estimator
specs (``ww,concrete[final_temperature=1.0]``), ``NAME=VALUE`` options, comma-separated lists.  Every malformed input
is one :class:`UsageError` (one line, exit status 2 on the command line), never a silently dropped item.

It imports nothing of the project, so the engine (``harness/basket.py``) reads a basket's members with the same
grammar as ``--estimators`` without importing the CLI."""
from __future__ import annotations

import ast
import re
from typing import List, Optional, Tuple


class UsageError(ValueError):
    """Bad command-line input; reported as one line, exit status 2."""


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


_OPEN, _CLOSE = "([{", ")]}"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-+]*(?::[A-Za-z_][A-Za-z0-9_.]*)?")  # "+": the RWS code's rw+rws
_OPTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_top(text: str, what: str) -> List[str]:
    """``text`` split at the commas outside brackets and quotes; unbalanced or mismatched brackets or
    an unclosed quote are a :class:`UsageError` naming the position."""
    pieces, depth, quote, start = [], [], None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            depth.append((ch, i))
        elif ch in _CLOSE:
            if not depth or _OPEN.index(depth[-1][0]) != _CLOSE.index(ch):
                raise UsageError(f"cannot read {what} {text!r}: unmatched {ch!r} at character {i + 1}")
            depth.pop()
        elif ch == "," and not depth:
            pieces.append(text[start:i])
            start = i + 1
    if quote:
        raise UsageError(f"cannot read {what} {text!r}: unclosed quote {quote}")
    if depth:
        ch, i = depth[-1]
        raise UsageError(f"cannot read {what} {text!r}: {ch!r} at character {i + 1} is never closed")
    pieces.append(text[start:])
    return pieces


def parse_options(text: str, what: str = "options") -> dict:
    """``"a=1,b=x"`` → ``{"a": 1, "b": "x"}``: NAME=VALUE items separated by commas outside brackets;
    a value is a Python literal (number, tuple, string in quotes) or else a bare word, kept as text.
    Anything else (an empty item, a missing name or value, a name given twice) is a UsageError."""
    out = {}
    if not text.strip():
        return out
    for item in (t.strip() for t in split_top(text, what)):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not item:
            raise UsageError(f"cannot read {what} {text!r}: an empty item (a stray comma?)")
        if not eq or not _OPTION.fullmatch(key) or not value:
            raise UsageError(f"cannot read option {item!r} in {what} {text!r}; write NAME=VALUE")
        if key in out:
            raise UsageError(f"option {key!r} is given twice in {what} {text!r}")
        out[key] = parse_value(value)
    return out


def parse_estimators(text: str) -> List[Tuple[str, dict]]:
    """``"ww,concrete[final_temperature=1.0]"`` → [("ww", {}), ("concrete", {"final_temperature": 1.0})].

    The grammar, strictly: ``SPEC (, SPEC)*`` with ``SPEC = NAME`` or ``NAME[OPTIONS]`` (NAME a
    registry name or ``package.module:Class``; OPTIONS as :func:`parse_options`).  Anything else —
    unbalanced brackets, an empty name, text after the brackets, a name given twice — is one
    :class:`UsageError`, never a silently dropped estimator."""
    out = []
    for piece in split_top(text, "--estimators"):
        spec = piece.strip()
        if not spec:
            raise UsageError(f"cannot read --estimators {text!r}: an empty name (a stray comma?)")
        match = re.fullmatch(r"([^\[\]]*?)\s*(?:\[(.*)\])?", spec, re.S)
        name = match.group(1).strip() if match else ""
        if not match or not _NAME.fullmatch(name):
            raise UsageError(f"cannot read {spec!r} in --estimators {text!r}; write NAME or NAME[OPTION=VALUE,...]")
        options = parse_options(match.group(2) or "", f"the options of {name}")
        if any(n == name and o == options for n, o in out):
            raise UsageError(f"--estimators {text!r} names {spec!r} twice")
        out.append((name, options))
    return out


def refuse_twice(values: List, what: str, text: str) -> List:
    """``values`` unchanged, or a UsageError when one of them is given twice (``2,2``, ``2,02``): the same value
    twice would make the same cell twice, run once and counted twice."""
    for i, value in enumerate(values):
        if value in values[:i]:
            raise UsageError(f"{what} {text!r} names {value!r} twice")
    return values


def split(text: Optional[str], cast=str, what: str = "the list") -> Optional[List]:
    """``"2,5"`` → ``[2, 5]``; an empty list, an empty item (``"2,,5"``) or a value given twice (``"2,2"``) is a
    UsageError."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or not all(items):
        raise UsageError(f"cannot read {what} {text!r}: write a comma-separated list such as 2,5 with no empty item")
    try:
        values = [cast(t) for t in items]
    except ValueError:
        raise UsageError(f"cannot read {what} {text!r} as a comma-separated list of {cast.__name__}") from None
    return refuse_twice(values, what, text)
