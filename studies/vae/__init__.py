"""The continuous-latent VAE of "Revisiting Reweighted Wake-Sleep" (Le et al., ``004_…`` §4.2, Fig. 2 and
Table 1): Burda et al.'s single-stochastic-layer model (``gaussian_vae``: 784–200–200–50 tanh, 50 Gaussian
latents, Bernoulli decoder) on stochastically binarised digits, trained by the reparameterised IWAE bound
against reweighted wake-wake (and the RWS code's rw+rws, wake- and sleep-φ together) over K.

Task ``studies/vae/task.py`` :class:`VAETask`; report page ``studies/vae/page.py`` (Fig. 2's layout: training
curves, final log evidence against K, KL against K; Table 1: active units with the published numbers).
"""
from estibench.studies.base import Study, Suite

from .settings import (  # noqa: F401 - the study's data, importable from the study too
    CPU_STUDY, HEADLINE, ORDER, PAPER_PRESET, PUBLISHED, RWS_TABLE1, VAE_ESTIMATORS)

STUDY = Study(
    models=("gaussian_vae",),
    headline=HEADLINE,
    name="vae",
    description="The continuous-latent VAE of the RWS paper (§4.2, Fig. 2, Table 1)",
    task="estibench.studies.vae.task:VAETask",
    page="estibench.studies.vae.page:sections",
    order=ORDER,
    published=PUBLISHED,
    suites={
        "vae": Suite(
            model="gaussian_vae", estimators=VAE_ESTIMATORS, particles=(2, 8, 32), seeds=3, iterations=4000,
            eval_every=500, batch_size=32, lr=1e-3, model_options={}, study_options=dict(CPU_STUDY),
            presets={"paper": PAPER_PRESET},
            description="Burda et al.'s 784–200–200–50 Gaussian VAE on the embedded 5,000 digits, stochastically "
                        "binarised (mnist5k-dynamic): IWAE (reparameterised), WW and rw+rws at K ∈ {2, 8, 32}, "
                        "3 seeds × 4,000 steps of batch 32, Adam 1e-3; test log marginal by 1,000-particle IWAE "
                        "on 200 test images. The paper: ≈ 3,000 epochs of full MNIST, K up to 128, 5,000 "
                        "particles."),
    },
)
