"""RBM priors: AIS throughput, and one training step of every RBM-prior method on the RBM-prior VAE against
a hand-written PyTorch loop of the same method (issue 11 §5).

    python benchmarks/rbm_speed.py [--rounds 5] [--out FILE]

* AIS: forward AIS (``models/rbm.py``) on the RBM-prior paper's 200 + 400 RBM and on DVAE++'s
  100 + 100 one, 1,000 chains × 100 temperatures, float64 (as the estimates run); throughput =
  chains × temperatures per second, median of ``--rounds`` runs.
* Training step: ``rbm_vae`` (linear, factorial guide, 100 + 100 latents, 784 pixels, the rbm suite's
  200 persistent chains × 10 Gibbs sweeps per step), batch 24, R = 1, one torch thread, each method at
  its defaults: overlap_exp (β = 12) and spike_exp (β = 5) with DVAE++'s §5 bound, gumbolt (τ = 0.25) at
  K = 1; VIMCO and Contrastive RWS at K = 5.  The harness step (``benchmarks/common.py: Trainer``:
  ``estimator.gradients`` + one Adam step) against a hand-written loop (below, ``Hand*``: ``nn.Linear``
  encoder and decoder, the RBM's W, a, b as plain tensors, the same objective, the same negative phase
  from its own persistent chains, ``loss.backward()``, ``torch.optim.Adam``).  Paired blocks of 20 steps,
  the methods interleaved, 10 warm-up steps; ratio = median over rounds of (harness block ÷ the
  hand-written block beside it).  Target: ≤ 1.3×.
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


class HandRBM:
    """An RBM-prior VAE (100 + 100 latents, linear encoder and decoder, factorial guide) and its negative phase,
    written as plainly as we can (no harness, no registry); subclasses give one method's loss."""

    particles = 1

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

    def negatives(self):
        with torch.no_grad():  # persistent chains
            v = self.chains
            for _ in range(SWEEPS):
                h = torch.bernoulli(torch.sigmoid(self.b + v @ self.W))
                v = torch.bernoulli(torch.sigmoid(self.a + h @ self.W.T))
            self.chains = v
            return torch.cat([v, h], -1)

    def log_px(self, x, z):
        px = self.dec(z)
        return (x * px - F.softplus(px)).sum(-1)

    def __call__(self):
        x = self.x_train[torch.randint(len(self.x_train), (BATCH,))]
        loss = self.loss(x) + self.neg_energy(self.negatives()).mean()  # + the −∇ log Z surrogate
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class HandVimcoRBM(HandRBM):
    particles = K

    def loss(self, x):
        logits = self.enc(x - self.mean)
        z = torch.bernoulli(torch.sigmoid(logits).detach().expand(K, BATCH, -1))
        log_q = (z * logits - F.softplus(logits)).sum(-1)
        log_w = self.log_px(x, z) + self.neg_energy(z) - log_q
        bound = torch.logsumexp(log_w, 0) - math.log(K)
        others = (log_w.sum(0, keepdim=True) - log_w) / (K - 1)
        loo = torch.stack([torch.logsumexp(torch.cat([log_w[:k], others[k:k + 1], log_w[k + 1:]]), 0)
                           for k in range(K)]) - math.log(K)
        signal = (bound - loo).detach()
        return -((signal * log_q).sum(0) + bound).mean()


