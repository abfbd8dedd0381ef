"""The generic study's settings, read by its ``Study`` (``__init__.py``), its task (``task.py``) and its page
(``page.py``): its estimators and their order, its options, its headline metric and the definitions of the metrics
its task alone records (the others are the engine's and the shared ones, ``harness/definitions.py``)."""
from typing import Dict

from estibench.studies.base import Headline

#: estimators that run on every latent kind the contract admits (categorical, Bernoulli, multicategorical, normal,
#: structured): the default of the suite; ``--estimators`` picks others (each checked against the model)
ESTIMATORS = ("reinforce", "rloo", "vimco", "ww")

#: ``Study.order``
ORDER = ESTIMATORS

#: the task's options (``GenericTask.defaults``; a cell's ``study_options`` override them, and ``--data`` sets
#: ``data``, ``data_bytes`` and ``data_sha256``)
DEFAULTS = {
    # the data: "" = the model's own samples; a dataset name of the data layer; or a file's absolute path
    "data": "", "data_bytes": None, "data_sha256": "",
    # the model's own samples (without --data): train_samples + test_samples draws of model.sample(n) per replicate,
    # at its initial parameters, from the torch seed data_seed (a stream of its own: the training stream is untouched)
    "train_samples": 1000, "test_samples": 200, "data_seed": 20240607,
    # along training: IWAE bounds with eval_particles on the first eval_points train and test observations, the ELBO
    # as the mean of elbo_samples one-particle bounds, the φ-gradient's variance over grad_samples draws on one fixed
    # training batch (seed grad_batch_seed) and along training (EMA decay)
    "eval_points": 200, "eval_particles": 100, "elbo_samples": 10, "grad_samples": 10, "grad_batch_seed": 7,
    "ema_decay": 0.999,
    # at the end: IWAE bounds with each of final_particles on every test (and the first eval_points train)
    # observation, test_points (None: all) of them; exact log p(x) where the latents can be enumerated (or the model
    # gives it in closed form), and the exact-gradient errors from exact_samples draws on exact_points observations
    # of the gradient batch (enumerable models, at iteration 0 and the end)
    "final_particles": (100,), "test_points": None, "exact_samples": 50, "exact_points": 8,
}

#: ``Study.headline``: the final test IWAE bound at K = 100 (higher is better)
HEADLINE = Headline("test_ll[K=100]", figure="learning_curves",
                    note="IWAE bound with 100 particles on the test observations (the model's own held-out samples "
                         "without --data); not comparable across data")

#: the metrics the generic task alone records (``task.py``); the engine's and the shared ones are in
#: ``harness/definitions.py`` (``METRIC_DEFINITIONS``)
DEFINITIONS: Dict[str, str] = {
    "train_ll": "IWAE bound with K = eval_particles (default 100) on the first eval_points (default 200) training "
                "observations, along training",
    "test_ll": "the same IWAE bound on the first eval_points test observations, along training",
    "train_ll[K=k]": "IWAE bound with k particles on the first eval_points training observations at the end of "
                     "training",
    "train_log_px_exact": "exact (1/M) Σ_m log p_θ(x_m) on the first eval_points training observations by "
                          "enumerating every latent state (enumerable models) or in closed form",
}

#: the order the page lists the final metrics in
FINAL_METRICS = ("test_ll[K=100]", "test_elbo", "kl_posterior", "test_log_px_exact", "train_ll[K=100]",
                 "train_log_px_exact", "exact_grad/bias_sq", "exact_grad/variance", "grad_logvar_frozen",
                 "sec_per_iter", "peak_memory_mb")
