"""Storchastic side of ``benchmarks/storchastic_sbn.py``: the linear SBN trained with Storchastic's own API.

Runs in the separate virtual environment that ``storchastic_sbn.py`` creates (torch + storchastic 0.3.7, no
estibench), as a long-lived subprocess driven over stdin/stdout, one command per line:

    run METHOD N      → ``{"seconds": s, "elbo": mean ELBO over the N steps, "finite": bool, ...}``
    quit              → exits

and at start-up it prints one JSON line ``{"ready": true, "storchastic": version, "torch": version,
"methods": {name: description}}``.  Every reply is one JSON line on stdout; anything the libraries print goes
to stderr (``sys.stdout`` is pointed there), so the protocol cannot be corrupted.

Model (the same as estibench's ``linear1`` SBN, ``models/sbn.py``), written as Storchastic's discrete-VAE
examples and documentation write it (``examples/vae/bernoulli_vae.py``, ``docs/source/intro.discrete_vae.rst``):
``@storch.deterministic`` encoder / decoder ``nn.Linear`` layers, the batch denoted independent
(``storch.denote_independent(x, 0, "data")``), q(z|x) = ``Bernoulli(probs=clamp_probs(logits.sigmoid()))``
sampled through the method object (``z = method(q)``), one cost registered with ``storch.add_cost`` and
``storch.backward()`` then ``optimizer.step()``:

* encoder ``nn.Linear(784, 200)`` on x − x̄ (x̄ the training mean), q(z|x) factorised Bernoulli;
* decoder ``nn.Linear(200, 784)``, p(x|z) = Bernoulli(logits), output bias started at logit(clip(x̄, 0.001, 0.999));
* learned prior logits (200, start 0), p(z) factorised Bernoulli;
* cost = −ELBO single-sample = −[log p(x|z) + log p(z) − log q(z|x)] per data point (Storchastic averages it
  over the "data" plate and the z plate), i.e. the very f(b) that estibench's estimators differentiate;
* ``torch.optim.Adam(model.parameters(), lr=1e-3)`` over θ, φ and the method's own parameters (RELAX/REBAR's
  temperature, η and control-variate network are submodule parameters of the model).

Batch: B data points drawn uniformly with replacement from the training images each step
(``torch.randint``, as estibench's ``benchmarks/common.py: sbn_batcher``).  One torch thread.  Distribution
argument validation is off (``Distribution.set_default_validate_args(False)``), as inside estibench's training
step (``harness.runner.TrainingStep``); it must be off anyway for log-masses at relaxed z.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution
from torch.distributions.utils import clamp_probs

try:  # importable without storchastic (asv's discovery imports every module under benchmarks/)
    import storch
    from storch.method import REBAR, RELAX, GumbelSoftmax, ScoreFunction
    deterministic = storch.deterministic
except ImportError:
    storch = REBAR = RELAX = GumbelSoftmax = ScoreFunction = None

    def deterministic(fn):
        return fn

_PROTOCOL = sys.stdout  # the replies; main() points sys.stdout at stderr

LATENTS, PIXELS = 200, 784

#: estibench name → (description, factory); the arguments are those of Storchastic's examples
#: (examples/vae/bernoulli_vae.py: "score" with baseline "none", "gumbel", "rebar", "relax")
METHODS = {
    "reinforce": ('storch.method.ScoreFunction("z", n_samples=1, baseline_factory="none")',
                  lambda: ScoreFunction("z", n_samples=1, baseline_factory="none")),
    "concrete": ('storch.method.GumbelSoftmax("z", n_samples=1) (defaults: initial_temperature=1.0, '
                 'annealing_rate=1e-5 per step, min_temperature=1e-4, straight_through=False)',
                 lambda: GumbelSoftmax("z", n_samples=1)),
    "rebar": ('storch.method.REBAR("z", n_samples=1) (RELAX with rebar=True, c_phi = 0; learned temperature '
              '(start 1.0) and one scalar η (start 1.0))',
              lambda: REBAR("z", n_samples=1)),
    # the example's "relax": Storchastic's RELAX without the REBAR part, c = η·c_phi(z) at the relaxed z only
    # (less work per step than estibench's Bernoulli relax, whose control variate c(z) = η·f̃(σ_λ(z)) + r_ρ(z)
    # also evaluates the relaxed objective at the relaxed and conditional samples: estimators/relax.py)
    "relax": (f'storch.method.RELAX("z", n_samples=1, in_dim=({LATENTS},)) (the example\'s "relax", rebar=False: '
              f'control variate η·c_phi(z) only, c_phi = storch.method.relax.Baseline: Linear({LATENTS}, 50)–ReLU–'
              f'Linear(50, 1); learned temperature and scalar η, start 1.0)',
              lambda: RELAX("z", n_samples=1, in_dim=(LATENTS,))),
    # not offered: the example's "relax_rebar" (RELAX(..., rebar=True), REBAR's relaxed-cost control variate plus
    # c_phi) raises in storchastic 0.3.7 at batch 24.  With in_dim=(200,) as in the example, Baseline reshapes by
    # ``x.plate_dims``, which the plain tensor it gets inside ``compute_REBAR_cvs`` (a ``@storch.deterministic``
    # function) lacks (AttributeError); with in_dim=200, the plate-aligning assignment
    # ``c_phi_relaxed[_index1] = _c_phi_relaxed`` gets a [24, 24] tensor for a [1, 24, 1] slot (RuntimeError).
}


class StorchSBN(nn.Module):
    def __init__(self, method, train_mean: torch.Tensor):
        super().__init__()
        self.register_buffer("train_mean", train_mean.reshape(PIXELS).float())
        self.encoder = nn.Linear(PIXELS, LATENTS)
        self.decoder = nn.Linear(LATENTS, PIXELS)
        self.prior_logits = nn.Parameter(torch.zeros(LATENTS))
        with torch.no_grad():
            self.decoder.bias.copy_(torch.logit(self.train_mean.clamp(0.001, 0.999)))
        self.method = method

    @deterministic
    def encode(self, x):
        return self.encoder(x - self.train_mean)

    @deterministic
    def decode(self, z):
        return self.decoder(z)

    def forward(self, x: storch.Tensor) -> None:
        logits = self.encode(x)
        q = Bernoulli(probs=clamp_probs(logits.sigmoid()))
        z = self.method(q)
        if z.dtype == torch.bool:  # as the examples' shape_latent
            z = z.float()
        log_lik = Bernoulli(logits=self.decode(z)).log_prob(x).sum(-1)
        log_prior = Bernoulli(logits=self.prior_logits).log_prob(z).sum(-1)
        log_q = q.log_prob(z).sum(-1)
        storch.add_cost(-(log_lik + log_prior - log_q), "negative_elbo")


class Trainer:
    def __init__(self, name: str, train: torch.Tensor, train_mean: torch.Tensor, batch: int, lr: float, seed: int):
        torch.manual_seed(seed)
        self.model = StorchSBN(METHODS[name][1](), train_mean)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.train, self.batch = train, batch
        self.steps = 0

    def step(self) -> torch.Tensor:
        self.optimizer.zero_grad()
        storch.reset()
        x = self.train[torch.randint(self.train.shape[0], (self.batch,))]
        x = storch.denote_independent(x, 0, "data")
        self.model(x)
        cost = storch.backward()  # the surrogate loss; its value is the mean cost, −ELBO
        self.optimizer.step()
        self.steps += 1
        return cost.detach()

    def run(self, n: int) -> dict:
        total = torch.zeros(())
        start = time.perf_counter()
        for _ in range(n):
            total += self.step()
        seconds = time.perf_counter() - start
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        finite = bool(torch.isfinite(total)) and all(bool(torch.isfinite(g).all()) for g in grads)
        norm = float(torch.sqrt(sum((g.detach().double() ** 2).sum() for g in grads))) if grads else 0.0
        return {"seconds": seconds, "elbo": -float(total) / max(n, 1), "finite": finite, "grad_norm": norm,
                "grads": len(grads), "steps": self.steps}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Storchastic worker of benchmarks/storchastic_sbn.py")
    p.add_argument("--data", required=True, help="torch.save'd dict with 'train' [N, 784] and 'train_mean' [784]")
    p.add_argument("--methods", required=True, help="comma-separated estibench names")
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sys.stdout = sys.stderr  # anything printed by the libraries goes to stderr, never into the protocol
    if storch is None:
        print(json.dumps({"error": "storchastic is not installed in this interpreter"}), file=_PROTOCOL, flush=True)
        return 2
    torch.set_num_threads(1)
    Distribution.set_default_validate_args(False)
    data = torch.load(args.data)
    train, train_mean = data["train"].float().contiguous(), data["train_mean"].float()
    names = args.methods.split(",")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        print(json.dumps({"error": f"no Storchastic method for {', '.join(unknown)}"}), file=_PROTOCOL, flush=True)
        return 2
    trainers = {n: Trainer(n, train, train_mean, args.batch, args.lr, args.seed) for n in names}
    from importlib.metadata import version
    print(json.dumps({"ready": True, "storchastic": version("storchastic"), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "pid": os.getpid(),
                      "methods": {n: METHODS[n][0] for n in names}}), file=_PROTOCOL, flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "quit":
            break
        try:
            if parts[0] != "run" or len(parts) != 3:
                raise ValueError(f"unknown command {line.strip()!r}")
            reply = trainers[parts[1]].run(int(parts[2]))
        except Exception as err:  # noqa: BLE001 - reported to the driver, which stops cleanly
            import traceback
            traceback.print_exc(file=sys.stderr)
            reply = {"error": f"{type(err).__name__}: {err}"}
        print(json.dumps(reply), file=_PROTOCOL, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
