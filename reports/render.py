"""Sections rendered as Markdown and as HTML pages, every text from the store escaped.

Opening a report runs no code, whoever wrote the store.  Every text a store holds (labels, options,
model and study names, commands, machines, tracebacks) is escaped before it reaches a page
(:func:`md_inline`, :func:`frame_html`) and made inert before it reaches a ``report.md``
(:func:`md_text`: no raw HTML, no entity, code spans only where every renderer reads one); a link is
kept only with a relative, http(s) or mailto target (:func:`safe_url`), any other is shown as text.
The pages are viewable offline: inline CSS (:data:`CSS`), no scripts, no network.
"""
from __future__ import annotations

import datetime
import html
import re
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd
from markdown_it import MarkdownIt

from .section import Section


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# -- rendering: Markdown --------------------------------------------------------------------
_MD_ENTITY = {"<": "&lt;"}  # ``>`` starts no markup (a quote only at a line's start): "> 0.01" stays readable


def _md_link_target(text: str, at: int) -> str:
    """The link target after the ``](`` or ``]:`` that ends at ``at`` (up to the closing bracket or the line's end)."""
    rest = text[at:].lstrip(" \t")
    if rest.startswith("<"):
        rest = rest[1:]
    return re.match(r"[^)>\n]*", rest).group(0)  # whitespace included: a renderer may drop it (java\tscript:)


def md_text(text) -> str:
    """Markdown text made inert: no raw HTML, no entity, no link of an unsafe scheme, whatever a label or an option
    from the store holds.  Outside code spans ``<`` becomes an entity (no tag, comment or autolink can start), ``&``
    too where it could start one (``&#…``, ``&name``), and a ``]`` that would close a link (or a reference
    definition) to a target that is not relative or http(s)/mailto (:func:`safe_url`) is backslash-escaped.  A code span is kept as it is only where
    every CommonMark renderer reads one (a run of n backticks closed by the next run of exactly n on the same line,
    not escaped): its text is code, never markup.  Our own Markdown (links to tables, **bold**, `code`) is unchanged."""
    s, out, i, n = str(text), [], 0, len(str(text))
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] not in "<>&" and not s[i + 1].isalnum() and not s[i + 1].isspace():
            out.append(s[i:i + 2])  # an escaped character is literal (an escaped backtick opens no code span)
            i += 2
            continue
        if c == "`":
            j = i
            while j < n and s[j] == "`":
                j += 1
            run, k, close = j - i, j, None
            while k < n and s[k] != "\n":
                if s[k] == "`":
                    m = k
                    while m < n and s[m] == "`":
                        m += 1
                    if m - k == run:
                        close = k
                        break
                    k = m
                else:
                    k += 1
            if close is not None:
                out.append(s[i:close + run])
                i = close + run
            else:
                out.append("\\`" * run)  # literal backticks, escaped so that no renderer pairs them
                i = j
            continue
        if c in _MD_ENTITY:
            out.append(_MD_ENTITY[c])
        elif c == "&" and re.match(r"&[#A-Za-z0-9]", s[i:i + 2]):
            out.append("&amp;")
        elif c == "]" and s[i + 1:i + 2] in ("(", ":") and not safe_url(_md_link_target(s, i + 2)):
            out.append("\\]")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def md_alt(text) -> str:
    """:func:`md_text` for the text of an image or a link (``![TEXT](…)``): brackets kept where they pair
    (``rbm_vae[groups=2]``), else every bracket and backslash escaped, so the text cannot end early."""
    t, depth = str(text), 0
    for ch in t:
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            break
    if depth or "\\" in t:
        t = t.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return md_text(t)


def md_frame(frame: pd.DataFrame) -> str:
    if frame is None or frame.empty:
        return "(no rows)"
    f = frame.copy()
    f.columns = [md_text(c).replace("|", "\\|") for c in f.columns]
    f = f.map(lambda v: md_text(v.replace("\n", " ")).replace("|", "\\|") if isinstance(v, str) else v)
    return f.to_markdown(index=False)


