"""``python -m estibench.data fetch-data NAME [--cache DIR]``."""
import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
