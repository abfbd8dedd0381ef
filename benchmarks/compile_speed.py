"""``--compile`` against eager: the runner's training step with its surrogate compiled by ``torch.compile``
(``harness.runner.compile_surrogate``) beside the eager step, same cell, one run.

    python benchmarks/compile_speed.py [--rounds 5] [--block 20] [--out FILE]

Cells: the GMM (R = 10 seeds stacked, batch 100) for the first-order estimators at K ∈ {2, 20}, and the linear
SBN (784–200, batch 24, R = 1, K = 1) for a few; REBAR and RELAX are second order, which compiled autograd does
not support, so ``--compile`` leaves them eager.  For each cell an eager and a compiled ``Trainer``
(``benchmarks/common.py``, i.e. ``harness.runner.TrainingStep``) are built; the compiled one's first two steps
(compilation included) are timed as the compile time; then ``--rounds`` rounds of a block of each, alternating;
ms/step = median block ÷ block size, speed-up = median over rounds of eager ÷ compiled; break-even = compile time
÷ the time saved per step.  One torch thread.  Writes ``compile_speed.md`` next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.common import command_line, write_record  # noqa: E402
from benchmarks.common import (Trainer, bind, gmm_batcher, gmm_model, header, load_average, markdown,  # noqa: E402
                               sbn_batcher, sbn_model)

GMM_CELLS = [(name, K) for name in ("reinforce", "ww", "vimco", "ws", "dww", "concrete") for K in (2, 20)]
SBN_CELLS = [("reinforce", 1), ("nvil", 1), ("disarm", 1), ("concrete", 1)]


def trainer(model_kind: str, name: str, K: int, compile: str) -> Trainer:
    torch.manual_seed(0)
    model = gmm_model() if model_kind == "gmm" else sbn_model()
    batch = gmm_batcher(model) if model_kind == "gmm" else sbn_batcher(model)
    return Trainer(model, bind(name, model, K), batch, K, compile=compile)


def block(step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--block", type=int, default=20)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "compile_speed.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load_before = load_average()
    started = time.perf_counter()
    rows = []
    for kind, cells in (("gmm", GMM_CELLS), ("sbn linear1", SBN_CELLS)):
        for name, K in cells:
            model_kind = kind.split()[0]
            eager = trainer(model_kind, name, K, "off")
            compiled = trainer(model_kind, name, K, "default")
            t0 = time.perf_counter()
            compiled()
            compiled()
            compile_s = time.perf_counter() - t0
            for _ in range(5):
                eager()
                compiled()
            times = {"eager": [], "compiled": []}
            for _ in range(args.rounds):
                times["eager"].append(block(eager, args.block))
                times["compiled"].append(block(compiled, args.block))
            e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
            ratio = statistics.median(a / b for a, b in zip(times["eager"], times["compiled"]))
            saved = e - c
            breakeven = compile_s / saved if saved > 0 else float("inf")
            rows.append([kind, name, K, 1e3 * e, 1e3 * c, ratio, compile_s, breakeven])
            print(rows[-1], flush=True)
    columns = ["model", "estimator", "K", "eager ms/step", "compiled ms/step", "speed-up", "compile s",
               "break-even steps"]
    command = command_line(__file__, argv)
    extra = (f"torch.compile(mode=None, dynamic=False) of the estimator's surrogate, inductor's CPU backend, "
             f"fallback_random; {args.rounds} rounds of {args.block}-step blocks, eager and compiled alternating; "
             f"GMM R = 10, batch 100; SBN linear1 R = 1, batch 24.  Whole run: {time.perf_counter() - started:.0f} s.")
    text = header(command, extra, load_before) + "\n" + markdown(rows, columns)
    write_record(text, args.out)


if __name__ == "__main__":
    main()
