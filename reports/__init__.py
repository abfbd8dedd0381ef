"""Reports are pure functions of the tidy results table (and the cells and runs tables).

``build_site(table, cells, runs, out)`` writes the static HTML site and Markdown report
(``reports/site.py``); ``STUDY_PAGES`` maps a study to the function listing its page's sections
(``sections(table, cells) -> list[Section]``); ``write_report`` writes the GMM study's report.md.
"""
from . import gmm, sbn
from .definitions import METRIC_DEFINITIONS
from .gmm import write_report
from .site import STUDY_PAGES, Section, build_site, generic_sections
from .tables import bootstrap_ci, bootstrap_groups

STUDY_PAGES["gmm"] = gmm.sections
STUDY_PAGES["sbn"] = sbn.sections

__all__ = ["build_site", "STUDY_PAGES", "Section", "generic_sections", "write_report", "METRIC_DEFINITIONS",
           "bootstrap_ci", "bootstrap_groups"]
