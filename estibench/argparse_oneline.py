"""argparse with the project's one-line errors: ``PROG: error: MESSAGE`` on stderr and exit status 2, never the
multi-line usage block (``--help`` still prints the whole usage and exits 0).

Every command-line parser of estibench (the run, ``report``, ``check``, ``screen``, ``fetch-data``) uses
:class:`OneLineParser`; :func:`parse` turns argparse's exits into a returned status so that an in-process
``main([...])`` returns 2 (or 0 for ``--help``) instead of raising :class:`SystemExit`."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Tuple, Union


def program() -> str:
    """The program's name as the user typed it: ``run_all.py`` from a checkout, else ``estibench``."""
    return "run_all.py" if os.path.basename(sys.argv[0] or "") == "run_all.py" else "estibench"


class OneLineParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors (a value of the wrong type, a missing or unknown argument, an
    invalid choice) are one line ``PROG: error: MESSAGE`` and exit status 2, as every other input error of the
    command line."""

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
