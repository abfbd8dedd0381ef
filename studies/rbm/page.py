"""The RBM study's report: DVAE++ Table 2's layout (rows: guide groups × linear/nonlinear; columns: the RBM
prior trained with overlapping and with spike-and-exponential smoothing, the directed-prior SBNs with the
joint and marginal ELBO; GumBolt, VIMCO and Contrastive RWS beside them) and the RBM-prior paper's Table 1
(VIMCO and Contrastive RWS on its ELU 200 + 400 model with its pretraining, and VIMCO without), each with
the published numbers beside ours; the pretraining diagnostics; per model, the final-iteration summary and
learning curves; the log Z estimates that normalise every log-likelihood, with the forward/reverse-AIS
bracket; on the enumerable prior, how far the AIS-based numbers sit from the exact ones; the RAISE check.

Pure functions of the tidy table and the cells table; a cell's place in the papers' tables is read from
its columns (model_name, estimator and the option columns model__arch, model__groups, model__rbm_hidden,
estimator__elbo, study__pretrain_*_steps), nothing parsed from labels or JSON.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

import pandas as pd

from estibench.reports import definitions as defs
from estibench.reports import tables as tb
from estibench.reports.generic import generic_sections
from estibench.reports.naming import ESTIMATORS_CAPTION, estimators_table
from estibench.reports.section import Section

import math

from estibench.studies.rbm.settings import DEFINITIONS, DVAEPP_TABLE2, RBM_PRIOR_TABLE1, ORDER, PUBLISHED  # noqa: E402  (the study's data)

#: our columns of DVAE++ Table 2's layout: (model, estimator, elbo) → column; the first four are the paper's
TABLE2_COLUMNS = {("rbm_vae", "overlap_exp", "joint"): "RBM (ours)", ("rbm_vae", "spike_exp", "joint"): "RBM (Rolfe)",
                  ("sbn", "overlap_exp", "joint"): "Joint ELBO", ("sbn", "overlap_exp", "marginal"): "Marg. ELBO",
                  ("rbm_vae", "gumbolt", "joint"): "GumBolt", ("rbm_vae", "vimco", "joint"): "VIMCO",
                  ("rbm_vae", "contrastive_rws", "joint"): "Contrastive RWS"}


def _value(value, default=None):
    """A column's value, ``default`` where the cell has none (NULL: its model or estimator has no such option)."""
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else value


#: the study options that pretrain a cell (RBM-prior paper §4)
PRETRAINING = ("study__pretrain_ae_steps", "study__pretrain_cd_steps", "study__pretrain_pcd_steps")


def training(cell) -> str:
    """'pretrained' for a cell (a row of the tidy or cells table) whose study options pretrain it, else
    'no pretraining'."""
    return "pretrained" if any(int(_value(cell.get(c), 0)) > 0 for c in PRETRAINING) else "no pretraining"


def table2_row(cell) -> str:
    """DVAE++ Table 2's row of a cell ("1 Linear" … "2 Nonlin."), or "" for a model not in that table."""
    model_name = cell.get("model_name")
    if model_name == "rbm_vae" and not int(_value(cell.get("model__rbm_hidden"), 0)):
        arch = cell.get("model__arch")
        if arch in ("linear", "nonlinear"):
            return f"{int(_value(cell.get('model__groups'), 1))} {'Linear' if arch == 'linear' else 'Nonlin.'}"
    if model_name == "sbn":
        return {"linear1": "1 Linear", "linear2": "2 Linear", "nonlinear": "1 Nonlin."}.get(cell.get("model__arch"), "")
    return ""


def _test_metric(table: pd.DataFrame) -> str:
    names = [m for m in table.metric.unique() if m.startswith("test_ll[K=")]
    return max(names, key=lambda m: int(m[len("test_ll[K="):-1])) if names else ""


def _mean_std(values: pd.Series) -> str:
    mean, std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return f"{mean:.2f} ± {std:.2f}" if math.isfinite(std) else f"{mean:.2f}"


