"""Every metric's one-line definition, shown by the reports next to the numbers.

``METRIC_DEFINITIONS`` maps a metric name to its definition.  Families of metrics that carry
parameters in brackets are keyed by a pattern whose bracket values are placeholders, e.g.
``prior_pmf[z=c]`` stands for ``prior_pmf[z=0]``, ``prior_pmf[z=1]``, ...; :func:`family`
maps a concrete metric name to its key.  A study that records a new metric adds its
definition here (``METRIC_DEFINITIONS[name] = "..."``); the site lists any metric without
one as undefined.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Tuple

METRIC_DEFINITIONS: Dict[str, str] = {
    "model_error": "‖p_θ(z) − p_θtrue(z)‖₂ between the learned and the true prior PMFs (RWS §4.3)",
    "inference_error": "(1/M) Σ_m ‖q_φ(·|x_m) − p_θtrue(·|x_m)‖₂ over M = 100 fixed test points, exact true "
                       "posterior (RWS §4.3)",
    "grad_std_phi": "(1/D_φ) Σ_d std(ĝ_d), D_φ = 644, sample std of 10 φ-gradient estimates at frozen parameters "
                    "on the test points (RWS §4.3; docs/conventions.md, convention 1)",
    "grad_std_phi_code": "the reference code's variant: population std, sum divided by 104 (compatibility only)",
    "log_px": "exact (1/M) Σ_m log p_θ(x_m) by enumerating the 20 clusters",
    "kl_qp": "exact (1/M) Σ_m KL(q_φ ‖ p_θ(·|x_m)), the exclusive KL of the guide from the model's posterior",
    "kl_pq": "exact (1/M) Σ_m KL(p_θ(·|x_m) ‖ q_φ), the inclusive KL of the model's posterior from the guide",
    "train_objective": "the estimator's own estimate of its target objective, averaged over the evaluation window",
    "sec_per_iter": "wall seconds per training iteration of the whole vectorised cell (all seeds together)",
    "exact_grad/variance": "Σ_d Var(ĝ_d) over N = 100 φ-gradient draws at frozen parameters "
                           "(docs/conventions.md, convention 3)",
    "exact_grad/bias_sq": "‖mean ĝ − g*‖² − variance/N, unbiased for ‖E ĝ − g*‖² (may be slightly negative); "
                          "g* = exact gradient of the estimator's target objective",
    "exact_grad/mse": "mean over draws of ‖ĝ − g*‖²",
    "exact_grad/rel_bias": "√max(bias_sq, 0) / ‖g*‖",
    "exact_grad/norm": "‖g*‖₂, the norm of the exact φ-gradient of the estimator's target objective",
    "prior_pmf[z=c]": "the learned prior's mass p_θ(z = c), stored at the start, middle and end of training (Fig 5)",
    "guide_pmf[x=v,z=c]": "the guide's mass q_φ(z = c | x = v) at a few fixed x, stored at the start, middle and "
                          "end of training (Fig 5)",
    # SBN study (harness/studies.py SBNTask; docs/sbn.md, docs/conventions.md)
    "test_ll[K=k]": "IWAE bound log (1/k) Σ_j p(x, z_j)/q(z_j|x), z_j ~ q, averaged over the test images (Burda et al.); "
                    "a stochastic lower bound on log p(x), evaluated in the binary limit",
    "valid_ll[K=k]": "the same IWAE bound on the validation images at the end of training",
    "valid_ll": "IWAE bound with K = 100 on the first eval_points validation images, along training",
    "train_elbo": "ELBO (mean of 10 single-sample bounds) on the first eval_points training images, along training",
    "test_elbo": "ELBO (mean of 10 single-sample bounds) on the test images at the end of training",
    "kl_posterior": "estimate of KL(q_φ(z|x) ‖ p_θ(z|x)): test_ll at the largest K minus test_elbo (RWS §4.1)",
    "test_log_px_exact": "exact (1/M) Σ_m log p_θ(x_m) on the test images by enumerating every latent state (sbn_tiny)",
    "active_units": "Burda et al. (2016) §5.2: number of latent units u with Cov_x(E_q[z_u|x]) > 0.01 on the test images",
    "grad_logvar_frozen": "log of the mean over φ-parameters of Var(ĝ_d) over 10 draws at frozen parameters on one "
                          "fixed training batch of the gradient the optimiser is given (NVIL[variant=mnih_gregor]: "
                          "the normalised one) (docs/conventions.md, convention 1)",
    "grad_logvar_ema": "log of the mean over φ-parameters of ŝ − m̂² along training, m̂, ŝ EMAs (decay 0.999) of the "
                       "applied φ-gradient g and of g², each debiased by ÷ (1 − 0.999ⁿ) as Adam's moments "
                       "(REBAR's plot; docs/conventions.md, convention 2)",
    "grad_logvar_ema_undebiased": "the same without the bias correction (zero-started EMAs, low by about "
                                  "1 − 0.999ⁿ plus a mean² term): cells stored before the correction; not plotted",
    "peak_memory_mb": "peak memory of the worker process: CUDA max allocated on a GPU, peak RSS on the CPU (MiB)",
    "diverged_at": "the first iteration at which this seed's loss or gradients were NaN/inf",
}

#: the GMM study's metrics, in the order its report lists them
GMM_METRICS = ["model_error", "inference_error", "grad_std_phi", "grad_std_phi_code", "log_px", "kl_qp",
               "kl_pq", "train_objective", "sec_per_iter", "exact_grad/variance", "exact_grad/bias_sq",
               "exact_grad/mse", "exact_grad/rel_bias", "exact_grad/norm", "prior_pmf[z=c]",
               "guide_pmf[x=v,z=c]"]

_BRACKET = re.compile(r"^(?P<base>[^\[]+)\[(?P<args>[^\]]*)\]$")


def _shape(name: str) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """``guide_pmf[x=20,z=3]`` → ("guide_pmf", ("x", "z")); None for a name without brackets."""
    m = _BRACKET.match(name)
    if not m:
        return None
    keys = tuple(part.partition("=")[0].strip() for part in m["args"].split(","))
    return m["base"], keys


def family(metric: str) -> Optional[str]:
    """The key of ``METRIC_DEFINITIONS`` that defines ``metric``, or None."""
    if metric in METRIC_DEFINITIONS:
        return metric
    shape = _shape(metric)
    if shape is None:
        return None
    for key in METRIC_DEFINITIONS:
        if _shape(key) == shape:
            return key
    return None


def definition(metric: str) -> Optional[str]:
    key = family(metric)
    return None if key is None else METRIC_DEFINITIONS[key]


def families(metrics: Iterable[str]) -> List[Tuple[str, Optional[str]]]:
    """Distinct (name or family key, definition or None) for the metrics given, in the order of
    ``METRIC_DEFINITIONS`` (undefined ones last); a metric with no definition appears under its
    own name with None."""
    out: Dict[str, Optional[str]] = {}
    for m in metrics:
        key = family(m)
        name = key if key is not None else m
        if name not in out:
            out[name] = METRIC_DEFINITIONS.get(name) if key is not None else None
    rank = {k: i for i, k in enumerate(METRIC_DEFINITIONS)}
    return sorted(out.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def markdown_table(names: Iterable[str]) -> str:
    """A Markdown table | metric | definition | of the given metric names or family keys."""
    lines = ["| metric | definition |", "| --- | --- |"]
    for name, text in families(names):
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


def variant_rows(labels: Iterable[str]) -> List[Tuple[str, str]]:
    """(label, what it computes) for the labels that have an entry (a label with extra options is
    matched by its variant part, e.g. ``rebar[variant=rebar_code,temperature=1]``)."""
    out = []
    for label in labels:
        key = label if label in ESTIMATOR_VARIANTS else None
        if key is None:
            base, _, rest = label.partition("[")
            opts = [o for o in rest.rstrip("]").split(",") if o.startswith(("variant=", "relaxation="))]
            key = f"{base}[{opts[0]}]" if opts and f"{base}[{opts[0]}]" in ESTIMATOR_VARIANTS else (
                base if not opts and base in ESTIMATOR_VARIANTS else None)
        if key is not None:
            out.append((label, ESTIMATOR_VARIANTS[key]))
    return out
