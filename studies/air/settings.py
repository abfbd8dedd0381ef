"""The AIR study's settings, read by its ``Study`` (``__init__.py``) and its page (``page.py``): its estimators and
their order, its options and presets, its headline metric and its published numbers, as data with their sources."""
from estibench.studies.base import Headline, Preset

AIR_ESTIMATORS = ("ww", "vimco")

CPU_STUDY = {"eval_points": 100, "test_points": 100, "eval_particles": 10, "final_particles": (200,),
             "grad_samples": 5, "count_particles": 10}

#: the paper's settings for a GPU run (full multi-MNIST from LeCun's digits: ``run_all.py fetch-data mnist-dynamic``):
#: 2M iterations of batch 32; the paper's RMSProp 1e-5 (divided by 3 after 400k and 1,000k) is not in the harness,
#: whose optimiser is Adam: lr 1e-5 without the steps (stated); K over the paper's grid; 5,000-particle test estimates
PAPER_PRESET = Preset(
    iterations=2_000_000, eval_every=20_000, seeds=5, batch_size=32, lr=1e-5, particles=(5, 10, 20),
    model_options={"dataset": "multi-mnist-s0"},
    study_options={"eval_points": 1000, "test_points": 1000, "final_particles": (5000,), "count_particles": 10},
)


#: ``Study.order``
ORDER = AIR_ESTIMATORS


#: ``Study.headline``
HEADLINE = Headline("test_count_accuracy", figure="fig1")
