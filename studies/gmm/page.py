"""The GMM study's report (RWS §4.3): Fig 4, Fig 5, the exact-gradient table, a final-iteration
summary and a check of the paper's findings.  Every function here is a pure function of the
tidy results table (columns study, model, estimator, label, particles, seed, iteration, metric,
value) and of the cells table; nothing is recomputed.

:func:`sections` lists the report's parts (``reports.section.Section``); the static site's GMM page
(``reports.build_site``) and :func:`write_report`'s Markdown are both rendered from it.  Fig 4
keeps the paper's median and interquartile range (descriptive); the final-iteration summary and the
exact-gradient table give means over seeds with 95 % Student-t intervals (``reports.tables``), the
statistic of the site's leaderboard.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from estibench.reports import tables as tb  # noqa: E402
from estibench.reports.definitions import METRIC_DEFINITIONS, markdown_table  # noqa: E402
from estibench.reports.export import materialise  # noqa: E402
from estibench.reports.naming import ESTIMATORS_CAPTION, estimators_table  # noqa: E402
from estibench.reports.render import md_text, sections_markdown  # noqa: E402
from estibench.reports.section import Section  # noqa: E402
from estibench.reports.summary import cell_marks, diverged_note  # noqa: E402

from estibench.files import write_text  # noqa: E402
from estibench.studies.gmm.settings import ESTIMATORS as PAPER_ESTIMATORS, ORDER, PUBLISHED, HEADLINE, METRICS  # noqa: E402  (the study's data)
from estibench.studies.gmm.settings import DEFINITIONS as STUDY_DEFINITIONS  # noqa: E402  (the metrics it alone records)

ORDER = list(ORDER)
NAMES = {name: tb.display_name(name) for name in ORDER}  # the estimators' declared display names
IWAE_METHODS = ("vimco", "reinforce", "relax", "concrete")
CURVES = [("model_error", "model error ‖p_θ(z) − p_true(z)‖"),
          ("inference_error", "inference error"),
          ("grad_std_phi", "φ-gradient std")]

#: the GMM metrics' definitions as a Markdown table (the engine's, reports.definitions.METRIC_DEFINITIONS, and the
#: study's own, settings.DEFINITIONS)
DEFINITIONS = markdown_table(METRICS, known={**METRIC_DEFINITIONS, **STUDY_DEFINITIONS})


def _ordered(labels) -> List[str]:
    base = {l: tb.estimator_of(l) for l in labels}
    return sorted(labels, key=lambda l: (ORDER.index(base[l]) if base[l] in ORDER else 99, l))


def _pretty(label: str) -> str:
    return tb.pretty_label(label)


def final_iteration(table: pd.DataFrame) -> pd.DataFrame:
    last = table.groupby(["label", "particles"]).iteration.transform("max")
    return table[table.iteration == last]


SUMMARY_METRICS = ["model_error", "inference_error", "grad_std_phi", "log_px", "kl_qp", "kl_pq", "sec_per_iter"]


def summary_table(table: pd.DataFrame, marks=None) -> pd.DataFrame:
    """Final-iteration mean [95 % Student-t interval] over seeds per (estimator, K), with the number of seeds
    (``tables.mean_ci_groups``; caption ``tables.ci_label``).  The mean, not the median of Fig 4: one statistic
    per page with the site's leaderboard of this study's headline metric (inference_error), whose interval and
    rank test are about means; the paper prints no table to compare a median with.  ``marks[(label, K)]`` is
    appended to the estimator's name (e.g. † for a diverged cell)."""
    metrics = SUMMARY_METRICS
    final = final_iteration(table)
    final = final[final.metric.isin(metrics)]
    keys = ["label", "particles", "metric"]
    agg = tb.mean_ci_groups(final, keys).set_index(keys)
    text = pd.Series([tb.format_ci(m, l, h) for m, l, h in zip(agg["mean"], agg["lo"], agg["hi"])], index=agg.index)
    cell = text.unstack("metric")
    cell = cell[[m for m in metrics if m in cell.columns]].fillna("–")
    cell.insert(0, "n seeds", agg.n.groupby(level=["label", "particles"]).max().reindex(cell.index).astype(int))
    return _flat(cell, final.label.unique(), marks)


def _flat(frame: pd.DataFrame, labels, marks=None) -> pd.DataFrame:
    """(label, K)-indexed frame → rows ordered by K then estimator, with plain columns."""
    order = {l: i for i, l in enumerate(_ordered(labels))}
    marks = marks or {}
    frame = frame.reset_index()
    frame = frame.assign(_o=frame.label.map(order)).sort_values(["particles", "_o"]).drop(columns="_o")
    names = [_pretty(l) + marks.get((l, int(k)), "") for l, k in zip(frame.label, frame.particles)]
    frame = frame.drop(columns="label")
    frame.insert(0, "estimator", names)
    frame.columns.name = None
    return frame.rename(columns={"particles": "K"}).reset_index(drop=True)


