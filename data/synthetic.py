"""Synthetic data sources: datasets whose examples a model's known true distribution generates.

``gmm-true-model`` — the 20-cluster GMM study's data (Le et al., RWS §4.3): every training batch is a
fresh draw of B points from the paper's true model (mixture weights ∝ c + 5, μ_c = 10c, σ = 5); the
test points are drawn once from it with a fixed seed.  The source asks the model for its true
counterpart (``model.true_model()``), so the draws are exactly the model's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List


@dataclass(frozen=True)
class TrueModelSource:
    """Batches of x ~ p_true(x) from ``model.true_model()`` (a frozen copy with θ at the truth)."""

    name: str
    description: str

    def bind(self, model):
        """The true model for ``model``'s replicates: ``.sample(n)`` → (z, x) with x ``[R, n, *obs]``."""
        return model.true_model()


SYNTHETIC: Dict[str, TrueModelSource] = {
    "gmm-true-model": TrueModelSource("gmm-true-model", "fresh batches from the GMM study's true model (RWS §4.3)"),
}


def synthetic_names() -> List[str]:
    return sorted(SYNTHETIC)


def synthetic(name: str) -> TrueModelSource:
    if name not in SYNTHETIC:
        from .sources import UnknownDatasetError
        raise UnknownDatasetError(f"unknown synthetic dataset {name!r} (known: {', '.join(synthetic_names())})")
    return SYNTHETIC[name]
