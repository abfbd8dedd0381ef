"""The smoothing transformations for binary latents, as the estimators use them.

The math lives one layer down, in :mod:`estibench.models.smoothing` (pure functions of tensors, no estimator), so
that a model whose own local binary latents are relaxed (``models/conv_vae.py``) uses the same code as the DVAE++
estimators.  This module re-exports it unchanged; :mod:`estimators.functional.smoothing` is its functional face (the
samplers, mixture densities and posteriors as functions of logits and noise), which the registered smoothings and
``estibench.grad`` call.
"""
from estibench.models.smoothing import (  # noqa: F401 - the public names, re-exported
    SMOOTHINGS, BinaryConcrete, OverlapExp, OverlapLogistic, OverlapPower, Smoothing, SpikeExp, get, log1mexp)
