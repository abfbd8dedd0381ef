"""The GMM study's report (RWS §4.3): Fig 4, Fig 5, the exact-gradient table, a final-iteration
summary and a check of the paper's findings.  Every function here is a pure function of the
tidy results table (columns study, model, estimator, label, particles, seed, iteration, metric,
value) and of the cells table; nothing is recomputed.

:func:`sections` lists the report's parts (``reports.site.Section``); the static site's GMM page
(``reports.build_site``) and :func:`write_report`'s Markdown are both rendered from it.  Fig 4
and the final-iteration summary keep the paper's median and interquartile range; the
exact-gradient table gives means over seeds with 95 % bootstrap intervals (``reports.tables``).
"""
from __future__ import annotations

import os
import re
from typing import List, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import tables as tb  # noqa: E402
from .definitions import markdown_table, variant_rows  # noqa: E402
from .site import (Section, cell_marks, diverged_note, materialise, sections_markdown,  # noqa: E402
                   write_text_atomic)

from estibench.studies.gmm import ESTIMATORS as PAPER_ESTIMATORS  # noqa: E402  (RWS §4.3's seven)
from estibench.studies.gmm import STUDY  # noqa: E402  (this page's study: its estimators' order)

ORDER = list(STUDY.order)
NAMES = {name: tb.display_name(name) for name in ORDER}  # the estimators' declared display names
IWAE_METHODS = ("vimco", "reinforce", "relax", "concrete")
CURVES = [("model_error", "model error ‖p_θ(z) − p_true(z)‖"),
          ("inference_error", "inference error"),
          ("grad_std_phi", "φ-gradient std")]

#: the GMM metrics' definitions as a Markdown table (from reports.definitions.METRIC_DEFINITIONS)
DEFINITIONS = markdown_table(STUDY.metrics)


def _ordered(labels) -> List[str]:
    base = {l: tb.estimator_of(l) for l in labels}
    return sorted(labels, key=lambda l: (ORDER.index(base[l]) if base[l] in ORDER else 99, l))


def _pretty(label: str) -> str:
    return tb.pretty_label(label)


def final_iteration(table: pd.DataFrame) -> pd.DataFrame:
    last = table.groupby(["label", "particles"]).iteration.transform("max")
    return table[table.iteration == last]


def quartiles(frame: pd.DataFrame, by) -> pd.DataFrame:
    g = frame.groupby(by).value
    return pd.DataFrame({"median": g.median(), "q25": g.quantile(0.25), "q75": g.quantile(0.75)})


SUMMARY_METRICS = ["model_error", "inference_error", "grad_std_phi", "log_px", "kl_qp", "kl_pq", "sec_per_iter"]


def summary_table(table: pd.DataFrame, marks=None) -> pd.DataFrame:
    """Final-iteration median [25 %, 75 %] over seeds (the paper's statistic) per (estimator, K);
    ``marks[(label, K)]`` is appended to the estimator's name (e.g. † for a diverged cell)."""
    metrics = SUMMARY_METRICS
    final = final_iteration(table)
    final = final[final.metric.isin(metrics)]
    q = quartiles(final, ["label", "particles", "metric"])
    cell = q.apply(lambda r: tb.format_iqr(r["median"], r.q25, r.q75), axis=1).unstack("metric")
    cell = cell[[m for m in metrics if m in cell.columns]]
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
    final, per (estimator, K).  ``stat="mean"``: mean [95 % bootstrap CI] over seeds
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
        agg = tb.bootstrap_groups(rows, keys).set_index(keys)
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


def figure_curves(table: pd.DataFrame, path: str) -> str:
    """Fig 4: rows model error / inference error / φ-gradient std; columns K; median and IQR."""
    sns.set_theme(style="whitegrid", context="paper")
    Ks = sorted(table.particles.unique())
    labels = _ordered(table.label.unique())
    palette = dict(zip(labels, sns.color_palette("tab10", len(labels))))
    fig, axes = plt.subplots(len(CURVES), len(Ks), figsize=(3.2 * len(Ks), 2.6 * len(CURVES)), squeeze=False,
                             sharex=True, sharey="row")
    for i, (metric, title) in enumerate(CURVES):
        data = table[table.metric == metric]
        for j, K in enumerate(Ks):
            ax = axes[i, j]
            sub = data[data.particles == K]
            if not sub.empty:
                sns.lineplot(data=sub, x="iteration", y="value", hue="label", hue_order=labels, palette=palette,
                             estimator="median", errorbar=("pi", 50), ax=ax, legend=(i == 0 and j == len(Ks) - 1),
                             linewidth=1.0)
            ax.set_yscale("log")
            ax.set_title(f"K = {K}" if i == 0 else "")
            ax.set_ylabel(title if j == 0 else "")
            ax.set_xlabel("iteration" if i == len(CURVES) - 1 else "")
    leg = axes[0, -1].get_legend()
    if leg is not None:
        handles, texts = axes[0, -1].get_legend_handles_labels()
        leg.remove()
        fig.legend(handles, [_pretty(t) for t in texts], loc="lower center", ncol=min(len(labels), 4), frameon=False)
    fig.suptitle("GMM training (RWS Fig 4): median and interquartile band over seeds")
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


