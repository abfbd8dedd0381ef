"""``run_all.py report --out DIR``: the report rebuilt from a store alone."""
from __future__ import annotations

import sys

from estibench.argparse_oneline import OneLineParser, parse

from .common import prog, study_descriptions, suite_registry, suites

# The store (pandas) and the registries are imported once the arguments are read: ``report --help`` imports no torch.


def parser():
    """``report``'s parser (its help is :func:`main`'s docstring)."""
    p = OneLineParser(prog=f"{prog()} report", description=main.__doc__)
    p.add_argument("--out", required=True, help="folder holding results.sqlite; the report is written there")
    p.add_argument("--suite", default=None, help="suite whose description heads the report")
    p.add_argument("--note", default="", help="text added under the description (e.g. how the run went)")
    return p


def main(argv) -> int:
    """``run_all.py report --out DIR [--suite NAME] [--note TEXT]``: rebuild the report from the store alone
    (the store is only read: a read-only store works)."""
    args, status = parse(parser(), argv)  # argparse's errors: one line, status 2
    if args is None:
        return status
    from estibench.harness.store import Store, StoreError
    from estibench.models.registry import UnknownNameError
    try:
        if args.suite is not None and args.suite not in suites():
            suite_registry().factory(args.suite)
        store = Store(args.out, readonly=True)
    except (StoreError, UnknownNameError) as err:
        print(f"{prog()} report: error: {err}", file=sys.stderr)
        return 2
    from estibench import reports
    descriptions = study_descriptions(args.suite)
    try:
        path = reports.build_site(store.table(), store.cells(), store.runs(), args.out, descriptions=descriptions,
                                  note=args.note, artifacts=store.artifacts())
        store.export_csv()
    except (OSError, StoreError) as err:
        print(f"{prog()} report: error: cannot write the report into {args.out}: "
              f"{getattr(err, 'strerror', None) or err}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"report: {path}")
    return 0
