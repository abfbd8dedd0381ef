"""VAEs with RBM priors over binary latents: DVAE++ (Vahdat et al. 2018) §7.2 and Table 2, the RBM-prior
hybrid model ("Learning Deep Generative Models with Discrete Latent Variables", ``000_…``) §3.3 and Table 1,
and PixelVAE++'s GumBolt relaxation (Sadeghi et al., §2.1).

Models ``rbm_vae`` / ``rbm_vae_tiny`` (``models/rbm_vae.py``) and, for DVAE++ Table 2's directed-prior
columns, ``sbn``; task ``studies/rbm/task.py`` :class:`RBMTask` (its docstring lists every metric: SBNTask's,
normalised by the model's log Z, the log Z estimates, the RAISE check and the pretraining diagnostics).
Training methods: DVAE++'s §5 bound with the overlapping exponential smoothing (Table 2's "RBM (ours)") and
with Rolfe's spike-and-exponential ("RBM (Rolfe)"), GumBolt, and VIMCO and Contrastive RWS with unnormalised
weights and the persistent-chain negative phase (the RBM-prior paper's App. A), the last two also on the
RBM-prior paper's own model (ELU networks, 200 + 400 RBM) with and without its two-stage pretraining
(``harness/pretrain.py``; Table 1's ablation).  The report page is ``studies/rbm/page.py``.
"""
from dataclasses import replace

from estibench.studies.base import Headline, Part, Preset, Published, Study, Suite

#: single-sample relaxations (DVAE++ Table 2 trains ELBOs, K = 1)
RBM_SMOOTHED = ("overlap_exp", "spike_exp", "gumbolt")
#: multi-sample estimators with unnormalised weights (the RBM-prior paper: K = 50; here K = 5)
RBM_MULTI = ("vimco", "contrastive_rws")
RBM_ESTIMATORS = RBM_SMOOTHED + RBM_MULTI

#: DVAE++ Table 2: test log-likelihood, 4,000 importance samples, mean ± std over five runs; rows (data, guide
#: groups × architecture); columns as the paper names them (studies/rbm/page.py maps our cells onto them)
DVAEPP_TABLE2 = {
    ("MNIST (static)", "1 Linear"): {"RBM (ours)": "-91.21 ± 0.11", "RBM (Rolfe)": "-91.55 ± 0.08",
                                     "Joint ELBO": "-106.70 ± 0.08", "Marg. ELBO": "-106.80 ± 0.19"},
    ("MNIST (static)", "2 Linear"): {"RBM (ours)": "-94.15 ± 0.45", "RBM (Rolfe)": "-91.06 ± 0.21",
                                     "Joint ELBO": "-98.16 ± 0.11", "Marg. ELBO": "-98.56 ± 0.10"},
    ("MNIST (static)", "1 Nonlin."): {"RBM (ours)": "-85.41 ± 0.04", "RBM (Rolfe)": "-85.57 ± 0.03",
                                      "Joint ELBO": "-95.04 ± 0.10", "Marg. ELBO": "-95.06 ± 0.08"},
    ("MNIST (static)", "2 Nonlin."): {"RBM (ours)": "-84.27 ± 0.05", "RBM (Rolfe)": "-84.52 ± 0.05",
                                      "Joint ELBO": "-87.96 ± 0.13", "Marg. ELBO": "-88.23 ± 0.11"},
    ("OMNIGLOT", "1 Linear"): {"RBM (ours)": "-109.66 ± 0.09", "RBM (Rolfe)": "-109.83 ± 0.17",
                               "Joint ELBO": "-117.62 ± 0.09", "Marg. ELBO": "-117.78 ± 0.07"},
    ("OMNIGLOT", "2 Linear"): {"RBM (ours)": "-109.01 ± 0.45", "RBM (Rolfe)": "-110.35 ± 0.14",
                               "Joint ELBO": "-111.21 ± 0.12", "Marg. ELBO": "-111.49 ± 0.08"},
    ("OMNIGLOT", "1 Nonlin."): {"RBM (ours)": "-102.62 ± 0.07", "RBM (Rolfe)": "-103.12 ± 0.06",
                                "Joint ELBO": "-108.77 ± 0.24", "Marg. ELBO": "-108.82 ± 0.20"},
    ("OMNIGLOT", "2 Nonlin."): {"RBM (ours)": "-100.55 ± 0.05", "RBM (Rolfe)": "-105.60 ± 0.68",
                                "Joint ELBO": "-103.57 ± 0.15", "Marg. ELBO": "-104.05 ± 0.22"},
}