PMF = re.compile(r"^(prior_pmf|guide_pmf)\[(?:x=([^,]+),)?z=(\d+)\]$")


def hinton_snapshots(table: pd.DataFrame, K: int, seed: int) -> pd.DataFrame:
    rows = table[(table.particles == K) & (table.seed == seed) & table.metric.str.contains("_pmf\\[")].copy()
    parts = rows.metric.str.extract(PMF)
    rows["kind"], rows["x"], rows["z"] = parts[0], parts[1].fillna("prior"), parts[2].astype(int)
    return rows


def figure_hinton(table: pd.DataFrame, K: int, path: str, seed: int = 0) -> str:
    """Fig 5 for one K: per estimator, rows start/middle/end; in each panel the first row is
    p_θ(z), the others q_φ(z|x) for a few x; square areas ∝ probability (seed ``seed``)."""
    snaps = hinton_snapshots(table, K, seed)
    labels = _ordered(snaps.label.unique())
    iters = sorted(snaps.iteration.unique())
    fig, axes = plt.subplots(len(iters), len(labels), figsize=(2.3 * len(labels), 1.5 * len(iters)),
                             squeeze=False)
    for j, label in enumerate(labels):
        for i, it in enumerate(iters):
            ax = axes[i, j]
            s = snaps[(snaps.label == label) & (snaps.iteration == it)]
            xs = ["prior"] + sorted((v for v in s.x.unique() if v != "prior"), key=float)
            for r, xv in enumerate(xs):
                row = s[s.x == xv]
                ax.scatter(row.z, np.full(len(row), -r), s=row.value.clip(lower=0) * 120, marker="s",
                           color="black" if xv == "prior" else "tab:blue", linewidths=0)
            ax.set_xlim(-1, 20)
            ax.set_ylim(-len(xs) + 0.4, 0.6)
            ax.set_xticks([])
            ax.set_yticks(-np.arange(len(xs)))
            ax.set_yticklabels(["p(z)"] + [f"q(z|{x})" for x in xs[1:]] if j == 0 else [], fontsize=6)
            if i == 0:
                ax.set_title(_pretty(label), fontsize=9)
            if j == 0:
                ax.set_ylabel(f"it {it:,}", fontsize=7)
    fig.suptitle(f"GMM K = {K} (RWS Fig 5): z = 0..19 left to right, seed {seed}; rows start, middle, end")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