def exact_gradient_table(table: pd.DataFrame, n_draws: int = 100, stat: str = "mean", marks=None) -> pd.DataFrame:
    """φ-gradient bias², variance, MSE and relative bias against the exact gradient, initial and
    final, per (estimator, K).  ``stat="mean"``: mean [95 % Student-t interval] over seeds
    (``reports.tables``); ``stat="median"``: the median over seeds.  ``bias_sq/(var/N)`` is the
    ratio of the two aggregates (bias² in units of its noise floor variance/N)."""
    rows = table[table.metric.str.startswith("exact_grad/")].copy()
    if rows.empty:
        return pd.DataFrame()
    first = rows.groupby(["label", "particles"]).iteration.transform("min")
    rows["stage"] = np.where(rows.iteration == first, "initial", "final")
    rows["metric"] = rows.metric.str.replace("exact_grad/", "", regex=False)
    keys = ["label", "particles", "stage", "metric"]
    if stat == "median":
        point = rows.groupby(keys).value.median()
        text = point.map(lambda v: f"{v:.3g}" if np.isfinite(v) else "–")
    elif stat == "mean":
        agg = tb.mean_ci_groups(rows, keys).set_index(keys)
        point = agg["mean"]
        text = pd.Series([tb.format_ci(m, l, h) for m, l, h in zip(agg["mean"], agg["lo"], agg["hi"])],
                         index=agg.index)
    else:
        raise ValueError(f"stat must be 'mean' or 'median', got {stat!r}")
    point, text = point.unstack(["stage", "metric"]), text.unstack(["stage", "metric"])
    for stage in ("initial", "final"):
        if (stage, "variance") in point.columns and (stage, "bias_sq") in point.columns:
            # bias² in units of its noise floor variance/N: |·| ≲ 1 means no bias is resolved at this N
            ratio = point[(stage, "bias_sq")] / (point[(stage, "variance")] / n_draws)
            text[(stage, "bias_sq/(var/N)")] = ratio.map(lambda v: f"{v:.3g}" if np.isfinite(v) else "–")
    cols = [(s, m) for s in ("initial", "final") for m in ("bias_sq", "bias_sq/(var/N)", "variance", "mse", "rel_bias")
            if (s, m) in text.columns]
    text = text[cols].fillna("–")
    text.columns = [f"{s} {m}" for s, m in text.columns]
    return _flat(text, rows.label.unique(), marks)


def _groups(labels) -> dict:
    """label → 0 for the paper's seven estimators, 1 for those published since (line styles: solid, dashed)."""
    return {l: 0 if tb.estimator_of(l) in PAPER_ESTIMATORS else 1 for l in labels}


def median_band(frame: pd.DataFrame) -> pd.DataFrame:
    """Per iteration: median and 25 % / 75 % quantiles of ``value`` over seeds."""
    g = frame.groupby("iteration").value
    return pd.DataFrame({"median": g.median(), "q25": g.quantile(0.25), "q75": g.quantile(0.75)}).reset_index()


def figure_curves(table: pd.DataFrame, path: str) -> str:
    """Fig 4: rows model error / inference error / φ-gradient std; columns K; median and IQR over seeds.  Every
    estimator has its own (colour, line style) (``reports.plotstyle``: the paper's seven solid, those published
    since dashed); the legend sits to the right of the panels."""
    from estibench.reports import plotstyle as ps
    sns.set_theme(style="whitegrid", context="paper")
    Ks = sorted(table.particles.unique())
    labels = _ordered(table.label.unique())
    styles = ps.line_styles(labels, _groups(labels))
    fig, axes = plt.subplots(len(CURVES), len(Ks), figsize=(2.6 * len(Ks), 2.2 * len(CURVES)), squeeze=False,
                             sharex=True, sharey="row")
    for i, (metric, title) in enumerate(CURVES):
        data = table[table.metric == metric]
        for j, K in enumerate(Ks):
            ax = axes[i, j]
            sub = data[data.particles == K]
            for label in labels:
                rows = sub[sub.label == label]
                if rows.empty:
                    continue
                band = median_band(rows)
                ax.plot(band.iteration, band["median"], lw=1.1, label=_pretty(label), **styles[label])
                ax.fill_between(band.iteration, band.q25, band.q75, color=styles[label]["color"], alpha=0.12, lw=0)
            values = data.value[np.isfinite(data.value) & (data.value > 0)]
            if len(values) and values.max() / values.min() > 10:  # a short run's errors may span less than a decade
                ax.set_yscale("log")
            ax.set_title(f"K = {K}" if i == 0 else "", fontsize=10)
            ax.set_ylabel(title if j == 0 else "", fontsize=9)
            ax.set_xlabel("iteration" if i == len(CURVES) - 1 else "", fontsize=9)
            ax.tick_params(labelsize=8)
            ps.compact_iterations(ax)
    handles, names = ps.unique_handles(axes.ravel())
    ps.legend_outside(fig, handles, names, fontsize=9,
                      title="solid: the paper's seven\ndashed: published since" if len(set(_groups(labels).values())) > 1
                      else None)
    fig.suptitle("GMM training (RWS Fig 4): median and interquartile band over seeds", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return ps.save(fig, path, dpi=100)


PMF = re.compile(r"^(prior_pmf|guide_pmf)\[(?:x=([^,]+),)?z=(\d+)\]$")


def hinton_snapshots(table: pd.DataFrame, K: int, seed: int) -> pd.DataFrame:
    rows = table[(table.particles == K) & (table.seed == seed) & table.metric.str.contains("_pmf\\[")].copy()
    parts = rows.metric.str.extract(PMF)
    rows["kind"], rows["x"], rows["z"] = parts[0], parts[1].fillna("prior"), parts[2].astype(int)
    return rows


def figure_hinton(table: pd.DataFrame, K: int, path: str, seed: int = 0) -> str:
    """Fig 5 for one K: one row per estimator, columns start / middle / end of training; in each panel the first
    row (black) is p_θ(z), the others (blue) q_φ(z|x) for a few x; square areas ∝ probability (seed ``seed``).
    Panels are laid out so that the figure is drawn near its natural size on a page (no shrinking of 14 columns)."""
    from estibench.reports import plotstyle as ps
    snaps = hinton_snapshots(table, K, seed)
    labels = _ordered(snaps.label.unique())
    iters = sorted(snaps.iteration.unique())
    xs_all = ["prior"] + sorted((v for v in snaps.x.unique() if v != "prior"), key=float)
    height = 0.22 * len(xs_all) + 0.35
    fig, axes = plt.subplots(len(labels), len(iters), figsize=(2.5 * len(iters) + 2.2, height * len(labels) + 0.9),
                             squeeze=False)
    for i, label in enumerate(labels):
        for j, it in enumerate(iters):
            ax = axes[i, j]
            s = snaps[(snaps.label == label) & (snaps.iteration == it)]
            for r, xv in enumerate(xs_all):
                row = s[s.x == xv]
                ax.scatter(row.z, np.full(len(row), -r), s=row.value.clip(lower=0) * 90, marker="s",
                           color="black" if xv == "prior" else "tab:blue", linewidths=0)
            ax.set_xlim(-1, 20)
            ax.set_ylim(-len(xs_all) + 0.4, 0.6)
            ax.set_xticks([])
            ax.set_yticks(-np.arange(len(xs_all)))
            ax.grid(False)
            if j == len(iters) - 1:
                ax.yaxis.tick_right()
                ax.set_yticklabels(["p(z)"] + [f"q(z|{x})" for x in xs_all[1:]], fontsize=7)
            else:
                ax.set_yticklabels([])
            ax.tick_params(length=0)
            if i == 0:
                ax.set_title(f"iteration {it:,}", fontsize=9)
            if j == 0:
                ax.set_ylabel(_pretty(label), fontsize=9, rotation=0, ha="right", va="center")
    fig.suptitle(f"GMM K = {K} (RWS Fig 5), seed {seed}: z = 0..19 left to right; square area ∝ probability",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98), h_pad=0.3, w_pad=0.4)
    return ps.save(fig, path, dpi=100)


