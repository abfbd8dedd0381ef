"""Tests over what is registered, not over lists of names (issue 27 item 7).

``accepting(model)``: the registered estimators whose *declarations* (``latent_types``, ``needs``, ``handles``;
a family: any of its implementations) accept ``model``, so a test states a property ("every estimator that
declares normal latents is accepted") and a new estimator that declares what it takes is covered without an
edit.  ``temporary_study(page=...)``: a study registered for the duration of a ``with`` block and removed after it,
page-less or with a page of its own (:func:`toy_sections`); ``tests/conftest.py`` offers it as the fixture
``temporary_study``, once each way.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Set

from estibench import estimators, studies
from estibench.models.protocols import refusal


def implementations(name: str, **options):
    """The implementations behind a registered estimator name, built with ``options`` (declarations may depend on
    them): a family's candidates, else the estimator itself."""
    est = estimators.get(name, **options)
    return est.candidates if isinstance(est, estimators.Family) else (est,)


def declares_to_accept(name: str, model) -> bool:
    """Whether some implementation of ``name`` declares ``model``'s latent kind and needs only what the model
    provides (and handles its special capabilities): what ``check`` must then accept."""
    return any(model.latent.kind in impl.latent_types and refusal(model, impl.needs, impl.handles) is None
               for impl in implementations(name))


def accepting(model) -> Set[str]:
    """The registered estimators whose declarations accept ``model``."""
    return {name for name in estimators.names() if declares_to_accept(name, model)}


def toy_sections(table, cells, artifacts=None):
    """The temporary study's page: one text section (``reports.section.Section``), read when the page is built."""
    from estibench.reports.section import Section
    return [Section("Temporary page", "text", f"{len(cells)} cells", name="temporary")]


@contextlib.contextmanager
def temporary_study(page: bool) -> Iterator[studies.Study]:
    """Register a one-suite study on the GMM task (its name and its suite's: ``temporary_paged`` or
    ``temporary_pageless``) for the duration of the block; remove it after, even when the block raises."""
    name = "temporary_paged" if page else "temporary_pageless"
    gmm = studies.get("gmm")
    study = studies.Study(
        name=name, description=f"a temporary study {'with a page' if page else 'without a page'} (tests)",
        task=gmm.task, page="registered:toy_sections" if page else "",
        suites={name: dict(model="gmm", estimators=("ww", "vimco"), particles=(2,), seeds=1, iterations=4,
                           eval_every=2, batch_size=10, lr=1e-3,
                           study_options={"test_points": 5, "grad_std_samples": 2, "exact_samples": 2},
                           description=f"the suite of {name}")})
    studies.REGISTRY.register(name)(lambda: study)
    try:
        yield study
    finally:
        studies.unregister(name)
