"""One distribution, one namespace: the wheel (not an editable install) installs only ``estibench``.

Builds the wheel from this checkout, installs it with ``--no-deps`` into a fresh virtual
environment whose only view of the dependencies (torch, pandas, ...) is a ``.pth`` line pointing
at this interpreter's site-packages (so the editable install of this checkout is *not* visible:
``.pth`` files inside those folders are not processed), and, from an empty folder, imports the
public API, runs one tiny cell and the console command, and shows that ``import models`` fails; the examples
ship as ``estibench.examples`` and the README's commands that name them run from there.
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
    for sub in ("estimators", "models", "harness", "reports", "data", "studies", "cli", "examples"):
        assert f"estibench/{sub}/__init__.py" in names, sub
    examples = sorted(n for n in os.listdir(os.path.join(ROOT, "examples")) if n.endswith(".py"))
    assert len(examples) >= 4 and all(f"estibench/examples/{n}" in names for n in examples), examples
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
        for name in ("models", "estimators", "harness", "reports", "estidata", "run_all", "cli", "examples"):
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


def test_the_readmes_example_commands_run_from_the_installed_examples(venv, tmp_path):
    """From a folder outside the checkout, the examples resolve as ``estibench.examples.…`` from site-packages (the
    top-level ``examples`` does not exist there): ``check`` finds the README's estimator (a bad option, to stop before
    its 20 s of checks: the class's signature was read), a run's ``--dry-run`` plans the README's model with the
    estimators, and ``screen`` runs them on a tiny budget.  The four commands run side by side (10 s on two idle cores)."""
    imports = textwrap.dedent("""
        import estibench.examples.constant_baseline, estibench.examples.ema_baseline, estibench.examples.uniform_gmm
        import os, sys
        for m in ("constant_baseline", "ema_baseline", "uniform_gmm"):
            path = sys.modules["estibench.examples." + m].__file__
            assert os.sep + "site-packages" + os.sep in path and path.endswith(os.path.join("estibench", "examples",
                                                                                          m + ".py")), path
        print("ok")
        """)
    good = "estibench.examples.constant_baseline:ConstantBaseline[baseline=-50.0]"
    model = "estibench.examples.uniform_gmm:UniformGMM"
    estibench = str(venv / "bin" / "estibench")
    commands = {
        "import": [str(venv / "bin" / "python"), "-c", imports],
        "check": [estibench, "check", good.replace("-50.0", "oops")],
        "dry-run": [estibench, "--model", model, "--estimators", f"{good},ww,vimco", "--particles", "2", "--dry-run",
                    "--out", str(tmp_path / "runs")],
        "screen": [estibench, "screen", "--model", model,
                   "--estimators", f"{good},estibench.examples.ema_baseline:EMABaseline",
                   "--draws", "24", "--points", "2", "--steps", "4", "--bootstrap", "50", "--batch-size", "8",
                   "--out", str(tmp_path / "screen")],
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    running = {name: subprocess.Popen(argv, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE) for name, argv in commands.items()}
    out = {name: (p.communicate(timeout=300), p.returncode) for name, p in running.items()}
    (stdout, stderr), status = out["import"]
    assert status == 0 and stdout.strip() == "ok", stderr[-3000:]
    (stdout, stderr), status = out["check"]
    assert status == 2 and stderr == (f"estibench check: error: estimator '{good.split('[')[0]}': option "
                                      f"baseline='oops' is not a finite number\n"), stderr
    (stdout, stderr), status = out["dry-run"]
    assert status == 0 and "3 cells, 0 already finished, 3 would run" in stdout, stderr[-3000:]
    assert all(f"{model} {e} " in stdout for e in (good, "ww", "vimco")), stdout
    (stdout, stderr), status = out["screen"]
    assert status == 0 and "Recommendation for the IWAE bound (target iwae): estibench.examples." in stdout, \
        stderr[-3000:]
    assert (tmp_path / "screen" / "screen.csv").is_file()


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


def test_a_users_three_paths_run_from_the_installed_wheel(venv, tmp_path):
    """From a folder outside the checkout, with the wheel installed: (1) ``estibench.grad`` in a user's own loop
    (five lines: a Bernoulli policy trained by DisARM to switch its bits on); (2) a user's own model (a module in the
    user's folder, built with the adapter) swept by the generic study on a ``.npz`` of the user's (``--model
    mymodel:Tiny --data data.npz``); (3) estibench's checks inside the user's own pytest suite
    (``estibench.testing.parametrize_with_checks`` on the shipped ConstantBaseline, the GMM fixture).  The three run
    side by side."""
    work = tmp_path / "user"
    work.mkdir()
    (work / "loop.py").write_text(textwrap.dedent("""
        import estibench, torch
        logits = torch.zeros(5, requires_grad=True)
        opt = torch.optim.Adam([logits], lr=0.1)
        for _ in range(200):
            q = torch.distributions.Independent(torch.distributions.Bernoulli(logits=logits), 1)
            out = estibench.grad(q, lambda z: z.sum(-1), "disarm")
            opt.zero_grad(); out.loss.backward(); opt.step()
        assert estibench.grad.__module__ == "estibench.estimators.grad"
        assert "site-packages" in estibench.__file__, estibench.__file__
        assert bool((torch.sigmoid(logits) > 0.9).all()), torch.sigmoid(logits)
        print("ok")
        """))
    (work / "test_mine.py").write_text(textwrap.dedent("""
        from estibench.harness.checks import FIXTURES, MIN_DRAWS
        from estibench.testing import parametrize_with_checks

        @parametrize_with_checks(["estibench.examples.constant_baseline:ConstantBaseline[baseline=-50.0]"],
                                 fixtures={"gmm": FIXTURES["gmm"]}, n=MIN_DRAWS)
        def test_estibench_checks(estimator, check):
            check()
        """))
    (work / "mymodel.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from torch.distributions import Bernoulli, Independent
        from estibench.models.adapter import ModulesModel

        class Encoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Linear(6, 3)
            def forward(self, x):
                return Independent(Bernoulli(logits=self.net(x)), 1)

        class Decoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Linear(3, 6)
            def forward(self, z):
                return Independent(Bernoulli(logits=self.net(z)), 1)

        class Prior(nn.Module):
            def __init__(self):
                super().__init__()
                self.logits = nn.Parameter(torch.zeros(3))
            def forward(self):
                return Independent(Bernoulli(logits=self.logits), 1)

        class Tiny(ModulesModel):  # a user's own VAE, through the adapter
            latent_kind = "bernoulli"
            def __init__(self, seeds=(0,)):
                super().__init__(encoder=Encoder, decoder=Decoder, prior=Prior, latent="bernoulli",
                                 latent_shape=(3,), obs_shape=(6,), seeds=seeds)
        """))
    import numpy as np
    np.savez(work / "data.npz", train=(np.random.default_rng(0).random((64, 6)) < 0.3).astype("float32"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    python = str(venv / "bin" / "python")
    commands = {
        "loop": [python, "loop.py"],
        "pytest": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "test_mine.py"],
        "sweep": [python, "-m", "estibench", "--suite", "generic", "--model", "mymodel:Tiny", "--data", "data.npz",
                  "--estimators", "vimco,rloo", "--particles", "2", "--seeds", "1", "--iterations", "3",
                  "--out", str(tmp_path / "sweep")],
    }
    running = {name: subprocess.Popen(argv, cwd=work, env=env, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE) for name, argv in commands.items()}
    out = {name: (p.communicate(timeout=300), p.returncode) for name, p in running.items()}
    (stdout, stderr), status = out["loop"]
    assert status == 0 and stdout.strip() == "ok", stderr[-3000:]
    (stdout, stderr), status = out["pytest"]
    assert status == 0 and re.search(r"\b\d+ passed", stdout) and "failed" not in stdout, stdout[-3000:]
    (stdout, stderr), status = out["sweep"]
    assert status == 0, stderr[-3000:]
    assert (tmp_path / "sweep" / "results.sqlite").is_file() and (tmp_path / "sweep" / "index.html").is_file()
