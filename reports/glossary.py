"""Every registered study's metric definitions (the built-in ones of ``harness/definitions.py`` and each
``Study.definitions``) and the section closing every page of the site with them.  Part of the site builder: it reads
the study registry, so no study page imports it (a page uses ``reports/definitions.py``)."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

import pandas as pd

from estibench.harness import definitions as _builtin
from estibench.harness.definitions import METRIC_DEFINITIONS

from .section import Section


def all_definitions() -> Dict[str, str]:
    """The built-in definitions (``harness/definitions.py``), then those every registered study adds
    (``Study.definitions``); a study that fails to load is skipped (a broken plug-in must not hide the rest)."""
    from estibench import studies
    out = dict(METRIC_DEFINITIONS)
    for name in studies.names():
        try:
            extra = studies.get(name).definitions
        except Exception:  # noqa: BLE001 - a broken study plug-in must not hide the built-in definitions
            continue
        for key, text in extra.items():
            out.setdefault(key, text)
    return out


def family(metric: str, known: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The key of the definitions (default: every study's, :func:`all_definitions`) that defines ``metric``."""
    return _builtin.family(metric, all_definitions() if known is None else known)


def definition(metric: str) -> Optional[str]:
    """The definition of ``metric`` among every study's, or None."""
    return _builtin.definition(metric, all_definitions())


def families(metrics: Iterable[str]) -> List[Tuple[str, Optional[str]]]:
    """Distinct (name or family key, definition or None), in the order of :func:`all_definitions`."""
    return _builtin.families(metrics, all_definitions())


def definitions_section(table: pd.DataFrame) -> Section:
    """The section closing every page: each metric of ``table`` (a family once) with its definition."""
    names = table.metric.unique() if table is not None and not table.empty else []
    rows = [(n, d if d is not None else "(no definition registered in reports/definitions.py)")
            for n, d in families(names)]
    return Section("Metric definitions", "table", pd.DataFrame(rows, columns=["metric", "definition"]),
                   caption="every metric recorded in the table shown; bracketed names stand for a family "
                           "(e.g. prior_pmf[z=c] for c = 0, 1, …)", name="metric_definitions")
