"""One training step of every estimator on the linear SBN against a minimal hand-written PyTorch
REINFORCE loop (issue 3 §7) and, for the estimators that have one, against a hand-written loop of the
same estimator (``benchmarks/handwritten_sbn.py``), one run, plus profiles of the three slowest estimators.

    python benchmarks/sbn_step.py [--steps 100] [--out FILE] [--no-runner] [--no-profile]

Setting: ``linear1`` SBN (784–200–784), batch 24 from mnist5k-bern0's training images, K = 1,
R = 1, CPU, one torch thread, Adam at lr 1e-3 everywhere.

* hand-written loop (``HandReinforce``, in ``handwritten_sbn.py``, importable from here):
  ``nn.Linear`` encoder 784→200 on x − x̄,
  ``nn.Linear`` decoder 200→784, learned prior logits, z ~ Bernoulli(σ(logits)), the ELBO's score
  function with an exponential-moving-average baseline (decay 0.9), ``loss.backward()``,
  ``torch.optim.Adam``.
* own hand-written loop (``handwritten_sbn.HANDWRITTEN``: reinforce — without the baseline, as
  estibench's —, nvil, muprop, arm, disarm, concrete, rebar, relax): the same estimator with the
  same defaults, parameter count and own learning-rate multiplier, written directly in PyTorch
  (``handwritten_sbn.check`` and tests/test_handwritten_sbn.py show they are the same estimators).
  Targets (speed issue): harness REINFORCE ≤ 1.1× its hand-written loop, every other ≤ 1.5×.
* harness step (``benchmarks/common.py: Trainer``): the runner's loop body, i.e. a fresh batch,
  ``estimator.gradients`` (θ, φ and the estimator's own parameters), ``p.grad = g``, one Adam step
  over θ, φ and own parameters (own learning-rate multiplier as in the runner).
* runner (``harness.runner.train_cell``): the real training loop on the ``sbn`` study (its finite
  checks, trajectory statistics and bookkeeping), ``sec_per_iter`` as the runner records it
  (evaluations excluded; cheap evaluation options so that a block costs little beyond its steps).

Timing: 10 warm-up steps each, then ``--steps`` ÷ 20 rounds; in each round every contender runs a
block of 20 steps right after a block of 20 hand-written REINFORCE steps and, if it has its own
hand-written loop, right before a block of 20 steps of that loop (paired blocks: load changes hit
both sides of a pair alike); a contender's time is its median block ÷ 20 and its ratios the medians
over rounds of (its block ÷ the hand-written block beside it).  The runner: 5 rounds of a fresh
``train_cell`` of 100 iterations per estimator, each beside a block of 100 hand-written steps;
its ratio is the median over rounds.  ``--stacked 5`` adds REINFORCE with the sbn suite's 5
seeds stacked, per replicate.

Profiles (three slowest harness steps; ``--no-profile`` skips them): ``torch.profiler`` over 20 steps
(time inside ATen operators against wall: the rest is Python, autograd and dispatch glue), the step at
batch 1, 24 and 96 (a + b·B: the part that does not scale with the
batch) and cProfile (own time of Python-level functions, i.e. interpreter overhead, and the time
inside the autograd engine's backward call).
Writes ``sbn_step.md`` next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.common import command_line, write_record  # noqa: E402
from benchmarks.common import (SBN_BATCH, Trainer, bind, compatible, header, load_average, markdown,  # noqa: E402
                               sbn_batcher, sbn_data, sbn_model)
# HandReinforce lives in handwritten_sbn.py and stays importable from here
from benchmarks.handwritten_sbn import HANDWRITTEN, HandReinforce  # noqa: E402,F401

BLOCKS = 5
BLOCK = 20
WARMUP = 10
RUNNER_STEPS = 100
#: the speed issue's targets: harness step ÷ the hand-written loop of the same estimator
OWN_TARGET = {"reinforce": 1.1}
OWN_TARGET_DEFAULT = 1.5


class RunnerBlock:
    """Each call trains a fresh ``train_cell`` for ``steps`` iterations; returns its sec_per_iter."""

    def __init__(self, estimator):
        from estibench.harness.runner import Cell
        self.estimator = estimator
        self.Cell = Cell

    def seconds_per_step(self, steps):
        from estibench.harness.runner import train_cell
        from estibench.studies import TASKS
        cell = self.Cell(study="sbn", model="sbn", estimator=self.estimator, particles=1, seeds=(0,),
                         iterations=steps, eval_every=steps, batch_size=SBN_BATCH, lr=1e-3, device="cpu",
                         model_options={"arch": "linear1", "dataset": "mnist5k-bern0"},
                         study_options={"eval_particles": 1, "final_particles": (1,), "eval_points": 8,
                                        "elbo_samples": 1, "grad_samples": 2})
        result = train_cell(cell, TASKS["sbn"])
        if result.status != "done":
            raise RuntimeError(f"runner: {self.estimator} {result.status}: {result.error}")
        return result.sec_per_iter


def block(step, n):
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def harness_trainer(name, batch=SBN_BATCH):
    torch.manual_seed(0)
    model = sbn_model()
    est = bind(name, model, 1)
    return Trainer(model, est, sbn_batcher(model, batch), 1)


def profile(name, steps=20):
    """(profiler summary text, batch-scaling row, cProfile text) for one estimator."""
    from torch.profiler import ProfilerActivity, profile as tprofile
    step = harness_trainer(name)
    for _ in range(WARMUP):
        step()
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps
    events = prof.key_averages()
    # top-level ATen time: self time of every aten:: op (no double counting of nested ops)
    aten_self = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1e6 / steps
    top = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)[:6]
    top_text = ", ".join(f"{e.key[6:]} {e.self_cpu_time_total / 1e3 / steps:.2f} ms ({e.count // steps}×)"
                         for e in top)
    n_ops = sum(e.count for e in events if e.key.startswith("aten::")) // steps
    # batch scaling
    scaling = {}
    for B in (1, SBN_BATCH, 96):
        s = harness_trainer(name, batch=B)
        for _ in range(WARMUP):
            s()
        scaling[B] = statistics.median(block(s, 10) for _ in range(3))
    slope = (scaling[96] - scaling[1]) / 95
    fixed = scaling[1] - slope
    # cProfile: own time of Python-level functions (file names other than "~", i.e. not C builtins)
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        step()
    pr.disable()
    stats = pstats.Stats(pr, stream=io.StringIO()).stats
    python = {k: v for k, v in stats.items() if k[0] != "~"}
    py_ms = 1e3 * sum(v[2] for v in python.values()) / steps
    py_calls = sum(v[1] for v in python.values()) // steps
    engine_ms = 1e3 * sum(v[2] for k, v in stats.items() if "run_backward" in k[2]) / steps
    rows = sorted(((v[2], k) for k, v in python.items()), reverse=True)[:5]
    py_text = ", ".join(f"{k[0].split('site-packages/')[-1].replace(ROOT + '/', '')}:{k[1]}({k[2]}) "
                        f"{1e3 * t / steps:.2f} ms" for t, k in rows)
    return {"estimator": name, "wall_ms": 1e3 * wall, "aten_ms": 1e3 * aten_self, "ops": n_ops,
            "top": top_text, "B1": 1e3 * scaling[1], "B24": 1e3 * scaling[SBN_BATCH], "B96": 1e3 * scaling[96],
            "fixed_ms": 1e3 * fixed, "per_point_ms": 1e3 * slope, "python": py_text, "py_ms": py_ms,
            "py_calls": py_calls, "engine_ms": engine_ms}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="timed steps per contender (default: 200)")
    p.add_argument("--estimators", help="comma-separated names (default: every one accepting the SBN at K = 1)")
    p.add_argument("--no-runner", action="store_true", help="skip the train_cell column")
    p.add_argument("--stacked", type=int, default=5,
                   help="also time REINFORCE with this many stacked seeds, per replicate (default: 5, the sbn "
                        "suite's seeds; 1 = skip)")
    p.add_argument("--profiles", type=int, default=3, help="profile the N slowest estimators (default: 3)")
    p.add_argument("--no-profile", action="store_true", help="skip the profiles (same as --profiles 0)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sbn_step.md"),
                   help="Markdown output (default: next to this script); '-' for stdout only")
    args = p.parse_args(argv)
    if args.no_profile:
        args.profiles = 0
    torch.set_num_threads(1)
    load_before = load_average()
    started = time.perf_counter()
    data = sbn_data()
    names = args.estimators.split(",") if args.estimators else compatible(sbn_model(), particles=(1,))
    hand = HandReinforce(data.train, data.train_mean)
    contenders = {}
    for name in names:
        contenders[name] = harness_trainer(name)
    # each estimator's own hand-written loop (the same estimator, handwritten_sbn.py), where there is one
    own_hand = {name: HANDWRITTEN[name](data.train, data.train_mean) for name in names if name in HANDWRITTEN}
    stacked = "reinforce" in names and args.stacked > 1
    if stacked:  # the sbn suite stacks its seeds: per-replicate cost of the same step with R seeds
        torch.manual_seed(0)
        model = sbn_model(seeds=tuple(range(args.stacked)))
        contenders["reinforce R-stacked"] = Trainer(model, bind("reinforce", model, 1), sbn_batcher(model), 1)
    runners = {} if args.no_runner else {name: RunnerBlock(name) for name in names}
    for step in [hand, *contenders.values(), *own_hand.values()]:
        for _ in range(WARMUP):
            step()
    # paired blocks: each round, every contender's block of BLOCK steps right after a block of the
    # hand-written REINFORCE loop and right before a block of its own hand-written loop (if any); a
    # contender's ratio is the median over rounds of (its block ÷ that hand block)
    rounds = max(1, args.steps // BLOCK)
    times = {k: [] for k in contenders}
    ratios = {k: [] for k in contenders}
    own_times = {k: [] for k in own_hand}
    own_ratios = {k: [] for k in own_hand}
    hand_times = []
    for _ in range(rounds):
        for key, step in contenders.items():
            hand_s = block(hand, BLOCK)
            own_s = block(step, BLOCK)
            hand_times.append(hand_s)
            times[key].append(own_s)
            ratios[key].append(own_s / hand_s)
            if key in own_hand:
                mine_s = block(own_hand[key], BLOCK)
                own_times[key].append(mine_s)
                own_ratios[key].append(own_s / mine_s)
    print(f"steps done ({time.perf_counter() - started:.0f} s)", flush=True)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    ms["hand-written REINFORCE"] = 1e3 * statistics.median(hand_times)
    rel = {k: statistics.median(v) for k, v in ratios.items()}
    own_ms = {k: 1e3 * statistics.median(v) for k, v in own_times.items()}
    own_rel = {k: statistics.median(v) for k, v in own_ratios.items()}
    # the runner: a fresh train_cell of RUNNER_STEPS iterations per estimator and round, each round
    # beside a block of as many hand-written steps; runner ÷ hand = median over rounds of the ratio
    runner_ratio = {k: [] for k in runners}
    runner_times = {k: [] for k in runners}
    for b in range(BLOCKS if runners else 0):
        for key, runner in runners.items():
            hand_s = block(hand, RUNNER_STEPS)
            run_s = runner.seconds_per_step(RUNNER_STEPS)
            runner_times[key].append(run_s)
            runner_ratio[key].append(run_s / hand_s)
        print(f"runner round {b + 1}/{BLOCKS} done ({time.perf_counter() - started:.0f} s)", flush=True)
    runner_ms = {k: 1e3 * statistics.median(v) for k, v in runner_times.items()}
    runner_rel = {k: statistics.median(v) for k, v in runner_ratio.items()}
    ref = ms["hand-written REINFORCE"]
    rows = [["hand-written REINFORCE (EMA baseline)", ref, 1.0, None, None, None, None, "", ""]]
    met_count, not_met = 0, []
    for name in names:
        target = OWN_TARGET.get(name, OWN_TARGET_DEFAULT)
        if name in own_hand:
            met = own_rel[name] <= target
            met_count += met
            if not met:
                not_met.append(f"{name} {own_rel[name]:.2f}×")
            own_cols = [own_ms[name], own_rel[name], f"≤ {target:g}×", "yes" if met else "no"]
        else:
            own_cols = [None, None, "", ""]
        rows.append([name, ms[name], rel[name], runner_ms.get(name), runner_rel.get(name), *own_cols])
    if stacked:
        per = ms["reinforce R-stacked"] / args.stacked
        rows.append([f"reinforce, R = {args.stacked} stacked seeds, per replicate", per,
                     rel["reinforce R-stacked"] / args.stacked, None, None, None, None, "", ""])
    columns = ["estimator", "harness step ms", "÷ hand-written", "runner (train_cell) ms/it", "runner ÷ hand-written",
               "own hand-written ms", "÷ own hand-written", "target", "met"]
    slowest = sorted(names, key=lambda n: -ms[n])[:args.profiles]
    profiles = [profile(name) for name in slowest]
    prof_rows = [[p["estimator"], p["wall_ms"], p["aten_ms"], 100 * p["aten_ms"] / p["wall_ms"], p["ops"],
                  p["py_ms"], p["py_calls"], p["engine_ms"], p["B1"], p["B24"], p["B96"], p["fixed_ms"],
                  p["per_point_ms"]] for p in profiles]
    prof_cols = ["estimator", "step ms (profiled)", "in ATen ops ms", "% in ATen", "ATen calls/step",
                 "Python own ms (cProfile)", "Python calls/step", "backward call ms (cProfile)",
                 "B=1 ms", "B=24 ms", "B=96 ms", "fixed ms (a)", "ms per data point (b)"]
    prof_text = "\n".join(f"* **{p['estimator']}** — heaviest ATen ops per step: {p['top']}.  "
                          f"Python functions with the most own time per step: {p['python']}." for p in profiles)
    rf = ms.get("reinforce")
    verdict = ("" if rf is None else
               f"**Harness REINFORCE step ÷ hand-written loop (EMA baseline): {rel['reinforce']:.2f}×**"
               + ("" if "reinforce" not in own_rel else
                  f"; ÷ its own hand-written loop (no baseline, the same estimator): "
                  f"**{own_rel['reinforce']:.2f}×** (target ≤ {OWN_TARGET['reinforce']:g}×)")
               + ("" if "reinforce" not in runner_ms else
                  f"; through the runner (train_cell): {runner_rel['reinforce']:.2f}× the EMA loop") + ".")
    if own_hand:
        verdict += (f"  Harness step ÷ own hand-written loop within target (≤ {OWN_TARGET['reinforce']:g}× for "
                    f"reinforce, ≤ {OWN_TARGET_DEFAULT:g}× for the others): **{met_count} of {len(own_hand)}**"
                    + (f"; not met: {', '.join(not_met)}" if not_met else "") + ".")
    command = command_line(__file__, argv)
    extra = (f"Linear SBN (784–200–784), batch 24 of mnist5k-bern0, K = 1, R = 1, CPU, one torch thread, Adam "
             f"lr 1e-3.  {WARMUP} warm-up steps each, then {rounds} rounds in which every contender runs "
             f"a block of {BLOCK} steps right after a block of {BLOCK} hand-written REINFORCE steps and, where "
             f"it has one (`handwritten_sbn.py`), right before a block of {BLOCK} steps of its own hand-written "
             f"loop; ms = median block ÷ {BLOCK}, ratio = median over rounds of (block ÷ the hand-written block "
             f"beside it).  Runner: {BLOCKS} rounds of a fresh `train_cell` of "
             f"{RUNNER_STEPS} iterations per estimator, each beside {RUNNER_STEPS} hand-written steps; the "
             f"ratio is the median over rounds.  Whole run: "
             f"{time.perf_counter() - started:.0f} s.\n\n{verdict}")
    text = header(command, extra, load_before) + "\n" + markdown(rows, columns)
    if profiles:
        text += (f"\n### Profiles of the {len(profiles)} slowest harness steps\n\n"
                 + "torch.profiler over 20 steps (self time of ATen operators against the step's wall time: the "
                   "rest is Python, autograd-engine and dispatch glue); step time at batch 1, 24, 96 fitted as "
                   "a + b·B (a = the part that does not grow with the batch: Python, dispatch and "
                   "parameter-sized tensor work such as Adam); cProfile: own time of Python-level functions "
                   "(interpreter overhead; cProfile inflates it) and the time inside the autograd backward call "
                   "(C++ engine and the backward kernels).\n\n"
                 + markdown(prof_rows, prof_cols) + "\n" + prof_text + "\n")
    write_record(text, args.out)


if __name__ == "__main__":
    main()
