"""The site index's leaderboards: per study, its headline metric (``Study.headline``) per model and K — the final
value of each seed; their mean and 95 % Student-t interval (``tables.mean_ci_groups``); a rank that separates only
what the seeds separate (``tables.separated_ranks``: pairwise Welch t-tests, Holm-corrected, family-wise
α = 0.05; estimators the seeds do not separate share a rank); estimators by their display names
(``tables.pretty_label``, as the figures name them); and, where the study names one, the published value with the
budget behind it (steps, data, source) beside ours and our own budget.  Pure functions of the tidy table, and
:func:`index_leaderboards`, which renders them (with each study's main figure) at the top of the index.

One statistic per page: the leaderboard's centre is the mean over seeds, as in every final-iteration summary
(the GMM page's included), because the interval and the rank test are both about means."""
from __future__ import annotations

import html
import json
import os
from typing import Dict, Optional, Sequence

import pandas as pd

from estibench.studies import PublishedValue, steps_text

from . import tables as tb
from .render import frame_html, md_alt, md_frame, md_inline, md_text
from .section import slug


def headline_of(study: str):
    from estibench import studies
    if studies.REGISTRY.known(study) is None:  # a name the store holds is data: never imported
        return None
    try:
        return studies.get(study).headline
    except Exception:  # noqa: BLE001 - an unregistered (or broken) study has no leaderboard
        return None


def _budget(rows: pd.DataFrame) -> str:
    """Our budget of one cell's rows: its training steps and data set (from the table's columns)."""
    parts = []
    if "iterations" in rows.columns and rows.iterations.notna().any():
        parts.append(steps_text(int(rows.iterations.dropna().iloc[0])))
    if "dataset" in rows.columns and rows.dataset.notna().any():
        parts.append(str(rows.dataset.dropna().iloc[0]))
    return ", ".join(parts)


def leaderboard(table: pd.DataFrame, study: str) -> Optional[pd.DataFrame]:
    """The ranked table of ``study`` (None without a headline or without rows of its metric): columns model, K,
    rank (:func:`tables.separated_ranks`; missing for an estimator with one seed), estimator (display name),
    seeds (n), the metric (``mean [lo, hi]``), and with a published lookup: published, published budget (steps,
    data, source), our budget.  Rows per (model, K) by rank, then by mean."""
    head = headline_of(study)
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
                name = settings.at[model, "model_name"] if "model_name" in settings.columns else model.split("[")[0]
                raw = settings.at[model, "model_options"] if "model_options" in settings.columns else "{}"
                options = json.loads(raw) if isinstance(raw, str) and raw else {}
                value = lookup(name, options, r.label)
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


def caption(study: str, frame: Optional[pd.DataFrame] = None) -> str:
    """What the leaderboard shows: the metric and direction, the interval's method and n (``frame``'s seeds
    column), what a rank means, the study's note."""
    head = headline_of(study)
    better = "higher" if head.higher_is_better else "lower"
    n = frame["seeds"] if frame is not None and len(frame) else None
    ours = frame.attrs.get("our_budget", "") if frame is not None else ""
    return (f"{head.metric} at the end of training ({better} is better): {tb.ci_label(n, column='seeds')}.  "
            f"Ranked per model and K: {tb.rank_caption()}."
            + (f"  {head.note[0].upper()}{head.note[1:]}." if head.note else "")
            + (f"  Our budget, every row beside a published value: {ours}." if ours else ""))


def index_leaderboards(root: str, table: pd.DataFrame, studies: Sequence[str], folders: Dict[str, str]):
    """(HTML, Markdown lines) of the index's opening: per study with a headline metric (``Study.headline``), its
    ranked table (:func:`leaderboard`) and a thumbnail of its main figure, linked to the study's page.  A
    model is named by the settings that differ within its table (``tables.short_labels``), its full setting in the
    cell's tooltip and in a small table below; an unranked row (one seed) shows "–"."""
    parts, md = [], []
    for study in studies:
        frame = leaderboard(table, study)
        if frame is None or frame.empty:
            continue
        head = headline_of(study)
        folder = folders[study]
        thumb = ""
        if head.figure and os.path.exists(os.path.join(root, folder, f"{head.figure}.png")):
            src = f"{folder}/{head.figure}.png"
            thumb = (f'<a href="{folder}/index.html"><img class="thumb" src="{html.escape(src)}" '
                     f'alt="{html.escape(study)}: main figure" width="320"></a>')
        full = tb.short_labels(frame.model)  # short → full
        shown = frame.assign(model=frame.model.map({f: s for s, f in full.items()}),
                             rank=[("–" if pd.isna(r) else str(r)) for r in frame["rank"]])
        board = frame_html(shown)
        for short, long in full.items():
            if short != long:
                for inner in (f'<span class="nw">{html.escape(short, quote=False)}</span>', html.escape(short, quote=False)):
                    board = board.replace(f"<td>{inner}</td>", f'<td title="{html.escape(long)}">{inner}</td>')
        key = pd.DataFrame([(s, f) for s, f in full.items() if s != f], columns=["model", "full setting"])
        key_note = "Models above are named by the settings that differ between them; in full:"
        text = caption(study, frame)
        parts.append(f'<h3 id="leaderboard-{html.escape(slug(study))}"><a href="{folder}/index.html">'
                     f"{html.escape(study)}</a>: {html.escape(head.metric)}</h3>\n" + thumb
                     + board + f'<p class="caption">{md_inline(text)}</p>'
                     + (f'<p class="caption">{key_note}</p>' + frame_html(key) if len(key) else ""))
        md += [md_text(f"### {study}: {head.metric}"), ""] + ([f"![{md_alt(study)}]({folder}/{head.figure}.png)", ""]
                                                             if thumb else [])
        md += [md_frame(shown), "", md_text(text), ""] + ([key_note, "", md_frame(key), ""] if len(key) else [])
    if not parts:
        return "", []
    return ("<h2>Leaderboards</h2>\n" + "\n".join(parts) + "\n"), ["## Leaderboards", ""] + md
