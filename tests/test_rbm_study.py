"""The RBM study end to end (studies/rbm/__init__.py, studies/rbm/task.py RBMTask): a tiny run through the CLI,
the store and the report, with every log-likelihood normalised by log Z."""
import os

import pandas as pd

from estibench.cli import main

TINY = ["--suite", "rbm_tiny", "--iterations", "6", "--eval-every", "3", "--seeds", "2", "--device", "cpu"]


def test_the_tiny_rbm_suite_runs_and_normalises_by_the_exact_log_z(tmp_path):
    out = str(tmp_path)
    assert main([*TINY, "--groups", "1", "--out", out]) == 0
    table = pd.read_csv(os.path.join(out, "metrics.csv"))
    assert set(table.estimator) == {"overlap_exp", "spike_exp", "gumbolt", "vimco", "contrastive_rws"}
    assert set(table.model) == {"rbm_vae_tiny[arch=linear,groups=1]"}
    assert not table.duplicated(["key", "seed", "iteration", "metric"]).any()  # log Z once per evaluation
    last = table[table.iteration == 6].pivot_table(index=["estimator", "seed"], columns="metric", values="value")
    # the exact prior: log Z is the enumerated value, the AIS estimates bracket it closely
    assert (last.log_z - last.log_z_exact).abs().max() < 1e-5
    assert (last.log_z_ais - last.log_z_exact).abs().max() < 0.05
    assert (last.log_z_reverse_ais - last.log_z_exact).abs().max() < 0.05
    # the IWAE bound (K = 100, normalised by log Z) sits just below the exact log-likelihood
    gap = last["test_log_px_exact"] - last["test_ll[K=100]"]
    assert (gap > -0.05).all() and (gap < 2.0).all(), gap
    page = open(os.path.join(out, "rbm", "report.md")).read()
    for heading in ("## Final-iteration summary", "## log Z of the RBM prior",
                    "## AIS-based numbers against exact ones (enumerable prior)",
                    "## The RAISE check", "## Published: the RBM-prior paper, Table 1"):
        assert heading in page, heading
    assert "83.69 (RAISE 83.77)" in page
    # each cell keeps 16 decoded prior samples (float16, 7×7) as an artifact, drawn into the page's grid
    from estibench.harness.store import Store
    store = Store(out, readonly=True)
    artifacts, cells = store.artifacts(), store.cells()
    assert set(artifacts.key) == set(cells.key) and set(artifacts.name) == {"prior_means"}
    assert all(len(d) == 16 * 7 * 7 * 2 for d in artifacts.data)
    assert "## Samples from the prior (7×7)" in page and os.path.exists(os.path.join(out, "rbm", "prior_samples_7.png"))


