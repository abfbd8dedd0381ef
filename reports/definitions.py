"""Definitions a page shows next to its numbers (part of the report kit that study pages use): the metrics'
(written once, in ``harness/definitions.py``; ``METRIC_DEFINITIONS`` re-exported here) as a Markdown table, and the
estimator variants'.  Families of metrics that carry parameters in brackets are keyed by a pattern whose bracket
values are placeholders (``prior_pmf[z=c]`` for ``prior_pmf[z=0]``, …).  A study that records a new metric
defines it in its ``Study.definitions``; the site's definitions section (``reports/glossary.py``) merges every
study's and lists any metric without one as undefined.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

from estibench.harness import definitions as _builtin
from estibench.harness.definitions import METRIC_DEFINITIONS  # noqa: F401 - the built-in table, for pages


def markdown_table(names: Iterable[str], known: Optional[Dict[str, str]] = None) -> str:
    """A Markdown table | metric | definition | of the given metric names or family keys, defined by ``known``
    (default: the built-in definitions; a study page passes them updated by its ``Study.definitions``)."""
    lines = ["| metric | definition |", "| --- | --- |"]
    for name, text in _builtin.families(names, known):
        text = text if text is not None else "(no definition registered in reports/definitions.py)"
        lines.append(f"| {name} | {text.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


#: what each estimator label computes, where the paper, the reference code and this project differ
#: (shown by the reports for the labels present; the estimators' docstrings give every formula)
ESTIMATOR_VARIANTS: Dict[str, str] = {
    "relax": "RELAX (Grathwohl et al. 2018) for the IWAE bound; categorical latents: conditional Gumbels g̃ | z "
             "from fresh noise (REBAR App. C, RWS code); Bernoulli latents: the REBAR paper's form (fresh v, one "
             "control variate over all layers, σ(ζ/λ)) with r_ρ one ReLU layer of 200",
    "relax[variant=relax_code]": "RELAX as the RELAX authors' SBN code: tied noise (ũ = u in value), one control "
                                 "variate per layer with hard upstream layers, σ(ζ/λ), λ and η per layer, r_ρ "
                                 "4 × 200 ReLU per layer (paper's best), weight decay 1e-3, own lr ×1; not "
                                 "reproduced: its 1,000-step pretraining of r_ρ and its logit-level variance objective",
    "rebar": "REBAR (Tucker et al. 2017) as its paper: fresh v, one control variate over all layers, σ(ζ/λ), λ per "
             "layer and η per φ tensor learned by the variance of the φ-gradient",
    "rebar[variant=rebar_code]": "REBAR as the REBAR authors' code (SBNDynamicRebar): tied noise, per-layer control "
                                 "variates with hard upstream layers, the MuProp-style relaxation σ(ζ/λ + λ/(λ+1)·a), "
                                 "an input-dependent baseline, η = 2σ(·) per θ and φ tensor, one λ, variance over θ "
                                 "and φ together",
    "rebar[variant=relax_code]": "REBAR as the RELAX authors' implementation (the RELAX paper's REBAR column): "
                                 "relax[variant=relax_code] without r_ρ",
    "nvil": "NVIL, the REBAR code's variant (the published NVIL columns): signal ℓ − C_ψ(x), no running mean, no "
            "variance normalisation",
    "nvil[variant=mnih_gregor]": "NVIL as Mnih & Gregor (2014): running-mean centring, C_ψ(x), variance "
                                 "normalisation (its gradient metrics are of the normalised gradient)",
    "concrete": "Concrete 3 → 0.5 (paper; the RWS code anneals to 1: final_temperature=1.0). Categorical latents: "
                "the RWS code's relaxed densities (Concrete density for q, hard prior mass at argmax z̃, Gaussian at the "
                "interpolated mean); Bernoulli latents: binary Concrete with log-masses linear in z̃ (the REBAR "
                "code's Concrete also adds λ/(λ+1)·a inside the sigmoid; not reproduced). Bias measured against the "
                "discrete ELBO_IS^K",
    "concrete[relaxation=mass]": "Concrete with a mixture of log-masses Σ_c z̃_c log q_c and Σ_c z̃_c log p_θ(x, c) "
                                 "(this project's first GMM variant; not the paper's nor its code's)",
}
#: the defaults' explicit forms (a cell records its effective options: a default cell's columns name its default)
ESTIMATOR_VARIANTS.update({"relax[variant=paper]": ESTIMATOR_VARIANTS["relax"],
                           "rebar[variant=paper]": ESTIMATOR_VARIANTS["rebar"],
                           "nvil[variant=rebar_code]": ESTIMATOR_VARIANTS["nvil"],
                           "concrete[relaxation=reference]": ESTIMATOR_VARIANTS["concrete"]})


def variant_rows(table, labels: Iterable[str]) -> List[Tuple[str, str]]:
    """(label, what it computes) for the labels given that have an entry, matched from the table's ``estimator``
    column and its option columns ``estimator__variant`` and ``estimator__relaxation`` (a cell's effective options):
    the label itself, else the estimator with its ``variant``, else with its ``relaxation`` (e.g. a
    ``rebar[variant=rebar_code,temperature=1]`` cell is described as ``rebar[variant=rebar_code]``), else the bare
    estimator when it has neither option."""
    cells = table.drop_duplicates("label").set_index("label") if len(table) else table
    out = []
    for label in labels:
        key = label if label in ESTIMATOR_VARIANTS else None
        if key is None and label in getattr(cells, "index", ()):
            row = cells.loc[label]
            base = row["estimator"]
            named = [f"{o}={row.get('estimator__' + o)}" for o in ("variant", "relaxation")
                     if isinstance(row.get("estimator__" + o), str)]
            key = (f"{base}[{named[0]}]" if named and f"{base}[{named[0]}]" in ESTIMATOR_VARIANTS else
                   (base if not named and base in ESTIMATOR_VARIANTS else None))
        if key is not None:
            out.append((label, ESTIMATOR_VARIANTS[key]))
    return out