def support_extent(table: pd.DataFrame, label: str, K: int, threshold: float = 0.01) -> float:
    """Median over seeds of the largest z whose final prior mass exceeds ``threshold``."""
    s = table[(table.label == label) & (table.particles == K) & table.metric.str.startswith("prior_pmf")]
    if s.empty:
        return float("nan")
    s = s[s.iteration == s.iteration.max()].copy()
    s["z"] = s.metric.str.extract(r"z=(\d+)")[0].astype(int)
    top = s[s.value > threshold].groupby("seed").z.max()
    return float(top.median())


def trend_Ks(Ks: List[int]) -> List[int]:
    """The K over which a "with K" finding is judged: every K the study ran except K = 2 when at
    least two larger K exist (at K = 2 every method zero-forces, RWS §4.3, so a trend that starts
    there measures the collapse, not the trend)."""
    larger = [K for K in Ks if K > 2]
    return larger if len(larger) >= 2 else list(Ks)


def spearman(xs, ys) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than 2 finite pairs."""
    pairs = [(x, y) for x, y in zip(xs, ys) if np.isfinite(y)]
    if len(pairs) < 2:
        return float("nan")
    a, b = (pd.Series(v).rank().to_numpy() for v in zip(*pairs))
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


#: a trend with K is judged over at least this many K values (:func:`trend_Ks`): a rank correlation of two points
#: is ±1 whatever the data
MIN_TREND_K = 3
#: every verdict needs at least this many seeds per cell (its medians are over seeds)
MIN_SEEDS = 3
MINIMUM_TEXT = (f"A verdict needs enough points to be one: a trend with K at least {MIN_TREND_K} K values (K = 2 "
                f"left out when two larger K ran), and every verdict at least {MIN_SEEDS} seeds per cell; "
                f"otherwise the row reads \"not judged\" and gives the count.")


def _K_set(Ks) -> str:
    return f"K ∈ {{{', '.join(map(str, Ks))}}}" if len(Ks) else "no K"


def findings(table: pd.DataFrame) -> List[Tuple[str, str, str]]:
    """The paper's findings (RWS §4.3's text) checked against this table: (finding, what we
    measured, verdict).  Trends with K are judged over :func:`trend_Ks` by the rank correlation ρ
    between K and the median final error over seeds, with every median printed: "improves" needs
    ρ ≤ −0.5 and a lower value at the largest K than at the smallest; "gets worse" the reverse;
    with fewer than :data:`MIN_TREND_K` K values a trend is "not judged (n K values)", and with fewer
    than :data:`MIN_SEEDS` seeds in a cell every finding is "not judged (n seeds)".
    Statements the paper makes at K = 2 (zero-forcing, support collapse) are judged at K = 2.  The findings
    are about the paper's seven methods, so only their rows are judged (an estimator published later, e.g.
    one run at K = 2 only or one more accurate than WW, neither removes a K nor changes a paper claim)."""
    table = table[table.estimator.isin(PAPER_ESTIMATORS)]
    final = final_iteration(table)
    med = final.groupby(["label", "metric", "particles"]).value.median()
    labels = set(table.label.unique())
    # only K values that every estimator in the table has finished are compared
    per_K = table.groupby("particles").label.unique()
    Ks = sorted(int(K) for K, ls in per_K.items() if set(ls) == labels)
    out = []
    if len(Ks) < 2:
        return [("all findings", f"complete for K = {Ks} only; two K values are needed", "not evaluated")]
    k0, k1 = Ks[0], Ks[-1]
    tK = trend_Ks(Ks)
    span = f"K ∈ {{{', '.join(map(str, tK))}}}"
    caveat = "" if tK != Ks or k0 != 2 else " (only K = 2 and one larger K ran: K = 2 is where every method zero-forces)"

    def err(l, K, m="model_error"):
        return med.get((l, m, K), np.nan)

    def verdict(ok):
        return "reproduced" if ok else "not reproduced"

    def trend(l, metric):
        vals = [err(l, K, metric) for K in tK]
        rho = spearman(tK, vals) if len(tK) >= MIN_TREND_K else float("nan")
        text = f"{_pretty(l)}: " + ", ".join(f"{v:.3g}" for v in vals) + (f" (ρ = {rho:+.2f})"
                                                                         if len(tK) >= MIN_TREND_K else "")
        return rho, vals, text

    def judged(group, metric, sign):
        if len(tK) < MIN_TREND_K:
            return "; ".join(trend(l, metric)[2] for l in group), f"not judged ({len(tK)} K values)"
        parts, hits = [], []
        for l in group:
            rho, vals, text = trend(l, metric)
            parts.append(text)
            if np.isfinite(rho) and sign * rho >= 0.5 and sign * (vals[-1] - vals[0]) > 0:
                hits.append(l)
        if len(hits) == len(group):
            v = "reproduced"
        elif not hits:
            v = "not reproduced"
        else:
            v = f"partly: {', '.join(_pretty(l) for l in hits)}"
        return "; ".join(parts), v

    for metric, what in (("model_error", "model error"), ("inference_error", "inference error")):
        if {"ws", "ww"} <= labels:
            text, v = judged(["ws", "ww"], metric, -1)
            out.append((f"WS and WW improve with K ({what} over {span}){caveat}", text, v))
        iw = [l for l in ("vimco", "reinforce", "relax") if l in labels]
        if iw:
            text, v = judged(iw, metric, +1)
            out.append((f"IWAE-based methods get worse with K ({what} over {span}){caveat}", text, v))
    others = [l for l in ("ww", "dww", "vimco", "reinforce", "relax") if l in labels]
    if "ws" in labels and others:
        worst = [K for K in Ks if all(err("ws", K) >= err(l, K) for l in others)]
        detail = "; ".join(f"K = {K}: WS {err('ws', K):.3g}, next highest "
                           f"{max(err(l, K) for l in others):.3g}" for K in Ks)
        out.append(("WS is worst at learning the model (final model error, among non-Concrete methods, every K)",
                    f"{detail}; WS highest at {_K_set(worst)}", verdict(len(worst) == len(Ks))))
    rivals = [l for l in labels if l not in ("ww", "dww")]
    if "ww" in labels and rivals:
        big = [K for K in Ks if K >= 10] or [k1]
        best = [K for K in big if all(err("ww", K) <= err(l, K) for l in rivals)]
        detail = "; ".join(f"K = {K}: " + ", ".join(f"{_pretty(l)} {err(l, K):.3g}" for l in _ordered(labels))
                           for K in big)
        out.append((f"WW is best at large K (final model error at K ∈ {{{', '.join(map(str, big))}}}, "
                    "against all but δ-WW)", detail, verdict(len(best) == len(big))))
        if k0 == 2:
            ext = support_extent(table, "ww", 2)
            out.append(("WW zero-forces at K = 2 (prior support collapses below z = 19)",
                        f"largest z with final prior mass > 1%: {ext:g} (median over seeds)", verdict(ext < 19)))
    if "dww" in labels:
        best = all(err("dww", k0) <= err(l, k0) for l in labels)
        out.append((f"δ-WW is best at small K (final model error, K = {k0})",
                    ", ".join(f"{_pretty(l)} {err(l, k0):.3g}" for l in _ordered(labels)), verdict(best)))
    iw_rivals = [l for l in ("vimco", "reinforce", "relax") if l in labels]
    if "concrete" in labels and iw_rivals:
        parts, bad = [], []
        for K in Ks:
            c, r = err("concrete", K, "inference_error"), min(err(l, K, "inference_error") for l in iw_rivals)
            parts.append(f"K = {K}: Concrete {c:.3g}, best other IWAE method {r:.3g}")
            if c > r and all(c > err(l, K, "inference_error") for l in iw_rivals):
                bad.append(K)
        v = "reproduced" if len(bad) == len(Ks) else ("not reproduced" if not bad else
                                                      f"partly: at {_K_set(bad)}")
        out.append(("Concrete fails (final inference error worse than every other IWAE-based method, every K)",
                    "; ".join(parts), v))
    rw = [l for l in ("ws", "ww") if l in labels]
    iwm = [l for l in IWAE_METHODS if l in labels]
    if rw and iwm:
        std = table[table.metric == "grad_std_phi"].groupby(["label", "particles"]).value.median()
        have = [K for K in Ks if all((l, K) in std.index for l in rw + iwm)]
        ok_K = [K for K in have if max(std[(l, K)] for l in rw) < min(std[(l, K)] for l in iwm)]
        detail = "; ".join(f"K = {K}: WS/WW ≤ {max(std[(l, K)] for l in rw):.3g}, IWAE methods ≥ "
                           f"{min(std[(l, K)] for l in iwm):.3g}" for K in have)
        out.append(("WS/WW have lower φ-gradient std than every IWAE method (median over run and seeds)",
                    f"{detail}; holds at {_K_set(ok_K)}", verdict(bool(have) and len(ok_K) == len(have))))
    paper = PUBLISHED["support_at_K2"].values[("gmm", "K=2")]  # the study's published data
    if k0 == 2 and any(l in labels for l in paper):
        parts, ok = [], True
        for l, ref in paper.items():
            if l in labels:
                ext = support_extent(table, l, 2)
                parts.append(f"{NAMES[l]} 0..{ext:g} (paper 0..{ref})")
                ok &= abs(ext - ref) <= 2
        out.append(("At K = 2 the learned prior's support collapses to about {0..9} (WS), {0..14} (WW), "
                    "{0..17} (VIMCO/REINFORCE)", "; ".join(parts), verdict(ok)))
    seeds = int(final.groupby(["label", "particles"]).seed.nunique().min())
    if seeds < MIN_SEEDS:
        return [(f, m, f"not judged ({seeds} seed{'s' if seeds != 1 else ''})") for f, m, _ in out]
    return out


def _md(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if not frame.empty else "(no rows)"


FINDING_COLUMNS = ["finding (RWS §4.3 / studies/gmm/README.md)", "measured here", "verdict"]

EXACT_CAPTION = (
    "N = 100 draws at frozen parameters on the 100 test points, initial parameters and after training.  "
    "The target is ELBO_IS^K (Eq. 1) for REINFORCE, VIMCO, RELAX and Concrete (Concrete's rows: bias against the "
    "discrete ELBO_IS^K, the objective it is meant to train; it follows its relaxed bound, which has no closed form) "
    "and −KL(p_θ(z|x) ‖ q_φ(z|x)) on the data (Eq. 4) for WS, WW and δ-WW.  "
    "`bias_sq/(var/N)` puts the bias² estimate in units of its noise floor (the ratio of the two means): values "
    "of order one or below mean that 100 draws do not resolve a bias (the high-variance unbiased estimators); "
    "the statistical tests in `tests/test_ground_truth.py` use 2,000 draws.")


def findings_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`findings` as a table (columns ``FINDING_COLUMNS``)."""
    return pd.DataFrame(findings(table), columns=FINDING_COLUMNS)


