"""The continuous-VAE study end to end (studies/vae/__init__.py, studies/vae/task.py VAETask, studies/vae/page.py): a tiny
run through the CLI, the store and the report (Burda et al.'s model shrunk by its options: 7×7 images,
4 latents, 16 hidden units), and the Table 1 layout as a pure function of the table."""
import json
import os

import pandas as pd

from estibench.cli import main

TINY = ["--suite", "vae", "--iterations", "6", "--eval-every", "3", "--seeds", "2", "--device", "cpu",
        "--model-options", "downsample=4,latent_dim=4,hidden=16", "--particles", "2,4"]


def test_the_vae_suite_runs_and_reports_fig2_and_table1(tmp_path):
    out = str(tmp_path)
    assert main([*TINY, "--out", out]) == 0
    table = pd.read_csv(os.path.join(out, "metrics.csv"))
    assert set(table.estimator) == {"iwae", "ww", "rw+rws"} and set(table.dataset) == {"mnist5k-dynamic"}
    last = table[table.iteration == 6].pivot_table(index=["estimator", "particles", "seed"], columns="metric",
                                                   values="value")
    assert (last["kl_posterior"] > -0.5).all()  # the many-particle bound sits above the ELBO (up to noise)
    assert ((last["active_units"] >= 0) & (last["active_units"] <= 4)).all()
    for k in (2, 4):
        assert f"ess[K={k}]" in last.columns
    page = open(os.path.join(out, "vae", "report.md")).read()
    for heading in ("## Budget", "## Fig. 2 layout", "## Final log evidence, ELBO, KL and active units against K",
                    "## RWS Table 1 layout: active units"):
        assert heading in page, heading
    assert os.path.exists(os.path.join(out, "vae", "fig2.png")) and "23.75 ± 0.83" in page


def test_table1_places_cells_by_estimator_and_k():
    from estibench.studies.vae import page as page
    rows = [dict(key=f"{e}{k}", label=e, estimator=e, particles=k, seed=s, iteration=10, metric="active_units",
                 value=v, model="gaussian_vae", study_options=json.dumps({}))
            for e, k, values in (("iwae", 8, (20.0, 22.0)), ("ww", 32, (30.0, 30.0))) for s, v in enumerate(values)]
    t1 = page.table1(pd.DataFrame(rows)).set_index("K")
    # columns name the estimators by display name, as every table and figure of the page does
    assert t1.loc[8, "IWAE · estibench"] == "21.00 ± 1.41" and t1.loc[8, "IWAE · paper"] == "23.00 ± 0.00"
    assert t1.loc[32, "WW · estibench"] == "30.00 ± 0.00" and t1.loc[16, "WW · estibench"] == "—"