def _final_per_seed(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = table[table.metric == metric]
    if rows.empty:
        return rows
    return rows[rows.iteration == rows.groupby("key").iteration.transform("max")]


def dvaepp_table2(table: pd.DataFrame) -> pd.DataFrame:
    """DVAE++ Table 2's layout: per row (guide groups × architecture) and column, our test log-likelihood
    (the largest K of the cells; mean ± std over seeds) and, beside it, the paper's (MNIST static)."""
    metric = _test_metric(table)
    final = _final_per_seed(table, metric) if metric else pd.DataFrame()
    if final.empty:
        return pd.DataFrame()
    cells = [row for _, row in final.iterrows()]
    final = final.assign(row=[table2_row(c) for c in cells],
                         column=[TABLE2_COLUMNS.get((c.get("model_name"), c.get("estimator"),
                                                     _value(c.get("estimator__elbo"), "joint")), "") for c in cells])
    final = final[(final.row != "") & (final.column != "")]
    if final.empty:
        return pd.DataFrame()
    ours = final.groupby(["row", "column"]).value.apply(_mean_std).unstack("column")
    published = {row: values for (data, row), values in DVAEPP_TABLE2.items() if data == "MNIST (static)"}
    order = ["1 Linear", "2 Linear", "1 Nonlin.", "2 Nonlin."]
    out = pd.DataFrame(index=[r for r in order if r in ours.index or r in published])
    for column in dict.fromkeys(TABLE2_COLUMNS.values()):
        if column in ours.columns:
            out[f"{column} · estibench"] = ours[column]
        if any(column in v for v in published.values()):
            out[f"{column} · paper"] = [published.get(r, {}).get(column, "") for r in out.index]
    out = out.fillna("—").rename_axis("row").reset_index()
    out.attrs["metric"] = metric
    return out


def rbm_prior_table1(table: pd.DataFrame) -> pd.DataFrame:
    """The RBM-prior paper's Table 1 layout on its model (ELU networks, all latents visible, hidden units
    summed out): test NLL (−the largest-K test bound, mean ± std over seeds), our RAISE check's NLL on its
    subset, and the published value, per estimator and training (pretrained or not)."""
    metric = _test_metric(table)
    final = _final_per_seed(table, metric) if metric else pd.DataFrame()
    if final.empty:
        return pd.DataFrame()
    hidden = final.get("model__rbm_hidden", pd.Series(0, index=final.index)).fillna(0).astype(int)
    final = final[(final.model_name == "rbm_vae") & (hidden > 0)]
    if final.empty:
        return pd.DataFrame()
    published = RBM_PRIOR_TABLE1[("MNIST", "200-400 RBM")]
    raise_names = [m for m in table.metric.unique() if m.startswith("test_ll_raise[")]
    rows = []
    for (estimator, model, trained), group in final.groupby(
            ["estimator", "model", final.apply(training, axis=1)]):
        key = estimator if trained == "pretrained" else f"{estimator}[no pretraining]"
        row = {"estimator": estimator, "training": trained, "model": model,
               f"test NLL (ours, −{metric})": _mean_std(-group.value)}
        for name in raise_names:
            raised = _final_per_seed(table[table.key.isin(group.key)], name)
            if not raised.empty:
                row[f"RAISE NLL (ours, −{name}, subset)"] = _mean_std(-raised.value)
        row["test NLL (paper)"] = published.get(key, "—")
        rows.append(row)
    return pd.DataFrame(rows)


EXACT_GRAD = ["exact_grad/bias_sq", "exact_grad/rel_bias", "exact_grad/variance", "exact_grad/mse", "exact_grad/norm"]


def exact_gradient_table(table: pd.DataFrame) -> pd.DataFrame:
    """On the enumerable prior (rbm_vae_tiny): per model × estimator, the φ-gradient's bias², relative bias,
    variance and MSE against the exact gradient including log Z, at the final parameters (mean [95 % Student-t
    interval] over seeds; harness.metrics.exact_gradient_errors)."""
    rows = table[table.metric.isin(EXACT_GRAD)]
    if rows.empty:
        return pd.DataFrame()
    parts = []
    for model, group in rows.groupby("model"):
        wide = tb.final_ci_table(group, EXACT_GRAD, order=list(ORDER))
        parts.append(wide.assign(model=model))
    out = pd.concat(parts, ignore_index=True)
    return out[["model"] + [c for c in out.columns if c != "model"]]


def pretraining_table(table: pd.DataFrame) -> pd.DataFrame:
    """The pretraining's diagnostics per cell (mean over seeds): reconstruction log-likelihood over the first
    and last tenth of the autoencoder steps, and the fraction of binary codes after it."""
    names = ["pretrain_ae_first", "pretrain_ae_last", "pretrain_ae_binary"]
    rows = table[table.metric.isin(names)]
    if rows.empty:
        return pd.DataFrame()
    wide = rows.pivot_table(index=["model", "label"], columns="metric", values="value", aggfunc="mean")
    wide = wide[[n for n in names if n in wide.columns]]  # in the order of the stages
    wide.columns.name = None  # no empty "metric" column on the page
    return wide.rename(columns={"pretrain_ae_first": "reconstruction, first tenth",
                                "pretrain_ae_last": "reconstruction, last tenth",
                                "pretrain_ae_binary": "binary codes (fraction)"}).reset_index().rename(
        columns={"label": "estimator"}).round(3)


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


def prior_images(artifacts: Optional[pd.DataFrame], cells: pd.DataFrame) -> List[tuple]:
    """(model, label, images [n, side, side]) for every cell whose task kept decoded prior samples
    (``prior_means``, harness.studies.RBMTask.final_artifacts), in the cells' order."""
    if artifacts is None or artifacts.empty or cells.empty:
        return []
    found = artifacts[artifacts.name == "prior_means"].set_index("key")
    out = []
    for _, cell in cells.iterrows():
        if cell.key not in found.index:
            continue
        row = found.loc[cell.key]
        shape = tuple(int(v) for v in row.mime.split("shape=")[1].split("x"))
        out.append((short_model(cell), tb.display_name(cell.estimator) + (" [pretrained]" if training(cell) == "pretrained"
                                                                      else ""),
                    np.frombuffer(row.data, dtype=np.float16).reshape(shape).astype(np.float32)))
    return out


def short_model(cell) -> str:
    """A figure's short name for a cell's model: its name and the options that place it in the tables (its
    architecture and guide groups; the RBM's hidden units where it has some)."""
    shown = []
    for k in ("arch", "groups", "rbm_hidden"):
        v = _value(cell.get("model__" + k))
        if isinstance(v, float) and v.is_integer():
            v = int(v)  # (a column that other models leave NULL reads as float)
        if v is not None and not (k == "rbm_hidden" and v == 0):
            shown.append(f"{k}={v}")
    return f"{cell.get('model_name') or cell.model} {' '.join(shown)}".strip()


def prior_grid(images: List[tuple], path: str, per_row: int = 8) -> str:
    """One row of ``per_row`` decoded prior samples per cell, labelled by model and estimator."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(images), 1, figsize=(per_row * 0.9 + 3.4, 0.95 * len(images) + 0.3), squeeze=False)
    for ax, (model, label, ims) in zip(axes[:, 0], images):
        ims = ims[:per_row]
        ax.imshow(np.concatenate(list(ims), axis=1), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{label}\n{model}", rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(left=0.3, right=0.99, top=0.99, bottom=0.01, hspace=0.15)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _ordered_labels(table: pd.DataFrame) -> List[str]:
    rank = {e: i for i, e in enumerate(ORDER)}
    return sorted(table.label.unique(), key=lambda l: (rank.get(tb.estimator_of(l), len(rank)), l))


def sections(table: pd.DataFrame, cells: pd.DataFrame, artifacts: Optional[pd.DataFrame] = None) -> List[Section]:
    if table.empty:
        return [Section("Results", "text", "No finished cells yet.", name="results")]
    iterations = sorted({int(i) for i in cells.iterations.dropna()}) if "iterations" in cells.columns else []
    out = [Section("Budget", "text",
                   f"These cells ran at a CPU budget on the embedded 5,000-digit MNIST subset "
                   f"({' or '.join(map(str, iterations)) or '?'} training steps per cell; the RBM-prior paper's "
                   "pretraining, where used, at 1,000 autoencoder + 200 CD + 200 PCD steps); the published numbers "
                   "come from full MNIST and hundreds of epochs on a GPU (DVAE++ Table 2: 4,000 importance samples, "
                   "five runs; the RBM-prior paper: K = 50, AIS with 5,000 chains × 100,000 temperatures), so they "
                   "are printed beside ours for reference, not as a comparison at equal budget.  "
                   "`python run_all.py --suite rbm --preset paper` restores the published settings for a GPU run.",
                   name="budget"),
           Section("Estimators", "table", estimators_table(table, _ordered_labels(table)), caption=ESTIMATORS_CAPTION,
                   name="variants")]
    t2 = dvaepp_table2(table)
    if not t2.empty:
        out.append(Section("DVAE++ Table 2 layout", "table", t2, name="dvaepp_table2",
                           caption=f"estibench: {t2.attrs.get('metric')} (normalised by log Z), mean ± std over "
                                   "seeds; rows: guide groups × architecture (the directed SBNs: linear1, linear2 with "
                                   "2 × 100 latents, nonlinear; the paper's two-layer nonlinear directed model is not "
                                   "in the project); columns: DVAE++'s §5 bound on the RBM prior with overlapping "
                                   "exponential ('ours') and spike-and-exponential ('Rolfe') smoothing, the directed "
                                   "prior with the joint and marginal ELBO, then GumBolt, VIMCO and Contrastive RWS "
                                   "(K = 5) on the same RBM prior; " + PUBLISHED["dvaepp_table2"].source))
    t1 = rbm_prior_table1(table)
    if not t1.empty:
        out.append(Section("The RBM-prior paper's Table 1 layout", "table", t1, name="rbm_prior_table1",
                           caption="its model (ELU MLPs 784–200–200–100–100–200 and reverse, 200 + 400 RBM with the "
                                   "hidden units summed out), with and without its two-stage pretraining; "
                                   + PUBLISHED["rbm_prior_table1"].source))
    pre = pretraining_table(table)
    if not pre.empty:
        out.append(Section("Pretraining (the RBM-prior paper §3.1)", "table", pre, name="pretraining",
                           caption="stage 1, the autoencoder with the soft-binarising bottleneck: mean reconstruction "
                                   "log-likelihood over its first and last tenth of steps and the fraction of codes "
                                   "outside (−½, 1½) afterwards; stage 2 (CD-1 → CD-25, then PCD-25) trains the RBM "
                                   "on the codes"))
    images = prior_images(artifacts, cells)
    for side in sorted({ims.shape[-1] for _, _, ims in images}, reverse=True):
        chosen = [i for i in images if i[2].shape[-1] == side]
        out.append(Section(f"Samples from the prior ({side}×{side})", "figure",
                           lambda path, chosen=chosen: prior_grid(chosen, path), name=f"prior_samples_{side}",
                           caption="per cell, the first replicate's trained prior: z from exact samples (enumerable "
                                   "prior) or a fresh Gibbs chain of 25 × gibbs_sweeps sweeps, shown as the decoder "
                                   "mean σ(dec(z)); dark = 1"))
    out += generic_sections(table, cells, known={**defs.METRIC_DEFINITIONS, **DEFINITIONS})
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
    grads = exact_gradient_table(table)
    if not grads.empty:
        out.append(Section("Exact-gradient errors (enumerable prior)", "table", grads, name="exact_gradients",
                           caption=f"{tb.ci_label()}.  rbm_vae_tiny: every estimator's φ-gradient at its final "
                                   "parameters against the exact "
                                   "gradient of its target, log Z included (enumeration); the relaxations' bias is "
                                   "the price of their smoothing, the unbiased estimators' bias² sits at the noise floor"))
    check = raise_table(table)
    if not check.empty:
        out.append(Section("The RAISE check", "table", check, name="raise",
                           caption="mean over seeds: the IWAE bound on the first raise_points test images with the "
                                   "log Z estimate, and with log p(z) from RAISE (conservative: a RAISE value well "
                                   "above the log Z one would mean the log Z estimate is too low)"))
    out.append(Section("Published: the RBM-prior paper, Table 1", "table", published_table(), name="published",
                       caption=PUBLISHED["rbm_prior_table1"].source))
    return out
