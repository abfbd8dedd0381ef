"""The gradient basket's figure and table (``harness/basket.py``): every basket estimator's φ-gradient variance
along the one training trajectory of each cell's (reference) estimator.  Pure functions of the tidy table;
a page without basket metrics gets no section."""
from __future__ import annotations

import re
from typing import List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import tables as tb  # noqa: E402
from .section import Section  # noqa: E402

_MEMBER = re.compile(r"^basket_(?P<what>logvar|bias_sq|rel_bias)\[e=(?P<member>.*)\]$")


def basket_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The basket metrics with columns ``what`` (logvar, bias_sq, rel_bias) and ``member`` (the estimator's label)."""
    t = table[table.metric.str.startswith("basket_")]
    if t.empty:
        return t.assign(what=[], member=[])
    parts = t.metric.str.extract(_MEMBER)
    return t.assign(what=parts["what"], member=parts["member"]).dropna(subset=["member"])


def _member_of(label: str) -> str:
    """The basket member name of a cell's label: the label without the settings suffix the reports add to tell
    cells apart (``rloo {study_options.basket=...}`` → ``rloo``)."""
    return str(label).split(" {")[0]


def _panels(rows: pd.DataFrame):
    return list(rows.groupby(["model", "label", "particles"], sort=True))


def figure_basket(table: pd.DataFrame, path: str) -> str:
    """One panel per cell (model, reference estimator, K): log mean variance against iteration, one line per basket
    estimator (median over seeds), the reference drawn thick."""
    rows = basket_rows(table)
    rows = rows[rows.what == "logvar"]
    panels = _panels(rows)
    n = max(1, len(panels))
    cols = min(3, n)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.6 * cols, 3.4 * ((n + cols - 1) // cols)),
                             squeeze=False)
    from . import plotstyle as ps
    from .naming import short_models
    members = sorted(rows.member.unique())
    styles = ps.line_styles(members)  # one (colour, line style) per estimator, the legend outside the panels
    models = short_models(rows.model.unique())
    for ax, ((model, ref, K), sub) in zip(axes.flat, panels):
        med = sub.groupby(["member", "iteration"]).value.median().reset_index()
        for member, line in med.groupby("member"):
            ax.plot(line.iteration, line.value, linewidth=2.4 if member == _member_of(ref) else 1.0,
                    label=tb.pretty_label(member), **styles[member])
        ax.set_title(f"{models.get(model, model)}\nreference {tb.pretty_label(_member_of(ref))}, K = {K}", fontsize=8)
        ax.set_xlabel("iteration of the reference's training", fontsize=8)
        ax.set_ylabel("log mean Var(ĝ_φ)", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], label=tb.pretty_label(m), **styles[m]) for m in members]
    ps.legend_outside(fig, handles, [h.get_label() for h in handles], fontsize=8)
    fig.tight_layout()
    return ps.save(fig, path, dpi=90)


