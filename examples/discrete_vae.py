"""A discrete VAE trained in your own loop with an estimator from ``estibench.grad``.

A one-layer sigmoid belief network VAE (784 → 200 Bernoulli latents → 784, a learned factorial prior; the linear SBN
of Mnih & Gregor, 2014, written here in plain torch, not as an estibench model) on the embedded 4,000 binarised
digits that ship with estibench.  The estimator is one line of the loop: ``estibench.grad(q, f, "disarm")`` with f
the ELBO's integrand.  Prints the training ELBO and, at the end, the ELBO of the 500 test digits (one sample per
image, nats)::

    python -m estibench.examples.discrete_vae [--estimator disarm] [--steps 500] [--particles 1]
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Independent

import estibench
from estibench.data.datasets import load


class SBNVAE(nn.Module):
    def __init__(self, obs: int = 784, latent: int = 200, mean: torch.Tensor = None):
        super().__init__()
        self.encoder, self.decoder = nn.Linear(obs, latent), nn.Linear(latent, obs)
        self.prior_logits = nn.Parameter(torch.zeros(latent))
        self.register_buffer("mean", torch.full((obs,), 0.5) if mean is None else mean)

    def guide(self, x):
        return Independent(Bernoulli(logits=self.encoder(x - self.mean)), 1)

    def elbo_integrand(self, x, q):
        """f(z) = log p(x | z) + log p(z) − log q(z | x), for z ``[K, B, latent]`` → ``[K, B]``."""
        prior = Independent(Bernoulli(logits=self.prior_logits), 1)

        def f(z):
            log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x.expand(*z.shape[:-1], x.shape[-1]),
                                                         reduction="none").sum(-1)
            return log_px + prior.log_prob(z) - q.log_prob(z)
        return f


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimator", default="disarm", help="an estimator estibench.grad offers (default disarm)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--particles", type=int, default=None)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from estibench.estimators.grad import available
    if args.estimator not in available():
        p.error(f"--estimator: choose one of {', '.join(available())}")
    torch.manual_seed(args.seed)
    data = load("mnist5k-bern0")
    model = SBNVAE(mean=data.train.mean(0))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(1, args.steps + 1):
        x = data.train[torch.randint(len(data.train), (args.batch,))]
        q = model.guide(x)
        out = estibench.grad(q, model.elbo_integrand(x, q), args.estimator, particles=args.particles)
        optimiser.zero_grad()
        out.loss.backward()  # −surrogate, averaged over the batch
        optimiser.step()
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:5d}  train ELBO {out.value.mean():9.2f} nats")
    with torch.no_grad():
        q = model.guide(data.test)
        elbo = model.elbo_integrand(data.test, q)(q.sample((1,))).mean()
    print(f"test ELBO {elbo:.2f} nats ({args.estimator}, {args.steps} steps of batch {args.batch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
