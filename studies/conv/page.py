"""The convolutional study's report page: DVAE++ Table 3's layout (rows: the five latent types, global / local;
columns: our datasets, then the paper's), PixelVAE++ Table 1's layout (rows: datasets; columns: Gaussian prior, RBM
prior, the paper's VLAE; "LL (KL)"), the exact checks of the enumerable tiny configuration (log p(x), gradients) and
every RBM prior's log Z (exact, forward and reverse AIS), the prior samples per cell (as DVAE++ Fig. 4) and the
budget and cost of every cell.

Pure functions of the tidy table, the cells table and the artifacts table.  A cell's place in the papers' tables is
read from its columns (``model_name``, ``estimator``, ``model__prior``, ``model__local``,
``model__local_integration``, ``model__likelihood``, ``model__dataset``), nothing parsed from labels; every label
names the estimator and its variant from the cell's ``estimator__*`` columns.  Log-likelihoods are in nats per
image; a dataset reported in bits per dimension (CIFAR-10, :mod:`estibench.data.units`) is converted per seed.  No
number is typed here: the published values come from ``settings.py``, every other from the store or the data
module's constants.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from estibench.data import units
from estibench.data.datasets import CIFAR10_SHAPE, IMAGE_SHAPE, MNIST5K_SPLIT
from estibench.reports import definitions as defs
from estibench.reports import tables as tb
from estibench.reports.generic import generic_sections
from estibench.reports.naming import ESTIMATORS_CAPTION, estimators_table
from estibench.reports.section import Section
from estibench.studies.conv.settings import (DEFINITIONS, DVAEPP_TABLE3, ORDER, PIXELVAE_TABLE1, PUBLISHED,
                                             ROWS)

#: PixelVAE++ Table 1's columns that we train: (model name, estimator) → column
TABLE1_COLUMNS = {("conv_vae_normal", "vae"): "Gaussian prior", ("conv_vae", "gumbolt_pd"): "RBM prior",
                  ("conv_vae", "gumbolt"): "RBM prior, plain GumBolt"}
#: the exact-gradient metrics of the enumerable configuration (harness.metrics.exact_gradient_errors)
EXACT_GRAD = ["exact_grad/bias_sq", "exact_grad/rel_bias", "exact_grad/variance", "exact_grad/mse", "exact_grad/norm"]


# -- reading a cell's columns ---------------------------------------------------------------------------------------
def _value(value, default=None):
    """A column's value, ``default`` where the cell has none (NULL / NaN: its model or estimator has no such option)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    return value


def _get(cell, column: str, default=None):
    getter = getattr(cell, "get", None)
    return _value(getter(column) if getter is not None else None, default)


