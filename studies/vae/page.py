"""The continuous-VAE study's report, laid out as the RWS paper's Fig. 2 and Table 1 (``004_…`` §4.2):
training curves of the validation IWAE bound per K, the final test log evidence against K and
KL(q ‖ p_θ(z|x)) against K (one line per estimator), and the active units at K = 8, 16, 32 beside the
paper's; then the generic per-model summaries.  Pure functions of the tidy table."""
from __future__ import annotations

import math
from typing import List, Optional

import pandas as pd

from estibench.reports import tables as tb
from estibench.reports.generic import generic_sections
from estibench.reports.naming import ESTIMATORS_CAPTION, estimators_table
from estibench.reports.section import Section

from estibench.studies.vae.settings import RWS_TABLE1, ORDER, PUBLISHED  # noqa: E402  (the study's data)


def _largest(table: pd.DataFrame, prefix: str) -> str:
    names = [m for m in table.metric.unique() if m.startswith(prefix)]
    return max(names, key=lambda m: int(m[len(prefix):-1])) if names else ""


def final_by_k(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (label, K): the metric at each seed's last iteration, as mean and std over seeds."""
    rows = tb.final_rows(table[table.metric == metric], by=("key",))
    if rows.empty:
        return pd.DataFrame(columns=["label", "particles", "mean", "std", "n"])
    out = rows.groupby(["label", "particles"]).value.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "n"})


def figure_fig2(table: pd.DataFrame, path: str) -> str:
    """RWS Fig. 2's layout: (left) validation bound along training, one panel per K; (right) the final test
    log evidence and KL(q ‖ p) against K, one line per estimator (mean ± std over seeds)."""
    return curves_and_k_figure(table, path, ORDER)


