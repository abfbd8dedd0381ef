"""Reports are pure functions of the tidy results table (and the cells and runs tables).

``build_site(table, cells, runs, out)`` writes the static HTML site and Markdown report
(``reports/site.py``).  Each study's page (``sections(table, cells) -> list[Section]``) is named by
its :class:`estibench.studies.Study` (``page``) and imported when the site builds it; ``STUDY_PAGES``
holds explicit overrides only.  The GMM and SBN pages are the modules ``reports.gmm`` and
``reports.sbn`` (imported on first use); ``write_report`` writes the GMM study's report.md.
"""
import importlib

from .definitions import METRIC_DEFINITIONS
from .generic import generic_sections
from .section import Section
from .site import STUDY_PAGES, build_site
from .tables import mean_ci, mean_ci_groups

_PAGES = ("gmm", "sbn")


def __getattr__(name):
    if name in _PAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "write_report":
        return importlib.import_module(f"{__name__}.gmm").write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build_site", "STUDY_PAGES", "Section", "generic_sections", "write_report", "METRIC_DEFINITIONS",
           "mean_ci", "mean_ci_groups"]
