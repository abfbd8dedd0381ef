"""Aggregation over seeds (intervals for means, ranks that separate only what the seeds separate), the
separation of cells that differ in a setting, short labels, and table export (CSV, LaTeX).

Intervals.  A mean over the n seeds of a cell is printed ``mean [lo, hi]``: the 95 % Student-t interval
for the mean, mean ± t(0.975; n − 1) · s/√n with s the standard deviation of the seeds (ddof = 1; the
quantile from ``scipy.stats.t``).  Its coverage holds at the n we run (2–10 seeds) for roughly normal
per-seed values: ``tests/test_intervals.py`` simulates it through :func:`mean_ci_groups` (95.0–95.4 % at
n ∈ {2, 3, 5, 10}, 4,000 normal samples each), where the percentile bootstrap this module used before
covered 50 %, 75 %, 84 % and 90 %.  One seed: no interval (``lo``, ``hi`` NaN, printed ``[no interval]``);
n ≥ 2 identical values: exactly zero width.
:func:`ci_label` says the method and n wherever an interval is printed.  A median with its quartiles is
descriptive (the spread of the seeds, not an interval for the median): :func:`format_iqr` prints it as
``median (IQR q25 to q75)``, which cannot be read as an interval.  No report prints an interval for a
statistic other than a mean; one that does should use ``scipy.stats.bootstrap(method="BCa")``.

Ranks.  :func:`separated_ranks`: rank = 1 + the number of estimators that are *separated* from it and
better, where separated means a two-sided Welch t-test on the per-seed values (``scipy.stats``) rejects
equal means after a Holm correction over every testable pair of the group, family-wise α = 0.05.
Estimators the seeds do not separate share a rank; one with a single seed is not ranked.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
#: family-wise error rate of the rank separation (:func:`separated_ranks`)
ALPHA = 0.05


def ci_label(n=None, *, level: float = LEVEL, column: Optional[str] = "n seeds") -> str:
    """How an interval for a mean over seeds is labelled where it is printed: its method and n.  ``n``: the
    number of seeds (an int, or the per-row numbers: a single value is printed as ``n = …``); None or several
    values: n is the table's ``column`` column (``column=None``: a table without one; n is each cell's seeds)."""
    if n is not None and not isinstance(n, (int, np.integer)):
        values = sorted({int(v) for v in n})
        n = values[0] if len(values) == 1 else None
    where = (f"n = {n} seeds" if n is not None else f"n = the `{column}` column" if column
             else "n = each cell's seeds, which vary by row")
    return (f"mean [{level:.0%} Student-t interval for the mean] over seeds, {where}"
            + ("; one seed: no interval" if n is None or n == 1 else ""))


def _t_rows(mean: np.ndarray, sd: np.ndarray, n: np.ndarray, level: float) -> Tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the Student-t interval per row: NaN where n < 2, exactly the mean where sd = 0."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = stats.t.ppf(0.5 + level / 2.0, np.where(n >= 2, n - 1, np.nan))
        half = np.where(sd == 0, 0.0, q * sd / np.sqrt(n))
    half = np.where(n >= 2, half, np.nan)
    return mean - half, mean + half


def mean_ci(values: Iterable[float], *, level: float = LEVEL) -> Tuple[float, float, float]:
    """(mean, lo, hi) of the finite values with the Student-t interval for the mean; (mean, NaN, NaN) for
    one value, (NaN, NaN, NaN) for none."""
    v = np.asarray(list(values) if not isinstance(values, (np.ndarray, pd.Series)) else values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = v.mean()
    sd = v.std(ddof=1) if v.size > 1 else np.nan
    if v.size > 1 and np.ptp(v) == 0:
        sd = 0.0
    lo, hi = _t_rows(np.array([mean]), np.array([sd]), np.array([v.size]), level)
    return float(mean), float(lo[0]), float(hi[0])


def mean_ci_groups(frame: pd.DataFrame, by: Sequence[str], value: str = "value", *,
                   level: float = LEVEL) -> pd.DataFrame:
    """One row per group of ``by``: columns ``by`` + n, mean, lo, hi (non-finite values dropped; the
    interval of :func:`mean_ci`).  The unit is the seed: where ``frame`` has a ``seed`` column that ``by`` does
    not name, the rows of one seed in a group (a metric recorded twice at the same iteration, e.g. the RBM
    study's log Z by the last evaluation and by the final metrics) are averaged first, so n counts seeds."""
    by = list(by)
    per_seed = "seed" in frame.columns and "seed" not in by
    data = frame[by + (["seed"] if per_seed else []) + [value]]
    data = data[np.isfinite(data[value].to_numpy(dtype=float))]
    if data.empty:
        return pd.DataFrame(columns=by + ["n", "mean", "lo", "hi"])
    if per_seed:
        data = data.groupby(by + ["seed"], sort=False, dropna=False)[value].mean().reset_index()
    g = data.groupby(by, sort=True)[value]
    out = pd.DataFrame({"n": g.size(), "mean": g.mean(), "sd": g.std(ddof=1),
                        "spread": g.max() - g.min()}).reset_index()
    sd = np.where(out.spread.to_numpy() == 0, 0.0, out.sd.to_numpy(dtype=float))
    out["lo"], out["hi"] = _t_rows(out["mean"].to_numpy(dtype=float), sd, out["n"].to_numpy(), level)
    constant = (out.spread.to_numpy() == 0) & (out["n"].to_numpy() >= 2)
    out.loc[constant, ["lo", "hi"]] = out.loc[constant, ["mean", "mean"]].to_numpy()  # exactly zero width
    out["n"] = out["n"].astype(int)
    return out[by + ["n", "mean", "lo", "hi"]]


def format_ci(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.{digits}g} [no interval]"
    return f"{mean:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def format_iqr(median: float, q25: float, q75: float, digits: int = 3) -> str:
    """A median and the interquartile range of the seeds: descriptive, not an interval."""
    return f"{median:.{digits}g} (IQR {q25:.{digits}g} to {q75:.{digits}g})"


# -- ranks ---------------------------------------------------------------------------------------
def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979; equal to R's ``p.adjust(p, "holm")`` and statsmodels'
    ``multipletests(method="holm")``, which this project does not depend on; scipy has no Holm): reject where
    ≤ α to keep the family-wise error rate at α under any dependence between the tests."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def welch_pvalue(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value of equal means (``scipy.stats.ttest_ind_from_stats``, equal_var=False)
    for two samples of n ≥ 2 each (NaN otherwise).  Both without spread: 0 where the means differ, 1 where
    they are equal (the test's limit; scipy returns NaN)."""
    return float(_welch(*_stats(a), *_stats(b)))


def _stats(values) -> Tuple[float, float, int]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return (float(v.mean()) if v.size else np.nan, np.nan, int(v.size))
    return float(v.mean()), (0.0 if np.ptp(v) == 0 else float(v.std(ddof=1))), int(v.size)


def _welch(m1, s1, n1, m2, s2, n2):
    m1, s1, n1, m2, s2, n2 = map(np.asarray, (m1, s1, n1, m2, s2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue
    both_flat = (s1 == 0) & (s2 == 0)
    p = np.where(both_flat, np.where(m1 == m2, 1.0, 0.0), p)
    return np.where((n1 >= 2) & (n2 >= 2), p, np.nan)


def separated_ranks(values: Mapping[str, Sequence[float]], *, higher_is_better: bool,
                    alpha: float = ALPHA) -> Dict[str, Optional[int]]:
    """label → rank among the estimators of one group (one model and K), from their per-seed values.

    Two estimators are *separated* when the two-sided Welch t-test of equal means (:func:`welch_pvalue`)
    rejects after Holm's correction (:func:`holm`) over every testable pair of the group, at family-wise
    ``alpha``.  rank = 1 + the number of estimators separated from it and better (higher mean if
    ``higher_is_better``), so estimators the seeds do not separate share a rank.  Edge cases: an estimator
    with fewer than two finite values is not tested (no variance) and not ranked (None); its pairs are left
    out of the correction.  Two estimators whose seeds all agree (no spread in either) are separated exactly
    when their means differ."""
    labels = list(values)
    s = np.array([_stats(values[l]) for l in labels], dtype=float).reshape(-1, 3)
    i, j = np.triu_indices(len(labels), k=1)
    p = _welch(s[i, 0], s[i, 1], s[i, 2], s[j, 0], s[j, 1], s[j, 2])
    tested = np.isfinite(p)
    reject = np.zeros(p.shape, dtype=bool)
    reject[tested] = holm(p[tested]) <= alpha
    sign = 1.0 if higher_is_better else -1.0
    beaten = np.zeros(len(labels), dtype=int)
    for a, b in zip(i[reject], j[reject]):
        if sign * (s[a, 0] - s[b, 0]) > 0:
            beaten[b] += 1
        else:
            beaten[a] += 1
    return {l: (int(1 + beaten[k]) if s[k, 2] >= 2 else None) for k, l in enumerate(labels)}


def rank_caption(alpha: float = ALPHA) -> str:
    """What a leaderboard's rank means (:func:`separated_ranks`), for its caption."""
    return (f"rank = 1 + the number of estimators of the same model and K that are separated from it and better; "
            f"separated: a two-sided Welch t-test on the final per-seed values (scipy.stats) rejects equal means "
            f"after a Holm correction over all pairs of the group, family-wise α = {alpha:g}, with each "
            f"estimator's own n seeds; a shared rank means the seeds do not separate them; an estimator with one "
            f"seed is not ranked (–)")


# -- labels --------------------------------------------------------------------------------------
def _split_top(text: str) -> List[str]:
    """``text`` split at the commas outside any brackets."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    parts.append(text[start:])
    return parts


def _parse_label(label: str) -> Optional[Tuple[str, List[Tuple[str, str]]]]:
    """``name[k=v,…]`` → (name, [(k, v), …]); None where the label has another form."""
    label = str(label)
    if not label.endswith("]") or "[" not in label:
        return None
    name, inner = label[:-1].split("[", 1)
    items = []
    for part in _split_top(inner):
        if "=" not in part:
            return None
        k, v = part.split("=", 1)
        items.append((k, v))
    return name, items


def short_labels(labels: Iterable[str]) -> Dict[str, str]:
    """short → full for labels of the form ``name[k=v,…]`` (``Cell.model_label``, ``Cell.label``): each keeps
    only the settings that differ among the labels of the same name in ``labels`` (a setting that some lack
    counts as differing; the labels lacking it omit it), so ``rbm_vae[ais_chains=200,…,groups=2]`` reads
    ``rbm_vae[groups=2]`` where only ``groups`` varies, and a name with a single label reads as the bare name.
    Distinct full labels keep distinct short ones; other labels are kept as they are."""
    labels = list(dict.fromkeys(str(l) for l in labels))
    parsed = {l: _parse_label(l) for l in labels}
    by_name: Dict[str, List[str]] = {}
    for l, p in parsed.items():
        if p is not None:
            by_name.setdefault(p[0], []).append(l)
    out: Dict[str, str] = {}
    for l in labels:
        p = parsed[l]
        if p is None:
            out[l] = l
            continue
        name, items = p
        group = [dict(parsed[g][1]) for g in by_name[name]]
        keys = {k for d in group for k in d}
        varying = {k for k in keys if len({d.get(k) for d in group}) > 1}
        kept = [f"{k}={v}" for k, v in items if k in varying]
        out[l] = f"{name}[{','.join(kept)}]" if kept else name
    short = {s: l for l, s in out.items()}
    if len(short) != len(out):  # cannot happen for well-formed labels; never merge two rows
        return {l: l for l in labels}
    return short


def final_rows(table: pd.DataFrame, by: Sequence[str] = ("label", "particles")) -> pd.DataFrame:
    """The rows at each (label, particles) group's last recorded iteration (for a diverged cell:
    its last finite evaluation)."""
    if table.empty:
        return table
    last = table.groupby(list(by)).iteration.transform("max")
    return table[table.iteration == last]


def final_ci_table(table: pd.DataFrame, metrics: Optional[Sequence[str]] = None, *,
                   order: Optional[Sequence[str]] = None,
                   marks: Optional[Dict[Tuple[str, int], str]] = None) -> pd.DataFrame:
    """Final-iteration mean [95 % Student-t interval] over seeds (:func:`mean_ci_groups`; caption:
    :func:`ci_label` with the ``n seeds`` column): one row per (label, K), one column per metric, plus the
    number of seeds.  ``marks[(label, K)]`` is appended to the label (e.g. † for a diverged cell); ``order``
    lists labels first (others follow alphabetically)."""
    final = final_rows(table)
    if metrics is not None:
        final = final[final.metric.isin(metrics)]
    if final.empty:
        return pd.DataFrame()
    agg = mean_ci_groups(final, ["label", "particles", "metric"])
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


__all__ = ["LEVEL", "ALPHA", "ci_label", "mean_ci", "mean_ci_groups", "format_ci",
           "format_iqr", "holm", "welch_pvalue", "separated_ranks", "rank_caption", "short_labels",
           "final_rows", "final_ci_table", "latex_escape", "to_latex", "export_table"]


#: settings that distinguish two cells beside (study, model, label, K): a difference in any of them
#: keeps the cells apart in every report (columns of the store's cells table and the tidy table).  The labels name
#: the options as passed; the effective options (``model_options``, ``estimator_options``) tell apart two cells of
#: one label computed before and after a default changed
DISTINGUISHING = ("dataset", "iterations", "eval_every", "batch_size", "lr", "optimiser", "study_options", "preset",
                  "config_version", "numerics_version", "model_options", "estimator_options")


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


def _without_measurement(value, options: Sequence[str]):
    """A study-options value without the measurement-only options (canonical JSON; other values as they are)."""
    d = _as_dict(value)
    if d is None:
        return value
    return json.dumps({k: v for k, v in d.items() if k not in options}, sort_keys=True)


def separate_settings(table: pd.DataFrame, cells: pd.DataFrame):
    """Cells that share (study, model, label, K) but differ in a setting get distinct labels, so no
    report pools them: the label gains `` {setting=value, …}`` for every setting (column of
    :data:`DISTINGUISHING`; for an options column, every option) that differs within its group — read
    from the columns, nothing parsed.  Rows of ``table`` follow their cell by its ``key``.

    Measurement-only study options (``harness.measurement.MEASUREMENT_OPTIONS``: the gradient basket) neither
    split nor label cells: they do not change a cell's random stream (``Cell.rng_seed``), so two cells that
    differ only in them trained the same trajectory, and their seeds are the same seeds.  Such cells share
    their label, and ``table`` keeps each (seed, metric) of them once, from the cell with the most rows (the
    one that measured more; ties: the smaller key), so no seed counts twice.  Returns (table, cells)."""
    if cells is None or cells.empty or "key" not in cells.columns:
        return table, cells
    from estibench.harness.measurement import MEASUREMENT_OPTIONS
    live = cells[cells.status != "superseded"] if "status" in cells.columns else cells
    if "study_options" in live.columns:
        live = live.assign(study_options=live.study_options.map(
            lambda v: _without_measurement(v, MEASUREMENT_OPTIONS)))
    columns = [c for c in DISTINGUISHING if c in live.columns]
    has_rows = table is not None and {"key", "seed", "metric"} <= set(table.columns)
    n_rows = table.key.value_counts() if has_rows else pd.Series(dtype=int)
    rename: Dict[str, str] = {}
    priority: Dict[str, Tuple[int, int]] = {}  # key → (set of same-trajectory cells, preference in it)
    for _, group in live.groupby(["study", "model", "label", "particles"], dropna=False):
        if len(group) < 2:
            continue
        texts = pd.DataFrame({c: group[c].map(_setting_text) for c in columns}, index=group.index)
        identity = texts.apply(tuple, axis=1) if columns else pd.Series([()] * len(group), index=group.index)
        for _, same in group.groupby(identity.to_numpy(), sort=False):
            if len(same) > 1:
                ranked = sorted(same["key"], key=lambda k: (-int(n_rows.get(k, 0)), k))
                trajectory = len({t for t, _ in priority.values()})
                priority.update({k: (trajectory, r) for r, k in enumerate(ranked)})
        varying = [c for c in columns if texts[c].nunique() > 1]
        if not varying:
            continue
        parts = [sum(t, []) for t in zip(*(_differences(group, c) for c in varying))]
        for key, label, t in zip(group["key"], group["label"], parts):
            rename[key] = f"{label} {{{', '.join(t)}}}"
    if priority and has_rows:
        rows = table[table.key.isin(priority)]
        which = rows.key.map(lambda k: priority[k][0]).to_numpy()
        pref = rows.key.map(lambda k: priority[k][1])
        best = pref.groupby([which, rows.seed.to_numpy(), rows.metric.to_numpy()]).transform("min")
        table = table.drop(index=rows.index[pref.to_numpy() > best.to_numpy()])
    if not rename:
        return table, cells
    cells = cells.assign(label=[rename.get(k, l) for k, l in zip(cells.key, cells.label)])
    if table is not None and "key" in table.columns:
        table = table.assign(label=[rename.get(k, l) for k, l in zip(table.key, table.label)])
    return table, cells


def display_name(estimator: str) -> str:
    """How the reports print an estimator: its declared ``display_name`` (default: the registry name).  Only names
    already registered in this process are looked up (``Registry.known``): a ``package.module:Class`` a store
    names is printed as it is, never imported."""
    from estibench import estimators
    return getattr(estimators.REGISTRY.known(estimator), "display_name", None) or estimator


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
