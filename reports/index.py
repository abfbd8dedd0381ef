"""The site index's leaderboards: per registered study with a headline metric (``Study.headline``), its ranked
table and a thumbnail of its main figure.  Part of the site builder (it reads the study registry); the ranking
itself is ``reports/leaderboard.py``, which study pages use too."""
from __future__ import annotations

import html
import os
from typing import Dict, Sequence

import pandas as pd

from . import tables as tb
from .leaderboard import caption, leaderboard
from .render import frame_html, md_alt, md_frame, md_inline, md_text
from .section import slug


def headline_of(study: str):
    from estibench import studies
    try:
        registered = studies.lookup(study)  # a name the store holds is data: never imported
        return registered.headline if registered is not None else None
    except Exception:  # noqa: BLE001 - an unregistered (or broken) study has no leaderboard
        return None


def index_leaderboards(root: str, table: pd.DataFrame, studies: Sequence[str], folders: Dict[str, str]):
    """(HTML, Markdown lines) of the index's opening: per study with a headline metric (``Study.headline``), its
    ranked table (:func:`leaderboard`) and a thumbnail of its main figure, linked to the study's page.  A
    model is named by the settings that differ within its table (``tables.short_labels``), its full setting in the
    cell's tooltip and in a small table below; an unranked row (one seed) shows "–"."""
    parts, md = [], []
    for study in studies:
        head = headline_of(study)
        frame = leaderboard(table, study, head)
        if frame is None or frame.empty:
            continue
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
        text = caption(head, frame)
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
