"""Attend-Infer-Repeat (models/air.py) and its study (studies/air/__init__.py, studies/air/task.py AIRTask, studies/air/page.py):
the spatial transformer, the step-count prior and its annealing, the guide's two passes, VIMCO's structured form on
AIR, bad input, and a smoke run of every estimator that takes AIR through the CLI, the store and the report."""
import json
import math
import os

import pandas as pd
import pytest
import torch

from estibench import estimators
from estibench.cli import main
from estibench.harness.runner import build_model
from estibench.models.air import extract, geometric_log_prior, glimpse_theta, place


@pytest.fixture(scope="module")
def air():
    return build_model("air", seeds=(0, 1))


def batch(model, n=4, seed=0):
    from estibench import data
    gen = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(data.load(model.dataset).train[:n], generator=gen)
    return x.expand(model.replicates, n, x.shape[-1]).contiguous()


def test_the_inverse_transformer_inverts_the_glimpse_transform():
    """θ_inverse ∘ θ = identity as 3 × 3 affine maps, at random where-logits; and extracting a glimpse of an image,
    then placing it back, reproduces the image inside the glimpse's box (bilinear: up to interpolation, 1e-5 on a
    smooth image at a glimpse of the image's resolution)."""
    torch.manual_seed(0)
    where = torch.randn(6, 4)
    a, b = glimpse_theta(where), glimpse_theta(where, inverse=True)
    last = torch.tensor([0.0, 0.0, 1.0]).expand(6, 1, 3)
    compose = torch.cat([b, last], 1) @ torch.cat([a, last], 1)
    torch.testing.assert_close(compose, torch.eye(3).expand(6, 3, 3), atol=1e-5, rtol=0)
    side = 20
    ramp = torch.linspace(0, 1, side)
    image = (ramp.view(-1, 1) * ramp.view(1, -1)).expand(1, side, side)
    full = torch.tensor([[20.0, 20.0, 0.0, 0.0]])  # scale σ(20) ≈ 1, no shift: the glimpse is the whole image
    back = place(extract(image, full, side), full, (side, side))
    torch.testing.assert_close(back, image, atol=1e-5, rtol=0)


def test_the_step_count_prior_is_normalised_and_annealed(air):
    counts = torch.arange(air.steps + 1, dtype=torch.float64)
    for s in (1 - 1e-7, 0.5, 1e-5):
        assert math.isclose(float(geometric_log_prior(counts, s, air.steps).exp().sum()), 1.0, rel_tol=1e-12)
    air.set_progress(0.0)
    assert air.success == air.prior_start
    air.set_progress(air.hold_fraction + air.anneal_fraction / 2)  # half way, in log space
    assert math.isclose(air.success, math.sqrt(air.prior_start * air.prior_end), rel_tol=1e-9)
    air.set_progress(1.0)
    assert air.success == air.prior_end
    air.set_progress(0.0)


def test_prior_samples_follow_the_step_count_prior(air):
    """χ² of 6,000 prior counts (s = 0.5, two replicates × 3,000) against the truncated geometric: below 16.3 (df 3,
    false-alarm rate 1e-3); torch seed 0."""
    torch.manual_seed(0)
    air.success = 0.5
    try:
        counts = air.counts(air.sample_latents(3000)).flatten()
    finally:
        air.set_progress(0.0)
    expected = geometric_log_prior(torch.arange(air.steps + 1, dtype=torch.float64), 0.5, air.steps).exp() * len(counts)
    observed = torch.bincount(counts, minlength=air.steps + 1).double()
    assert float(((observed - expected) ** 2 / expected).sum()) < 16.3


@pytest.mark.parametrize("rnn_input", ["image", "image+latents"])
def test_the_guides_passes_agree(rnn_input):
    """The teacher-forced log q of the guide's samples equals the log q the reparameterised pass computed while
    drawing them (discrete and continuous parts), and absent steps are stored as zeros; for the ws_air RNN input
    (the image) and Eslami et al.'s (the image and the previous step's latents)."""
    air = build_model("air", seeds=(0, 1), rnn_input=rnn_input)
    torch.manual_seed(1)
    x = batch(air)
    z, log_d, log_c = air.guide_rsample_structured(x, 3)
    torch.testing.assert_close(air.guide(x).log_prob(z.detach()), (log_d + log_c).detach(), rtol=1e-5, atol=1e-4)
    pres, where, what = air.unpack(z.detach())
    assert torch.equal(pres, pres.cummin(-1).values)  # once absent, absent
    assert (where[pres == 0] == 0).all() and (what[pres == 0] == 0).all()


