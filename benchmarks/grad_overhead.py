"""The functional API's overhead: a training step with ``estibench.grad`` against the same step written by hand, side
by side in one run (the issue's target: at most 1.1× per step).

    python benchmarks/grad_overhead.py [--batch 32] [--threads 2] [--rounds 5] [--block 20] [--warmup 5] [--out FILE]

Two models of a user's own, in plain torch (no estibench model): the linear sigmoid belief network (784 → 200
Bernoulli latents → 784, a learned factorial prior; DisARM K = 1, RLOO K = 2) and a categorical VAE (784 → 200 → 20
categorical latents of 10 classes as one-hot codes → 200 → 784; RLOO K = 2, ReinMax K = 1, τ = 1).  f is the ELBO's
integrand log p(x | z) + log p(z) − log q(z | x).  The hand-written step does the estimator's arithmetic inline (the
same formulas, the same draws: the equivalence is checked before timing, gradients equal to 1e-5); the API step calls
``estibench.grad(q, f, name)``.  Each step: zero_grad, surrogate, backward, Adam (lr 1e-3); a fresh synthetic batch
of binary images per step (pixel by pixel from a fixed mean image; the cost does not depend on the values).  The
steps of all cells are timed in turn (``--rounds`` rounds of ``--block`` steps each, after ``--warmup`` steps), and
the ratio is the median API step over the median hand-written one of the same model and estimator.
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
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.distributions import Bernoulli, Independent, OneHotCategorical  # noqa: E402

from benchmarks.common import command_line, header, load_average, markdown, write_record  # noqa: E402
import estibench  # noqa: E402

TARGET = 1.1
OBS, HIDDEN, LATENT, GROUPS, CLASSES = 784, 200, 200, 20, 10


def mean_image() -> torch.Tensor:
    t = torch.linspace(-1, 1, 28)
    r = (t[:, None] ** 2 + t[None, :] ** 2).sqrt()
    return (0.02 + 0.5 * torch.exp(-((r - 0.45) / 0.2) ** 2)).reshape(-1)


class LinearSBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.dec = nn.Linear(OBS, LATENT), nn.Linear(LATENT, OBS)
        self.prior = nn.Parameter(torch.zeros(LATENT))

    def q(self, x):
        return Independent(Bernoulli(logits=self.enc(x - 0.5)), 1)

    def f(self, x, q):
        def f(z):
            log_px = -F.binary_cross_entropy_with_logits(self.dec(z), x.expand(*z.shape[:-1], OBS),
                                                         reduction="none").sum(-1)
            log_pz = (z * self.prior - F.softplus(self.prior)).sum(-1)
            return log_px + log_pz - q.log_prob(z)
        return f


class CategoricalVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(OBS, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, GROUPS * CLASSES))
        self.dec = nn.Sequential(nn.Linear(GROUPS * CLASSES, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, OBS))

    def q(self, x):
        return Independent(OneHotCategorical(logits=self.enc(x - 0.5).reshape(-1, GROUPS, CLASSES)), 1)

    def f(self, x, q):
        def f(z):
            log_px = -F.binary_cross_entropy_with_logits(self.dec(z.flatten(-2)), x.expand(*z.shape[:-2], OBS),
                                                         reduction="none").sum(-1)
            return log_px - GROUPS * torch.log(torch.tensor(float(CLASSES))) - q.log_prob(z)
        return f


# -- the hand-written estimators (the formulas of estimators/functional/, inline) -------------------------------------
def hand_disarm(q, f):
    a = q.base_dist.logits
    u = torch.rand((1, *a.shape))
    eps = u.log() - torch.log1p(-u)
    b = (eps < a.detach()).to(a.dtype)
    bt = (-eps < a.detach()).to(a.dtype)
    fb = f(b)
    with torch.no_grad():
        ft = f(bt)
        w = 0.5 * (fb.detach() - ft)[..., None] * (1.0 - 2.0 * bt) * (b != bt).to(a.dtype) * torch.sigmoid(a.abs())
    return ((w * a).sum(-1) + fb).mean(0)


def hand_rloo(q, f):
    z = q.sample((2,))
    fz, lq = f(z), q.log_prob(z)
    signal = (fz - (fz.sum(0, keepdim=True) - fz)).detach()  # K = 2: the other sample is the baseline
    return (signal * lq + fz).mean(0)


def hand_reinmax(q, f):
    ell = torch.log_softmax(q.base_dist.logits, -1)
    with torch.no_grad():
        tiny = torch.finfo(ell.dtype).tiny
        g = -torch.log(-torch.log(torch.rand((1, *ell.shape)).clamp_(min=tiny, max=1.0 - 1e-7)))
        y = F.one_hot((ell + g).argmax(-1), CLASSES).to(ell.dtype)
        p1 = 0.5 * (y + torch.softmax(ell, -1))
        shift = p1.clamp(min=tiny).log() - ell
    soft = 2.0 * torch.softmax(ell + shift, -1) - 0.5 * ell.exp()
    return f(y + (soft - soft.detach())).mean(0)


HAND = {"disarm": hand_disarm, "rloo": hand_rloo, "reinmax": hand_reinmax}
PARTICLES = {"disarm": 1, "rloo": 2, "reinmax": 1}
CELLS = [("linear SBN", LinearSBN, "disarm"), ("linear SBN", LinearSBN, "rloo"),
         ("categorical VAE", CategoricalVAE, "rloo"), ("categorical VAE", CategoricalVAE, "reinmax")]


class Step:
    def __init__(self, model_class, name, api: bool, batch: int, seed: int = 0):
        torch.manual_seed(seed)
        self.model, self.name, self.api, self.batch = model_class(), name, api, batch
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.mean = mean_image()

    def surrogate(self, x):
        q = self.model.q(x)
        f = self.model.f(x, q)
        if self.api:
            return estibench.grad(q, f, self.name, particles=PARTICLES[self.name]).surrogate
        return HAND[self.name](q, f)

    def __call__(self):
        x = torch.bernoulli(self.mean.expand(self.batch, OBS))
        self.opt.zero_grad()
        (-self.surrogate(x).mean()).backward()
        self.opt.step()


def equivalent(model_class, name) -> float:
    """The largest gradient difference between the hand-written and the API surrogate on the same draws."""
    step = Step(model_class, name, api=True, batch=8)
    x = torch.bernoulli(step.mean.expand(8, OBS), generator=torch.Generator().manual_seed(1))
    grads = []
    for api in (True, False):
        step.api = api
        step.model.zero_grad()
        torch.manual_seed(5)
        (-step.surrogate(x).mean()).backward()
        grads.append([p.grad.clone() for p in step.model.parameters()])
    return max(float((g - h).abs().max()) for g, h in zip(*grads))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--block", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "grad_overhead.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before, started = load_average(), time.perf_counter()
    differences = {(label, name): equivalent(cls, name) for label, cls, name in CELLS}
    for key, diff in differences.items():
        if diff > 1e-5:
            print(f"grad_overhead: error: {key}: the API and the hand-written step differ by {diff:.2e}",
                  file=sys.stderr)
            return 1
    steps = {(label, name, api): Step(cls, name, api, args.batch)
             for label, cls, name in CELLS for api in (False, True)}
    for s in steps.values():
        for _ in range(args.warmup):
            s()
    times = {k: [] for k in steps}
    for _ in range(args.rounds):
        for key, s in steps.items():
            for _ in range(args.block):
                t0 = time.perf_counter()
                s()
                times[key].append(time.perf_counter() - t0)
    rows = []
    for label, _, name in CELLS:
        hand = 1e3 * statistics.median(times[(label, name, False)])
        api = 1e3 * statistics.median(times[(label, name, True)])
        rows.append([label, name, PARTICLES[name], hand, api, api / hand, differences[(label, name)]])
        print(rows[-1], flush=True)
    n = args.rounds * args.block
    text = (f"torch threads: {args.threads}; batch {args.batch}; {n} timed steps per cell ({args.rounds} rounds × "
            f"{args.block}, the cells in turn) after {args.warmup} warm-up steps each.\n\n"
            f"### A training step: `estibench.grad` against the hand-written estimator (target ≤ {TARGET}×)\n\n"
            + markdown(rows, ["model", "estimator", "K", "hand-written median ms", "estibench.grad median ms",
                              "ratio", "max |Δ gradient| (same draws)"], floatfmt=".3g")
            + f"\n\nWhole run: {time.perf_counter() - started:.0f} s.")
    write_record(header(command_line(__file__, argv), text, load_before,
                        threads=f"{args.threads} torch threads (torch.set_num_threads)"), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
