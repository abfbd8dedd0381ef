"""argparse with the project's one-line errors: ``PROG: error: MESSAGE`` on stderr and exit status 2, never the
multi-line usage block (``--help`` still prints the whole usage and exits 0).

Every command-line parser of estibench (the run, ``report``, ``check``, ``screen``, ``fetch-data``) uses
:class:`OneLineParser`; :func:`parse` turns argparse's exits into a returned status so that an in-process
``main([...])`` returns 2 (or 0 for ``--help``) instead of raising :class:`SystemExit`.

The parser takes a flag only as written: no prefix matching (``--estimator`` is not ``--estimators``), and an
unknown flag is named with the flags it may have meant; an integer flag given a number such as ``3e3`` says so and
offers ``3000``."""
from __future__ import annotations

import argparse
import decimal
import difflib
import os
import sys
from typing import List, Optional, Sequence, Tuple, Union


def program() -> str:
    """The program's name as the user typed it: ``run_all.py`` from a checkout, else ``estibench``."""
    return "run_all.py" if os.path.basename(sys.argv[0] or "") == "run_all.py" else "estibench"


def integer(text: str) -> int:
    """argparse's ``type=int`` with a message that helps: ``'3e3'`` is not read as 3000 (a flag takes an integer
    as written) but the message offers it; ``'abc'`` says an integer is needed."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = decimal.Decimal(text.strip())  # exact: 1e30 is 10**30, not the float nearest it
    except decimal.InvalidOperation:
        value = decimal.Decimal("NaN")
    integral = value.is_finite() and value.adjusted() < 40 and value == value.to_integral_value()
    hint = f"; did you mean {int(value)}?" if integral else ""
    raise argparse.ArgumentTypeError(f"invalid int value: {text!r} (it needs an integer{hint})")


def suggest_flags(unknown: Sequence[str], flags: Sequence[str]) -> str:
    """``; did you mean --estimators?`` for the first unknown ``--flag`` (or ``--flag=value``) in ``unknown`` that
    starts a known flag or is close to one; empty when none is."""
    for word in unknown:
        if not word.startswith("--"):
            continue
        name = word.split("=", 1)[0]
        close = ([f for f in flags if f.startswith(name)] or difflib.get_close_matches(name, flags, n=3, cutoff=0.6))
        if close:
            return f"; did you mean {' or '.join(close[:3])}?"
    return ""


class OneLineParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors (a value of the wrong type, a missing or unknown argument, an
    invalid choice) are one line ``PROG: error: MESSAGE`` and exit status 2, as every other input error of the
    command line.  No prefix matching (``allow_abbrev=False``): a flag is taken only as written, and an unknown one
    is named with the nearest flags; ``type=int`` is :func:`integer`."""

    def __init__(self, *args, allow_abbrev: bool = False, **kwargs):
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)

    def add_argument(self, *args, **kwargs):
        if kwargs.get("type") is int:
            kwargs["type"] = integer
        return super().add_argument(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        namespace, unknown = self.parse_known_args(args, namespace)
        if unknown:
            flags = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            self.error(f"unrecognized arguments: {' '.join(unknown)}{suggest_flags(unknown, flags)}")
        return namespace

    def error(self, message):  # argparse's contract: print and exit, never return
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def parse(parser: argparse.ArgumentParser, argv: Optional[List[str]]
          ) -> Tuple[Optional[argparse.Namespace], Optional[int]]:
    """``(namespace, None)``, or ``(None, status)`` when argparse ended the parse itself: 0 after ``--help``, 2
    after an error it has already printed (one line, with :class:`OneLineParser`)."""
    try:
        return parser.parse_args(argv), None
    except SystemExit as stop:
        return None, exit_status(stop)


def exit_status(stop: SystemExit) -> int:
    """The integer status of a :class:`SystemExit` (``None`` → 0; a message, which Python prints → 1)."""
    code: Union[int, str, None] = stop.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1
