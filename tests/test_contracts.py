"""Generic contract tests, run over every registered model and estimator (and a tiny Bernoulli
model defined in the tests, so the contracts are exercised beyond categorical latents)."""

import pytest
import torch

from estibench import estimators
from estibench import models
from estibench.estimators.base import IncompatibleError
from estibench.harness import exact_gradient, gradient_samples
from estibench.models.registry import UnknownNameError
from tiny_models import TinyBernoulli

R, B, K = 2, 5, 3


def all_models():
    out = [(name, models.get(name, seeds=tuple(range(R)))) for name in models.names()]
    out.append(("tiny_bernoulli", TinyBernoulli(seeds=tuple(range(R)))))
    return out


MODELS = all_models()


def data_for(model, n=B):
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return model.sample(n)[1]


@pytest.mark.parametrize("name,model", MODELS, ids=[m[0] for m in MODELS])
def test_model_contract(name, model, rng):
    x = data_for(model)
    assert x.shape[:2] == (R, B) and tuple(x.shape[2:]) == tuple(model.obs_shape)
    q = model.guide(x)
    assert isinstance(q, torch.distributions.Distribution)
    assert tuple(q.batch_shape) == (R, B)
    z = q.sample((K,))
    assert tuple(z.shape[:3]) == (K, R, B)
    lp = model.log_joint(x, z)
    assert lp.shape == (K, R, B) and torch.isfinite(lp).all()
    # broadcasting over two particle dimensions
    z2 = q.sample((2, K))
    assert model.log_joint(x, z2).shape == (2, K, R, B)
    zs, xs = model.sample(7)
    assert tuple(zs.shape[:2]) == (R, 7) and tuple(xs.shape[:2]) == (R, 7)
    theta, phi = model.generative_parameters(), model.guide_parameters()
    ids = [id(p) for p in model.parameters()]
    assert sorted(ids) == sorted(id(p) for p in theta + phi) and len(ids) == len(theta) + len(phi)
    assert all(p.shape[0] == R for p in model.parameters()), "parameters lead with the replicate dim"
    if not model.latent.enumerable:  # e.g. the 200-bit SBN: refused with a clear error
        with pytest.raises(ValueError, match="too many states"):
            model.enumerate_latents()
        return
    states = model.enumerate_latents()
    assert states.shape[0] == model.latent.num_states
    # the enumerated guide probabilities sum to one for every data point
    zz = states.view(states.shape[0], 1, 1, *states.shape[1:]).expand(states.shape[0], R, B, *states.shape[1:])
    assert torch.allclose(q.log_prob(zz).exp().sum(0), torch.ones(R, B), atol=1e-5)


def test_replicates_start_like_single_models():
    stacked = models.get("gmm", seeds=(4, 7))
    single = models.get("gmm", seeds=(7,))
    for a, b in zip(stacked.parameters(), single.parameters()):
        assert torch.equal(a[1], b[0])
    assert not torch.equal(list(stacked.guide_parameters())[0][0], list(stacked.guide_parameters())[0][1])


def compatible(est_name, model):
    est = estimators.get(est_name)
    return model.latent.kind in est.latent_types and all(hasattr(model, m) for m in est.requires)


PAIRS = [(e, n, m) for e in estimators.names() for n, m in MODELS if compatible(e, m)]


@pytest.mark.parametrize("est_name,model_name,model", PAIRS, ids=[f"{e}-{n}" for e, n, _ in PAIRS])
def test_estimator_contract(est_name, model_name, model, rng):
    est = estimators.get(est_name).bind(model)
    doc = type(est).__doc__ or ""
    assert ("et al" in doc or "RWS" in doc) and ("Eq" in doc or "§" in doc), "docstring naming paper and equation"
    assert est.guide_target in ("iwae", "inclusive_kl")
    x = data_for(model)
    out = est.surrogate(model, x, K)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.objective.shape == (R,)
    grads, own, objective = est.gradients(model, x, K)
    assert [g.shape for g in grads] == [p.shape for p in model.parameters()]
    assert [g.shape for g in own] == [p.shape for p in est.parameters()]
    assert all(torch.isfinite(g).all() for g in grads + own)
    n_theta = len(model.generative_parameters())
    assert any(g.abs().sum() > 0 for g in grads[:n_theta]), "no gradient for the generative parameters θ"
    assert any(g.abs().sum() > 0 for g in grads[n_theta:]), "no gradient for the guide parameters φ"
    draws = gradient_samples(model, est, x, K, 3, which="guide")
    D = sum(p.numel() for p in model.guide_parameters())
    assert draws.shape == (3, D)
    if not model.latent.enumerable:
        return
    assert exact_gradient(model, est, x, K, which="guide").shape == (D,)
    assert exact_gradient(model, est, x, K, which="generative").shape == (sum(p.numel() for p in model.generative_parameters()),)


@pytest.mark.parametrize("est_name", [n for n in estimators.names() if "categorical" in estimators.get(n).latent_types])
def test_replicates_do_not_interact(est_name, rng):
    """Replicate 0's gradient does not change when replicate 1's parameters do (same noise)."""
    model = models.get("gmm", seeds=(0, 1))
    est = estimators.get(est_name).bind(model)
    x = data_for(model)

    def grads():
        with torch.random.fork_rng():
            torch.manual_seed(5)
            g, own, _ = est.gradients(model, x, K)
        return [t[0].clone() for t in g + own]

    before = grads()
    with torch.no_grad():
        for p in list(model.parameters()) + list(est.parameters()):
            p[1].add_(0.3 * torch.randn_like(p[1]))
    after = grads()
    for a, b in zip(before, after):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_registry_errors():
    with pytest.raises(UnknownNameError, match="did you mean vimco"):
        estimators.get("vimc")
    with pytest.raises(UnknownNameError, match="unknown model"):
        models.get("gmmm")
    assert "\n" not in str(UnknownNameError("unknown estimator 'x'"))


def test_incompatible_pairs_refused():
    gmm = models.get("gmm")
    with pytest.raises(IncompatibleError, match="at least 2 particle"):
        estimators.get("vimco").check(gmm, 1)
    tiny = TinyBernoulli()
    for name in ("concrete",):  # relax has a Bernoulli branch (REBAR-style, estimators/relax.py)
        with pytest.raises(IncompatibleError, match="does not support bernoulli"):
            estimators.get(name).check(tiny, 2)
    with pytest.raises(IncompatibleError):
        estimators.get("dww", delta=1.5)
    with pytest.raises(IncompatibleError):
        estimators.get("concrete", final_temperature=0.0)


def test_fast_categorical_sampler_matches_probabilities(rng):
    """Inverse-CDF sampler: χ² goodness of fit per batch element (seed 0, n = 20,000 draws,
    threshold = χ²₁₉ quantile at 1 − 1e-4, so ≈ 2.4e-3 false alarms over 24 tests)."""
    from scipy.stats import chi2

    from estibench.models.distributions import Categorical

    probs = torch.softmax(torch.randn(4, 6, 20) * 2, -1)
    n = 20_000
    s = Categorical(probs=probs).sample((n,))
    counts = torch.nn.functional.one_hot(s, 20).sum(0).double()
    expected = probs.double() * n
    stat = ((counts - expected) ** 2 / expected).sum(-1)
    assert (stat < chi2.ppf(1 - 1e-4, 19)).all()
