"""Reports are pure functions of the tidy results table (and the cells and runs tables).

Two layers.  The report kit, which every study's page uses (a page lives in its study's folder,
``studies/<name>/page.py``): ``section.py`` (``Section``), ``render.py`` (Markdown and HTML, escaped), ``tables.py``
(intervals, ranks, labels), ``naming.py``, ``summary.py`` (cell statuses), ``generic.py`` (the page of a study
without its own), ``plotstyle.py``, ``basket.py``, ``leaderboard.py``, ``definitions.py``, ``export.py``; none of
them reads the study registry.  Above the studies, the site builder: ``site.py`` (``build_site(table, cells, runs,
out)``: the static HTML site and Markdown report; each study's page as its ``Study.page`` names it, ``STUDY_PAGES``
for explicit overrides only), ``index.py`` (the leaderboards), ``glossary.py`` (every study's metric definitions),
``estimator_doc.py``.  ``write_report`` writes the GMM study's report.md (``studies/gmm/page.py``).
"""
import importlib

from .definitions import METRIC_DEFINITIONS
from .generic import generic_sections
from .section import Section
from .site import STUDY_PAGES, build_site
from .tables import mean_ci, mean_ci_groups

def __getattr__(name):
    if name == "write_report":
        return importlib.import_module("estibench.studies.gmm.page").write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build_site", "STUDY_PAGES", "Section", "generic_sections", "write_report", "METRIC_DEFINITIONS",
           "mean_ci", "mean_ci_groups"]
