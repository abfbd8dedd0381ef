"""What a long run shows outside a terminal (issue 25, part 5): plain progress lines at a bounded rate with an
ETA by estimated work (``harness.sweep.LogProgress``), and one line per failed cell.  Time comes from a fake
clock, so nothing here depends on the machine's speed."""
import functools
import io
import re

import pytest

from estibench import estimators
from estibench.estimators.base import Estimator
from estibench.harness import sweep
from estibench.cli import main
from estibench.harness.runner import Cell, CellResult
from estibench.harness.store import Store
from tqdm import tqdm

TINY = ["--iterations", "4", "--eval-every", "4", "--seeds", "1", "--device", "cpu", "--no-report"]
LINE = re.compile(r"^progress: (\d+)/(\d+) cells finished.*elapsed (\S+), ETA (unknown|\S+)", re.M)


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def seconds(text: str) -> int:
    parts = [int(p) for p in text.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def cell(estimator, k=2, iterations=100):
    return Cell(study="gmm", model="gmm", estimator=estimator, particles=k, seeds=(0,), iterations=iterations)


def test_eta_is_by_estimated_work_counts_cells_in_flight_as_half_done_and_is_unknown_before_any_finishes():
    cells = [cell("ws", 2), cell("relax", 20), cell("ws", 2, iterations=300)]
    work = [sweep.estimated_work(c) for c in cells]
    assert work[1] > 10 * work[0] and work[2] == 3 * work[0]  # cost_hint × (K + 2) × iterations × seeds × batch
    clock, out = FakeClock(), io.StringIO()
    log = sweep.LogProgress(cells, every=0, slots=1, file=out, clock=clock)
    log.dispatched(cells[0])
    clock.t += 50
    assert "ETA unknown" in log.line() and "0/3 cells finished" in log.line() and "1 running" in log.line()
    log.cell_finished(CellResult(cells[0], [], 50.0, 0.5, "cpu"))  # the cheap cell, nothing else started yet
    text = out.getvalue()
    assert "1/3 cells finished" in text
    eta = seconds(LINE.search(text).group(4))
    assert eta == int(50 * (work[1] + work[2]) / work[0])  # 810 s; counting cells would say 50 × 2 = 100 s
    # cells dispatched ahead of the workers: only the oldest `slots` of them run, counted half done
    log.dispatched(cells[1])
    log.dispatched(cells[2])
    credited = work[0] + work[1] / 2
    assert "1 running" in log.line()
    assert f"ETA {tqdm.format_interval(50 * (sum(work) - credited) / credited)}" in log.line()
    # a failed cell stops early at an unknown point: its work leaves the total, it is not credited
    log.cell_finished(CellResult(cells[1], [], 1.0, float("nan"), "cpu", status="failed", error="x"))
    assert "2/3 cells finished (1 failed)" in log.line()
    credited = work[0] + work[2] / 2
    assert f"ETA {tqdm.format_interval(50 * (work[0] + work[2] - credited) / credited)}" in log.line()


def test_a_diverged_cell_counts_its_work_up_to_the_diverging_iteration():
    cells = [cell("ws"), cell("ww")]
    clock = FakeClock()
    log = sweep.LogProgress(cells, every=0, slots=1, file=io.StringIO(), clock=clock)
    log.cell_finished(CellResult(cells[0], [], 1.0, 0.01, "cpu", status="diverged", diverged_at=25))
    w0, w1 = (sweep.estimated_work(c) for c in cells)
    assert log.done_work == pytest.approx(w0 / 4) and log.total_work == pytest.approx(w0 / 4 + w1)


def test_rate_limit_bounds_the_lines_whatever_calls_tick():
    clock, out = FakeClock(), io.StringIO()
    log = sweep.LogProgress([cell("ws")], every=30, file=out, clock=clock)
    printed = []
    for _ in range(200):  # a tick every 1.5 s for 300 s (as the heartbeat and finished cells would call it)
        clock.t += 1.5
        printed.append(log.tick())
    assert sum(printed) == 10  # at 30, 60, ..., 300 s: never two within 30 s, none before 30 s
    assert out.getvalue().count("\n") == 10
    times = [seconds(m.group(3)) for m in LINE.finditer(out.getvalue())]
    assert times == list(range(30, 301, 30))


@pytest.fixture
def fake_time(monkeypatch):
    """The sweep's progress lines run on a fake clock that each cell advances by 7 s (jobs = 1 runs the cells in
    this process through ``sweep.run_one``)."""
    clock = FakeClock()
    real_run_one = sweep.run_one

    def run_one(c, *args, **kwargs):
        clock.t += 7
        return real_run_one(c, *args, **kwargs)

    monkeypatch.setattr(sweep, "run_one", run_one)
    monkeypatch.setattr(sweep, "LogProgress", functools.partial(sweep.LogProgress, clock=clock))
    return clock


ARGS = ["--estimators", "ws,relax,ww", "--particles", "2,5"]


def test_log_mode_prints_done_total_and_eta_by_work_for_every_finished_cell_when_unlimited(
        tmp_path, capsys, monkeypatch, fake_time):
    monkeypatch.setenv(sweep.PROGRESS_ENV, "0")
    assert main(ARGS + TINY + ["--out", str(tmp_path)]) == 0  # capsys: stdout is not a terminal
    text = capsys.readouterr().out
    lines = LINE.findall(text)
    assert [(int(d), int(t)) for d, t, _, _ in lines] == [(i, 6) for i in range(1, 7)]
    assert [seconds(e) for _, _, e, _ in lines] == [7 * i for i in range(1, 7)]
    # the first ETA follows the estimated work of the cell that finished (the costliest of K = 2: relax)
    from estibench.cli.run import make_cells, parser
    cells = sweep.dispatch_order(make_cells(parser().parse_args(ARGS + TINY)))
    work = [sweep.estimated_work(c) for c in cells]
    assert cells[0].estimator == "relax"
    assert lines[0][3] == tqdm.format_interval(7 * (sum(work) - work[0]) / work[0])
    assert lines[-1][3] == "00:00"


def test_log_mode_lines_are_rate_limited(tmp_path, capsys, monkeypatch, fake_time):
    monkeypatch.setenv(sweep.PROGRESS_ENV, "20")
    assert main(ARGS + TINY + ["--out", str(tmp_path)]) == 0
    lines = LINE.findall(capsys.readouterr().out)
    times = [seconds(e) for _, _, e, _ in lines]
    assert 1 <= len(times) <= 42 // 20  # 6 cells × 7 fake seconds, a line at most every 20
    assert times[0] >= 20 and all(b - a >= 20 for a, b in zip(times, times[1:]))
    assert all(eta != "unknown" for _, _, _, eta in lines)


def test_no_progress_lines_when_off(tmp_path, capsys, monkeypatch, fake_time):
    monkeypatch.setenv(sweep.PROGRESS_ENV, "off")
    assert main(["--estimators", "ws,ww", "--particles", "2"] + TINY + ["--out", str(tmp_path)]) == 0
    assert "progress:" not in capsys.readouterr().out


def test_progress_interval_reads_the_environment():
    assert sweep.progress_interval({}) == sweep.PROGRESS_EVERY_S
    assert sweep.progress_interval({sweep.PROGRESS_ENV: "5"}) == 5.0
    assert sweep.progress_interval({sweep.PROGRESS_ENV: "off"}) is None
    with pytest.warns(UserWarning, match="not a number"):
        assert sweep.progress_interval({sweep.PROGRESS_ENV: "soon"}) == sweep.PROGRESS_EVERY_S


class RaisesAtOnce(Estimator):
    """Test-only estimator: raises at once (a message of two lines)."""
    latent_types = frozenset({"categorical"})

    def surrogate(self, model, x, num_particles):
        raise RuntimeError("boom: a bug in an estimator\nsecond line of the message")


@pytest.fixture
def raising():
    registry = estimators.REGISTRY
    saved = dict(registry._entries)
    registry.register("raises_at_once")(RaisesAtOnce)
    yield
    registry._entries.clear()
    registry._entries.update(saved)


def test_a_failed_cell_prints_one_line_with_its_cell_and_exception_and_where_the_traceback_is(
        tmp_path, capsys, raising):
    out = str(tmp_path)
    assert main(["--estimators", "ww,raises_at_once", "--particles", "2"] + TINY + ["--out", out]) == 1
    text = capsys.readouterr().out
    failed = [line for line in text.splitlines() if line.startswith("cell failed:")]
    assert failed == ["cell failed: gmm raises_at_once K=2 seeds=1: "
                      "RuntimeError: boom: a bug in an estimator second line of the message"]
    assert "Traceback" not in text  # the whole traceback stays in the store
    assert "1 failed cell(s)" in text and "index.html" in text and f"report --out {out}" in text
    assert "Traceback" in Store(out).cells().set_index("estimator").loc["raises_at_once", "error"]
    # where the line points: the report's index page carries the traceback
    assert main(["report", "--out", out]) == 0
    page = (tmp_path / "index.html").read_text()
    assert "Failed cells" in page and "boom: a bug in an estimator" in page and "Traceback" in page


def test_error_summary_is_the_last_exception_line():
    tb = ("Traceback (most recent call last):\n  File \"a.py\", line 1, in f\n    g()\n"
          "ValueError: first\n\nDuring handling of the above exception, another exception occurred:\n\n"
          "Traceback (most recent call last):\n  File \"b.py\", line 2, in h\n    raise KeyError('k')\n"
          "    ^^^^^^^^^^^^^\nKeyError: 'k'\n")
    assert sweep.error_summary(tb) == "KeyError: 'k'"
    assert sweep.error_summary(None) == "(no traceback recorded)"
    assert sweep.error_summary("x" * 1000).endswith("…")
