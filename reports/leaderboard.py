"""The site index's leaderboards: per study, its headline metric (``Study.headline``) ranked per model and K —
the final value of each seed, mean and percentile-bootstrap interval over seeds, the published value beside ours
where the study names one.  Pure functions of the tidy table."""
from __future__ import annotations

import json
from typing import Optional

import pandas as pd

from . import tables as tb


def headline_of(study: str):
    from estibench import studies
    try:
        return studies.get(study).headline
    except Exception:  # noqa: BLE001 - an unregistered (or broken) study has no leaderboard
        return None


def leaderboard(table: pd.DataFrame, study: str) -> Optional[pd.DataFrame]:
    """The ranked table of ``study`` (None without a headline or without rows of its metric)."""
    head = headline_of(study)
    if head is None:
        return None
    t = table[(table.study == study) & (table.metric == head.metric)] if "study" in table.columns else \
        table[table.metric == head.metric]
    if t.empty:
        return None
    last = t.groupby(["model", "label", "particles", "seed"]).iteration.transform("max")
    final = t[t.iteration == last]
    agg = tb.bootstrap_groups(final, ["model", "label", "particles"])
    lookup = None
    if head.published:
        from estibench.models.registry import import_path
        lookup = import_path(head.published)
    settings = final.drop_duplicates(["model"]).set_index("model")
    rows = []
    for (model, K), sub in agg.groupby(["model", "particles"], sort=True):
        sub = sub.sort_values("mean", ascending=not head.higher_is_better)
        for rank, r in enumerate(sub.itertuples(index=False), 1):
            row = {"model": model, "K": int(K), "rank": rank, "estimator": r.label, "seeds": int(r.n),
                   head.metric: tb.format_ci(r.mean, r.lo, r.hi, digits=4)}
            if lookup is not None:
                name = settings.at[model, "model_name"] if "model_name" in settings.columns else model.split("[")[0]
                raw = settings.at[model, "model_options"] if "model_options" in settings.columns else "{}"
                options = json.loads(raw) if isinstance(raw, str) and raw else {}
                value = lookup(name, options, r.label)
                row["published"] = "" if value is None else str(value)
            rows.append(row)
    return pd.DataFrame(rows)


def caption(study: str) -> str:
    head = headline_of(study)
    better = "higher" if head.higher_is_better else "lower"
    return (f"{head.metric} at the end of training ({better} is better), mean and {tb.ci_label()} over seeds, ranked "
            f"per model and K" + (f"; {head.note}" if head.note else "") + ".")
