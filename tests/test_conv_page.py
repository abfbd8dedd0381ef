"""The convolutional study's page (``studies/conv/page.py``) on a small synthetic tidy table: each cell's place in
DVAE++ Table 3 and PixelVAE++ Table 1 read from its columns, the intervals, bits per dimension for colour data, the
sections in the order the page promises, and the prior-sample grids drawn from the artifacts."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from estibench.studies.conv import page
from estibench.studies.conv.settings import ROWS

BETA = {"beta_start": 5.0, "beta_end": 12.0}
SMALL = {"dataset": "mnist5k-bern0", "downsample": 2, "width": 16, "scales": 1, "local_groups": 2,
         "local_channels": 4, "likelihood": "bernoulli"}

#: key → (model name, estimator, model options, estimator options): the five latent types, the tiny exact cell, the
#: PixelVAE++ pair and one CIFAR-10 cell
CELLS = {
    "nn": ("conv_vae_normal", "vae", {**SMALL, "latent_dim": 16}, {}),
    "rolfe": ("conv_vae", "spike_exp", {**SMALL, "latent_bits": 16, "prior": "rbm", "local": "normal"}, BETA),
    "ours_n": ("conv_vae", "overlap_exp", {**SMALL, "latent_bits": 16, "local": "normal"}, BETA),  # prior: default
    "ours_b": ("conv_vae", "overlap_exp", {**SMALL, "latent_bits": 16, "prior": "rbm", "local": "bernoulli"}, BETA),
    "bb": ("conv_vae", "overlap_exp", {**SMALL, "latent_bits": 16, "prior": "bernoulli", "local": "bernoulli"}, BETA),
    "tiny": ("conv_vae", "overlap_exp", {**SMALL, "downsample": 7, "latent_bits": 6, "local": "bernoulli",
                                         "local_integration": "exact"}, BETA),
    "px_n": ("conv_vae_normal", "vae", {**SMALL, "downsample": 1, "local_groups": 0, "latent_dim": 16,
                                        "likelihood": "pixelcnn", "pixelcnn_filters": 8}, {}),
    "px_r": ("conv_vae", "gumbolt_pd", {**SMALL, "downsample": 1, "local_groups": 0, "latent_bits": 16,
                                        "likelihood": "pixelcnn", "pixelcnn_filters": 8},
             {"temperature": 0.25, "kl_warmup": 0.1}),
    "cifar": ("conv_vae", "overlap_exp", {**SMALL, "dataset": "cifar10", "downsample": 1, "latent_bits": 16,
                                          "local": "normal", "likelihood": "logistic"}, BETA),
}


def _cell(key):
    model_name, estimator, model_options, estimator_options = CELLS[key]
    return dict(key=key, study="conv", model=f"{model_name}[{key}]", model_name=model_name, estimator=estimator,
                label=estimator, particles=1, iterations=10, batch_size=32, preset="",
                dataset=model_options["dataset"],
                **{f"model__{k}": v for k, v in model_options.items()},
                **{f"estimator__{k}": v for k, v in estimator_options.items()})


def _table(keys=tuple(CELLS)):
    rows = []
    for i, key in enumerate(keys):
        base = _cell(key)
        metrics = {"test_ll[K=100]": [-100.0 - i, -102.0 - i], "test_ll[K=10]": [-200.0, -200.0],
                   "test_kl": [5.0, 7.0], "sec_per_iter": [0.1, 0.3], "peak_memory_mb": [10.0, 10.0]}
        if key == "tiny":
            metrics.update({"test_log_px_exact": [-99.0, -101.0], "exact_grad/bias_sq": [1e-4, 3e-4],
                            "log_z_exact": [4.0, 4.0], "log_z_ais": [3.9, 4.1], "log_z_reverse_ais": [4.0, 4.2],
                            "log_z": [4.0, 4.0]})
        for metric, values in metrics.items():
            for seed, value in enumerate(values):
                rows.append({**base, "seed": seed, "iteration": 10, "metric": metric, "value": value})
        rows.append({**base, "seed": 0, "iteration": 5, "metric": "test_ll[K=100]", "value": 0.0})  # not final
    table = pd.DataFrame(rows)
    cells = table.drop_duplicates("key").drop(columns=["seed", "iteration", "metric", "value"])
    return table, cells.reset_index(drop=True)


def test_each_cell_takes_its_row_of_table3_from_its_columns():
    expected = {"nn": ROWS[0], "rolfe": ROWS[1], "ours_n": ROWS[2], "ours_b": ROWS[3], "bb": ROWS[4],
                "tiny": "", "px_n": "", "px_r": "", "cifar": ROWS[2]}
    for key, row in expected.items():
        assert page.table3_row(pd.Series(_cell(key))) == row, key
    # a missing (NaN) prior column means the default RBM prior
    assert page.table3_row(pd.Series({**_cell("ours_n"), "model__prior": math.nan})) == ROWS[2]
    assert page.table1_column(pd.Series(_cell("px_n"))) == "Gaussian prior"
    assert page.table1_column(pd.Series(_cell("px_r"))) == "RBM prior"
    assert page.table1_column(pd.Series(_cell("nn"))) == ""
    assert page.variant(pd.Series(_cell("ours_b"))) == "overlap_exp β 5→12"
    assert page.variant(pd.Series(_cell("px_r"))) == "gumbolt_pd τ 0.25 kl_warmup=0.1"
    plain = pd.Series({**_cell("px_r"), "estimator": "gumbolt"})
    assert page.table1_column(plain) == "RBM prior, plain GumBolt"
    assert page.variant(pd.Series(_cell("nn"))) == "vae"


def test_table3_layout_shows_mean_and_interval_beside_the_paper():
    table, cells = _table()
    t3 = page.dvaepp_table3(table, cells).set_index("global / local latents")
    assert list(t3.index) == list(ROWS)
    mnist = "mnist5k-bern0 (14×14) · estibench"
    half = 1.0 * 12.706204736 / 1.0  # t(0.975; 1) · s / √2 with s = √2
    assert t3.loc[ROWS[0], mnist] == f"-101.00 ± {half:.2f}"
    assert t3.loc[ROWS[4], mnist] == f"-105.00 ± {half:.2f}"
    assert t3.loc[ROWS[2], "estimator · variant"] == "overlap_exp β 5→12"
    assert t3.loc[ROWS[0], "MNIST static · paper"] == "-79.40"
    # CIFAR-10 in bits per dimension (3 × 32 × 32 dims), converted per seed
    bits = [-v / (3072 * math.log(2)) for v in (-108.0, -110.0)]
    assert t3.loc[ROWS[2], "cifar10 (32×32, bits/dim) · estibench"].startswith(f"{np.mean(bits):.3f} ± ")
    assert t3.loc[ROWS[1], "cifar10 (32×32, bits/dim) · estibench"] == "—"


def test_table1_layout_and_the_published_tables_without_cells():
    table, cells = _table()
    t1 = page.pixelvae_table1(table, cells).set_index("dataset")
    ours = "mnist5k-bern0 (28×28) · estibench"
    assert t1.loc[ours, "Gaussian prior · estibench"].endswith("(6.00)")
    assert t1.loc[ours, "RBM prior · estimator"] == "gumbolt_pd τ 0.25 kl_warmup=0.1"
    assert t1.loc["MNIST static · paper", "VLAE · paper"] == "-79.03"
    empty = pd.DataFrame(columns=table.columns)
    assert page.dvaepp_table3(empty).shape[0] == len(ROWS)
    titles = [s.title for s in page.sections(empty, empty.drop(columns=["seed", "metric", "value"]))]
    assert "DVAE++ Table 3 layout" in titles and "PixelVAE++ Table 1 layout" in titles


def test_sections_come_in_the_promised_order(tmp_path):
    table, cells = _table()
    data = np.linspace(0, 1, 4 * 14 * 14).astype(np.float16).tobytes()
    colour = np.linspace(0, 1, 4 * 3 * 32 * 32).astype(np.float16).tobytes()
    artifacts = pd.DataFrame([{"key": "ours_n", "name": "prior_means", "mime": "application/x-float16; shape=4x14x14",
                               "data": data},
                              {"key": "cifar", "name": "prior_means",
                               "mime": "application/x-float16; shape=4x3x32x32", "data": colour}])
    out = page.sections(table, cells, artifacts=artifacts)
    titles = [s.title for s in out]
    promised = ["DVAE++ Table 3 layout", "PixelVAE++ Table 1 layout",
                "Exact checks: log-likelihood (enumerable tiny configuration)",
                "Exact checks: gradients (enumerable tiny configuration)",
                "log Z of every RBM prior: exact, forward and reverse AIS",
                "Samples from the prior (32×32, colour)", "Samples from the prior (14×14)",
                "Budget and cost", "Budget and cost per cell"]
    assert titles[:len(promised)] == promised
    by = {s.title: s for s in out}
    exact = by[promised[2]].payload
    assert len(exact) == 1 and "tiny" in exact.cell.iloc[0]
    assert exact["test_ll[K=100] − exact"].iloc[0] == "-6.000 ± 0.000"
    z = by[promised[4]].payload
    assert z.loc[z.cell.str.contains("tiny"), "forward AIS − exact"].iloc[0] == pytest.approx(0.0)
    cost = by["Budget and cost per cell"].payload.set_index("cell")
    assert cost["sec_per_iter"].iloc[0] == pytest.approx(0.2)
    assert "pixelcnn_filters 8" in cost.loc[page.cell_name(pd.Series(_cell("px_r"))), "model size"]
    assert "cifar10, mnist5k-bern0" in by["Budget and cost"].payload
    mnist = [k for k in CELLS if CELLS[k][2]["dataset"] == "mnist5k-bern0"]
    assert "CPU-budget numbers on a 4,000-image MNIST subset" in page.budget_text(_table(mnist)[1])
    for s in out:
        if s.kind == "figure" and s.title.startswith("Samples"):
            path = s.payload(str(tmp_path / f"{s.name}.png"))
            assert (tmp_path / f"{s.name}.png").exists(), path
