"""Reports are pure functions of the tidy results table (and the cells table)."""
from .gmm import write_report

__all__ = ["write_report"]