# -- the paper-budget reference ------------------------------------------------------------------------
#: the committed reference: the paper-budget run's findings and final headline values, made from the checkout's
#: published/gmm by :func:`write_reference` (``python -m estibench.studies.gmm.page --write-reference``); a test checks
#: that it matches what published/gmm gives.  An installation without it (a wheel) says so in one line.
REFERENCE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gmm_reference.json")
REFERENCE_SOURCE = "published/gmm/metrics.csv.gz"
_FINAL_COLUMNS = ["model", "model_name", "estimator", "label", "particles", "seed", "iteration",
                  "value"]


def reference_from(table: pd.DataFrame) -> dict:
    """The reference of a (paper-budget) tidy table: its budget (seeds, iterations, K, cells), the paper's findings
    as :func:`findings` judges them, and the final per-seed values of the study's headline metric (from which
    the leaderboard is computed by the current ``reports.leaderboard``)."""
    t = table[table.study == "gmm"] if "study" in table.columns else table
    metric = HEADLINE.metric
    rows = t[t.metric == metric]
    rows = rows[rows.iteration == rows.groupby(["model", "label", "particles", "seed"]).iteration.transform("max")]
    rows = rows.sort_values(["particles", "label", "seed"])
    for c in ("model_name",):
        if c not in rows.columns:
            rows = rows.assign(**{c: None})
    cells = t.groupby(["label", "particles"])
    return {"source": REFERENCE_SOURCE, "made_by": "python -m estibench.studies.gmm.page --write-reference",
            "metric": metric, "cells": int(cells.ngroups), "estimators": int(t.label.nunique()),
            "K": sorted(int(k) for k in t.particles.unique()),
            "seeds": sorted({int(n) for n in cells.seed.nunique()}),
            "iterations": sorted({int(n) for n in cells.iteration.max()}),
            "findings": [list(f) for f in findings(t)],
            "final_columns": _FINAL_COLUMNS,
            "final": [[(v.item() if hasattr(v, "item") else v) for v in r]
                      for r in rows[_FINAL_COLUMNS].itertuples(index=False)]}


