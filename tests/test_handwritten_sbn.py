"""The hand-written SBN loops of ``benchmarks/handwritten_sbn.py`` (the speed references of
``benchmarks/step_speed.py --study sbn --compare hand``) are estibench's estimators of the same names, with the same defaults.

``handwritten_sbn.check(name)`` per estimator, at identical parameters (the harness model's, the
estimator's own state set off its start by ``_set_state``, copied into the hand loop) and the fixed
batch ``sbn_fixed_batch()``:

* common random numbers (torch seeds 1000, 1001 before each side): the θ, φ and own-parameter
  gradients agree to ‖Δ‖/‖g‖ < 1e-4 per group and the objectives to 1e-3 nats (float32 rounding);
* independent draws (harness seeds 10000 + i, hand seeds 20000 + i, n = 80 per side): two-sample
  z-tests of the means of 6 fixed random projections (N(0, 1), generator seed 20240611 + group) of
  each group's gradient and of the objective, Bonferroni over the statistics of one estimator at
  1e-3 / 8, so the false-alarm rate of the whole file is at most 1e-3 (seeds fixed: the outcome is
  deterministic);
* training: 3 steps of the harness's step (``benchmarks.common.Trainer``: ``make_optimiser``, own
  learning-rate multiplier, running statistics) and of the hand loop from the same point with common
  random numbers move every group's parameters alike (‖Δ_h − Δ_x‖/‖Δ_h‖ < 1e-3).

About 10–15 s on one core.
"""
import pytest
import torch

from benchmarks.handwritten_sbn import HANDWRITTEN, check

ALPHA = 1e-3  # family false-alarm rate of this file
DRAWS = 80


@pytest.mark.parametrize("name", list(HANDWRITTEN))
def test_hand_loop_is_the_estimator(name):
    with torch.random.fork_rng():
        r = check(name, draws=DRAWS, alpha=ALPHA / len(HANDWRITTEN))
    assert r["parameters"][0] == r["parameters"][1]
    assert all(v < 1e-4 for v in r["tight"].values()), r["tight"]
    assert r["objective_gap"] < 1e-3, r["objective_gap"]
    assert all(v < 1e-3 for v in r["trajectory"].values()), r["trajectory"]
    assert r["max_z"] < r["threshold"], (r["max_z"], r["threshold"], r["z"])
    assert r["passed"]


def test_hand_loops_step():
    """Every loop trains: a few steps move its parameters and keep them finite."""
    from benchmarks.common import sbn_data
    data = sbn_data()
    with torch.random.fork_rng():
        for name, cls in HANDWRITTEN.items():
            loop = cls(data.train, data.train_mean)
            before = [p.detach().clone() for p in loop.sbn.parameters()]
            for _ in range(2):
                loop()
            after = list(loop.sbn.parameters())
            assert all(torch.isfinite(p).all() for p in after), name
            assert all(not torch.equal(a, b) for a, b in zip(before, after)), name
