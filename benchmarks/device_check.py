"""The device checks of issue 13 as one prepared run: what a session that is lent a GPU runs once (device time is
scarce: with the defaults the whole run takes a few minutes on the GPU, plus the CPU side), recording every figure
with the device's name.

    python benchmarks/device_check.py [--device cuda] [--iterations 1000] [--rounds 3] [--parts gmm,sbn,ais,sync,compile,pixelcnn]
                                      [--out FILE]

Each part runs on ``--device`` and on the CPU of the same machine (one torch thread, as the CPU studies run), the
two interleaved where it times steps:

* ``gmm``: the GMM study at a reduced budget: the ``gmm`` suite's cell (R = 10 stacked seeds, batch 100) of each of
  the paper's seven estimators at K = 2 and 20, ``--iterations`` iterations, one evaluation at the end, through
  ``harness.runner.train_cell`` (what ``run_all.py`` runs); its wall clock and the runner's training time per
  iteration, device ÷ CPU.
* ``sbn``: one training step (``benchmarks/common.py: Trainer``, the runner's ``TrainingStep``) of every registered
  estimator that the linear SBN (784–200, batch 24, ``mnist5k-bern0``) accepts at K = 1, and of the multi-sample
  ones at K = 5: median ms over ``--rounds`` rounds of 20-step blocks, device and CPU alternating.
* ``ais``: forward AIS throughput (``models/rbm.py``), 1,000 chains × 100 temperatures, float64, on the RBM-prior
  paper's 200 + 400 RBM.
* ``sync``: no host synchronisation in a step: every GMM estimator of the paper at K = 2 runs 5 training steps
  under ``torch.cuda.set_sync_debug_mode("error")`` (a step that reads a tensor back raises); CUDA only.
* ``compile``: ``--compile reduce-overhead`` (CUDA graphs on a GPU) against eager, GMM K = 2, the estimators that
  compile (first-order ones): ms per step and compile seconds.
* ``pixelcnn``: PixelVAE++'s PixelCNN++ decoders at the paper's sizes and batches (:data:`PIXELCNN_CONFIGS`): one
  training step's ms, the parameters and the peak GPU memory (whether it fits one 80 GB GPU); on the device only
  (the CPU side would take minutes a step), and on the CPU at a tiny size when there is no GPU.

Without a GPU, ``--device cpu`` runs every part but ``sync`` with the CPU on both sides: a check that the script
works (tests/test_benchmarks.py runs it so, tiny), not a device figure.  Writes ``device_check.md`` next to this
script unless ``--out``.
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

from benchmarks.common import (Trainer, bind, command_line, compatible, header, load_average, markdown,  # noqa: E402
                               sbn_batcher, sbn_model, write_record)

GMM_ESTIMATORS = ("ws", "ww", "dww", "reinforce", "vimco", "concrete", "relax")
BLOCK, WARMUP = 20, 5
PARTS = ("gmm", "sbn", "ais", "sync", "compile", "pixelcnn")

#: PixelVAE++'s decoders (Sadeghi et al. 2019, §4: PixelCNN++ with n = 3 ResNet layers and 64 maps on 28 × 28 binary
#: data, batch 128; on CIFAR-10 PixelCNN++'s settings with 128 filters instead of 160, n = 5, batch 64 in total):
#: (label, channels, side, filters, n, batch); 10 logistic mixture components (ours: the paper does not say)
PIXELCNN_CONFIGS = (("28×28×1, n = 3, 64 maps, batch 128", 1, 28, 64, 3, 128),
                    ("32×32×3, n = 5, 128 maps, batch 64", 3, 32, 128, 5, 64))
#: the same code path at a size the CPU side (and the CPU-only check of this script) runs in seconds
PIXELCNN_TINY = (("8×8×3, n = 1, 8 maps, batch 4 (the script's check, not a paper configuration)", 3, 8, 8, 1, 4),)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gmm_cells(device, iterations, particles, names=GMM_ESTIMATORS):
    from estibench.harness.runner import Cell, train_cell
    from estibench.studies import TASKS
    rows = []
    for name in names:
        for K in particles:
            times = []
            for where in (device, torch.device("cpu")):
                cell = Cell(study="gmm", model="gmm", estimator=name, particles=K, seeds=tuple(range(10)),
                            iterations=iterations, eval_every=iterations, device=str(where))
                res = train_cell(cell, TASKS["gmm"])
                if res.status != "done":
                    raise RuntimeError(f"gmm {name} K={K} on {where}: {res.status} {res.error or ''}")
                times.append((res.wall_s, res.sec_per_iter))
            (dw, ds), (cw, cs) = times
            rows.append([name, K, dw, 1e3 * ds, cw, 1e3 * cs, cs / ds])
            print("gmm", rows[-1], flush=True)
    return rows


def timed_blocks(trainers, rounds):
    """{label: median seconds per step} of Trainers run in alternating blocks."""
    for t in trainers.values():
        for _ in range(WARMUP):
            t()
        sync(t.model.device)
    blocks = {k: [] for k in trainers}
    for _ in range(rounds):
        for label, t in trainers.items():
            start = time.perf_counter()
            for _ in range(BLOCK):
                t()
            sync(t.model.device)
            blocks[label].append((time.perf_counter() - start) / BLOCK)
    return {k: statistics.median(v) for k, v in blocks.items()}


def sbn_steps(device, rounds, only=None):
    rows = []
    probe = sbn_model()
    for K in (1, 5):
        names = compatible(probe, names=only, particles=(K,))
        if K == 5:  # only the estimators that need several samples: the K = 1 rows time the others
            names = [n for n in names if n not in compatible(probe, names=names, particles=(1,))]
        for name in names:
            trainers = {}
            for label, where in (("device", device), ("cpu", torch.device("cpu"))):
                torch.manual_seed(0)
                model = sbn_model().to(where)
                trainers[label] = Trainer(model, bind(name, model, K), sbn_batcher(model), K)
            ms = timed_blocks(trainers, rounds)
            rows.append([name, K, 1e3 * ms["device"], 1e3 * ms["cpu"], ms["cpu"] / ms["device"]])
            print("sbn", rows[-1], flush=True)
    return rows


def ais(device, rounds, chains=1000, steps=100):
    from estibench.models.rbm import RBM
    rows = []
    for where in (device, torch.device("cpu")):
        rbm = RBM((0,), 200, 400, init_scale=0.05).to(where)
        rbm.log_partition_ais(chains=100, steps=10)  # warm-up
        times = []
        for _ in range(rounds):
            sync(where)
            start = time.perf_counter()
            rbm.log_partition_ais(chains=chains, steps=steps)
            sync(where)
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        rows.append([str(where), t, chains * steps / t])
        print("ais", rows[-1], flush=True)
    return rows


def sync_free(device, names=GMM_ESTIMATORS):
    from benchmarks.common import gmm_batcher, gmm_model
    rows = []
    for name in names:
        model = gmm_model().to(device)
        est = bind(name, model, 2)
        trainer = Trainer(model, est, gmm_batcher(model), 2)
        trainer()  # first-call set-up (allocations, lazy state) outside the check
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(5):
                trainer()
            verdict = "no synchronisation"
        except RuntimeError as err:
            verdict = f"synchronises: {str(err).splitlines()[0][:120]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
        rows.append([name, 2, verdict])
        print("sync", rows[-1], flush=True)
    return rows


def compiled(device, rounds, names=GMM_ESTIMATORS):
    from benchmarks.common import gmm_batcher, gmm_model
    from estibench.harness.runner import compile_refusal
    rows = []
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    for name in names:
        trainers, compile_s = {}, float("nan")
        for label, how in (("eager", "off"), ("compiled", mode)):
            torch.manual_seed(0)
            model = gmm_model().to(device)
            est = bind(name, model, 2)
            if how != "off" and compile_refusal(est, how) is not None:
                break
            start = time.perf_counter()
            trainers[label] = Trainer(model, est, gmm_batcher(model), 2, compile=how)
            if how != "off":
                trainers[label]()  # the first call compiles
                sync(device)
                compile_s = time.perf_counter() - start
        if len(trainers) < 2:
            continue
        ms = timed_blocks(trainers, rounds)
        rows.append([name, 2, mode, 1e3 * ms["eager"], 1e3 * ms["compiled"], ms["eager"] / ms["compiled"], compile_s])
        print("compile", rows[-1], flush=True)
    return rows


def pixelcnn_steps(device, rounds, configs=PIXELCNN_CONFIGS, block=5):
    """Per configuration: parameters, median ms of one training step (log-likelihood of a random 8-bit batch,
    backward, Adam) over ``rounds`` blocks of ``block`` steps, and the peak device memory (CUDA) of the step."""
    from estibench.models.logistic_mixture import to_unit
    from estibench.models.pixelcnn import PixelCNNpp
    rows = []
    for label, channels, side, filters, n, batch in configs:
        torch.manual_seed(0)
        model = PixelCNNpp(channels=channels, filters=filters, n_blocks=n, n_mix=10).to(device)
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = to_unit(torch.randint(0, 256, (batch, channels, side, side), device=device))  # the 256 levels in [−1, 1]

        def step():
            opt.zero_grad(set_to_none=True)
            loss = -model.log_prob(x).mean()
            loss.backward()
            opt.step()

        step()  # first-call allocations outside the timing
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(rounds):
            sync(device)
            start = time.perf_counter()
            for _ in range(block):
                step()
            sync(device)
            times.append((time.perf_counter() - start) / block)
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
        rows.append([label, params, 1e3 * statistics.median(times), peak])
        print("pixelcnn", rows[-1], flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--iterations", type=int, default=1000, help="GMM iterations per cell (default: 1000)")
    p.add_argument("--particles", default="2,20", help="GMM particle counts (default: 2,20)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--estimators", default=None,
                   help="comma-separated estimators for every part (default: the GMM paper's seven for gmm, sync and "
                        "compile; every compatible one for sbn)")
    p.add_argument("--ais", default="1000x100", help="AIS chains x temperatures (default: 1000x100)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "device_check.md"))
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(f"device_check: error: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}",
              file=sys.stderr)
        return 2
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("no CUDA device is available")
    except RuntimeError as err:
        print(f"device_check: error: --device {args.device}: {err}", file=sys.stderr)
        return 2
    only = args.estimators.split(",") if args.estimators else None
    gmm_names = tuple(only) if only else GMM_ESTIMATORS
    try:
        chains, steps = (int(v) for v in args.ais.lower().split("x"))
    except ValueError:
        print(f"device_check: error: --ais {args.ais!r}: give CHAINSxTEMPERATURES, e.g. 1000x100", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU (no GPU: a check of this script)"
    load_before, started = load_average(), time.perf_counter()
    sections = [f"Device: **{name}** (`--device {args.device}`), against this machine's CPU, one torch thread."]
    d = device.type
    if "gmm" in parts:
        rows = gmm_cells(device, args.iterations, [int(k) for k in args.particles.split(",")], gmm_names)
        sections.append(f"### GMM at a reduced budget ({args.iterations} iterations, R = 10, batch 100, one evaluation "
                        "at the end, `train_cell`)\n\n" + markdown(
                            rows, ["estimator", "K", f"{d} cell s", f"{d} ms/iteration", "cpu cell s",
                                   "cpu ms/iteration", f"cpu ÷ {d} per iteration"]))
    if "sbn" in parts:
        rows = sbn_steps(device, args.rounds, only)
        sections.append(f"### SBN training step (linear1, batch 24, {args.rounds} rounds of {BLOCK}-step blocks)\n\n"
                        + markdown(rows, ["estimator", "K", f"{d} ms/step", "cpu ms/step", f"cpu ÷ {d}"]))
    if "ais" in parts:
        rows = ais(device, args.rounds, chains, steps)
        sections.append(f"### AIS throughput (200 + 400 RBM, {chains:,} chains × {steps} temperatures, float64)\n\n"
                        + markdown(rows, ["device", "median s", "chains × temperatures per s"]))
    if "sync" in parts and d == "cuda":
        rows = sync_free(device, gmm_names)
        sections.append("### Host synchronisation in the GMM step (`torch.cuda.set_sync_debug_mode('error')`, "
                        "5 steps, K = 2)\n\n" + markdown(rows, ["estimator", "K", "verdict"]))
    if "compile" in parts:
        rows = compiled(device, args.rounds, gmm_names)
        sections.append("### `--compile` against eager, GMM K = 2 (first-order estimators)\n\n" + markdown(
            rows, ["estimator", "K", "mode", "eager ms/step", "compiled ms/step", "speed-up", "compile s"]))
    if "pixelcnn" in parts:
        configs = PIXELCNN_CONFIGS if d == "cuda" else PIXELCNN_TINY
        rows = pixelcnn_steps(device, args.rounds, configs)
        sections.append("### PixelVAE++'s PixelCNN++ decoder: one training step (`models/pixelcnn.py`, log-likelihood "
                        f"of a random 8-bit batch, backward, Adam; {args.rounds} rounds of 5-step blocks; on {d} only)"
                        "\n\n" + markdown(rows, ["configuration", "parameters", f"{d} ms/step", "peak GiB"]))
    sections.append(f"Whole run: {time.perf_counter() - started:.0f} s.")
    text = header(command_line(__file__, argv), "\n\n".join(sections), load_before)
    write_record(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
