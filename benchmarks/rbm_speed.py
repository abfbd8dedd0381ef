"""RBM priors: AIS throughput, and one VIMCO training step on the RBM-prior VAE against a hand-written
PyTorch loop of the same method (issue 11 §5).

    python benchmarks/rbm_speed.py [--rounds 5] [--out FILE]

* AIS: forward AIS (``models/rbm.py``) on the RBM-prior paper's 200 + 400 RBM and on DVAE++'s
  100 + 100 one, 1,000 chains × 100 temperatures, float64 (as the estimates run); throughput =
  chains × temperatures per second, median of ``--rounds`` runs.
* Training step: ``rbm_vae`` (linear, factorial guide, 100 + 100 latents, 784 pixels, the rbm suite's
  200 persistent chains × 10 Gibbs sweeps per step), VIMCO at K = 5, batch 24, R = 1, one torch thread:
  the harness step (``benchmarks/common.py: Trainer``: ``estimator.gradients`` + one Adam step) against
  a hand-written loop (below, ``HandVimcoRBM``: ``nn.Linear`` encoder and decoder, the RBM's W, a, b as
  plain tensors, the same leave-one-out signal, the same negative phase from its own persistent chains,
  ``loss.backward()``, ``torch.optim.Adam``).  Paired blocks of 20 steps, 10 warm-up steps; ratio =
  median over rounds of (harness block ÷ the hand-written block beside it).  Target: ≤ 1.3×.
Writes ``rbm_speed.md`` next to this script unless ``--out``.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import Trainer, header, load_average, markdown, sbn_data  # noqa: E402

BLOCK = 20
WARMUP = 10
K, BATCH, CHAINS, SWEEPS = 5, 24, 200, 10


def ais_throughput(n_v, n_h, rounds, chains=1000, steps=100):
    from estibench.models.rbm import RBM
    rbm = RBM((0,), n_v, n_h, init_scale=0.05)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        rbm.log_partition_ais(chains=chains, steps=steps)
        times.append(time.perf_counter() - started)
    t = statistics.median(times)
    return {"RBM": f"{n_v} + {n_h}", "chains × temperatures": f"{chains} × {steps}", "median s": t,
            "per second": chains * steps / t}


class HandVimcoRBM:
    """VIMCO on an RBM-prior VAE written as plainly as we can (no harness, no registry)."""

    def __init__(self, x_train, train_mean, D=200, lr=1e-3):
        self.x_train, self.mean = x_train, train_mean
        n1 = D // 2
        self.n1 = n1
        self.enc = nn.Linear(784, D)
        self.dec = nn.Linear(D, 784)
        with torch.no_grad():
            self.dec.bias.copy_(torch.logit(train_mean.clamp(0.001, 0.999)))
        self.W = (torch.rand(n1, D - n1) * 0.02 - 0.01).requires_grad_()
        self.a = torch.zeros(n1, requires_grad=True)
        self.b = torch.zeros(D - n1, requires_grad=True)
        self.chains = torch.bernoulli(torch.full((CHAINS, n1), 0.5))
        params = [*self.enc.parameters(), *self.dec.parameters(), self.W, self.a, self.b]
        self.opt = torch.optim.Adam(params, lr=lr)

    def neg_energy(self, z):
        z1, z2 = z[..., :self.n1], z[..., self.n1:]
        return z1 @ self.a + z2 @ self.b + ((z1 @ self.W) * z2).sum(-1)

    def __call__(self):
        x = self.x_train[torch.randint(len(self.x_train), (BATCH,))]
        logits = self.enc(x - self.mean)
        z = torch.bernoulli(torch.sigmoid(logits).detach().expand(K, BATCH, -1))
        log_q = (z * logits - F.softplus(logits)).sum(-1)
        px = self.dec(z)
        log_p = (x * px - F.softplus(px)).sum(-1) + self.neg_energy(z)
        log_w = log_p - log_q
        bound = torch.logsumexp(log_w, 0) - math.log(K)
        others = (log_w.sum(0, keepdim=True) - log_w) / (K - 1)
        loo = torch.stack([torch.logsumexp(torch.cat([log_w[:k], others[k:k + 1], log_w[k + 1:]]), 0)
                           for k in range(K)]) - math.log(K)
        signal = (bound - loo).detach()
        with torch.no_grad():  # negative phase: persistent chains
            v = self.chains
            for _ in range(SWEEPS):
                h = torch.bernoulli(torch.sigmoid(self.b + v @ self.W))
                v = torch.bernoulli(torch.sigmoid(self.a + h @ self.W.T))
            self.chains = v
            negatives = torch.cat([v, h], -1)
        log_z_surrogate = self.neg_energy(negatives).mean()
        loss = -((signal * log_q).sum(0) + bound).mean() + log_z_surrogate
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def step_ratio(rounds):
    from estibench import estimators
    from estibench.harness.runner import build_model
    data = sbn_data()
    x_train = data.train.float()
    mean = x_train.mean(0)
    model = build_model("rbm_vae", seeds=(0,), chains=CHAINS, gibbs_sweeps=SWEEPS, train_mean=mean)
    est = estimators.get("vimco")
    est.check(model, K)
    est.bind(model)

    def batch():
        return x_train[torch.randint(len(x_train), (1, BATCH))]

    harness = Trainer(model, est, batch, K)
    hand = HandVimcoRBM(x_train, mean)
    for _ in range(WARMUP):
        harness()
        hand()
    pairs = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(BLOCK):
            hand()
        t_hand = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(BLOCK):
            harness()
        t_harness = time.perf_counter() - started
        pairs.append((t_hand / BLOCK, t_harness / BLOCK))
    hand_ms = statistics.median(p[0] for p in pairs) * 1e3
    harness_ms = statistics.median(p[1] for p in pairs) * 1e3
    ratio = statistics.median(p[1] / p[0] for p in pairs)
    return {"method": "vimco (K = 5, 200 chains × 10 sweeps)", "hand-written ms/step": hand_ms,
            "harness ms/step": harness_ms, "ratio": ratio, "target": "≤ 1.3×",
            "met": "yes" if ratio <= 1.3 else "no"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "rbm_speed.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load = load_average()
    ais = [ais_throughput(200, 400, args.rounds), ais_throughput(100, 100, args.rounds)]
    step = [step_ratio(args.rounds)]
    text = [header(f"python benchmarks/rbm_speed.py --rounds {args.rounds}", load_before=load), "",
            "## AIS throughput (forward AIS, float64, one thread)", "",
            markdown(ais, ["RBM", "chains × temperatures", "median s", "per second"], floatfmt=",.3g"), "",
            "## One training step against a hand-written loop", "",
            markdown(step, ["method", "hand-written ms/step", "harness ms/step", "ratio", "target", "met"]), ""]
    with open(args.out, "w") as fh:
        fh.write("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
