"""The generic study's report page: what each cell trained on (its data, as the cells record it), the estimators,
then the generic per-model summaries and learning curves (``reports/generic.py``) with this study's metric
definitions.  Pure functions of the tidy table and the cells table."""
from __future__ import annotations

import os
from typing import List, Optional

import pandas as pd

from estibench.harness.definitions import METRIC_DEFINITIONS
from estibench.reports.generic import generic_sections
from estibench.reports.naming import ESTIMATORS_CAPTION, estimators_table
from estibench.reports import tables as tb
from estibench.reports.section import Section

from estibench.studies.generic.settings import DEFINITIONS, FINAL_METRICS, ORDER  # the study's data


def _data_text(row) -> str:
    """One cell's data in words: the model's own samples, a dataset by name, or a file with its size and hash."""
    source = row.get("study__data")
    if not isinstance(source, str) or not source:
        return "the model's own samples (model.sample, fixed seed)"
    digest, size = row.get("study__data_sha256"), row.get("study__data_bytes")
    if isinstance(digest, str) and digest:
        size_text = f"{int(size):,} bytes, " if size is not None and size == size else ""
        return f"file `{os.path.basename(source)}` ({size_text}SHA-256 {digest[:12]}…; {source})"
    return f"dataset `{source}`"


def data_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, data) the page's cells trained on, with how many cells did."""
    if cells is None or cells.empty:
        return pd.DataFrame(columns=["model", "data", "cells"])
    rows = [{"model": r.get("model"), "data": _data_text(r)} for _, r in cells.iterrows()]
    frame = pd.DataFrame(rows)
    return frame.groupby(["model", "data"], sort=False).size().reset_index(name="cells")


def _labels(table: pd.DataFrame) -> List[str]:
    return [l for l in ORDER if l in set(table.label)] + sorted(set(table.label) - set(ORDER))


def final_sections(table: pd.DataFrame) -> List[Section]:
    """Per model, the final bounds, exact values and costs (:data:`settings.FINAL_METRICS`, those recorded) per
    estimator and K: mean [95 % interval] over seeds at each cell's last iteration."""
    models = list(dict.fromkeys(table.model)) if "model" in table.columns else [None]
    out = []
    for i, model in enumerate(models):
        rows = table if model is None or len(models) == 1 else table[table.model == model]
        metrics = [m for m in FINAL_METRICS if m in set(rows.metric)]
        frame = tb.final_ci_table(rows, metrics, order=_labels(rows)) if metrics else pd.DataFrame()
        if frame.empty:
            continue
        suffix, tag = ("", "") if len(models) == 1 else (f": {model}", f"_{i + 1}")
        out.append(Section(f"Final bounds, exact values and costs{suffix}", "table", frame, name=f"final{tag}",
                           caption=f"{tb.ci_label()}, over seeds at each cell's last iteration; test_* on the test "
                                   f"observations (absent for a file with train alone), exact values where the "
                                   f"latents can be enumerated"))
    return out


def sections(table: pd.DataFrame, cells: pd.DataFrame, artifacts: Optional[pd.DataFrame] = None) -> List[Section]:
    if table.empty:
        return [Section("Results", "text", "No finished cells yet.", name="results")]
    out = [Section("Data", "table", data_table(cells), name="data",
                   caption="what each model trained on: `--data FILE` (its path, size and SHA-256 are part of the "
                           "cell, so a changed file is another cell), a dataset of the data layer, or the model's "
                           "own samples; cells on different data are never pooled (their labels say which)"),
           Section("Estimators", "table", estimators_table(table, _labels(table)), caption=ESTIMATORS_CAPTION,
                   name="variants")]
    return out + final_sections(table) + generic_sections(table, cells, artifacts,
                                                          known={**METRIC_DEFINITIONS, **DEFINITIONS})
