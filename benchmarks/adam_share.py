"""The share of Adam in the hand-written REINFORCE loop's step (linear SBN, batch 24, one torch thread).

    python benchmarks/adam_share.py [--rounds 15] [--block 40]

``handwritten_sbn.HandReinforce`` after 20 warm-up steps; each round times a block of steps as they are, then a
block with the loop's ``optimizer.step`` wrapped in a timer; prints the medians over rounds (step, Adam, share).
It bounds how close any estimator's step can come to a loop without Adam's cost.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.common import sbn_data  # noqa: E402
from benchmarks.handwritten_sbn import HandReinforce  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--block", type=int, default=40)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = sbn_data()
    loop = HandReinforce(data.train, data.train_mean)
    for _ in range(20):
        loop()
    plain_step = loop.opt.step
    steps, adams = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.block):
            loop()
        steps.append((time.perf_counter() - start) / args.block)
        spent = [0.0]

        def timed(*a, **k):
            t0 = time.perf_counter()
            out = plain_step(*a, **k)
            spent[0] += time.perf_counter() - t0
            return out
        loop.opt.step = timed
        for _ in range(args.block):
            loop()
        loop.opt.step = plain_step
        adams.append(spent[0] / args.block)
    step, adam = statistics.median(steps), statistics.median(adams)
    print(f"hand-written REINFORCE step {1e3 * step:.2f} ms, its Adam step {1e3 * adam:.2f} ms: {adam / step:.0%} "
          f"(medians over {args.rounds} rounds of {args.block} steps)")


if __name__ == "__main__":
    main()
