"""The one-line definitions of the metrics the engine itself computes or records (runner, metric functions, gradient
basket) and of those several studies record; a metric that one study alone records is defined in that study's
folder (``studies/<name>/settings.py``, ``DEFINITIONS``, its ``Study.definitions``).  Each is written once: the
task docstrings (``studies/<name>/task.py``), the reports and the site read them from here and from the studies.

``METRIC_DEFINITIONS`` maps a metric name to its definition.  Families of metrics that carry
parameters in brackets are keyed by a pattern whose bracket values are placeholders, e.g.
``prior_pmf[z=c]`` stands for ``prior_pmf[z=0]``, ``prior_pmf[z=1]``, ...; :func:`family` maps a
concrete metric name to its key.  A study of your own adds the definitions of the metrics it
records in its :class:`estibench.studies.Study` (``definitions``): the reports merge them with these
(``reports/glossary.py``, ``all_definitions``) and pass them as ``known``; this module, part of the
engine, reads no study.  The site lists any metric without a definition as undefined.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Tuple

#: metrics that measure how a cell ran (time, memory), not what it computed: they differ between two runs of the
#: same cell and are left out wherever two runs' numbers are compared
MEASUREMENTS = ("sec_per_iter", "peak_memory_mb")

METRIC_DEFINITIONS: Dict[str, str] = {
    "grad_std_phi": "(1/D_φ) Σ_d std(ĝ_d) over the D_φ guide parameters (644 for the GMM's default guide), sample std "
                    "of grad_std_samples (default 10) φ-gradient estimates at frozen parameters on the test points "
                    "(RWS §4.3; docs/conventions.md, convention 1)",
    "grad_std_phi_code": "the reference code's variant: population std, sum divided by the sum of the φ tensors' leading "
                         "sizes (104 for the GMM's default guide) (compatibility only)",
    "train_objective": "the estimator's own estimate of its target objective, averaged over the evaluation window",
    "sec_per_iter": "wall seconds per training iteration of the whole vectorised cell (all seeds together)",
    "exact_grad/variance": "Σ_d Var(ĝ_d) over N = exact_samples (default 100) φ-gradient draws at frozen parameters "
                           "(docs/conventions.md, convention 3)",
    "exact_grad/bias_sq": "‖mean ĝ − g*‖² − variance/N, unbiased for ‖E ĝ − g*‖² (may be slightly negative); "
                          "g* = exact gradient of the estimator's target objective",
    "exact_grad/mse": "mean over draws of ‖ĝ − g*‖²",
    "exact_grad/rel_bias": "√max(bias_sq, 0) / ‖g*‖",
    "exact_grad/norm": "‖g*‖₂, the norm of the exact φ-gradient of the estimator's target objective",
    # the SBN task's (SBNTask, and the VAE, AIR and RBM tasks that extend it; studies/sbn/README.md,
    # docs/conventions.md)
    "test_ll[K=k]": "IWAE bound log (1/k) Σ_j p(x, z_j)/q(z_j|x), z_j ~ q, averaged over the test images (Burda et al.); "
                    "a stochastic lower bound on log p(x), evaluated in the binary limit",
    "valid_ll[K=k]": "the same IWAE bound on the validation images at the end of training",
    "valid_ll": "IWAE bound with K = eval_particles (default 100) on the first eval_points validation images, "
                "along training",
    "train_elbo": "ELBO (mean of elbo_samples, default 10, single-sample bounds) on the first eval_points training "
                  "images, along training",
    "test_elbo": "ELBO (mean of elbo_samples, default 10, single-sample bounds) on the test images at the end of "
                 "training",
    "kl_posterior": "estimate of KL(q_φ(z|x) ‖ p_θ(z|x)): test_ll at the largest K minus test_elbo (RWS §4.1)",
    "test_log_px_exact": "exact (1/M) Σ_m log p_θ(x_m) on the test images by enumerating every latent state (sbn_tiny)",
    # several studies': importance weights, active units, the φ-gradient's variance, memory
    "ess[K=k]": "effective sample size 1 / Σ_k w̃_k² of the normalised importance weights w̃ = w / Σ w of k = the "
                "cell's K draws from the guide (Bachman & Precup §3), mean over the evaluation points; in [1, k] "
                "(multi-particle cells only)",
    "resampling_entropy[K=k]": "entropy E(w̃) = −Σ_k w̃_k log w̃_k of the same normalised weights (Bachman & Precup "
                               "Eq. 23): the gap between the IWAE bound and the Eq. 21 objective Σ w̃ log w, plus "
                               "log k; in [0, log k]",
    "active_units": "Burda et al. (2016) §5.2: number of latent units u with Cov_x(E_q[z_u|x]) > 0.01 on the test images",
    "grad_logvar_frozen": "log of the mean over φ-parameters of Var(ĝ_d) over grad_samples (default 10) draws at frozen "
                          "parameters on one "
                          "fixed training batch of the gradient the optimiser is given (NVIL[variant=mnih_gregor]: "
                          "the normalised one) (docs/conventions.md, convention 1)",
    "grad_logvar_ema": "log of the mean over φ-parameters of ŝ − m̂² along training, m̂, ŝ EMAs (decay 0.999) of the "
                       "applied φ-gradient g and of g², each debiased by ÷ (1 − 0.999ⁿ) as Adam's moments "
                       "(REBAR's plot; docs/conventions.md, convention 2)",
    "grad_logvar_ema_undebiased": "the same without the bias correction (zero-started EMAs, low by about "
                                  "1 − 0.999ⁿ plus a mean² term): cells stored before the correction; not plotted",
    "peak_memory_mb": "peak memory while the cell ran, recorded by the runner for every cell at its last iteration: "
                      "CUDA max allocated on a GPU; on the CPU the worker process's peak resident set size, reset "
                      "when the cell starts (Linux /proc/self/clear_refs; elsewhere the process's peak so far) (MiB)",
    # the gradient basket (harness/basket.py; study option ``basket``)
    "basket_logvar[e=label]": "log of the mean over φ-parameters of Var(ĝ_d) of estimator e over basket_samples draws "
                              "at the cell's (reference estimator's) parameters on the gradient batch, at every "
                              "evaluation; e's own parameters as first bound (untrained)",
    "basket_bias_sq[e=label]": "‖mean ĝ − g*‖² − Σ_d Var(ĝ_d)/N of estimator e at the same parameters, g* the exact "
                               "φ-gradient of e's target objective (enumerable models)",
    "basket_rel_bias[e=label]": "√max(basket_bias_sq, 0) / ‖g*‖ of estimator e (enumerable models)",
    "diverged_at": "the first iteration at which this seed's loss or gradients were NaN/inf",
}


_BRACKET = re.compile(r"^(?P<base>[^\[]+)\[(?P<args>.*)\]$")


def _top_level(args: str) -> List[str]:
    """``e=gst[gap=1.0,x=2],k=3`` → ["e=gst[gap=1.0,x=2]", "k=3"]: commas inside brackets (an estimator label with
    options as a value) do not split."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(args):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(args[start:i])
            start = i + 1
    return parts + [args[start:]]


