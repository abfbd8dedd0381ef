"""Speed of one training step: a study's harness step (``benchmarks/common.py: Trainer``, i.e. the runner's own
``harness.runner.TrainingStep``) per cell, alone or beside a contender, interleaved block by block in one run.

    python benchmarks/step_speed.py --study gmm|sbn|sbn_categorical|air|rbm_vae
        [--compare none|compile|replicates|hand] [--estimators all|NAME[:K[:R]],...] [--particles 2,20]
        [--replicates 10] [--rounds 5] [--block 20|NAME=N,...] [--warmup 10] [--order fixed|alternate|hand-first]
        [--by-round] [--cpu-seconds S] [--project N] [--yardstick] [--runner] [--target 1.5|NAME=X,...,X]
        [--profile N|all] [--profile-steps 20] [--profile-table ROWS] [--ais 200x400,...] [--device cpu]
        [--smoke] [--out FILE]

Studies (one torch thread; Adam; every cell built after ``torch.manual_seed(0)``):

* ``gmm``: R stacked seeds (default R = 10, the paper-budget suite's), batch 100 drawn fresh from the true model.
* ``sbn``: the linear SBN (``linear1``, 784–200–784; ``indecater`` on the categorical SBN, as
  ``handwritten_new.harness_model`` builds it), batch 24 of mnist5k-bern0's training images, R = 1.
* ``sbn_categorical``: the categorical SBN (20 × 10-way latents, ``linear``), batch 24, R = 1.
* ``air``: ``air`` at its defaults on ``multi-mnist5k-s0``, batch 16 re-binarised as the task does, Adam 1e-4.
* ``rbm_vae``: the RBM-prior VAE with the rbm suite's 200 chains × 10 Gibbs sweeps, batch 24, R = 1.

Cells: every estimator of ``--estimators`` (``all``: every registered one the study's model accepts at some K of
``--particles``; ``NAME:K`` / ``NAME:K:R`` fix K / R for one entry) × K of ``--particles`` × R of ``--replicates``
(pairs the model refuses are skipped).  ``--compare`` sets the contenders of a cell:

* ``none``: the harness step alone (steps/s, replicate-steps/s); ``--cpu-seconds S`` times instead by process CPU
  time, steps until S seconds (at least 3), after ``--warmup`` steps; ``--project N``: minutes for N steps.
* ``compile``: the eager step and the ``--compile default`` step (``harness.runner.compile_surrogate``); the
  compiled step's first two calls (compilation included) are timed as the compile time; speed-up = eager ÷
  compiled, break-even = compile time ÷ time saved per step.
* ``replicates``: R = 1 against each R of ``--replicates`` (one row per estimator and K); speed-up per replicate =
  single ÷ (stacked ÷ R).
* ``hand``: the harness step against the hand-written PyTorch loop of the same estimator, where there is one
  (``handwritten_sbn.py``, ``handwritten_new.py``, ``handwritten_rbm.py``; ratio harness ÷ hand, quartiles, the
  ``--target``); ``--yardstick`` (sbn) puts a block of the minimal hand-written REINFORCE loop with an EMA baseline
  (``handwritten_sbn.HandReinforce``) first in every cell's round; ``--runner`` (sbn) adds 5 rounds of a fresh
  ``train_cell`` of 100 iterations per estimator, each beside 100 yardstick steps.

Timing: ``--warmup`` steps of every contender, then ``--rounds`` rounds in which every contender of a cell runs a
block of ``--block`` steps (per estimator: ``NAME=N``), in the contenders' order (``fixed``: yardstick, harness or
eager or R = 1, then the other; ``hand-first``; ``alternate``: reversed every other round); cells one after another
(``--by-round``: every cell's blocks in each round).  ms = median block ÷ its steps; a ratio = median over rounds of
the ratio of the blocks beside each other.  ``--profile N`` (``all``) profiles the N slowest harness steps afterwards
(``torch.profiler`` over ``--profile-steps`` steps of the harness step and of the hand-written loop, the harness
step at batch 1, B and 4B fitted as a + b·B, cProfile; ``--profile-table ROWS``: the profiler's operator table).  ``--ais`` adds forward-AIS
throughput of RBMs (n_v x n_h, 1,000 chains × 100 temperatures, float64, median of ``--rounds``).  ``--device``
moves the ``air`` model and its data (the other studies run on the CPU) and synchronises around every block.  Writes the
Markdown record to ``--out`` (default: print only).  benchmarks/README.md lists the command of every record.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.common import (GMM_BATCH, SBN_BATCH, RunnerBlock, Trainer, bind, block, command_line,  # noqa: E402
                               compatible, gmm_batcher, gmm_model, header, load_average, markdown, sbn_batcher,
                               sbn_data, sbn_model, write_record)

STUDIES = ("gmm", "sbn", "sbn_categorical", "air", "rbm_vae")
BATCH = {"gmm": GMM_BATCH, "sbn": SBN_BATCH, "sbn_categorical": SBN_BATCH, "air": 16, "rbm_vae": 24}
DEFAULT_PARTICLES = {"gmm": "2,20", "sbn": "1", "sbn_categorical": "1", "air": "2", "rbm_vae": "1"}
DEFAULT_REPLICATES = {"gmm": "10"}
RUNNER_ROUNDS, RUNNER_STEPS = 5, 100


# -- cells --------------------------------------------------------------------------------------------------------
def build(study, name, K, R=1, batch=None, compile="off", device="cpu"):
    """The harness ``Trainer`` of one cell (``NotImplementedError`` when the model refuses the estimator at K)."""
    torch.manual_seed(0)
    B = batch or BATCH[study]
    seeds = tuple(range(R))
    device = torch.device(device)
    if study == "gmm":
        model = gmm_model(seeds=seeds)
        return Trainer(model, bind(name, model, K), gmm_batcher(model, B), K, compile=compile)
    if study in ("sbn", "sbn_categorical"):
        from benchmarks.handwritten_new import harness_model
        model = harness_model("indecater" if study == "sbn_categorical" else name, seeds=seeds)
        return Trainer(model, bind(name, model, K), sbn_batcher(model, B), K, compile=compile)
    from estibench import data as estidata
    from estibench.harness.runner import build_model
    if study == "air":
        model = build_model("air", seeds=seeds).to(device)
        train = estidata.load(model.dataset).train.to(device)

        def air_batch():
            return torch.bernoulli(train[torch.randint(train.shape[0], (R, B), device=device)])
        return Trainer(model, bind(name, model, K), air_batch, K, lr=1e-4, compile=compile)
    if study == "rbm_vae":
        from benchmarks.handwritten_rbm import CHAINS, SWEEPS
        x_train = sbn_data().train.float()
        model = build_model("rbm_vae", seeds=seeds, chains=CHAINS, gibbs_sweeps=SWEEPS, train_mean=x_train.mean(0))
        return Trainer(model, bind(name, model, K), lambda: x_train[torch.randint(len(x_train), (R, B))], K,
                       compile=compile)
    raise ValueError(study)


def hand_loop(study, name, K):
    """The hand-written loop of ``name`` at K for the study, or None."""
    if study in ("sbn", "sbn_categorical"):
        from benchmarks import handwritten_new, handwritten_sbn
        data = sbn_data()
        if name in handwritten_sbn.HANDWRITTEN and K == 1 and study == "sbn":
            return handwritten_sbn.HANDWRITTEN[name](data.train, data.train_mean)
        if name in handwritten_new.HANDWRITTEN and K == handwritten_new.PARTICLES[name]:
            return handwritten_new.HANDWRITTEN[name](data.train, data.train_mean)
    if study == "rbm_vae":
        from benchmarks.handwritten_rbm import HANDS
        if name in HANDS and K == HANDS[name].particles:
            x_train = sbn_data().train.float()
            return HANDS[name](x_train, x_train.mean(0))
    return None


def study_model(study, R=1):
    """The study's model, for the compatibility filter of ``--estimators all`` (data-free where it can be)."""
    if study == "gmm":
        return gmm_model(seeds=tuple(range(R)))
    if study == "sbn":
        return sbn_model(train_mean=torch.full((784,), 0.13))
    if study == "sbn_categorical":
        from estibench import models
        return models.get("sbn_categorical", seeds=(0,), arch="linear", train_mean=torch.full((784,), 0.13))
    from estibench.harness.runner import build_model
    if study == "air":
        return build_model("air", seeds=(0,))
    return build_model("rbm_vae", seeds=(0,), chains=2, gibbs_sweeps=1, train_mean=torch.full((784,), 0.13))


