"""The page of a study that names none of its own (:func:`generic_sections`): a final-iteration summary and learning
curves per model."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import pandas as pd

from . import definitions as defs
from . import tables as tb
from .naming import estimator_names
from .section import Section
from .summary import cell_marks, diverged_note


def _plain_metrics(table: pd.DataFrame, known: Optional[Dict[str, str]] = None) -> List[str]:
    """The metrics without brackets, those defined in ``known`` (default: the built-in definitions) first, in its
    order, then the rest by name."""
    metrics = [m for m in table.metric.unique() if "[" not in m]
    ordered = [m for m in (defs.METRIC_DEFINITIONS if known is None else known) if m in metrics]
    return ordered + sorted(m for m in metrics if m not in ordered)


def figure_learning_curves(table: pd.DataFrame, path: str, metrics: Sequence[str]) -> str:
    """Rows: metrics; columns: K; per label the mean over seeds and its 95 % Student-t band (tb.mean_ci_groups)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotstyle as ps

    Ks = sorted(table.particles.unique())
    labels = sorted(table.label.unique())
    styles, names = ps.line_styles(labels), estimator_names(labels)
    agg = tb.mean_ci_groups(table[table.metric.isin(metrics)], ["metric", "label", "particles", "iteration"])
    fig, axes = plt.subplots(len(metrics), len(Ks), figsize=(max(3.4 * len(Ks), 6.4), 2.3 * len(metrics) + 0.6),
                             squeeze=False, sharex=True)
    for i, metric in enumerate(metrics):
        data = agg[agg.metric == metric]
        positive = bool(len(data)) and (data[["mean", "lo"]].to_numpy() > 0).all()
        spread = positive and data["mean"].max() / max(data["mean"].min(), 1e-300) > 100
        for j, K in enumerate(Ks):
            ax = axes[i, j]
            for label in labels:
                d = data[(data.particles == K) & (data.label == label)].sort_values("iteration")
                if d.empty:
                    continue
                ax.plot(d.iteration, d["mean"], lw=1.1, label=names[label], **styles[label])
                ax.fill_between(d.iteration, d.lo, d.hi, color=styles[label]["color"], alpha=0.15, lw=0)
            if spread:
                ax.set_yscale("log")
            ax.set_title(f"K = {K}" if i == 0 else "", fontsize=9)
            ax.set_ylabel(metric if j == 0 else "", fontsize=8)
            ax.tick_params(labelsize=7)
            if i == len(metrics) - 1:
                ax.set_xlabel("iteration", fontsize=8)
    ps.legend_outside(fig, *ps.unique_handles(axes.ravel()))
    fig.suptitle("mean over seeds and its 95 % Student-t interval (n = each cell's seeds)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return ps.save(fig, path, dpi=90)


def generic_sections(table: pd.DataFrame, cells: pd.DataFrame, artifacts: Optional[pd.DataFrame] = None,
                     known: Optional[Dict[str, str]] = None) -> List[Section]:
    """Final-iteration mean [95 % Student-t interval] per metric × label × K, and learning curves; one pair per
    model when the study holds several (two models' numbers never pool).  Metrics in the order of ``known`` (default:
    the built-in definitions; a study page passes them updated by its own), the undefined ones last."""
    if table.empty:
        return [Section("Results", "text", "No metric rows: no cell of this study finished.")]
    models = list(dict.fromkeys(table.model)) if "model" in table.columns else [None]
    out: List[Section] = []
    for i, model in enumerate(models):
        rows = table if model is None or len(models) == 1 else table[table.model == model]
        suffix, tag = ("", "") if len(models) == 1 else (f": {model}", f"_{i + 1}")
        out += _summary_and_curves(rows, cells, suffix, tag, known)
    return out


def _summary_and_curves(table: pd.DataFrame, cells: pd.DataFrame, suffix: str, tag: str,
                        known: Optional[Dict[str, str]] = None) -> List[Section]:
    metrics = _plain_metrics(table, known)
    study = table.study.iloc[0] if "study" in table.columns else None
    note = diverged_note(cells, study)
    out = [Section(f"Final-iteration summary{suffix}", "table",
                   tb.final_ci_table(table, metrics, marks=cell_marks(cells, study)),
                   caption=f"{tb.ci_label()}, over seeds at each cell's last recorded iteration. {note}".strip(),
                   name=f"final_summary{tag}")]
    skipped = sorted({m.split("[")[0] for m in table.metric.unique() if "[" in m})
    if metrics:
        out.append(Section(f"Learning curves{suffix}", "figure",
                           lambda path: figure_learning_curves(table, path, metrics),
                           caption="The line is the mean over seeds at each evaluation, the band its 95 % Student-t "
                                   "interval for the mean; n = each cell's seeds (the summary's `n seeds` column)."
                                   + (f" Not plotted (bracketed families): {', '.join(skipped)}." if skipped else ""),
                           name=f"learning_curves{tag}"))
    return out
