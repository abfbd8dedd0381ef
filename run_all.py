#!/usr/bin/env python
"""estibench entry point: ``python run_all.py [--suite NAME] [flags]``; ``--help`` lists the flags."""
import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
