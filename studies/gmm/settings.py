"""The GMM study's settings, read by its ``Study`` (``__init__.py``) and its page (``page.py``): its estimators and
their order, its options and presets, its headline metric, its published numbers and the
definitions of the metrics its task alone records, as data with their sources."""
from typing import Dict

from estibench.studies.base import Headline, Published

ESTIMATORS = ("ws", "ww", "dww", "vimco", "reinforce", "concrete", "relax")
#: the estimators published since the seed papers that fit the GMM's one categorical latent (issue 14); the
#: default suite (README's first command) keeps the paper's seven
NEW_ESTIMATORS = ("rloo", "indecater", "categorical_disarm", "carms", "unordered_set", "gumbel_rao", "zgr", "gst",
                  "reinmax")
#: those of them in the paper-budget suite at every K: the unbiased ones whose 100,000 steps fit a CPU session, and
#: ZGR for the straight-through family
NEW_PAPER_BUDGET = ("rloo", "indecater", "categorical_disarm", "zgr")
#: at K = 2 only: GST and ReinMax, straight-through estimators like ZGR (the same backward per particle), whose
#: K-dependence ZGR's rows show; the unordered set estimator, whose cost grows as K² (27 min per cell at K = 2,
#: 77 at K = 5, 32 h at K = 20).  Left out for their cost at C = 20 (``benchmarks/gmm_new_estimators.md``): CARMS
#: (C(C − 1)/2 orders × K² pair boxes per point and step: 3.8 h per cell at K = 2) and Gumbel-Rao (M = 100
#: conditional draws per particle: 3.7 h at K = 2); run them with --estimators.
NEW_K2_ONLY = ("gst", "reinmax", "unordered_set")


#: ``Study.order``
ORDER = ESTIMATORS + NEW_ESTIMATORS


#: ``Study.metrics``
METRICS = tuple(["model_error", "inference_error", "grad_std_phi", "grad_std_phi_code", "log_px", "kl_qp",
               "kl_pq", "train_objective", "sec_per_iter", "exact_grad/variance", "exact_grad/bias_sq",
               "exact_grad/mse", "exact_grad/rel_bias", "exact_grad/norm", "prior_pmf[z=c]",
               "guide_pmf[x=v,z=c]"])


#: ``Study.headline``
HEADLINE = Headline("inference_error", higher_is_better=False, figure="fig4_gmm_training",
                  note="the RWS paper plots it (Fig. 4) and prints no number")


#: ``Study.published``
PUBLISHED = {
    # RWS §4.3 and Fig 5 (text and figure; the paper prints no table): at K = 2 the learned prior's
    # support collapses to about {0..9} (WS), {0..14} (WW) and {0..17} (VIMCO, REINFORCE)
    "support_at_K2": Published("Le et al. (2019), RWS §4.3 and Fig 5: largest z in the learned prior's "
                               "support at K = 2", {("gmm", "K=2"): {"ws": 9, "ww": 14, "vimco": 17,
                                                                      "reinforce": 17}}),
}

#: the definitions of the metrics the GMM task alone records (``task.py``), in the order its page lists them; the
#: engine's and the shared ones are in ``harness/definitions.py`` (``METRIC_DEFINITIONS``)
DEFINITIONS: Dict[str, str] = {
    "model_error": "‖p_θ(z) − p_θtrue(z)‖₂ between the learned and the true prior PMFs (RWS §4.3)",
    "inference_error": "(1/M) Σ_m ‖q_φ(·|x_m) − p_θtrue(·|x_m)‖₂ over the M fixed test points (option test_points, "
                       "default 100), exact true posterior (RWS §4.3)",
    "log_px": "exact (1/M) Σ_m log p_θ(x_m) by enumerating the latent states",
    "kl_qp": "exact (1/M) Σ_m KL(q_φ ‖ p_θ(·|x_m)), the exclusive KL of the guide from the model's posterior",
    "kl_pq": "exact (1/M) Σ_m KL(p_θ(·|x_m) ‖ q_φ), the inclusive KL of the model's posterior from the guide",
    "prior_pmf[z=c]": "the learned prior's mass p_θ(z = c), stored at the start, middle and end of training (Fig 5)",
    "guide_pmf[x=v,z=c]": "the guide's mass q_φ(z = c | x = v) at a few fixed x, stored at the start, middle and "
                          "end of training (Fig 5)",
}
