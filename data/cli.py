"""``fetch-data NAME [--cache DIR]``: download a dataset into the cache and print its folder.

``run_all.py fetch-data`` calls :func:`main` with the arguments after ``fetch-data`` (a leading
``fetch-data`` is accepted too).  Exit status 0 on success.  On a missing file, a file whose
SHA-256 does not match (:class:`DatasetChecksumError`: the line ends with the command that
recovers), an unknown name, or a cache folder that cannot be used (a file in the way, a folder that
cannot be created, permission denied, a read-only file system, a full disk, a symbolic-link loop: any
``OSError``), one line ``run_all.py fetch-data: error: ...`` on stderr, no traceback, and status 2;
the folder printed on success always holds the set (the embedded ones too).  A multi-MNIST name
(``multi-mnist5k-s<seed>``, ``multi-mnist-s<seed>``) fetches the set its images are generated from
and prints that set's folder.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from estibench.argparse_oneline import OneLineParser, program

from .datasets import fetch, names
from .sources import (CACHE_ENV, DEFAULT_CACHE, DatasetChecksumError, DatasetMissingError,
                      UnknownDatasetError, cache_message, cache_root)



def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=f"{program()} fetch-data",
        description="Download a dataset into the cache (SHA-256 checked, atomic) and print its folder.",
    )
    parser.add_argument("name", metavar="NAME", help=f"dataset name: {', '.join(names())}; or multi-mnist5k-s<seed>, "
                                                     f"multi-mnist-s<seed> (fetches mnist5k-dynamic, mnist-dynamic: "
                                                     f"the images are generated from the name when loaded)")
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
        print(f"{program()} fetch-data: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except OSError as error:  # the cache folder (or a file in it) cannot be used
        try:
            where = cache_message(cache_root(args.cache), error)
        except DatasetMissingError as unusable:  # the folder cannot even be resolved
            where = str(unusable)
        print(f"{program()} fetch-data: error: {' '.join(where.split())}", file=sys.stderr)
        return 2
    print(folder)
    return 0
