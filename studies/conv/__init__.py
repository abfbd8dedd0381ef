"""Convolutional VAEs with discrete priors: DVAE++ (Vahdat et al. 2018) §7.3, Table 3, and PixelVAE++ (Sadeghi et
al. 2019) Table 1.

Models ``conv_vae`` / ``conv_vae_normal`` (``models/conv_vae.py``: SE-residual encoder and decoder, a global RBM,
factorial Bernoulli or normal prior, local normal or Bernoulli latents, Bernoulli / discretised-logistic /
PixelCNN++ likelihoods); task ``studies/conv/task.py`` :class:`ConvTask` (the RBM study's metrics plus the KL term);
page ``studies/conv/page.py``.  Suites: ``dvaepp_conv`` (Table 3's five latent types: ``vae`` for Normal / Normal,
``spike_exp`` for "RBM (Rolfe)", ``overlap_exp`` for the rest, and the enumerable ``tiny`` configuration with exact
log p(x) and gradients) and ``pixelvae`` (Gaussian prior with ``vae``, RBM prior with ``gumbolt``).
"""
from estibench.studies.base import Study, Suite

from .settings import (  # noqa: F401 - the study's data, importable from the study too
    BETA, CPU_STUDY, DEFINITIONS, DVAEPP_CPU, DVAEPP_PAPER, DVAEPP_TABLE3, HEADLINE, ORDER, PIXELVAE_CPU,
    PIXELVAE_CPU_STUDY, PIXELVAE_PAPER, PIXELVAE_TABLE1, PUBLISHED, ROWS)

STUDY = Study(
    name="conv",
    description="Convolutional VAEs with discrete priors (DVAE++ Table 3, PixelVAE++ Table 1)",
    models=("conv_vae", "conv_vae_normal"),
    headline=HEADLINE,
    task="estibench.studies.conv.task:ConvTask",
    page="estibench.studies.conv.page:sections",
    order=ORDER,
    definitions=DEFINITIONS,
    published=PUBLISHED,
    suites={
        "dvaepp_conv": Suite(
            model="conv_vae", estimators=("overlap_exp",), particles=(1,), seeds=3, iterations=600, eval_every=300,
            batch_size=32, lr=1e-3, estimator_options=dict(BETA), study_options=dict(CPU_STUDY),
            parts=DVAEPP_CPU, presets={"paper": DVAEPP_PAPER},
            description="DVAE++ Table 3's five latent types at a CPU budget on the embedded MNIST subset (14×14 "
                        "images, one SE-residual scale of 16 channels, 8 + 8 RBM with exact log Z, 2 local groups "
                        "× 4 variables at 7×7; 3 seeds × 600 steps of batch 32) and the enumerable tiny configuration "
                        "(4×4 images, 3 + 3 RBM, 4 local bits summed out) with exact log p(x) and gradients. The "
                        "paper trains full-size networks on full datasets on GPUs."),
        "pixelvae": Suite(
            model="conv_vae", estimators=("gumbolt",), particles=(1,), seeds=3, iterations=400, eval_every=200,
            batch_size=32, lr=1e-3, study_options=dict(PIXELVAE_CPU_STUDY), parts=PIXELVAE_CPU,
            presets={"paper": PIXELVAE_PAPER},
            description="PixelVAE++ Table 1's Gaussian and RBM priors at a CPU budget on the embedded MNIST subset "
                        "(28×28 images, PixelCNN++ with its six blocks of one gated layer and 8 filters, 16 global "
                        "latents: an 8 + 8 RBM trained with GumBolt at τ = 0.25, or N(0, I); 3 seeds × 400 steps of "
                        "batch 32). The paper trains 400 latents and n = 3, 64-map PixelCNN++ for 500 epochs."),
    },
)
