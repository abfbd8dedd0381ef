"""One training step of the three costly new estimators, ``rodeo``, ``double_cv`` and ``indecater``, against a
hand-written PyTorch loop of the same estimator (``benchmarks/handwritten_new.py``; the issue's target: the
harness step within 1.5× of it).

    python benchmarks/new_estimators_speed.py [--rounds 30] [--estimators rodeo,double_cv] [--profile] [--out FILE]

Settings: ``rodeo`` and ``double_cv`` on the linear SBN (``sbn`` arch ``linear1``, 784–200–784), K = 2;
``indecater`` on the categorical SBN (``sbn_categorical`` arch ``linear``, 20 × 10-way latents), K = 1; batch
24 of mnist5k-bern0's training images, R = 1, CPU, one torch thread, Adam at lr 1e-3 (own parameters in the
model's group: their learning-rate multiplier is 1).

* harness step (``benchmarks/common.py: Trainer``): the runner's loop body (``harness.runner.TrainingStep``):
  a fresh batch, ``estimator.gradients`` (θ, φ and the estimator's own parameters), the finiteness
  bookkeeping, ``p.grad = g``, one Adam step (``make_optimiser``).
* own hand-written loop (``handwritten_new.HANDWRITTEN``): the same estimator, written directly in PyTorch
  from the estimator's docstring, same parameter count and optimiser groups (tests/test_handwritten_new.py
  shows they compute the same gradients).

Timing (``sbn_step.py``'s interleaved method): 10 warm-up steps each, then ``--rounds`` rounds; in each round
the harness runs a block of ``BLOCK[name]`` steps next to a block of as many hand-written steps (the order
alternating between rounds, so a drift in the machine's load hits both sides alike); ms = median block ÷ its
steps, ratio = median over rounds of (harness block ÷ hand block beside it).  ``--profile`` adds the
heaviest ATen operators of both sides (``torch.profiler``, 10 steps).  Writes ``new_estimators_speed.md``
next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.common import (Trainer, bind, command_line, header, load_average, markdown,  # noqa: E402
                               sbn_batcher, sbn_data, write_record)
from benchmarks.handwritten_new import HANDWRITTEN, PARTICLES, harness_model  # noqa: E402

TARGET = 1.5
WARMUP = 10
#: steps per block (a block ≈ 0.1–0.3 s on one core)
BLOCK = {"rodeo": 10, "double_cv": 20, "indecater": 3}
MODEL = {"rodeo": "sbn linear1", "double_cv": "sbn linear1", "indecater": "sbn_categorical linear (20 × 10)"}


def block(step, n):
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def contenders(name):
    """(harness Trainer, hand-written loop) of one estimator."""
    data = sbn_data()
    K = PARTICLES[name]
    torch.manual_seed(0)
    model = harness_model(name)
    est = bind(name, model, K)
    return Trainer(model, est, sbn_batcher(model), K), HANDWRITTEN[name](data.train, data.train_mean)


def top_ops(step, steps=10, n=5):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    aten = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    calls = sum(e.count for e in events) // steps
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:n]
    text = ", ".join(f"{e.key[6:]} {e.self_cpu_time_total / 1e3 / steps:.2f} ms ({e.count // steps}×)" for e in top)
    return f"{1e3 * wall:.2f} ms/step profiled, {aten:.2f} ms in ATen ops ({calls} calls): {text}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds per estimator (default: 30)")
    p.add_argument("--estimators", default=",".join(HANDWRITTEN),
                   help=f"comma-separated names (default: {','.join(HANDWRITTEN)})")
    p.add_argument("--profile", action="store_true", help="add the heaviest ATen ops of both sides")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "new_estimators_speed.md"),
                   help="Markdown output (default: next to this script); '-' for stdout only")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load_before = load_average()
    started = time.perf_counter()
    names = args.estimators.split(",")
    rows, profiles, verdicts = [], [], []
    for name in names:
        harness, hand = contenders(name)
        for step in (harness, hand):
            for _ in range(WARMUP):
                step()
        n = BLOCK[name]
        harness_s, hand_s, ratios = [], [], []
        for r in range(args.rounds):
            if r % 2 == 0:
                h = block(harness, n)
                o = block(hand, n)
            else:
                o = block(hand, n)
                h = block(harness, n)
            harness_s.append(h)
            hand_s.append(o)
            ratios.append(h / o)
        ratio = statistics.median(ratios)
        q = statistics.quantiles(ratios, n=4)
        met = ratio <= TARGET
        verdicts.append(f"{name} {ratio:.2f}×")
        rows.append([name, MODEL[name], PARTICLES[name], 1e3 * statistics.median(harness_s),
                     1e3 * statistics.median(hand_s), ratio, f"{q[0]:.2f}–{q[2]:.2f}", f"≤ {TARGET:g}×",
                     "yes" if met else "no"])
        print(f"{name}: {ratio:.2f}× ({time.perf_counter() - started:.0f} s)", flush=True)
        if args.profile:
            profiles.append(f"* **{name}** — harness: {top_ops(harness)}.  Hand-written: {top_ops(hand)}.")
    met_count = sum(row[-1] == "yes" for row in rows)
    columns = ["estimator", "model", "K", "harness step ms", "own hand-written ms", "÷ own hand-written",
               "ratio quartiles", "target", "met"]
    extra = (f"Batch 24 of mnist5k-bern0, R = 1, CPU, one torch thread, Adam lr 1e-3.  {WARMUP} warm-up steps "
             f"each, then {args.rounds} rounds in which the harness step (`benchmarks.common.Trainer`) runs a block "
             f"of steps next to a block of as many steps of the estimator's own hand-written loop "
             f"(`handwritten_new.py`; order alternating by round; block: "
             + ", ".join(f"{k} {BLOCK[k]}" for k in names)
             + f" steps); ms = median block ÷ its steps, ratio = median over rounds of (harness block ÷ hand block "
             f"beside it), quartiles of the per-round ratios beside it.  Whole run: "
             f"{time.perf_counter() - started:.0f} s.\n\n"
             f"**Harness step ÷ own hand-written loop within ≤ {TARGET:g}×: {met_count} of {len(rows)}** "
             f"({', '.join(verdicts)}).")
    text = header(command_line(__file__, argv), extra, load_before) + "\n" + markdown(rows, columns)
    if profiles:
        text += ("\n### Profiles\n\ntorch.profiler, 10 steps each (self time of ATen operators; the rest of a "
                 "step is Python, autograd and dispatch glue).\n\n" + "\n".join(profiles) + "\n")
    write_record(text, args.out)


if __name__ == "__main__":
    main()
