#!/usr/bin/env python
"""estibench entry point from a checkout: ``python run_all.py [--suite NAME] [flags]``; ``--help``
lists the flags.  Installed, the ``estibench`` command is the same program."""
import sys

from estibench import main

if __name__ == "__main__":
    sys.exit(main())