def findings(table: pd.DataFrame) -> List[Tuple[str, str, str]]:
    """The paper's findings (RWS §4.3's text) checked against this table: (finding, what we
    measured, verdict).  Trends with K are judged over :func:`trend_Ks` by the rank correlation ρ
    between K and the median final error over seeds, with every median printed: "improves" needs
    ρ ≤ −0.5 and a lower value at the largest K than at the smallest; "gets worse" the reverse.
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
        rho = spearman(tK, vals)
        text = f"{_pretty(l)}: " + ", ".join(f"{v:.3g}" for v in vals) + f" (ρ = {rho:+.2f})"
        return rho, vals, text

    def judged(group, metric, sign):
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
                    f"{detail}; WS highest at K ∈ {worst}", verdict(len(worst) == len(Ks))))
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
                                                      f"partly: at K ∈ {bad}")
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
                    f"{detail}; holds at K ∈ {ok_K}", verdict(bool(have) and len(ok_K) == len(have))))
    paper = STUDY.published["support_at_K2"].values[("gmm", "K=2")]  # the study's published data
    if k0 == 2 and any(l in labels for l in paper):
        parts, ok = [], True
        for l, ref in paper.items():
            if l in labels:
                ext = support_extent(table, l, 2)
                parts.append(f"{NAMES[l]} 0..{ext:g} (paper 0..{ref})")
                ok &= abs(ext - ref) <= 2
        out.append(("At K = 2 the learned prior's support collapses to about {0..9} (WS), {0..14} (WW), "
                    "{0..17} (VIMCO/REINFORCE)", "; ".join(parts), verdict(ok)))
    return out


def _md(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if not frame.empty else "(no rows)"


FINDING_COLUMNS = ["finding (RWS §4.3 / docs/gmm.md)", "measured here", "verdict"]

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


def run_text(table: pd.DataFrame, cells: pd.DataFrame) -> str:
    """The Markdown bullets of the report's "Run" section (from the GMM cells)."""
    seeds = table.groupby(["label", "particles"]).seed.nunique()
    iters = table.groupby(["label", "particles"]).iteration.max()
    counts = {s: int((cells.status == s).sum()) for s in ("done", "diverged", "failed")} if len(cells) else {}
    finished = cells[cells.status.isin(["done", "diverged"])] if len(cells) else cells
    lines = [f"- cells: {counts.get('done', 0)} done, {counts.get('diverged', 0)} diverged, "
             f"{counts.get('failed', 0)} failed ({len(seeds)} estimator × K combinations with rows); seeds per cell: "
             f"{seeds.min()}–{seeds.max()}; iterations per cell: {iters.min():,}–{iters.max():,}"]
    if len(finished) and finished.finished_at.notna().any():
        end = pd.to_datetime(finished.finished_at, utc=True, errors="coerce")
        start = (end - pd.to_timedelta(finished.wall_s, unit="s")).min()
        span = (end.max() - start).total_seconds()
        lines.append(f"- wall clock from the first cell's start to the last cell's end: {span / 60:.1f} min; "
                     f"sum of cell wall times: {finished.wall_s.sum() / 60:.1f} min")
        lines.append(f"- machine: {', '.join(sorted(finished.machine.dropna().unique()))}; device: "
                     f"{', '.join(sorted(finished.device.dropna().unique()))}")
    lines.append("- settings: RWS §4.3 / docs/gmm.md — C = 20, μ_c = 10c, σ = 5, prior logits 0.5·θ, far init, "
                 "guide 1–16–16–20 tanh, batch 100 fresh points per iteration, Adam 1e-3, Concrete 3 → 0.5 with the RWS "
                 "code's relaxed densities, δ = 0.2, RELAX control variate (1+C)–16–16–1 tanh with conditional "
                 "Gumbels from fresh noise (see Estimator variants)")
    return "\n".join(lines)


#: the particle budgets of the resampled-proposal table (Bachman & Precup's q_p^K)
RESAMPLED_KS = (1, 2, 5, 10, 20, 50, 100, 1000)