def basket_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell and basket estimator: the log mean variance averaged over the evaluations (mean and Student-t
    interval over seeds), its difference from the reference's (negative: lower variance than the reference at the
    same parameters), and the relative bias averaged the same way where the model is enumerable."""
    from estibench import estimators
    rows = basket_rows(table)
    if rows.empty:
        return pd.DataFrame()
    per_seed = rows.groupby(["model", "label", "particles", "member", "what", "seed"]).value.mean().reset_index()
    out = []
    for (model, ref, K), sub in per_seed.groupby(["model", "label", "particles"]):
        logvar = sub[sub.what == "logvar"]
        ref = _member_of(ref)
        ref_by_seed = logvar[logvar.member == ref].set_index("seed").value
        for member, m in logvar.groupby("member"):
            mean, lo, hi = tb.mean_ci(m.value)
            delta = m.set_index("seed").value - ref_by_seed.reindex(m.seed).to_numpy()
            bias = sub[(sub.what == "rel_bias") & (sub.member == member)].value
            name = tb.estimator_of(member)
            factory = estimators.REGISTRY.known(name)  # data only: a store's names are never imported
            unbiased = "?" if factory is None else ("yes" if factory.unbiased else "no")
            out.append({"model": model, "reference": ref, "K": K, "estimator": member,
                        "n seeds": int(np.isfinite(m.value.to_numpy(dtype=float)).sum()),
                        "unbiased (declared)": unbiased,
                        "log mean Var (mean over evaluations)": tb.format_ci(mean, lo, hi),
                        "Δ vs reference": "" if member == ref else f"{np.nanmean(delta):+.2f}",
                        "relative bias": f"{bias.mean():.3g}" if len(bias) else "not enumerable", "_sort": mean})
    frame = pd.DataFrame(out).sort_values(["model", "reference", "K", "_sort"]).drop(columns="_sort")
    return frame.reset_index(drop=True)


def _requested(value) -> List[str]:
    """The members a cell's ``study_options`` (JSON text or dict) names explicitly (none for ``("all",)``, which
    means "every estimator that fits")."""
    import json
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    basket = value.get("basket") if isinstance(value, dict) else None
    if not isinstance(basket, (list, tuple)) or list(basket) == ["all"]:
        return []
    return [str(m) for m in basket]


def not_measured(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell (model, reference estimator, K): the members its ``--basket`` named that it did not measure, because
    the estimator's own check refuses the model or K (``harness.basket.members`` leaves them out; the run said so in
    a note line), with where on the same model the member was measured instead.  Read from the stored cells'
    study options and metric names alone.  Columns model, reference, K, estimator, why; empty when none."""
    columns = ["model", "reference", "K", "estimator", "why"]
    rows = basket_rows(table)
    if rows.empty or "study_options" not in table.columns:
        return pd.DataFrame(columns=columns)
    measured_at = rows.groupby(["model", "member"]).particles.unique()
    out = []
    for (model, label, K), sub in rows.groupby(["model", "label", "particles"], sort=True):
        requested = []
        for value in table.loc[sub.index, "study_options"].unique():
            requested += [m for m in _requested(value) if m not in requested]
        ref, have = _member_of(label), set(sub.member)
        for member in requested:
            if member == ref or member in have:
                continue
            elsewhere = sorted(int(k) for k in measured_at.get((model, member), []) if k != K)
            why = f"the estimator's check refuses this model at K = {K}" + (
                f" (measured at K = {', '.join(map(str, elsewhere))})" if elsewhere else "")
            out.append({"model": model, "reference": ref, "K": K, "estimator": member, "why": why})
    return pd.DataFrame(out, columns=columns)


def sections(table: pd.DataFrame) -> List[Section]:
    rows = basket_rows(table)
    if rows.empty:
        return []
    skipped = not_measured(table)
    extra = [Section("Gradient basket: members not measured", "table", skipped,
                     caption="Members the run's --basket named that a cell did not measure: the estimator does not "
                             "fit that cell's model or K (the run named them, with the estimator's own reason, in a "
                             "note line).  They are absent from the figure and table above for these cells only.",
                     name="basket_not_measured")] if len(skipped) else []
    return [
        Section("Gradient basket: variance along one trajectory", "figure", lambda path: figure_basket(table, path),
                caption="Every basket estimator's φ-gradient log mean variance at the parameters the cell's own "
                        "(reference, thick line) estimator reached; median over seeds.  Differences between lines "
                        "come from the estimators, not from where their training wandered (the DisARM/RODEO code's "
                        "gradient basket).", name="fig_basket"),
        Section("Gradient basket: table", "table", basket_table(table),
                caption=f"log mean Var averaged over the evaluations: {tb.ci_label()}; Δ: mean "
                        "over seeds of the difference from the reference's at the same parameters; relative bias: "
                        "√bias²/‖g*‖ against the exact gradient of each estimator's own target, averaged (enumerable "
                        "models).  Estimators with own parameters (baselines, control variates) are measured as first "
                        "bound, untrained.", name="basket_table"),
    ] + extra
