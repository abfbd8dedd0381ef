"""The command line of ``run_all.py``, ``estibench`` and ``python -m estibench``, the project's top layer: the first
word names the command, a command line that starts with a flag (or is empty) is a run.  One module per command:

==============  =================================================================================
``run``         :mod:`estibench.cli.run`: a suite's cells (``make_cells``), run unless stored, and the report
``report``      :mod:`estibench.cli.report`: the report rebuilt from a store alone
``check``       :mod:`estibench.cli.check`: one estimator's contract and exact-gradient tests
``screen``      :mod:`estibench.cli.screen`: which estimator suits a model
``fetch-data``  :mod:`estibench.data.cli` (fetch-data needs only the data layer)
==============  =================================================================================

What they share (the program's name, the commands, the suites by name, the output-folder check) is in
:mod:`estibench.cli.common`, which imports none of them.  This module only dispatches; a command's module is
imported when that command runs.

``--help`` (``COMMAND --help``) imports no torch, numpy, pandas or study: every command's parser can be built without
them (:mod:`estibench.cli.parsers`, with the names its help lists read by :mod:`estibench.cli.catalog`), and a
command line that asks for help is parsed with it before the engine or the command's module is imported."""
from __future__ import annotations

import difflib
import sys
from typing import List, Optional, Tuple

from estibench.argparse_oneline import exit_status, parse

from . import catalog
from .common import COMMANDS, UsageError, prog, suites  # noqa: F401 - suites: for importers

def command_of(argv: List[str]) -> Tuple[str, List[str]]:
    """``(command, its arguments)``.  The first word names the command; a first word that is a flag, or none, is a
    run written without ``run`` (command ``""``).  Any other first word is a UsageError naming the nearest command
    (``chek`` → check), or the ``--suite`` it may have meant."""
    if not argv or argv[0].startswith("-"):
        return "", list(argv)
    word = argv[0]
    if word in COMMANDS:
        return word, list(argv[1:])
    close = difflib.get_close_matches(word, list(COMMANDS), n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {close[0]}?"
    elif word in catalog.suite_names():  # the names of suites(), read without importing the studies
        hint = f"to run suite {word}: {prog()} --suite {word}"
    else:
        hint = f"the commands are {', '.join(COMMANDS)} ({prog()} --help)"
    raise UsageError(f"unknown command {word!r}; {hint}")


def main(argv=None) -> int:
    """The command line.  Ctrl-C (SIGINT) and SIGTERM end it with one line and the shell's exit status
    (130, 143); what is stored stays stored and the same command resumes."""
    import warnings
    warnings.formatwarning = lambda message, category, *_, **__: f"{prog()}: warning: {message}\n"  # one line
    status = _before_the_engine(sys.argv[1:] if argv is None else list(argv))
    if status is not None:
        return status
    from estibench.harness.sweep import Interrupted, stop_on_signals
    state: dict = {}
    with stop_on_signals():
        try:
            return _main(argv, state)
        except Interrupted as stop:
            import signal
            for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the message short
                signal.signal(signum, signal.SIG_IGN)
            cells, store, out = state.get("cells"), state.get("store"), state.get("out")
            if store is not None and cells is not None:
                from estibench.harness.sweep import stored_count
                try:
                    n = stored_count(cells, store)
                    where = f"{n} of {len(cells)} cells are stored in {out}"
                except Exception:  # noqa: BLE001 - the message must still come out
                    where = f"the finished cells are stored in {out}"
                print(f"{prog()}: interrupted by {stop}: {where}; run the same command to resume",
                      file=sys.stderr, flush=True)
            else:
                print(f"{prog()}: interrupted by {stop} before any cell ran", file=sys.stderr, flush=True)
            return stop.exit_status
        finally:
            if state.get("store") is not None:
                state["store"].close()


def _before_the_engine(argv: List[str]) -> Optional[int]:
    """The exit status of a command line answered without importing the engine: a first word that is no command
    (2, one line, as :func:`_main` says it), a command line that asks for ``--help`` (0, the help printed) or that
    its parser refuses on the way there (2, one line), answered with the command's parser built without torch
    (:func:`estibench.cli.parsers.parser`); None for every other command line, which :func:`_main` runs (and
    parses, with the same parser)."""
    from . import parsers
    try:
        command, rest = command_of(argv)
    except UsageError as err:
        print(f"{prog()}: error: {err}", file=sys.stderr)
        return 2
    if not parsers.asks_help(rest):
        return None
    args, status = parse(parsers.parser(command), rest)
    return None if args is not None else status


def _main(argv, state: dict) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        command, rest = command_of(argv)
    except UsageError as err:
        print(f"{prog()}: error: {err}", file=sys.stderr)
        return 2
    if command == "report":
        from .report import main as sub_main
    elif command == "check":
        from .check import main as sub_main
    elif command == "screen":
        from .screen import main as sub_main
    elif command == "fetch-data":
        from estibench.data.cli import main as sub_main
    else:  # "run", or a run written without the command
        from .run import main as run_main
        return run_main(rest, command=command, argv=argv, state=state)
    try:
        return sub_main(rest)
    except SystemExit as stop:  # a parser's own exit (--help, a one-line argument error): a status here too
        return exit_status(stop)


__all__ = ["COMMANDS", "command_of", "main"]
