"""The 20-cluster GMM study of Le et al., "Revisiting Reweighted Wake-Sleep" (UAI 2019), §4.3, Figs 3–5.

Data: fresh batches from the paper's true model (synthetic; ``models/gmm.py``); task
``studies/gmm/task.py`` :class:`GMMTask` (its docstring lists every metric); settings and their
sources in ``studies/gmm/README.md``.  The paper reports figures only; its findings are checked against our
table by the report page (``studies/gmm/page.py``, ``findings``).
"""
from estibench.studies.base import Part, Study, Suite

from .settings import (  # noqa: F401 - the study's data, importable from the study too
    DEFINITIONS, ESTIMATORS, HEADLINE, METRICS, NEW_ESTIMATORS, NEW_K2_ONLY, NEW_PAPER_BUDGET, ORDER, PUBLISHED)

STUDY = Study(
    models=("gmm",),
    # the task measures the model against its truth (true_model, prior_probs, means, std: GMMTask); a model that does
    # not declare it is refused in one line before any work (models/protocols.py GMM_TRUTH; --suite generic trains it)
    needs=("GMM_TRUTH",),
    headline=HEADLINE,
    name="gmm",
    description="The 20-cluster GMM of RWS §4.3: model and inference errors and φ-gradient std against K",
    task="estibench.studies.gmm.task:GMMTask",
    page="estibench.studies.gmm.page:sections",
    index_page="estibench.studies.gmm.page:index_sections",
    order=ORDER,
    definitions=DEFINITIONS,
    metrics=METRICS,
    published=PUBLISHED,
    suites={
        "default": Suite(model="gmm", estimators=ESTIMATORS, particles=(2, 20), seeds=3, iterations=3000,
                         eval_every=250, batch_size=100, lr=1e-3,
                         description="GMM of RWS §4.3 at a reduced budget (3 seeds × 3,000 iterations, K ∈ {2, 20})"),
        "gmm": Suite(model="gmm", estimators=ESTIMATORS + NEW_PAPER_BUDGET, particles=(2, 5, 10, 20), seeds=10,
                     iterations=100_000, eval_every=1000, batch_size=100, lr=1e-3,
                     parts=(Part(), Part(estimators=NEW_K2_ONLY, particles=(2,))),
                     description="GMM of RWS §4.3 at the paper's budget (10 seeds × 100,000 iterations, "
                                 "K ∈ {2, 5, 10, 20}; of the later estimators RLOO, IndeCateR, categorical DisARM and "
                                 "ZGR at every K, GST, ReinMax and the unordered set estimator at K = 2)"),
    },
)
