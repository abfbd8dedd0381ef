"""The parsers of the commands whose modules import torch (the run, ``screen``) or whose package does
(``fetch-data``, :mod:`estibench.data.cli`), built here without importing torch, numpy, pandas or a study: the names
their help lists are read by :mod:`estibench.cli.catalog`.  :func:`parser` gives every command's parser, so that
:func:`estibench.cli.main` answers ``--help`` (``COMMAND --help``) without importing the engine; ``cli.run.parser``
and ``cli.screen.parser`` are the functions here, so a run and a screen parse with the same parser as their help."""
from __future__ import annotations

import argparse
from typing import Dict, Tuple

from estibench.argparse_oneline import OneLineParser, program

from . import catalog
from .common import HelpFormatter, commands_epilog, prog

#: ``screen``: the reference estimator that trains the model between the points: the first of these that fits
REFERENCES = ("rloo", "reinforce", "vimco", "ww")

#: ``screen``: target → (its objective in a few words, the line that says whose gradients the group's estimators are), in the
#: order the groups are shown
TARGETS: Dict[str, Tuple[str, str]] = {
    "elbo": ("the ELBO", "train with the ELBO (VAE-style K-sample average)"),
    "iwae": ("the IWAE bound", "train with the K-sample IWAE bound (importance-weighted, ELBO_IS^K)"),
    "inclusive_kl": ("the inclusive KL", "train the guide by wake-sleep's wake-φ, −KL(p‖q) (inclusive KL)"),
}


def run_parser(command: str = "") -> argparse.ArgumentParser:
    """The run's parser: ``command`` ``"run"`` for ``run_all.py run ...``; ``""`` for the run written without a
    command, whose ``--help`` also lists the commands.  The suites, the estimators and the grid flags (declared by the
    studies) are read now (:mod:`~estibench.cli.catalog`)."""
    p = OneLineParser(
        prog=f"{prog()} {command}".strip(), formatter_class=HelpFormatter,
        epilog=None if command else commands_epilog(),
        description="Run an estibench suite: train every (estimator, K) cell with its seeds stacked, "
                    "store results in OUT/results.sqlite, export OUT/metrics.csv and write OUT/report.md.  "
                    f"`{prog()} report --out DIR` rebuilds the report from a store alone.")
    p.add_argument("--suite", default="default",
                   help=f"suite to run: {', '.join(catalog.suite_names())} (default: default, a few minutes on a CPU)")
    p.add_argument("--estimators", help="comma-separated estimator names, each optionally with options in "
                                        "brackets, e.g. ww,concrete[final_temperature=1.0],dww[delta=0.1] "
                                        f"(default: the suite's); known: {', '.join(catalog.estimator_names())}")
    p.add_argument("--model-options", help="model options NAME=VALUE,..., e.g. init=uniform,prior_scale=1.0 "
                                           "or guide_hidden=(16,) (default: the model's defaults)")
    p.add_argument("--particles", help="comma-separated particle counts K, e.g. 2,20 (default: the suite's)")
    p.add_argument("--seeds", type=int, help="number of seeds N; seeds 0..N-1 train as one vectorised program")
    p.add_argument("--iterations", type=int, help="training iterations per cell (default: the suite's)")
    p.add_argument("--eval-every", type=int, help="iterations between evaluations (default: the suite's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)")
    p.add_argument("--out", help="output folder for the store, metrics.csv, report.md and figures "
                                 "(default: results/SUITE)")
    p.add_argument("--compile", default="off", choices=catalog.literal("estibench.harness.runner", "COMPILE_MODES"),
                   help="torch.compile the training step's surrogate (default: off; 'reduce-overhead' adds CUDA "
                        "graphs on a GPU); estimators with second-order gradients (REBAR, RELAX) run eagerly; a "
                        "compiled cell is a different cell in the store")
    p.add_argument("--jobs", type=int, default=1, help="cells run in parallel through joblib (default: 1)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per worker (default: 1; the GMM's tensors are too small to share)")
    p.add_argument("--lr", type=float, help="learning rate (default: the suite's / preset's)")
    p.add_argument("--batch-size", type=int, help="data points per training step (default: the suite's / preset's)")
    p.add_argument("--model", help="model name or package.module:Class, overriding the suite's (the suite's study "
                                   "must train it: one of its `Study.models` or a subclass of one)")
    p.add_argument("--data", help="the observations to train on, for suites whose study takes them (generic): a "
                                  ".npz file with arrays train (and optionally test, valid), a .pt file of a tensor "
                                  "or a dict of them, each [N, *obs]; or a dataset name (see `fetch-data --help`); "
                                  "the file's path, size and SHA-256 are part of each cell (default: the model's own "
                                  "samples)")
    for flag, (option, text) in catalog.grid_flags().items():  # declared by the studies, read now
        p.add_argument(flag, dest=option, help=text)
    p.add_argument("--preset", help="optimiser/budget preset of the suite, e.g. rebar, dvaepp, disarm, paper")
    p.add_argument("--basket", help="gradient basket: comma-separated estimators (with options in brackets) whose "
                                    "φ-gradient variance, and bias where exact, is measured at every evaluation "
                                    "along each cell's own training trajectory, or 'all' (every compatible "
                                    "registered estimator); a basket cell is a different cell in the store")
    p.add_argument("--basket-samples", type=int, help="gradient draws per basket estimator and evaluation "
                                                      "(default: the study's gradient draws)")
    p.add_argument("--force", action="store_true", help="recompute cells already in the store")
    p.add_argument("--dry-run", action="store_true", help="list the cells and what is already done; run nothing")
    p.add_argument("--backend", default="loky", choices=catalog.literal("estibench.harness.sweep", "BACKENDS"),
                   help="joblib backend for --jobs: loky (this machine), dask (--scheduler) or ray (--address)")
    p.add_argument("--scheduler", help="address of a running dask.distributed scheduler (tcp://HOST:PORT)")
    p.add_argument("--address", help="address of a running Ray cluster (or 'auto')")
    p.add_argument("--no-report", action="store_true", help="skip writing report.md and figures")
    return p


