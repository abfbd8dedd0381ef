"""The training step's speed contracts (issue 13): no host synchronisation in a step, the compile option,
peak memory per cell.  Speed itself is measured by the benchmarks (benchmarks/), never by a timed test."""
from __future__ import annotations

import pytest
import torch

from estibench import estimators
from estibench.harness import runner
from estibench.harness.runner import Cell, TrainingStep, build, make_optimiser, train_cell
from estibench.studies import TASKS
from estibench.estimators.base import IncompatibleError

#: (study, model, model options, K of the multi-particle estimators): one fixture per latent kind the studies
#: train (categorical GMM, layered Bernoulli SBN, RBM-prior VAE, real-valued Gaussian VAE); AIR's structured
#: latents have their own step check (tests/test_air.py)
FIXTURES = [("gmm", "gmm", {}, 3), ("sbn", "sbn_tiny", {}, 3), ("rbm", "rbm_vae_tiny", {}, 3),
            ("vae", "gaussian_vae", {}, 3)]
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


def _cell(study, model, model_options, estimator, K):
    return Cell(study=study, model=model, estimator=estimator, particles=K, seeds=(0, 1), iterations=10,
                model_options=dict(model_options), batch_size=8, eval_every=10, device="cpu")


def _pairs():
    for study, model, options, K in FIXTURES:
        probe = runner.build_model(model, seeds=(0,), **options)
        for name in estimators.names():
            est = estimators.get(name)
            for k in (K, 1):
                try:
                    est.check(probe, k)
                except IncompatibleError:
                    continue
                yield pytest.param(study, model, options, name, k, id=f"{model}-{name}-K{k}")
                break


class _HostReads:
    """Counts every Tensor method that copies a value to Python while active (monkeypatched methods)."""

    def __init__(self, monkeypatch):
        self.calls, self.active = [], False
        for method in HOST_READS:
            original = getattr(torch.Tensor, method)

            def counted(tensor, *a, _original=original, _method=method, **k):
                if self.active:
                    self.calls.append(_method)
                return _original(tensor, *a, **k)
            monkeypatch.setattr(torch.Tensor, method, counted)


@pytest.mark.parametrize("study,model_name,options,name,K", list(_pairs()))
def test_a_training_step_never_reads_a_tensor_back_to_the_host(study, model_name, options, name, K, monkeypatch):
    """CUDA-free check that the runner's training step (harness.runner.TrainingStep: schedules, the task's
    training batch, the estimator's gradients, the finiteness bookkeeping, the task's trajectory hook) calls no
    Tensor method that copies a value to the host (item, tolist, cpu, numpy, bool/int/float/index conversion):
    on a GPU each would wait for the device.  Every registered estimator on every study fixture it accepts,
    three steps.  Adam's step is left out: its step counters are host tensors by design (torch's
    non-capturable Adam), so reading them does not wait for the device."""
    torch.manual_seed(0)
    cell = _cell(study, model_name, options, name, K)
    model, est = build(cell, torch.device("cpu"))
    task = TASKS[study](model, cell)
    params, own = list(model.parameters()), list(est.parameters())
    optimiser = make_optimiser(params, cell.lr, own, est.own_lr_multiplier, cell.optimiser)
    step = TrainingStep(model, est, task, K, cell.iterations, optimiser, params + own)
    reads = _HostReads(monkeypatch)
    adam_step = optimiser.step

    def quiet_step(*a, **k):
        reads.active = False
        try:
            return adam_step(*a, **k)
        finally:
            reads.active = True
    optimiser.step = quiet_step
    for it in (1, 2, 3):
        reads.active = True
        step(it)
        reads.active = False
    assert reads.calls == [], sorted(set(reads.calls))
    assert bool((step.first_bad == -1).all())


def test_the_finiteness_bookkeeping_finds_the_first_bad_iteration_per_replicate():
    """A NaN in one replicate's slice of one gradient tensor (or its objective) marks that replicate only."""
    R = 3
    grads = [torch.zeros(R, 4, 2), torch.zeros(R, 5)]
    objective = torch.zeros(R)
    assert runner._nonfinite_per_replicate(objective, grads, R).tolist() == [False, False, False]
    grads[0][1, 2, 1] = float("nan")
    objective[2] = float("inf")
    assert runner._nonfinite_per_replicate(objective, grads, R).tolist() == [False, True, True]