class HandContrastiveRWS(HandRBM):
    particles = K

    def __call__(self):
        x = self.x_train[torch.randint(len(self.x_train), (BATCH,))]
        logits = self.enc(x - self.mean)
        z = torch.bernoulli(torch.sigmoid(logits).detach().expand(K, BATCH, -1))
        log_q = (z * logits - F.softplus(logits)).sum(-1)
        log_p = self.log_px(x, z) + self.neg_energy(z)
        w = torch.softmax((log_p - log_q).detach(), 0)
        negatives = self.negatives()
        with torch.no_grad():  # sleep phase: x⁻ ~ p(x | z⁻)
            x_sleep = torch.bernoulli(torch.sigmoid(self.dec(negatives)))
        sleep_logits = self.enc(x_sleep - self.mean)
        sleep = (negatives * sleep_logits - F.softplus(sleep_logits)).sum(-1).mean()
        loss = -(w * log_p).sum(0).mean() - (w * log_q).sum(0).mean() - sleep + self.neg_energy(negatives).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class HandOverlapExp(HandRBM):
    """DVAE++'s §5 bound, one factorial group, K = 1, β = 12: ζ by the stable inverse CDF of the exponential mixture."""
    beta = 12.0

    def relax(self, logits):
        q = torch.sigmoid(logits)
        rho = torch.rand_like(q)
        e = math.exp(-self.beta)
        B = (1 - q) - q * e - rho * (1 - e)
        D = torch.sqrt(B * B + 4 * q * (1 - q) * e)
        log_m = torch.where(B >= 0, torch.log(B + D) - torch.log(2 * (1 - q)),
                            torch.log(2 * q) - self.beta - torch.log(D - B))
        return (-log_m / self.beta).clamp(0, 1)

    def loss(self, x):
        logits = self.enc(x - self.mean)
        mu = torch.sigmoid(logits)
        zeta = self.relax(logits)
        entropy = -(mu * logits - F.softplus(logits)).sum(-1)
        return -(self.log_px(x, zeta) + entropy + self.neg_energy(mu)).mean()


class HandSpikeExp(HandOverlapExp):
    beta = 5.0

    def relax(self, logits):
        q = torch.sigmoid(logits)
        rho = torch.rand_like(q)
        u = ((rho + q - 1) / q).clamp(min=0)
        return torch.where(rho > 1 - q, torch.log1p(u * math.expm1(self.beta)) / self.beta, torch.zeros_like(q))


class HandGumBolt(HandRBM):
    tau = 0.25

    def loss(self, x):
        logits = self.enc(x - self.mean)
        rho = torch.rand_like(logits)
        zeta = torch.sigmoid((logits + torch.log(rho) - torch.log1p(-rho)) / self.tau)
        log_q = (zeta * logits - F.softplus(logits)).sum(-1)
        return -(self.log_px(x, zeta) + self.neg_energy(zeta) - log_q).mean()


HANDS = {"overlap_exp": HandOverlapExp, "spike_exp": HandSpikeExp, "gumbolt": HandGumBolt,
         "vimco": HandVimcoRBM, "contrastive_rws": HandContrastiveRWS}


def step_ratios(rounds):
    """Every method's harness step against its hand-written loop, interleaved block by block."""
    from estibench import estimators
    from estibench.harness.runner import build_model
    data = sbn_data()
    x_train = data.train.float()
    mean = x_train.mean(0)

    def batch():
        return x_train[torch.randint(len(x_train), (1, BATCH))]

    runners = {}
    for name, hand in HANDS.items():
        model = build_model("rbm_vae", seeds=(0,), chains=CHAINS, gibbs_sweeps=SWEEPS, train_mean=mean)
        est = estimators.get(name)
        est.check(model, hand.particles)
        est.bind(model)
        runners[name] = (Trainer(model, est, batch, hand.particles), hand(x_train, mean))
    for harness, hand in runners.values():
        for _ in range(WARMUP):
            harness()
            hand()
    pairs = {name: [] for name in runners}
    for _ in range(rounds):
        for name, (harness, hand) in runners.items():
            started = time.perf_counter()
            for _ in range(BLOCK):
                hand()
            t_hand = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(BLOCK):
                harness()
            t_harness = time.perf_counter() - started
            pairs[name].append((t_hand / BLOCK, t_harness / BLOCK))
    out = []
    for name, p in pairs.items():
        ratio = statistics.median(h / t for t, h in p)
        out.append({"method": f"{name} (K = {HANDS[name].particles})", "hand-written ms/step": statistics.median(t for t, _ in p) * 1e3,
                    "harness ms/step": statistics.median(h for _, h in p) * 1e3, "ratio": ratio, "target": "≤ 1.3×",
                    "met": "yes" if ratio <= 1.3 else "no"})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "rbm_speed.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load = load_average()
    ais = [ais_throughput(200, 400, args.rounds), ais_throughput(100, 100, args.rounds)]
    step = step_ratios(args.rounds)
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