def screen_parser() -> argparse.ArgumentParser:
    """``screen``'s parser."""
    p = OneLineParser(prog=f"{prog()} screen", description=(
        "Which estimator should I use for this model?  Every compatible estimator's φ-gradient variance, time per "
        "draw, work-normalised variance and (enumerable models) bias, at the initial parameters and along a short "
        "training run; a ranked table, a recommendation and what could not be measured."))
    p.add_argument("--model", required=True, help="a registered model name or package.module:Class")
    p.add_argument("--model-options", help="model options NAME=VALUE,... (default: the model's defaults)")
    p.add_argument("--estimators", default="all", help="comma-separated estimators (with options in brackets) or "
                                                       "'all' (default): every registered one that fits")
    p.add_argument("--target", choices=tuple(TARGETS), help="the objective you train: elbo (VAE-style K-sample "
                   "average), iwae (the K-sample IWAE bound) or inclusive_kl (wake-sleep's −KL(p‖q) for the guide); "
                   "its estimators are recommended for alone and listed first (default: one recommendation per "
                   "target present)")
    p.add_argument("--particles", type=int, default=2, help="particles K per estimate (default 2: the smallest K "
                                                             "every multi-sample estimator accepts)")
    MIN_DRAWS = catalog.literal("estibench.harness.checks", "MIN_DRAWS")
    p.add_argument("--draws", type=int, default=200, help=f"gradient draws per estimator and point (default 200; the "
                                                           f"bias test runs from {MIN_DRAWS}, the fewest at which its "
                                                           f"false-alarm rate holds)")
    p.add_argument("--points", type=int, default=3, help="points: the initial parameters and points−1 more along "
                                                         "training (default 3)")
    p.add_argument("--steps", type=int, default=200, help="training steps of the reference between the first and "
                                                          "the last point (default 200)")
    p.add_argument("--reference", help=f"the estimator that trains the model (default: the first of "
                                        f"{', '.join(REFERENCES)} that fits)")
    p.add_argument("--batch-size", type=int, default=24, help="data points per batch (default 24)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the short training run (default 1e-3)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the draws (default 200)")
    p.add_argument("--seed", type=int, default=0, help="torch seed (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads while screening (default 1, as a training "
                                                           "cell runs unless --threads; the times are this setting's)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--out", help="folder for screen.csv (every point) and screen.md (the ranked table)")
    return p


def fetch_data_parser() -> argparse.ArgumentParser:
    """``fetch-data``'s parser, the same as :func:`estibench.data.cli._parser` (``tests/test_cli_help.py`` compares
    their help), whose package imports torch."""
    parser = OneLineParser(
        prog=f"{program()} fetch-data",
        description="Download a dataset into the cache (SHA-256 checked, atomic) and print its folder.",
    )
    parser.add_argument("name", metavar="NAME", help=f"dataset name: {', '.join(catalog.dataset_names())}; or "
                                                     f"multi-mnist5k-s<seed>, multi-mnist-s<seed> (fetches "
                                                     f"mnist5k-dynamic, mnist-dynamic: the images are generated from "
                                                     f"the name when loaded)")
    cache_env = catalog.literal("estibench.data.sources", "CACHE_ENV")
    default_cache = catalog.literal("estibench.data.sources", "DEFAULT_CACHE")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help=f"cache folder (default: ${cache_env}, else {default_cache})")
    return parser


def parser(command: str) -> argparse.ArgumentParser:
    """The parser of ``command`` (``""``: a run written without ``run``), built without importing torch."""
    if command in ("", "run"):
        return run_parser(command)
    if command == "screen":
        return screen_parser()
    if command == "fetch-data":
        return fetch_data_parser()
    if command == "check":
        from .check import parser as check_parser
        return check_parser()
    if command == "report":
        from .report import parser as report_parser
        return report_parser()
    raise ValueError(f"no command {command!r}")


def asks_help(argv) -> bool:
    """Whether ``argv`` (a command's arguments) may ask for ``--help``: a word ``-h...`` or ``--help...``.  Only then
    is the parse done here first; a command line that passes it is parsed again by its command, unchanged."""
    return any(isinstance(word, str) and word.startswith(("-h", "--help")) for word in argv)