def cells_of(args):
    """[(estimator, K, R)] in order: R outermost, then the estimators as given, then K; ``NAME:K:R`` entries last."""
    particles = [int(k) for k in args.particles.split(",")]
    replicates = [int(r) for r in args.replicates.split(",")]
    specs = []
    for entry in args.estimators.split(","):
        parts = entry.split(":")
        if parts[0] == "all":
            specs += [(n, None, None) for n in compatible(study_model(args.study), particles=particles)]
        else:
            specs.append((parts[0], int(parts[1]) if len(parts) > 1 else None,
                          int(parts[2]) if len(parts) > 2 else None))
    if args.compare == "replicates":  # R is the contenders', not the cells'
        replicates = [1]
    out = [(n, K, R) for R in replicates for n, k, r in specs if r is None for K in ([k] if k else particles)]
    out += [(n, k, r) for n, k, r in specs if r is not None]
    return list(dict.fromkeys(out))


def per_name(text, cast):
    """``"N"`` → {None: N}; ``"a=N,b=M,X"`` → {"a": N, "b": M, None: X}."""
    out = {}
    for part in str(text).split(","):
        key, _, value = part.rpartition("=")
        out[key or None] = cast(value)
    return out


def lookup(table, name, default):
    return table.get(name, table.get(None, default))


