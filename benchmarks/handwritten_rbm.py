"""Minimal hand-written PyTorch training loops of the RBM-prior methods on the RBM-prior VAE, as the speed
references of ``benchmarks/step_speed.py --study rbm_vae --compare hand`` (issue 11 §5: the harness step within
1.3× of a hand-written loop of the same method).  Moved unchanged from the former ``rbm_speed.py``.

Model: ``rbm_vae`` (linear, factorial guide, 100 + 100 latents, 784 pixels) with the rbm suite's 200 persistent
chains × 10 Gibbs sweeps per step, batch 24, R = 1, each method at its defaults: overlap_exp (β = 12) and spike_exp
(β = 5) with DVAE++'s §5 bound, gumbolt (τ = 0.25) at K = 1; VIMCO and Contrastive RWS at K = 5.  Each loop
(``HANDS[name]``): ``nn.Linear`` encoder and decoder, the RBM's W, a, b as plain tensors, the same objective, the
same negative phase from its own persistent chains, ``loss.backward()``, ``torch.optim.Adam``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

K, BATCH, CHAINS, SWEEPS = 5, 24, 200, 10


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