#: the RBM-prior paper, Table 1 (MNIST test NLL in nats, AIS; RAISE in parentheses); their budget: 200 + 400
#: RBM, ELU MLPs 784–200–200–100–100–200, 50 samples per point, two-stage pretraining (§3.1), full MNIST
RBM_PRIOR_TABLE1 = {
    ("MNIST", "200-400 RBM"): {"vimco": "83.69 (RAISE 83.77)", "contrastive_rws": "84.33",
                               "vimco[no pretraining]": "121.65"},
}

#: the RBM-prior paper's model (000_… App. "Experimental setup"): ELU MLPs, 200 visible latents, 400 hidden
PAPER_MODEL = {"arch": "elu", "rbm_hidden": 400}
#: the two-stage pretraining at the CPU budget (the paper gives no step counts; harness/pretrain.py)
PRETRAIN_CPU = {"pretrain_ae_steps": 1000, "pretrain_cd_steps": 200, "pretrain_pcd_steps": 200}

RBM_TINY = Part(model="rbm_vae_tiny", iterations=300, eval_every=100, seeds=3, model_options={},
                model_grid={"arch": ("linear",), "groups": (1, 2)},
                study_options={"final_particles": (100,), "grad_samples": 10, "eval_points": 200, "test_points": 200})

CPU_MODEL = {"chains": 200, "gibbs_sweeps": 10, "ais_chains": 200, "ais_steps": 300}
CPU_STUDY = {"eval_points": 200, "test_points": 200, "final_particles": (100,), "valid_final_particles": (100,)}
#: the published settings (a GPU run on full MNIST: ``run_all.py fetch-data mnist-static``): the DVAE# code's
#: chains (1,000 × 40 sweeps), DVAE++ Table 2's 4,000 importance samples, the RBM-prior paper's K = 50; AIS
#: at 1,000 chains × 10,000 temperatures (the RBM-prior paper: 5,000 × 100,000, stated); the DVAE# code's Adam
#: (3e-3, ε 1e-3, weight decay 1e-4, batch 100, 1M steps) without its piecewise lr decay and KL warm-up (stated)
PAPER_MODEL_OPTIONS = {"chains": 1000, "gibbs_sweeps": 40, "ais_chains": 1000, "ais_steps": 10_000,
                       "dataset": "mnist-static"}
PAPER_STUDY = {"eval_points": 1000, "test_points": None, "final_particles": (4000,), "valid_final_particles": (100,),
               "raise_points": 1000}
#: the paper's pretraining lengths are not given; 50 epochs of autoencoder, 20 of RBM (CD then PCD), stated
PRETRAIN_PAPER = {"pretrain_ae_steps": 25_000, "pretrain_cd_steps": 5_000, "pretrain_pcd_steps": 5_000}


def rbm_parts(model_options: dict, study_options: dict, pretraining: dict, multi_particles: int,
              directed_options: dict) -> tuple:
    """The rbm suite's parts at one budget (CPU or the papers')."""
    directed = Part(model="sbn", estimators=("overlap_exp",), particles=(1,), model_options=dict(directed_options))
    marginal = {"overlap_exp": {"elbo": "marginal"}}
    wide = replace(directed, model_grid={"arch": ("linear1", "nonlinear")})
    two = replace(directed, model_grid={"arch": ("linear2",)}, model_options={**directed_options, "latent_bits": 100})
    paper_model = Part(model_options={**model_options, **PAPER_MODEL}, model_grid={"groups": (1,)},
                       particles=(multi_particles,))
    return (
        Part(),  # DVAE++ Table 2's RBM columns and GumBolt, K = 1
        Part(estimators=RBM_MULTI, particles=(multi_particles,)),
        # DVAE++ Table 2's directed-prior columns: joint and marginal ELBO with the same smoothing
        wide, replace(wide, estimator_options=marginal), two, replace(two, estimator_options=marginal),
        # the RBM-prior paper's model (its Table 1): pretrained VIMCO and Contrastive RWS, VIMCO without
        replace(paper_model, estimators=RBM_MULTI, study_options={**study_options, **pretraining}),
        replace(paper_model, estimators=("vimco",)),
    )


