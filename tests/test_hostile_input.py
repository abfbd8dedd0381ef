"""Hostile input (issue 26 items 1, 2, 9, 10): opening a store or a report runs no code, and a plug-in that breaks
on import, or a name that loads the wrong kind of thing, is refused in one line.

- A report of a store whose labels and options carry markup (``<script>``, ``onfocus=`` smuggled through a Markdown
  link, ``javascript:`` links, ``<img onerror=…>``) has no live markup in any HTML page or Markdown report:
  every element's attributes are parsed and checked, every ``href`` has a safe scheme.
- ``report`` and ``--dry-run`` read a store naming ``helper:X`` beside a ``helper.py`` without importing it
  (the label is shown as text), and an import never searches the current folder implicitly.
- A plug-in module raising NameError, SyntaxError or a plain Exception on import gives one line naming the
  plug-in and the error, exit status 2, through --estimators, --model, --basket, --suite, check and screen.
- ``--suite module:Attr`` loads only a suite grid: ``os:getcwd`` and ``json:JSONDecoder`` are refused without
  being called; ``report --suite notest:NotEst`` is refused in one line."""
import glob
import json
import os
import re
import sqlite3
import sys
import textwrap
from html.parser import HTMLParser

import pytest

from estibench.cli import main
from store_helpers import SCHEMA_1

# -- item 9: a plug-in that raises on import ---------------------------------------------------------------------
BROKEN = {
    "NameError": ("import os\n\nx = undefined_name\n", "NameError: name 'undefined_name' is not defined", "line 3"),
    "SyntaxError": ("import os\ndef broken(:\n    pass\n", "SyntaxError", "line 2"),
    "Exception": ("import os\n\n\nraise Exception('plug-in refuses to load')\n",
                  "Exception: plug-in refuses to load", "line 4"),
}
COMMANDS = {
    "--estimators": lambda spec, out: ["--estimators", spec, "--particles", "2", "--dry-run", "--out", out],
    "--model": lambda spec, out: ["--model", spec, "--dry-run", "--out", out],
    "--basket": lambda spec, out: ["--basket", spec, "--dry-run", "--out", out],
    "--suite": lambda spec, out: ["--suite", spec, "--dry-run", "--out", out],
    "check": lambda spec, out: ["check", spec],
    "screen": lambda spec, out: ["screen", "--model", "gmm", "--estimators", spec],
    "screen --model": lambda spec, out: ["screen", "--model", spec],
}


@pytest.mark.parametrize("error", sorted(BROKEN))
def test_a_plugin_that_raises_on_import_is_one_line(error, tmp_path, monkeypatch, capsys):
    source, message, where = BROKEN[error]
    module = f"broken_plug_{error.lower()}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    for command, argv in COMMANDS.items():
        monkeypatch.delitem(sys.modules, module, raising=False)
        spec = f"{module}:Thing"
        assert main(argv(spec, str(tmp_path / "out"))) == 2, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (command, err)
        assert f"plug-in {spec!r} failed to import" in err and message in err, (command, err)
        assert f"{module}.py {where}" in err, (command, err)


