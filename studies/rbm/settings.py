"""The RBM study's settings, read by its ``Study`` (``__init__.py``) and its page (``page.py``): its estimators and
their order, its options and presets, its headline metric, its published numbers and the
definitions of the metrics its task alone records, as data with their sources."""
from dataclasses import replace
from typing import Dict

from estibench.studies.base import Headline, Part, Preset, Published

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


#: ``Study.order``
ORDER = RBM_ESTIMATORS


#: ``Study.headline``
HEADLINE = Headline("test_ll[K=100]")


#: ``Study.published``
PUBLISHED = {"dvaepp_table2": Published(
    "DVAE++ (Vahdat et al. 2018), Table 2: test log-likelihood (nats), 4,000 importance samples, mean ± std over "
    "five runs; 200 latents (RBM: 100 + 100), Appendix F's schedule", DVAEPP_TABLE2),
           "rbm_prior_table1": Published(
    "The RBM-prior paper, Table 1: MNIST test NLL (nats; AIS, RAISE in parentheses), 200 + 400 RBM, "
    "pretrained, K = 50", RBM_PRIOR_TABLE1)}

#: the definitions of the metrics the RBM task alone records (``task.py``): log Z of the RBM prior (every
#: log-likelihood the task records is normalised by log_z), the RAISE check and the pretraining diagnostics; the
#: engine's and the shared ones are in ``harness/definitions.py`` (``METRIC_DEFINITIONS``)
DEFINITIONS: Dict[str, str] = {
    "log_z": "the log Z every log-likelihood of the cell is normalised by: exact (enumeration) on an enumerable "
             "prior (rbm_vae_tiny), else the forward-AIS estimate (the model's ais_chains × ais_steps, base-rate "
             "model at the RBM's visible biases) refreshed before the evaluation",
    "log_z_ais": "forward-AIS estimate of log Z at the end of training (a stochastic lower bound)",
    "log_z_reverse_ais": "reverse-AIS estimate of log Z at the end of training from exact prior samples (enumerable "
                         "prior) or the persistent chains' states (a stochastic upper bound when those are exact)",
    "log_z_exact": "exact log Z by enumerating the smaller side of the RBM (enumerable priors only)",
    "test_ll_raise[K=k]": "the RAISE check (the RBM-prior paper §3.3): IWAE bound with k particles on the first "
                          "raise_points test images, log p(z) = RAISE estimate of log p(z₁) (raise_chains reverse "
                          "chains, ais_steps temperatures) + exact log p(z₂ | z₁); no log Z, conservative",
    "test_ll_subset[K=k]": "the same IWAE bound on the same images with log p(z) = log p*(z) − log Z (log_z), for "
                           "comparison with test_ll_raise",
    "pretrain_ae_first": "the RBM-prior paper's pretraining (harness/pretrain.py), stage 1: mean reconstruction "
                         "log p(x | B(E(x))) per image over the first tenth of the autoencoder steps",
    "pretrain_ae_last": "the same over the last tenth of the autoencoder steps",
    "pretrain_ae_binary": "after the autoencoder stage: fraction of codes E(x) outside (−½, 1½), i.e. binary under the "
                          "soft-binarising B of the paper's Eq. 3",
}