def test_every_cell_records_its_own_peak_memory(tmp_path):
    """The runner records peak_memory_mb for every cell at its last iteration, and the window starts with the
    cell: a 512 MiB tensor allocated and freed before the cell does not count (Linux, where
    /proc/self/clear_refs resets the peak RSS)."""
    big = torch.ones(2 ** 27)  # 512 MiB, returned to the OS when freed (mmap)
    big.add_(1)
    before = runner.peak_memory_mb(torch.device("cpu"))
    del big
    cell = Cell(study="gmm", model="gmm", estimator="ww", particles=2, seeds=(0,), iterations=2, eval_every=2,
                device="cpu", study_options={"test_points": 20, "exact_samples": 2, "grad_std_samples": 2})
    result = train_cell(cell, TASKS["gmm"])
    peaks = [r for r in result.rows if r[2] == "peak_memory_mb"]
    assert [(s, it) for s, it, _, _ in peaks] == [(0, 2)]
    assert before >= 512
    if runner.reset_peak_memory(torch.device("cpu")):
        assert 0 < peaks[0][3] < before - 256, (peaks[0][3], before)
    else:
        assert 0 < peaks[0][3] <= before


def test_compile_refuses_second_order_estimators_and_unknown_modes():
    assert runner.compile_refusal(estimators.get("relax"), "default") is not None
    assert runner.compile_refusal(estimators.get("rebar"), "default") is not None
    assert runner.compile_refusal(estimators.get("reinforce"), "default") is None
    assert "unknown compile mode" in runner.compile_refusal(estimators.get("reinforce"), "fast")
    eager = Cell(study="gmm", model="gmm", estimator="ww", particles=2, seeds=(0,), iterations=2)
    compiled = Cell(study="gmm", model="gmm", estimator="ww", particles=2, seeds=(0,), iterations=2,
                    compile="default")
    assert "compile" not in eager.config() and compiled.config()["compile"] == "default"
    assert compiled.key() != eager.key()


def test_a_compiled_step_is_the_eager_step_up_to_rounding():
    """``--compile``: torch.compile of the surrogate draws its random numbers through eager torch's generator
    (inductor's fallback_random), so from the same seed the compiled and the eager step see the same particles:
    the first step's gradients agree to float32 rounding, and so do the training objectives of three steps
    (REINFORCE on the GMM, K = 3, R = 2; one compilation, ~10 s on a CPU).  Parameters are not compared: Adam's
    first steps move a parameter by about ±lr whatever the size of its gradient, so rounding-level differences in
    a near-zero gradient can flip them."""
    out = {}
    for mode in ("off", "default"):
        torch.manual_seed(0)
        cell = _cell("gmm", "gmm", {}, "reinforce", 3)
        cell.compile = mode
        model, est = build(cell, torch.device("cpu"))
        task = TASKS["gmm"](model, cell)
        params = list(model.parameters())
        optimiser = make_optimiser(params, cell.lr)
        step = TrainingStep(model, est, task, 3, cell.iterations, optimiser, params, compile=mode)
        torch.manual_seed(1)
        grads, _, _ = est.gradients(model, task.train_batch(), 3)
        objectives = []
        for it in (1, 2, 3):
            step(it)
            objectives.append(step.objective_sum.clone())
        out[mode] = (torch.stack(objectives), grads)
    assert torch.allclose(out["off"][0], out["default"][0], rtol=1e-5, atol=1e-4)
    for a, b in zip(out["off"][1], out["default"][1]):  # relative to each tensor's norm: the score-function terms
        # multiply the bound (about −800 here) by ∇ log q, so its rounding moves near-zero entries relatively more
        assert float((a - b).norm()) <= 1e-5 * float(a.norm()) + 1e-6, (float((a - b).norm()), float(a.norm()))


def test_unknown_options_are_still_refused_after_torch_compile_has_run():
    """torch.compile replaces ``nn.Module.__init__`` by a wrapper of its own; the option check must still see
    that an estimator without an ``__init__`` of its own takes no options (once it did not, and the factory's
    raw TypeError reached the user)."""
    torch.compile(lambda x: x * 2)(torch.ones(3))
    with pytest.raises(TypeError, match="has no option 'delta'"):
        estimators.REGISTRY.get("ww", delta=0.1)
    with pytest.raises(TypeError, match="has no option 'bogus'"):
        estimators.REGISTRY.get("rebar", bogus=1)