PAPER_PRESET = Preset(
    iterations=1_000_000, eval_every=10_000, seeds=5, batch_size=100, lr=3e-3, optimiser={"eps": 1e-3, "weight_decay": 1e-4},
    model_options=dict(PAPER_MODEL_OPTIONS), study_options=dict(PAPER_STUDY),
    estimator_options={"overlap_exp": {"beta_start": 5.0, "beta_end": 12.0}},
    parts=rbm_parts(PAPER_MODEL_OPTIONS, PAPER_STUDY, PRETRAIN_PAPER, 50, {"dataset": "mnist-static"}),
)

STUDY = Study(
    models=("rbm_vae", "rbm_vae_tiny"),
    headline=Headline("test_ll[K=100]"),
    name="rbm",
    description="VAEs with RBM priors (DVAE++ §7.2 / the RBM-prior paper's Table 1)",
    task="estibench.studies.rbm.task:RBMTask",
    page="estibench.studies.rbm.page:sections",
    grid_flags={"--groups": ("groups", "comma-separated guide groups for RBM-prior suites: 1 (factorial), "
                                       "2 (hierarchical)")},
    order=RBM_ESTIMATORS,
    published={"dvaepp_table2": Published(
        "DVAE++ (Vahdat et al. 2018), Table 2: test log-likelihood (nats), 4,000 importance samples, mean ± std over "
        "five runs; 200 latents (RBM: 100 + 100), Appendix F's schedule", DVAEPP_TABLE2),
               "rbm_prior_table1": Published(
        "The RBM-prior paper, Table 1: MNIST test NLL (nats; AIS, RAISE in parentheses), 200 + 400 RBM, "
        "pretrained, K = 50", RBM_PRIOR_TABLE1)},
    suites={
        "rbm": Suite(
            model="rbm_vae", estimators=RBM_SMOOTHED, particles=(1,), seeds=3, iterations=500, eval_every=250,
            batch_size=24, lr=1e-3, model_grid={"arch": ("linear", "nonlinear"), "groups": (1, 2)},
            model_options=dict(CPU_MODEL), study_options=dict(CPU_STUDY),
            presets={"paper": PAPER_PRESET},
            parts=rbm_parts(CPU_MODEL, CPU_STUDY, PRETRAIN_CPU, 5, {}) + (
                RBM_TINY, replace(RBM_TINY, estimators=RBM_MULTI, particles=(5,))),
            description="VAEs with an RBM prior at a CPU budget on the embedded MNIST subset (3 seeds × 500 steps "
                        "of batch 24; 200 persistent chains × 10 sweeps per step; log Z by AIS, 200 chains × 300 "
                        "temperatures): DVAE++ Table 2's layout (100 + 100 latents, linear and nonlinear, factorial "
                        "or hierarchical guide; DVAE++'s bound with overlapping-exponential and spike-and-exponential "
                        "smoothing, and the directed-prior SBNs with the joint and marginal ELBO), GumBolt, VIMCO "
                        "and Contrastive RWS (K = 5); the RBM-prior paper's model (ELU MLPs, 200 + 400 RBM) with "
                        "and without its two-stage pretraining; and the enumerable rbm_vae_tiny (4 + 4 latents, "
                        "7×7 images) with exact log Z and exact gradients. The papers train for hundreds of "
                        "epochs on full MNIST."),
        "rbm_tiny": Suite(
            model="rbm_vae_tiny", estimators=RBM_SMOOTHED, particles=(1,), seeds=3, iterations=300, eval_every=100,
            batch_size=24, lr=1e-3, model_grid=dict(RBM_TINY.model_grid),
            study_options=dict(RBM_TINY.study_options),
            parts=(Part(), Part(estimators=RBM_MULTI, particles=(5,))),
            description="The enumerable RBM-prior VAE (4 + 4 latents, 7×7 images): exact log Z, log p(x) and "
                        "gradients; a few minutes on a CPU."),
    },
)
