"""``run_all.py check ESTIMATOR``: one estimator's contract checks and exact-gradient tests, a pass/fail table."""
from __future__ import annotations

import sys

from estibench.argparse_oneline import OneLineParser, parse
from estibench.harness.grammar import UsageError, parse_estimators

from . import catalog
from .common import prog

# The estimators and the checks are imported once the arguments are read: ``check --help`` imports no torch.


def parser():
    """``check``'s parser (its help is :func:`main`'s docstring)."""
    min_draws = catalog.literal("estibench.harness.checks", "MIN_DRAWS")
    family_alpha = catalog.literal("estibench.harness.checks", "FAMILY_ALPHA")
    p = OneLineParser(prog=f"{prog()} check", description=main.__doc__)
    p.add_argument("estimator", help="a registered name or package.module:Class, with options in brackets, "
                                     "e.g. rebar[variant=rebar_code] or "
                                     "estibench.examples.constant_baseline:ConstantBaseline")
    p.add_argument("--draws", type=int, help=f"gradient draws per exact-gradient test (default: per model, 2000; at "
                                              f"least {min_draws}, the fewest at which the false-alarm rate holds for "
                                              f"skewed draws; more than fit in memory are refused)")
    p.add_argument("--alpha", type=float, default=family_alpha,
                   help=f"false-alarm rate of one whole-vector test (default {family_alpha:g})")
    p.add_argument("--seed", type=int, default=0, help="global torch seed before every check (default 0)")
    return p


def main(argv) -> int:
    """``run_all.py check ESTIMATOR [--draws N] [--alpha A] [--seed S]``: run the contract checks and,
    for an estimator that says it is unbiased, the exact-gradient tests on every enumerable model it
    accepts; prints a pass/fail table with the statistics.  Exit status 0 when every check passes,
    1 when one fails, 2 for bad input: among it ``--draws`` below 2,000 (the test's false-alarm rate needs
    them, harness/checks.py MIN_DRAWS) or more than fit in memory (estimated before any check; a run of more
    than 20,000 draws first says how long it will take)."""
    args, status = parse(parser(), argv)  # argparse's errors: one line, status 2
    if args is None:
        return status
    from estibench import estimators
    from estibench.harness.checks import MIN_DRAWS, run_checks
    from estibench.models.registry import UnknownNameError
    try:
        specs = parse_estimators(args.estimator)
        if len(specs) != 1:
            raise UsageError(f"check one estimator at a time, got {args.estimator!r}")
        if args.draws is not None and args.draws < MIN_DRAWS:
            raise UsageError(f"--draws must be at least {MIN_DRAWS} (below it the exact-gradient test's false-alarm "
                             f"rate does not hold for skewed gradient draws), got {args.draws}")
        if not 0 < args.alpha < 1:
            raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
        if not -2 ** 63 <= args.seed < 2 ** 64:
            raise UsageError(f"--seed must be a 64-bit integer (torch's seed range), got {args.seed}")
        name, options = specs[0]
        results = run_checks(name, options, n=args.draws, alpha=args.alpha, seed=args.seed,
                             note=lambda line: print(f"{prog()} check: {line}", file=sys.stderr, flush=True))
    except (UsageError, UnknownNameError, ValueError) as err:
        print(f"{prog()} check: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except TypeError as err:  # an option the estimator does not take
        print(f"{prog()} check: error: {args.estimator}: {err}", file=sys.stderr)
        return 2
    import pandas as pd
    frame = pd.DataFrame([{"model": r.model, "K": r.particles, "check": r.check, "statistic": r.statistic,
                           "threshold": r.threshold, "result": "pass" if r.passed else "FAIL", "detail": r.detail}
                          for r in results])
    est = estimators.get(name, **options)
    print(f"estibench check {args.estimator}: unbiased = {est.unbiased} (declared), targets {est.guide_target}; "
          f"seed {args.seed}, false-alarm rate α = {args.alpha:g} per exact-gradient test (Bonferroni over "
          f"the guide's coordinates)")
    print(frame.to_string(index=False))
    failed = int((~frame.result.eq("pass")).sum())
    print(f"{len(frame) - failed} of {len(frame)} checks passed" + (f"; {failed} FAILED" if failed else ""))
    return 1 if failed else 0
