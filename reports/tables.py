"""Aggregation over seeds (bootstrap intervals for means) and table export (CSV, LaTeX).

Means over seeds are reported as ``mean [lo, hi]`` with a 95 % percentile-bootstrap interval:
B resamples of the seeds with replacement, drawn from ``numpy.random.default_rng(seed)``; the
interval is the (2.5 %, 97.5 %) quantiles of the B resampled means.  Every group of the same
size n uses the same resample indices, so a group's interval does not depend on which other
groups are computed with it, and the whole table is reproducible for a fixed seed.  A group of
identical values (or of one seed) has a zero-width interval.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

B_RESAMPLES = 2000
LEVEL = 0.95
SEED = 0


def ci_label(B: int = B_RESAMPLES, seed: int = SEED, level: float = LEVEL) -> str:
    """How every bootstrap aggregate is labelled in the reports."""
    return f"mean [{level:.0%} bootstrap CI], n seeds, B = {B} resamples, seed {seed}"


def _resample_weights(n: int, B: int, seed: int) -> np.ndarray:
    """[B, n] counts: how often each of the n values is drawn in each resample."""
    idx = np.random.default_rng(seed).integers(0, n, size=(B, n))
    weights = np.zeros((B, n))
    np.add.at(weights, (np.repeat(np.arange(B), n), idx.ravel()), 1.0)
    return weights


def _bootstrap_rows(values: np.ndarray, B: int, level: float, seed: int) -> np.ndarray:
    """values [G, n] (finite) → [G, 3] (mean, lo, hi), one interval per row."""
    G, n = values.shape
    out = np.empty((G, 3))
    out[:, 0] = values.mean(axis=1)
    weights = _resample_weights(n, B, seed).T / n  # [n, B]
    alpha = (1.0 - level) / 2.0
    chunk = max(1, 4_000_000 // B)
    for start in range(0, G, chunk):
        means = values[start:start + chunk] @ weights  # [g, B]
        out[start:start + chunk, 1:] = np.quantile(means, [alpha, 1.0 - alpha], axis=1).T
    constant = np.ptp(values, axis=1) == 0
    out[constant] = values[constant, :1]  # exactly zero width, not a rounding error's width
    return out


def bootstrap_ci(values: Iterable[float], *, B: int = B_RESAMPLES, level: float = LEVEL,
                 seed: int = SEED) -> Tuple[float, float, float]:
    """(mean, lo, hi) of the finite values with a percentile-bootstrap interval; NaNs if none."""
    v = np.asarray(list(values) if not isinstance(values, (np.ndarray, pd.Series)) else values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    mean, lo, hi = _bootstrap_rows(v[None, :], B, level, seed)[0]
    return float(mean), float(lo), float(hi)


def bootstrap_groups(frame: pd.DataFrame, by: Sequence[str], value: str = "value", *, B: int = B_RESAMPLES,
                     level: float = LEVEL, seed: int = SEED) -> pd.DataFrame:
    """One row per group of ``by``: columns ``by`` + n, mean, lo, hi (non-finite values dropped)."""
    by = list(by)
    data = frame[by + [value]]
    data = data[np.isfinite(data[value].to_numpy(dtype=float))]
    if data.empty:
        return pd.DataFrame(columns=by + ["n", "mean", "lo", "hi"])
    data = data.sort_values(by, kind="stable")
    keys = data[by].drop_duplicates()
    codes = data.groupby(by, sort=False).ngroup().to_numpy()
    vals = data[value].to_numpy(dtype=float)
    sizes = np.bincount(codes)
    result = np.empty((len(sizes), 3))
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for n in np.unique(sizes):
        groups = np.flatnonzero(sizes == n)
        rows = vals[order][starts[groups][:, None] + np.arange(n)[None, :]]
        result[groups] = _bootstrap_rows(rows, B, level, seed)
    out = keys.reset_index(drop=True)
    out["n"] = sizes
    out["mean"], out["lo"], out["hi"] = result[:, 0], result[:, 1], result[:, 2]
    return out


def format_ci(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def format_iqr(median: float, q25: float, q75: float, digits: int = 3) -> str:
    return f"{median:.{digits}g} [{q25:.{digits}g}, {q75:.{digits}g}]"


def final_rows(table: pd.DataFrame, by: Sequence[str] = ("label", "particles")) -> pd.DataFrame:
    """The rows at each (label, particles) group's last recorded iteration (for a diverged cell:
    its last finite evaluation)."""
    if table.empty:
        return table
    last = table.groupby(list(by)).iteration.transform("max")
    return table[table.iteration == last]


def final_ci_table(table: pd.DataFrame, metrics: Optional[Sequence[str]] = None, *, B: int = B_RESAMPLES,
                   seed: int = SEED, order: Optional[Sequence[str]] = None,
                   marks: Optional[Dict[Tuple[str, int], str]] = None) -> pd.DataFrame:
    """Final-iteration mean [95 % bootstrap CI] over seeds: one row per (label, K), one column
    per metric, plus the number of seeds.  ``marks[(label, K)]`` is appended to the label (e.g.
    † for a diverged cell); ``order`` lists labels first (others follow alphabetically)."""
    final = final_rows(table)
    if metrics is not None:
        final = final[final.metric.isin(metrics)]
    if final.empty:
        return pd.DataFrame()
    agg = bootstrap_groups(final, ["label", "particles", "metric"], B=B, seed=seed)
    agg["cell"] = [format_ci(m, l, h) for m, l, h in zip(agg["mean"], agg["lo"], agg["hi"])]
    wide = agg.pivot(index=["label", "particles"], columns="metric", values="cell")
    names = [m for m in (metrics or sorted(agg.metric.unique())) if m in wide.columns]
    wide = wide[names].fillna("–")
    n = agg.groupby(["label", "particles"]).n.max()
    wide.insert(0, "n seeds", n.reindex(wide.index).astype(int))
    wide = wide.reset_index()
    rank = {l: i for i, l in enumerate(order or [])}
    wide["_o"] = wide.label.map(lambda l: (rank.get(l, len(rank)), l))
    wide = wide.sort_values(["particles", "_o"]).drop(columns="_o")
    marks = marks or {}
    wide["label"] = [l + marks.get((l, int(k)), "") for l, k in zip(wide.label, wide.particles)]
    wide.columns.name = None
    return wide.rename(columns={"label": "estimator", "particles": "K"}).reset_index(drop=True)


# -- export ------------------------------------------------------------------------------------
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(frame: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs tabular of the frame (LaTeX special characters escaped; the text keeps its
    Unicode, so compile with XeLaTeX/LuaLaTeX or load a Unicode font setup), in a table float
    when a caption is given."""
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    caption = latex_escape(" ".join(caption.replace("`", "").split())) if caption else None
    return frame.to_latex(index=False, escape=True, caption=caption, label=label or None,
                          na_rep="--", position="htbp" if caption else None)


