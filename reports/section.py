"""What a report page is made of: :class:`Section`, one block of a page (a table, a figure, Markdown text or
collapsed details), and :func:`slug`, the file name a title gives its exported files."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KINDS = ("table", "figure", "text", "details")


@dataclass
class Section:
    """One block of a report page.

    kind ``table``: payload is a DataFrame (shown, and exported as CSV and LaTeX under ``name``);
    ``figure``: payload is the path of a PNG, a matplotlib Figure, or a callable ``f(path)`` that
    writes the PNG at ``path`` (the page saves it as ``name.png`` in its folder); ``text``:
    Markdown (paragraphs, ``- `` lists, tables, `code`, **bold**, [links](url)); ``details``: a
    list of (summary, preformatted text) shown collapsed.  ``name`` (default: from the title)
    names the exported files."""

    title: str
    kind: str
    payload: Any
    caption: str = ""
    name: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown section kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not self.name:
            self.name = slug(self.title)


def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_").lower()
    return s[:60] or "section"