def _number(value) -> str:
    """An option value as printed: 5.0 → 5, 0.25 → 0.25, text as it is."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _is_pixelvae(cell) -> bool:
    return _get(cell, "model__likelihood", "bernoulli") == "pixelcnn"


def _exact(cell) -> bool:
    return _get(cell, "model__local_integration", "sample") == "exact"


def table3_row(cell) -> str:
    """DVAE++ Table 3's row of a cell (one of ``settings.ROWS``), or "" for a cell not in that table (the enumerable
    configuration with ``local_integration="exact"``, a PixelCNN++ decoder, another estimator)."""
    if _exact(cell) or _is_pixelvae(cell):
        return ""
    model, estimator = _get(cell, "model_name") or _get(cell, "model", ""), _get(cell, "estimator")
    if model == "conv_vae_normal":
        return ROWS[0] if estimator == "vae" else ""
    if model != "conv_vae":
        return ""
    prior, local = _get(cell, "model__prior", "rbm"), _get(cell, "model__local", "normal")
    if estimator == "spike_exp":
        return ROWS[1] if prior == "rbm" and local == "normal" else ""
    if estimator != "overlap_exp":
        return ""
    if prior == "bernoulli":
        return ROWS[4] if local == "bernoulli" else ""
    if prior == "rbm":
        return {"normal": ROWS[2], "bernoulli": ROWS[3]}.get(local, "")
    return ""


def table1_column(cell) -> str:
    """PixelVAE++ Table 1's column of a cell ("Gaussian prior" / "RBM prior"), or "" (no PixelCNN++ decoder, another
    model or estimator)."""
    if not _is_pixelvae(cell) or _exact(cell):
        return ""
    model = _get(cell, "model_name") or _get(cell, "model", "")
    if model == "conv_vae" and _get(cell, "model__prior", "rbm") != "rbm":
        return ""
    return TABLE1_COLUMNS.get((model, _get(cell, "estimator")), "")


def variant(cell) -> str:
    """The estimator and its variant from the cell's ``estimator__*`` columns: ``overlap_exp β 5→12``,
    ``gumbolt τ 0.25``, ``vae``."""
    estimator = str(_get(cell, "estimator", "?"))
    options = {k[len("estimator__"):]: _get(cell, k) for k in _keys(cell) if k.startswith("estimator__")}
    options = {k: v for k, v in options.items() if v is not None}
    parts = []
    for name, (start, end) in (("β", ("beta_start", "beta_end")), ("τ", ("temperature", "final_temperature"))):
        a, b = options.pop(start, None), options.pop(end, None)
        if a is not None and b is not None and _number(a) != _number(b):
            parts.append(f"{name} {_number(a)}→{_number(b)}")
        elif a is not None or b is not None:
            parts.append(f"{name} {_number(a if a is not None else b)}")
    parts += [f"{k}={_number(v)}" for k, v in sorted(options.items())]
    return " ".join([estimator] + parts)


def _keys(cell) -> Sequence[str]:
    index = getattr(cell, "index", None)
    return list(index) if index is not None else list(cell.keys())


def latent_type(cell) -> str:
    """Global / local latent types of any cell (e.g. "RBM / Bernoulli, summed out"), read from its columns."""
    model = _get(cell, "model_name") or _get(cell, "model", "")
    if model == "conv_vae_normal":
        prior = "Normal"
    else:
        prior = {"rbm": "RBM", "bernoulli": "Bernoulli"}.get(_get(cell, "model__prior", "rbm"), "?")
    if int(_get(cell, "model__local_groups", 1) or 0) == 0:
        local = "no local latents"
    else:
        local = {"normal": "Normal", "bernoulli": "Bernoulli"}.get(_get(cell, "model__local", "normal"), "?")
        if model != "conv_vae_normal" and _exact(cell):
            local += ", summed out"
    return f"{prior} / {local}"


def cell_name(cell) -> str:
    """How a cell is named in the per-cell tables: its place in the papers' tables (or its latent types), its
    estimator variant and its decoder."""
    place = table3_row(cell) or (f"{table1_column(cell)} (PixelVAE++)" if table1_column(cell) else latent_type(cell))
    extra = " · tiny (exact)" if _exact(cell) else ""
    return f"{place} · {variant(cell)}{extra}"


def image_shape(cell) -> tuple:
    """(C, H, W) of the images the cell's model sees, from its dataset and down-sampling."""
    dataset = str(_get(cell, "model__dataset") or _get(cell, "dataset") or "")
    shape = CIFAR10_SHAPE if units.unit(dataset) == units.BITS_PER_DIM else (1,) + tuple(IMAGE_SHAPE)
    d = int(_get(cell, "model__downsample", 1) or 1)
    return (shape[0], shape[1] // d, shape[2] // d)


def dataset_column(cell) -> str:
    """Our dataset as a column heading: its name, the image size the model sees, and bits/dim where so reported."""
    dataset = str(_get(cell, "model__dataset") or _get(cell, "dataset") or "?")
    _, h, w = image_shape(cell)
    unit = units.unit(dataset)
    return f"{dataset} ({h}×{w}{', ' + unit if unit != units.NATS else ''})"


# -- aggregation over seeds ------------------------------------------------------------------------------------------
def largest_k(table: pd.DataFrame, family: str = "test_ll") -> str:
    """The largest-K ``family[K=…]`` metric in the table, "" when there is none."""
    prefix = f"{family}[K="
    names = [m for m in table.metric.unique() if str(m).startswith(prefix)] if not table.empty else []
    return max(names, key=lambda m: int(m[len(prefix):-1])) if names else ""


def _final(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each cell's rows of ``metric`` at that cell's last iteration recording it."""
    rows = table[table.metric == metric]
    if rows.empty:
        return rows
    return rows[rows.iteration == rows.groupby("key").iteration.transform("max")]


def _reported(rows: pd.DataFrame, convert: bool) -> pd.DataFrame:
    """Per row, the value as the papers report it: log-likelihood in nats, or bits/dim for a colour dataset."""
    if not convert or rows.empty:
        return rows
    values = []
    for _, row in rows.iterrows():
        dataset = str(_get(row, "model__dataset") or _get(row, "dataset") or "")
        if units.unit(dataset) == units.BITS_PER_DIM:
            values.append(units.bits_per_dim(float(row.value), int(np.prod(image_shape(row)))))
        else:
            values.append(float(row.value))
    return rows.assign(value=values)


def per_cell(table: pd.DataFrame, metric: str, convert: bool = False) -> pd.DataFrame:
    """key → n, mean, lo, hi of ``metric`` over seeds at each cell's last iteration (``tables.mean_ci_groups``,
    the Student-t interval for the mean); ``convert``: log-likelihoods of colour data in bits/dim."""
    final = _reported(_final(table, metric), convert)
    return tb.mean_ci_groups(final, ["key"]).set_index("key")


def format_pm(mean: float, lo: float, hi: float, digits: int = 2) -> str:
    """``mean ± half-width`` of the interval (``mean (one seed)`` without one)."""
    if not np.isfinite(mean):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.{digits}f} (one seed)"
    return f"{mean:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"


def pm_label(ns) -> str:
    """The caption's statement of the interval: method, level and n."""
    values = sorted({int(n) for n in ns})
    where = (f"n = {values[0]} seeds" if len(values) == 1 else
             f"n = {', '.join(map(str, values))} seeds by cell (the `n seeds` column)" if values else "n = 0")
    return (f"mean ± half-width of the {tb.LEVEL:.0%} Student-t interval for the mean (mean ± t·s/√n, "
            f"tables.mean_ci_groups) over seeds, {where}; one seed: no interval")


def _digits(dataset_col: str) -> int:
    return 3 if units.BITS_PER_DIM in dataset_col else 2


def _cells_of(table: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the cells table where it has the key, else the table's first row of the key."""
    if cells is not None and not cells.empty and "key" in cells.columns:
        return cells.drop_duplicates("key")
    if table.empty:
        return pd.DataFrame()
    return table.drop_duplicates("key")


# -- 1. DVAE++ Table 3 -------------------------------------------------------------------------------------------------
def dvaepp_table3(table: pd.DataFrame, cells: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """DVAE++ Table 3's layout: rows ``settings.ROWS``; per dataset of ours, the largest-K test log-likelihood (nats,
    bits/dim for colour data; mean ± interval over seeds) and the estimator variant, then the paper's columns.
    Without cells of ours, the published table alone."""
    metric = largest_k(table)
    out = pd.DataFrame(index=list(ROWS))
    ns: List[int] = []
    if metric:
        agg = per_cell(table, metric, convert=True)
        by_key = _cells_of(table, cells).set_index("key") if not table.empty else pd.DataFrame()
        entries = []
        for key, row in agg.iterrows():
            if key not in by_key.index:
                continue
            cell = by_key.loc[key]
            place = table3_row(cell)
            if place:
                entries.append((place, dataset_column(cell), variant(cell), row))
        variants: Dict[str, List[str]] = {}
        for place, column, name, row in entries:
            variants.setdefault(place, [])
            if name not in variants[place]:
                variants[place].append(name)
        if entries:
            out["estimator · variant"] = ["; ".join(variants.get(r, [])) or "—" for r in out.index]
        for column in dict.fromkeys(e[1] for e in entries):
            values = {}
            for place, col, _, row in entries:
                if col == column:
                    values[place] = format_pm(row["mean"], row["lo"], row["hi"], _digits(col))
                    ns.append(int(row["n"]))
            out[f"{column} · estibench"] = [values.get(r, "—") for r in out.index]
        if entries:
            out.attrs["metric"] = metric
    for (data, _), values in DVAEPP_TABLE3.items():
        out[f"{data} · paper"] = [values.get(r, "—") for r in out.index]
    out.attrs["n"] = ns
    return out.rename_axis("global / local latents").reset_index()


# -- 2. PixelVAE++ Table 1 ---------------------------------------------------------------------------------------------
def pixelvae_table1(table: pd.DataFrame, cells: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """PixelVAE++ Table 1's layout: rows = datasets (ours, then the paper's), per prior "LL (KL)" of ours (the
    largest-K test log-likelihood, mean ± interval, and the mean ``test_kl``) beside the paper's, and the paper's
    VLAE.  Without cells of ours, the published table alone."""
    metric = largest_k(table)
    rows: Dict[str, Dict[str, str]] = {}
    names: Dict[str, List[str]] = {}
    ns: List[int] = []
    if metric:
        ll = per_cell(table, metric, convert=True)
        kl = per_cell(table, "test_kl")
        by_key = _cells_of(table, cells).set_index("key")
        for key, row in ll.iterrows():
            if key not in by_key.index:
                continue
            cell = by_key.loc[key]
            column = table1_column(cell)
            if not column:
                continue
            dataset = dataset_column(cell)
            text = format_pm(row["mean"], row["lo"], row["hi"], _digits(dataset))
            if key in kl.index:
                text += f" ({kl.loc[key, 'mean']:.{_digits(dataset)}f})"
            rows.setdefault(dataset, {})[column] = text
            names.setdefault(column, [])
            if variant(cell) not in names[column]:
                names[column].append(variant(cell))
            ns.append(int(row["n"]))
    columns = list(dict.fromkeys(TABLE1_COLUMNS.values()))
    published_columns = list(dict.fromkeys(c for values in PIXELVAE_TABLE1.values() for c in values))
    out = []
    for dataset, values in rows.items():
        entry = {"dataset": f"{dataset} · estibench"}
        for column in columns:
            entry[f"{column} · estimator"] = "; ".join(names.get(column, [])) or "—"
            entry[f"{column} · estibench"] = values.get(column, "—")
        out.append(entry)
    for (data, _), values in PIXELVAE_TABLE1.items():
        entry = {"dataset": f"{data} · paper"}
        for column in published_columns:
            entry[f"{column} · paper"] = values.get(column, "—")
        out.append(entry)
    frame = pd.DataFrame(out)
    ordered = ["dataset"]
    for column in columns:
        ordered += [c for c in (f"{column} · estimator", f"{column} · estibench", f"{column} · paper")
                    if c in frame.columns]
    ordered += [c for c in frame.columns if c not in ordered]
    frame = frame[ordered].fillna("")
    frame.attrs["metric"] = metric if rows else ""
    frame.attrs["n"] = ns
    return frame


# -- 3. exact checks and log Z ---------------------------------------------------------------------------------------
def _cell_table(table: pd.DataFrame, cells: pd.DataFrame, keep) -> pd.DataFrame:
    one = _cells_of(table, cells)
    if one.empty:
        return one
    return one[[bool(keep(row)) for _, row in one.iterrows()]]


def exact_ll_table(table: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Per enumerable cell (``local_integration="exact"``): the IWAE test bound of the largest K, the exact test
    log p(x) and their difference (mean ± interval over seeds; the bound sits below the exact value)."""
    metric = largest_k(table)
    chosen = _cell_table(table, cells, _exact)
    if not metric or chosen.empty or "test_log_px_exact" not in set(table.metric):
        return pd.DataFrame()
    bound, exact = per_cell(table, metric), per_cell(table, "test_log_px_exact")
    final = pd.concat([_final(table, metric), _final(table, "test_log_px_exact")])
    per_seed = final.groupby(["key", "seed", "metric"]).value.mean().unstack("metric").dropna()
    per_seed = per_seed.assign(value=per_seed[metric] - per_seed["test_log_px_exact"]).reset_index()
    gap = tb.mean_ci_groups(per_seed, ["key"]).set_index("key")
    rows = []
    for _, cell in chosen.iterrows():
        if cell.key not in bound.index or cell.key not in exact.index:
            continue
        row = {"cell": cell_name(cell), "n seeds": int(bound.loc[cell.key, "n"])}
        for name, agg in ((f"{metric} (IWAE bound)", bound), ("test_log_px_exact", exact),
                          (f"{metric} − exact", gap)):
            r = agg.loc[cell.key] if cell.key in agg.index else None
            row[name] = format_pm(r["mean"], r["lo"], r["hi"], 3) if r is not None else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def exact_gradient_table(table: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Per enumerable cell: the φ-gradient's errors against the exact gradient (log Z included) at the final
    parameters (mean ± interval over seeds)."""
    names = [m for m in EXACT_GRAD if m in set(table.metric)]
    chosen = _cell_table(table, cells, _exact)
    if not names or chosen.empty:
        return pd.DataFrame()
    aggs = {m: per_cell(table, m) for m in names}
    rows = []
    for _, cell in chosen.iterrows():
        if not any(cell.key in a.index for a in aggs.values()):
            continue
        row = {"cell": cell_name(cell),
               "n seeds": int(max(a.loc[cell.key, "n"] for a in aggs.values() if cell.key in a.index))}
        for m, agg in aggs.items():
            r = agg.loc[cell.key] if cell.key in agg.index else None
            row[m] = _sig(r) if r is not None else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def _sig(r, digits: int = 3) -> str:
    mean, lo, hi = r["mean"], r["lo"], r["hi"]
    if not np.isfinite(mean):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.{digits}g} (one seed)"
    return f"{mean:.{digits}g} ± {(hi - lo) / 2:.{digits}g}"


LOG_Z = ("log_z", "log_z_exact", "log_z_ais", "log_z_reverse_ais")


def log_z_table(table: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Per cell with an RBM prior (and the factorial Bernoulli prior, an RBM with W = 0): log Z exact, by forward AIS
    and by reverse AIS, and their differences from the exact value (mean over seeds at the last iteration)."""
    names = [m for m in LOG_Z if m in set(table.metric)]
    chosen = _cell_table(table, cells, lambda c: (_get(c, "model_name") or _get(c, "model", "")) == "conv_vae")
    if not names or chosen.empty:
        return pd.DataFrame()
    aggs = {m: per_cell(table, m) for m in names}
    rows = []
    for _, cell in chosen.iterrows():
        means = {m: (float(a.loc[cell.key, "mean"]) if cell.key in a.index else math.nan) for m, a in aggs.items()}
        if all(math.isnan(v) for v in means.values()):
            continue
        ns = [int(a.loc[cell.key, "n"]) for a in aggs.values() if cell.key in a.index]
        row = {"cell": cell_name(cell), "prior": _get(cell, "model__prior", "rbm"),
               "latent bits": _number(_get(cell, "model__latent_bits", "?")), "n seeds": max(ns),
               "log Z used": means.get("log_z", math.nan), "exact": means.get("log_z_exact", math.nan),
               "forward AIS (lower)": means.get("log_z_ais", math.nan),
               "reverse AIS (upper)": means.get("log_z_reverse_ais", math.nan)}
        row["forward AIS − exact"] = row["forward AIS (lower)"] - row["exact"]
        row["reverse AIS − exact"] = row["reverse AIS (upper)"] - row["exact"]
        rows.append(row)
    frame = pd.DataFrame(rows).round(4)
    numeric = frame.select_dtypes("number").columns
    frame[numeric] = frame[numeric] + 0.0  # no "-0" where a difference rounds to zero
    return frame


# -- 4. prior samples --------------------------------------------------------------------------------------------------
def prior_images(artifacts: Optional[pd.DataFrame], cells: pd.DataFrame) -> List[tuple]:
    """(cell name, dataset, images) per cell with a ``prior_means`` artifact, in the cells' order: images
    ``[n, H, W]`` (binary) or ``[n, H, W, C]`` (colour), values in [0, 1]."""
    if artifacts is None or artifacts.empty or cells is None or cells.empty:
        return []
    found = artifacts[artifacts.name == "prior_means"].drop_duplicates("key").set_index("key")
    out = []
    for _, cell in cells.drop_duplicates("key").iterrows():
        if cell.key not in found.index:
            continue
        row = found.loc[cell.key]
        shape = tuple(int(v) for v in str(row.mime).split("shape=")[1].split(";")[0].strip().split("x"))
        images = np.frombuffer(row.data, dtype=np.float16).reshape(shape).astype(np.float32)
        if images.ndim == 4:  # n x C x H x W → n x H x W x C
            images = images.transpose(0, 2, 3, 1)
        out.append((cell_name(cell), dataset_column(cell), np.clip(images, 0.0, 1.0)))
    return out


def prior_grid(images: List[tuple], path: str, per_row: int = 8) -> str:
    """One row of ``per_row`` decoded prior samples per cell, labelled by the cell's name and dataset."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(images), 1, figsize=(per_row * 0.9 + 4.2, 0.95 * len(images) + 0.3), squeeze=False)
    for ax, (name, dataset, ims) in zip(axes[:, 0], images):
        strip = np.concatenate(list(ims[:per_row]), axis=1)
        if strip.ndim == 3:
            ax.imshow(strip, vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(strip, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{name.replace(' · ', chr(10))}\n{dataset}", rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(left=0.36, right=0.99, top=0.99, bottom=0.01, hspace=0.2)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- 5. budget and cost ------------------------------------------------------------------------------------------------
def model_size(cell) -> str:
    """The model's size options from its columns, e.g. ``width 16, scales 1, blocks 1, downsample 2, local 2 × 4,
    global 16 bits, likelihood bernoulli`` (PixelCNN++'s blocks and filters only where the likelihood is one)."""
    parts = []
    for option in ("width", "scales", "blocks", "downsample"):
        v = _get(cell, f"model__{option}")
        if v is not None:
            parts.append(f"{option} {_number(v)}")
    groups, channels = _get(cell, "model__local_groups"), _get(cell, "model__local_channels")
    if groups is not None:
        parts.append(f"local {_number(groups)} × {_number(channels)}" if int(groups) and channels is not None
                     else f"local {_number(groups)}")
    bits, dim = _get(cell, "model__latent_bits"), _get(cell, "model__latent_dim")
    if bits is not None:
        parts.append(f"global {_number(bits)} bits")
    elif dim is not None:
        parts.append(f"global {_number(dim)} dims")
    likelihood = _get(cell, "model__likelihood")
    if likelihood is not None:
        parts.append(f"likelihood {likelihood}")
        if likelihood == "pixelcnn":
            parts += [f"pixelcnn_{o} {_number(_get(cell, f'model__pixelcnn_{o}'))}" for o in ("resnets", "filters")
                      if _get(cell, f"model__pixelcnn_{o}") is not None]
    return ", ".join(parts)


def budget_table(table: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Per cell: training length, seeds, batch, dataset, the model's size options, seconds per step and peak
    memory (means over seeds of the task's ``sec_per_iter`` / ``peak_memory_mb``; the cells table's
    ``sec_per_iter`` where the tidy table has none)."""
    one = _cells_of(table, cells)
    if one.empty:
        return pd.DataFrame()
    sec = per_cell(table, "sec_per_iter") if not table.empty else pd.DataFrame()
    mem = per_cell(table, "peak_memory_mb") if not table.empty else pd.DataFrame()
    seeds = table.groupby("key").seed.nunique() if not table.empty else pd.Series(dtype=int)
    rows = []
    for _, cell in one.iterrows():
        s = float(sec.loc[cell.key, "mean"]) if cell.key in sec.index else _get(cell, "sec_per_iter", math.nan)
        rows.append({"cell": cell_name(cell), "dataset": dataset_column(cell),
                     "iterations": _number(_get(cell, "iterations", "–")),
                     "seeds": int(seeds[cell.key]) if cell.key in seeds.index else "–",
                     "batch size": _number(_get(cell, "batch_size", "–")),
                     "model size": model_size(cell),
                     "sec_per_iter": round(float(s), 4) if s is not None and np.isfinite(float(s)) else math.nan,
                     "peak_memory_mb": (round(float(mem.loc[cell.key, "mean"]), 1) if cell.key in mem.index
                                        else math.nan)})
    return pd.DataFrame(rows)


def budget_text(cells: pd.DataFrame) -> str:
    """The sentence that says what budget these numbers come from."""
    one = cells.drop_duplicates("key") if cells is not None and not cells.empty and "key" in cells.columns else None
    if one is None:
        return "No cells yet."
    datasets = sorted({str(_get(c, "model__dataset") or _get(c, "dataset") or "?") for _, c in one.iterrows()})
    presets = sorted({str(_get(c, "preset", "") or "") for _, c in one.iterrows()})
    iterations = sorted({int(_get(c, "iterations", 0)) for _, c in one.iterrows()})
    if all(d.startswith("mnist5k") for d in datasets) and presets == [""]:
        head = (f"These are CPU-budget numbers on a {MNIST5K_SPLIT[0]:,}-image MNIST subset "
                f"({', '.join(datasets)}: its {MNIST5K_SPLIT[0]:,} training images, {MNIST5K_SPLIT[1]:,} validation, "
                f"{MNIST5K_SPLIT[2]:,} test), {' or '.join(map(str, iterations))} training steps per cell, not the "
                "papers' budget")
    else:
        budget = ("the suites' default CPU budget" if presets == [""] else
                  "preset " + ", ".join(p or "none" for p in presets))
        head = (f"These cells ran on {', '.join(datasets)} ({budget}), "
                f"{' or '.join(map(str, iterations))} training steps per cell")
    return (head + ".  The papers train full-size networks on full datasets on GPUs, so their numbers are printed "
            "beside ours for reference, not as a comparison at equal budget; `python run_all.py --suite dvaepp_conv "
            "--preset paper` (or `--suite pixelvae --preset paper`) restores the published settings for a GPU run.")


# -- the page ----------------------------------------------------------------------------------------------------------
def suites_of(cells: pd.DataFrame) -> List[str]:
    """Which of the study's suites the page's cells come from (both when there are no cells): "dvaepp_conv" for
    cells without a PixelCNN++ decoder, "pixelvae" for cells with one or trained with GumBolt."""
    if cells is None or cells.empty:
        return ["dvaepp_conv", "pixelvae"]
    found = set()
    for _, cell in cells.iterrows():
        found.add("pixelvae" if _is_pixelvae(cell) or str(_get(cell, "estimator", "")).startswith("gumbolt") else "dvaepp_conv")
    return [s for s in ("dvaepp_conv", "pixelvae") if s in found]


def _ordered_labels(table: pd.DataFrame) -> List[str]:
    rank = {e: i for i, e in enumerate(ORDER)}
    return sorted(table.label.unique(), key=lambda l: (rank.get(tb.estimator_of(l), len(rank)), l))


def sections(table: pd.DataFrame, cells: pd.DataFrame, artifacts: Optional[pd.DataFrame] = None) -> List[Section]:
    cells = cells if cells is not None else pd.DataFrame()
    suites = suites_of(cells)
    out: List[Section] = []
    if table.empty:
        out.append(Section("Results", "text", "No finished cells yet: the published tables only.", name="results"))
    # 1. DVAE++ Table 3
    t3 = dvaepp_table3(table, cells)
    if "dvaepp_conv" in suites or t3.attrs.get("metric"):
        ours = bool(t3.attrs.get("metric"))
        out.append(Section("DVAE++ Table 3 layout", "table", t3, name="dvaepp_table3",
                           caption=(f"estibench: {t3.attrs['metric']} (an RBM prior's normalised by its log Z) in nats per image "
                                    f"({units.BITS_PER_DIM} for colour data: −log₂ p(x) / dims, "
                                    "data.units.bits_per_dim), "
                                    + pm_label(t3.attrs.get("n", [])) + "; columns: our dataset (image size the model "
                                    "sees) · estibench, then the paper's · paper; rows: global / local latent types "
                                    "(Normal / Normal: conv_vae_normal with vae; RBM (Rolfe): spike-and-exponential "
                                    "smoothing; RBM (ours) and Bernoulli: overlapping exponential smoothing); the "
                                    "enumerable tiny configuration is in the exact checks below.  " if ours else
                                    "No cell of ours yet: the published table.  ")
                                   + PUBLISHED["dvaepp_table3"].source))
    # 2. PixelVAE++ Table 1
    t1 = pixelvae_table1(table, cells)
    if "pixelvae" in suites or t1.attrs.get("metric"):
        ours = bool(t1.attrs.get("metric"))
        out.append(Section("PixelVAE++ Table 1 layout", "table", t1, name="pixelvae_table1",
                           caption=(f"estibench: \"LL (KL)\": {t1.attrs['metric']} (nats per image; bits/dim for "
                                    "colour data), " + pm_label(t1.attrs.get("n", [])) + ", and in brackets the mean "
                                    "test_kl over seeds; Gaussian prior: conv_vae_normal trained with vae (without PixelVAE++'s "
                                    "KL annealing); RBM prior: conv_vae trained with gumbolt_pd (GumBolt with PixelVAE++'s "
                                    "path-derivative encoder gradient and a linear KL warm-up over the first tenth of "
                                    "training, our schedule), and plain gumbolt beside it; all with the PixelCNN++ "
                                    "decoder.  "
                                    if ours else "No cell of ours yet: the published table.  ")
                                   + PUBLISHED["pixelvae_table1"].source))
    # 3. exact checks
    ll = exact_ll_table(table, cells) if not table.empty else pd.DataFrame()
    if not ll.empty:
        out.append(Section("Exact checks: log-likelihood (enumerable tiny configuration)", "table", ll,
                           name="exact_ll",
                           caption=pm_label(ll["n seeds"]) + "; the enumerable configuration (local Bernoulli latents "
                                   "summed out, local_integration=exact, few global bits): the IWAE test bound "
                                   "(log Z exact) against the exact test log-likelihood by enumeration; the bound "
                                   "sits below it, so the difference is ≤ 0 up to the evaluation's noise"))
    grads = exact_gradient_table(table, cells) if not table.empty else pd.DataFrame()
    if not grads.empty:
        out.append(Section("Exact checks: gradients (enumerable tiny configuration)", "table", grads,
                           name="exact_gradients",
                           caption=pm_label(grads["n seeds"]) + "; every estimator's φ-gradient at its final "
                                   "parameters against the exact gradient of its target, log Z included "
                                   "(enumeration; harness.metrics.exact_gradient_errors); the relaxations' bias is "
                                   "the price of their smoothing"))
    z = log_z_table(table, cells) if not table.empty else pd.DataFrame()
    if not z.empty:
        out.append(Section("log Z of every RBM prior: exact, forward and reverse AIS", "table", z, name="log_z",
                           caption="mean over seeds at the last iteration; every log-likelihood of a cell is "
                                   "normalised by its 'log Z used' (exact where the RBM is enumerable, else the "
                                   "forward-AIS estimate); forward AIS sits below the exact log Z and reverse AIS "
                                   "above it in expectation, so one run can cross it by its noise.  The factorial "
                                   "Bernoulli prior is an RBM with W = 0 (log Z exact by construction)"))
    # 4. prior samples
    images = prior_images(artifacts, cells)
    for shape in sorted({ims.shape[1:] for _, _, ims in images}, reverse=True):
        chosen = [i for i in images if i[2].shape[1:] == shape]
        colour = len(shape) == 3
        out.append(Section(f"Samples from the prior ({shape[0]}×{shape[1]}{', colour' if colour else ''})", "figure",
                           lambda path, chosen=chosen: prior_grid(chosen, path),
                           name=f"prior_samples_{shape[0]}x{shape[1]}{'_colour' if colour else ''}",
                           caption="as DVAE++ Fig. 4 (images generated from the trained models): per cell, the first "
                                   "replicate's trained prior (RBM: exact samples where enumerable, else fresh Gibbs "
                                   "chains; Normal: N(0, I)), local latents from their prior, decoded "
                                   + ("as one draw of the likelihood (colour)" if colour else
                                      "as the likelihood's mean; dark = 1")))
    # 5. budget and cost
    out.append(Section("Budget and cost", "text", budget_text(cells), name="budget"))
    cost = budget_table(table, cells)
    if not cost.empty:
        out.append(Section("Budget and cost per cell", "table", cost, name="cost",
                           caption="per cell: training steps, seeds, batch size, dataset (image size the model sees), "
                                   "the model's size options from its columns (local G × C: local groups × variables "
                                   "per position; PixelCNN++'s options only where the likelihood is one), "
                                   "seconds per training step and peak memory (MB; means over seeds of the task's "
                                   "sec_per_iter and peak_memory_mb)"))
    if not table.empty:
        out.append(Section("Estimators", "table", estimators_table(table, _ordered_labels(table)),
                           caption=ESTIMATORS_CAPTION, name="variants"))
        out += generic_sections(table, cells, known={**defs.METRIC_DEFINITIONS, **DEFINITIONS})
    return out