def write_reference(source: str = None, path: str = REFERENCE_PATH) -> str:
    """(Re)write the committed reference from the checkout's published tidy table (``published/gmm/metrics.csv.gz``)."""
    import json
    source = source or os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                     REFERENCE_SOURCE)
    data = reference_from(pd.read_csv(source))
    dump = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
    lines = [f"{dump(k)}: {dump(v)}," for k, v in data.items() if k not in ("findings", "final")]
    for k in ("findings", "final"):  # one row a line: a regenerated file's diff shows what changed
        lines += [f"{dump(k)}: ["] + [f"  {dump(r)}," for r in data[k]]
        lines[-1] = lines[-1].rstrip(",")
        lines.append("],")
    lines[-1] = "]"
    write_text(path, "{\n" + "\n".join(lines) + "\n}\n")
    return path


def load_reference(path: Optional[str] = None):
    """The committed reference (:func:`reference_from`'s dict; ``path`` default :data:`REFERENCE_PATH`), or None
    where this installation lacks it."""
    import json
    path = path or REFERENCE_PATH
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def reference_table(ref: dict) -> pd.DataFrame:
    """The reference's final headline values as tidy rows (for ``reports.leaderboard.leaderboard``)."""
    frame = pd.DataFrame(ref["final"], columns=ref["final_columns"])
    return frame.assign(study="gmm", metric=ref["metric"])


def _budget(seeds, iterations) -> str:
    def one(values, unit):
        values = sorted(set(int(v) for v in values))
        return (f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}–{values[-1]:,}") + f" {unit}"
    return f"{one(seeds, 'seeds')} × {one(iterations, 'iterations')}"


def run_budget(table: pd.DataFrame) -> str:
    """"3 seeds × 3,000 iterations": this table's seeds and iterations per cell."""
    cells = table.groupby(["label", "particles"])
    return _budget(cells.seed.nunique(), cells.iteration.max())


def is_short_run(table: pd.DataFrame, ref: dict) -> bool:
    """Whether this table's run falls short of the reference's budget (fewer iterations or seeds in a cell)."""
    cells = table.groupby(["label", "particles"])
    return bool(cells.iteration.max().min() < min(ref["iterations"]) or cells.seed.nunique().min() < min(ref["seeds"]))


def reference_text(ref: Optional[dict], table: pd.DataFrame) -> str:
    """One line saying which is which: the committed paper-budget reference and this run (or that the reference is
    missing from this installation)."""
    yours = f"your run ({run_budget(table)}): indicative only"
    if ref is None:
        return (f"The paper-budget reference (studies/gmm/gmm_reference.json, made from a checkout's published/gmm) is not "
                f"in this installation, so this site shows {yours}; the project's published/gmm site has the "
                "paper-budget answer.")
    return f"**Paper budget** ({reference_budget(ref)}) beside **{yours}**."


def reference_budget(ref: dict) -> str:
    """"committed reference from published/gmm/metrics.csv.gz: 10 seeds × 100,000 iterations, K ∈ {…}, 47 cells"."""
    return (f"committed reference from {ref['source']}: {_budget(ref['seeds'], ref['iterations'])}, "
            f"K ∈ {{{', '.join(map(str, ref['K']))}}}, {ref['cells']} cells")


