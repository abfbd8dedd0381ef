"""The convolutional VAEs' training step on the CPU (``models/conv_vae.py``): every cell of the conv study's CPU
budget (``studies/conv/settings.py``: ``DVAEPP_CPU`` without its enumerable ``tiny`` part, on ``CONFIGS["small"]``, and
``PIXELVAE_CPU`` on ``CONFIGS["pixelvae_small"]``), side by side in one run, against the issue's target of 50 ms per
step at batch 32.

    python benchmarks/conv_step.py [--batch 32] [--threads 2] [--rounds 4] [--block 5] [--warmup 3]
                                   [--profile overlap_exp:rbm/normal] [--paper] [--smoke] [--out FILE]

Per cell: parameters (model + estimator), median ms per step (each step timed alone; ``--rounds`` rounds, each of
``--block`` steps of every cell in turn, after ``--warmup`` steps of each), the ratio to 50 ms, and the peak memory
of one step: the largest sum of the bytes the CPU allocator held above the step's start, from the ``[memory]`` events
of ``torch.profiler`` (``profile_memory=True``; parameters, gradients and Adam state that exist before the step are
not in it; Adam's first step allocates its state and is the warm-up's).  A step is the brief's: ``opt.zero_grad();
est.surrogate(model, x, 1).loss.backward(); opt.step()`` (the engine's Adam, ``harness.runner.make_optimiser``,
lr 1e-3, over the model's and the estimator's parameters) on a fresh batch of binary images drawn pixel by pixel
from a fixed mean image (synthetic data: no dataset is read; the step's cost does not depend on the pixel values).  The estimators get the study's options
(``BETA``), the models the study's (``CPU_RBM``: 100 persistent chains × 10 Gibbs sweeps).  ``--profile`` profiles
one cell's step with ``torch.profiler`` and lists the top operators by self CPU time.  ``--paper`` adds the papers'
configurations' parameters and a meta-device activation estimate (``models.conv_blocks.activation_estimate`` of
the networks' forward pass; estimates, not measurements).  ``--smoke``: 2 timed steps per cell, no warm-up beyond 1
step, no profile: a seconds-long check that every cell runs.  The cells with an RBM prior and local latents run a
second time with the encoder-features cache off (``ConvVAE.features_cache = False``, label
``[features cache off]``), interleaved with the others, for the ratio of what the cache saves (``--no-baseline``
leaves them out).
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
from torch import nn  # noqa: E402

from benchmarks.common import command_line, header, load_average, markdown, write_record  # noqa: E402
from estibench.harness.runner import make_optimiser  # noqa: E402

TARGET_MS = 50.0
#: the label suffix of a cell run without the encoder-features cache (``ConvVAE.features_cache = False``)
NO_CACHE = " [features cache off]"


def train_mean_for(downsample: int) -> torch.Tensor:
    """A fixed digit-like mean image (a bright ring on a dark background) of ``(28 // downsample)²`` pixels."""
    side = 28 // downsample
    t = torch.linspace(-1, 1, side)
    r = (t[:, None] ** 2 + t[None, :] ** 2).sqrt()
    return (0.02 + 0.5 * torch.exp(-((r - 0.45) / 0.2) ** 2)).reshape(-1).float()


def study_cells():
    """(label, model class name, model options, estimator, estimator options) of each CPU-budget cell of the conv
    study (the ``tiny`` part aside)."""
    from estibench.studies.conv.settings import BETA, DVAEPP_CPU, PIXELVAE_CPU, TINY_PART
    cells = []
    for config, parts in (("small", [p for p in DVAEPP_CPU if p is not TINY_PART]), ("pixelvae_small", PIXELVAE_CPU)):
        for part in parts:
            model = part.model or "conv_vae"
            opts = dict(part.model_options)
            for est in part.estimators:
                if model == "conv_vae_normal":
                    kind = "normal/normal"
                else:
                    kind = f"{opts.get('prior', 'rbm')}/{opts.get('local', 'normal')}"
                    if not opts.get("local_groups", 2):
                        kind = f"{opts.get('prior', 'rbm')}/none"
                cells.append((f"{config} {est} {kind}", model, opts, est, dict(BETA.get(est, {}))))
    return cells


def build(model_name, opts, est_name, est_opts, seed=0):
    from estibench import estimators
    from estibench.models.conv_vae import ConvVAE, ConvVAENormal
    cls = {"conv_vae": ConvVAE, "conv_vae_normal": ConvVAENormal}[model_name]
    opts = dict(opts)
    colour = str(opts.get("dataset", "")).startswith("cifar")
    if not colour:
        opts["train_mean"] = train_mean_for(int(opts.get("downsample", 2)))
    torch.manual_seed(seed)
    model = cls(seeds=(seed,), **opts)
    est = estimators.get(est_name, **est_opts)
    est.check(model, 1)
    est.bind(model)
    return model, est


class Step:
    """One training step of ``model`` by ``est`` at batch ``batch`` (a fresh synthetic batch each call)."""

    def __init__(self, model, est, batch, lr=1e-3):
        self.model, self.est, self.batch = model, est, batch
        self.params = list(model.parameters()) + list(est.parameters())
        self.opt = make_optimiser(self.params, lr)  # the engine's Adam (one multi-tensor kernel per operation)
        if model.kind == "colour":
            self.draw = lambda: torch.randint(0, 256, (model.replicates, batch, *model.obs_shape),
                                                  device=model.device).float()
        else:
            mean = model.train_mean
            self.draw = lambda: torch.bernoulli(mean.expand(model.replicates, batch, mean.numel()))

    def __call__(self):
        x = self.draw()
        self.opt.zero_grad()
        self.est.surrogate(self.model, x, 1).loss.backward()
        self.opt.step()


def n_parameters(model, est) -> int:
    return sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in est.parameters())


