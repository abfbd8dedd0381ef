"""The hand-written loops of ``benchmarks/handwritten_new.py`` (the speed references of
``benchmarks/step_speed.py --compare hand``) are estibench's ``rodeo``, ``double_cv`` (linear SBN, K = 2) and
``indecater`` (categorical SBN "linear", K = 1), with the same defaults.

``handwritten_new.check(name)`` per estimator, at identical parameters (the harness model's, the estimator's
own parameters set off their start by ``_set_state``, copied into the hand loop) and the fixed batch
``sbn_fixed_batch()``:

* common random numbers (torch seeds 1000, 1001 before each side), in float64: θ, φ and own-parameter
  gradients agree to ‖Δ‖/‖g‖ < 1e-4 per group (measured: ≤ 1e-12) and the objectives to 1e-3 nats
  (float64 since RODEO's own gradients carry ~1e-4–1e-3 relative float32 rounding on either side);
* independent draws in float32 (harness seeds 10000 + i, hand seeds 20000 + i, n = 40 per side, 20 for IndeCateR): two-sample
  z-tests of the means of 6 fixed random projections (N(0, 1), generator seed 20240611 + group) of each
  group's gradient and of the objective, Bonferroni over the statistics of one estimator at 1e-3 / 3, so
  the false-alarm rate of the whole file is at most 1e-3 (seeds fixed: the outcome is deterministic);
* training, in float64: 3 steps of the harness's step (``benchmarks.common.Trainer``) and of the hand loop
  from the same point with common random numbers move every group's parameters alike
  (‖Δ_h − Δ_x‖/‖Δ_h‖ < 1e-3).

About 10 s on one idle core.
"""
import pytest
import torch

from benchmarks.handwritten_new import HANDWRITTEN, check

ALPHA = 1e-3  # family false-alarm rate of this file
#: draws per side; IndeCateR's step costs ~10× the others' (D·C = 200 decoder evaluations per sample)
DRAWS = {"rodeo": 40, "double_cv": 40, "indecater": 20}


@pytest.mark.parametrize("name", list(HANDWRITTEN))
def test_hand_loop_is_the_estimator(name):
    with torch.random.fork_rng():
        r = check(name, draws=DRAWS[name], alpha=ALPHA / len(HANDWRITTEN))
    assert r["parameters"][0] == r["parameters"][1]
    assert all(v < 1e-4 for v in r["tight"].values()), r["tight"]
    assert r["objective_gap"] < 1e-3, r["objective_gap"]
    assert all(v < 1e-3 for v in r["trajectory"].values()), r["trajectory"]
    assert r["max_z"] < r["threshold"], (r["max_z"], r["threshold"], r["z"])
    assert r["passed"]


def test_hand_loops_step():
    """Every loop trains: a few steps move its model's and its own parameters and keep them finite."""
    from benchmarks.common import sbn_data
    data = sbn_data()
    with torch.random.fork_rng():
        for name, cls in HANDWRITTEN.items():
            loop = cls(data.train, data.train_mean)
            before = [p.detach().clone() for p in loop.params]
            for _ in range(2):
                loop()
            assert all(torch.isfinite(p).all() for p in loop.params), name
            assert all(not torch.equal(a, b) for a, b in zip(before, loop.params)), name