def reference_sections(table: pd.DataFrame, ref=False) -> List[Section]:
    """For a run short of the paper's budget: the committed paper-budget verdicts and leaderboard, said to be such
    (empty for a run at the paper's budget; one line where the reference is missing).  ``ref``: the reference
    (default: :func:`load_reference`)."""
    from estibench.reports import leaderboard as lb
    ref = load_reference() if ref is False else ref
    table = table[table.study == "gmm"] if "study" in table.columns else table
    if table.empty:
        return []
    if ref is None:
        return [Section("Paper-budget reference", "text", reference_text(None, table), name="reference")]
    if not is_short_run(table, ref):
        return []
    out = [Section("The paper's findings at the paper's budget (committed reference)", "table",
                   pd.DataFrame(ref["findings"], columns=FINDING_COLUMNS).rename(
                       columns={"measured here": "measured at the paper's budget"}),
                   caption=reference_text(ref, table) + "  These verdicts are the paper-budget answer, judged by this "
                           "code's findings check (" + MINIMUM_TEXT + ")", name="reference_findings")]
    board = lb.leaderboard(reference_table(ref), "gmm", HEADLINE)
    if board is not None and not board.empty:
        board = board[board.K.isin(set(int(k) for k in table.particles.unique()))]
        if "rank" in board.columns:
            board = board.assign(rank=[("–" if pd.isna(r) else str(r)) for r in board["rank"]])
        out.append(Section("Leaderboard at the paper's budget (committed reference)", "table",
                           board.drop(columns=["model"], errors="ignore"),
                           caption=f"{ref['metric']} at the end of training, from the reference's final per-seed "
                                   f"values ({_budget(ref['seeds'], ref['iterations'])}), ranked as the leaderboard "
                                   f"of your run: {lb.caption(HEADLINE, board)}  K values of your run only.",
                           name="reference_leaderboard"))
    return out


INDEX_HEADING = "gmm at the paper's budget (committed reference)"


def index_sections(table: pd.DataFrame, folder: str) -> Tuple[str, List[Section]]:
    """What this page adds to the site's index, under the leaderboards (the site asks the page function for it:
    ``sections.index_sections``): for a run short of the paper's budget, the committed paper-budget leaderboard and
    verdicts (:func:`reference_sections`), each said to be such, so that the first page of the default study carries
    the paper-budget answer beside the user's short run.  Returns (heading, sections): the heading is empty when
    there is a single section.  ``table``: the GMM rows; ``folder``: this page's folder, relative to the index."""
    found = reference_sections(table)
    if not found:
        return "", []
    found = sorted(found, key=lambda s: s.name != "reference_leaderboard")  # the leaderboard first
    if len(found) == 1:
        return "", found
    # which is which, before the numbers; the findings' measured values are on the GMM page
    intro = Section("Which is which", "text",
                    f"The gmm leaderboard above is **your run ({run_budget(table)}): indicative only**.  Below, "
                    f"the **paper's budget** ({reference_budget(load_reference())}): its leaderboard and "
                    "the paper's findings judged at that budget (the measured values behind each verdict are on "
                    f"the [gmm page]({folder}/index.html#reference_findings)).",
                    name="reference_intro")
    measured = [c for s in found if s.name == "reference_findings" for c in s.payload.columns
                if c.startswith("measured")]
    return INDEX_HEADING, [intro] + [dataclasses.replace(s, payload=s.payload.drop(columns=measured))
                                     if s.name == "reference_findings" else s for s in found]


def run_text(table: pd.DataFrame, cells: pd.DataFrame) -> str:
    """The Markdown bullets of the report's "Run" section (from the GMM cells)."""
    seeds = table.groupby(["label", "particles"]).seed.nunique()
    iters = table.groupby(["label", "particles"]).iteration.max()
    counts = {s: int((cells.status == s).sum()) for s in ("done", "diverged", "failed")} if len(cells) else {}
    finished = cells[cells.status.isin(["done", "diverged"])] if len(cells) else cells
    lines = [f"- cells: {counts.get('done', 0)} done, {counts.get('diverged', 0)} diverged, "
             f"{counts.get('failed', 0)} failed ({len(seeds)} estimator × K combinations with rows); "
             f"{_budget(seeds, iters)} per cell"]
    if len(finished) and finished.finished_at.notna().any():
        end = pd.to_datetime(finished.finished_at, utc=True, errors="coerce")
        start = (end - pd.to_timedelta(finished.wall_s, unit="s")).min()
        span = (end.max() - start).total_seconds()
        lines.append(f"- wall clock from the first cell's start to the last cell's end: {span / 60:.1f} min; "
                     f"sum of cell wall times: {finished.wall_s.sum() / 60:.1f} min")
        lines.append(f"- machine: {', '.join(sorted(finished.machine.dropna().unique()))}; device: "
                     f"{', '.join(sorted(finished.device.dropna().unique()))}")
    lines.append("- settings: RWS §4.3 / studies/gmm/README.md — C = 20, μ_c = 10c, σ = 5, prior logits 0.5·θ, far init, "
                 "guide 1–16–16–20 tanh, batch 100 fresh points per iteration, Adam 1e-3, Concrete 3 → 0.5 with the RWS "
                 "code's relaxed densities, δ = 0.2, RELAX control variate (1+C)–16–16–1 tanh with conditional "
                 "Gumbels from fresh noise (see Estimators)")
    return "\n".join(lines)


#: the option columns that fix the GMM's likelihood (number of clusters, spacing of the means, σ)
GMM_SETTINGS = ("model__num_clusters", "model__mean_spacing", "model__std")

#: the particle budgets of the resampled-proposal table (Bachman & Precup's q_p^K)
RESAMPLED_KS = (1, 2, 5, 10, 20, 50, 100, 1000)


