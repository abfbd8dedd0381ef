"""Same numbers before and after a refactor: run a fixed list of small cells and compare their rows.

    python benchmarks/same_numbers.py OUT.json                 # run the cells in this checkout
    python benchmarks/same_numbers.py --compare A.json B.json   # every cell and every row of A equal in B?

For an older revision, run the first form from a worktree of it (``git worktree add /tmp/old REV``;
``PYTHONPATH=/tmp/old`` for checkouts before the estibench namespace).  Timing metrics are left
out.  Cells (48, at least one per registered estimator whose code a refactor moved): 15 GMM, 11 SBN, 13 enumerable
SBN (3 of them with categorical latents), 5 RBM-prior VAE, 3 VAE and 1 AIR.  Rows
of metrics that only B has (a new metric) are listed, not counted as a difference; every row of A must be
in B with the same value.
"""
import json, os, sys
if __name__ == "__main__" and os.environ.get("PYTHONPATH"):  # the checkout on PYTHONPATH only, as a before-worker
    from _step_worker import use_checkout_on_sys_path  # this folder is sys.path[0] when run as a script
    use_checkout_on_sys_path()
try:  # the old layout first (PYTHONPATH=<old checkout>)
    from harness.runner import Cell, train_cell
    from harness.studies import TASKS
except ImportError:
    from estibench.harness.runner import Cell, train_cell
    from estibench.studies import TASKS
try:
    from estibench.harness.store.schema import config_key
except ImportError:  # before config version 2
    config_key = None
TIMING = ("sec_per_iter", "peak_memory_mb")
G = {"test_points": 20, "grad_std_samples": 3, "exact_samples": 5}
S = {"eval_points": 50, "test_points": 50, "final_particles": (10,), "valid_final_particles": (10,),
     "grad_samples": 3, "exact_samples": 5}
SBN = dict(study="sbn", model="sbn", batch_size=24, iterations=30, eval_every=15, study_options=S,
           optimiser={"betas": (0.9, 0.99999)})
TINY = dict(SBN, model="sbn_tiny", model_options={"arch": "linear2", "latent_bits": 4})
GMM = dict(study="gmm", model="gmm", batch_size=100, iterations=40, eval_every=20, study_options=G)
SMOOTHED_RBM = dict(study="rbm", model="rbm_vae_tiny", model_options={"arch": "linear", "groups": 2}, particles=1,
                 batch_size=24, iterations=20, eval_every=10, study_options={"eval_points": 50, "test_points": 50,
                                                                             "final_particles": (10,),
                                                                             "grad_samples": 3})
