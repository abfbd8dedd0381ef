"""What the commands of :mod:`estibench.cli` share: the program's name, the list of commands, the help formatter,
the suites by name (read from the studies when asked for, not on import), the output-folder check and the report's
study descriptions.  Every command module imports this one and none of the others (no cycle inside the package)."""
from __future__ import annotations

import argparse
import dataclasses
import os
import textwrap
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from estibench.argparse_oneline import program
from estibench.harness.grammar import UsageError  # imports nothing of the project

# The registries (models.registry, studies) are imported by the functions that use them, not here: this module is
# imported for every command line, ``--help`` included, which must not import torch (cli/catalog.py, cli/parsers.py).
if TYPE_CHECKING:
    from estibench.models.registry import Registry
    from estibench.studies.base import Suite

#: the commands, the first word of a command line: name → what it does (one line of ``--help``).  A command line
#: whose first word is a flag (or that is empty) is a run: ``run_all.py --suite gmm`` = ``run_all.py run --suite gmm``
COMMANDS = {
    "run": "run a suite (the default: `run --suite gmm` = `--suite gmm`)",
    "report": "rebuild the report from a store alone: report --out DIR",
    "check": "check one estimator's contract and exact gradients: check NAME",
    "screen": "which estimator suits a model: screen --model NAME",
    "fetch-data": "download a dataset into the cache: fetch-data NAME",
}


def _suite_keys() -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(:data:`SUITE_KEYS`, :data:`SUITE_OPTIONAL`): the keys a suite grid written as a dict must have, and those it
    may have (the fields of ``studies.base.Suite``)."""
    from estibench.studies.base import Suite
    keys = ("study",) + tuple(f.name for f in dataclasses.fields(Suite)
                              if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    return keys, tuple(f.name for f in dataclasses.fields(Suite) if f.name not in keys)


def __getattr__(name):  # SUITE_KEYS, SUITE_OPTIONAL: read from the study base when asked for, not on import
    if name in ("SUITE_KEYS", "SUITE_OPTIONAL"):
        return _suite_keys()[name == "SUITE_OPTIONAL"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def prog() -> str:
    """The program's name as the user typed it: ``run_all.py`` from a checkout, else ``estibench``."""
    return program()


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, keeping the line breaks of the description and the epilog (each line wrapped alone)."""

    def _fill_text(self, text, width, indent):
        def fill(line):  # an indented line (a command's) as written, the others with single spaces
            if line.startswith(" "):
                return textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent + " " * 14)
            return textwrap.fill(" ".join(line.split()), width, initial_indent=indent, subsequent_indent=indent)
        return "\n".join(fill(line) if line.strip() else "" for line in text.splitlines())


def commands_epilog() -> str:
    """The end of the run's ``--help`` written without a command: the commands, one line each."""
    return "\n".join([f"commands (without one, {prog()} runs a suite with the flags above):"]
                     + [f"  {command:<11} {text}" for command, text in COMMANDS.items()]
                     + [f"{prog()} COMMAND --help lists a command's flags."])


def _suite_grid(name: str, loaded):
    """What ``--suite package.module:Attribute`` may load: a suite (a ``studies.base.Suite``, or a dict with the
    keys of :data:`SUITE_KEYS`, others only from :data:`SUITE_OPTIONAL`, read as ``Suite.from_dict``) of a
    registered study, never anything to call (``os:getcwd`` is refused without being called); one line otherwise."""
    from estibench import studies as study_registry
    from estibench.models.registry import UnknownNameError
    from estibench.studies.base import Suite
    SUITE_KEYS, SUITE_OPTIONAL = _suite_keys()
    if isinstance(loaded, dict):
        missing = [k for k in SUITE_KEYS if k not in loaded]
        unknown = sorted(str(k) for k in loaded if k not in SUITE_KEYS + SUITE_OPTIONAL)
        if missing or unknown:
            raise UnknownNameError(f"{name!r} is not a suite grid: " + "; ".join(
                ([f"it lacks {', '.join(missing)}"] if missing else [])
                + ([f"unknown keys {', '.join(unknown)} (a suite takes {', '.join(SUITE_KEYS + SUITE_OPTIONAL)})"]
                   if unknown else [])))
        try:
            loaded = Suite.from_dict(loaded)
        except (TypeError, AttributeError) as err:  # a preset or a part with a key that is no setting, or no dict
            raise UnknownNameError(f"{name!r} is not a suite grid: {str(err).splitlines()[0]}") from None
    elif not isinstance(loaded, Suite):
        raise UnknownNameError(f"{name!r} is not a suite: it loads {type(loaded).__name__} "
                               f"{getattr(loaded, '__name__', '')}".rstrip()
                               + f", not a suite (a studies.base.Suite, or a dict with {', '.join(SUITE_KEYS)})")
    if not isinstance(loaded.study, str) or study_registry.REGISTRY.known(loaded.study) is None:
        raise UnknownNameError(f"{name!r} is not a suite grid: study {loaded.study!r} is not a registered study "
                               f"(known: {', '.join(study_registry.names())})")
    return lambda: loaded


def suites() -> Dict[str, Suite]:
    """Every study's suites (``estibench.studies``): suite name → :class:`~estibench.studies.base.Suite`; read when
    asked for, so a study registered after this module was imported is seen too."""
    from estibench import studies as study_registry
    return study_registry.suites()


def suite_registry() -> Registry:
    """The suites by name, and ``--suite package.module:Attribute`` for a suite of one's own
    (:func:`_suite_grid`)."""
    from estibench.models.registry import Registry
    registry = Registry("suite", admits=_suite_grid)
    for name, suite in suites().items():
        registry.register(name)(lambda _suite=suite: _suite)
    return registry


def study_descriptions(suite: Optional[str]) -> dict:
    """study → the text heading its report page: the description of the suite run (when given), else
    that of the study itself."""
    from estibench import studies as study_registry
    out = {name: study_registry.get(name).description for name in study_registry.names()}
    known = suites()
    if suite in known:
        out[known[suite].study] = known[suite].description
    return out


def check_output_folder(out: str) -> None:
    """One line before any work when ``out`` cannot hold results: a file in the way, a path that
    cannot be created (``/proc/x``), a read-only or full file system, no permission."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
        import tempfile
        fd, probe = tempfile.mkstemp(prefix=".estibench-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"cannot write results to --out {out}: {err.strerror or err}") from None
