"""The benchmark suite stays runnable, and batched gradient draws match the loop's.

* One asv benchmark (``GMMStep.time_step`` for REINFORCE at K = 2) runs through asv in quick
  mode, in the current interpreter (``-E existing:same``), with a throw-away machine file,
  configuration and results folder; asv's discovery imports every module under ``benchmarks/``
  (the suites and the speed scripts), so an import error anywhere fails the test.  Skipped when
  asv (``pip install -e ".[test]"`` or ``.[bench]``) or a git checkout is missing.
* ``gradient_draws_batched`` (harness/gradients.py): with ``chunk=1`` it consumes the random
  stream exactly as the loop does, so its draws are the loop's numbers (layout, signs and the
  replication of the model and estimator state are exact); with larger chunks its draws have
  the loop's distribution: per coordinate, a two-sample z-test of the means and a Brown–Forsythe
  test of the variances, each Bonferroni-corrected over coordinates at a family false-alarm
  rate of 1e-3 (fixed seeds, n = 600 draws from each side).
"""
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from estibench import estimators
from estibench import models
from estibench.harness.gradients import gradient_draws, gradient_draws_batched, replicate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILY_ALPHA = 1e-3


# -- asv --------------------------------------------------------------------------------------------
def _head():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def test_asv_runs_one_benchmark(tmp_path):
    pytest.importorskip("asv", reason="asv is not installed (pip install -e '.[test]' or '.[bench]')")
    head = _head()
    if head is None:
        pytest.skip("asv needs a git checkout (git rev-parse HEAD failed)")
    conf = json.load(open(os.path.join(ROOT, "asv.conf.json")))
    conf.update(repo=ROOT, benchmark_dir=os.path.join(ROOT, "benchmarks"), env_dir=str(tmp_path / "env"),
                results_dir=str(tmp_path / "results"), html_dir=str(tmp_path / "html"))
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps(conf))
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=ROOT)  # asv's machine file lives in $HOME

    def asv(*args, timeout=120):
        proc = subprocess.run([sys.executable, "-m", "asv", *args, "--config", str(config)], cwd=str(tmp_path),
                              env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"asv {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    asv("machine", "--yes", "--machine", "pytest")
    out = asv("run", "-E", "existing:same", "--quick", "--machine", "pytest", "--set-commit-hash", head,
              "--bench", r"GMMStep\.time_step\('reinforce', 2\)")
    assert "Traceback" not in out, out[-3000:]
    discovered = json.load(open(tmp_path / "results" / "benchmarks.json"))
    for name in ("bench_gmm.GMMStep.time_step", "bench_gmm.GMMStep.peakmem_step",
                 "bench_gmm.GMMVariance.time_gradient_draws", "bench_gmm.GMMVariance.track_grad_var_phi",
                 "bench_sbn.SBNStep.time_step", "bench_sbn.SBNStep.peakmem_step",
                 "bench_sbn.SBNVariance.time_gradient_draws", "bench_sbn.SBNVariance.track_grad_var_phi",
                 "bench_sbn.CategoricalSBNStep.time_step"):
        assert name in discovered, f"{name} missing from asv's discovery: {sorted(discovered)}"
    assert "reinforce" in str(discovered["bench_sbn.SBNStep.time_step"]["params"])
    for name in ("rloo", "arms", "double_cv", "rodeo", "zgr"):  # every new estimator's step is benchmarked
        assert repr(name) in str(discovered["bench_sbn.SBNStep.time_step"]["params"]), name
    for name in ("indecater", "categorical_disarm", "unordered_set", "gumbel_rao", "gst", "reinmax"):
        assert repr(name) in str(discovered["bench_sbn.CategoricalSBNStep.time_step"]["params"]), name
    files = [f for f in (tmp_path / "results" / "pytest").iterdir() if f.name != "machine.json"]
    assert len(files) == 1
    result = json.load(open(files[0]))["results"]["bench_gmm.GMMStep.time_step"]
    values = [v for v in result[0] if v is not None and not (isinstance(v, float) and math.isnan(v))]
    assert len(values) == 1 and 0 < values[0] < 10, result


# -- batched draws ------------------------------------------------------------------------------------
def _gmm(seeds=(0, 1)):
    model = models.get("gmm", seeds=seeds)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        x = model.true_model().sample(6)[1]
    return model, x


def _tiny_sbn(seeds=(0, 1)):
    model = models.get("sbn_tiny", seeds=seeds, train_mean=torch.full((49,), 0.2))  # 49 pixels, 8 bits
    with torch.random.fork_rng():
        torch.manual_seed(5)
        x = model.sample(5)[1]
    return model, x


def _bound(name, model, K):
    est = estimators.get(name)
    est.check(model, K)
    return est.bind(model)


CASES = [("gmm", "reinforce", 2), ("gmm", "vimco", 3), ("gmm", "relax", 2), ("gmm", "concrete", 2),
         ("tiny", "nvil", 1), ("tiny", "rebar", 2)]
MAKERS = {"gmm": _gmm, "tiny": _tiny_sbn}


@pytest.mark.parametrize("which", ["guide", "generative"])
@pytest.mark.parametrize("kind,name,K", CASES)
def test_batched_draws_with_chunk_one_are_the_loops(kind, name, K, which):
    model, x = MAKERS[kind]()
    est = _bound(name, model, K)
    with torch.random.fork_rng():
        torch.manual_seed(11)
        loop = gradient_draws(model, est, x, K, 4, which=which)
        torch.manual_seed(11)
        batched = gradient_draws_batched(model, est, x, K, 4, which=which, chunk=1)
    assert batched.shape == loop.shape == (4, model.replicates, loop.shape[-1])
    assert torch.equal(batched, loop)


def test_replicate_copies_state_and_leaves_the_original_alone():
    model, x = _tiny_sbn()
    est = _bound("nvil", model, 1)
    with torch.no_grad():  # give the running statistics non-trivial per-replicate values
        for name, b in est.named_buffers():
            if b.dim() and b.shape[0] == model.replicates:
                b.copy_(torch.arange(b.numel(), dtype=b.dtype).reshape(b.shape) / 7 + 0.5)
    before = {k: v.clone() for k, v in {**model.state_dict(), **est.state_dict()}.items()}
    big, big_est = replicate(model, est, 3)
    assert big.replicates == 3 * model.replicates
    for (k, v), (_, w) in zip(est.state_dict().items(), big_est.state_dict().items()):
        if w.shape != v.shape:
            assert torch.equal(w.reshape(3, *v.shape), v.expand(3, *v.shape)), k
    for (k, v), (_, w) in zip(model.named_parameters(), big.named_parameters()):
        assert torch.equal(w.reshape(3, *v.shape), v.detach().expand(3, *v.shape)), k
    gradient_draws_batched(model, est, x, 1, 7, chunk=3)
    after = {**model.state_dict(), **est.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)


def _same_distribution(a, b, alpha=FAMILY_ALPHA):
    """Per-coordinate means (Welch z) and variances (Brown–Forsythe), Bonferroni over coordinates."""
    from scipy.stats import levene, norm
    a, b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    va, vb = a.var(0), b.var(0)
    live = (va > 1e-12) | (vb > 1e-12)
    dead_ok = torch.allclose(a.mean(0)[~live], b.mean(0)[~live], atol=1e-6)
    D = int(live.sum())
    if D == 0:
        return dead_ok, "no live coordinate"
    a, b, va, vb = a[:, live], b[:, live], va[live], vb[live]
    z = (a.mean(0) - b.mean(0)) / (va / a.shape[0] + vb / b.shape[0]).sqrt()
    z_limit = norm.ppf(1 - alpha / (4 * D))  # two tests per coordinate
    p_var = torch.tensor([levene(a[:, d].numpy(), b[:, d].numpy(), center="median").pvalue for d in range(D)])
    ok = bool(z.abs().max() < z_limit) and bool(p_var.min() > alpha / (2 * D)) and dead_ok
    return ok, f"max |z| {float(z.abs().max()):.2f} (limit {z_limit:.2f}), min variance p {float(p_var.min()):.2e} " \
               f"(limit {alpha / (2 * D):.2e}), D = {D}"


@pytest.mark.parametrize("kind,name,K", [("gmm", "reinforce", 2), ("gmm", "relax", 3), ("tiny", "nvil", 1),
                                         ("tiny", "rebar", 2)])
def test_batched_draws_have_the_loops_distribution(kind, name, K):
    model, x = MAKERS[kind]()
    est = _bound(name, model, K)
    n = 600
    with torch.random.fork_rng():
        torch.manual_seed(2024)
        loop = gradient_draws(model, est, x, K, n)
        torch.manual_seed(2025)
        batched = gradient_draws_batched(model, est, x, K, n, chunk=250)  # three passes, the last partial
    assert batched.shape == loop.shape
    ok, detail = _same_distribution(loop, batched)
    assert ok, detail


# -- before/after workers ---------------------------------------------------------------------------------
def test_a_before_worker_runs_its_own_checkout(tmp_path):
    """``benchmarks/gmm_budget.py`` times an older revision in a worker started with that worktree on
    ``PYTHONPATH``: its ``harness.runner`` must be that worktree's file, not this checkout's (which an editable
    install's import finder or a stray ``sys.path`` entry would hand it, and the table would compare a revision
    with itself)."""
    if _head() is None:
        pytest.skip("needs a git checkout")
    tree = tmp_path / "tree"
    made = subprocess.run(["git", "worktree", "add", "--detach", str(tree), "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    try:
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "_step_worker.py")], cwd=str(tree),
                              env={**os.environ, "PYTHONPATH": str(tree)}, input="where\nquit\n",
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        where = os.path.realpath(proc.stdout.strip())
        assert where.startswith(os.path.realpath(str(tree)) + os.sep), where
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True, timeout=60)


