"""One naming scheme per study page: estimators by display name with their settings suffix shortened, models by
the settings that differ on the page (:func:`page_names`), the page's models in full (:func:`models_section`) and its
estimators with the registry name to type and what each computes (:func:`estimators_table`)."""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Optional, Sequence

import pandas as pd

from . import definitions as defs
from . import tables as tb
from .section import Section


_MARKS = re.compile(r"(?: [†✗])+$")
#: table columns that hold estimator labels (shown by display name, settings suffix shortened)
ESTIMATOR_COLUMNS = ("estimator", "label", "reference")


def _split_commas(text: str) -> List[str]:
    """``text`` split at the commas outside brackets and quotes, each part stripped."""
    parts, depth, start, quote = [], 0, 0, None
    for k, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:k].strip())
            start = k + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def short_models(models) -> Dict[str, str]:
    """full → short model labels: each keeps the settings that differ among the labels of its model name given
    (``tables.short_labels``), e.g. ``rbm_vae[ais_chains=200,…,groups=2]`` → ``rbm_vae[groups=2]``."""
    models = [str(m) for m in dict.fromkeys(models) if isinstance(m, str)]
    return {full: short for short, full in tb.short_labels(models).items()} if models else {}


def short_estimators(labels) -> Dict[str, str]:
    """full → short estimator labels: the settings suffix that ``tables.separate_settings`` adds to tell cells
    apart (``vimco {study_options.pretrain_ae_steps=1000, …}``) keeps only the settings that differ among the labels
    of the same estimator given (none: the suffix goes); the estimator's own options (``[…]``) stay.  Labels that
    would read alike keep their full form."""
    labels = [str(l) for l in dict.fromkeys(labels) if isinstance(l, str)]
    token: Dict[str, str] = {}
    proxy: Dict[str, str] = {}
    for label in labels:
        m = re.match(r"^(.*?) \{(.*)\}$", label)
        if m:
            tok = token.setdefault(m.group(1), f"estimator{len(token)}")
            proxy[label] = f"{tok}[{','.join(_split_commas(m.group(2)))}]"
    shortened = {f: s for s, f in tb.short_labels(list(proxy.values())).items()} if proxy else {}
    base = {t: b for b, t in token.items()}
    out = {}
    for label in labels:
        if label not in proxy:
            out[label] = label
            continue
        tok, _, rest = shortened.get(proxy[label], proxy[label]).partition("[")
        out[label] = base[tok] + (" {" + ", ".join(_split_commas(rest[:-1])) + "}" if rest else "")
    readers: Dict[str, List[str]] = {}
    for label, s in out.items():
        readers.setdefault(s, []).append(label)
    return {label: (label if len(readers[s]) > 1 else s) for label, s in out.items()}


def estimator_names(labels) -> Dict[str, str]:
    """full label (a † or ✗ mark kept at its end) → what a page prints: the short label (:func:`short_estimators`
    among ``labels``) with the estimator's display name (``tables.pretty_label``)."""
    labels = [l for l in dict.fromkeys(labels) if isinstance(l, str)]
    bare = {l: _MARKS.sub("", l) for l in labels}
    short = short_estimators(set(bare.values()))
    return {l: tb.pretty_label(short[bare[l]]) + l[len(bare[l]):] for l in labels}


def page_names(sections: Sequence[Section], models: Sequence[str] = ()) -> List[Section]:
    """One naming scheme per study page: in every table, estimator columns (:data:`ESTIMATOR_COLUMNS`) by display
    name with the settings suffix shortened within that table (:func:`estimator_names`), and the ``model`` column
    by the settings that differ within that table (:func:`short_models`); in section titles, ``models``' labels by
    the settings that differ on the page.  The registry names stay in the estimators table's own column."""
    page = short_models(models)
    replace = sorted(((f, s) for f, s in page.items() if f != s), key=lambda fs: -len(fs[0]))
    out = []
    for s in sections:
        title = s.title
        for full, short in replace:
            title = title.replace(full, short)
        payload = s.payload
        if s.kind == "table" and isinstance(payload, pd.DataFrame) and not payload.empty:
            payload = payload.copy()
            if "model" in payload.columns:
                names = short_models(payload["model"])
                payload["model"] = [names.get(v, v) if isinstance(v, str) else v for v in payload["model"]]
            for column in ESTIMATOR_COLUMNS:
                if column in payload.columns and payload[column].map(lambda v: isinstance(v, str)).all():
                    names = estimator_names(payload[column])
                    payload[column] = payload[column].map(names)
        out.append(dataclasses.replace(s, title=title, payload=payload))
    return out


def models_section(table: pd.DataFrame) -> Optional[Section]:
    """Every model of the page with each of its settings in a column, under the short name the page uses (None when
    no model name is shortened)."""
    if table is None or table.empty or "model" not in table.columns:
        return None
    models = list(dict.fromkeys(table.model.dropna().astype(str)))
    short = short_models(models)
    if all(s == f for f, s in short.items()):
        return None
    rows = []
    for full in models:
        name, _, inner = full.partition("[")
        row = {"model (as named on this page)": short[full], "model name": name}
        row.update(dict(p.split("=", 1) for p in _split_commas(inner[:-1]) if "=" in p) if inner else {})
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("–")
    return Section("Models on this page", "table", frame, name="models",
                   caption="each model is named by the settings that differ between the models of its name on this "
                           "page (a table names them by those that differ within it); here every setting, in full")


def _first_sentence(text: str) -> str:
    text = " ".join((text or "").strip().split("\n\n")[0].split())
    m = re.search(r"(?<=[.!?])\s+(?=[A-Z(])", text)
    return text[:m.start()] if m else text


def estimators_table(table: pd.DataFrame, labels: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """One row per estimator on the page: its display name, the registry name to type (``--estimators``; the one
    place a page prints it) and what it computes (``reports.definitions.ESTIMATOR_VARIANTS`` where the paper, the
    reference code and this project differ, else the first sentence of its docstring)."""
    from estibench import estimators
    labels = list(labels) if labels is not None else list(dict.fromkeys(table.label))
    typed: Dict[str, str] = {}
    for label in labels:
        typed.setdefault(re.sub(r" \{.*\}$", "", str(label)), label)
    rows = []
    for name, label in typed.items():
        variant = dict(defs.variant_rows(table, [label]))
        text = variant.get(label)
        if text is None:
            factory = estimators.REGISTRY.known(tb.estimator_of(label))  # never imports a name the store holds
            text = _first_sentence(factory.__doc__) if factory is not None else "(not registered in this installation)"
        rows.append({"estimator": tb.pretty_label(name), "registry name": name,
                     "what it computes": text})
    return pd.DataFrame(rows, columns=["estimator", "registry name", "what it computes"])


ESTIMATORS_CAPTION = ("The page names each estimator by its display name; its registry name is the one to type "
                      "(`--estimators NAME`, `check NAME`, `screen`).  Where the paper, its reference code and this project "
                      "differ, the text says which this label computes (the estimators' docstrings give every "
                      "formula).")
