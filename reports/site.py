"""The static report site: rebuilt from the results store alone (tidy table, cells, runs).

``build_site(table, cells, runs, out)`` writes, viewable offline (inline CSS, no scripts, no
network, figures as relative PNG files)::

    out/index.html, out/report.md     run summary, links to every study, metric definitions
                                      (report.md also carries every study's content)
    out/tables/*.csv, *.tex           the run summary's tables
    out/<study>/index.html, report.md one page per study: cell statuses, its sections, definitions
    out/<study>/*.png                 its figures
    out/<study>/tables/*.csv, *.tex   its tables

A study's page is a list of :class:`Section` from ``STUDY_PAGES[study](table, cells)`` (the
rows of that study only); a study without an entry gets :func:`generic_sections`.  Everything
is written into a temporary folder inside ``out`` first and then moved over the old files, so
a reader never sees half a report; files of an earlier build that this one no longer writes
are removed (they are listed in ``out/.report-files``), nothing else in ``out`` is touched.

Opening a report runs no code, whoever wrote the store.  Every text a store holds (labels, options,
model and study names, commands, machines, tracebacks) is escaped before it reaches a page
(:func:`md_inline`, :func:`_frame_html`) and made inert before it reaches a ``report.md``
(:func:`md_text`: no raw HTML, no entity, code spans only where every renderer reads one); a link is
kept only with a relative, http(s) or mailto target (:func:`safe_url`), any other is shown as text.
Names are looked up only among those registered in this process (``Registry.known``): a
``package.module:Class`` the store names is printed, never imported.

Temporary files.  The build folder is ``out/.report-build-<pid>@<host>-<random>``; a build that
was killed (SIGKILL, power loss) leaves it behind, and the next build removes every such folder
whose process is no longer alive on this host, never one of a live build (of this or another
process).  Folders named by another host, or in the old style without a pid, are removed once
an hour old.  The manifest, like ``reports.gmm.write_report``'s ``report.md``, is written
through a uniquely named temporary file in its folder (:func:`write_text_atomic`), so builds
running at once into the same ``out`` do not collide, and a failed write leaves no temporary
file and the previous file intact.
"""
from __future__ import annotations

import dataclasses
import datetime
import html

import json
import os
import re
import shutil
import socket
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from . import definitions as defs
from estibench.files import pid_alive, write_text
from estibench.harness.store import SETTING_COLUMNS, TABLE_COLUMNS as STORE_TABLE_COLUMNS
from . import tables as tb

KINDS = ("table", "figure", "text", "details")
MANIFEST = ".report-files"


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


#: study name -> sections(table, cells, artifacts=None): every page has this one signature (``artifacts``: the
#: files its cells stored, ``harness.store``; a page that shows none ignores it)
STUDY_PAGES: Dict[str, Callable[..., List[Section]]] = {}


def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_").lower()
    return s[:60] or "section"


# -- small helpers -------------------------------------------------------------------------
def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _duration(seconds) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "–"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _json(text, default):
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


def _pretty_label(label: str) -> str:
    return tb.pretty_label(label)  # one naming of estimators across the reports (their display_name)


def _study_rows(frame: pd.DataFrame, study: str) -> pd.DataFrame:
    if frame is None or frame.empty or "study" not in frame.columns:
        return frame if frame is not None else pd.DataFrame()
    return frame[frame.study == study]


def cell_marks(cells: pd.DataFrame, study: Optional[str] = None) -> Dict[Tuple[str, int], str]:
    """(label, K) → " †" for the diverged cells (of ``study``)."""
    if cells is None or cells.empty or "status" not in cells.columns:
        return {}
    c = cells if study is None or "study" not in cells.columns else cells[cells.study == study]
    c = c[c.status == "diverged"]
    return {(l, int(k)): " †" for l, k in zip(c.label, c.particles)}


def diverged_note(cells: pd.DataFrame, study: Optional[str] = None) -> str:
    """A caption sentence naming the diverged cells (empty when none)."""
    if cells is None or cells.empty or "status" not in cells.columns:
        return ""
    c = cells if study is None or "study" not in cells.columns else cells[cells.study == study]
    c = c[c.status == "diverged"]
    if c.empty:
        return ""
    parts = [f"{_pretty_label(l)} K = {int(k)} at iteration {_int(d)}"
             for l, k, d in zip(c.label, c.particles, c.diverged_at)]
    return ("† diverged (loss or gradients not finite): " + "; ".join(parts) +
            "; its values are those of its last finite evaluation.")