def resampled_proposal_distances(table: pd.DataFrame, cells: pd.DataFrame = None, Ks=RESAMPLED_KS) -> pd.DataFrame:
    """How much the particle budget corrects each trained guide (Bachman & Precup ``002_…`` §3, §5.3): per cell,
    seed and snapshot x of the last iteration (``guide_pmf[x=v,z=c]``, ``prior_pmf[z=c]``), the exact PMF of the
    resampled proposal q_p^K (draw K from q_φ(·|x), resample one by the normalised weights;
    :func:`estibench.harness.metrics.resampled_proposal`) and its distance ‖q_p^K − p_θ(·|x)‖₂ to the model's own
    exact posterior (the distribution q_p^K tends to as K → ∞), p_θ(x, c) = p_θ(c) N(x; μ_c, σ²) with the cell's
    GMM means and σ.  Columns: label, training K, K (the resampling budget), distance (mean over seeds and x),
    n (seeds × x)."""
    import json
    import torch
    from estibench.harness.metrics import resampled_proposal
    from estibench.models.gmm import GMM
    rows = table[table.metric.str.contains("_pmf\\[")]
    if rows.empty:
        return pd.DataFrame(columns=["label", "particles", "K", "distance", "n"])
    last = rows[rows.iteration == rows.groupby("key").iteration.transform("max")]
    parts = last.metric.str.extract(PMF)
    last = last.assign(kind=parts[0].values, x=parts[1].fillna("prior").values, z=parts[2].astype(int).values)
    options = {}
    if cells is not None and "model_options" in cells.columns:
        options = {k: json.loads(v) if isinstance(v, str) and v else {} for k, v in zip(cells.key, cells.model_options)}
    guides = last[last.kind == "guide_pmf"].pivot_table(index=["key", "label", "particles", "seed", "x"], columns="z",
                                                         values="value")
    priors = last[last.kind == "prior_pmf"].pivot_table(index=["key", "seed"], columns="z", values="value")
    index = guides.index.to_frame(index=False)
    specs = [json.dumps({k: v for k, v in options.get(key, {}).items() if k in ("num_clusters", "mean_spacing", "std")},
                        sort_keys=True) for key in index.key]
    models = {spec: GMM(**json.loads(spec)) for spec in set(specs)}
    x = torch.tensor(index.x.astype(float).to_numpy())
    log_lik = torch.stack([models[spec].log_likelihood_table(x[i:i + 1].float())[0].double()
                           for i, spec in enumerate(specs)])
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
    train_ks = sorted(distances.particles.unique())
    labels = _ordered(distances.label.unique())
    palette = dict(zip(labels, sns.color_palette("tab10", len(labels))))
    fig, axes = plt.subplots(1, len(train_ks), figsize=(3.0 * len(train_ks), 2.8), squeeze=False, sharey=True)
    for ax, k in zip(axes[0], train_ks):
        for label in labels:
            c = distances[(distances.particles == k) & (distances.label == label)].sort_values("K")
            if not c.empty:
                ax.plot(c.K, c.distance, marker="o", ms=3, color=palette[label], label=_pretty(label))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("resampling budget K")
        ax.set_title(f"guide trained at K = {k}", fontsize=9)
    axes[0][0].set_ylabel("‖q_p^K − p_θ(z|x)‖₂")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sections(table: pd.DataFrame, cells: pd.DataFrame = None) -> List[Section]:
    """The GMM report's parts, in order: Run, Fig 4, Fig 5 (smallest and largest K), the
    exact-gradient table, the final-iteration summary and the paper's findings.  Figures are
    callables writing their PNG (``reports.site.materialise`` names them fig4_gmm_training.png,
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
    variants = pd.DataFrame(variant_rows(table, _ordered(table.label.unique())), columns=["estimator", "what it computes"])
    out = [Section("Run", "text", run_text(table, cells), name="run"),
           Section("Estimator variants", "table", variants,
                   caption="What the labels that differ from a textbook reading compute (estimators' docstrings give "
                           "the paper, the reference code and this project's choice).", name="variants"),
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
                               caption=f"RWS Fig 5, K = {K}, seed {seed}: per estimator the start, middle and end of "
                                       "training; first row p_θ(z), the others q_φ(z|x) for a few x; square areas ∝ "
                                       "probability.", name=f"fig5_gmm_hinton_K{K}"))
    distances = resampled_proposal_distances(table, cells)
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
                caption=f"{tb.ci_label()}.  " + EXACT_CAPTION + note, name="exact_gradient"),
        Section("Final-iteration summary", "table", summary_table(table, marks=marks),
                caption="median [IQR: 25 %, 75 %] over seeds at the last iteration (the paper's statistic)" + note,
                name="summary"),
        Section("The paper's findings", "table", findings_table(table),
                caption=" ".join(
                    ([f"At {iters.max():,} iterations, far below the paper's 100,000, these checks say little: the far "
                      "initialisation puts the prior's mass on small z, so an early prior looks 'collapsed' whatever "
                      "the method."] if iters.max() < 100_000 else [])
                    + ["Medians over seeds.  The paper's findings are about its seven methods: only their rows are "
                       "judged, at the K values all of them have finished (the later estimators' rows are in the "
                       "summary above)."]), name="findings"),
    ]
    from . import basket
    out += basket.sections(table)
    return out


def write_report(table: pd.DataFrame, cells: pd.DataFrame, out: str, suite: str = "gmm",
                 description: str = "") -> str:
    """Write OUT/report.md and its figures (fig4_gmm_training.png, fig5_gmm_hinton_K<K>.png) from
    the tidy table; returns the report's path.  report.md is replaced atomically through a uniquely
    named temporary file (:func:`estibench.reports.site.write_text_atomic`): writers running at
    once do not collide, and a failed write leaves the previous report.md and no temporary file."""
    table = table[table.study == "gmm"]
    os.makedirs(out, exist_ok=True)
    lines = [f"# estibench report: suite `{suite}`", "", description, ""]
    if table.empty:
        lines.append("No finished cells yet.")
    else:
        parts, _ = materialise(sections(table, cells), out, export=False)
        lines += sections_markdown(parts, 2)
        lines += ["## Metric definitions", "", DEFINITIONS]
    path = os.path.join(out, "report.md")
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
