#!/usr/bin/env python
"""estibench entry point from a checkout: ``python run_all.py [COMMAND] [flags]``, COMMAND one of run (the
default: ``python run_all.py --suite gmm``), report, check, screen, fetch-data; ``--help`` lists the run's flags
and the commands, ``COMMAND --help`` a command's flags.  Installed, the ``estibench`` command is the same program."""
import sys

from estibench import main

if __name__ == "__main__":
    sys.exit(main())