def resampled_proposal_distances(table: pd.DataFrame, Ks=RESAMPLED_KS) -> pd.DataFrame:
    """How much the particle budget corrects each trained guide (Bachman & Precup ``002_…`` §3, §5.3): per cell,
    seed and snapshot x of the last iteration (``guide_pmf[x=v,z=c]``, ``prior_pmf[z=c]``), the exact PMF of the
    resampled proposal q_p^K (draw K from q_φ(·|x), resample one by the normalised weights;
    :func:`estibench.harness.metrics.resampled_proposal`) and its distance ‖q_p^K − p_θ(·|x)‖₂ to the model's own
    exact posterior (the distribution q_p^K tends to as K → ∞), p_θ(x, c) = p_θ(c) N(x; μ_c, σ²) with the cell's
    GMM means and σ.  Columns: label, training K, K (the resampling budget), distance (mean over seeds and x),
    n (seeds × x).  The GMM's settings come from the option columns (``model__num_clusters``, ``model__mean_spacing``,
    ``model__std``)."""
    import torch
    from estibench.harness.metrics import resampled_proposal
    from estibench.models.gmm import cluster_means, log_likelihood_table
    rows = table[table.metric.str.contains("_pmf\\[")]
    if rows.empty or not set(GMM_SETTINGS) <= set(rows.columns):  # (a table that does not say which GMM: no table)
        return pd.DataFrame(columns=["label", "particles", "K", "distance", "n"])
    last = rows[rows.iteration == rows.groupby("key").iteration.transform("max")]
    parts = last.metric.str.extract(PMF)
    last = last.assign(kind=parts[0].values, x=parts[1].fillna("prior").values, z=parts[2].astype(int).values)
    settings = last.groupby("key")[list(GMM_SETTINGS)].first()
    guides = last[last.kind == "guide_pmf"].pivot_table(index=["key", "label", "particles", "seed", "x"], columns="z",
                                                         values="value")
    priors = last[last.kind == "prior_pmf"].pivot_table(index=["key", "seed"], columns="z", values="value")
    index = guides.index.to_frame(index=False)
    x = torch.tensor(index.x.astype(float).to_numpy())
    log_lik = []
    for i, key in enumerate(index.key):
        clusters, spacing, std = settings.loc[key]
        means = cluster_means(int(clusters), float(spacing))
        log_lik.append(log_likelihood_table(x[i:i + 1].float(), means, float(std))[0].double())
    log_lik = torch.stack(log_lik)
    q = torch.tensor(guides.to_numpy(), dtype=torch.float64)  # an underflowed q(c) = 0 is never proposed
    prior = torch.tensor(priors.loc[list(zip(index.key, index.seed))].to_numpy(), dtype=torch.float64)
    log_joint = prior.log() + log_lik
    posterior = torch.softmax(log_joint, -1)
    distances = (resampled_proposal(q.log(), log_joint, list(Ks)) - posterior).norm(dim=-1)  # [len(Ks), rows]
    out = [(l, int(k), int(K), float(d), sd, xv)
           for j, K in enumerate(Ks)
           for l, k, sd, xv, d in zip(index.label, index.particles, index.seed, index.x, distances[j])]
    frame = pd.DataFrame(out, columns=["label", "particles", "K", "distance", "seed", "x"])
    return (frame.groupby(["label", "particles", "K"]).distance.agg(["mean", "count"]).reset_index()
            .rename(columns={"mean": "distance", "count": "n"}))


def resampled_proposal_table(distances: pd.DataFrame) -> pd.DataFrame:
    """The distances as a table: one row per estimator and training K, one column per resampling budget K."""
    if distances.empty:
        return pd.DataFrame()
    wide = distances.pivot_table(index=["label", "particles"], columns="K", values="distance").round(4)
    wide.columns = [f"K = {k}" for k in wide.columns]
    wide = wide.reset_index().rename(columns={"label": "estimator", "particles": "trained at K"})
    order = {l: i for i, l in enumerate(_ordered(wide.estimator.unique()))}
    return wide.sort_values(["trained at K", "estimator"], key=lambda c: c.map(order) if c.name == "estimator" else c)


def figure_resampled(distances: pd.DataFrame, path: str) -> str:
    """‖q_p^K − p_θ(·|x)‖₂ against the resampling budget K, one panel per training K, one line per estimator."""
    from estibench.reports import plotstyle as ps
    train_ks = sorted(distances.particles.unique())
    labels = _ordered(distances.label.unique())
    styles = ps.line_styles(labels, _groups(labels))
    fig, axes = plt.subplots(1, len(train_ks), figsize=(2.8 * len(train_ks), 2.8), squeeze=False, sharey=True)
    for ax, k in zip(axes[0], train_ks):
        for label in labels:
            c = distances[(distances.particles == k) & (distances.label == label)].sort_values("K")
            if not c.empty:
                ax.plot(c.K, c.distance, marker="o", ms=3, lw=1.1, label=_pretty(label), **styles[label])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("resampling budget K")
        ax.set_title(f"guide trained at K = {k}", fontsize=9)
    axes[0][0].set_ylabel("‖q_p^K − p_θ(z|x)‖₂")
    ps.legend_outside(fig, *ps.unique_handles(axes[0]))
    fig.tight_layout()
    return ps.save(fig, path, dpi=100)