def curves_and_k_figure(table: pd.DataFrame, path: str, order) -> str:
    """The RWS figures' layout (Fig. 1, Fig. 2): the validation bound along training, one panel per K; then the
    final test log evidence (the largest test_ll[K=k]) and kl_posterior against K, one line per estimator in
    ``order`` (mean ± std over seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from estibench.reports import plotstyle as ps
    from estibench.reports.naming import estimator_names
    curves = table[table.metric == "valid_ll"]
    ks = sorted(int(k) for k in curves.particles.unique())
    labels = [l for l in order if l in set(table.label)] + sorted(set(table.label) - set(order))
    styles, names = ps.line_styles(labels), estimator_names(labels)
    evidence, kl = _largest(table, "test_ll[K="), "kl_posterior"
    # two rows (the curves per K; then evidence and KL against K) keep the figure near its natural size on a page
    cols = max(len(ks), 2)
    fig, axes = plt.subplots(2, cols, figsize=(3.3 * cols, 5.8), squeeze=False)
    for ax in axes[1][2:]:
        ax.axis("off")
    for ax, k in zip(axes[0], ks):
        for label in labels:
            c = curves[(curves.label == label) & (curves.particles == k)]
            if c.empty:
                continue
            g = c.groupby("iteration").value
            ax.plot(g.mean().index, g.mean().values, label=names[label], **styles[label])
            ax.fill_between(g.mean().index, g.min().values, g.max().values, color=styles[label]["color"], alpha=0.15)
        ax.set_title(f"K = {k}", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("validation IWAE bound (nats)")
    for ax, metric, name in ((axes[1][0], evidence, "test log evidence"), (axes[1][1], kl, "KL(q ‖ p(z|x))")):
        f = final_by_k(table, metric)
        for label in labels:
            c = f[f.label == label].sort_values("particles")
            if not c.empty:
                ax.errorbar(c.particles, c["mean"], yerr=c["std"].fillna(0), marker="o", label=names[label],
                            capsize=2, **styles[label])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("K")
        ax.set_title(f"{name} ({metric})" if metric else name, fontsize=9)
    ps.legend_outside(fig, *ps.unique_handles(axes.ravel()))
    fig.tight_layout()
    return ps.save(fig, path, dpi=90)


def summary_by_k(table: pd.DataFrame) -> pd.DataFrame:
    """Final test log evidence, ELBO, KL and active units per estimator and K (mean ± std over seeds)."""
    metrics = [m for m in (_largest(table, "test_ll[K="), "test_elbo", "kl_posterior", "active_units") if m]
    parts = []
    for metric in metrics:
        f = final_by_k(table, metric)
        f[metric] = [f"{m:.2f} ± {s:.2f}" if math.isfinite(s) else f"{m:.2f}" for m, s in zip(f["mean"], f["std"])]
        parts.append(f.set_index(["label", "particles"])[[metric]])
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, axis=1).reset_index().rename(columns={"label": "estimator", "particles": "K"})
    rank = {l: i for i, l in enumerate(ORDER)}
    return out.sort_values(["K", "estimator"], key=lambda c: c.map(rank) if c.name == "estimator" else c)


def table1(table: pd.DataFrame) -> pd.DataFrame:
    """RWS Table 1's layout: active units at K = 8, 16, 32 for IWAE and WW, ours beside the paper's."""
    f = final_by_k(table, "active_units")
    rows = []
    for (_, k_text), published in RWS_TABLE1.items():
        k = int(k_text.split("=")[1])
        row = {"K": k}
        for label in ("iwae", "ww"):
            c = f[(f.label == label) & (f.particles == k)]
            name = tb.display_name(label)
            row[f"{name} · estibench"] = (f"{float(c['mean'].iloc[0]):.2f} ± {float(c['std'].fillna(0).iloc[0]):.2f}"
                                          if not c.empty else "—")
            row[f"{name} · paper"] = published.get(label, "—")
        rows.append(row)
    return pd.DataFrame(rows)


def _labels(table: pd.DataFrame) -> List[str]:
    return [l for l in ORDER if l in set(table.label)] + sorted(set(table.label) - set(ORDER))


def sections(table: pd.DataFrame, cells: pd.DataFrame, artifacts: Optional[pd.DataFrame] = None) -> List[Section]:
    if table.empty:
        return [Section("Results", "text", "No finished cells yet.", name="results")]
    iterations = sorted({int(i) for i in cells.iterations.dropna()}) if "iterations" in cells.columns else []
    out = [Section("Budget", "text",
                   f"These cells ran {' or '.join(map(str, iterations)) or '?'} steps on the embedded 5,000-digit "
                   "MNIST subset, stochastically binarised; the paper trains ≈ 3,000 epochs of full MNIST "
                   "(9.84M iterations) with K up to 128 and 5,000-particle test estimates, so its numbers are "
                   "printed beside ours for reference.  `python run_all.py --suite vae --preset paper` restores "
                   "its settings for a GPU run.", name="budget"),
           Section("Estimators", "table", estimators_table(table, _labels(table)), caption=ESTIMATORS_CAPTION,
                   name="variants"),
           Section("Fig. 2 layout", "figure", lambda path: figure_fig2(table, path), name="fig2",
                   caption="top row: validation IWAE bound (K = eval_particles) along training, per training K, mean "
                           "over seeds with the min–max band; bottom row: final test log evidence (many-particle IWAE) "
                           "and KL(q ‖ p_θ(z|x)) = that estimate − ELBO against K, mean ± std over seeds")]
    summary = summary_by_k(table)
    if not summary.empty:
        out.append(Section("Final log evidence, ELBO, KL and active units against K", "table", summary,
                           name="summary_by_k", caption="mean ± std over seeds at the last iteration"))
    out.append(Section("RWS Table 1 layout: active units", "table", table1(table), name="rws_table1",
                       caption="units u with Cov_x(E_q[z_u | x]) > 0.01 on the test images (Burda et al. §5.2); "
                               + PUBLISHED["rws_table1"].source))
    return out + generic_sections(table, cells)
