"""The AIR study's report, laid out as the RWS paper's Fig. 1 (``004_…`` §4.1): training curves of the validation
IWAE bound per K, the final test log evidence against K and KL(q ‖ p_θ(z|x)) against K (one line per estimator);
then the count accuracy (the table, the confusion matrix, and the seeds whose count accuracy stayed near chance,
counted, not hidden), the φ-gradient variance and ESS against K, reconstructions with the inferred boxes drawn on
them, and the generic per-model summaries.  Pure functions of the tidy table (and the cells' artifacts)."""
from __future__ import annotations

import json
import math
from typing import List, Optional

import numpy as np
import pandas as pd

from estibench.reports import definitions as defs
from estibench.reports import tables as tb
from estibench.reports.generic import generic_sections
from estibench.reports.naming import ESTIMATORS_CAPTION, estimators_table
from estibench.reports.section import Section
from estibench.studies.vae.page import _largest, curves_and_k_figure, final_by_k

from estibench.studies.air.task import AIR_DEFAULTS  # noqa: E402  (the failure threshold's default)
from estibench.studies.air.settings import DEFINITIONS, ORDER  # noqa: E402  (the study's data)


def _labels(table: pd.DataFrame) -> List[str]:
    return [l for l in ORDER if l in set(table.label)] + sorted(set(table.label) - set(ORDER))


def figure_fig1(table: pd.DataFrame, path: str) -> str:
    """RWS Fig. 1's layout: (top row) the validation bound along training, one panel per K; (bottom row) the final
    test log evidence and KL(q ‖ p) against K, one line per estimator (mean ± std over seeds)."""
    return curves_and_k_figure(table, path, ORDER)


def _fmt(mean: float, std: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def summary_by_k(table: pd.DataFrame) -> pd.DataFrame:
    """Per estimator and K: final test log evidence, ELBO, KL, count accuracy, ESS and φ-gradient log-variance
    (mean ± std over seeds)."""
    metrics = [m for m in (_largest(table, "test_ll[K="), "test_elbo", "kl_posterior", "test_count_accuracy",
                           "grad_logvar_frozen") if m]
    ess = [m for m in table.metric.unique() if m.startswith("ess[K=")]
    parts = []
    for metric in metrics + ["ess"] * bool(ess):
        if metric == "ess":  # each cell logs the ESS of its own K
            rows = tb.final_rows(table[table.metric.isin(ess)], by=("key",))
            f = rows.groupby(["label", "particles"]).value.agg(["mean", "std"]).reset_index()
            metric = "ESS (own K)"
        else:
            f = final_by_k(table, metric)
        f[metric] = [_fmt(m, s) for m, s in zip(f["mean"], f["std"])]
        parts.append(f.set_index(["label", "particles"])[[metric]])
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, axis=1).reset_index().rename(columns={"label": "estimator", "particles": "K"})
    rank = {l: i for i, l in enumerate(ORDER)}
    return out.sort_values(["K", "estimator"], key=lambda c: c.map(rank) if c.name == "estimator" else c)


def confusion(table: pd.DataFrame) -> pd.DataFrame:
    """The count confusion matrix per estimator and K (mean over seeds): row = true count, column = inferred."""
    rows = table[table.metric.str.startswith("count_confusion[")]
    if rows.empty:
        return pd.DataFrame()
    final = tb.final_rows(rows, by=("key",))
    parsed = final.metric.str.extract(r"true=(\d+),inferred=(\d+)").astype(int)
    final = final.assign(true=parsed[0].values, inferred=parsed[1].values)
    mean = final.groupby(["label", "particles", "true", "inferred"]).value.mean().unstack("inferred")
    mean.columns = [f"inferred {c}" for c in mean.columns]
    return mean.round(3).reset_index().rename(columns={"label": "estimator", "particles": "K", "true": "true count"})