# -- contenders -----------------------------------------------------------------------------------------------------
class Cell:
    def __init__(self, study, name, K, R):
        self.study, self.name, self.K, self.R = study, name, K, R
        self.contenders = {}  # label → step, in the fixed order
        self.times = {}  # label → [seconds per step, one per round]
        self.compile_s = None
        self.runner = []



def make_cell(args, name, K, R, yardstick):
    cell = Cell(args.study, name, K, R)
    if args.compare == "compile":
        eager = build(args.study, name, K, R, device=args.device)
        compiled = build(args.study, name, K, R, compile="default", device=args.device)
        t0 = time.perf_counter()
        compiled()
        compiled()
        cell.compile_s = time.perf_counter() - t0
        cell.contenders = {"eager": eager, "compiled": compiled}
    elif args.compare == "replicates":
        cell.contenders = {f"R={r}": build(args.study, name, K, r, device=args.device)
                           for r in dict.fromkeys([1] + [int(x) for x in args.replicates.split(",")])}
    else:
        harness = build(args.study, name, K, R, device=args.device)
        hand = hand_loop(args.study, name, K) if args.compare == "hand" and R == 1 else None
        if yardstick is not None:
            cell.contenders["yardstick"] = yardstick
        if hand is not None and args.order == "hand-first":
            cell.contenders["hand"] = hand
        cell.contenders["harness"] = harness
        if hand is not None and args.order != "hand-first":
            cell.contenders["hand"] = hand
    cell.times = {k: [] for k in cell.contenders}
    return cell


def warm(cell, n, shared_done):
    if cell.compile_s is not None:  # eager and compiled alternating, as in the compile comparison
        for _ in range(n):
            for step in cell.contenders.values():
                step()
        return
    for label, step in cell.contenders.items():
        if label == "yardstick":
            if shared_done[0]:
                continue
            shared_done[0] = True
        for _ in range(n):
            step()


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def one_round(cell, r, n, args):
    labels = list(cell.contenders)
    if args.order == "alternate" and r % 2 == 1:
        labels.reverse()
    for label in labels:
        sync(args.device)
        start = time.perf_counter()
        for _ in range(n):
            cell.contenders[label]()
        sync(args.device)
        cell.times[label].append((time.perf_counter() - start) / n)


def cpu_time(cell, seconds):
    step = cell.contenders["harness"]
    n, start = 0, time.process_time()
    while n < 3 or time.process_time() - start < seconds:
        step()
        n += 1
    cell.times["harness"].append((time.process_time() - start) / n)


# -- profiles ---------------------------------------------------------------------------------------------------------
def top_ops(step, steps, n=6):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    aten = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    calls = sum(e.count for e in events) // steps
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:n]
    text = ", ".join(f"{e.key[6:]} {e.self_cpu_time_total / 1e3 / steps:.2f} ms ({e.count // steps}×)" for e in top)
    return {"wall_ms": 1e3 * wall, "aten_ms": aten, "ops": calls, "top": text, "prof": prof}


