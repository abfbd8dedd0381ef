"""A study's leaderboard (report kit: the site's index and study pages use it): its headline metric
(``Study.headline``, passed in) per model and K — the final
value of each seed; their mean and 95 % Student-t interval (``tables.mean_ci_groups``); a rank that separates only
what the seeds separate (``tables.separated_ranks``: pairwise Welch t-tests, Holm-corrected, family-wise
α = 0.05; estimators the seeds do not separate share a rank); estimators by their display names
(``tables.pretty_label``, as the figures name them); and, where the study names one, the published value with the
budget behind it (steps, data, source) beside ours and our own budget.  Pure functions of the tidy table and the
headline; ``reports/index.py`` renders them (with each study's main figure) at the top of the index.

One statistic per page: the leaderboard's centre is the mean over seeds, as in every final-iteration summary
(the GMM page's included), because the interval and the rank test are both about means."""
from __future__ import annotations

from typing import Optional

import pandas as pd

from estibench.studies.base import Headline, PublishedValue, steps_text

from . import tables as tb


def _budget(rows: pd.DataFrame) -> str:
    """Our budget of one cell's rows: its training steps and data set (from the table's columns)."""
    parts = []
    if "iterations" in rows.columns and rows.iterations.notna().any():
        parts.append(steps_text(int(rows.iterations.dropna().iloc[0])))
    if "dataset" in rows.columns and rows.dataset.notna().any():
        parts.append(str(rows.dataset.dropna().iloc[0]))
    return ", ".join(parts)


def leaderboard(table: pd.DataFrame, study: str, head: Optional[Headline]) -> Optional[pd.DataFrame]:
    """The ranked table of ``study`` (None without a headline or without rows of its metric): columns model, K,
    rank (:func:`tables.separated_ranks`; missing for an estimator with one seed), estimator (display name),
    seeds (n), the metric (``mean [lo, hi]``), and with a published lookup: published, published budget (steps,
    data, source), our budget.  Rows per (model, K) by rank, then by mean."""
    if head is None:
        return None
    t = table[(table.study == study) & (table.metric == head.metric)] if "study" in table.columns else \
        table[table.metric == head.metric]
    if t.empty:
        return None
    tb.learn_estimators(t)
    last = t.groupby(["model", "label", "particles", "seed"]).iteration.transform("max")
    final = t[t.iteration == last]
    agg = tb.mean_ci_groups(final, ["model", "label", "particles"])
    lookup = None
    if head.published:
        from estibench.models.registry import import_path
        lookup = import_path(head.published)
    settings = final.drop_duplicates(["model"]).set_index("model")
    sign = -1.0 if head.higher_is_better else 1.0
    rows = []
    for (model, K), sub in agg.groupby(["model", "particles"], sort=True):
        group = final[(final.model == model) & (final.particles == K)]
        values = {label: g.value.to_numpy(dtype=float) for label, g in group.groupby("label")}
        ranks = tb.separated_ranks(values, higher_is_better=head.higher_is_better)
        sub = sub.assign(rank=sub.label.map(ranks))
        sub = sub.assign(_unranked=sub["rank"].isna(), _by=sign * sub["mean"])
        sub = sub.sort_values(["_unranked", "rank", "_by", "label"], na_position="last")
        for r in sub.itertuples(index=False):
            row = {"model": model, "K": int(K), "rank": None if pd.isna(r.rank) else int(r.rank),
                   "estimator": tb.pretty_label(r.label), "seeds": int(r.n),
                   head.metric: tb.format_ci(r.mean, r.lo, r.hi, digits=4)}
            if lookup is not None:
                value = lookup(settings.loc[model], r.label)
                row["published"] = "" if value is None else str(value)
                # the cost beside the value (short, so that it fits the row); its source is in the caption
                row["published budget"] = value.cost if isinstance(value, PublishedValue) else ""
                row["our budget"] = "" if value is None else _budget(group[group.label == r.label])
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame["rank"] = frame["rank"].astype("Int64")
    if "our budget" in frame.columns:
        ours = {b for b in frame["our budget"] if b}
        if len(ours) <= 1:  # one budget for every row: said once, in the caption (:func:`caption`)
            frame = frame.drop(columns="our budget")
            frame.attrs["our_budget"] = next(iter(ours), "")
    return frame


def caption(head: Headline, frame: Optional[pd.DataFrame] = None) -> str:
    """What the leaderboard of a study whose headline is ``head`` shows: the metric and direction, the interval's
    method and n (``frame``'s seeds column), what a rank means, the study's note."""
    better = "higher" if head.higher_is_better else "lower"
    n = frame["seeds"] if frame is not None and len(frame) else None
    ours = frame.attrs.get("our_budget", "") if frame is not None else ""
    return (f"{head.metric} at the end of training ({better} is better): {tb.ci_label(n, column='seeds')}.  "
            f"Ranked per model and K: {tb.rank_caption()}."
            + (f"  {head.note[0].upper()}{head.note[1:]}." if head.note else "")
            + (f"  Our budget, every row beside a published value: {ours}." if ours else ""))
