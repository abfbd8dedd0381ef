"""Attend-Infer-Repeat: training steps per second on this machine's CPU (issue 12 §5).

    python benchmarks/air_speed.py [--rounds 3] [--out FILE] [--device cpu|cuda]

``air`` at its defaults (3 steps, 20 × 20 glimpses, z_what 50, RNN 256; ``multi-mnist5k-s0``), the ``air`` suite's
batch of 16 images, one torch thread; the harness step (``benchmarks/common.py: Trainer``: ``estimator.gradients`` +
one Adam step, re-binarised batches drawn as the task does) for WW and VIMCO at K ∈ {2, 5, 10}, with R = 1 and with
R = 3 replicates (the suite's seeds, trained as one program).  Blocks of 5 steps after 2 warm-up steps, the cells
interleaved round by round; steps/s = 5 ÷ the median block time; per-replicate steps/s = R × that.
Writes ``air_speed.md`` next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.common import Trainer, header, load_average, markdown  # noqa: E402

BLOCK, WARMUP, BATCH = 5, 2, 16


def make(name, K, R, device):
    from estibench import data, estimators
    from estibench.harness.runner import build_model
    model = build_model("air", seeds=tuple(range(R))).to(device)
    train = data.load(model.dataset).train.to(device)
    est = estimators.get(name).bind(model).to(device)

    def batch():
        idx = torch.randint(train.shape[0], (R, BATCH), device=device)
        return torch.bernoulli(train[idx])
    return Trainer(model, est, batch, K, lr=1e-4)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "air_speed.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    device = torch.device(args.device)
    load_before = load_average()
    cells = [(name, K, R) for R in (1, 3) for name in ("ww", "vimco") for K in (2, 5, 10)]
    trainers = {c: make(*c, device) for c in cells}
    for t in trainers.values():
        for _ in range(WARMUP):
            t()
    times = {c: [] for c in cells}
    for _ in range(args.rounds):
        for c, t in trainers.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(BLOCK):
                t()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[c].append(time.perf_counter() - started)
    rows = []
    for (name, K, R), ts in times.items():
        per_s = BLOCK / statistics.median(ts)
        rows.append((name, K, R, 1e3 / per_s, per_s, per_s * R))
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    text = ("# AIR training steps per second\n\n"
            + header(f"python benchmarks/air_speed.py --rounds {args.rounds} --device {args.device}",
                     f"Device: {device_name}; batch {BATCH}, blocks of {BLOCK} steps, {args.rounds} rounds, cells "
                     "interleaved.", load_before)
            + "\n" + markdown(rows, ["estimator", "K", "R", "ms / step", "steps / s", "replicate-steps / s"])
            + "\nThe paper's 2M iterations at the R = 1, K = 5 rate above would take "
            + f"{2e6 / rows[[r[:3] for r in rows].index(('ww', 5, 1))][4] / 3600:.0f} hours of this machine for WW.\n")
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
