"""One distribution, one namespace: the wheel (not an editable install) installs only ``estibench``.

Builds the wheel from this checkout, installs it with ``--no-deps`` into a fresh virtual
environment whose only view of the dependencies (torch, pandas, ...) is a ``.pth`` line pointing
at this interpreter's site-packages (so the editable install of this checkout is *not* visible:
``.pth`` files inside those folders are not processed), and, from an empty folder, imports the
public API, runs one tiny cell and the console command, and shows that ``import models`` fails.
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "results", "*.egg-info", "__pycache__", "*.sqlite*", "*.gz", "*.png", ".asv"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)]
    done = subprocess.run(build[:5] + ["--no-build-isolation"] + build[5:], capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:  # no recent setuptools here: let pip fetch the build backend
        done = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = [p for p in out.iterdir() if p.suffix == ".whl"]
    return path


def test_the_wheel_has_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"estibench"}, tops
    for sub in ("estimators", "models", "harness", "reports", "data", "studies", "cli"):
        assert f"estibench/{sub}/__init__.py" in names, sub
    assert not any(n.startswith(("estibench/tests/", "estibench/results/")) for n in names)


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    env = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = str(env / "bin" / "python")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(purelib, "_estibench_test_deps.pth"), "w") as f:
        f.write("\n".join(sorted(deps)) + "\n")
    return env


def run_in(venv, tmp_path, code):
    work = tmp_path / "elsewhere"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(venv / "bin" / "python"), "-c", textwrap.dedent(code)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_installed_package_imports_and_runs_a_tiny_cell(venv, tmp_path):
    done = run_in(venv, tmp_path, f"""
        import os, estibench
        from estibench import estimators, models, harness, reports, data
        from estibench.harness import Cell, train_cell
        from estibench.studies import TASKS
        for m in (estibench, estimators, models, harness, reports, data):
            assert not m.__file__.startswith({ROOT!r}), m.__file__
            assert os.sep + "site-packages" + os.sep in m.__file__, m.__file__
        cell = Cell(study="gmm", model="gmm", estimator="ww", particles=2, seeds=(0,), iterations=4,
                    eval_every=2, study_options={{"test_points": 5, "grad_std_samples": 2, "exact_samples": 2}},
                    device="cpu")
        result = train_cell(cell, TASKS["gmm"])
        assert any(m == "model_error" for _, _, m, _ in result.rows)
        for name in ("models", "estimators", "harness", "reports", "estidata", "run_all", "cli"):
            try:
                __import__(name)
            except ModuleNotFoundError:
                pass
            else:
                raise AssertionError(name + " is importable at the top level")
        print("ok")
        """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_the_console_command_has_the_same_flags_as_run_all(venv, tmp_path):
    done = subprocess.run([str(venv / "bin" / "estibench"), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: estibench")
    mine = subprocess.run([sys.executable, os.path.join(ROOT, "run_all.py"), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    flags = lambda text: set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))
    assert mine.returncode == 0 and len(flags(mine.stdout)) > 10
    assert flags(mine.stdout) == flags(done.stdout)
    bad = subprocess.run([str(venv / "bin" / "estibench"), "--suite", "nope"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("estibench: error:")


def test_a_name_maps_to_its_folder_by_the_install_alone():
    """No path is added at run time: ``estibench`` has one folder on its ``__path__`` (the editable install maps
    ``estibench.X`` onto ``X/``), each subpackage is its top-level folder, and ``run_all.py`` without the install
    (``python -S``: no site-packages, hence no mapping) says so in one line with exit status 2."""
    import estibench
    from estibench import models, studies
    from estibench.studies.gmm import task

    assert [os.path.realpath(p) for p in estibench.__path__] == [os.path.realpath(os.path.join(ROOT, "estibench"))]
    assert os.path.realpath(models.__file__) == os.path.realpath(os.path.join(ROOT, "models", "__init__.py"))
    assert os.path.realpath(studies.__file__) == os.path.realpath(os.path.join(ROOT, "studies", "__init__.py"))
    assert os.path.realpath(task.__file__) == os.path.realpath(os.path.join(ROOT, "studies", "gmm", "task.py"))
    done = subprocess.run([sys.executable, "-S", "run_all.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("run_all.py: estibench.cli cannot be imported: install this checkout first "
                           "(pip install -e .)\n")
