"""Attend-Infer-Repeat on multi-MNIST, as "Revisiting Reweighted Wake-Sleep" trains it (Le et al., ``004_…`` §4.1,
Fig. 1): AIR with at most 3 steps (``models/air.py``, the ``ws_air`` code's sizes) on 50 × 50 images of 0–2 digits
(``data/multimnist.py``), stochastically binarised, trained by reweighted wake-wake (WW) and by VIMCO on the step
count with reparameterised where/what, over K.  The RWS code's ``rw+rws`` and wake-sleep (WS) are in the paper's
variant list and run on this model too (not in the default suite: the CPU budget).

Task ``studies/air/task.py`` :class:`AIRTask`; report page ``studies/air/page.py`` (Fig. 1's layout: training curves, final
log evidence against K, KL against K; reconstructions with the inferred boxes; count accuracy and its confusion
matrix; the seed-to-seed failures counted).
"""
from estibench.studies.base import Study, Suite

from .settings import (  # noqa: F401 - the study's data, importable from the study too
    AIR_ESTIMATORS, CPU_STUDY, DEFINITIONS, HEADLINE, ORDER, PAPER_PRESET)

STUDY = Study(
    models=("air",),
    headline=HEADLINE,
    name="air",
    description="Attend-Infer-Repeat on multi-MNIST (RWS §4.1, Fig. 1): WW against VIMCO over K",
    task="estibench.studies.air.task:AIRTask",
    page="estibench.studies.air.page:sections",
    order=ORDER,
    definitions=DEFINITIONS,
    suites={
        "air": Suite(
            model="air", estimators=AIR_ESTIMATORS, particles=(2, 5, 10), seeds=3, iterations=1500,
            eval_every=250, batch_size=16, lr=1e-4, model_options={}, study_options=dict(CPU_STUDY),
            presets={"paper": PAPER_PRESET},
            description="AIR (3 steps, 20 × 20 glimpses, z_what 50, RNN 256) on multi-MNIST from the embedded digits "
                        "(multi-mnist5k-s0: 4,000 training images), WW and VIMCO at K ∈ {2, 5, 10}, 3 seeds × 1,500 "
                        "steps of batch 16, Adam 1e-4, the step-count prior annealed over the first 5 % of training; "
                        "test log evidence by 200-particle IWAE on 100 test images. The paper: 2M RMSProp iterations "
                        "of batch 32 on 60,000 images, 5,000 particles."),
        "air_tiny": Suite(
            model="air", estimators=("ww", "vimco", "ws", "rw+rws", "dww"), particles=(2,), seeds=2, iterations=4,
            eval_every=2, batch_size=4, lr=1e-4, model_options={},
            study_options={"eval_points": 6, "test_points": 6, "eval_particles": 3, "final_particles": (5,),
                           "grad_samples": 2, "count_particles": 3, "elbo_samples": 2, "reconstructions": 3},
            description="a smoke test of the AIR task: every estimator that takes AIR's structured latents, 2 seeds × "
                        "4 steps of batch 4 at K = 2, metrics on 6 validation and 6 test images (seconds)"),
    },
)
