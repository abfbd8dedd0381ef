"""``estibench screen``: a ranked table with intervals, one recommendation line per target group stating its
evidence, exact (zero-variance) estimators shown as such, refusals grouped by reason, the caveats it could not
measure, measurement that leaves every estimator's state and the reference's trajectory as they were, and one-line
refusals (exit status 2) before any work for bad input."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from estibench.estimators.base import Estimate, Estimator, batch_loss, logmeanexp, sample_guide
from estibench.cli import screen
from estibench.cli import main

FAST = ["--draws", "24", "--points", "2", "--steps", "4", "--bootstrap", "50", "--batch-size", "8"]


def test_screen_ranks_estimators_on_an_enumerable_model(tmp_path, capsys):
    out = tmp_path / "screen"
    assert main(["screen", "--model", "sbn_tiny", "--estimators", "reinforce,rloo,disarm,concrete",
                 "--out", str(out)] + FAST) == 0
    text = capsys.readouterr().out
    assert "Recommendation for the ELBO (target elbo): " in text and "Not measured / caveats:" in text
    frame = pd.read_csv(out / "screen.csv")
    assert set(frame.estimator) == {"reinforce", "rloo", "disarm", "concrete"} and set(frame.point) == {0, 1}
    assert (frame.variance_lo <= frame.variance).all() and (frame.variance <= frame.variance_hi).all()
    assert frame.rel_bias.notna().all() and (frame.sec_per_draw > 0).all()
    # REINFORCE without a baseline is ranked last: its variance is orders of magnitude above the others'
    var = frame.groupby("estimator").variance.median()
    assert var["reinforce"] > 50 * var[["rloo", "disarm"]].max()
    # per target: RLOO for the ELBO, DisARM for the IWAE bound; never the biased concrete, never REINFORCE
    assert text.split("Recommendation for the ELBO (target elbo): ")[1].split(" ")[0] == "rloo"
    assert text.split("Recommendation for the IWAE bound (target iwae): ")[1].split(" ")[0] == "disarm"
    md = (out / "screen.md").read_text()
    assert "Recommendation" in md and "| estimator" in md.replace("|  ", "| ")


def test_screen_says_what_it_could_not_measure_on_a_model_of_your_own(capsys):
    """A plugin model (examples/uniform_gmm.py) by import path; 'all' estimators: the refused ones are listed with
    their reasons; the GMM is enumerable, so bias is measured."""
    assert main(["screen", "--model", "estibench.examples.uniform_gmm:UniformGMM",
                 "--estimators", "reinforce,rloo,iwae,arm"] + FAST) == 0
    text = capsys.readouterr().out
    assert "refused (2): do not fit this model at K = 2, by reason:" in text
    assert "supports only bernoulli latents (1): arm" in text and "supports only normal latents (1): iwae" in text
    assert "bias: not measured" not in text


@pytest.mark.parametrize("argv,message", [
    (["--model", "sbn_tinyy"], "did you mean"),
    (["--model", "sbn_tiny", "--estimators", "rlooo"], "did you mean"),
    (["--model", "sbn_tiny", "--draws", "2"], "--draws must be at least 3"),
    (["--model", "sbn_tiny", "--points", "3", "--steps", "1"], "--steps"),
    (["--model", "sbn_tiny", "--estimators", "iwae"], "no estimator fits"),
    (["--model", "sbn_tiny", "--reference", "iwae"], "--reference"),
    (["--model", "nowhere.module:Model"], "cannot import"),
    (["--model", "sbn_tiny", "--draws", "many"], "invalid int value"),
    (["--model", "sbn_tiny", "--target", "kl"], "invalid choice: 'kl'"),
    (["--model", "sbn_tiny", "--threads", "0"], "--threads must be at least 1"),
    ([], "required: --model"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(["screen"] + argv)
    except SystemExit as stop:  # argparse's own errors (a value of the wrong type, a missing flag)
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_the_gram_bootstrap_is_the_direct_one():
    """The O(n²)-per-resample bootstrap of the mean variance equals resampling the draws directly, rescaled by
    n/(n − 1) (seed 0, 50 resamples of 30 draws of a 7-coordinate vector with unequal scales)."""
    import numpy as np
    import torch
    from estibench.cli.screen import _bootstrap_var
    torch.manual_seed(0)
    x = torch.randn(30, 7) * torch.arange(1, 8)
    point, lo, hi, stats = _bootstrap_var(x, 50, np.random.default_rng(0))
    gen = np.random.default_rng(0)
    d = x.double().numpy()
    direct = np.array([d[gen.integers(0, 30, 30)].var(0, ddof=1).mean() for _ in range(50)]) * 30 / 29
    assert np.allclose(stats, direct, rtol=1e-12) and abs(point - float(x.double().var(0).mean())) < 1e-9
    assert lo <= point <= hi


def test_the_bootstrap_of_identical_draws_is_zero_never_negative():
    """40 identical draws of a 644-coordinate gradient of size ~30 (seed 0), 200 resamples: the uncentred Gram
    formula gave resampled variances in [−5.3e-12, 1.1e-11] by rounding; centred and clamped, every one is 0.  With
    a relative spread of 1e-9 the bounds stay ≥ 0."""
    from estibench.cli.screen import _bootstrap_var
    torch.manual_seed(0)
    row = torch.randn(644, dtype=torch.float64) * 30
    point, lo, hi, stats = _bootstrap_var(row.expand(40, -1).clone(), 200, np.random.default_rng(0))
    assert point == 0.0 and lo == 0.0 and hi == 0.0 and (stats == 0).all()
    near = row + 1e-9 * 30 * torch.randn(40, 644, dtype=torch.float64)
    point, lo, hi, stats = _bootstrap_var(near, 200, np.random.default_rng(0))
    assert 0 <= lo <= point <= hi and (stats >= 0).all() and point > 0


class EMABaseline(Estimator):
    """REINFORCE for the IWAE bound with an exponential-moving-average baseline updated inside ``surrogate`` (a
    buffer) and a count of updates (a plain attribute): unbiased (the baseline comes from earlier draws), stateful."""

    latent_types = frozenset({"categorical", "bernoulli"})

    def __init__(self, decay: float = 0.5):
        super().__init__()
        self.decay = float(decay)
        self.register_buffer("baseline", torch.zeros(()))
        self.updates = 0

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = logmeanexp(log_p - log_q, 0)
        b = self.baseline.clone()
        self.baseline.mul_(self.decay).add_((1 - self.decay) * bound.detach().mean())
        self.updates += 1
        per_point = (bound.detach() - b) * log_q.sum(0) + bound
        return Estimate(batch_loss(per_point), bound.detach().mean(-1))


class RandomOffsetBaseline(EMABaseline):
    """The same with a baseline offset of its own, initialised at random on ``bind`` as a baseline network's weights
    are (not trained): binding it draws from torch's global generator."""

    def bind(self, model):
        self.offset = torch.nn.Parameter(0.01 * torch.randn(model.replicates))
        return self

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = logmeanexp(log_p - log_q, 0)
        per_point = (bound.detach() - self.offset.detach().unsqueeze(-1)) * log_q.sum(0) + bound
        return Estimate(batch_loss(per_point), bound.detach().mean(-1))


