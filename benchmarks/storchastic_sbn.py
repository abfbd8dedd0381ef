"""estibench against Storchastic 0.3.7 on the linear SBN, one training step each, side by side in one run
(speed issue, target 3: estibench ≥ 2.5× faster for every estimator both offer).

    python benchmarks/storchastic_sbn.py [--rounds 7] [--block 40] [--venv DIR] [--out FILE]

Storchastic lives in a separate virtual environment that this script creates on first use
(``--venv``, default ``~/.cache/estibench-bench/storchastic-0.3.7``: ``python -m venv``, then
``pip install torch==<this process's torch version> storchastic==0.3.7``), and runs there as one long-lived
worker process (``benchmarks/_storchastic_worker.py``, which documents its model: the same linear SBN
784–200–784 written with Storchastic's own API as its discrete-VAE example writes it, ``storch.backward()``
and Adam).  Both sides: batch 24 drawn uniformly from mnist5k-bern0's training images each step, K = 1, one
seed, CPU, one torch thread, Adam at lr 1e-3, distribution argument validation off.

Estimators both offer (estibench name ← Storchastic method): reinforce ← ``ScoreFunction`` without a
baseline, concrete ← ``GumbelSoftmax``, rebar ← ``REBAR``, relax ← ``RELAX(rebar=True)`` (the worker
prints each method's exact arguments into the record).

estibench is timed two ways: its harness step (``benchmarks/common.Trainer``: the runner's loop body
``harness.runner.TrainingStep``: a fresh batch, the estimator's gradients, finite-check bookkeeping and one
Adam step) and the runner itself (``train_cell`` on the ``sbn`` study, its ``sec_per_iter``, evaluations
excluded).  Storchastic is timed inside its worker around its own training loop (the pipe is outside the
clock).

A third contender, for scale: the hand-written PyTorch loop of the same estimator
(``benchmarks/handwritten_sbn.py``, the speed issue's reference loops).

Interleaving: after a warm-up of 20 steps on every side, ``--rounds`` rounds; in each round, for every
estimator, a block of ``--block`` estibench harness steps, a block of ``--block`` Storchastic steps and a
block of ``--block`` hand-written steps, estibench and Storchastic in alternating order from round to round (while one side runs the other waits on a pipe: no contention), and,
unless ``--no-runner``, one fresh ``train_cell`` of 100 iterations.  A side's time is its median block ÷
``--block``; the speed-up is the median over rounds of (Storchastic block ÷ estibench block of the same
round).  Writes ``storchastic_sbn.md`` next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.common import command_line, write_record  # noqa: E402
from benchmarks.common import RunnerBlock, block, harness_trainer, header, load_average, markdown, sbn_data  # noqa: E402,E501
from benchmarks.handwritten_sbn import HANDWRITTEN  # noqa: E402

STORCHASTIC = "0.3.7"
BOTH = ("reinforce", "concrete", "rebar", "relax")
TARGET = 2.5
WARMUP = 20
DEFAULT_VENV = os.path.join(os.path.expanduser("~"), ".cache", "estibench-bench", f"storchastic-{STORCHASTIC}")


def ensure_venv(venv: str) -> str:
    """The venv's python, creating the venv (torch of this process's version + storchastic) if needed."""
    python = os.path.join(venv, "bin", "python")
    probe = [python, "-c", "import storch, torch; print(torch.__version__)"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} (torch {torch.__version__}, storchastic {STORCHASTIC}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    torch_version = torch.__version__.split("+")[0]
    subprocess.run([python, "-m", "pip", "install", "-q", f"torch=={torch_version}", f"storchastic=={STORCHASTIC}"],
                   check=True)
    subprocess.run(probe, check=True, capture_output=True)
    return python


class Worker:
    """The Storchastic worker process: ``run(name, n)`` → its reply (``seconds`` for n steps)."""

    def __init__(self, python: str, data_path: str, names):
        self.proc = subprocess.Popen(
            [python, os.path.join(ROOT, "benchmarks", "_storchastic_worker.py"), "--data", data_path,
             "--methods", ",".join(names)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""})
        self.info = self._reply()
        if not self.info.get("ready"):
            raise RuntimeError(f"Storchastic worker did not start: {self.info}")

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("Storchastic worker exited (its stderr is above)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"Storchastic worker: {reply['error']}")
        return reply

    def run(self, name: str, n: int) -> dict:
        self.proc.stdin.write(f"run {name} {n}\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--block", type=int, default=40, help="steps per timed block (default: 40)")
    p.add_argument("--estimators", default=",".join(BOTH))
    p.add_argument("--venv", default=DEFAULT_VENV)
    p.add_argument("--no-runner", action="store_true", help="skip the train_cell column")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "storchastic_sbn.md"))
    args = p.parse_args(argv)
    if args.rounds < 1 or args.block < 1:
        p.error("--rounds and --block must be at least 1")
    names = args.estimators.split(",")
    unknown = [n for n in names if n not in BOTH]
    if unknown:
        p.error(f"not offered by both: {', '.join(unknown)} (both offer {', '.join(BOTH)})")
    torch.set_num_threads(1)
    python = ensure_venv(args.venv)
    load_before = load_average()
    started = time.perf_counter()
    data = sbn_data()
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "sbn.pt")
        torch.save({"train": data.train.float(), "train_mean": data.train_mean.float()}, data_path)
        worker = Worker(python, data_path, names)
        try:
            ours = {name: harness_trainer(name) for name in names}
            hand = {name: HANDWRITTEN[name](data.train, data.train_mean) for name in names}
            runners = {} if args.no_runner else {name: RunnerBlock(name) for name in names}
            for name in names:
                block(ours[name], WARMUP)
                block(hand[name], WARMUP)
                worker.run(name, WARMUP)
            est_t = {n: [] for n in names}
            sto_t = {n: [] for n in names}
            ratio = {n: [] for n in names}
            run_t = {n: [] for n in names}
            hand_t = {n: [] for n in names}
            hand_ratio = {n: [] for n in names}
            finite = {n: True for n in names}
            for r in range(args.rounds):
                for name in names:
                    if r % 2 == 0:
                        e = block(ours[name], args.block)
                        reply = worker.run(name, args.block)
                    else:
                        reply = worker.run(name, args.block)
                        e = block(ours[name], args.block)
                    s = reply["seconds"] / args.block
                    h = block(hand[name], args.block)
                    hand_t[name].append(h)
                    hand_ratio[name].append(s / h)
                    finite[name] = finite[name] and reply["finite"]
                    est_t[name].append(e)
                    sto_t[name].append(s)
                    ratio[name].append(s / e)
                    if name in runners:
                        run_t[name].append(runners[name].seconds_per_step(100))
                print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                    f"{n} {1e3 * est_t[n][-1]:.2f} vs {1e3 * sto_t[n][-1]:.2f} ms" for n in names), flush=True)
        finally:
            worker.close()
    rows = []
    for name in names:
        speedup = statistics.median(ratio[name])
        row = [name, 1e3 * statistics.median(est_t[name])]
        if runners:
            row.append(1e3 * statistics.median(run_t[name]))
        row += [1e3 * statistics.median(sto_t[name]), speedup, min(ratio[name]), max(ratio[name]),
                "yes" if speedup >= TARGET else "no", "yes" if finite[name] else "NO",
                1e3 * statistics.median(hand_t[name]), statistics.median(hand_ratio[name])]
        rows.append(row)
    columns = ["estimator", "estibench step (ms)"] + (["estibench runner (ms)"] if runners else []) + [
        "Storchastic step (ms)", "speed-up (Storchastic ÷ estibench step)", "min", "max", f"≥ {TARGET}×",
        "Storchastic finite", "hand-written step (ms)", "Storchastic ÷ hand-written"]
    command = command_line(__file__, argv)
    methods = "\n".join(f"* {n}: `{desc}`" for n, desc in worker.info["methods"].items())
    extra = (f"Storchastic {worker.info['storchastic']} with torch {worker.info['torch']} in `{args.venv}` "
             f"({worker.info['threads']} thread); {args.rounds} rounds of {args.block}-step blocks, interleaved "
             f"(see the script's docstring).  Whole run: {time.perf_counter() - started:.0f} s.\n\n"
             f"Storchastic methods:\n\n{methods}\n")
    text = header(command, extra, load_before) + "\n" + markdown(rows, columns)
    write_record(text, args.out)


if __name__ == "__main__":
    main()
