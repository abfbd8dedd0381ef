"""The RBM study's report: per model, the final-iteration summary and learning curves; the log Z
estimates that normalise every log-likelihood, with the forward/reverse-AIS bracket; on the enumerable
prior, how far the AIS-based numbers sit from the exact ones; the RAISE check of the final bounds; and
the RBM-prior paper's Table 1 as published (its budget stated: not comparable with ours).

Pure functions of the tidy table and the cells table.  DVAE++ Table 2's layout needs the overlapping
smoothings trained with the analytic RBM KL, which the project does not offer yet.
"""
from __future__ import annotations

from typing import List

import pandas as pd

from . import tables as tb
from .site import Section, generic_sections

from estibench.studies.rbm import RBM_PRIOR_TABLE1, STUDY  # noqa: E402  (published numbers: the study's data)


def _final_means(table: pd.DataFrame, metrics) -> pd.DataFrame:
    rows = tb.final_rows(table[table.metric.isin(metrics)], by=("model", "label", "particles"))
    return rows.pivot_table(index=["model", "label", "particles"], columns="metric", values="value", aggfunc="mean")


def log_z_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per model × estimator (mean over seeds at the last iteration): log Z used, forward AIS, reverse AIS,
    the bracket's width, and the exact value where it exists."""
    wide = _final_means(table, ["log_z", "log_z_ais", "log_z_reverse_ais", "log_z_exact"])
    if wide.empty:
        return pd.DataFrame()
    out = pd.DataFrame({"log Z used": wide.get("log_z"), "forward AIS (lower)": wide.get("log_z_ais"),
                        "reverse AIS (upper)": wide.get("log_z_reverse_ais")})
    out["bracket width"] = out["reverse AIS (upper)"] - out["forward AIS (lower)"]
    if "log_z_exact" in wide.columns:
        out["exact"] = wide["log_z_exact"]
    return out.reset_index().rename(columns={"label": "estimator", "particles": "K"}).round(4)


def exact_gap_table(table: pd.DataFrame) -> pd.DataFrame:
    """On an enumerable prior: AIS and reverse AIS minus exact log Z, and the IWAE test bound minus the
    exact test log-likelihood (both normalised by the exact log Z), per model × estimator."""
    metrics = ["log_z_ais", "log_z_reverse_ais", "log_z_exact", "test_log_px_exact"]
    bounds = sorted(m for m in table.metric.unique() if m.startswith("test_ll[K="))
    wide = _final_means(table, metrics + bounds)
    if wide.empty or "log_z_exact" not in wide.columns:
        return pd.DataFrame()
    wide = wide[wide["log_z_exact"].notna()]
    out = pd.DataFrame({"AIS − exact log Z": wide["log_z_ais"] - wide["log_z_exact"],
                        "reverse AIS − exact log Z": wide["log_z_reverse_ais"] - wide["log_z_exact"]})
    for b in bounds:
        out[f"{b} − exact log p(x)"] = wide[b] - wide["test_log_px_exact"]
    return out.reset_index().rename(columns={"label": "estimator", "particles": "K"}).round(4)


def raise_table(table: pd.DataFrame) -> pd.DataFrame:
    """The RAISE check per model × estimator: the IWAE bound on the same test images with log Z (AIS or
    exact) and with RAISE's log p(z), and their difference (RAISE − log Z; the paper: 83.77 vs 83.69 nats)."""
    names = sorted(m for m in table.metric.unique() if m.startswith("test_ll_raise[") or m.startswith("test_ll_subset["))
    wide = _final_means(table, names)
    if wide.empty:
        return pd.DataFrame()
    out = pd.DataFrame(index=wide.index)
    for name in [n for n in names if n.startswith("test_ll_subset[")]:
        k = name[len("test_ll_subset"):]
        raised = f"test_ll_raise{k}"
        if raised in wide.columns:
            out[f"with log Z {k}"] = wide[name]
            out[f"with RAISE {k}"] = wide[raised]
            out[f"RAISE − log Z {k}"] = wide[raised] - wide[name]
    return out.reset_index().rename(columns={"label": "estimator", "particles": "K"}).round(3)


def published_table() -> pd.DataFrame:
    rows = []
    for (data, model), values in RBM_PRIOR_TABLE1.items():
        for label, value in values.items():
            rows.append({"data": data, "model": model, "estimator": label, "test NLL (nats)": value})
    return pd.DataFrame(rows)


def sections(table: pd.DataFrame, cells: pd.DataFrame) -> List[Section]:
    if table.empty:
        return [Section("Results", "text", "No finished cells yet.", name="results")]
    out = [Section("Budget", "text",
                   "These cells ran at a CPU budget on the embedded 5,000-digit MNIST subset, without the RBM-prior "
                   "paper's two-stage pretraining; the published numbers below come from full MNIST, pretraining "
                   "and hundreds of epochs on a GPU, so they are printed for reference, not compared.", name="budget")]
    out += generic_sections(table, cells)
    z = log_z_table(table)
    if not z.empty:
        out.append(Section("log Z of the RBM prior", "table", z, name="log_z",
                           caption="mean over seeds at the last iteration; every log-likelihood of a cell is normalised "
                                   "by its 'log Z used' (exact where the prior is enumerable, else the forward-AIS "
                                   "estimate made before the final evaluation; the forward/reverse columns are separate "
                                   "runs made after it).  The bounds hold in expectation: where AIS is this accurate a "
                                   "single run's reverse estimate can fall just below the forward one"))
    gap = exact_gap_table(table)
    if not gap.empty:
        out.append(Section("AIS-based numbers against exact ones (enumerable prior)", "table", gap, name="exact_gap",
                           caption="forward AIS sits below the exact log Z and reverse AIS above it, on average; the "
                                   "IWAE bound sits below the exact log-likelihood"))
    check = raise_table(table)
    if not check.empty:
        out.append(Section("The RAISE check", "table", check, name="raise",
                           caption="mean over seeds: the IWAE bound on the first raise_points test images with the "
                                   "log Z estimate, and with log p(z) from RAISE (conservative: a RAISE value well "
                                   "above the log Z one would mean the log Z estimate is too low)"))
    out.append(Section("Published: the RBM-prior paper, Table 1", "table", published_table(), name="published",
                       caption=STUDY.published["rbm_prior_table1"].source))
    return out
