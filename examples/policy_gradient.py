"""A categorical policy gradient with RLOO, and a combinatorial one with RLOO and DisARM, through ``estibench.grad``.

1. A categorical bandit: 10 arms, reward r(a) = μ_a + noise (μ fixed, noise N(0, 1)); the policy is a softmax over
   learned logits; RLOO (K = 4) against REINFORCE without a baseline (K = 4 averaged).
2. Subset selection: choose a subset of 12 items (one Bernoulli per item) to maximise the value of the chosen items
   minus a quadratic penalty on their weight over a capacity; RLOO (K = 2) against DisARM (K = 1), the same budget of
   two objective evaluations per step.

Each prints the expected reward of the final policy (exact: the bandit sums over the arms, the subset problem over
its 4,096 subsets) and the best possible value::

    python -m estibench.examples.policy_gradient [--steps 1000] [--seed 0]
"""
from __future__ import annotations

import argparse
import itertools
import sys

import torch
from torch.distributions import Bernoulli, Categorical, Independent

import estibench


def bandit(estimator: str, particles: int, steps: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(1234)
    mu = torch.randn(10, generator=gen)
    torch.manual_seed(seed)
    logits = torch.zeros(10, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.05)

    def reward(a):  # a [K] arm indices → [K]
        return mu[a] + torch.randn(a.shape)

    for _ in range(steps):
        out = estibench.grad(Categorical(logits=logits), reward, estimator, particles=particles)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    return float((torch.softmax(logits.detach(), 0) * mu).sum()), float(mu.max())


def subset(estimator: str, particles: int, steps: int, seed: int):
    gen = torch.Generator().manual_seed(99)
    value, weight = torch.rand(12, generator=gen) + 0.2, torch.rand(12, generator=gen) + 0.5
    capacity = 0.4 * float(weight.sum())

    def objective(z):  # z [..., 12] in {0, 1} → [...]
        over = torch.relu(z @ weight - capacity)
        return z @ value - 4.0 * over ** 2

    torch.manual_seed(seed)
    logits = torch.zeros(12, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.2)
    for _ in range(steps):
        out = estibench.grad(Independent(Bernoulli(logits=logits), 1), objective, estimator, particles=particles)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=12)))
    q = Independent(Bernoulli(logits=logits.detach()), 1)
    expected = float((q.log_prob(states).exp() * objective(states)).sum())
    return expected, float(objective(states).max())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print("categorical bandit, 10 arms: expected reward of the final policy (best arm's mean in brackets)")
    for estimator, K in (("reinforce", 4), ("rloo", 4)):
        got, best = bandit(estimator, K, args.steps, args.seed)
        print(f"  {estimator:10s} K={K}: {got:6.3f}  ({best:.3f})")
    print("subset selection, 12 items: expected objective of the final policy (best subset's in brackets)")
    for estimator, K in (("rloo", 2), ("disarm", 1)):
        got, best = subset(estimator, K, args.steps, args.seed)
        print(f"  {estimator:10s} K={K}: {got:6.3f}  ({best:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
