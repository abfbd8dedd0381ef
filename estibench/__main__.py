"""``python -m estibench``: the same as the ``estibench`` console command and ``python run_all.py``."""
import sys

from estibench import main

sys.exit(main())