def test_structured_vimco_on_air_scores_the_count_and_differentiates_through_where_and_what(air):
    est = estimators.get("vimco").bind(air)
    assert type(est).__name__ == "VimcoStructured"
    torch.manual_seed(2)
    grads, _, objective = est.gradients(air, batch(air), 3)
    named = dict(zip([n for n, _ in air.named_parameters()], grads))
    for part in ("presence_net", "where_net", "what_net", "encoder", "decoder"):
        assert any(g.abs().sum() > 0 for n, g in named.items() if n.startswith(part)), part
    assert torch.isfinite(objective).all()


@pytest.mark.parametrize("args,message", [
    (["--suite", "air", "--model-options", "glimpse=60"], "does not fit the 50 × 50 canvas"),
    (["--suite", "air", "--model-options", "steps=1"], "at most steps = 1"),
    (["--suite", "air", "--estimators", "iwae"], "does not support structured latents"),
    (["--suite", "air", "--particles", "0"], "at least 1"),
    (["--suite", "gmm", "--model-options", "what_dim=5"], "has no option 'what_dim'"),
    (["--suite", "vae", "--estimators", "relax"], "does not support normal latents"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message, capsys):
    assert main(args + ["--iterations", "2", "--out", str(tmp_path / "out"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_the_tiny_suite_runs_every_estimator_and_reports(tmp_path):
    out = str(tmp_path)
    assert main(["--suite", "air_tiny", "--device", "cpu", "--out", out]) == 0
    table = pd.read_csv(os.path.join(out, "metrics.csv"))
    assert set(table.estimator) == {"ww", "vimco", "ws", "rw+rws", "dww"}
    last = table[table.iteration == 4]
    for metric in ("test_ll[K=5]", "kl_posterior", "test_count_accuracy", "count_accuracy", "ess[K=2]",
                   "grad_logvar_frozen", "prior_step_prob"):
        assert metric in set(last.metric), metric
    acc = last[last.metric.isin(["test_count_accuracy", "count_accuracy"])].value
    assert ((acc >= 0) & (acc <= 1)).all()
    conf = last[last.metric.str.startswith("count_confusion[")].copy()
    conf["true"] = conf.metric.str.extract(r"true=(\d+)")[0]
    sums = conf.groupby(["estimator", "seed", "true"]).value.sum()
    assert ((sums - 1).abs() < 1e-6).all()  # every row of the confusion matrix sums to one
    page = open(os.path.join(out, "air", "report.md")).read()
    for heading in ("## Budget", "## Fig. 1 layout", "## Seed-to-seed failures", "## Count confusion matrix",
                    "## Reconstructions with the inferred boxes"):
        assert heading in page, heading
    assert os.path.exists(os.path.join(out, "air", "reconstructions.png"))
    from estibench.harness.store import Store
    artifacts = Store(out).artifacts()
    boxes = [json.loads(bytes(d).decode()) for d in artifacts[artifacts.name == "boxes"].data]
    assert len(boxes) == 5 and all(len(b) == 3 and {"inferred", "true", "true_count"} <= set(b[0]) for b in boxes)


@pytest.mark.parametrize("name", ["ww", "vimco"])
def test_a_training_step_never_reads_a_tensor_back_to_the_host(air, name, monkeypatch):
    """CUDA-free check that AIR's training step (the estimator's gradients, the model's schedule) has no host
    synchronisation: every Tensor method that copies a value to Python (item, tolist, cpu, numpy, bool/int/float
    conversion) is counted while it runs: none is called.  (It caught torch.distributions' argument validation,
    which reads a tensor back per distribution; the model builds its distributions with validate_args=False.)
    Adam's step is left out: its step counters are host tensors by design (torch's non-capturable Adam), so reading
    them does not wait for the device."""
    est = estimators.get(name).bind(air)
    x = batch(air)
    calls = []
    for method in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *a, _original=original, _method=method, **k):
            calls.append(_method)
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, method, counted)
    air.set_progress(0.3)
    est.set_progress(0.3)
    grads, _, _ = est.gradients(air, x, 3)
    monkeypatch.undo()
    air.set_progress(0.0)
    assert calls == [], sorted(set(calls))