CELLS = {
    "gmm-relax-K2": dict(GMM, estimator="relax", particles=2),
    "gmm-concrete-K5": dict(GMM, estimator="concrete", particles=5),
    "gmm-dww-K2": dict(GMM, estimator="dww", particles=2, estimator_options={"delta": 0.2}),
    "gmm-vimco-K5": dict(GMM, estimator="vimco", particles=5),
    "sbn-relax_code": dict(SBN, estimator="relax", particles=1, estimator_options={"variant": "relax_code"},
                           model_options={"arch": "linear2"}),
    "sbn-rebar_code": dict(SBN, estimator="rebar", particles=1, estimator_options={"variant": "rebar_code"},
                           model_options={"arch": "nonlinear"}),
    "sbn-nvil": dict(SBN, estimator="nvil", particles=1, model_options={"arch": "linear1"}),
    "sbn-concrete": dict(SBN, estimator="concrete", particles=1, model_options={"arch": "linear2"}),
    "sbn-overlap_exp": dict(SBN, estimator="overlap_exp", particles=1, model_options={"arch": "linear1"}),
    "tiny-relax": dict(TINY, estimator="relax", particles=1),
    "tiny-ww": dict(TINY, estimator="ww", particles=5),
    "tiny-disarm": dict(TINY, estimator="disarm", particles=1),
    "gmm-rloo-K3": dict(GMM, estimator="rloo", particles=3),
    "gmm-reinforce-K2": dict(GMM, estimator="reinforce", particles=2),
    "gmm-reinmax-K2": dict(GMM, estimator="reinmax", particles=2, estimator_options={"temperature": 1.5}),
    "gmm-gst-K2": dict(GMM, estimator="gst", particles=2),
    "gmm-gumbel_rao-K2": dict(GMM, estimator="gumbel_rao", particles=2, estimator_options={"samples": 5}),
    "tiny-arm-K2": dict(TINY, estimator="arm", particles=2),
    "tiny-straight_through": dict(TINY, estimator="straight_through", particles=1),
    "tiny-gumbel_st": dict(TINY, estimator="gumbel_st", particles=1),
    "sbn-double_cv": dict(SBN, estimator="double_cv", particles=2, model_options={"arch": "linear1"}),
    "rbm-overlap_exp": dict(study="rbm", model="rbm_vae_tiny", model_options={"arch": "linear", "groups": 2},
                            estimator="overlap_exp", particles=1, batch_size=24, iterations=20, eval_every=10,
                            study_options={"eval_points": 50, "test_points": 50, "final_particles": (10,),
                                           "grad_samples": 3}),
    "vae-ww": dict(study="vae", model="gaussian_vae", estimator="ww", particles=2, batch_size=32, iterations=20,
                   eval_every=10, study_options={"eval_points": 50, "test_points": 50, "final_particles": (10,),
                                                 "valid_final_particles": (10,)}),
    "air-vimco": dict(study="air", model="air", estimator="vimco", particles=2, batch_size=4, iterations=4,
                      eval_every=2, study_options={"count_particles": 3, "elbo_samples": 2, "eval_particles": 3,
                                                   "eval_points": 6, "final_particles": (5,), "grad_samples": 2,
                                                   "reconstructions": 3, "test_points": 6}),
    "gmm-ws-K2": dict(GMM, estimator="ws", particles=2),
    "sbn-muprop": dict(SBN, estimator="muprop", particles=2, model_options={"arch": "linear2"}),
    "vae-iwae": dict(study="vae", model="gaussian_vae", estimator="iwae", particles=2, batch_size=32, iterations=20,
                     eval_every=10, study_options={"eval_points": 50, "test_points": 50, "final_particles": (10,),
                                                   "valid_final_particles": (10,)}),
    "vae-rw+rws": dict(study="vae", model="gaussian_vae", estimator="rw+rws", particles=2, batch_size=32,
                       iterations=20, eval_every=10, study_options={"eval_points": 50, "test_points": 50,
                                                                    "final_particles": (10,),
                                                                    "valid_final_particles": (10,)}),
    "rbm-contrastive_rws": dict(study="rbm", model="rbm_vae_tiny", model_options={"arch": "linear", "groups": 2},
                                estimator="contrastive_rws", particles=2, batch_size=24, iterations=20,
                                eval_every=10, study_options={"eval_points": 50, "test_points": 50,
                                                              "final_particles": (10,), "grad_samples": 3}),
    "tiny-nvil-mnih_gregor": dict(TINY, estimator="nvil", particles=2, estimator_options={"variant": "mnih_gregor"}),
    "gmm-indecater-K2": dict(GMM, estimator="indecater", particles=2),
    "gmm-unordered_set-K2": dict(GMM, estimator="unordered_set", particles=2),
    "gmm-zgr-K2": dict(GMM, estimator="zgr", particles=2),
    "ctiny-indecater-K2": dict(TINY, model="sbn_categorical_tiny", model_options={}, estimator="indecater",
                               particles=2),
    "ctiny-unordered_set-K3": dict(TINY, model="sbn_categorical_tiny", model_options={}, estimator="unordered_set",
                                   particles=3),
    "tiny-zgr": dict(TINY, estimator="zgr", particles=1),
    "sbn-rodeo": dict(SBN, estimator="rodeo", particles=2, model_options={"arch": "linear1"}),
    "gmm-carms-K3": dict(GMM, estimator="carms", particles=3),
    "gmm-categorical_disarm-K2": dict(GMM, estimator="categorical_disarm", particles=2),
    "ctiny-categorical_disarm-sb-K2": dict(TINY, model="sbn_categorical_tiny", model_options={},
                                           estimator="categorical_disarm", particles=2,
                                           estimator_options={"variant": "sb"}),
    "tiny-arms-K3": dict(TINY, estimator="arms", particles=3, model_options={"arch": "linear1", "latent_bits": 4}),
    "tiny-spike_exp-K2": dict(TINY, estimator="spike_exp", particles=2),
    "sbn-spike_exp": dict(SBN, estimator="spike_exp", particles=1, model_options={"arch": "linear2"}),
    "sbn-overlap_power": dict(SBN, estimator="overlap_power", particles=1, model_options={"arch": "linear1"}),
    "sbn-overlap_logistic": dict(SBN, estimator="overlap_logistic", particles=1, model_options={"arch": "linear2"}),
    "rbm-gumbolt": dict(SMOOTHED_RBM, estimator="gumbolt"),
    "rbm-gumbolt_pd": dict(SMOOTHED_RBM, estimator="gumbolt_pd", particles=2),
    "rbm-spike_exp": dict(SMOOTHED_RBM, estimator="spike_exp", particles=2),
}


def compare(path_a: str, path_b: str) -> int:
    a, b = (json.load(open(p)) for p in (path_a, path_b))
    same = {}
    for k in a:
        old_rows = {tuple(r[:3]): r[3] for r in a[k]["rows"]}
        new_rows = {tuple(r[:3]): r[3] for r in b.get(k, {}).get("rows", [])}
        added = sorted({r[2] for r in set(new_rows) - set(old_rows)})  # new metrics: reported, not a difference
        # the same cell: the same key, or (config version 2, which keys the effective options) a key whose
        # version-1 form, the settings as requested, is A's key
        keys_b = {b.get(k, {}).get("key"), b.get(k, {}).get("requested_key")}
        same[k] = (a[k]["key"] in keys_b and set(old_rows) <= set(new_rows)
                   and all(new_rows[r] == v for r, v in old_rows.items()))
        extra = f"; new metrics in B: {', '.join(added)}" if added else ""
        print(f"{k:<18} {'identical' if same[k] else 'DIFFERENT'} ({len(a[k]['rows'])} rows{extra})")
    return 0 if all(same.values()) and set(a) == set(b) else 1


def run(path: str, only: str = "") -> None:
    out = {}
    for name, kw in CELLS.items():
        if only and name not in only.split(","):
            continue
        cell = Cell(seeds=(0, 1), device="cpu", **kw)
        res = train_cell(cell, TASKS[cell.study])
        out[name] = {"key": cell.key(), "rows": [list(r) for r in res.rows if r[2] not in TIMING]}
        if hasattr(cell, "requested"):  # config version 2: also the key of the settings as requested (version 1)
            out[name]["requested_key"] = config_key(cell.requested())
        print(name, cell.key(), len(out[name]["rows"]), flush=True)
    json.dump(out, open(path, "w"))


if __name__ == "__main__":  # importing this file (asv discovers every module of benchmarks/) runs nothing
    if sys.argv[1:2] == ["--compare"]:
        sys.exit(compare(*sys.argv[2:4]))
    run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
