"""Tests of the smoothing transformations in estimators/smoothing.py (docs/conventions.md).

Statistical tests use fixed seeds (stated per test), so their outcomes are deterministic; each
test function has a family false-alarm rate of ALPHA = 1e-3 (the rate at which a correct
implementation would fail under a fresh seed), split by Bonferroni over every p-value it
computes (grid cells × sub-tests).  Everything else is deterministic numerics.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from estibench.estimators.smoothing import SMOOTHINGS, BinaryConcrete, Smoothing, get

ALPHA = 1e-3
QS = [0.01, 0.3, 0.5, 0.9, 0.999]
BETAS = [1.0, 5.0, 12.0, 40.0]
NAMES = list(SMOOTHINGS)


def logit(q):
    return math.log(q) - math.log1p(-q)


def grid_params(dtype):
    """logits ``[5, 1]`` over QS and β ``[1, 4]`` over BETAS (β as a broadcast tensor)."""
    logits = torch.tensor([logit(q) for q in QS], dtype=dtype).reshape(5, 1)
    return logits, torch.tensor(BETAS, dtype=dtype).reshape(1, 4)


def uniforms(shape, dtype, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def as_np_cdf(fn):
    """Wrap a torch float64 CDF for scipy.stats.kstest."""
    return lambda x: fn(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def ks_p(sample, fn):
    return stats.kstest(sample.detach().double().numpy(), as_np_cdf(fn)).pvalue


def bisect(f, target, lo, hi, iterations=220):
    """Smallest x with f(x) ≥ target to working precision (test-local, independent of the module)."""
    lo, hi = lo + torch.zeros_like(target), hi + torch.zeros_like(target)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = f(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def logit_pair(t):
    """(log ζ, log(1−ζ)) for ζ = σ(t)."""
    return F.logsigmoid(t), F.logsigmoid(-t)


# ----------------------------------------------------------------------------- interface

def test_registry_and_interface():
    assert NAMES == ["spike_exp", "overlap_exp", "overlap_logistic", "overlap_power"]
    for name, sm in SMOOTHINGS.items():
        assert sm.name == name and get(name) is sm and isinstance(sm, Smoothing)
        for method in ("sample", "sample_joint", "log_r", "cdf_r", "log_q_zeta", "cdf", "posterior_logits",
                       "dzeta_dlogits", "inverse_cdf"):
            assert callable(getattr(sm, method))
    assert {n: s.reparameterisation for n, s in SMOOTHINGS.items()} == {
        "spike_exp": "inverse_cdf", "overlap_exp": "inverse_cdf",
        "overlap_logistic": "implicit", "overlap_power": "implicit"}
    with pytest.raises(ValueError):
        get("gumbel")


@pytest.mark.parametrize("name", NAMES)
def test_dtype_broadcast_and_meta_device(name):
    """float32 in → float32 out; β tensor ≡ python float; everything runs on the meta device
    (so no .item()/.cpu()/host synchronisation hides in the functions)."""
    sm = SMOOTHINGS[name]
    l = torch.tensor([-1.0, 0.5, 2.0])
    rho = uniforms((4, 3), torch.float32, seed=1)
    z, zeta = sm.sample_joint(l, rho, 5.0)
    assert zeta.dtype == z.dtype == torch.float32 and zeta.shape == (4, 3)
    assert torch.equal(sm.sample(l, rho, 5.0), sm.sample(l, rho, torch.tensor(5.0)))
    assert torch.equal(sm.sample(l, rho, torch.tensor([5.0, 5.0, 5.0])), sm.sample(l, rho, 5.0))
    for f in (sm.log_q_zeta, sm.cdf, sm.posterior_logits, sm.dzeta_dlogits):
        assert f(l, zeta, 5.0).dtype == torch.float32
    lm = torch.zeros(3, device="meta", requires_grad=True)
    rm = torch.empty(2, 3, device="meta")
    y = sm.sample(lm, rm, 12.0)
    y.sum().backward()
    zm, ym = sm.sample_joint(lm, rm, torch.tensor(12.0, device="meta"))
    outs = [y, lm.grad, zm, ym, sm.log_r(y, zm, 12.0), sm.cdf_r(y, 1, 12.0), sm.log_q_zeta(lm, y, 12.0),
            sm.cdf(lm, y, 12.0), sm.posterior_logits(lm, y, 12.0), sm.dzeta_dlogits(lm, y, 12.0),
            sm.inverse_cdf(lm, rm, 12.0, iterations=2)]
    assert all(o.device.type == "meta" for o in outs)


@pytest.mark.parametrize("name", ["overlap_logistic", "overlap_power"])
def test_implicit_refuses_beta_gradient(name):
    beta = torch.tensor(5.0, requires_grad=True)
    with pytest.raises(ValueError):
        SMOOTHINGS[name].sample(torch.zeros(3), torch.rand(3), beta)


# ----------------------------------------------------------------------------- distributions

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", NAMES)
def test_sample_ks_against_cdf(name, dtype):
    """KS test of ``sample`` against the analytic mixture CDF ``cdf`` on the grid
    q ∈ {0.01, 0.3, 0.5, 0.9, 0.999} × β ∈ {1, 5, 12, 40}; n = 4000 per cell, seed 11.
    spike_exp: the atom at 0 is tested with a binomial test (mass 1−q) and the slab ζ > 0 with
    a KS test against R(·|1).  overlap_power: the KS test runs on logit ζ = log ζ − log(1−ζ)
    from the exact log pair (ζ itself rounds to 1 for many samples at large β, even in float64).
    Family false-alarm rate 1e-3, Bonferroni over 20 cells × (1 or 2) tests."""
    sm = SMOOTHINGS[name]
    n = 4000
    logits, betas = grid_params(dtype)
    rho = uniforms((n, 5, 4), dtype, seed=11)
    tests = 2 if name == "spike_exp" else 1
    alpha = ALPHA / (20 * tests)
    l64, b64 = logits.double(), betas.double()
    if name == "overlap_power":
        log_zeta, log_1mzeta = sm.sample_log(logits, rho, betas)
        samples = (log_zeta - log_1mzeta).double()
    else:
        samples = sm.sample(logits, rho, betas).double()
    assert torch.isfinite(samples).all()
    failures = []
    for i in range(5):
        for j in range(4):
            s, l, b = samples[:, i, j], l64[i, 0], b64[0, j]
            if name == "overlap_power":
                p = ks_p(s, lambda t: sm.cdf_log(l, *logit_pair(t), b))
            elif name == "spike_exp":
                atom = int((s == 0).sum())
                p_atom = stats.binomtest(atom, n, 1 - QS[i]).pvalue
                if p_atom < alpha:
                    failures.append((QS[i], BETAS[j], "atom", p_atom))
                slab = s[s > 0]
                p = ks_p(slab, lambda t: sm.cdf_r(t, 1, b)) if slab.numel() else 1.0
            else:
                p = ks_p(s, lambda t: sm.cdf(l, t, b))
            if p < alpha:
                failures.append((QS[i], BETAS[j], p))
    assert not failures, failures


@pytest.mark.parametrize("name", NAMES)
def test_sample_joint_bernoulli_and_conditionals(name):
    """sample_joint: z has P(z=1) = q (binomial test) and ζ|z follows r(·|z) (KS test against
    cdf_r for each z with at least 20 draws; logit scale for overlap_power; for spike_exp ζ|z=0
    must be exactly 0).  Grid QS × BETAS, n = 4000 per cell, seed 12, float64.  Family
    false-alarm rate 1e-3, Bonferroni over 20 cells × 3 tests."""
    sm = SMOOTHINGS[name]
    n = 4000
    logits, betas = grid_params(torch.float64)
    rho = uniforms((n, 5, 4), torch.float64, seed=12)
    if name == "overlap_power":
        z, log_zeta, log_1mzeta = sm.sample_joint_log(logits, rho, betas)
        zeta = log_zeta - log_1mzeta
        z2, zeta2 = sm.sample_joint(logits, rho, betas)
        assert torch.equal(z, z2) and torch.allclose(zeta2, sm.zeta_from_log(log_zeta, log_1mzeta))
    else:
        z, zeta = sm.sample_joint(logits, rho, betas)
    assert set(z.unique().tolist()) <= {0.0, 1.0} and not z.requires_grad
    if sm.reparameterisation == "implicit":  # sample is the ζ of sample_joint
        assert torch.equal(sm.sample(logits, rho, betas), sm.sample_joint(logits, rho, betas)[1])
    alpha = ALPHA / (20 * 3)
    failures = []
    for i in range(5):
        for j in range(4):
            zz, s, b = z[:, i, j], zeta[:, i, j], betas[0, j]
            p = stats.binomtest(int(zz.sum()), n, QS[i]).pvalue
            if p < alpha:
                failures.append((QS[i], BETAS[j], "z", p))
            for value in (0, 1):
                part = s[zz == value]
                if part.numel() < 20:
                    continue
                if name == "spike_exp" and value == 0:
                    assert (part == 0).all()
                    continue
                if name == "overlap_power":
                    p = ks_p(part, lambda t: sm.cdf_r_log(*logit_pair(t), value, b))
                else:
                    p = ks_p(part, lambda t: sm.cdf_r(t, value, b))
                if p < alpha:
                    failures.append((QS[i], BETAS[j], f"zeta|z={value}", p))
    assert not failures, failures


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", NAMES)
def test_sample_joint_conditional_round_trip(name, dtype):
    """R(ζ|z) equals the conditional uniform u that sample_joint used (z = 1[ρ > 1−q],
    u = ρ/(1−q) or (ρ−(1−q))/q), i.e. ζ = R⁻¹(u|z).  Deterministic, seed 13."""
    sm = SMOOTHINGS[name]
    logits, betas = grid_params(dtype)
    rho = uniforms((500, 5, 4), dtype, seed=13)
    z, zeta = sm.sample_joint(logits, rho, betas)
    q, r = torch.sigmoid(logits.double()), rho.double()
    u = torch.where(z > 0, (r - (1 - q)) / q, r / (1 - q))
    if name == "overlap_power":
        pair = sm.sample_log(logits, rho, betas)
        back = sm.cdf_r_log(pair[0].double(), pair[1].double(), z, betas.double())
    else:
        back = sm.cdf_r(zeta.double(), z, betas.double())
    if name == "spike_exp":  # ζ|z=0 is the atom: R(0|0) = 1, nothing to invert
        back, u = back[z > 0], u[z > 0]
    # float32: u itself is only known to ~eps/min(q, 1−q) (ρ has spacing 6e-8 near 1)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    assert torch.allclose(back, u, atol=tol, rtol=0), (back - u).abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_inverse_cdf_round_trip(name):
    """F(F⁻¹(ρ)) = ρ (float64) for ρ ∈ [1e-7, 1−1e-7], q ∈ {1e-6, 0.01, 0.5, 0.99, 1−1e-6},
    β ∈ {0.5, 1, 12, 40, 100}; closed forms (spike, overlap_exp) or bisection (the others).
    For spike_exp, ρ ≤ 1−q maps to the atom ζ = 0 (F(0) = 1−q ≥ ρ)."""
    sm = SMOOTHINGS[name]
    qs = torch.tensor([1e-6, 0.01, 0.5, 0.99, 1 - 1e-6], dtype=torch.float64)
    logits = (torch.log(qs) - torch.log1p(-qs)).reshape(5, 1, 1)
    betas = torch.tensor([0.5, 1.0, 12.0, 40.0, 100.0], dtype=torch.float64).reshape(1, 5, 1)
    rho = torch.cat([torch.tensor([1e-7, 1e-3, 0.5, 1 - 1e-3, 1 - 1e-7], dtype=torch.float64),
                     uniforms(40, torch.float64, seed=14)]).reshape(1, 1, -1)
    if name == "overlap_power":
        pair = sm.inverse_cdf_log(logits, rho, betas)
        back = sm.cdf_log(logits, *pair, betas)
    else:
        zeta = sm.inverse_cdf(logits, rho, betas)
        back = sm.cdf(logits, zeta, betas)
    target = rho.expand_as(back)
    if name == "spike_exp":
        atom = rho <= torch.sigmoid(-logits)
        assert (zeta[atom.expand_as(zeta)] == 0).all()
        target = torch.where(atom, torch.sigmoid(-logits), rho).expand_as(back)
    assert torch.allclose(back, target, atol=1e-10, rtol=0), (back - target).abs().max()


@pytest.mark.parametrize("name", ["spike_exp", "overlap_exp"])
def test_closed_form_inverse_matches_bisection(name):
    """The stable closed-form inverse CDF equals the generic bisection on ``cdf`` (float64)."""
    sm = SMOOTHINGS[name]
    logits = torch.tensor([-12.0, -3.0, 0.0, 0.7, 4.0, 12.0], dtype=torch.float64).reshape(6, 1, 1)
    betas = torch.tensor([1.0, 5.0, 12.0, 40.0], dtype=torch.float64).reshape(1, 4, 1)
    rho = uniforms(50, torch.float64, seed=15).reshape(1, 1, -1)
    closed = sm.inverse_cdf(logits, rho, betas)
    generic = Smoothing.inverse_cdf(sm, logits, rho, betas)
    assert torch.allclose(closed, generic, atol=1e-9, rtol=0), (closed - generic).abs().max()


def test_overlap_exp_paper_closed_form():
    """DVAE++ Eq. 3 agrees with the stable form at small β, and overflows at β = 40 where the
    stable form stays finite (docs/conventions.md)."""
    def paper(q, rho, beta):
        e = math.exp(-beta)
        b = (rho + e * (q - rho)) / (1 - q) - 1
        c = -q * e / (1 - q)
        return -torch.log((-b + torch.sqrt(b * b - 4 * c)) / 2) / beta

    sm = SMOOTHINGS["overlap_exp"]
    q = torch.tensor([0.1, 0.3, 0.5, 0.8], dtype=torch.float64).reshape(4, 1)
    rho = uniforms(30, torch.float64, seed=16).reshape(1, -1)
    l = torch.log(q) - torch.log1p(-q)
    for beta in (1.0, 5.0):
        assert torch.allclose(paper(q, rho, beta), sm.sample(l, rho, beta), atol=1e-9)
    with np.errstate(all="ignore"):
        assert not torch.isfinite(paper(q, rho, 40.0)).all()
    assert torch.isfinite(sm.sample(l, rho, 40.0)).all()


# ----------------------------------------------------------------------------- limits

@pytest.mark.parametrize("name", NAMES)
def test_limits(name):
    """q → 0 / 1 (l = ∓30, float64): the sample is R⁻¹(ρ|0) / R⁻¹(ρ|1) (spike: ζ = 0 / slab);
    β → ∞ (β = 1e4): ζ → z = 1[ρ > 1−q] for ρ at least 0.05 away from 1−q."""
    sm = SMOOTHINGS[name]
    rho = torch.linspace(0.01, 0.99, 41, dtype=torch.float64)
    for l, z in ((-30.0, 0), (30.0, 1)):
        lt = torch.full_like(rho, l)
        for beta in (1.0, 12.0, 40.0):
            if name == "overlap_power":
                back = sm.cdf_r_log(*sm.sample_log(lt, rho, beta), z, beta)
            else:
                zeta = sm.sample(lt, rho, beta)
                if name == "spike_exp" and z == 0:
                    assert (zeta == 0).all()
                    continue
                back = sm.cdf_r(zeta, z, beta)
                assert torch.allclose(sm.cdf(lt, zeta, beta), back, atol=1e-10)
            assert torch.allclose(back, rho, atol=1e-10), (l, beta, (back - rho).abs().max())
    for q in (0.1, 0.5, 0.9):
        rho = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
        rho = rho[(rho - (1 - q)).abs() > 0.05]
        l = torch.full_like(rho, logit(q))
        for dtype in (torch.float64, torch.float32):
            zeta = sm.sample(l.to(dtype), rho.to(dtype), 1e4)
            z = (rho > 1 - q).to(dtype)
            assert torch.isfinite(zeta).all() and (zeta - z).abs().max() < 2e-3, (q, dtype)


# ----------------------------------------------------------------------------- densities

def interior(name):
    if name == "overlap_logistic":
        return torch.linspace(-1.5, 2.5, 81, dtype=torch.float64)
    return torch.linspace(0.01, 0.99, 81, dtype=torch.float64)


@pytest.mark.parametrize("name", NAMES)
def test_density_is_derivative_of_cdf(name):
    """d cdf_r/dζ = exp(log_r) and d cdf/dζ = exp(log_q_zeta) (autograd, float64) on an interior
    grid; the CDFs are 0 and 1 at the ends of the support (spike: F(0) = 1−q)."""
    sm = SMOOTHINGS[name]
    for beta in (1.0, 5.0, 12.0, 40.0):
        for q in (0.01, 0.3, 0.9):
            l = torch.tensor(logit(q), dtype=torch.float64)
            zeta = interior(name).requires_grad_(True)
            (d_cdf,) = torch.autograd.grad(sm.cdf(l, zeta, beta).sum(), zeta)
            dens = sm.log_q_zeta(l, zeta, beta).exp()
            assert torch.allclose(d_cdf, dens, rtol=1e-8, atol=1e-12), (beta, q)
            for z in ((1,) if name == "spike_exp" else (0, 1)):
                (d_r,) = torch.autograd.grad(sm.cdf_r(zeta, z, beta).sum(), zeta)
                assert torch.allclose(d_r, sm.log_r(zeta, z, beta).exp(), rtol=1e-8, atol=1e-12)
            lo, hi = ((torch.tensor(-60.0), torch.tensor(61.0)) if name == "overlap_logistic"
                      else (torch.tensor(0.0), torch.tensor(1.0)))
            lo, hi = lo.double(), hi.double()
            f_lo = sm.cdf(l, lo, beta)
            assert torch.allclose(f_lo, torch.sigmoid(-l) if name == "spike_exp" else torch.zeros(()).double(),
                                  atol=1e-14)
            assert torch.allclose(sm.cdf(l, hi, beta), torch.ones(()).double(), atol=1e-14)
            if name != "overlap_logistic":
                outside = torch.tensor([-0.1, 1.1], dtype=torch.float64)
                assert (sm.log_q_zeta(l, outside, beta) == -math.inf).all()
                assert torch.allclose(sm.cdf(l, outside, beta), torch.tensor([0.0, 1.0], dtype=torch.float64),
                                      atol=1e-15, rtol=0)


def test_spike_conventions():
    """Spike densities are w.r.t. δ₀ + Lebesgue: log q(0|x) = log(1−q), log q(ζ>0|x) = log q +
    log r(ζ|1); the posterior is certain (logits −∞ at the atom, +∞ on the slab)."""
    sm = SMOOTHINGS["spike_exp"]
    l = torch.tensor(0.4, dtype=torch.float64)
    zeta = torch.tensor([0.0, 0.2, 1.0], dtype=torch.float64)
    lq = sm.log_q_zeta(l, zeta, 5.0)
    assert torch.allclose(lq[0], F.logsigmoid(-l))
    assert torch.allclose(lq[1:], F.logsigmoid(l) + math.log(5.0) + 5.0 * zeta[1:] - math.log(math.expm1(5.0)))
    assert torch.equal(sm.posterior_logits(l, zeta, 5.0), torch.tensor([-math.inf, math.inf, math.inf],
                                                                      dtype=torch.float64))
    assert sm.dzeta_dlogits(l, zeta[:1], 5.0).item() == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_posterior_logits_bayes(name):
    """posterior_logits = l + log r(ζ|1) − log r(ζ|0) and σ(posterior) = q r(ζ|1) / q(ζ|x)
    (Bayes' rule from log_r, logits and log_q_zeta), float64, on samples of q(ζ|x)."""
    sm = SMOOTHINGS[name]
    logits, betas = grid_params(torch.float64)
    zeta = sm.sample(logits, uniforms((200, 5, 4), torch.float64, seed=17), betas)
    post = sm.posterior_logits(logits, zeta, betas)
    if name == "spike_exp":
        assert torch.equal(post, torch.where(zeta > 0, math.inf, -math.inf))
        return
    if name == "overlap_power":  # keep ζ where both ζ and 1−ζ are representable
        zeta = zeta.clamp(1e-12, 1 - 1e-12)
        post = sm.posterior_logits(logits, zeta, betas)
    bayes = logits + sm.log_r(zeta, 1, betas) - sm.log_r(zeta, 0, betas)
    assert torch.allclose(post, bayes, rtol=1e-10, atol=1e-8)
    nu = torch.exp(F.logsigmoid(logits) + sm.log_r(zeta, 1, betas) - sm.log_q_zeta(logits, zeta, betas))
    assert torch.allclose(torch.sigmoid(post), nu, rtol=1e-8, atol=1e-12)
    if name == "overlap_exp":
        assert torch.allclose(post, logits + betas * (2 * zeta - 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_posterior_calibrated(name):
    """E[z − ν(ζ)] = 0 and E[(z − ν(ζ)) ζ̃] = 0 for ν = σ(posterior_logits) under sample_joint
    (ζ̃ = ζ, or logit ζ for overlap_power): z-tests with n = 20000 per cell, q ∈ {0.1, 0.5, 0.9} ×
    BETAS, seed 18; family false-alarm rate 1e-3, Bonferroni over 12 cells × 2 statistics."""
    sm = SMOOTHINGS[name]
    qs = [0.1, 0.5, 0.9]
    logits = torch.tensor([logit(q) for q in qs], dtype=torch.float64).reshape(3, 1)
    betas = torch.tensor(BETAS, dtype=torch.float64).reshape(1, 4)
    rho = uniforms((20000, 3, 4), torch.float64, seed=18)
    if name == "overlap_power":
        z, a, b = sm.sample_joint_log(logits, rho, betas)
        nu, feat = torch.sigmoid(sm.posterior_logits_log(logits, a, b, betas)), (a - b).tanh()
    else:
        z, zeta = sm.sample_joint(logits, rho, betas)
        nu, feat = torch.sigmoid(sm.posterior_logits(logits, zeta, betas)), zeta.tanh()
    threshold = stats.norm.ppf(1 - ALPHA / (2 * 24))
    for stat in (z - nu, (z - nu) * feat):
        mean, se = stat.mean(0), stat.std(0) / math.sqrt(stat.shape[0])
        live = se > 1e-12
        assert (mean[~live].abs() < 1e-12).all()
        assert ((mean[live] / se[live]).abs() < threshold).all(), (mean / se)


# ----------------------------------------------------------------------------- gradients

def _gradcheck_points():
    """Logits and uniforms (float64) with ρ at least 0.03 from 1 − q (the spike's kink)."""
    l = torch.tensor([-2.0, 0.3, 2.5], dtype=torch.float64)
    rho = torch.tensor([0.1, 0.35, 0.62, 0.85, 0.97], dtype=torch.float64)
    l, rho = torch.meshgrid(l, rho, indexing="ij")
    keep = (rho - torch.sigmoid(-l)).abs() > 0.03
    return l[keep].contiguous(), rho[keep].contiguous()


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_inverse_cdf(name, beta):
    """float64 torch.autograd.gradcheck of l ↦ F⁻¹(ρ; l) at fixed ρ: the closed-form inverse
    (spike_exp, overlap_exp; also w.r.t. β) or bisection with the implicit gradient attached
    (overlap_logistic; overlap_power on its exact (log ζ, log(1−ζ)) pair), so the implicit
    gradient is checked against finite differences of the bisection inverse."""
    sm = SMOOTHINGS[name]
    l, rho = _gradcheck_points()
    l = l.requires_grad_(True)
    if name == "overlap_power":
        assert torch.autograd.gradcheck(lambda x: sm.inverse_cdf_log(x, rho, beta), (l,))
    else:
        assert torch.autograd.gradcheck(lambda x: sm.inverse_cdf(x, rho, beta), (l,))
    if sm.reparameterisation == "inverse_cdf":
        b = torch.full_like(rho, beta, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, y: sm.sample(x, rho, y), (l, b))


@pytest.mark.parametrize("name", ["spike_exp", "overlap_exp"])
def test_inverse_cdf_gradient_equals_implicit_formula(name):
    """For the closed-form inverses, autograd's dζ/dl equals dzeta_dlogits(l, ζ) =
    q(1−q)[R(ζ|0) − R(ζ|1)]/q(ζ|x) (float64, including β = 40 and q near 0 and 1)."""
    sm = SMOOTHINGS[name]
    l = torch.tensor([-8.0, -2.0, 0.0, 1.0, 9.0], dtype=torch.float64).reshape(5, 1, 1)
    betas = torch.tensor(BETAS, dtype=torch.float64).reshape(1, 4, 1)
    rho = uniforms(64, torch.float64, seed=19).reshape(1, 1, -1)
    le = l.expand(5, 4, 64).clone().requires_grad_(True)      # one logit per element
    zeta = sm.sample(le, rho, betas)
    (grad,) = torch.autograd.grad(zeta.sum(), le)
    implicit = sm.dzeta_dlogits(l, zeta.detach(), betas)
    assert torch.allclose(grad, implicit, rtol=1e-7, atol=1e-12), (grad - implicit).abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_sample_joint_gradient_matches_bisection(name):
    """The gradient that ``sample_joint`` attaches to ζ (implicit for overlap_exp, logistic and
    power; inverse-CDF for spike) equals the finite difference (h = 1e-5, central) of the inverse
    CDF at ρ' = F(ζ), computed by a test-local bisection on ``cdf`` (on logit ζ via ``cdf_log``
    for overlap_power, comparing d logit ζ / dl).  float64, 48 random (l, ρ) per β, seed 20."""
    sm = SMOOTHINGS[name]
    g = torch.Generator().manual_seed(20)
    h = 1e-5
    for beta in BETAS:
        l0 = 2 * torch.randn(48, generator=g, dtype=torch.float64)
        rho = torch.rand(48, generator=g, dtype=torch.float64).clamp(0.01, 0.99)
        l = l0.clone().requires_grad_(True)
        if name == "overlap_power":
            _, a, b = sm.sample_joint_log(l, rho, beta)
            t = a - b
            (grad,) = torch.autograd.grad(t.sum(), l)
            target = sm.cdf_log(l0, a.detach(), b.detach(), beta)
            span = 40.0 * beta
            inv = lambda lx: bisect(lambda x: sm.cdf_log(lx, *logit_pair(x), beta), target, -span, span)
        else:
            _, zeta = sm.sample_joint(l, rho, beta)
            (grad,) = torch.autograd.grad(zeta.sum(), l)
            target = sm.cdf(l0, zeta.detach(), beta)
            lo, hi = (-1000.0, 1001.0) if name == "overlap_logistic" else (0.0, 1.0)
            inv = lambda lx: bisect(lambda x: sm.cdf(lx, x, beta), target, lo, hi)
            if name == "spike_exp":  # the atom has zero gradient; bisection would find the kink
                slab = zeta.detach() > 0
                grad, l0, target, rho = grad[slab], l0[slab], target[slab], rho[slab]
                inv = lambda lx: bisect(lambda x: sm.cdf(lx, x, beta), target, lo, hi)
        fd = (inv(l0 + h) - inv(l0 - h)) / (2 * h)
        assert torch.allclose(grad, fd, rtol=1e-4, atol=1e-6), (beta, (grad - fd).abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_float32_extremes_finite(name):
    """float32 at β ∈ {40, 100}, q ∈ {1e-6, 0.5, 1−1e-6}, ρ ∈ {0, 1e-7, 0.5, 1−1e-7, 1} and random
    ρ: samples, their gradients, dzeta_dlogits, densities and posterior logits are finite (spike
    posteriors are ±∞ by design; overlap_power densities via the log pair)."""
    sm = SMOOTHINGS[name]
    qs = torch.tensor([1e-6, 0.5, 1 - 1e-6], dtype=torch.float64)
    logits = (torch.log(qs) - torch.log1p(-qs)).float().reshape(3, 1)
    rho = torch.cat([torch.tensor([0.0, 1e-7, 0.5, 1 - 1e-7, 1.0]), uniforms(200, torch.float32, seed=21)])
    for beta in (40.0, 100.0):
        l = logits.clone().requires_grad_(True)
        z, zeta = sm.sample_joint(l, rho, beta)
        zeta.sum().backward()
        assert torch.isfinite(zeta).all() and torch.isfinite(l.grad).all()
        y = sm.sample(l, rho, beta)
        (gy,) = torch.autograd.grad(y.sum(), l)
        assert torch.isfinite(y).all() and torch.isfinite(gy).all()
        assert torch.isfinite(sm.dzeta_dlogits(l.detach(), zeta.detach(), beta)).all()
        if name == "overlap_power":
            _, a, b = sm.sample_joint_log(l, rho, beta)
            (ga,) = torch.autograd.grad((a + b).sum(), l)
            assert torch.isfinite(ga).all()
            assert torch.isfinite(sm.log_q_zeta_log(l, a, b, beta)).all()
            assert torch.isfinite(sm.posterior_logits_log(l, a, b, beta)).all()
            assert torch.isfinite(sm.dzeta_dlogits_log(l.detach(), a.detach(), b.detach(), beta)).all()
        else:
            assert torch.isfinite(sm.log_q_zeta(l, zeta, beta)).all()
            post = sm.posterior_logits(l, zeta, beta)
            assert not torch.isnan(post).any()
            if name != "spike_exp":
                assert torch.isfinite(post).all()


def test_float32_matches_float64():
    """The float32 samples agree with float64 ones in distribution space at β = 12: the float64
    mixture CDF of the float32 inverse-CDF sample is within 1e-5 of ρ (overlap_exp, spike slab)."""
    for name in ("overlap_exp", "spike_exp"):
        sm = SMOOTHINGS[name]
        logits, _ = grid_params(torch.float64)
        rho = uniforms((300, 5, 1), torch.float64, seed=22)
        zeta32 = sm.sample(logits.float(), rho.float(), 12.0).double()
        back = sm.cdf(logits, zeta32, 12.0)
        target = torch.maximum(rho.float().double(), torch.sigmoid(-logits)) if name == "spike_exp" else \
            rho.float().double()
        assert torch.allclose(back, target, atol=1e-5, rtol=0), (name, (back - target).abs().max())


# ----------------------------------------------------------------------------- binary Concrete

def test_binary_concrete():
    """ζ = σ(β(l + logit ρ)): P(ζ > ½) = q (binomial test) and KS of logit ζ against the CDF
    σ(logit t/β − l), n = 4000 per cell on QS × BETAS, seed 23, family false-alarm rate 1e-3
    (Bonferroni over 20 cells × 2 tests); log_prob equals Maddison et al.'s closed form and is
    the derivative of cdf; the sample is differentiable."""
    bc = BinaryConcrete()
    logits, betas = grid_params(torch.float64)
    rho = uniforms((4000, 5, 4), torch.float64, seed=23)
    x = bc.sample_logit(logits, rho, betas)
    assert torch.allclose(torch.sigmoid(x), bc.sample(logits, rho, betas))
    alpha = ALPHA / 40
    for i in range(5):
        for j in range(4):
            s = x[:, i, j]
            assert stats.binomtest(int((s > 0).sum()), 4000, QS[i]).pvalue > alpha
            l, b = logits[i, 0], betas[0, j]
            assert ks_p(s, lambda t: bc.cdf_logit(l, t, b)) > alpha
    # density: Maddison et al. (2017), p(y) = τ α y^{−τ−1}(1−y)^{−τ−1} / (α y^{−τ} + (1−y)^{−τ})²
    y = torch.linspace(0.02, 0.98, 49, dtype=torch.float64).requires_grad_(True)
    for l in (-2.0, 0.0, 1.3):
        for beta in (0.5, 1.0, 3.0):
            tau, alpha_ = 1 / beta, math.exp(l)
            direct = (math.log(tau) + l - (tau + 1) * (torch.log(y) + torch.log1p(-y))
                      - 2 * torch.log(alpha_ * y ** -tau + (1 - y) ** -tau))
            lt = torch.tensor(l, dtype=torch.float64)
            assert torch.allclose(bc.log_prob(lt, y, beta), direct, rtol=1e-10, atol=1e-10)
            (d,) = torch.autograd.grad(bc.cdf(lt, y, beta).sum(), y)
            assert torch.allclose(d, direct.exp(), rtol=1e-8)
            assert torch.allclose(bc.cdf(lt, torch.tensor(0.5, dtype=torch.float64), beta), torch.sigmoid(-lt))
    assert (bc.log_prob(torch.tensor(0.0), torch.tensor([0.0, 1.0, 1.5]), 1.0) == -math.inf).all()
    lg = torch.tensor([0.3], requires_grad=True)
    bc.sample(lg, torch.tensor([0.4]), 2.0).sum().backward()
    assert torch.isfinite(lg.grad).all() and lg.grad.item() > 0