def peak_step_bytes(step) -> float:
    """The peak of the CPU allocator's bytes above the step's start during one step (``torch.profiler``'s memory
    events, cumulated in time order); NaN if this torch does not expose them."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    try:
        events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:
        return float("nan")
    live = peak = 0
    for _, nbytes in sorted(events):
        live += nbytes
        peak = max(peak, live)
    return float(peak)


def time_cells(steps, rounds, block, warmup):
    for s in steps.values():
        for _ in range(warmup):
            s()
    times = {k: [] for k in steps}
    for _ in range(rounds):
        for label, s in steps.items():
            for _ in range(block):
                start = time.perf_counter()
                s()
                times[label].append(time.perf_counter() - start)
    return times


def profile_table(step, rows=15, steps=3) -> str:
    from torch.profiler import ProfilerActivity, profile
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40)
    return table


# -- the papers' configurations: sizes and activation estimates (no training) --------------------------------------
class ForwardOfNetworks(nn.Module):
    """The networks of one replicate (:class:`models.conv_vae.ConvNet`) run as one training forward pass: the encoder,
    the global guide, the top of the decoder, every local group (prior, guide, merge, block) and the likelihood at the
    data — a wrapper for :func:`models.conv_blocks.activation_estimate` (latents are the guide's outputs squashed,
    shapes only)."""

    def __init__(self, net, normal: bool, hierarchical: bool):
        super().__init__()
        self.net, self.normal, self.hierarchical = net, normal, hierarchical

    def forward(self, ximg):
        net = self.net
        feats = net(ximg, "features")
        logits = net(feats, "global", 0)
        if self.normal:
            zeta = logits.chunk(2, -1)[0]
        elif self.hierarchical:
            z1 = torch.sigmoid(logits)
            zeta = torch.cat([z1, torch.sigmoid(net(feats, "global", 1, z1))], -1)
        else:
            zeta = torch.sigmoid(logits)
        d = net(zeta, "top")
        for j in range(len(net.local_prior)):
            net(d, "local_prior", j)
            q = net(d, "local_post", j, feats)
            h = q[:, :net.local_channels]
            d = net(d, "advance", j, h)
        return net(ximg, "log_px", net(d, "out"))


PAPER = (  # (label, model, CONFIGS key, extra options, estimator, batch)
    ("DVAE++ binary, RBM 8+8 / normal local", "conv_vae", "paper", {}, "overlap_exp", 100),
    ("DVAE++ binary, Normal / Normal", "conv_vae_normal", "paper", {}, "vae", 100),
    ("DVAE++ CIFAR-10, RBM 64+64 / normal local", "conv_vae", "paper_cifar", {}, "overlap_exp", 100),
    ("DVAE++ CIFAR-10, Normal / Normal", "conv_vae_normal", "paper_cifar", {}, "vae", 100),
    ("PixelVAE++ binary, RBM 200+200", "conv_vae", "pixelvae", {}, "gumbolt", 128),
    ("PixelVAE++ binary, Normal", "conv_vae_normal", "pixelvae", {}, "vae", 128),
    ("PixelVAE++ CIFAR-10, RBM 256+256", "conv_vae", "pixelvae_cifar", {}, "gumbolt", 64),
    ("PixelVAE++ CIFAR-10, Normal", "conv_vae_normal", "pixelvae_cifar", {}, "vae", 64),
)


def paper_options(model_name, config, extra=None):
    from estibench.models.conv_vae import CONFIGS
    from estibench.studies.conv.settings import normal_options
    opts = {**CONFIGS[config], **(extra or {})}
    return normal_options(opts) if model_name == "conv_vae_normal" else opts


def paper_estimates():
    from estibench.models.conv_blocks import activation_estimate
    from estibench.models.conv_vae import ConvNet  # a plain replicate, for the meta-device forward
    rows = []
    for label, model_name, config, extra, est_name, batch in PAPER:
        opts = paper_options(model_name, config, extra)
        normal = model_name == "conv_vae_normal"
        model, est = build(model_name, opts if normal else {**opts, "chains": 10}, est_name, {})
        C, H, W = model.image
        global_sizes = ((model.latent_dim,) if model_name == "conv_vae_normal" else model.split_sizes)
        net = ConvNet(model.image, model.likelihood, model.width, model.scales, model.blocks, global_sizes,
                      model_name == "conv_vae_normal", getattr(model, "hierarchical_guide", False),
                      model.local_groups, model.local_channels, model.local, model.n_mix, model.pixelcnn_resnets,
                      model.pixelcnn_filters, None)
        wrapper = ForwardOfNetworks(net, model_name == "conv_vae_normal", getattr(model, "hierarchical_guide", False))
        est_act = activation_estimate(wrapper, (batch, C, H, W))
        params = n_parameters(model, est)
        rows.append([label, config, est_name, batch, params, est_act["elements"] / 1e6, est_act["bytes"] / 2 ** 30])
        print("paper", rows[-1], flush=True)
        del model, est, net, wrapper
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--profile", default="small overlap_exp rbm/normal",
                   help="the cell label to profile ('' for none; default: small overlap_exp rbm/normal)")
    p.add_argument("--paper", action="store_true", help="add the papers' configurations' sizes (estimates)")
    p.add_argument("--no-baseline", action="store_true",
                   help="leave out the cells run without the encoder-features cache")
    p.add_argument("--smoke", action="store_true", help="2 timed steps per cell after 1 warm-up, no profile")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_step.md"))
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.block, args.warmup, args.profile = 1, 2, 1, ""
    torch.set_num_threads(args.threads)
    load_before, started = load_average(), time.perf_counter()
    cells = study_cells()
    labels = [c[0] for c in cells]
    if args.profile and args.profile not in labels:
        print(f"conv_step: error: --profile {args.profile!r}: choose from {', '.join(labels)}", file=sys.stderr)
        return 2
    built = {label: build(m, o, e, eo) for label, m, o, e, eo in cells}
    for label, m, o, e, eo in cells:  # the same cells without the encoder-features cache, for the ratio
        if m == "conv_vae" and o.get("local_groups", 2) and not args.no_baseline:
            model, est = build(m, o, e, eo)
            model.features_cache = False
            built[label + NO_CACHE] = model, est
    steps = {label: Step(model, est, args.batch) for label, (model, est) in built.items()}
    times = time_cells(steps, args.rounds, args.block, args.warmup)
    rows = []
    for label, (model, est) in built.items():
        ms = 1e3 * statistics.median(times[label])
        q = statistics.quantiles([1e3 * t for t in times[label]], n=4) if len(times[label]) >= 2 else [ms, ms, ms]
        peak = peak_step_bytes(steps[label]) / 2 ** 20
        with_cache = 1e3 * statistics.median(times[label[:-len(NO_CACHE)]]) if label.endswith(NO_CACHE) else None
        rows.append([label, n_parameters(model, est), ms, f"{q[0]:.1f}–{q[2]:.1f}", ms / TARGET_MS, peak,
                     "" if with_cache is None else f"{with_cache / ms:.2f}"])
        print("step", rows[-1], flush=True)
    n = args.rounds * args.block
    sections = [f"torch threads: {args.threads} (`torch.set_num_threads`); batch {args.batch}, R = 1 (seeds = (0,)), "
                f"K = 1; {n} timed steps per cell ({args.rounds} rounds × {args.block}, the cells in turn) after "
                f"{args.warmup} warm-up steps each.",
                f"### Training step of the conv study's CPU cells (target {TARGET_MS:.0f} ms at batch 32)\n\n"
                + markdown(rows, ["cell (configuration, estimator, prior/local)", "parameters", "median ms/step",
                                  "quartiles ms", f"÷ {TARGET_MS:.0f} ms", "peak step MiB (profiler)",
                                  "with cache ÷ without"])]
    if args.profile:
        model, est = built[args.profile]
        table = profile_table(steps[args.profile])
        sections.append(f"### Profile of one step: `{args.profile}` (3 steps, `torch.profiler`, top operators by self "
                        f"CPU time)\n\n```\n{table}\n```")
        print(table)
    if args.paper:
        prow = paper_estimates()
        sections.append("### The papers' configurations: parameters and activation estimates (estimates, not "
                        "measurements)\n\nParameters: model + estimator (the RBM's included).  Activations: "
                        "`models.conv_blocks.activation_estimate` of one replicate's networks run as one training "
                        "forward pass on the meta device (encoder, global guide, decoder top, every local group, "
                        "likelihood at the data) at the paper's batch, K = 1, float32: each sub-module's output "
                        "counted once — a proxy for what autograd keeps for the backward pass, not byte-exact; "
                        "the RBM's chains and AIS are not in it.\n\n"
                        + markdown(prow, ["configuration", "CONFIGS", "estimator", "batch", "parameters",
                                          "activation elements (M)", "activation GiB (float32)"], floatfmt=".3f"))
    sections.append(f"Whole run: {time.perf_counter() - started:.0f} s.")
    text = header(command_line(__file__, argv), "\n\n".join(sections), load_before,
                  threads=f"{args.threads} torch threads (torch.set_num_threads)")
    write_record(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