def sections_markdown(sections: Sequence[Section], level: int = 2, prefix: str = "",
                      table_links: Optional[Dict[str, Tuple[str, str]]] = None) -> List[str]:
    """Markdown lines for the sections; figure payloads must be file names (see ``prefix``)."""
    h = "#" * level
    lines: List[str] = []
    for s in sections:  # every text through md_text: a label or an option from the store is never markup
        lines += [f"{h} {md_text(s.title)}", ""]
        if s.kind == "text":
            lines += [md_text(s.payload), ""]
        elif s.kind == "figure":
            lines += [f"![{md_alt(s.title)}]({prefix}{s.payload})", ""]
            if s.caption:
                lines += [md_text(s.caption), ""]
        elif s.kind == "table":
            if s.caption:
                lines += [md_text(s.caption), ""]
            lines += [md_frame(s.payload), ""]
            if table_links and s.name in table_links:
                csv, tex = table_links[s.name]
                lines += [f"Download: [CSV]({prefix}{csv}) · [LaTeX]({prefix}{tex})", ""]
        elif s.kind == "details":
            if s.caption:
                lines += [md_text(s.caption), ""]
            for summary, body in s.payload:
                summary = html.escape(summary).translate({ord("["): "&#91;", ord("]"): "&#93;", ord("`"): "&#96;"})
                lines += ["<details>", f"<summary>{summary}</summary>", "", "```",  # raw HTML: no Markdown link
                          body.replace("```", "'''"), "```", "", "</details>", ""]
    return lines


# -- rendering: HTML -------------------------------------------------------------------------
CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d2125;
       background: #fafbfc; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.6rem 3rem; background: #fff; min-height: 100vh; }
