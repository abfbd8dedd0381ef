"""VAEs with RBM priors over binary latents: DVAE++ (Vahdat et al. 2018) §7.2 and Table 2, and the
RBM-prior hybrid model ("Learning Deep Generative Models with Discrete Latent Variables", ``000_…``)
§3.3 and Table 1.

Models ``rbm_vae`` / ``rbm_vae_tiny`` (``models/rbm_vae.py``); task ``harness/studies.py``
:class:`RBMTask` (its docstring lists every metric: SBNTask's, normalised by the model's log Z, plus the
log Z estimates).  The training methods so far: VIMCO and Contrastive RWS with unnormalised weights and
the persistent-chain negative phase (the RBM-prior paper's App. A); DVAE++'s overlapping smoothings with
the analytic RBM KL, GumBolt and the two-stage pretraining are not in the project yet, so neither the
DVAE++ Table 2 layout nor a ``paper`` preset exists yet.  The report page is the generic one.
"""
from estibench.studies import Published, Study

RBM_ESTIMATORS = ("vimco", "contrastive_rws")

#: the RBM-prior paper, Table 1 (MNIST test NLL in nats, AIS; RAISE in parentheses); their budget: 200 + 400
#: RBM, ELU MLPs 784–200–200–100–100–200, 50 samples per point, two-stage pretraining (§3.1), full MNIST
RBM_PRIOR_TABLE1 = {
    ("MNIST", "200-400 RBM"): {"vimco": "83.69 (RAISE 83.77)", "contrastive_rws": "84.33",
                               "vimco[no pretraining]": "121.65"},
}

RBM_TINY = {"model": "rbm_vae_tiny", "iterations": 300, "eval_every": 100, "seeds": 3, "model_options": {},
            "model_grid": {"arch": ("linear",), "groups": (1, 2)},
            "study_options": {"final_particles": (100,), "grad_samples": 10, "eval_points": 200, "test_points": 200}}

STUDY = Study(
    name="rbm",
    description="VAEs with RBM priors (DVAE++ §7.2 / the RBM-prior paper's Table 1)",
    task="estibench.harness.studies:RBMTask",
    page="estibench.reports.rbm:sections",
    grid_flags={"--groups": ("groups", "comma-separated guide groups for RBM-prior suites: 1 (factorial), "
                                       "2 (hierarchical)")},
    order=RBM_ESTIMATORS,
    published={"rbm_prior_table1": Published(
        "The RBM-prior paper, Table 1: MNIST test NLL (nats; AIS, RAISE in parentheses), 200 + 400 RBM, "
        "pretrained, K = 50", RBM_PRIOR_TABLE1)},
    suites={
        "rbm": dict(
            model="rbm_vae", estimators=RBM_ESTIMATORS, particles=(5,), seeds=3, iterations=500, eval_every=250,
            batch_size=24, lr=1e-3, model_grid={"arch": ("linear", "nonlinear"), "groups": (1, 2)},
            model_options={"chains": 200, "gibbs_sweeps": 10, "ais_chains": 200, "ais_steps": 300},
            study_options={"eval_points": 200, "test_points": 200, "final_particles": (100,),
                           "valid_final_particles": (100,)},
            parts=[{}, {**RBM_TINY}],
            description="VAEs with an RBM prior (100 + 100 latents; DVAE++'s linear and nonlinear families, "
                        "factorial or hierarchical guide) trained with VIMCO and Contrastive RWS (K = 5) at a CPU "
                        "budget on the embedded MNIST subset: 3 seeds × 500 steps of batch 24, 200 persistent "
                        "chains × 10 sweeps per step, log Z by AIS (200 chains × 300 temperatures); and the "
                        "enumerable rbm_vae_tiny (4 + 4 latents, 7×7 images) with exact log Z and exact gradients. "
                        "The papers train for hundreds of epochs on full MNIST with pretraining."),
        "rbm_tiny": dict(
            model="rbm_vae_tiny", estimators=RBM_ESTIMATORS, particles=(5,), seeds=3, iterations=300, eval_every=100,
            batch_size=24, lr=1e-3, model_grid=dict(RBM_TINY["model_grid"]),
            study_options=dict(RBM_TINY["study_options"]),
            description="The enumerable RBM-prior VAE (4 + 4 latents, 7×7 images): exact log Z, log p(x) and "
                        "gradients; a few minutes on a CPU."),
    },
)
