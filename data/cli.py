"""``fetch-data NAME [--cache DIR]``: download a dataset into the cache and print its folder.

``run_all.py fetch-data`` calls :func:`main` with the arguments after ``fetch-data`` (a leading
``fetch-data`` is accepted too).  Exit status 0 on success.  On a missing file, a file whose
SHA-256 does not match (:class:`DatasetChecksumError`: the line ends with the command that
recovers), an unknown name, or a cache folder that cannot be used (a file in the way, permission
denied, a read-only file system: any ``OSError``), one line ``run_all.py fetch-data: error: ...``
on stderr, no traceback, and status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .datasets import fetch, names
from .sources import (CACHE_ENV, DEFAULT_CACHE, DatasetChecksumError, DatasetMissingError,
                      UnknownDatasetError, cache_message, cache_root)

PROG = "run_all.py fetch-data"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Download a dataset into the cache (SHA-256 checked, atomic) and print its folder.",
    )
    parser.add_argument("name", metavar="NAME", help=f"dataset name: {', '.join(names())}")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help=f"cache folder (default: ${CACHE_ENV}, else {DEFAULT_CACHE})")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fetch-data"]:
        argv = argv[1:]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2, already printed)
        return int(stop.code or 0)
    try:
        folder = fetch(args.name, cache_dir=args.cache, verbose=True)
    except (DatasetChecksumError, DatasetMissingError, UnknownDatasetError) as error:
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except OSError as error:  # the cache folder (or a file in it) cannot be used
        print(f"{PROG}: error: {cache_message(cache_root(args.cache), error)}", file=sys.stderr)
        return 2
    print(folder)
    return 0