# -- the prepared device check ------------------------------------------------------------------------------
def test_device_check_runs_every_part_on_the_cpu(tmp_path):
    """``benchmarks/device_check.py`` is what a session lent a GPU runs once, with no time to debug it there: every
    part it can run without CUDA (GMM cells through ``train_cell``, SBN steps, AIS, ``--compile``) runs here on the
    CPU against the CPU, tiny, and writes its record; bad input exits with status 2 before any work."""
    sys.path.insert(0, ROOT)
    from benchmarks import device_check
    out = tmp_path / "device.md"
    assert device_check.main(["--device", "cpu", "--iterations", "3", "--particles", "2", "--rounds", "1",
                              "--estimators", "reinforce", "--ais", "20x3", "--out", str(out)]) == 0
    text = out.read_text()
    for section in ("### GMM at a reduced budget", "### SBN training step", "### AIS throughput",
                    "### `--compile` against eager", "### PixelVAE++'s PixelCNN++ decoder", "### Convolutional VAEs at",
                    "### Forward AIS on the conv models' RBM priors"):
        assert section in text, section
    assert re.search(r"^\| reinforce +\| +2 \|", text, re.M) and "Host synchronisation" not in text  # sync: CUDA only
    assert device_check.main(["--parts", "gmm,warp", "--out", str(tmp_path / "x.md")]) == 2
    assert device_check.main(["--device", "cpu", "--ais", "many", "--out", str(tmp_path / "x.md")]) == 2
    assert not (tmp_path / "x.md").exists()