def failures(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per estimator and K: how many seeds ended with a test count accuracy below ``threshold`` (near chance:
    a constant guess scores 1/3 on counts uniform over {0, 1, 2})."""
    rows = table[table.metric == "test_count_accuracy"]
    if rows.empty:
        return pd.DataFrame()
    final = tb.final_rows(rows, by=("key",))
    out = final.groupby(["label", "particles"]).value.agg(
        seeds="count", failed=lambda v: int((v < threshold).sum()), worst="min", best="max").reset_index()
    return out.rename(columns={"label": "estimator", "particles": "K"}).round(3)


def reconstructions(artifacts: Optional[pd.DataFrame], cells: pd.DataFrame) -> List[tuple]:
    """(label, K, images [n, 2, H, W], boxes) for every cell that kept reconstructions (AIRTask.final_artifacts)."""
    if artifacts is None or artifacts.empty or cells.empty:
        return []
    images = artifacts[artifacts.name == "reconstructions"].set_index("key")
    boxes = artifacts[artifacts.name == "boxes"].set_index("key")
    out = []
    for _, cell in cells.sort_values(["estimator", "particles"]).iterrows():
        if cell.key not in images.index or cell.key not in boxes.index:
            continue
        row = images.loc[cell.key]
        shape = tuple(int(v) for v in row.mime.split("shape=")[1].split("x"))
        out.append((cell.estimator, int(cell.particles),
                    np.frombuffer(row.data, dtype=np.float16).reshape(shape).astype(np.float32),
                    json.loads(bytes(boxes.loc[cell.key].data).decode())))
    return out


def reconstruction_grid(found: List[tuple], path: str, per_row: int = 6) -> str:
    """Per cell, ``per_row`` test images (top: the binarised image with the true boxes dashed; bottom: the
    reconstruction p(x | z) at one guide draw with the inferred boxes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    n = min(per_row, min(len(f[2]) for f in found))
    fig, axes = plt.subplots(2 * len(found), n, figsize=(1.2 * n + 1.6, 2.5 * len(found)), squeeze=False)
    colours = ["tab:red", "tab:green", "tab:blue", "tab:orange"]
    for c, (label, k, images, boxes) in enumerate(found):
        for i in range(n):
            for r, (image, key) in enumerate(((images[i, 0], "true"), (images[i, 1], "inferred"))):
                ax = axes[2 * c + r, i]
                ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
                for j, (top, left, h, w) in enumerate(boxes[i][key]):
                    ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, lw=1.2,
                                           ls="--" if key == "true" else "-", ec=colours[j % len(colours)]))
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_ylabel(f"{tb.display_name(label)} K={k}\n{'data' if key == 'true' else 'recon.'}",
                                  fontsize=7)
                if r == 1:
                    ax.set_xlabel(f"{len(boxes[i]['inferred'])} found / {boxes[i]['true_count']}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def sections(table: pd.DataFrame, cells: pd.DataFrame, artifacts: Optional[pd.DataFrame] = None) -> List[Section]:
    if table.empty:
        return [Section("Results", "text", "No finished cells yet.", name="results")]
    iterations = sorted({int(i) for i in cells.iterations.dropna()}) if "iterations" in cells.columns else []
    threshold = float(AIR_DEFAULTS["failure_accuracy"])
    out = [Section("Budget", "text",
                   f"These cells ran {' or '.join(map(str, iterations)) or '?'} steps on multi-MNIST from the embedded "
                   "digits; the paper trains 2M RMSProp iterations of batch 32 on 60,000 images and estimates the "
                   "test log evidence with 5,000 particles, so at this budget neither its numbers nor its ranking "
                   "are expected to reproduce.  `python run_all.py --suite air --preset paper` restores its settings "
                   "for a GPU run.", name="budget"),
           Section("Estimators", "table", estimators_table(table, _labels(table)), caption=ESTIMATORS_CAPTION,
                   name="variants"),
           Section("Fig. 1 layout", "figure", lambda path: figure_fig1(table, path), name="fig1",
                   caption="top row: validation IWAE bound (K = eval_particles) along training, per training K, mean "
                           "over seeds with the min–max band; bottom row: final test log evidence (many-particle IWAE) "
                           "and KL(q ‖ p_θ(z|x)) = that estimate − ELBO against K, mean ± std over seeds")]
    summary = summary_by_k(table)
    if not summary.empty:
        out.append(Section("Final log evidence, KL, count accuracy, gradient variance and ESS against K", "table",
                           summary, name="summary_by_k", caption="mean ± std over seeds at the last iteration"))
    fails = failures(table, threshold)
    if not fails.empty:
        out.append(Section("Seed-to-seed failures", "table", fails, name="failures",
                           caption=f"seeds whose final test count accuracy is below {threshold:g} (near chance: a "
                                   "constant count scores 1/3); worst and best seed's accuracy"))
    conf = confusion(table)
    if not conf.empty:
        out.append(Section("Count confusion matrix", "table", conf, name="confusion",
                           caption="rows: true number of digits; columns: the guide's number of steps; fractions of "
                                   "guide draws on the test images, mean over seeds"))
    found = reconstructions(artifacts, cells)
    if found:
        out.append(Section("Reconstructions with the inferred boxes", "figure",
                           lambda path: reconstruction_grid(found, path), name="reconstructions",
                           caption="first replicate of each cell: test images with the true boxes (dashed) and the "
                                   "decoder mean at one guide draw with the inferred glimpse boxes"))
    return out + generic_sections(table, cells, known={**defs.METRIC_DEFINITIONS, **DEFINITIONS})
