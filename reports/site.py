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

A page's sections are rendered by ``reports/render.py`` (every text from the store escaped there), its figures and
tables written by ``reports/export.py``; the run summary and the text heading a study come from
``reports/summary.py``.

Temporary files.  The build folder is ``out/.report-build-<pid>@<host>-<random>``; a build that
was killed (SIGKILL, power loss) leaves it behind, and the next build removes every such folder
whose process is no longer alive on this host, never one of a live build (of this or another
process).  Folders named by another host, or in the old style without a pid, are removed once
an hour old.  The manifest, like ``estibench.studies.gmm.page.write_report``'s ``report.md``, is written
through a uniquely named temporary file in its folder (:func:`estibench.files.write_text`), so builds
running at once into the same ``out`` do not collide, and a failed write leaves no temporary
file and the previous file intact.
"""
from __future__ import annotations

import dataclasses
import html
import os
import re
import shutil
import socket
import tempfile
import time
import traceback
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import pandas as pd

from estibench.files import pid_alive, write_text
from estibench.harness.store import TABLE_COLUMNS as STORE_TABLE_COLUMNS

from . import tables as tb
from .glossary import definitions_section
from .export import materialise
from .generic import generic_sections
from .index import index_leaderboards
from .naming import models_section, page_names
from .render import md_alt, md_block, md_inline, md_text, page_html, sections_html, sections_markdown, toc
from .section import Section, slug
from .summary import (CELL_COLUMNS, RUN_COLUMNS, cells_n, cells_table, counts_text, live_cells, numerics_text,
                      provenance_text, run_summary_sections, study_blurb)

MANIFEST = ".report-files"


#: study name -> sections(table, cells, artifacts=None): every page has this one signature (``artifacts``: the
#: files its cells stored, ``harness.store``; a page that shows none ignores it).  What a study adds to the index
#: is its ``Study.index_page`` (:func:`_index_references`)
STUDY_PAGES: Dict[str, Callable[..., List[Section]]] = {}


# -- which page a study gets ----------------------------------------------------------------------
def _study_rows(frame: pd.DataFrame, study: str) -> pd.DataFrame:
    if frame is None or frame.empty or "study" not in frame.columns:
        return frame if frame is not None else pd.DataFrame()
    return frame[frame.study == study]


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
    registered = studies.lookup(study)
    return registered.page_function() if registered is not None and registered.page else generic_sections


def _own_description(study: str) -> Optional[str]:
    """The registered study's own description (``Study.description``), None for a name the registry lacks (a name a
    store holds is data: never imported) or a study that fails to load."""
    from estibench import studies
    try:
        registered = studies.lookup(study)
        return registered.description if registered is not None else None
    except Exception:  # noqa: BLE001 - a broken study has no description of its own
        return None


def _index_page(study: str) -> Optional[Callable]:
    """What the study registry names as ``study``'s addition to the index (``Study.index_page``), or None."""
    from estibench import studies
    registered = studies.lookup(study)
    return registered.index_function() if registered is not None else None


def _page_of(study: str):
    """The function that makes ``study``'s page: its override in :data:`STUDY_PAGES`, else :func:`_registered_page`."""
    return STUDY_PAGES.get(study) or _registered_page(study)


def _sections_for(study: str, table: pd.DataFrame, cells: pd.DataFrame,
                  artifacts: Optional[pd.DataFrame] = None) -> List[Section]:
    try:
        sections = _page_of(study)(table, cells, artifacts=artifacts)
        return list(sections)
    except Exception:  # a broken study page must not hide the run summary and the other studies
        tb_text = traceback.format_exc()
        warnings.warn(f"report page of study {study!r} failed:\n{tb_text}")
        return [Section("This page failed to build", "details",
                        [(tb_text.strip().splitlines()[-1], tb_text)],
                        caption="the study's report code raised; the tables below are still from the store",
                        name="page_error")]


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


TABLE_COLUMNS = list(STORE_TABLE_COLUMNS)


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
    descriptions = {s: study_blurb(_study_rows(cells, s), descriptions.get(s, ""), _own_description(s)) for s in studies}
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
        prov = "\n".join(l for l in ["- " + numerics_text(c, study) if len(live_cells(c)) else "",
                                     provenance_text(c, runs)] if l)
        nav = '<a href="../index.html">← all studies</a>' + "".join(
            f'<a href="../{folders[s]}/index.html">{html.escape(s)}</a>' for s in studies if s != study)
        head = (f"<h1>Study <code>{html.escape(study)}</code></h1>\n"
                + (md_block(desc) if desc else "") + (md_block(prov) if prov else "")
                + f"<p>{cells_n(len(c))}: {html.escape(counts_text(c))}. "
                  f'Markdown version: <a href="report.md">report.md</a>.</p>\n' + toc(body))
        _write(os.path.join(folder, "index.html"), page_html(f"{title}: {study}", head + sections_html(body, links),
                                                              nav))
        md = [md_text(f"# {title}: study `{study}`"), ""] + ([md_text(desc), ""] if desc else []) + \
             ([md_text(prov), ""] if prov else []) + [md_text(f"{cells_n(len(c))}: {counts_text(c)}."), ""] + \
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
    boards_html, boards_md = index_leaderboards(root, table, studies, folders)
    refs_html, refs_md = _index_references(root, table, studies, folders)
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


def _index_references(root: str, table: pd.DataFrame, studies: Sequence[str], folders: Dict[str, str]):
    """(HTML, Markdown lines) shown under the leaderboards: what each study adds to the index, declared as its
    ``Study.index_page``: ``index_sections(table, folder) -> (heading, sections)`` (``table``: the study's rows;
    ``folder``: its page's folder, relative to the index), e.g. the GMM study's paper-budget reference beside a short
    run (``estibench.studies.gmm.page.index_sections``); its sections are named after the study, and shown under the heading when
    there is one.  The site imports no study's code but through the study registry."""
    parts: List[str] = []
    md: List[str] = []
    for study in studies:
        try:
            extra = _index_page(study)
        except Exception:  # noqa: BLE001 - a broken study's page says so on its own page (_sections_for)
            continue
        if extra is None:
            continue
        heading, found = extra(_study_rows(table, study), folders[study])
        if not found:
            continue
        sections, links = materialise([dataclasses.replace(s, name=f"{slug(study)}_{s.name}") for s in found], root)
        head = f"<h2>{md_inline(heading)}</h2>\n" if heading else ""
        parts.append(head + sections_html(sections, links).replace("<h2>", "<h3>").replace("</h2>", "</h3>") + "\n")
        md += ([f"## {md_text(heading)}", ""] if heading else []) + sections_markdown(sections, 3, "", links)
    return "".join(parts), md


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
    write_text(manifest, "\n".join(sorted(files)) + "\n")


__all__ = ["STUDY_PAGES", "build_site", "remove_stale_builds", "MANIFEST"]