def _shape(name: str) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """``guide_pmf[x=20,z=3]`` → ("guide_pmf", ("x", "z")); None for a name without brackets."""
    m = _BRACKET.match(name)
    if not m:
        return None
    keys = tuple(part.partition("=")[0].strip() for part in _top_level(m["args"]))
    return m["base"], keys




def family(metric: str, known: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The key of ``known`` (default: the built-in :data:`METRIC_DEFINITIONS`) that defines ``metric``, or None."""
    known = METRIC_DEFINITIONS if known is None else known
    if metric in known:
        return metric
    shape = _shape(metric)
    if shape is None:
        return None
    for key in known:
        if _shape(key) == shape:
            return key
    return None


def definition(metric: str, known: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The definition of ``metric`` in ``known`` (default: the built-in ones), or None."""
    known = METRIC_DEFINITIONS if known is None else known
    key = family(metric, known)
    return None if key is None else known[key]


def families(metrics: Iterable[str], known: Optional[Dict[str, str]] = None) -> List[Tuple[str, Optional[str]]]:
    """Distinct (name or family key, definition or None) for the metrics given, in the order of ``known`` (default:
    the built-in definitions; undefined ones last); a metric with no definition appears under its own name with
    None."""
    known = METRIC_DEFINITIONS if known is None else known
    out: Dict[str, Optional[str]] = {}
    for m in metrics:
        key = family(m, known)
        name = key if key is not None else m
        if name not in out:
            out[name] = known.get(name) if key is not None else None
    rank = {k: i for i, k in enumerate(known)}
    return sorted(out.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def described(metrics: Iterable[str], indent: str = "    ", known: Optional[Dict[str, str]] = None) -> str:
    """``metric — definition`` lines for a docstring (the definitions are not written twice), defined by ``known``
    (default: the built-in definitions; a study's task passes them updated by its own, ``settings.DEFINITIONS``)."""
    return "\n".join(f"{indent}{name} — {text}" for name, text in families(metrics, known))