EMA = f"{__name__}:EMABaseline"
OFFSET = f"{__name__}:RandomOffsetBaseline"
SMALL = ["--draws", "12", "--points", "2", "--steps", "2", "--bootstrap", "20", "--batch-size", "8"]


def collect(*argv):
    return screen.collect(screen.parser().parse_args(["--model", "gmm", *SMALL, *argv]), out=lambda line: None)


@pytest.fixture(scope="module")
def gmm_screen():
    """One small screen of the GMM (K = 2, 12 draws, points at steps 0 and 2 of RLOO, seed 0) with an exact
    estimator (IndeCateR: the GMM has one categorical, which it enumerates), estimators of all three targets and
    three that the GMM refuses; every warning recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = collect("--estimators", "indecater,rloo,reinforce,vimco,ws,arm,disarm,iwae")
        lines = []
        screen.report(result, out=lines.append)
    return result, "\n".join(lines), [f"{w.category.__name__}: {w.message}" for w in caught]


def test_an_exact_estimator_is_shown_as_exact_with_no_negative_bound_no_inf_and_no_warning(gmm_screen):
    result, text, caught = gmm_screen
    assert caught == []
    frame = result.frame
    assert frame[frame.estimator == "indecater"].zero_variance.all()
    assert not frame[frame.estimator != "indecater"].zero_variance.any()
    assert (frame[["variance_lo", "work_var_lo"]] >= 0).all().all()
    assert not re.search(r"\binf\b|inf×|\bnan\b", text, re.I)
    assert not re.search(r"(?<![\w.])-\d", text)  # no negative number anywhere (variances and their bounds)
    row = next(line for line in text.splitlines() if " indecater " in line)
    assert row.count("0 (exact)") == 2
    rec = next(line for line in text.splitlines() if line.startswith("Recommendation for the ELBO"))
    assert "indecater — exact: zero variance at all 2 point(s) (relative tolerance 1e-10)" in rec
    assert "ms per draw" in rec and "rloo" in rec and "× the cost" in rec  # the noisy alternative and its cost


def test_one_recommendation_per_target_and_the_users_target_alone(gmm_screen):
    result, text, _ = gmm_screen
    recs = [line for line in text.splitlines() if line.startswith("Recommendation")]
    assert [r.split(":")[0] for r in recs] == ["Recommendation for the ELBO (target elbo)",
                                               "Recommendation for the IWAE bound (target iwae)",
                                               "Recommendation for the inclusive KL (target inclusive_kl)"]
    assert recs[1].split(": ", 1)[1].split(" ")[0] in {"reinforce", "vimco"}
    assert "none unbiased" in recs[2] and "ws" in recs[2]  # wake-sleep's φ-gradient is self-normalised: biased
    objectives = next(line for line in text.splitlines() if line.startswith("Objectives"))
    assert "train with the ELBO (VAE-style K-sample average) → target elbo (2)" in objectives
    assert "→ target iwae (2)" in objectives and "→ target inclusive_kl (1)" in objectives
    lines = []
    result.args.target = "iwae"
    try:
        screen.report(result, out=lines.append)
    finally:
        result.args.target = None
    recs = [line for line in lines if line.startswith("Recommendation")]
    assert len(recs) == 1 and recs[0].startswith("Recommendation for the IWAE bound (target iwae): ")
    assert any(line.startswith("Your objective (--target iwae): train with the K-sample IWAE bound") for line in lines)
    table = lines[0].splitlines()[1:]
    assert [row.split()[0] for row in table] == ["iwae", "iwae", "elbo", "elbo", "inclusive_kl"]  # kept, iwae first


def test_ties_are_not_separated_and_a_lone_exact_estimator_has_no_ratio():
    """Synthetic rows (two points each): overlapping work×var intervals read "not separated", disjoint ones
    "intervals separate"; an exact estimator alone in its group is recommended with its cost and no ratio."""
    def rows(name, target, var, lo, hi, sec=0.01, zero=False, unbiased=True):
        return [{"point": p, "estimator": name, "unbiased": unbiased, "target": target, "variance": var,
                 "variance_lo": lo, "variance_hi": hi, "sec_per_draw": sec, "work_var": var * sec,
                 "work_var_lo": lo * sec, "work_var_hi": hi * sec, "zero_variance": zero, "rel_bias": float("nan"),
                 "bias_z": float("nan"), "bias_threshold": float("nan"), "bias_rejected": float("nan")}
                for p in (0, 1)]
    frame = pd.DataFrame(rows("a", "iwae", 1.0, 0.8, 1.2) + rows("b", "iwae", 1.1, 0.9, 1.3)
                         + rows("c", "elbo", 1.0, 0.9, 1.1) + rows("d", "elbo", 3.0, 2.5, 3.5)
                         + rows("e", "inclusive_kl", 0.0, 0.0, 0.0, sec=0.02, zero=True))
    table = screen.ranked(frame)
    tie = screen.recommendation(table, 2, "iwae")
    assert "runner-up b at 1.1× (intervals overlap: the two are not separated)" in tie
    assert "runner-up d at 3× (intervals separate)" in screen.recommendation(table, 2, "elbo")
    rec = screen.recommendation(table, 2, "inclusive_kl")
    assert "e — exact: zero variance at all 2 point(s)" in rec and "20 ms per draw" in rec and "×" not in rec
    assert list(table.estimator) == ["c", "d", "a", "b", "e"] and list(table["rank"]) == [1, 2, 1, 2, 1]


def test_refusals_group_by_reason():
    """Every registered estimator's real refusal on the GMM at K = 1 and on the tiny RBM-prior VAE: each refused
    estimator is in exactly one group, the reasons name no estimator, and estimators refused alike share a line."""
    from estibench import estimators
    from estibench.harness.runner import build_model
    for model_name, K, expect in (("gmm", 1, {"supports only bernoulli latents": {"arm", "disarm"},
                                              "needs at least 2 particles": {"rloo", "vimco"}}),
                                  ("rbm_vae_tiny", 2, {"needs the layered Bernoulli interface": {"arm", "nvil"}})):
        model = build_model(model_name, seeds=(0,))
        refused = {}
        for name in estimators.names():
            try:
                estimators.get(name).check(model, K)
            except estimators.IncompatibleError as err:
                refused[name] = str(err)
        groups = screen.refused_groups(refused)
        assert sorted(label for _, labels in groups for label in labels) == sorted(refused)
        assert len(groups) < len(refused) / 2
        for reason, labels in groups:
            assert not any(f"'{name}'" in reason for name in refused), reason
        found = dict(groups)
        for reason, members in expect.items():
            assert members <= set(found[reason]), (reason, groups)


def test_measurement_leaves_a_stateful_estimator_as_it_was_and_says_its_state_moves():
    """An estimator whose ``surrogate`` moves an EMA baseline (buffer) and a counter (plain attribute) comes out of
    screen's 2 points × 12 draws with both as bound (the harness restores them: screen's ``frozen`` and, since
    1003eb6, ``gradient_draws`` itself; on a6ac7fd the baseline moved); the same estimator, used once outside
    measurement, moves them (so the check can fail).  The report names it under "state that moves under
    measurement", and not RLOO."""
    result = collect("--estimators", f"{EMA},rloo")
    est = dict(result.candidates)[EMA]
    assert float(est.baseline) == 0.0 and est.updates == 0
    assert len(result.frame[result.frame.estimator == EMA]) == 2
    lines = []
    screen.report(result, out=lines.append)
    text = "\n".join(lines)
    assert "state that moves under measurement" in text and f"      {EMA}: baseline, updates" in text
    assert "      rloo:" not in text
    est.gradients(result.model, result.model.sample(8)[1], 2)
    assert float(est.baseline) != 0.0 and est.updates == 1


def test_the_reference_trajectory_and_the_draws_do_not_depend_on_what_else_is_screened():
    """RLOO trains the GMM for 2 steps between the points (seed 0): its parameters at the last point, and RLOO's
    own measured draws (variance and interval), are the same bit for bit whether RLOO is screened alone or with
    four more estimators (one stateful, one whose binding draws random numbers, one with parameters of its own)."""
    alone = collect("--estimators", "rloo")
    many = collect("--estimators", f"reinforce,{EMA},{OFFSET},relax,rloo")
    a, b = alone.model.state_dict(), many.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], v) for k, v in screen.build(alone.args)[0].state_dict().items())  # it trained
    cols = ["point", "variance", "variance_lo", "variance_hi", "rel_bias"]
    x = alone.frame[alone.frame.estimator == "rloo"][cols].reset_index(drop=True)
    y = many.frame[many.frame.estimator == "rloo"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(x, y, check_exact=True)
