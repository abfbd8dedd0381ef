"""Your own VAE, swept like a built-in: an encoder, a decoder and a prior written in plain torch (``nn.Module``s that
return ``torch.distributions``), adapted to the model contract by ``estibench.models.adapter`` with no rewrite, then
trained and measured by the generic study (``--suite generic``) with VIMCO and RLOO, and reported.

The model: 8 Bernoulli latents (256 states, so exact log p(x) and exact-gradient bias are measured too), an MLP
encoder and decoder (196 → 64 → 8 → 64 → 196, tanh) and a prior of learned logits, on the embedded binarised
digits (``mnist5k-bern0``) down-sampled to 14 × 14 (each 2 × 2 block: 1 where any pixel is), 1,000 training and 200
test digits written to a temporary ``.npz``.  Two estimators × K = 2, two seeds, 300 steps: under a minute on a CPU::

    python -m estibench.examples.own_model_sweep [--out DIR] [--iterations 300]

It prints where the report is (``DIR/index.html``, the study's page ``DIR/generic/report.md``).  On the command line
the same sweep is::

    python run_all.py --suite generic --model estibench.examples.own_model_sweep:OwnVAE --data digits.npz \\
        --estimators vimco,rloo --particles 2 --seeds 2 --iterations 300 --eval-every 150
    python run_all.py report --out results/generic
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent

from estibench.models.adapter import ModulesModel

LATENTS, SIDE, HIDDEN = 8, 14, 64
PIXELS = SIDE * SIDE
#: the model by import path, as the command line and its workers import it
MODEL = "estibench.examples.own_model_sweep:OwnVAE"


# -- the user's VAE, in plain torch: three modules that return distributions -----------------------------------
class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(PIXELS, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, LATENTS))

    def forward(self, x):  # x [N, 196] → q(z | x), 8 bits per digit
        return Independent(Bernoulli(logits=self.net(2 * x - 1)), 1)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(LATENTS, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, PIXELS))

    def forward(self, z):  # z [N, 8] → p(x | z), 196 pixels per digit
        return Independent(Bernoulli(logits=self.net(z)), 1)


class Prior(nn.Module):
    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(LATENTS))

    def forward(self):  # p(z): learned logits
        return Independent(Bernoulli(logits=self.logits), 1)


# -- the adapter: a subclass whose __init__ passes the factories (the command line builds Class(seeds=...)) ----
class OwnVAE(ModulesModel):
    """The VAE above as a contract model (``estibench.models.adapter``): ``--model
    estibench.examples.own_model_sweep:OwnVAE``."""

    latent_kind = "bernoulli"

    def __init__(self, seeds=(0,)):
        super().__init__(encoder=Encoder, decoder=Decoder, prior=Prior, latent="bernoulli", latent_shape=(LATENTS,),
                         obs_shape=(PIXELS,), seeds=seeds)


def write_digits(path: str, train: int = 1000, test: int = 200) -> str:
    """The first ``train`` / ``test`` embedded digits, 2 × 2 max-pooled to 14 × 14, as the ``train`` / ``test``
    arrays of a ``.npz`` (what ``--data`` reads)."""
    from estibench.data.datasets import load
    digits = load("mnist5k-bern0")

    def pooled(images: torch.Tensor) -> np.ndarray:
        x = images.reshape(-1, 1, 28, 28).to(torch.float32)
        return torch.nn.functional.max_pool2d(x, 2).reshape(-1, PIXELS).numpy()

    np.savez(path, train=pooled(digits.train[:train]), test=pooled(digits.test[:test]))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="results folder (default: a new temporary folder)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--estimators", default="vimco,rloo")
    args = parser.parse_args(argv)
    from estibench.cli import main as estibench_main

    out = args.out or tempfile.mkdtemp(prefix="own_model_sweep-")
    data = write_digits(os.path.join(tempfile.mkdtemp(prefix="own_model_data-"), "digits14.npz"))
    print(f"data: {data} (1,000 training and 200 test digits, 14 × 14)")
    code = estibench_main(["--suite", "generic", "--model", MODEL, "--data", data, "--estimators", args.estimators,
                           "--particles", "2", "--seeds", "2", "--iterations", str(args.iterations),
                           "--eval-every", str(max(1, args.iterations // 2)), "--device", "cpu", "--out", out,
                           "--no-report"])
    if code != 0:
        return code
    code = estibench_main(["report", "--out", out])
    if code != 0:
        return code
    page, site = os.path.join(out, "generic", "report.md"), os.path.join(out, "index.html")
    print(f"the study's page: {page} (the site: {site})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
