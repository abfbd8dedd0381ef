"""The straight-through family for factorial categorical latents: Gumbel-Rao, ZGR, GST, ReinMax
(estimators/gumbel_rao.py, zgr.py, gst.py, reinmax.py).

Function-level tests compute expectations exactly (a sum over the sampled category) or by Monte Carlo on one
small logit vector; model-level tests measure the φ-gradient's bias against the exact ELBO gradient by
enumeration (harness.exact) with n independent draws at one parameter point (harness.checks ``draws``: every
replicate built from seed 3, K = 2 particles).  Directions are asserted only where theory says so; the other
figures are measured and printed (run with -s), with the values seen when the test was written in its docstring.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from estibench import estimators
from estibench.estimators.base import Estimate, Estimator, batch_loss
from estibench.estimators.gst import gst_soft
from estibench.estimators.gumbel_rao import conditional_perturbed_logits, gumbel_rao_soft
from estibench.estimators.onehot import NEEDS, ONEHOT_LATENTS, log_probs, onehot_sample, straight_through_elbo
from estibench.estimators.reinmax import reinmax_soft
from estibench.estimators.zgr import zgr_soft
from estibench.harness.exact import exact_objective_gradient
from estibench.harness.gradients import gradient_draws
from estibench.harness.runner import build_model
from stats import bias_sq, gmm, gmm_data, unbiased_test

C = 5


def _logits(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(C, generator=gen, dtype=torch.float64)


def _onehot(D, n=C):
    return F.one_hot(torch.tensor(D), n).double()


def _st_gradient(theta, y, soft_fn, f):
    """∇_θ f(y_st) at one hard code y, y_st = y + soft − stopgrad(soft), soft = soft_fn(log_softmax θ, y)."""
    t = theta.clone().requires_grad_(True)
    ell = torch.log_softmax(t, -1)
    s = soft_fn(ell, y)
    return torch.autograd.grad(f(y + s - s.detach()), t)[0]


def _expected(theta, soft_fn, f):
    """E_{D ~ softmax θ} of the straight-through gradient, exactly (sum over D)."""
    p = torch.softmax(theta, -1)
    return sum(p[D] * _st_gradient(theta, _onehot(D), soft_fn, f) for D in range(C))


def _true(theta, f):
    t = theta.clone().requires_grad_(True)
    p = torch.softmax(t, -1)
    return torch.autograd.grad(sum(p[c] * f(_onehot(c)) for c in range(C)), t)[0]


# -- Gumbel-Rao: the paper's total derivative vs nshepperd's fixed-noise derivative ---------------------------
def test_gumbel_rao_variants_differ_exactly_in_the_noise_path(rng):
    """Same exponential noise (seed 0, M = 7, τ = 0.5): the paper's gradient = nshepperd's gradient (derivative at
    fixed G = X − θ) + the gradient that flows only through the conditional Gumbel sample's dependence on the
    logits (θ held fixed where it enters directly)."""
    theta, g, y = _logits(), torch.randn(C, dtype=torch.float64), _onehot(2)
    grads = []
    for mode in ("paper", "nshepperd", "noise_only"):
        torch.manual_seed(0)
        t = theta.clone().requires_grad_(True)
        ell = torch.log_softmax(t, -1)
        if mode == "noise_only":
            x = ell.detach() + (conditional_perturbed_logits(ell, y, 7) - ell)
            soft = torch.softmax(x / 0.5, -1).mean(0)
        else:
            soft = gumbel_rao_soft(ell, y, 7, 0.5, through_noise=mode == "paper")
        grads.append(torch.autograd.grad((g * soft).sum(), t)[0])
    paper, fixed, noise_only = grads
    assert torch.allclose(paper, fixed + noise_only, atol=1e-12)
    assert (paper - fixed).abs().max() > 1e-3  # the noise path carries a real part of the paper's gradient


def test_conditional_gumbels_put_the_sampled_category_on_top(rng):
    theta = _logits()
    x = conditional_perturbed_logits(torch.log_softmax(theta, -1), _onehot(3), 1000)
    assert (x.argmax(-1) == 3).all()


def test_only_the_fixed_noise_variant_is_the_conditional_expectation_of_st_gumbel_softmax(rng):
    """Rao-Blackwellisation keeps the mean: E[GR_nshepperd] = E[ST-GS] (ST-GS: θ + G unconditional, D = argmax);
    the paper's total derivative changes it.  Linear f(y) = a·y, τ = 0.5, seed 0; ST-GS from n = 200,000
    Gumbel draws, GR exactly over D with M = 20,000 conditional draws each; |difference| < 5 se per coordinate."""
    theta, a, tau = _logits(), torch.randn(C, dtype=torch.float64), 0.5
    n = 200_000
    z = torch.log_softmax(theta, -1) - torch.log(torch.empty(n, C, dtype=torch.float64).exponential_())
    s = torch.softmax(z / tau, -1).detach()
    # the ST-GS gradient per draw (closed form of its Jacobian-vector product), its mean and standard error
    sa = (s * a).sum(-1, keepdim=True)
    jv = s * (a - sa) / tau  # ∂(a·softmax(z/τ))/∂z per draw
    st = jv @ (torch.eye(C, dtype=torch.float64) - torch.softmax(theta, -1))  # ∂z/∂θ = ∂ℓ/∂θ = I − 1πᵀ
    st_mean, st_se = st.mean(0), st.std(0) / math.sqrt(n)
    gr = {v: _expected(theta, lambda e, yy, v=v: gumbel_rao_soft(e, yy, 20_000, tau, v == "paper"), lambda yy: a @ yy)
          for v in ("paper", "nshepperd")}
    assert ((gr["nshepperd"] - st_mean).abs() < 5 * st_se + 2e-3).all()
    assert ((gr["paper"] - st_mean).abs() > 10 * st_se).any()


def test_zgr_is_the_cold_limit_of_the_fixed_noise_gumbel_rao(rng):
    """ZGR (Shekhovtsov 2023) is GR's τ → 0 limit: for every sampled category D, nshepperd's GR gradient at
    τ = 0.02 (M = 100,000, seed 0) is within 5 % (sup norm, relative; 2.4 % seen) of ZGR's closed form, nearer
    than at τ = 0.2; the
    paper's total derivative instead vanishes as τ → 0 (sup norm < 0.02 at τ = 0.02)."""
    theta, g = _logits(), torch.randn(C, dtype=torch.float64)
    f = lambda yy: g @ yy  # noqa: E731
    for D in range(C):
        y = _onehot(D)
        zgr = _st_gradient(theta, y, zgr_soft, f)
        cold = _st_gradient(theta, y, lambda e, yy: gumbel_rao_soft(e, yy, 100_000, 0.02, False), f)
        warm = _st_gradient(theta, y, lambda e, yy: gumbel_rao_soft(e, yy, 100_000, 0.2, False), f)
        paper = _st_gradient(theta, y, lambda e, yy: gumbel_rao_soft(e, yy, 100_000, 0.02, True), f)
        assert (cold - zgr).abs().max() < 0.05 * zgr.abs().max()
        assert (cold - zgr).abs().max() < (warm - zgr).abs().max()
        assert paper.abs().max() < 0.02 < zgr.abs().max()


