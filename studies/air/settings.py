"""The AIR study's settings, read by its ``Study`` (``__init__.py``) and its page (``page.py``): its estimators and
their order, its options and presets, its headline metric, its published numbers and the
definitions of the metrics its task alone records, as data with their sources."""
from typing import Dict

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

#: the definitions of the metrics the AIR task alone records (``task.py``; studies/air/README.md); the engine's and
#: the shared ones are in ``harness/definitions.py`` (``METRIC_DEFINITIONS``)
DEFINITIONS: Dict[str, str] = {
    "count_accuracy": "fraction of count_particles (default 10) guide draws per image whose number of steps equals the "
                      "image's true number of digits, averaged over the first eval_points validation images (the ws_air "
                      "code's count accuracy), along training",
    "prior_step_prob": "s, the step-count prior's probability of one more step at that iteration (annealed, models/air.py)",
    "test_count_accuracy": "count_accuracy on the test images at the end of training",
    "count_confusion[true=i,inferred=j]": "among the test images with i digits, the fraction of count_particles guide "
                                          "draws that take j steps (rows sum to 1; Pyro's AIR count confusion matrix)",
}
