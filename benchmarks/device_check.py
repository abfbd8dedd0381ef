"""The device checks of issue 13 as one prepared run: what a session that is lent a GPU runs once (device time is
scarce: with the defaults the whole run takes a few minutes on the GPU, plus the CPU side), recording every figure
with the device's name.

    python benchmarks/device_check.py [--device cuda] [--iterations 1000] [--rounds 3]
                                      [--parts gmm,sbn,ais,sync,compile,pixelcnn,conv] [--conv-steps 3]
                                      [--conv-ais 5000x1000] [--out FILE]

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
* ``conv``: the convolutional VAEs (``models/conv_vae.py``) at the papers' configurations (:data:`CONV_CONFIGS`:
  ``CONFIGS["paper"]``, ``"paper_cifar"`` with ``overlap_exp`` and DVAE++'s batch 100, ``"pixelvae"`` /
  ``"pixelvae_cifar"`` with ``gumbolt`` and PixelVAE++'s batches 128 / 64, and ``ConvVAENormal`` at each size with
  ``vae``; the RBM options of the study's paper presets): parameters, median ms of ``--conv-steps`` training steps
  (``benchmarks/conv_step.py``'s step: fresh synthetic batch, ``est.surrogate(...).loss.backward()``, Adam) after 2
  warm-up steps, peak device memory (``torch.cuda.max_memory_allocated`` over the timed steps), and the forward-AIS
  time of the papers' RBM priors (64 + 64, 200 + 200, 256 + 256) at ``--conv-ais`` chains × temperatures (PixelVAE++'s
  training AIS: 5,000 × 1,000).  A configuration that fails (out of memory) is a row saying so, not the end of the
  run.  On the device only; without a GPU the same code runs ``CONFIGS["tiny"]`` / ``"pixelvae_small"`` sizes, 1 step,
  and AIS at 50 × 10 on the 8 + 8 RBM: the script's check.

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
PARTS = ("gmm", "sbn", "ais", "sync", "compile", "pixelcnn", "conv")

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


#: the conv part's configurations: (label, model, ``CONFIGS`` key, estimator, batch); the RBM's options are the conv
#: study's paper presets' (``studies/conv/settings.py``: 1,000 persistent chains × 40 Gibbs sweeps)
CONV_CONFIGS = (("DVAE++ binary (RBM 8 + 8, normal local)", "conv_vae", "paper", "overlap_exp", 100),
                ("DVAE++ binary, Normal / Normal", "conv_vae_normal", "paper", "vae", 100),
                ("DVAE++ CIFAR-10 (RBM 64 + 64, normal local)", "conv_vae", "paper_cifar", "overlap_exp", 100),
                ("DVAE++ CIFAR-10, Normal / Normal", "conv_vae_normal", "paper_cifar", "vae", 100),
                ("PixelVAE++ binary (RBM 200 + 200)", "conv_vae", "pixelvae", "gumbolt", 128),
                ("PixelVAE++ binary, Normal", "conv_vae_normal", "pixelvae", "vae", 128),
                ("PixelVAE++ CIFAR-10 (RBM 256 + 256)", "conv_vae", "pixelvae_cifar", "gumbolt", 64),
                ("PixelVAE++ CIFAR-10, Normal", "conv_vae_normal", "pixelvae_cifar", "vae", 64))
#: the same code paths at sizes the CPU runs in seconds (the script's check, not paper configurations)
CONV_TINY = (("tiny (RBM 3 + 3, exact local), the script's check", "conv_vae", "tiny", "overlap_exp", 4),
             ("tiny, Normal / Normal, the script's check", "conv_vae_normal", "tiny", "vae", 4),
             ("pixelvae_small (RBM 8 + 8), the script's check", "conv_vae", "pixelvae_small", "gumbolt", 4))
CONV_PAPER_RBM = {"chains": 1000, "gibbs_sweeps": 40}
CONV_TINY_RBM = {"chains": 10, "gibbs_sweeps": 1}


def conv_steps(device, configs=CONV_CONFIGS, rbm_options=CONV_PAPER_RBM, steps=3, warmup=2):
    """Per configuration: parameters, median ms per training step, peak device memory (CUDA) of the timed steps;
    and the built RBM priors (by size) for :func:`conv_ais`."""
    from benchmarks.conv_step import Step, build, n_parameters
    from estibench.models.conv_vae import CONFIGS
    from estibench.studies.conv.settings import normal_options
    rows, rbms = [], {}
    for label, model_name, config, est_name, batch in configs:
        model = est = step = None
        try:
            opts = dict(CONFIGS[config])
            opts = normal_options(opts) if model_name == "conv_vae_normal" else {**opts, **rbm_options}
            model, est = build(model_name, opts, est_name, {})
            model.to(device)
            est.to(device)
            params = n_parameters(model, est)
            if model_name == "conv_vae" and model.rbm.n_visible + model.rbm.n_hidden > 16:
                rbms.setdefault(f"{model.rbm.n_visible} + {model.rbm.n_hidden}", model.rbm)
            step = Step(model, est, batch)
            for _ in range(warmup):
                step()
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                step()
                sync(device)
                times.append(time.perf_counter() - start)
            peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
            rows.append([label, est_name, batch, params, 1e3 * statistics.median(times), peak, "ok"])
        except Exception as err:  # noqa: BLE001 — a failed configuration (out of memory) is a row, the run goes on
            rows.append([label, est_name, batch, float("nan"), float("nan"), float("nan"),
                         f"{type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''}"])
        finally:
            del model, est, step
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print("conv", rows[-1], flush=True)
    return rows, rbms


def conv_ais(device, rbms, chains, steps):
    """Forward AIS (``log_partition_ais``) on each RBM prior: seconds and chains × temperatures per second."""
    rows = []
    for size, rbm in rbms.items():
        rbm = rbm.to(device)
        rbm.log_partition_ais(chains=min(chains, 100), steps=min(steps, 10))  # warm-up
        sync(device)
        start = time.perf_counter()
        rbm.log_partition_ais(chains=chains, steps=steps)
        sync(device)
        t = time.perf_counter() - start
        rows.append([size, f"{chains:,} × {steps:,}", t, chains * steps / t])
        print("conv ais", rows[-1], flush=True)
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
    p.add_argument("--conv-steps", type=int, default=3, help="conv: timed steps per configuration (default: 3)")
    p.add_argument("--conv-ais", default="5000x1000",
                   help="conv: AIS chains x temperatures on the papers' RBM priors (default: 5000x1000)")
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
    try:
        conv_chains, conv_temps = (int(v) for v in args.conv_ais.lower().split("x"))
    except ValueError:
        print(f"device_check: error: --conv-ais {args.conv_ais!r}: give CHAINSxTEMPERATURES, e.g. 5000x1000",
              file=sys.stderr)
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
    if "conv" in parts:
        on_device = d == "cuda"
        rows, rbms = conv_steps(device, CONV_CONFIGS if on_device else CONV_TINY,
                                CONV_PAPER_RBM if on_device else CONV_TINY_RBM,
                                steps=args.conv_steps if on_device else 1, warmup=2 if on_device else 1)
        chains_c, temps_c = (conv_chains, conv_temps) if on_device else (min(conv_chains, 50), min(conv_temps, 10))
        if not on_device:  # the check's AIS: the tiny RBMs are under 16 bits; time the 8 + 8 one anyway
            from estibench.models.rbm import RBM
            rbms = {"8 + 8": RBM((0,), 8, 8)}
        ais_rows = conv_ais(device, rbms, chains_c, temps_c)
        steps_shown = args.conv_steps if on_device else 1
        what = "the papers' configurations" if on_device else "tiny sizes (no GPU: the script's check)"
        sections.append(f"### Convolutional VAEs at {what}: one training step (`models/conv_vae.py`, "
                        f"`benchmarks/conv_step.py`'s step, K = 1, R = 1, synthetic batch; median of {steps_shown} "
                        f"steps after warm-up; on {d} only)\n\n" + markdown(
                            rows, ["configuration", "estimator", "batch", "parameters", f"{d} ms/step", "peak GiB",
                                   "status"]))
        sections.append(f"### Forward AIS on the conv models' RBM priors ({chains_c:,} chains × {temps_c:,} "
                        f"temperatures, float64, `log_partition_ais`, one run after a warm-up; on {d})\n\n" + markdown(
                            ais_rows, ["RBM", "chains × temperatures", "s", "chains × temperatures per s"]))
    sections.append(f"Whole run: {time.perf_counter() - started:.0f} s.")
    text = header(command_line(__file__, argv), "\n\n".join(sections), load_before)
    write_record(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