# -- ReinMax, ZGR: exact for quadratic f; ReinMax at τ = 1 is ZGR ---------------------------------------------
def test_reinmax_at_temperature_one_is_zgr_draw_by_draw():
    """2 J(π₁) − ½ J(π₀) with π₁ = (D + π₀)/2 reduces to ½ π_c (g_c − g_D) off D: ReinMax(τ = 1) and ZGR give the
    same gradient for every D and every upstream gradient g (exact; seeds 0–2)."""
    for seed in range(3):
        theta, g = _logits(seed), torch.randn(C, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        for D in range(C):
            args = (theta, _onehot(D))
            a = _st_gradient(*args, lambda e, y: reinmax_soft(e, y, 1.0), lambda y: g @ y)
            b = _st_gradient(*args, zgr_soft, lambda y: g @ y)
            assert torch.allclose(a, b, atol=1e-12)


def test_second_order_estimators_are_exact_for_quadratic_functions():
    """ReinMax's Heun (trapezoid) step is exact when f is quadratic in the code (Liu et al.): E[ReinMax(τ = 1)] =
    E[ZGR] = ∇ E f exactly for f = yᵀAy + b·y (A, b seed 0); ST (∂y := ∂π₀), ReinMax at τ = 2 and GST-1.0 are not
    (relative error > 5 %); for a cubic f ReinMax(1) is no longer exact but nearer than ST."""
    gen = torch.Generator().manual_seed(0)
    theta = _logits()
    A = torch.randn(C, C, dtype=torch.float64, generator=gen)
    A = A + A.T
    b, c = torch.randn(C, dtype=torch.float64, generator=gen), torch.randn(C, dtype=torch.float64, generator=gen)
    quadratic = lambda y: y @ A @ y + b @ y  # noqa: E731
    cubic = lambda y: quadratic(y) + (c @ y) ** 3  # noqa: E731
    st = lambda e, y: torch.softmax(e, -1)  # noqa: E731
    for f in (quadratic, cubic):
        truth = _true(theta, f)
        err = {name: float((_expected(theta, fn, f) - truth).norm() / truth.norm()) for name, fn in [
            ("st", st), ("reinmax1", lambda e, y: reinmax_soft(e, y, 1.0)), ("zgr", zgr_soft),
            ("reinmax2", lambda e, y: reinmax_soft(e, y, 2.0)), ("gst", lambda e, y: gst_soft(e, y, 1.0, 1.0))]}
        if f is quadratic:
            assert err["reinmax1"] < 1e-12 and err["zgr"] < 1e-12
            assert min(err["st"], err["reinmax2"], err["gst"]) > 0.05
        else:
            assert 1e-6 < err["reinmax1"] < err["st"]


# -- model-level bias against the exact ELBO gradient --------------------------------------------------------
class _StraightThrough(Estimator):
    """Plain categorical ST, the ReinMax paper's baseline: ∂y := ∂ softmax(ℓ/τ) (Bengio et al.; Eq none)."""
    latent_types, needs, guide_target, generative_target, unbiased = ONEHOT_LATENTS, NEEDS, "elbo", "elbo", False
    registry_name = "straight_through_categorical (tests only)"

    def __init__(self, temperature=1.0):
        super().__init__()
        self.temperature = temperature

    def surrogate(self, model, x, num_particles):
        ell = log_probs(model, x)
        y = onehot_sample(ell, num_particles)
        f = straight_through_elbo(model, x, ell, y, torch.softmax(ell / self.temperature, -1))
        return Estimate(batch_loss(f), f.detach().mean(-1))


def _sbn(seeds):
    return build_model("sbn_categorical_tiny", seeds=seeds)


def _sbn_data():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _sbn((3,)).sample(3)[1]


MODELS = {"gmm": (gmm, gmm_data), "sbn_categorical_tiny": (_sbn, _sbn_data)}
_CACHE = {}


def _draws(model_name, make_estimator, n=2000, K=2):
    """(draws [n, D], exact φ-gradient of the ELBO [D]) at seed 3's parameters; n replicated draws."""
    make, data = MODELS[model_name]
    x = data()
    if model_name not in _CACHE:
        _CACHE[model_name] = exact_objective_gradient(make((3,)), x, "elbo", K, "guide")
    many = make((3,) * n)
    est = make_estimator().bind(many)
    d = gradient_draws(many, est, x.expand(n, *x.shape[1:]).contiguous(), K, 1)[0]
    return d, _CACHE[model_name]


def _registered(name, **options):
    return lambda: estimators.get(name, **options)


SETTINGS = {  # two temperatures (GST: also its p gap) per estimator
    "gumbel_rao": [dict(temperature=1.0, samples=10), dict(temperature=0.5, samples=10),
                   dict(temperature=1.0, samples=10, variant="nshepperd"),
                   dict(temperature=0.5, samples=10, variant="nshepperd")],
    "zgr": [{}],
    "gst": [dict(temperature=1.0), dict(temperature=0.5), dict(variant="p")],
    "reinmax": [dict(temperature=1.0), dict(temperature=2.0)],
}


@pytest.mark.parametrize("model_name", list(MODELS))
def test_measured_bias_of_the_straight_through_family(model_name, rng):
    """‖E ĝ − g*‖² (unbiased estimate, harness.checks.bias_sq) for each estimator at two temperatures, n = 2000,
    K = 2, seed 0.  Seen when written (gmm ‖g*‖² ≈ 3408; sbn_categorical_tiny ≈ 0.785; noise of the estimate ≈ 10 on
    the GMM, ≈ 0.002 on the SBN):
      gmm: gumbel_rao (paper, M = 10) τ=1 2194, τ=0.5 2400; nshepperd τ=1 643, τ=0.5 139; zgr −5 (≈ 0); gst τ=1 930,
           τ=0.5 1292, p 910; reinmax τ=1 7.7 (≈ 0), τ=2 75; plain ST τ=1 1223.
      sbn: gumbel_rao 0.47, 0.50; nshepperd 0.075, 0.012; zgr ≈ 0; gst 0.015, 0.016, p 0.032; reinmax 0.0006,
           0.006; plain ST ≈ 0.
    Asserted (theory): on the GMM, whose ELBO integrand is quadratic in the one-hot code, ZGR and ReinMax(τ = 1)
    pass the exact-gradient test (trapezoid rule exact) while ST does not, and ReinMax's bias grows away from τ = 1;
    the paper's Gumbel-Rao gradient is smaller than nshepperd's (the total derivative through the conditional
    noise cancels part of the Jacobian) and more biased."""
    out = {}
    for name, settings in SETTINGS.items():
        for options in settings:
            d, exact = _draws(model_name, _registered(name, **options))
            out[(name, tuple(sorted(options.items())))] = (d, exact, bias_sq(d, exact))
    d_st, exact = _draws(model_name, lambda: _StraightThrough(1.0))
    print(f"\n{model_name}: ‖g*‖² = {float(exact.norm() ** 2):.4g}; st(τ=1) bias² {bias_sq(d_st, exact):.4g}")
    for key, (_, _, b) in out.items():
        print(f"  {key}: bias² {b:.4g}")
    b = {k: v[2] for k, v in out.items()}
    rm1, rm2 = b[("reinmax", (("temperature", 1.0),))], b[("reinmax", (("temperature", 2.0),))]
    paper1 = b[("gumbel_rao", (("samples", 10), ("temperature", 1.0)))]
    fixed1 = b[("gumbel_rao", (("samples", 10), ("temperature", 1.0), ("variant", "nshepperd")))]
    assert paper1 > fixed1
    if model_name == "gmm":
        for key in [("zgr", ()), ("reinmax", (("temperature", 1.0),))]:
            ok, zmax, threshold = unbiased_test(*out[key][:2])
            assert ok, f"{key}: max |z| = {zmax:.2f} ≥ {threshold:.2f}"
        assert not unbiased_test(d_st, exact)[0]
        assert rm2 > rm1 + 10.0


@pytest.mark.parametrize("variant", ["paper", "nshepperd"])
def test_gumbel_rao_variance_falls_with_more_conditional_samples(variant, rng):
    """For a fixed sampled D the estimator averages M conditionally independent terms, so its total variance
    (trace) falls with M (law of total variance): M = 1, 10, 100 on the GMM at τ = 0.5, n = 1000, K = 2, seed 0."""
    v = [float(_draws("gmm", _registered("gumbel_rao", samples=M, temperature=0.5, variant=variant), n=1000)[0]
               .var(0).sum()) for M in (1, 10, 100)]
    assert v[0] > v[1] > v[2]


def test_binary_zgr_is_categorical_zgr_on_two_categories(monkeypatch):
    """ZGR for a Bernoulli z (DARN(½), ∂z/∂a := ½ (z (1 − σ) + (1 − z) σ)) is the categorical ZGR on logits (0, a) with
    y = (1 − z, z): the same ∂f/∂a for both values of z and an upstream gradient g (seed 0, exact; the uniform
    behind z is set so that z takes each value)."""
    from estibench.estimators import zgr as zgr_module
    a0 = torch.tensor([0.7], dtype=torch.float64)
    g = torch.randn(2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for z in (0.0, 1.0):
        u = torch.sigmoid(a0) * (0.5 if z == 1.0 else 1.5)  # z = 1[logit u < a] = 1[u < σ(a)]
        u = u.clamp(max=0.999)
        monkeypatch.setattr(zgr_module, "uniform_like", lambda t, u=u: u.to(t.dtype).expand_as(t))
        a = a0.clone().requires_grad_(True)
        zb = zgr_module.zgr_binary_sample(0, a)
        assert float(zb.detach()) == z
        (binary,) = torch.autograd.grad((g[1] - g[0]) * zb.sum(), a)
        theta = torch.cat([torch.zeros(1, dtype=torch.float64), a0])
        categorical = _st_gradient(theta, _onehot(int(z), 2), zgr_soft, lambda y: g @ y)
        assert torch.allclose(binary, categorical[1:], atol=1e-12)