nav.top { font-size: 0.9rem; margin-bottom: 0.6rem; color: #5b6570; }
nav.top a { margin-right: 0.8rem; }
img.thumb { display: block; width: auto; max-width: 100%; height: auto; margin: 0.3rem 0 0.8rem;
            border: 1px solid #d8dde2; }  /* the main figure at its own size: a 320-px copy was unreadable */
h3[id^="leaderboard-"] { clear: both; }
h1 { font-size: 1.6rem; margin: 0.4rem 0 0.6rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #dde1e5; padding-bottom: 0.2rem; }
a { color: #0b5cad; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.86em; }
code { background: #f1f3f5; padding: 0 0.2em; border-radius: 3px; }
pre { background: #f6f8fa; padding: 0.7rem; overflow-x: auto; border: 1px solid #e1e4e8; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.4rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #d5dae0; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
thead th { background: #eef1f4; }
tbody tr:nth-child(even) { background: #f8f9fb; }
table.nowrap td, .nw { white-space: nowrap; }
figure { margin: 0.6rem 0 1rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e6e9ec; }
figcaption { font-size: 0.85rem; color: #4a535c; margin-top: 0.3rem; }
.downloads { font-size: 0.8rem; }
details { margin: 0.4rem 0; border: 1px solid #e7c3c3; border-radius: 4px; padding: 0.3rem 0.6rem;
          background: #fff8f8; }
summary { cursor: pointer; font-family: ui-monospace, monospace; font-size: 0.85rem; }
.note { background: #fff9e6; border-left: 4px solid #e0b400; padding: 0.4rem 0.8rem; }
.error { background: #fdecec; border-left: 4px solid #c62828; padding: 0.4rem 0.8rem; }
ul.toc { columns: 2; column-gap: 2rem; font-size: 0.9rem; }
ul.toc li { break-inside: avoid; overflow-wrap: anywhere; }
footer { margin-top: 3rem; font-size: 0.8rem; color: #6a737d; }
"""

#: link schemes a page may carry; any other ([x](javascript:…), data:, vbscript:, …) is shown as text
SAFE_SCHEMES = ("http", "https", "mailto")


def safe_url(url: str) -> bool:
    """Whether a link target is relative (a path, ``#fragment``) or of a scheme in :data:`SAFE_SCHEMES`, read as a
    browser would: entities decoded, whitespace and control characters ignored (``java\tscript:`` is javascript)."""
    plain = re.sub(r"[\x00-\x20\x7f]", "", html.unescape(str(url)))
    m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", plain)
    return m is None or m.group(1).lower() in SAFE_SCHEMES


#: the site's Markdown renderer: markdown-it-py (CommonMark with GitHub's pipe tables), raw HTML off (every ``<`` in
#: a label or option is text), links only where :func:`safe_url` allows them (others stay text); offline
_MD = MarkdownIt("commonmark", {"html": False}).enable("table")
_MD.validateLink = safe_url


def md_inline(text: str) -> str:
    """``text`` as inline Markdown → HTML (`code`, **bold**, [links](url); everything else escaped; a link whose
    target is not relative or http(s)/mailto (:func:`safe_url`) stays text)."""
    return _MD.renderInline(str(text))


def md_block(text: str) -> str:
    """Markdown → HTML (paragraphs, lists, pipe tables; a table scrolls sideways inside its ``div.scroll``)."""
    out = _MD.render(str(text).strip())
    return out.replace("<table>", '<div class="scroll"><table>').replace("</table>", "</table></div>").strip()


def frame_html(frame: pd.DataFrame) -> str:
    """A table; a column whose cells are all short ("0.716 [0.692, 0.744]") keeps each cell on one line, so a long
    label in another column wraps instead of breaking the numbers."""
    if frame is None or frame.empty:
        return "<p>(no rows)</p>"
    shown = frame.copy()
    for c in shown.columns:
        text = [("–" if _missing(v) else (f"{v:.4g}" if isinstance(v, float) else str(v))) for v in shown[c]]
        short = max((len(t) for t in text), default=0) <= 40
        shown[c] = [(f'<span class="nw">{html.escape(t, quote=False)}</span>' if short
                     else html.escape(t, quote=False)) for t in text]  # element text: no quote can end it
    shown.columns = [html.escape(str(c), quote=False) for c in shown.columns]
    return shown.to_html(index=False, border=0, escape=False, classes="data")


def _missing(v) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def sections_html(sections: Sequence[Section], table_links: Optional[Dict[str, Tuple[str, str]]] = None) -> str:
    parts = []
    for s in sections:
        parts.append(f'<section id="{html.escape(s.name)}">\n<h2>{md_inline(s.title)}</h2>')
        caption = md_inline(s.caption) if s.caption else ""
        if s.kind == "text":
            parts.append(md_block(s.payload))
        elif s.kind == "figure":
            parts.append(f'<figure><img src="{html.escape(str(s.payload))}" alt="{html.escape(s.title)}">'
                         + (f"<figcaption>{caption}</figcaption>" if caption else "") + "</figure>")
        elif s.kind == "table":
            links = ""
            if table_links and s.name in table_links:
                csv, tex = table_links[s.name]
                links = (f' <span class="downloads">[<a href="{html.escape(csv)}">CSV</a> · '
                         f'<a href="{html.escape(tex)}">LaTeX</a>]</span>')
            parts.append(f'<figure class="table"><div class="scroll">{frame_html(s.payload)}</div>'
                         f"<figcaption>{caption}{links}</figcaption></figure>")
        elif s.kind == "details":
            if caption:
                parts.append(f"<p>{caption}</p>")
            for summary, body in s.payload:
                parts.append(f"<details><summary>{html.escape(summary)}</summary>"
                             f"<pre>{html.escape(body)}</pre></details>")
        parts.append("</section>")
    return "\n".join(parts)


def page_html(title: str, body: str, nav: str = "") -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<link rel=\"icon\" href=\"data:,\">\n<title>{html.escape(title)}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + (f"<nav class=\"top\">{nav}</nav>\n" if nav else "")
            + body + f"\n<footer>Built {html.escape(_now())} by <code>reports.build_site</code> from the results "
                     "store alone.</footer>\n</main>\n</body>\n</html>\n")


def toc(sections: Sequence[Section]) -> str:
    return ("<ul class=\"toc\">" + "".join(f'<li><a href="#{html.escape(s.name)}">{md_inline(s.title)}</a></li>'
                                           for s in sections) + "</ul>")
