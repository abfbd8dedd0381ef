"""The run as the store records it: cell statuses and their marks (diverged †, failed ✗), the cells and runs tables,
the index's run summary, and the text heading a study (this run's budget, the numerics versions its cells were
computed under, the runs and commits that computed them)."""
from __future__ import annotations

import json
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from estibench.harness.store import SETTING_COLUMNS

from . import tables as tb
from .section import Section

#: the columns of the store's cells and runs tables that the reports read (``build_site`` adds any missing one)
CELL_COLUMNS = ["key", "study", "model", "estimator", "label", "particles", "seeds", "config", "status", "wall_s",
                "sec_per_iter", "device", "machine", "finished_at", "error", "diverged_at", "attempts",
                *SETTING_COLUMNS, "threads"]
RUN_COLUMNS = ["id", "started_at", "finished_at", "command", "git_commit", "machine", "versions", "backend", "jobs",
               "cells_total", "cells_run", "wall_s", "status", "threads"]


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


def cells_n(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def _int(v) -> str:
    try:
        return f"{int(v):,}"
    except (TypeError, ValueError):
        return "?"


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
    if not live_cells(cells).empty:
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


# -- what the store holds: the run's blurb, numerics versions, provenance ----------------------------
def live_cells(cells: pd.DataFrame) -> pd.DataFrame:
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
    return ", ".join(f"{one(v)} ({cells_n(int(n))})" for v, n in sorted(counts.items(), key=lambda kv: -kv[0]))


def run_facts(cells: pd.DataFrame) -> str:
    """What this store holds for a study, every number read from its cells: cells, estimators, models, K values,
    seeds and iterations per cell."""
    c = live_cells(cells)
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
    return (f"**This run** (read from the store): {cells_n(len(c))}, {n_est} estimator{'s' if n_est != 1 else ''}"
            + (f", {models} models" if models > 1 else "") + f", K ∈ {{{', '.join(map(str, Ks))}}}; {budget}.")


def study_blurb(cells: pd.DataFrame, description: str = "", own: Optional[str] = None) -> str:
    """The text heading a study: :func:`run_facts` (this run, from the store), then the description it was given:
    the study's own (``own``, its ``Study.description``) as it is, a suite's (which states the suite's default
    budget, not this run's) as "the suite's default"."""
    facts = run_facts(cells)
    if not description:
        return facts
    if description == own:
        return f"{description}.  {facts}" if not description.endswith(".") else f"{description}  {facts}"
    return f"{facts}  The suite's default is: {description.rstrip('.')}."


def _current_versions(pairs: Sequence[Tuple[str, str]]):
    """((model, estimator) → the numerics version this code computes, (model, estimator) → [(version, what
    changed)]) (``harness.runner.numerics_history``: the revisions the engine and the classes declare; a pair this
    process does not know is left out)."""
    from estibench.harness import runner
    history = {}
    for m, e in pairs:
        h = runner.numerics_history(m, e, known_only=True)
        if h is not None:
            history[(m, e)] = [(v, r.what) for v, r in h]
    current = {pair: 1 + len(h) for pair, h in history.items()}
    return current, history


def numerics_text(cells: pd.DataFrame, study: Optional[str] = None) -> str:
    """One line: the numerics version(s) the cells were computed under (the cells' ``numerics_version``; absent =
    1), the version the current code computes for them and what changed since (``harness.runner.numerics_history``,
    per model and estimator)."""
    c = live_cells(cells)
    if c.empty:
        return ""
    stored = c.numerics_version.map(lambda v: 1 if v is None or (isinstance(v, float) and np.isnan(v)) else int(v))
    stored_text = ", ".join(f"{v} ({cells_n(int(n))})" for v, n in sorted(stored.value_counts().items()))
    parts = []
    for s in sorted(c.study.dropna().unique()) if study is None else [study]:
        rows = c[c.study == s] if "study" in c.columns else c
        pairs = sorted({(m, e) for m, e in zip(rows.model_name, rows.estimator) if isinstance(m, str)
                        and isinstance(e, str)})
        current, history = _current_versions(pairs)
        if not current:
            continue
        by_version: Dict[int, set] = {}
        for (m, e), v in current.items():
            by_version.setdefault(v, set()).add(tb.display_name(e))
        now = "; ".join(f"{v}" + ("" if len(by_version) == 1 else f" ({', '.join(sorted(es))})")
                        for v, es in sorted(by_version.items()))
        changed: Dict[str, set] = {}  # a change's text → the estimators whose stored cells predate it
        for m, e, v in zip(rows.model_name, rows.estimator, stored[rows.index]):
            for version, what in history.get((m, e), []):
                if version > v:
                    changed.setdefault(what, set()).add(tb.display_name(e))
        n_est = len({e for _, e in current})
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
        return {k: [] for k in live_cells(cells).key}
    r = runs.assign(_start=pd.to_datetime(runs.started_at, utc=True, errors="coerce"),
                    _end=pd.to_datetime(runs.finished_at, utc=True, errors="coerce")).sort_values("_start")
    starts = list(r._start)
    ends = [e if pd.notna(e) else (starts[i + 1] if i + 1 < len(starts) else pd.Timestamp.max.tz_localize("UTC"))
            for i, e in enumerate(r._end)]
    for key, finished in zip(live_cells(cells).key, pd.to_datetime(live_cells(cells).finished_at, utc=True, errors="coerce")):
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
    c = live_cells(cells)
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
                     + (f"{len(surely)} of {cells_n(len(c))} ({listed(surely)})" if surely else "")
                     + ("; " if surely and maybe else "")
                     + (f"{len(maybe)} {'more' if surely else 'of ' + cells_n(len(c))} may be, having finished "
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
                     + "; ".join(f"run {i} {_commit(commit.get(i))} ({cells_n(n)})" for i, n in sorted(per_run.items()))
                     + (f"{'; ' if per_run else ''}{cells_n(outside)} finished outside every recorded run (merged "
                        "from another store or older than the run records: commit unknown)" if outside else ""))
    return "\n".join(lines)