def sections(table: pd.DataFrame, cells: pd.DataFrame = None, artifacts: Optional[pd.DataFrame] = None) -> List[Section]:
    """The GMM report's parts, in order: Run, Fig 4, Fig 5 (smallest and largest K), the
    exact-gradient table, the final-iteration summary and the paper's findings.  Figures are
    callables writing their PNG (``reports.export.materialise`` names them fig4_gmm_training.png,
    fig5_gmm_hinton_K<K>.png).  Diverged cells are marked † in the tables."""
    if "study" in table.columns:
        table = table[table.study == "gmm"]
    if cells is None:
        cells = pd.DataFrame(columns=["study", "label", "particles", "status", "diverged_at", "finished_at",
                                      "wall_s", "machine", "device"])
    if "study" in cells.columns:
        cells = cells[cells.study == "gmm"]
    if table.empty:
        return [Section("Results", "text", "No finished cells yet.", name="results")]
    marks, note = cell_marks(cells), diverged_note(cells)
    note = f"  {note}" if note else ""
    iters = table.groupby(["label", "particles"]).iteration.max()
    reference = reference_sections(table)
    run = run_text(table, cells)
    if reference:
        run += ("\n- " + reference_text(load_reference(), table)
                + ("  The paper-budget verdicts and leaderboard are under [the paper's findings](#reference_findings)."
                   if len(reference) > 1 else ""))
    out = [Section("Run", "text", run, name="run"),
           Section("Estimators", "table", estimators_table(table, _ordered(table.label.unique())),
                   caption=ESTIMATORS_CAPTION, name="variants"),
           Section("Fig 4: training curves", "figure", lambda path: figure_curves(table, path),
                   caption="RWS Fig 4: median and interquartile range (25 %–75 %) over seeds, the paper's statistic; "
                           "rows model error, inference error, φ-gradient std; columns K." + note,
                   name="fig4_gmm_training")]
    if table.metric.str.contains("_pmf\\[").any():
        Ks = sorted(table.particles.unique())
        seed = int(table.seed.min())
        for K in sorted({Ks[0], Ks[-1]}):
            out.append(Section(f"Fig 5: Hinton diagrams of p_θ(z) and q_φ(z|x), K = {K}", "figure",
                               lambda path, K=K: figure_hinton(table, K, path, seed=seed),
                               caption=f"RWS Fig 5, K = {K}, seed {seed}: one row per estimator, columns the start, "
                                       "middle and end of training; in each panel the first row (black) is p_θ(z), the "
                                       "others (blue) q_φ(z|x) for a few x (labelled on the right); square areas ∝ "
                                       "probability.", name=f"fig5_gmm_hinton_K{K}"))
    distances = resampled_proposal_distances(table)
    if not distances.empty:
        caption = ("Bachman & Precup (§3, §5.3): the resampled proposal q_p^K draws K particles from the trained guide "
                   "and resamples one by the normalised weights; its exact PMF (harness.metrics.resampled_proposal) "
                   "against the model's exact posterior p_θ(z|x), at the snapshot points x of the last iteration, mean "
                   "over seeds and points.  K = 1 is the guide itself.")
        out += [Section("Resampled proposal q_p^K against K", "figure", lambda path: figure_resampled(distances, path),
                        caption=caption, name="resampled_proposal"),
                Section("Resampled proposal: distance to the posterior", "table", resampled_proposal_table(distances),
                        caption=caption, name="resampled_proposal_table")]
    out += [
        Section("φ-gradient against the exact gradient", "table", exact_gradient_table(table, marks=marks),
                caption=f"{tb.ci_label(table.groupby(['label', 'particles']).seed.nunique(), column=None)}.  "
                        + EXACT_CAPTION + note, name="exact_gradient"),
        Section("Final-iteration summary", "table", summary_table(table, marks=marks),
                caption=f"{tb.ci_label()}, at the last iteration: the statistic of the index's leaderboard (Fig 4 "
                        "draws the paper's median and interquartile range, which describe the seeds' spread)" + note,
                name="summary"),
    ]
    out += [r for r in reference if r.kind == "table" and r.name == "reference_findings"]
    short = iters.max() < 100_000
    out += [
        Section("The paper's findings" + (f": your run ({run_budget(table)}): indicative only" if short else ""),
                "table", findings_table(table),
                caption=" ".join(
                    ([f"At {iters.max():,} iterations, far below the paper's 100,000, these checks say little: the far "
                      "initialisation puts the prior's mass on small z, so an early prior looks 'collapsed' whatever "
                      "the method."] if short else [])
                    + ["Medians over seeds.  The paper's findings are about its seven methods: only their rows are "
                       "judged, at the K values all of them have finished (the later estimators' rows are in the "
                       "summary above).", MINIMUM_TEXT]), name="findings"),
    ]
    out += [r for r in reference if r.name != "reference_findings"]
    from estibench.reports import basket
    out += basket.sections(table)
    return out


#: the index asks the page function what it adds there (``reports/site.py``, _index_references)


def write_report(table: pd.DataFrame, cells: pd.DataFrame, out: str, suite: str = "gmm",
                 description: str = "") -> str:
    """Write OUT/report.md and its figures (fig4_gmm_training.png, fig5_gmm_hinton_K<K>.png) from
    the tidy table; returns the report's path.  report.md is replaced atomically through a uniquely
    named temporary file (:func:`estibench.files.write_text`): writers running at
    once do not collide, and a failed write leaves the previous report.md and no temporary file."""
    table = table[table.study == "gmm"]
    os.makedirs(out, exist_ok=True)
    lines = [md_text(f"# estibench report: suite `{suite}`"), "", md_text(description), ""]
    if table.empty:
        lines.append("No finished cells yet.")
    else:
        parts, _ = materialise(sections(table, cells), out, export=False)
        lines += sections_markdown(parts, 2)
        lines += ["## Metric definitions", "", DEFINITIONS]
    path = os.path.join(out, "report.md")
    write_text(path, "\n".join(lines) + "\n")
    return path


if __name__ == "__main__":  # python -m estibench.studies.gmm.page --write-reference [SOURCE]
    import sys
    if len(sys.argv) >= 2 and sys.argv[1] == "--write-reference":
        print(write_reference(sys.argv[2] if len(sys.argv) > 2 else None))
    else:
        print("usage: python -m estibench.studies.gmm.page --write-reference [published/gmm/metrics.csv.gz]")
        sys.exit(2)