# -- item 10: a registry checks the kind of what it loads ---------------------------------------------------------
@pytest.mark.parametrize("spec", ["os:getcwd", "json:JSONDecoder", "os:sep", "json:dumps"])
def test_suite_loads_only_a_suite_grid(spec, tmp_path, monkeypatch, capsys):
    called = []
    monkeypatch.setattr(os, "getcwd", lambda: called.append("getcwd") or str(tmp_path))
    assert main(["--suite", spec, "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "is not a suite" in err, err
    assert not called


def test_report_refuses_a_suite_that_is_not_one(tmp_path, monkeypatch, capsys):
    (tmp_path / "notest.py").write_text("class NotEst:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "notest", raising=False)
    assert main(["report", "--out", str(tmp_path), "--suite", "notest:NotEst"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "is not a suite" in err, err


def test_a_suite_of_ones_own_runs(tmp_path, monkeypatch, capsys):
    """A plug-in suite grid (a dict with a study and a model) is still accepted by --suite module:Attr."""
    (tmp_path / "mysuite.py").write_text(textwrap.dedent("""
        TINY = dict(study="gmm", model="gmm", estimators=("ww",), particles=(2,), seeds=1, iterations=2,
                    eval_every=1, batch_size=10, lr=1e-3, description="my own suite")
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mysuite", raising=False)
    assert main(["--suite", "mysuite:TINY", "--dry-run", "--out", str(tmp_path / "out")]) == 0
    assert "1 cells" in capsys.readouterr().out


# -- item 2: reading a store imports nothing it names ----------------------------------------------------------


def write_store_naming(folder, study: str, model: str, estimator: str, label: str) -> None:
    """A schema-1 store (read through the in-memory upgrade, which fills the settings columns from each cell's
    configuration) holding a done cell of ``study`` with the given names (two seeds, a few metric rows) and a
    failed one."""
    conn = sqlite3.connect(os.path.join(folder, "results.sqlite"))
    conn.executescript(SCHEMA_1)
    config = {"model": model, "estimator": estimator, "particles": 2, "iterations": 4, "eval_every": 2,
              "model_options": {"note": label}, "estimator_options": {"note": label}}
    conn.execute("INSERT INTO cells VALUES ('k', ?, ?, ?, ?, 2, '[0, 1]', ?, 'done', 1, 0.1, 'cpu', 'm', "
                 "'2026-01-02T10:00:00+00:00')", (study, model, estimator, label, json.dumps(config)))
    conn.execute("INSERT INTO cells VALUES ('f', ?, ?, ?, ?, 3, '[0, 1]', ?, 'failed', 1, 0.1, 'cpu', 'm', "
                 "'2026-01-02T10:00:00+00:00')", (study, model, estimator, label, json.dumps(config)))
    conn.executemany("INSERT INTO metrics VALUES ('k', ?, ?, 'model_error', ?)",
                     [(s, it, 0.5 + 0.1 * s - 0.01 * it) for s in (0, 1) for it in (0, 2, 4)])
    conn.commit()
    conn.close()


def test_report_and_dry_run_of_a_store_import_nothing_it_names(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "MARKER"
    write_store_naming(str(tmp_path), "helper:X", "helper:X", "helper:X", "helper:X")
    (tmp_path / "helper.py").write_text(f"open({str(marker)!r}, 'w').close()\nX = None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "helper", raising=False)
    monkeypatch.setattr("estibench.reports.plotstyle.save", quick_save)
    assert main(["report", "--out", "."]) == 0, capsys.readouterr().err
    assert not marker.exists()
    assert "helper:X" in open("report.md", encoding="utf-8").read()
    assert main(["--dry-run", "--out", ".", "--estimators", "ww", "--particles", "2"]) == 0
    assert not marker.exists()
    assert str(tmp_path) not in sys.path and "helper" not in sys.modules
    # a name typed on the command line is not looked up in the current folder either, and the line says so
    assert main(["--dry-run", "--out", ".", "--estimators", "helper:X"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the current folder is not searched" in err and "PYTHONPATH=." in err, err
    assert not marker.exists()


def test_reports_read_names_without_importing_them(monkeypatch):
    """The report code's name lookups (display names, docstrings, study pages) never import a module."""
    from estibench import estimators, studies
    from estibench.models.registry import Registry
    from estibench.reports import generic, index, site, summary, tables

    def refuse(spec):
        raise AssertionError(f"imported {spec}")
    monkeypatch.setattr("estibench.models.registry.import_path", refuse)
    assert estimators.REGISTRY.known("ww") is not None and estimators.REGISTRY.known("nope:X") is None
    assert isinstance(Registry("thing").known("os:getcwd"), type(None))
    assert tables.display_name("nope:X") == "nope:X" and tables.pretty_label("nope:X[a=1]") == "nope:X[a=1]"
    assert index.headline_of("nope:X") is None
    assert summary.study_blurb(summary.live_cells(None), "a description", site._own_description("nope:X")).endswith("a description.")
    assert site._registered_page("nope:X") is generic.generic_sections
    assert studies.REGISTRY.known("nope:X") is None


# -- item 1: no live markup from labels and options --------------------------------------------------------------
HOSTILE = ['[x](#"tabindex="1"autofocus/onfocus="alert(1))', "<script>alert(1)</script>",
           "[x](javascript:alert(1))", "<img src=x onerror=alert(1)>", "`a`<b onmouseover=alert(1)>`c`",
           "[y](JaVa\tScRiPt:alert(1))", "**[z](data:text/html,<script>alert(1)</script>)**", "x &#60;i&#62; ``y",
           "[r]: javascript:alert(1)", "&lt;script&gt;"]
SAFE = re.compile(r"(?i)^(?:https?:|mailto:|data:,$|[^:]*$|[^:]*[/?#])")


def safe(url: str) -> bool:
    """Relative (a path, #fragment), http(s) or mailto, read as a browser does (no whitespace or control chars)."""
    return bool(SAFE.match(re.sub(r"[\x00-\x20\x7f]", "", url)))


class Attributes(HTMLParser):
    """Every element and attribute of a page: no script-bearing element, no event handler, no unsafe link."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "iframe", "object", "embed", "img") and not (tag == "img" and dict(attrs).get("src", "")
                                                                          .endswith(".png")):
            self.problems.append(f"<{tag} {attrs}>")
        for k, v in attrs:
            if k.startswith("on") or k in ("srcdoc", "autofocus", "tabindex"):
                self.problems.append(f"<{tag} {k}={v!r}>")
            if k in ("href", "src", "action", "formaction") and v is not None and not safe(v):
                self.problems.append(f"<{tag} {k}={v!r}>")

    handle_startendtag = handle_starttag


def outside_code(markdown: str) -> str:
    """Markdown without fenced blocks and code spans (a run of n backticks to the next run of exactly n on its
    line), escaped characters blanked first."""
    text = re.sub(r"\\.", "_", markdown)
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"(?<!`)(`+)(?!`)[^\n]*?(?<!`)\1(?!`)", "", text)


def hostile_store(folder):
    from estibench.harness.runner import Cell
    from estibench.harness.store import Store

    store = Store(folder)
    note = " ".join(HOSTILE)
    run = store.start_run(started_at="2026-01-02T10:00:00+00:00", command="run_all.py " + note,
                          git_commit="`abc`<script>alert(1)</script>", machine=HOSTILE[3], backend="joblib",
                          jobs=1, cells_total=4, versions={"torch": HOSTILE[1]})
    for i, status in enumerate(("done", "diverged", "failed")):
        cell = Cell(study="gmm", model="gmm", estimator="ww", particles=2 + i, seeds=(0, 1), iterations=4,
                    eval_every=2, device="cpu", estimator_options={"note": note}, model_options={"note": note})
        rows = [] if status == "failed" else [(s, it, m, 0.5 + 0.1 * s - 0.01 * it) for s in (0, 1)
                                              for it in (0, 2, 4) for m in ("model_error", "log_px")]
        store.write_cell(cell, rows, 1.0, sec_per_iter=0.01, device=HOSTILE[1], machine=HOSTILE[3],
                         finished_at="2026-01-02T10:01:00+00:00", status=status,
                         **({"diverged_at": 4} if status == "diverged" else {}),
                         **({"error": "Traceback\n" + note} if status == "failed" else {}))
    toy = Cell(study="toy" + HOSTILE[1], model="gmm" + HOSTILE[0], estimator="ww" + HOSTILE[2], particles=2,
               seeds=(0, 1), iterations=4, eval_every=2, device="cpu", estimator_options={"note": note})
    store.write_cell(toy, [(s, it, "log_px" + HOSTILE[3], -5.0 + it + s) for s in (0, 1) for it in (0, 2, 4)], 1.0,
                     sec_per_iter=0.01, device="cpu", machine="m", finished_at="2026-01-02T10:01:00+00:00")
    store.finish_run(run, finished_at="2026-01-02T10:02:00+00:00", cells_run=4, wall_s=3.0)
    return store


def quick_save(fig, path, dpi=100):
    """plotstyle.save without drawing (a figure is an image: no label in it can be markup): a 1-pixel PNG."""
    import matplotlib.pyplot as plt
    import numpy as np
    plt.close(fig)
    plt.imsave(path, np.zeros((1, 1, 3)))
    return path


def test_hostile_labels_and_options_render_as_text(tmp_path, monkeypatch, capsys):
    """Labels, options, model names, metric names, study names, commands, commits, machines, devices, versions,
    tracebacks and the --note carry markup; every HTML page parses to no script, no event handler, no unsafe link
    (and no ``on…=`` outside a quoted attribute value), every report.md to no raw HTML outside code but our own
    ``<details>``, no entity and no link of an unsafe scheme."""
    monkeypatch.setattr("estibench.reports.plotstyle.save", quick_save)
    folder = str(tmp_path)
    hostile_store(folder).close()
    assert main(["report", "--out", folder, "--note", " ".join(HOSTILE)]) == 0, capsys.readouterr().err
    pages = glob.glob(os.path.join(folder, "**", "*.html"), recursive=True)
    assert len(pages) >= 3
    for page in pages:
        text = open(page, encoding="utf-8").read()
        checker = Attributes()
        checker.feed(text)
        checker.close()
        assert not checker.problems, (page, checker.problems)
        tags = [re.sub(r'"[^"]*"', '""', t) for t in re.findall(r"<[^>]*>", text)]
        assert not [t for t in tags if re.search(r"(?i)[\s/]on\w+\s*=", t)], page
        assert "<script" not in text.lower() and 'href="javascript:' not in text.lower(), page
    assert "alert(1)" in open(os.path.join(folder, "gmm", "index.html"), encoding="utf-8").read()  # shown as text
    mds = glob.glob(os.path.join(folder, "**", "*.md"), recursive=True)
    assert len(mds) >= 3
    for md in mds:
        text = outside_code(open(md, encoding="utf-8").read())
        assert "alert(1)" in text, md
        raw = re.findall(r"<[^>]*>?", text)
        assert set(raw) <= {"<details>", "</details>", "<summary>", "</summary>"}, (md, raw)
        markdown = re.sub(r"<summary>.*?</summary>", "", text)  # an HTML block: its text is escaped HTML
        assert not re.search(r"&#|&[A-Za-z]+;(?<!&amp;)", markdown.replace("&lt;", "").replace("&gt;", "")), md
        for target in re.findall(r"\]\s*[(:]\s*<?([^)>\n]*)", markdown):
            assert safe(target), (md, target)
