"""The VAE study's training task (:class:`VAETask`, a :class:`estibench.harness.task.Task`): where a cell's data
come from and what is measured on it; the metrics' definitions are written once, in ``harness/definitions.py``."""
from __future__ import annotations

from estibench.harness.definitions import described
from estibench.studies.sbn.task import SBNTask


class VAETask(SBNTask):
    """The continuous-latent VAE of the RWS paper (``004_…`` §4.2; Burda et al.'s model, ``gaussian_vae``) on
    stochastically binarised digits: the batches and metrics of :class:`SBNTask` (training batches re-sampled
    per batch; valid/test binarised once with ``test_seed``): the many-particle IWAE estimate of the test log
    marginal (``final_particles``; the paper: 5,000), KL(q ‖ p_θ(z|x)) as that estimate minus the ELBO
    (``kl_posterior``), active units (Burda et al. §5.2), the φ-gradient variance at frozen parameters and along
    training, and the normalised weights' ESS and resampling entropy.  The metrics:

    """


VAETask.__doc__ += described(["valid_ll", "train_elbo", "grad_logvar_frozen", "grad_logvar_ema", "active_units",
                              "ess[K=k]", "resampling_entropy[K=k]", "train_objective", "sec_per_iter",
                              "test_ll[K=k]", "valid_ll[K=k]", "test_elbo", "kl_posterior", "peak_memory_mb"]) + "\n"
