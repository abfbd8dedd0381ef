"""A page's files: its figures written as PNG and its tables exported as CSV and LaTeX into its folder
(:func:`materialise`), each section given a name unique on the page."""
from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Dict, List, Sequence, Tuple

import pandas as pd

from . import tables as tb
from .section import Section


def _unique_names(sections: List[Section]) -> List[Section]:
    seen: Dict[str, int] = {}
    out = []
    for s in sections:
        name = s.name
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        out.append(dataclasses.replace(s, name=name) if name != s.name else s)
    return out


def materialise(sections: Sequence[Section], folder: str, export: bool = True
                ) -> Tuple[List[Section], Dict[str, Tuple[str, str]]]:
    """Write figures into ``folder`` (payload becomes the PNG's path relative to it) and, with
    ``export``, every table to ``folder/tables/NAME.csv`` and ``.tex``; returns the sections and
    {name: (csv, tex)} relative links."""
    os.makedirs(folder, exist_ok=True)
    sections = _unique_names(list(sections))
    out, links = [], {}
    for s in sections:
        if s.kind == "figure":
            target = os.path.join(folder, f"{s.name}.png")
            p = s.payload
            if isinstance(p, (str, os.PathLike)):
                p = os.path.abspath(p)
                inside = os.path.commonpath([p, os.path.abspath(folder)]) == os.path.abspath(folder)
                if inside:
                    target = p
                else:
                    shutil.copyfile(p, target)
            elif hasattr(p, "savefig"):
                import matplotlib.pyplot as plt
                p.savefig(target, dpi=110)
                plt.close(p)
            elif callable(p):
                written = p(target)
                if isinstance(written, (str, os.PathLike)) and os.path.abspath(written) != os.path.abspath(target):
                    target = os.path.abspath(written)
            else:
                raise TypeError(f"figure section {s.title!r}: payload must be a PNG path, a matplotlib Figure "
                                f"or a callable writing one, got {type(p).__name__}")
            s = dataclasses.replace(s, payload=os.path.relpath(target, folder).replace(os.sep, "/"))
        elif s.kind == "table" and export and isinstance(s.payload, pd.DataFrame) and not s.payload.empty:
            csv, tex = tb.export_table(s.payload, os.path.join(folder, "tables"), s.name,
                                       caption=f"{s.title}. {s.caption}".strip())
            links[s.name] = (os.path.relpath(csv, folder).replace(os.sep, "/"),
                             os.path.relpath(tex, folder).replace(os.sep, "/"))
        out.append(s)
    return out, links