def export_table(frame: pd.DataFrame, folder: str, name: str, caption: str = "") -> Tuple[str, str]:
    """Write ``folder/name.csv`` and ``folder/name.tex``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    csv = os.path.join(folder, f"{name}.csv")
    tex = os.path.join(folder, f"{name}.tex")
    frame.to_csv(csv, index=False)
    with open(tex, "w", encoding="utf-8") as fh:
        fh.write(to_latex(frame, caption=caption, label=f"tab:{name}"))
    return csv, tex


__all__ = ["B_RESAMPLES", "LEVEL", "SEED", "ci_label", "bootstrap_ci", "bootstrap_groups", "format_ci",
           "format_iqr", "final_rows", "final_ci_table", "latex_escape", "to_latex", "export_table"]


#: settings that distinguish two cells beside (study, model, label, K): a difference in any of them
#: keeps the cells apart in every report (columns of the store's cells table and the tidy table)
DISTINGUISHING = ("dataset", "iterations", "eval_every", "batch_size", "lr", "optimiser", "study_options", "preset",
                  "config_version", "numerics_version")


def _setting_text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _as_dict(value):
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


def _differences(group: pd.DataFrame, column: str) -> List[List[str]]:
    """Per row of ``group``, the ``setting=value`` texts of ``column`` that differ within the group (for a
    JSON object column, only the keys whose values differ, as ``column.key=value``)."""
    dicts = [_as_dict(v) for v in group[column]]
    if all(d is not None for d in dicts):
        keys = sorted(set().union(*dicts))
        differ = [k for k in keys if len({json.dumps(d.get(k), sort_keys=True) for d in dicts}) > 1]
        return [[f"{column}.{k}={json.dumps(d[k]) if k in d else '–'}" for k in differ] for d in dicts]
    return [[f"{column}={_setting_text(v)}"] for v in group[column]]


def separate_settings(table: pd.DataFrame, cells: pd.DataFrame):
    """Cells that share (study, model, label, K) but differ in a setting get distinct labels, so no
    report pools them: the label gains `` {setting=value, …}`` for every setting (column of
    :data:`DISTINGUISHING`; for an options column, every option) that differs within its group — read
    from the columns, nothing parsed.  Rows of ``table`` follow their cell by its ``key``.
    Returns (table, cells)."""
    if cells is None or cells.empty or "key" not in cells.columns:
        return table, cells
    live = cells[cells.status != "superseded"] if "status" in cells.columns else cells
    columns = [c for c in DISTINGUISHING if c in live.columns]
    rename = {}
    for _, group in live.groupby(["study", "model", "label", "particles"], dropna=False):
        if len(group) < 2:
            continue
        varying = [c for c in columns if group[c].map(_setting_text).nunique() > 1]
        if not varying:
            continue
        parts = [sum(texts, []) for texts in zip(*(_differences(group, c) for c in varying))]
        for key, label, texts in zip(group["key"], group["label"], parts):
            rename[key] = f"{label} {{{', '.join(texts)}}}"
    if not rename:
        return table, cells
    cells = cells.assign(label=[rename.get(k, l) for k, l in zip(cells.key, cells.label)])
    if table is not None and "key" in table.columns:
        table = table.assign(label=[rename.get(k, l) for k, l in zip(table.key, table.label)])
    return table, cells


def display_name(estimator: str) -> str:
    """How the reports print an estimator: its declared ``display_name`` (default: the registry name)."""
    from estibench import estimators
    try:
        return estimators.REGISTRY.factory(estimator).display_name or estimator
    except KeyError:  # a plugin this process cannot import
        return estimator


#: label → estimator, from the ``label`` and ``estimator`` columns of the table being reported
#: (:func:`learn_estimators`, called by ``build_site``)
_ESTIMATOR_OF_LABEL: Dict[str, str] = {}


def learn_estimators(table: pd.DataFrame) -> None:
    """Record which estimator each label of ``table`` belongs to, from its columns."""
    if table is not None and len(table) and {"label", "estimator"} <= set(table.columns):
        pairs = table[["label", "estimator"]].drop_duplicates()
        _ESTIMATOR_OF_LABEL.update(zip(pairs.label, pairs.estimator))


def estimator_of(label: str) -> str:
    """The estimator a label belongs to: from the reported table's columns (:func:`learn_estimators`);
    for a label with no row (a published column) the registry name it starts with (``Cell.label`` =
    name[options]; the longest match wins); else the label itself."""
    if label in _ESTIMATOR_OF_LABEL:
        return _ESTIMATOR_OF_LABEL[label]
    from estibench import estimators
    for name in sorted(estimators.names(), key=len, reverse=True):
        if label == name or label.startswith(name + "[") or label.startswith(name + " {"):
            return name
    return label


def pretty_label(label: str) -> str:
    """A label with its estimator's registry name replaced by the display name (``dww[delta=0.1]`` →
    ``δ-WW[delta=0.1]``)."""
    name = estimator_of(label)
    return display_name(name) + label[len(name):] if label.startswith(name) else label
