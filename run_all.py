#!/usr/bin/env python
"""estibench entry point from a checkout: ``python run_all.py [COMMAND] [flags]``, COMMAND one of run (the
default: ``python run_all.py --suite gmm``), report, check, screen, fetch-data; ``--help`` lists the run's flags
and the commands, ``COMMAND --help`` a command's flags.  Installed, the ``estibench`` command is the same program.
The checkout must be installed (``pip install -e .``: it maps ``estibench.X`` onto the folder ``X/``)."""
import sys

if __name__ == "__main__":
    try:
        from estibench.cli import main
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("estibench"):
            raise
        print(f"run_all.py: {err.name} cannot be imported: install this checkout first (pip install -e .)",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
