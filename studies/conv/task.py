"""The convolutional study's training task (:class:`ConvTask`): the RBM study's task (data, batches, metrics, log Z
estimates, the RAISE check) on the convolutional family of ``models/conv_vae.py``, with colour images (CIFAR-10,
8-bit values, log-likelihoods in nats per image; the page converts them to bits per dimension) and the KL term
PixelVAE++ Table 1 prints in brackets."""
from __future__ import annotations

from typing import Dict, List

import torch

from estibench.harness.definitions import METRIC_DEFINITIONS, described
from estibench.harness.task import rows_from
from estibench.models.protocols import UNNORMALISED_PRIOR, capabilities
from estibench.studies.conv.settings import DEFINITIONS
from estibench.studies.rbm.task import RBM_DEFAULTS, RBMTask

CONV_DEFAULTS = {**RBM_DEFAULTS, "kl_samples": 10}
#: the exact metrics (test_log_px_exact, exact_grad/*) enumerate the global latents through the whole decoder, per
#: test image (and, for the gradients, with autograd): only where there are at most this many states (the ``tiny``
#: configuration's 64); the 65,536 states of an enumerable 16-bit prior through a PixelCNN++ exhaust a CPU's memory
EXACT_MAX_STATES = 4096


class ConvTask(RBMTask):
    """Convolutional VAEs with a global discrete (or normal) prior and local latents (DVAE++ §7.3 Table 3,
    PixelVAE++ Table 1): RBMTask's data and metrics, on binary images as it reads them and on colour images (the
    8-bit values as observations, no binarisation, no down-sampling), plus ``test_kl`` on the test images; the exact
    metrics only where the global latents have at most :data:`EXACT_MAX_STATES` states.  The metrics:

    """

    defaults = CONV_DEFAULTS

    def __init__(self, model, cell):
        super().__init__(model, cell)
        self.enumerable = self.enumerable and model.latent.num_states <= EXACT_MAX_STATES

    def observations(self, model, data):
        if data.kind == "colour":
            return lambda t: t.flatten(1).to(device=model.device, dtype=model.dtype)
        return super().observations(model, data)

    @torch.no_grad()
    def kl_term(self, model, x: torch.Tensor, samples: int) -> torch.Tensor:
        """E_q[log q(z | x) − log p(z)] per replicate ``[R]`` (``samples`` draws per image; log p(z) = log p*(z) −
        log Z for an RBM prior, the standard normal otherwise)."""
        q = model.guide(x)
        z = q.sample((int(samples),))
        if UNNORMALISED_PRIOR in capabilities(model):
            log_p = model.log_prior_unnormalised(z) - model.log_partition().detach().unsqueeze(-1)
        else:
            log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        return (q.log_prob(z) - log_p).mean(0).mean(-1)

    @torch.no_grad()
    def final_artifacts(self, model) -> Dict[str, tuple]:
        """``prior_means``: images decoded from ``prior_samples`` draws of the trained prior of the first replicate
        (RBM: exact samples when enumerable, else fresh Gibbs chains; normal: N(0, I)), local latents from their
        prior; the likelihood's mean (binary), one draw (colour, PixelCNN++); float16 bytes, shape in the MIME type."""
        n = int(self.options["prior_samples"])
        if n < 1:
            return {}
        z = model.sample_prior(n)  # [R, n, D]
        means = model.prior_image_means(z.to(model.dtype))[0]
        C, H, W = model.image
        shape = f"{n}x{H}x{W}" if C == 1 else f"{n}x{C}x{H}x{W}"
        return {"prior_means": (f"application/x-float16; shape={shape}", means.to(torch.float16).cpu().numpy().tobytes())}

    def final_evaluate(self, model, estimator, iteration: int) -> List[tuple]:
        rows = super().final_evaluate(model, estimator, iteration)
        if iteration > 0:
            self._refresh(model)
            rows += rows_from({"test_kl": self.kl_term(model, self.test, int(self.options["kl_samples"]))},
                              model.seeds, iteration)
        return rows


ConvTask.__doc__ += described(["valid_ll", "train_elbo", "grad_logvar_frozen", "grad_logvar_ema", "active_units",
                               "train_objective", "sec_per_iter", "test_ll[K=k]", "valid_ll[K=k]", "test_elbo",
                               "kl_posterior", "peak_memory_mb", "test_log_px_exact", "exact_grad/variance",
                               "exact_grad/bias_sq", "exact_grad/mse", "exact_grad/rel_bias", "exact_grad/norm",
                               "log_z", "log_z_ais", "log_z_reverse_ais", "log_z_exact", "test_ll_raise[K=k]",
                               "test_ll_subset[K=k]", "test_kl"],
                              known={**METRIC_DEFINITIONS, **DEFINITIONS}) + "\n"
