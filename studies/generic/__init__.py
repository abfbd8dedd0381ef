"""The generic study: any model that satisfies the model contract (``models/base.py``), trained like a built-in on
the data the user gives (``--data FILE``: a ``.npz`` or ``.pt`` file of observations; or a dataset of the data
layer) or on its own samples, with the metrics every study shares: IWAE bounds and the ELBO on train and test, exact
log p(x) and the exact-gradient bias and variance where the latents can be enumerated, the φ-gradient's variance,
time per step and peak memory.

::

    python run_all.py --suite generic --model mypkg.mod:MyModel --data my.npz --estimators vimco,rloo,disarm

Task ``studies/generic/task.py`` :class:`GenericTask` (its docstring lists every metric); reading ``--data``
``studies/generic/data.py``; settings in ``studies/generic/README.md``; report page ``studies/generic/page.py``.
"""
from estibench.studies.base import Study, Suite

from .settings import DEFINITIONS, ESTIMATORS, HEADLINE, ORDER  # noqa: F401 - the study's data

STUDY = Study(
    any_model=True,
    data="estibench.studies.generic.data:data_options",
    headline=HEADLINE,
    name="generic",
    description="Any contract model on the data you give (--data FILE or a dataset) or on its own samples",
    task="estibench.studies.generic.task:GenericTask",
    page="estibench.studies.generic.page:sections",
    order=ORDER,
    definitions=DEFINITIONS,
    suites={
        "generic": Suite(model="gmm", estimators=ESTIMATORS, particles=(2, 10), seeds=3, iterations=1000,
                         eval_every=250, batch_size=32, lr=1e-3,
                         description="any model (--model NAME or package.module:Class; default the 20-cluster GMM) on "
                                     "--data FILE (a .npz / .pt of observations) or a dataset, else on its own "
                                     "samples: 3 seeds × 1,000 steps of batch 32, K ∈ {2, 10}, Adam 1e-3"),
    },
)