def profile(args, cell, steps, warmup):
    """Profiler summaries of every contender, the batch scaling and cProfile of the harness step."""
    harness = build(args.study, cell.name, cell.K, cell.R, device=args.device)
    for _ in range(warmup):
        harness()
    ops = top_ops(harness, steps)
    events = ops.pop("prof").key_averages()
    table = events.table(sort_by="self_cpu_time_total", row_limit=args.profile_table) if args.profile_table else ""
    others = {}
    if "hand" in cell.contenders:
        others["hand"] = top_ops(cell.contenders["hand"], steps)
        others["hand"].pop("prof")
    B = BATCH[args.study]
    scaling = {}
    for b in (1, B, 4 * B):
        s = build(args.study, cell.name, cell.K, cell.R, batch=b, device=args.device)
        for _ in range(warmup):
            s()
        scaling[b] = statistics.median(block(s, max(1, min(10, steps))) for _ in range(3))
    slope = (scaling[4 * B] - scaling[1]) / (4 * B - 1)
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        harness()
    pr.disable()
    stats = pstats.Stats(pr, stream=io.StringIO()).stats
    python = {k: v for k, v in stats.items() if k[0] != "~"}
    rows = sorted(((v[2], k) for k, v in python.items()), reverse=True)[:5]
    py_text = ", ".join(f"{k[0].split('site-packages/')[-1].replace(ROOT + '/', '')}:{k[1]}({k[2]}) "
                        f"{1e3 * t / steps:.2f} ms" for t, k in rows)
    row = [cell.name, cell.K, ops["wall_ms"], ops["aten_ms"], 100 * ops["aten_ms"] / ops["wall_ms"], ops["ops"],
           1e3 * sum(v[2] for v in python.values()) / steps, sum(v[1] for v in python.values()) // steps,
           1e3 * sum(v[2] for k, v in stats.items() if "run_backward" in k[2]) / steps,
           1e3 * scaling[1], 1e3 * scaling[B], 1e3 * scaling[4 * B], 1e3 * (scaling[1] - slope), 1e3 * slope]
    text = f"* **{cell.name}** (K = {cell.K}) — harness: {ops['wall_ms']:.2f} ms/step profiled, heaviest ATen ops: " \
           f"{ops['top']}."
    for label, o in others.items():
        text += f"  Hand-written: {o['wall_ms']:.2f} ms/step profiled, " \
                f"{o['aten_ms']:.2f} ms in ATen ops ({o['ops']} calls): {o['top']}."
    text += f"  Python functions with the most own time per step: {py_text}."
    return row, text, table


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


# -- the table ----------------------------------------------------------------------------------------------------------
def in_gmm_suite(name, K):
    from estibench.studies.gmm import ESTIMATORS, NEW_K2_ONLY, NEW_PAPER_BUDGET
    if name in ESTIMATORS or name in NEW_PAPER_BUDGET:
        return "yes"
    if name in NEW_K2_ONLY:
        return "yes" if K == 2 else "no (K = 2 only)"
    return "no"


def ms(ts):
    return 1e3 * statistics.median(ts) if ts else float("nan")


def ratio(a, b):
    return statistics.median(x / y for x, y in zip(a, b)) if a and b else float("nan")


def rows_of(args, cells, targets):
    rows, verdicts = [], []
    if args.compare == "hand" and args.yardstick:
        yard = [t for c in cells for t in c.times.get("yardstick", [])]
        rows.append({"estimator": "hand-written REINFORCE (EMA baseline)", "K": "", "R": "", "harness ms/step": ms(yard),
                     "÷ hand-written (EMA)": 1.0})
    for c in cells:
        row = {"estimator": c.name, "K": c.K, "R": c.R}
        if args.compare == "none":
            t = statistics.median(c.times["harness"])
            if args.cpu_seconds:
                row["ms/step (CPU)"] = 1e3 * t
            else:
                row.update({"ms/step": 1e3 * t, "steps/s": 1 / t, "replicate-steps/s": c.R / t})
            if args.project:
                row[f"projected {args.project:,} steps (min)"] = 1e3 * t * args.project / 60_000
                if args.study == "gmm":
                    row["in the paper-budget suite"] = in_gmm_suite(c.name, c.K)
        elif args.compare == "compile":
            e, k = ms(c.times["eager"]), ms(c.times["compiled"])
            saved = (e - k) / 1e3
            row.update({"eager ms/step": e, "compiled ms/step": k, "speed-up": ratio(c.times["eager"],
                        c.times["compiled"]), "compile s": c.compile_s,
                        "break-even steps": c.compile_s / saved if saved > 0 else float("inf")})
        elif args.compare == "replicates":
            del row["R"]
            one = c.times["R=1"]
            row["single run ms/it"] = ms(one)
            for label, ts in c.times.items():
                R = int(label[2:])
                if R != 1:
                    row.update({f"R={R} ms/it (cell)": ms(ts), f"R={R} ms/it per replicate": ms(ts) / R,
                                f"R={R} speed-up": statistics.median(a / (b / R) for a, b in zip(one, ts))})
        else:
            h = c.times["harness"]
            row["harness ms/step"] = ms(h)
            if c.R > 1:
                row["harness ms/step per replicate"] = ms(h) / c.R
            if "yardstick" in c.times:
                row["÷ hand-written (EMA)"] = ratio(h, c.times["yardstick"]) / c.R
            if args.runner:
                yard_run = [y for y, _ in c.runner]
                row["runner (train_cell) ms/it"] = ms([r for _, r in c.runner])
                row["runner ÷ hand-written (EMA)"] = ratio([r for _, r in c.runner], yard_run)
            if "hand" in c.times:
                rs = [x / y for x, y in zip(h, c.times["hand"])]
                q = statistics.quantiles(rs, n=4) if len(rs) > 1 else [rs[0]] * 3
                target = lookup(targets, c.name, 1.5)
                met = statistics.median(rs) <= target
                verdicts.append((c.name, statistics.median(rs), met))
                row.update({"own hand-written ms": ms(c.times["hand"]), "÷ own hand-written": statistics.median(rs),
                            "ratio quartiles": f"{q[0]:.2f}–{q[2]:.2f}", "target": f"≤ {target:g}×",
                            "met": "yes" if met else "no"})
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [[r.get(k) for k in columns] for r in rows], columns, verdicts