def _cells_n(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def _int(v) -> str:
    try:
        return f"{int(v):,}"
    except (TypeError, ValueError):
        return "?"


# -- generic study page ----------------------------------------------------------------------
def _plain_metrics(table: pd.DataFrame) -> List[str]:
    metrics = [m for m in table.metric.unique() if "[" not in m]
    known = [m for m in defs.METRIC_DEFINITIONS if m in metrics]
    return known + sorted(m for m in metrics if m not in known)


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


def generic_sections(table: pd.DataFrame, cells: pd.DataFrame, artifacts: Optional[pd.DataFrame] = None) -> List[Section]:
    """Final-iteration mean [95 % Student-t interval] per metric × label × K, and learning curves; one pair per
    model when the study holds several (two models' numbers never pool)."""
    if table.empty:
        return [Section("Results", "text", "No metric rows: no cell of this study finished.")]
    models = list(dict.fromkeys(table.model)) if "model" in table.columns else [None]
    out: List[Section] = []
    for i, model in enumerate(models):
        rows = table if model is None or len(models) == 1 else table[table.model == model]
        suffix, tag = ("", "") if len(models) == 1 else (f": {model}", f"_{i + 1}")
        out += _summary_and_curves(rows, cells, suffix, tag)
    return out


def _summary_and_curves(table: pd.DataFrame, cells: pd.DataFrame, suffix: str, tag: str) -> List[Section]:
    metrics = _plain_metrics(table)
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


# -- run summary -----------------------------------------------------------------------------
def status_counts(cells: pd.DataFrame) -> Dict[str, int]:
    counts = {s: 0 for s in ("done", "diverged", "failed")}
    if cells is not None and not cells.empty:
        for s, n in cells.status.value_counts().items():
            counts[s] = counts.get(s, 0) + int(n)
    return counts


def counts_text(cells: pd.DataFrame) -> str:
    c = status_counts(cells)
    text = f"{c['done']} done, {c['diverged']} diverged, {c['failed']} failed"
    others = {k: v for k, v in c.items() if k not in ("done", "diverged", "failed")}
    return text + "".join(f", {v} {k}" for k, v in others.items())


def _status_text(row) -> str:
    if row.status == "diverged":
        return f"diverged at iteration {_int(row.diverged_at)} †"
    if row.status == "failed":
        return "failed ✗"
    return str(row.status)


def cells_table(cells: pd.DataFrame, with_study: bool = False) -> pd.DataFrame:
    """One row per cell: status, seeds, iterations, wall time, attempts."""
    if cells is None or cells.empty:
        return pd.DataFrame(columns=["estimator", "K", "status"])
    rows = []
    for r in cells.sort_values(["study", "particles", "label"]).itertuples():
        cfg = _json(r.config, {})
        seeds = _json(r.seeds, [])
        row = {"study": r.study} if with_study else {}
        row.update({"estimator": r.label, "K": int(r.particles), "seeds": len(seeds),
                    "iterations": cfg.get("iterations", ""), "status": _status_text(r),
                    "wall": _duration(r.wall_s), "s/iter": (f"{r.sec_per_iter:.3g}" if pd.notna(r.sec_per_iter)
                                                            else "–"),
                    "device": r.device or "–",
                    "threads": _int(r.threads) if pd.notna(r.threads) else "–", "attempts": int(r.attempts) if pd.notna(r.attempts) else 1,
                    "finished": r.finished_at or "–"})
        rows.append(row)
    return pd.DataFrame(rows)


def _run_status(status, finished_at) -> str:
    """How a run ended: finished, interrupted (Ctrl-C, SIGTERM), failed, still running or killed
    (``running`` with no end), or — for runs recorded before statuses were — finished / unfinished."""
    if isinstance(status, str) and status:
        return "running or killed" if status == "running" else status
    return "finished" if isinstance(finished_at, str) and finished_at else "unfinished"


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    if runs is None or runs.empty:
        return pd.DataFrame(columns=["run", "started", "finished", "command", "git commit"])
    return pd.DataFrame({
        "run": runs["id"].astype(int), "started": runs.started_at.fillna("–"),
        "finished": runs.finished_at.fillna("(unfinished)"),
        "ended": [_run_status(s, f) for s, f in zip(runs.status, runs.finished_at)],
        "command": runs.command.fillna("–"),
        "git commit": runs.git_commit.fillna("–"), "machine": runs.machine.fillna("–"),
        "backend": runs.backend.fillna("–"), "jobs": runs.jobs.map(lambda v: _int(v) if pd.notna(v) else "–"),
        "threads": runs.threads.map(lambda v: _int(v) if pd.notna(v) else "–"),
        "cells total": runs.cells_total.map(lambda v: _int(v) if pd.notna(v) else "–"),
        "cells run": runs.cells_run.map(lambda v: _int(v) if pd.notna(v) else "–"),
        "wall": runs.wall_s.map(_duration)})


def _versions_text(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) if versions else "not recorded"


def run_summary_sections(cells: pd.DataFrame, runs: pd.DataFrame) -> List[Section]:
    cells = cells if cells is not None else pd.DataFrame()
    runs = runs if runs is not None else pd.DataFrame()
    lines = [f"- **cells: {counts_text(cells)}** ({len(cells)} in all)"]
    if not cells.empty:
        if cells.study.nunique() > 1:
            for study, c in cells.groupby("study"):
                lines.append(f"- study `{study}`: {counts_text(c)}")
    if not runs.empty:
        total = runs.wall_s.dropna().sum()
        lines.append(f"- runs: {len(runs)} recorded; wall time {_duration(total)} in all"
                     + (f" (last run {_duration(runs.wall_s.iloc[-1])})" if pd.notna(runs.wall_s.iloc[-1]) else ""))
        commits = list(dict.fromkeys(runs.git_commit.dropna()))
        lines.append(f"- git commit: {', '.join(f'`{c}`' for c in commits) if commits else 'not recorded'}")
        machines = list(dict.fromkeys(runs.machine.dropna()))
        lines.append(f"- machine: {'; '.join(machines) if machines else 'not recorded'}")
        versions = list(dict.fromkeys(runs.versions.dropna()))
        for v in versions:
            lines.append(f"- versions: {_versions_text(_json(v, {}))}")
        last = runs.iloc[-1]
        lines.append(f"- last command: `{last.command}` (backend {last.backend or '–'}, "
                     f"{_int(last.jobs) if pd.notna(last.jobs) else '?'} jobs), started {last.started_at}, "
                     f"finished {last.finished_at or '(unfinished)'}")
    else:
        lines.append("- runs: none recorded (the store predates run records); times and machines below "
                     "come from the cells")
    if not cells.empty:
        finished = cells[cells.finished_at.notna() & cells.wall_s.notna()]
        if not finished.empty:
            end = pd.to_datetime(finished.finished_at, utc=True, errors="coerce")
            start = end - pd.to_timedelta(finished.wall_s, unit="s")
            span = (end.max() - start.min()).total_seconds()
            lines.append(f"- cell wall times: {_duration(finished.wall_s.sum())} in all; first cell start to last "
                         f"cell end: {_duration(span)}")
        machines = sorted(cells.machine.dropna().unique())
        if machines:
            lines.append(f"- cells ran on: {'; '.join(machines)} (devices: "
                         f"{', '.join(sorted(cells.device.dropna().unique())) or '–'})")
    if not _live(cells).empty:
        lines.append("- " + numerics_text(cells))
        lines += [l for l in provenance_text(cells, runs).splitlines() if "modified tree" in l]
    if not cells.empty:
        lines.append("- every cell: [cells.csv](tables/cells.csv) · [cells.tex](tables/cells.tex); per study on "
                     "its page")
    out = [Section("Run summary", "text", "\n".join(lines), name="run_summary")]
    if not runs.empty:
        out.append(Section("Runs", "table", runs_table(runs), caption="every invocation recorded in the store",
                           name="runs"))
    bad = cells[cells.status != "done"] if not cells.empty else cells
    if not bad.empty:
        out.append(Section("Diverged and failed cells", "table", cells_table(bad, with_study=True),
                           caption="† diverged: its rows stop at the last finite evaluation, a rerun skips it; "
                                   "✗ failed: no rows, a rerun retries it", name="cells_not_done"))
    if not cells.empty:
        failed = cells[cells.status == "failed"]
        if not failed.empty:
            items = []
            for r in failed.itertuples():
                err = (r.error or "").rstrip() or "(no traceback recorded)"
                last = err.splitlines()[-1] if err else ""
                items.append((f"{r.study} / {_pretty_label(r.label)} K = {int(r.particles)} — {last}  "
                              f"(attempts: {int(r.attempts) if pd.notna(r.attempts) else 1})", err))
            out.append(Section("Failed cells", "details", items,
                               caption="tracebacks recorded by the runner; click to expand", name="failed"))
    return out


def definitions_section(table: pd.DataFrame) -> Section:
    names = table.metric.unique() if table is not None and not table.empty else []
    rows = [(n, d if d is not None else "(no definition registered in reports/definitions.py)")
            for n, d in defs.families(names)]
    return Section("Metric definitions", "table", pd.DataFrame(rows, columns=["metric", "definition"]),
                   caption="every metric recorded in the table shown; bracketed names stand for a family "
                           "(e.g. prior_pmf[z=c] for c = 0, 1, …)", name="metric_definitions")


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


def _md_frame(frame: pd.DataFrame) -> str:
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
            lines += [_md_frame(s.payload), ""]
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


_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD_OR_LINK = re.compile(f"{_BOLD.pattern}|{_LINK.pattern}")


def _link(m: "re.Match") -> str:
    text, url = m.group(m.re.groups - 1), m.group(m.re.groups)
    if not safe_url(url):
        return m.group(0)  # shown as the text it is
    href = url.replace('"', "&quot;").replace("'", "&#x27;")  # the attribute's value cannot end early
    return f'<a href="{href}">{_BOLD.sub(lambda b: f"<strong>{b.group(1)}</strong>", text)}</a>'


def _markup(escaped: str) -> str:
    """**bold** and [links](url) in text already escaped (no ``<``, ``>`` or raw ``&`` left; a URL's quotes are
    escaped where it becomes an attribute), in one pass (nothing inserted is read again)."""
    def one(m):
        if m.group(1) is not None:
            return f"<strong>{_LINK.sub(_link, m.group(1))}</strong>"
        return _link(_LINK.fullmatch(m.group(0)))
    return _BOLD_OR_LINK.sub(one, escaped)


def md_inline(text: str) -> str:
    """Escape ``text`` and turn `code`, **bold** and [links](url) into HTML (code spans first, so nothing inside
    them is interpreted); a link's target is escaped for its attribute (quotes included), and a link whose target
    is not relative or http(s)/mailto (:func:`safe_url`) stays text.  Element text is escaped without its quotes
    (``'`` and ``"`` cannot end an element's text; pages stay readable and searchable)."""
    parts = re.split(r"(`[^`]+`)", str(text))
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        out.append(_markup(html.escape(part, quote=False)))
    return "".join(out)


def _md_table_html(lines: List[str]) -> str:
    def cells(line):
        line = line.strip().strip("|")
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]
    head, body = cells(lines[0]), [cells(l) for l in lines[2:]] if len(lines) > 1 else []
    out = ["<div class=\"scroll\"><table>", "<thead><tr>" + "".join(f"<th>{md_inline(c)}</th>" for c in head)
           + "</tr></thead>", "<tbody>"]
    out += ["<tr>" + "".join(f"<td>{md_inline(c)}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(out + ["</tbody></table></div>"])


def md_block(text: str) -> str:
    """A small Markdown subset → HTML: paragraphs, ``- `` lists, pipe tables."""
    out = []
    for block in re.split(r"\n\s*\n", str(text).strip()):
        lines = [l for l in block.splitlines() if l.strip()]
        if not lines:
            continue
        if all(l.lstrip().startswith("|") for l in lines):
            out.append(_md_table_html(lines))
        elif all(l.lstrip().startswith(("- ", "* ")) for l in lines):
            out.append("<ul>" + "".join(f"<li>{md_inline(l.lstrip()[2:])}</li>" for l in lines) + "</ul>")
        else:
            out.append(f"<p>{md_inline(' '.join(l.strip() for l in lines))}</p>")
    return "\n".join(out)


def _frame_html(frame: pd.DataFrame) -> str:
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
            parts.append(f'<figure class="table"><div class="scroll">{_frame_html(s.payload)}</div>'
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


def _toc(sections: Sequence[Section]) -> str:
    return ("<ul class=\"toc\">" + "".join(f'<li><a href="#{html.escape(s.name)}">{md_inline(s.title)}</a></li>'
                                           for s in sections) + "</ul>")


# -- materialising figures and tables -----------------------------------------------------------
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


def _study_artifacts(artifacts: Optional[pd.DataFrame], cells: pd.DataFrame) -> pd.DataFrame:
    """The artifacts of one study's cells (an empty frame when there are none)."""
    if artifacts is None or artifacts.empty or "key" not in cells.columns:
        return pd.DataFrame(columns=["key", "name", "mime", "data"])
    return artifacts[artifacts.key.isin(set(cells.key))]


def _study_folder(study: str) -> str:
    name = slug(study) or "study"
    return f"study_{name}" if name in ("tables",) else name


def _registered_page(study: str):
    """The report page the study registry names for ``study`` (``Study.page``), else the generic page."""
    from estibench import studies
    if studies.REGISTRY.known(study) is None or not studies.get(study).page:
        return generic_sections
    return studies.get(study).page_function()


def _sections_for(study: str, table: pd.DataFrame, cells: pd.DataFrame,
                  artifacts: Optional[pd.DataFrame] = None) -> List[Section]:
    try:
        fn = STUDY_PAGES.get(study) or _registered_page(study)
        sections = fn(table, cells, artifacts=artifacts)
        return list(sections)
    except Exception:  # a broken study page must not hide the run summary and the other studies
        tb_text = traceback.format_exc()
        warnings.warn(f"report page of study {study!r} failed:\n{tb_text}")
        return [Section("This page failed to build", "details",
                        [(tb_text.strip().splitlines()[-1], tb_text)],
                        caption="the study's report code raised; the tables below are still from the store",
                        name="page_error")]


# -- one naming scheme per page -------------------------------------------------------------------
_MARKS = re.compile(r"(?: [†✗])+$")
#: table columns that hold estimator labels (shown by display name, settings suffix shortened)
ESTIMATOR_COLUMNS = ("estimator", "label", "reference")


def _split_commas(text: str) -> List[str]:
    """``text`` split at the commas outside brackets and quotes, each part stripped."""
    parts, depth, start, quote = [], 0, 0, None
    for k, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:k].strip())
            start = k + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def short_models(models) -> Dict[str, str]:
    """full → short model labels: each keeps the settings that differ among the labels of its model name given
    (``tables.short_labels``), e.g. ``rbm_vae[ais_chains=200,…,groups=2]`` → ``rbm_vae[groups=2]``."""
    models = [str(m) for m in dict.fromkeys(models) if isinstance(m, str)]
    return {full: short for short, full in tb.short_labels(models).items()} if models else {}


def short_estimators(labels) -> Dict[str, str]:
    """full → short estimator labels: the settings suffix that ``tables.separate_settings`` adds to tell cells
    apart (``vimco {study_options.pretrain_ae_steps=1000, …}``) keeps only the settings that differ among the labels
    of the same estimator given (none: the suffix goes); the estimator's own options (``[…]``) stay.  Labels that
    would read alike keep their full form."""
    labels = [str(l) for l in dict.fromkeys(labels) if isinstance(l, str)]
    token: Dict[str, str] = {}
    proxy: Dict[str, str] = {}
    for label in labels:
        m = re.match(r"^(.*?) \{(.*)\}$", label)
        if m:
            tok = token.setdefault(m.group(1), f"estimator{len(token)}")
            proxy[label] = f"{tok}[{','.join(_split_commas(m.group(2)))}]"
    shortened = {f: s for s, f in tb.short_labels(list(proxy.values())).items()} if proxy else {}
    base = {t: b for b, t in token.items()}
    out = {}
    for label in labels:
        if label not in proxy:
            out[label] = label
            continue
        tok, _, rest = shortened.get(proxy[label], proxy[label]).partition("[")
        out[label] = base[tok] + (" {" + ", ".join(_split_commas(rest[:-1])) + "}" if rest else "")
    readers: Dict[str, List[str]] = {}
    for label, s in out.items():
        readers.setdefault(s, []).append(label)
    return {label: (label if len(readers[s]) > 1 else s) for label, s in out.items()}


def estimator_names(labels) -> Dict[str, str]:
    """full label (a † or ✗ mark kept at its end) → what a page prints: the short label (:func:`short_estimators`
    among ``labels``) with the estimator's display name (``tables.pretty_label``)."""
    labels = [l for l in dict.fromkeys(labels) if isinstance(l, str)]
    bare = {l: _MARKS.sub("", l) for l in labels}
    short = short_estimators(set(bare.values()))
    return {l: tb.pretty_label(short[bare[l]]) + l[len(bare[l]):] for l in labels}


def page_names(sections: Sequence[Section], models: Sequence[str] = ()) -> List[Section]:
    """One naming scheme per study page: in every table, estimator columns (:data:`ESTIMATOR_COLUMNS`) by display
    name with the settings suffix shortened within that table (:func:`estimator_names`), and the ``model`` column
    by the settings that differ within that table (:func:`short_models`); in section titles, ``models``' labels by
    the settings that differ on the page.  The registry names stay in the estimators table's own column."""
    page = short_models(models)
    replace = sorted(((f, s) for f, s in page.items() if f != s), key=lambda fs: -len(fs[0]))
    out = []
    for s in sections:
        title = s.title
        for full, short in replace:
            title = title.replace(full, short)
        payload = s.payload
        if s.kind == "table" and isinstance(payload, pd.DataFrame) and not payload.empty:
            payload = payload.copy()
            if "model" in payload.columns:
                names = short_models(payload["model"])
                payload["model"] = [names.get(v, v) if isinstance(v, str) else v for v in payload["model"]]
            for column in ESTIMATOR_COLUMNS:
                if column in payload.columns and payload[column].map(lambda v: isinstance(v, str)).all():
                    names = estimator_names(payload[column])
                    payload[column] = payload[column].map(names)
        out.append(dataclasses.replace(s, title=title, payload=payload))
    return out


def models_section(table: pd.DataFrame) -> Optional[Section]:
    """Every model of the page with each of its settings in a column, under the short name the page uses (None when
    no model name is shortened)."""
    if table is None or table.empty or "model" not in table.columns:
        return None
    models = list(dict.fromkeys(table.model.dropna().astype(str)))
    short = short_models(models)
    if all(s == f for f, s in short.items()):
        return None
    rows = []
    for full in models:
        name, _, inner = full.partition("[")
        row = {"model (as named on this page)": short[full], "model name": name}
        row.update(dict(p.split("=", 1) for p in _split_commas(inner[:-1]) if "=" in p) if inner else {})
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("–")
    return Section("Models on this page", "table", frame, name="models",
                   caption="each model is named by the settings that differ between the models of its name on this "
                           "page (a table names them by those that differ within it); here every setting, in full")


def _first_sentence(text: str) -> str:
    text = " ".join((text or "").strip().split("\n\n")[0].split())
    m = re.search(r"(?<=[.!?])\s+(?=[A-Z(])", text)
    return text[:m.start()] if m else text


def estimators_table(table: pd.DataFrame, labels: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """One row per estimator on the page: its display name, the registry name to type (``--estimators``; the one
    place a page prints it) and what it computes (``reports.definitions.ESTIMATOR_VARIANTS`` where the paper, the
    reference code and this project differ, else the first sentence of its docstring)."""
    from estibench import estimators
    labels = list(labels) if labels is not None else list(dict.fromkeys(table.label))
    typed: Dict[str, str] = {}
    for label in labels:
        typed.setdefault(re.sub(r" \{.*\}$", "", str(label)), label)
    rows = []
    for name, label in typed.items():
        variant = dict(defs.variant_rows(table, [label]))
        text = variant.get(label)
        if text is None:
            factory = estimators.REGISTRY.known(tb.estimator_of(label))  # never imports a name the store holds
            text = _first_sentence(factory.__doc__) if factory is not None else "(not registered in this installation)"
        rows.append({"estimator": tb.pretty_label(name), "registry name": name,
                     "what it computes": text})
    return pd.DataFrame(rows, columns=["estimator", "registry name", "what it computes"])


ESTIMATORS_CAPTION = ("The page names each estimator by its display name; its registry name is the one to type "
                      "(`--estimators NAME`, `check NAME`, `screen`).  Where the paper, its reference code and this project "
                      "differ, the text says which this label computes (the estimators' docstrings give every "
                      "formula).")


# -- what the store holds: the run's blurb, numerics versions, provenance ----------------------------
def _live(cells: pd.DataFrame) -> pd.DataFrame:
    if cells is None or cells.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    return cells[cells.status != "superseded"] if "status" in cells.columns else cells


def _cell_iterations(cells: pd.DataFrame) -> List[Optional[int]]:
    out = []
    for it, cfg in zip(cells["iterations"], cells["config"]):
        if it is None or (isinstance(it, float) and np.isnan(it)):
            it = _json(cfg, {}).get("iterations")
        out.append(int(it) if it is not None and not (isinstance(it, float) and np.isnan(it)) else None)
    return out


def _values_text(values: Sequence, unit: str) -> str:
    """"10 seeds" or "10 seeds (45 cells), 3 seeds (2 cells)"."""
    counts = pd.Series([v for v in values if v is not None]).value_counts()
    if counts.empty:
        return f"? {unit}"
    def one(v):
        return f"{_int(v)} {unit[:-1] if int(v) == 1 else unit}"
    if len(counts) == 1:
        return one(counts.index[0])
    return ", ".join(f"{one(v)} ({_cells_n(int(n))})" for v, n in sorted(counts.items(), key=lambda kv: -kv[0]))


def run_facts(cells: pd.DataFrame) -> str:
    """What this store holds for a study, every number read from its cells: cells, estimators, models, K values,
    seeds and iterations per cell."""
    c = _live(cells)
    if c.empty:
        return "This run: no cells in the store."
    seeds = [len(_json(s, [])) or None for s in c.seeds]
    iterations = _cell_iterations(c)
    Ks = sorted({int(k) for k in c.particles})
    models = c.model.nunique()
    n_est = len({re.sub(r" \{.*\}$", "", str(l)) for l in c.label})  # as typed: a settings suffix is no estimator
    if len(set(seeds)) == 1 and len(set(iterations)) == 1:
        budget = f"{_values_text(seeds, 'seeds')} × {_values_text(iterations, 'iterations')} per cell"
    else:
        budget = (f"seeds per cell: {_values_text(seeds, 'seeds')}; iterations per cell: "
                  f"{_values_text(iterations, 'iterations')}")
    return (f"**This run** (read from the store): {_cells_n(len(c))}, {n_est} estimator{'s' if n_est != 1 else ''}"
            + (f", {models} models" if models > 1 else "") + f", K ∈ {{{', '.join(map(str, Ks))}}}; {budget}.")


def study_blurb(study: str, cells: pd.DataFrame, description: str = "") -> str:
    """The text heading a study: :func:`run_facts` (this run, from the store), then the description it was given:
    the study's own as it is, a suite's (which states the suite's default budget, not this run's) as "the suite's
    default"."""
    facts = run_facts(cells)
    if not description:
        return facts
    try:
        from estibench import studies
        own = studies.get(study).description if studies.REGISTRY.known(study) is not None else None
    except Exception:  # noqa: BLE001 - a broken study has no description of its own
        own = None
    if description == own:
        return f"{description}.  {facts}" if not description.endswith(".") else f"{description}  {facts}"
    return f"{facts}  The suite's default is: {description.rstrip('.')}."


def _current_versions(study: str, estimators: Sequence[str]):
    """(estimator → the numerics version this code computes, estimator → [(version, what changed)])
    (``harness.runner.numerics_version`` / ``numerics_history``; a version depends only on the names)."""
    from estibench.harness import runner
    current = {e: runner.numerics_version(study, e) for e in estimators}
    history = {e: [(v, c.what) for v, c in runner.numerics_history(study, e)] for e in estimators}
    return current, history


def numerics_text(cells: pd.DataFrame, study: Optional[str] = None) -> str:
    """One line: the numerics version(s) the cells were computed under (the cells' ``numerics_version``; absent =
    1), the version the current code computes for them (``harness.runner.numerics_version``) and what changed
    since (``harness.runner.numerics_history``)."""
    c = _live(cells)
    if c.empty:
        return ""
    stored = c.numerics_version.map(lambda v: 1 if v is None or (isinstance(v, float) and np.isnan(v)) else int(v))
    stored_text = ", ".join(f"{v} ({_cells_n(int(n))})" for v, n in sorted(stored.value_counts().items()))
    parts = []
    for s in sorted(c.study.dropna().unique()) if study is None else [study]:
        rows = c[c.study == s] if "study" in c.columns else c
        current, history = _current_versions(s, sorted(rows.estimator.dropna().unique()))
        if not current:
            continue
        by_version: Dict[int, List[str]] = {}
        for e, v in current.items():
            by_version.setdefault(v, []).append(tb.display_name(e))
        now = "; ".join(f"{v}" + ("" if len(by_version) == 1 else f" ({', '.join(sorted(es))})")
                        for v, es in sorted(by_version.items()))
        changed: Dict[str, set] = {}  # a change's text → the estimators whose stored cells predate it
        for e, v in zip(rows.estimator, stored[rows.index]):
            for version, what in history.get(e, []):
                if version > v:
                    changed.setdefault(what, set()).add(tb.display_name(e))
        n_est = len(current)
        what = "; ".join(f"{t}" + (" [every estimator here]" if len(es) == n_est else f" [{', '.join(sorted(es))}]")
                         for t, es in sorted(changed.items(), key=lambda te: -len(te[1])))
        parts.append(("" if study is not None else f"`{s}`: ") + f"the current code computes version {now}"
                     + (f" (what changed since: {what})" if what else " (no change since)"))
    return (f"**Numerics:** cells computed under numerics version(s) {stored_text}; " + "; ".join(parts)
            + ("." if parts else "the current code's versions could not be read."))


def cell_runs(cells: pd.DataFrame, runs: pd.DataFrame) -> Dict[str, List[int]]:
    """cell key → the ids of the runs that may have computed it: those whose span holds the cell's finish time
    (a run recorded without an end: up to the next run's start).  Cells record no run, so this is by time;
    an empty list: the cell finished outside every recorded run (merged from another store, or older than the
    run records)."""
    out: Dict[str, List[int]] = {}
    if runs is None or runs.empty:
        return {k: [] for k in _live(cells).key}
    r = runs.assign(_start=pd.to_datetime(runs.started_at, utc=True, errors="coerce"),
                    _end=pd.to_datetime(runs.finished_at, utc=True, errors="coerce")).sort_values("_start")
    starts = list(r._start)
    ends = [e if pd.notna(e) else (starts[i + 1] if i + 1 < len(starts) else pd.Timestamp.max.tz_localize("UTC"))
            for i, e in enumerate(r._end)]
    for key, finished in zip(_live(cells).key, pd.to_datetime(_live(cells).finished_at, utc=True, errors="coerce")):
        out[key] = [int(i) for i, a, b in zip(r["id"], starts, ends)
                    if pd.notna(finished) and pd.notna(a) and a <= finished <= b]
    return out


def _commit(text) -> str:
    text = str(text) if isinstance(text, str) and text else "not recorded"
    dirty = text.endswith("+dirty")
    base = text[:-len("+dirty")] if dirty else text
    return f"`{base[:10]}{'+dirty' if dirty else ''}`"


def provenance_text(cells: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Markdown lines: which of these cells were computed from a modified (``+dirty``) tree (by run, one line; none:
    nothing), and each run that computed them with its commit (:func:`cell_runs`)."""
    c = _live(cells)
    if c.empty:
        return ""
    runs = runs if runs is not None else pd.DataFrame(columns=RUN_COLUMNS)
    attributed = cell_runs(c, runs)
    commit = dict(zip(runs["id"].astype(int), runs.git_commit)) if not runs.empty else {}
    dirty = {i for i, g in commit.items() if isinstance(g, str) and g.endswith("+dirty")}
    name = {k: f"{tb.pretty_label(l)} K = {int(p)}" for k, l, p in zip(c.key, c.label, c.particles)}
    order = {k: (l, int(p)) for k, l, p in zip(c.key, c.label, c.particles)}
    surely = sorted((k for k, ids in attributed.items() if ids and set(ids) <= dirty), key=order.get)
    maybe = sorted((k for k, ids in attributed.items() if set(ids) & dirty and not set(ids) <= dirty), key=order.get)
    lines = []
    if surely or maybe:
        def listed(keys):
            shown = [name[k] for k in keys[:12]]
            return ", ".join(shown) + (f" and {len(keys) - 12} more" if len(keys) > 12 else "")
        runs_hit = sorted({i for k in surely + maybe for i in attributed[k] if i in dirty})
        lines.append("- **Computed from a modified tree** (a `+dirty` commit): "
                     + (f"{len(surely)} of {_cells_n(len(c))} ({listed(surely)})" if surely else "")
                     + ("; " if surely and maybe else "")
                     + (f"{len(maybe)} {'more' if surely else 'of ' + _cells_n(len(c))} may be, having finished "
                        f"while a dirty and a clean run were both running ({listed(maybe)})" if maybe else "")
                     + f" — run{'s' if len(runs_hit) > 1 else ''} "
                     + ", ".join(f"{i} {_commit(commit[i])}" for i in runs_hit)
                     + ": the code that computed them is not exactly any commit.")
    per_run: Dict[int, int] = {}
    for ids in attributed.values():
        for i in ids:
            per_run[i] = per_run.get(i, 0) + 1
    outside = sum(1 for ids in attributed.values() if not ids)
    if per_run or outside:
        lines.append("- runs that computed these cells (by finish time) and their commits: "
                     + "; ".join(f"run {i} {_commit(commit.get(i))} ({_cells_n(n)})" for i, n in sorted(per_run.items()))
                     + (f"{'; ' if per_run else ''}{_cells_n(outside)} finished outside every recorded run (merged "
                        "from another store or older than the run records: commit unknown)" if outside else ""))
    return "\n".join(lines)


# -- the site -------------------------------------------------------------------------------------
def build_site(table: pd.DataFrame, cells: pd.DataFrame, runs: pd.DataFrame, out: str, *,
               descriptions: Optional[Dict[str, str]] = None, note: str = "",
               title: str = "estibench report", artifacts: Optional[pd.DataFrame] = None) -> str:
    """Write the static site and the Markdown report into ``out``; returns ``out/index.html``.

    ``descriptions``: study name → text shown at the head of its page (and in the index);
    ``artifacts``: the store's artifacts (``Store.artifacts()``), handed to the pages that take them;
    ``note``: text shown under the index's title (e.g. how the run went).  Build folders left in
    ``out`` by killed builds are removed first (:func:`remove_stale_builds`); builds running at
    once into the same ``out`` each complete (see the module docstring, Temporary files)."""
    descriptions = dict(descriptions or {})
    table = _with_columns(table, TABLE_COLUMNS)
    cells = _with_columns(cells, CELL_COLUMNS)
    table, cells = tb.separate_settings(table, cells)  # two cells that differ in a setting never pool
    tb.learn_estimators(table)
    runs = _with_columns(runs, RUN_COLUMNS)
    os.makedirs(out, exist_ok=True)
    studies = list(dict.fromkeys(sorted(set(table.study.unique()) | set(cells.study.unique()))))
    remove_stale_builds(out)
    tmp = tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{os.getpid()}@{_host_tag()}-", dir=out)
    try:
        _build(tmp, table, cells, runs, studies, descriptions, note, title, artifacts)
        _install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(out, "index.html")


BUILD_PREFIX = ".report-build-"
STALE_BUILD_AGE_S = 3600.0  # a build folder whose owner cannot be checked is removed once this old
_BUILD_NAME = re.compile(r"^\.report-build-(\d+)(?:@([A-Za-z0-9._]*))?-")


def _host_tag() -> str:
    """This host's name as it appears in build folders' names (letters, digits, '.', '_')."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64]


def remove_stale_builds(out: str, now: Optional[float] = None) -> List[str]:
    """Remove the ``.report-build-*`` folders in ``out`` that belong to no live build; returns
    their names.  A folder named by this host's process ``<pid>`` is removed when that process is
    not alive (``os.kill(pid, 0)`` raises ProcessLookupError) and kept while it is; one named by
    another host, or in the old style without a pid, is removed once older than
    ``STALE_BUILD_AGE_S`` (by its modification time).  Nothing else in ``out`` is touched."""
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(out)
    except OSError:
        return removed
    host = _host_tag()
    for name in names:
        path = os.path.join(out, name)
        if not name.startswith(BUILD_PREFIX) or os.path.islink(path) or not os.path.isdir(path):
            continue
        match = _BUILD_NAME.match(name)
        if match and match.group(2) in (None, host):
            stale = not pid_alive(int(match.group(1)))
        else:
            try:
                stale = now - os.path.getmtime(path) > STALE_BUILD_AGE_S
            except OSError:  # removed meanwhile
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


#: replace a file by a text (:func:`estibench.files.write_text`: a unique temporary file in the same folder, removed
#: on failure; the file is never seen half-written); the name reports/gmm.py imports
write_text_atomic = write_text


TABLE_COLUMNS = list(STORE_TABLE_COLUMNS)
CELL_COLUMNS = ["key", "study", "model", "estimator", "label", "particles", "seeds", "config", "status", "wall_s",
                "sec_per_iter", "device", "machine", "finished_at", "error", "diverged_at", "attempts",
                *SETTING_COLUMNS, "threads"]
RUN_COLUMNS = ["id", "started_at", "finished_at", "command", "git_commit", "machine", "versions", "backend", "jobs",
               "cells_total", "cells_run", "wall_s", "status", "threads"]


def _with_columns(frame: Optional[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """The frame with every expected column (missing ones as None: e.g. a store of schema 1)."""
    frame = pd.DataFrame(columns=list(columns)) if frame is None else frame.copy()
    for c in columns:
        if c not in frame.columns:
            frame[c] = None
    return frame


def _build(root: str, table, cells, runs, studies, descriptions, note, title, artifacts=None) -> None:
    study_md: Dict[str, List[str]] = {}
    folders = {s: _study_folder(s) for s in studies}
    # every number in a study's heading is read from its cells; a suite's description is its default
    descriptions = {s: study_blurb(s, _study_rows(cells, s), descriptions.get(s, "")) for s in studies}
    for study in studies:
        folder = os.path.join(root, folders[study])
        t, c = _study_rows(table, study), _study_rows(cells, study)
        status = Section("Cells", "table", cells_table(c),
                         caption=f"{counts_text(c)}; † diverged (rows up to its last finite evaluation), "
                                 "✗ failed (no rows; tracebacks on the index page)", name="cells")
        own = _sections_for(study, t, c, _study_artifacts(artifacts, c))
        own = page_names(own + [m for m in [models_section(t)] if m is not None], models=list(t.model.unique()))
        body, links = materialise(own + page_names([status]) + [definitions_section(t)], folder)
        desc = descriptions.get(study, "")
        prov = "\n".join(l for l in ["- " + numerics_text(c, study) if len(_live(c)) else "",
                                     provenance_text(c, runs)] if l)
        nav = '<a href="../index.html">← all studies</a>' + "".join(
            f'<a href="../{folders[s]}/index.html">{html.escape(s)}</a>' for s in studies if s != study)
        head = (f"<h1>Study <code>{html.escape(study)}</code></h1>\n"
                + (md_block(desc) if desc else "") + (md_block(prov) if prov else "")
                + f"<p>{_cells_n(len(c))}: {html.escape(counts_text(c))}. "
                  f'Markdown version: <a href="report.md">report.md</a>.</p>\n' + _toc(body))
        _write(os.path.join(folder, "index.html"), page_html(f"{title}: {study}", head + sections_html(body, links),
                                                              nav))
        md = [md_text(f"# {title}: study `{study}`"), ""] + ([md_text(desc), ""] if desc else []) + \
             ([md_text(prov), ""] if prov else []) + [md_text(f"{_cells_n(len(c))}: {counts_text(c)}."), ""] + \
             sections_markdown(body, 2, "", links)
        _write(os.path.join(folder, "report.md"), "\n".join(md) + "\n")
        # the combined report.md has the run summary and definitions once, at its top and end
        study_md[study] = sections_markdown(body[:len(own)], 3, f"{folders[study]}/", links)

    if not cells.empty:
        tb.export_table(cells_table(cells, with_study=True), os.path.join(root, "tables"), "cells",
                        caption="Every cell in the store")
    summary, links = materialise(page_names(run_summary_sections(cells, runs)), root)
    defs_section, dlinks = materialise([definitions_section(table)], root)
    links.update(dlinks)
    rows = []
    for study in studies:
        c = _study_rows(cells, study)
        rows.append(f'<li><a href="{folders[study]}/index.html"><strong>{html.escape(study)}</strong></a> — '
                    f"{html.escape(counts_text(c))}"
                    + (f": {md_inline(descriptions[study])}" if descriptions.get(study) else "")
                    + f' (<a href="{folders[study]}/report.md">Markdown</a>)</li>')
    boards_html, boards_md = _leaderboards(root, table, studies, folders)
    refs_html, refs_md = _index_references(root, table, studies)
    body = (f"<h1>{html.escape(title)}</h1>\n"
            + (f'<div class="note">{md_block(note)}</div>\n' if note else "")
            + boards_html + refs_html
            + "<h2>Studies</h2>\n" + (f"<ul>{''.join(rows)}</ul>" if rows else "<p>No cells in the store.</p>")
            + f"\n<p>Means over seeds are labelled <em>{html.escape(tb.ci_label())}</em> (reports/tables.py); "
              "a median with its quartiles describes the seeds' spread, is no interval, and says so. "
              "Markdown version of this site: "
              '<a href="report.md">report.md</a>.</p>\n'
            + sections_html(summary + defs_section, links))
    _write(os.path.join(root, "index.html"), page_html(title, body))

    md = [md_text(f"# {title}"), ""] + ([md_text(note), ""] if note else []) + boards_md + refs_md + ["## Studies", ""]
    md += [f"- [{md_alt(s)}]({folders[s]}/report.md) ([HTML]({folders[s]}/index.html)) — "
           + md_text(counts_text(_study_rows(cells, s)) + (f": {descriptions[s]}" if descriptions.get(s) else ""))
           for s in studies] + [""]
    md += sections_markdown(summary, 2, "", links)
    for study in studies:
        md += [md_text(f"## Study `{study}`"), ""] + ([md_text(descriptions[study]), ""] if descriptions.get(study)
                                                       else [])
        md += study_md[study]
    md += sections_markdown(defs_section, 2, "", links)
    _write(os.path.join(root, "report.md"), "\n".join(md) + "\n")


def _index_references(root: str, table: pd.DataFrame, studies: Sequence[str]):
    """(HTML, Markdown lines) shown under the leaderboards for a GMM run short of the paper's budget: the committed
    paper-budget leaderboard and verdicts (``reports.gmm.reference_sections``), each said to be such, so that the
    first page of the default study carries the paper-budget answer beside the user's short run."""
    if "gmm" not in studies:
        return "", []
    from . import gmm
    found = gmm.reference_sections(_study_rows(table, "gmm"))
    if not found:
        return "", []
    found = sorted(found, key=lambda s: s.name != "reference_leaderboard")  # the leaderboard first
    if len(found) > 1:  # which is which, before the numbers; the findings' measured values are on the GMM page
        t = _study_rows(table, "gmm")
        intro = Section("Which is which", "text",
                        f"The gmm leaderboard above is **your run ({gmm.run_budget(t)}): indicative only**.  Below, "
                        f"the **paper's budget** ({gmm.reference_budget(gmm.load_reference())}): its leaderboard and "
                        "the paper's findings judged at that budget (the measured values behind each verdict are on "
                        f"the [gmm page]({_study_folder('gmm')}/index.html#reference_findings)).",
                        name="reference_intro")
        found = [intro] + [dataclasses.replace(s, payload=s.payload.drop(columns=[c for c in s.payload.columns
                                                                                   if c.startswith("measured")]))
                           if s.name == "reference_findings" else s for s in found]
    sections, links = materialise([dataclasses.replace(s, name=f"gmm_{s.name}") for s in found], root)
    head = "<h2>gmm at the paper's budget (committed reference)</h2>\n" if len(found) > 1 else ""
    return (head + sections_html(sections, links).replace("<h2>", "<h3>").replace("</h2>", "</h3>") + "\n",
            (["## gmm at the paper's budget (committed reference)", ""] if head else [])
            + sections_markdown(sections, 3, "", links))


def _leaderboards(root: str, table: pd.DataFrame, studies: Sequence[str], folders: Dict[str, str]):
    """(HTML, Markdown lines) of the index's opening: per study with a headline metric (``Study.headline``), its
    ranked table (``reports/leaderboard.py``) and a thumbnail of its main figure, linked to the study's page.  A
    model is named by the settings that differ within its table (``tables.short_labels``), its full setting in the
    cell's tooltip and in a small table below; an unranked row (one seed) shows "–"."""
    from . import leaderboard as lb
    parts, md = [], []
    for study in studies:
        frame = lb.leaderboard(table, study)
        if frame is None or frame.empty:
            continue
        head = lb.headline_of(study)
        folder = folders[study]
        thumb = ""
        if head.figure and os.path.exists(os.path.join(root, folder, f"{head.figure}.png")):
            src = f"{folder}/{head.figure}.png"
            thumb = (f'<a href="{folder}/index.html"><img class="thumb" src="{html.escape(src)}" '
                     f'alt="{html.escape(study)}: main figure" width="320"></a>')
        full = tb.short_labels(frame.model)  # short → full
        shown = frame.assign(model=frame.model.map({f: s for s, f in full.items()}),
                             rank=[("–" if pd.isna(r) else str(r)) for r in frame["rank"]])
        board = _frame_html(shown)
        for short, long in full.items():
            if short != long:
                for inner in (f'<span class="nw">{html.escape(short, quote=False)}</span>', html.escape(short, quote=False)):
                    board = board.replace(f"<td>{inner}</td>", f'<td title="{html.escape(long)}">{inner}</td>')
        key = pd.DataFrame([(s, f) for s, f in full.items() if s != f], columns=["model", "full setting"])
        key_note = "Models above are named by the settings that differ between them; in full:"
        text = lb.caption(study, frame)
        parts.append(f'<h3 id="leaderboard-{html.escape(slug(study))}"><a href="{folder}/index.html">'
                     f"{html.escape(study)}</a>: {html.escape(head.metric)}</h3>\n" + thumb
                     + board + f'<p class="caption">{md_inline(text)}</p>'
                     + (f'<p class="caption">{key_note}</p>' + _frame_html(key) if len(key) else ""))
        md += [md_text(f"### {study}: {head.metric}"), ""] + ([f"![{md_alt(study)}]({folder}/{head.figure}.png)", ""]
                                                             if thumb else [])
        md += [_md_frame(shown), "", md_text(text), ""] + ([key_note, "", _md_frame(key), ""] if len(key) else [])
    if not parts:
        return "", []
    return ("<h2>Leaderboards</h2>\n" + "\n".join(parts) + "\n"), ["## Leaderboards", ""] + md


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _install(tmp: str, out: str) -> None:
    """Move every file built in ``tmp`` over its place in ``out`` (index.html last), then remove
    the files of the previous build that this one did not write."""
    files = []
    for folder, _, names in os.walk(tmp):
        for name in names:
            files.append(os.path.relpath(os.path.join(folder, name), tmp))
    files.sort(key=lambda f: (f == "index.html", f.count(os.sep) == 0, f))
    for rel in files:
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(os.path.join(tmp, rel), target)
    manifest = os.path.join(out, MANIFEST)
    old = []
    if os.path.exists(manifest):
        with open(manifest, encoding="utf-8") as fh:
            old = [l.strip() for l in fh if l.strip()]
    keep = set(files)
    root = os.path.realpath(out)
    for rel in old:
        path = os.path.realpath(os.path.join(out, rel))
        if rel not in keep and path.startswith(root + os.sep) and os.path.isfile(path):
            try:
                os.remove(path)
            except FileNotFoundError:  # a build running at once removed it first
                pass
    write_text_atomic(manifest, "\n".join(sorted(files)) + "\n")


__all__ = ["Section", "STUDY_PAGES", "build_site", "generic_sections", "run_summary_sections", "cells_table",
           "remove_stale_builds", "write_text_atomic", "runs_table", "counts_text", "cell_marks", "diverged_note", "definitions_section", "materialise",
           "sections_markdown", "sections_html", "md_inline", "md_block", "md_text", "safe_url",
           "figure_learning_curves"]