def test_grid_flags_take_numbers(tmp_path, capsys):
    assert main([*TINY, "--groups", "1,2", "--dry-run", "--out", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "groups=1" in listing and "groups=2" in listing


import pytest


@pytest.mark.parametrize("options", [{}, {"latent_bits": 6, "rbm_hidden": 5}], ids=["two-latent-sides", "hidden-summed-out"])
def test_the_raise_likelihood_agrees_with_the_exact_log_z_one_on_the_tiny_model(options):
    """RAISE replaces log Z by a reverse chain per particle: on rbm_vae_tiny with a strongly coupled RBM
    (W ~ U(±2), seed 0) and a long schedule (10 chains × 300 temperatures), its IWAE bound on 20 points
    (K = 10, global seed 0; the same particles for both) is within 0.05 nat of the bound with exact log Z."""
    import torch

    from estibench.harness.metrics import iwae_log_likelihood
    from estibench.harness.runner import build_model
    from estibench.studies.rbm.task import RBMTask

    model = build_model("rbm_vae_tiny", seeds=(0,), **options)
    with torch.no_grad():
        model.rbm.W.copy_(torch.rand(model.rbm.W.shape, generator=torch.Generator().manual_seed(0)) * 4 - 2)
    torch.manual_seed(0)
    x = model.sample(20)[1]
    torch.manual_seed(1)
    raised = RBMTask.raise_log_likelihood(model, x, 10, chains=10, steps=300).mean()
    torch.manual_seed(1)
    exact = iwae_log_likelihood(model, x, 10).mean()
    assert abs(float(raised - exact)) < 0.05, (float(raised), float(exact))


def test_the_papers_layouts_are_pure_functions_of_the_table():
    """DVAE++ Table 2's layout places each cell by its columns (model, options, estimator, elbo), with the
    published value beside ours; the RBM-prior paper's Table 1 separates pretrained cells from the ablation."""
    from estibench.studies.rbm import page as page

    def rows(key, model_name, model_options, estimator, values, estimator_options=None, study_options=None,
             metric="test_ll[K=100]"):
        columns = {**{f"model__{k}": v for k, v in model_options.items()},  # the store's option columns
                   **{f"estimator__{k}": v for k, v in (estimator_options or {}).items()},
                   **{f"study__{k}": v for k, v in (study_options or {}).items()}}
        return [dict(key=key, model=model_name, model_name=model_name, label=estimator, estimator=estimator,
                     particles=1, seed=seed, iteration=10, metric=metric, value=v, **columns)
                for seed, v in enumerate(values)]

    table = pd.DataFrame(
        rows("a", "rbm_vae", {"arch": "linear", "groups": 2}, "overlap_exp", [-100.0, -102.0])
        + rows("b", "sbn", {"arch": "nonlinear"}, "overlap_exp", [-110.0, -110.0], {"elbo": "marginal"})
        + rows("c", "rbm_vae", {"arch": "elu", "groups": 1, "rbm_hidden": 400}, "vimco", [-90.0, -92.0], {},
               {"pretrain_ae_steps": 10})
        + rows("d", "rbm_vae", {"arch": "elu", "groups": 1, "rbm_hidden": 400}, "vimco", [-120.0, -120.0])
        + rows("c", "rbm_vae", {"arch": "elu", "groups": 1, "rbm_hidden": 400}, "vimco", [-91.0, -93.0], {},
               {"pretrain_ae_steps": 10}, metric="test_ll_raise[K=10]"))
    t2 = page.dvaepp_table2(table).set_index("row")
    assert t2.loc["2 Linear", "RBM (ours) · estibench"] == "-101.00 ± 1.41"
    assert t2.loc["2 Linear", "RBM (ours) · paper"] == "-94.15 ± 0.45"
    assert t2.loc["1 Nonlin.", "Marg. ELBO · estibench"] == "-110.00 ± 0.00"
    assert t2.loc["1 Linear", "RBM (ours) · estibench"] == "—"
    t1 = page.rbm_prior_table1(table).set_index("training")
    assert t1.loc["pretrained", "test NLL (ours, −test_ll[K=100])"] == "91.00 ± 1.41"
    assert t1.loc["pretrained", "test NLL (paper)"] == "83.69 (RAISE 83.77)"
    assert t1.loc["pretrained", "RAISE NLL (ours, −test_ll_raise[K=10], subset)"] == "92.00 ± 1.41"
    assert t1.loc["no pretraining", "test NLL (paper)"] == "121.65"


BAD_RBM_INPUT = [
    (["--suite", "rbm_tiny", "--model-options", "ais_steps=0"], "at least 2 temperatures"),
    (["--suite", "rbm_tiny", "--model-options", "chains=-3"], "chains must be at least 1"),
    (["--suite", "rbm_tiny", "--model-options", "gibbs_sweeps=0"], "gibbs_sweeps must be at least 1"),
    (["--suite", "rbm", "--model-options", "log_z=exact", "--estimators", "vimco"], "needs an RBM whose smaller side"),
    (["--suite", "sbn", "--model-options", "chains=10"], "chains"),  # an RBM-only option on a directed model
    (["--suite", "sbn", "--groups", "1"], "--groups"),
]


@pytest.mark.parametrize("argv,words", BAD_RBM_INPUT, ids=[" ".join(a[1:]) for a, _ in BAD_RBM_INPUT])
def test_bad_rbm_input_is_one_line_and_stores_nothing(argv, words, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*argv, "--iterations", "2", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (out / "results.sqlite").exists()

