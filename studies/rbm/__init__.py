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
from estibench.studies.base import Part, Study, Suite

from .settings import (  # noqa: F401 - the study's data, importable from the study too
    CPU_MODEL, CPU_STUDY, DEFINITIONS, DVAEPP_TABLE2, HEADLINE, ORDER, PAPER_MODEL, PAPER_MODEL_OPTIONS,
    PAPER_PRESET, PAPER_STUDY, PRETRAIN_CPU, PRETRAIN_PAPER, PUBLISHED, RBM_ESTIMATORS, RBM_MULTI, RBM_PRIOR_TABLE1,
    RBM_SMOOTHED, RBM_TINY, rbm_parts)

STUDY = Study(
    models=("rbm_vae", "rbm_vae_tiny"),
    headline=HEADLINE,
    name="rbm",
    description="VAEs with RBM priors (DVAE++ §7.2 / the RBM-prior paper's Table 1)",
    task="estibench.studies.rbm.task:RBMTask",
    page="estibench.studies.rbm.page:sections",
    grid_flags={"--groups": ("groups", "comma-separated guide groups for RBM-prior suites: 1 (factorial), "
                                       "2 (hierarchical)")},
    order=ORDER,
    definitions=DEFINITIONS,
    published=PUBLISHED,
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