# -- main -----------------------------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", choices=STUDIES, default="gmm")
    p.add_argument("--compare", choices=("none", "compile", "replicates", "hand"), default="none")
    p.add_argument("--estimators", default="all", help="all and/or NAME[:K[:R]], comma-separated (default: all)")
    p.add_argument("--particles", help="K values (default: gmm 2,20; others 1; air 2)")
    p.add_argument("--replicates", help="R values (default: gmm 10, others 1); with --compare replicates: the "
                                        "stacked contenders beside R = 1")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--block", default="20", help="steps per block: N, or NAME=N,...[,N] (default: 20)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up steps per contender (default: 10)")
    p.add_argument("--order", choices=("fixed", "alternate", "hand-first"), default="fixed")
    p.add_argument("--by-round", action="store_true", help="interleave the cells: each round runs every cell's blocks")
    p.add_argument("--cpu-seconds", type=float, help="--compare none: time by process CPU time, S seconds per cell")
    p.add_argument("--project", type=int, help="--compare none: add the minutes N steps would take")
    p.add_argument("--yardstick", action="store_true", help="sbn: a block of the EMA-baseline REINFORCE loop first")
    p.add_argument("--runner", action="store_true", help="sbn, K = 1: also time train_cell (5 rounds of 100 steps)")
    p.add_argument("--target", default="1.5", help="--compare hand: ratio target, X or NAME=X,...[,X] (default 1.5)")
    p.add_argument("--profile", default="0", help="profile the N slowest harness steps (or all) afterwards")
    p.add_argument("--profile-steps", type=int, default=20)
    p.add_argument("--profile-table", type=int, default=0, help="print the profiler's operator table, ROWS rows")
    p.add_argument("--ais", help="AIS throughput of these RBMs first, e.g. 200x400,100x100")
    p.add_argument("--device", default="cpu")
    p.add_argument("--smoke", action="store_true", help="tiny run (2 cells, 1 round of 2-step blocks) to check it works")
    p.add_argument("--out", default="-", help="Markdown record (default: '-', print only)")
    args = p.parse_args(argv)
    args.particles = args.particles or DEFAULT_PARTICLES[args.study]
    args.replicates = args.replicates or DEFAULT_REPLICATES.get(args.study, "1")
    if (args.yardstick or args.runner) and args.study != "sbn":
        p.error("--yardstick and --runner are for --study sbn")
    runner_rounds, runner_steps, ais_size, warmup, blocks = RUNNER_ROUNDS, RUNNER_STEPS, (1000, 100), args.warmup, \
        per_name(args.block, int)
    if args.smoke:
        args.rounds, warmup, blocks = 1, 1, {None: 2}
        args.profile_steps, runner_rounds, runner_steps, ais_size = 2, 1, 2, (20, 3)
        args.cpu_seconds = args.cpu_seconds and 0.05
    torch.set_num_threads(1)
    load_before = load_average()
    started = time.perf_counter()
    targets = per_name(args.target, float)
    text = ""
    if args.ais:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.ais.split(",")]
        ais = [ais_throughput(n_v, n_h, args.rounds, *ais_size) for n_v, n_h in sizes]
        text += ("\n## AIS throughput (forward AIS, float64, one thread)\n\n"
                 + markdown(ais, ["RBM", "chains × temperatures", "median s", "per second"], floatfmt=",.3g"))
    specs = cells_of(args)[:2] if args.smoke else cells_of(args)
    yardstick = None
    if args.yardstick:
        from benchmarks.handwritten_sbn import HandReinforce
        yardstick = HandReinforce(sbn_data().train, sbn_data().train_mean)
    cells, shared_warm = [], [False]

    def run(cell):
        n = lookup(blocks, cell.name, 20)
        if args.cpu_seconds:
            cpu_time(cell, args.cpu_seconds)
        else:
            for r in range(args.rounds):
                one_round(cell, r, n, args)

    for name, K, R in specs:  # build (and, unless --by-round, time) cell by cell
        try:
            cell = make_cell(args, name, K, R, yardstick)
        except NotImplementedError:
            continue
        warm(cell, warmup, shared_warm)
        cells.append(cell)
        if not args.by_round:
            run(cell)
            print(f"{name} K={K} R={R}: " + ", ".join(f"{k} {ms(v):.2f} ms" for k, v in cell.times.items())
                  + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.by_round:
        for r in range(args.rounds):
            for cell in cells:
                one_round(cell, r, lookup(blocks, cell.name, 20), args)
            print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.runner:  # a fresh train_cell per estimator and round, beside a block of as many yardstick steps
        for _ in range(runner_rounds):
            for cell in cells:
                if cell.K == 1 and cell.R == 1:
                    hand_s = block(yardstick, runner_steps)
                    cell.runner.append((hand_s, RunnerBlock(cell.name).seconds_per_step(runner_steps)))
    rows, columns, verdicts = rows_of(args, cells, targets)
    if not cells:
        p.error("no cell: the study's model accepts none of these estimators at these K")
    summary = ""
    if verdicts:
        summary = (f"**Harness step ÷ own hand-written loop within target: {sum(m for _, _, m in verdicts)} of "
                   f"{len(verdicts)}** ({', '.join(f'{n} {x:.2f}×' for n, x, _ in verdicts)}).")
    n_prof = len(cells) if args.profile == "all" else int(args.profile)
    profiled = cells if args.profile == "all" else sorted(
        cells, key=lambda c: -statistics.median(c.times.get("harness") or c.times[next(iter(c.times))]))[:n_prof]
    prof = [profile(args, c, args.profile_steps, warmup) for c in profiled]
    extra = (f"Study {args.study}, --compare {args.compare}; {warmup} warm-up steps per contender, then "
             + (f"steps until {args.cpu_seconds:g} s of process CPU time (at least 3) per cell" if args.cpu_seconds
                else f"{args.rounds} rounds of blocks of {', '.join(f'{k}: {v}' if k else str(v) for k, v in blocks.items())} "
                     f"steps, order {args.order}, {'cells interleaved by round' if args.by_round else 'cell by cell'}")
             + f"; one torch thread, device {args.device}.  Whole run: {time.perf_counter() - started:.0f} s."
             + (f"\n\n{summary}" if summary else ""))
    text = header(command_line(__file__, argv), extra, load_before) + text + "\n" + markdown(rows, columns)
    if prof:
        text += (f"\n### Profiles\n\ntorch.profiler over {args.profile_steps} steps (self time of ATen operators "
                 "against the step's wall time: the rest is Python, autograd-engine and dispatch glue); the harness "
                 "step at batch 1, B and 4B fitted as a + b·B (a: the part that does not grow with the batch); "
                 "cProfile: own time of Python-level functions and the time inside the autograd backward call.\n\n"
                 + markdown([r for r, _, _ in prof],
                            ["estimator", "K", "step ms (profiled)", "in ATen ops ms", "% in ATen", "ATen calls/step",
                             "Python own ms (cProfile)", "Python calls/step", "backward call ms (cProfile)",
                             "B=1 ms", "B ms", "B=4B ms", "fixed ms (a)", "ms per data point (b)"])
                 + "\n" + "\n".join(t for _, t, _ in prof) + "\n")
        for (_, _, table), c in zip(prof, profiled):
            if table:
                text += f"\n```\n{c.name} K={c.K}\n{table}\n```\n"
    write_record(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
