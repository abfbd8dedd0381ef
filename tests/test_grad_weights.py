"""``estibench.grad(..., "vimco")`` (``objective="bound"``): f gives per-particle log-weights and the estimate is of
∇ E[log (1/K) Σ_k exp f(z_k)], the K-sample bound (``estimators/functional/weights.py``).

Exact-gradient test: the bound's expectation written out over the K-fold product of every state of a small
Bernoulli (3 bits) or categorical (4 categories) distribution, at randomised logits and a randomised own parameter
of a nonlinear f (``test_grad.f_of``), against n = 4,000 independent draws of the estimate (a replicated batch
dimension, ``test_grad.draws``); decision ``harness.checks.unbiased_test`` (whole-vector Bonferroni Student-t test,
family-wise false-alarm rate FAMILY_ALPHA = 1e-3 per case), seeds fixed per case.  The same test rejects a biased
variant of VIMCO (its leave-one-out baseline computed with the particle's own weight), so it can fail.  Equality:
on the same draws, the API and the registered ``vimco`` on the GMM give the same gradient and the same bound.
"""
import itertools

import pytest
import torch

import estibench
from estibench import estimators
from estibench.estimators.grad import score as grad_module  # the module whose vimco the API calls
from estibench.estimators.base import batch_loss
from estibench.estimators.functional import weights
from estibench.estimators.grad import METHODS
from estibench.harness.checks import FAMILY_ALPHA, unbiased_test

from test_grad import CASES, N_DRAWS, _model_gradients, _same, draws, f_of, gmm_and_data, parameters


def exact_bound_gradient(case, logits, w, K):
    """∇ of Σ_items E[log (1/K) Σ_k exp f(z_k)], z_k iid q, over (logits, w): every K-tuple of states."""
    build, _, states, features = CASES[case]
    logits, w = logits.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    q = build(logits)
    z = states.reshape(len(states), *([1] * (logits.dim() - 1)), *states.shape[1:]).expand(
        len(states), *q.batch_shape, *states.shape[1:])
    log_q, f = q.log_prob(z), f_of(features, w)(z)  # [S, B] each
    tuples = torch.tensor(list(itertools.product(range(len(states)), repeat=K)))  # [S^K, K]
    bound = torch.logsumexp(f[tuples], 1) - torch.log(torch.tensor(float(K)))  # [S^K, B]
    total = (log_q[tuples].sum(1).exp() * bound).sum()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, (logits, w))])


BOUND_CASES = [(case, K) for case in ("bernoulli", "categorical") for K in (2, 3)]


@pytest.mark.parametrize("case, K", BOUND_CASES)
def test_vimco_matches_the_exact_gradient_of_the_k_sample_bound(case, K):
    seed = 7 * K + len(case)
    logits, w = parameters(case, seed)
    d = draws(case, "vimco", logits, w, N_DRAWS, K, seed)
    passed, zmax, thr = unbiased_test(d, exact_bound_gradient(case, logits, w, K), FAMILY_ALPHA)
    assert passed, f"vimco on {case}, K={K}: max |z| {zmax:.2f} ≥ {thr:.2f}"


def _biased_vimco(log_w, log_q, bound=None):
    """VIMCO with a wrong baseline: the geometric mean over all K particles, the ℓ-th included (it depends on z_ℓ)."""
    bound = weights.importance_bound(log_w) if bound is None else bound
    K = log_w.shape[0]
    others = torch.logsumexp(log_w, 0, keepdim=True) + torch.log1p(-torch.softmax(log_w, 0))
    baseline = torch.logaddexp(others, log_w.mean(0, keepdim=True)) - torch.log(torch.tensor(float(K)))
    return ((bound.unsqueeze(0) - baseline).detach() * log_q).sum(0) + bound


def test_the_exact_bound_test_rejects_a_biased_vimco(monkeypatch):
    monkeypatch.setattr(grad_module, "vimco", _biased_vimco)
    logits, w = parameters("bernoulli", 4)
    d = draws("bernoulli", "vimco", logits, w, N_DRAWS, 2, 4)
    passed, zmax, thr = unbiased_test(d, exact_bound_gradient("bernoulli", logits, w, 2), FAMILY_ALPHA)
    assert not passed, f"a biased VIMCO passed (max |z| {zmax:.2f} < {thr:.2f}): the test would see nothing"


def test_vimco_equals_the_registered_estimator_on_the_gmm():
    """K = 3, f(z) = log p(x, z) − log q(z | x): the same gradient for θ and φ and the same bound."""
    model, x = gmm_and_data()
    est = estimators.get("vimco").bind(model)
    torch.manual_seed(4)
    registered = est.surrogate(model, x, 3)
    torch.manual_seed(4)
    q = model.guide(x)
    out = estibench.grad(q, lambda z: model.log_joint(x, z) - q.log_prob(z), "vimco", particles=3)
    _same(_model_gradients(model, registered.loss), _model_gradients(model, batch_loss(out.surrogate)))
    torch.testing.assert_close(out.value.mean(-1), registered.objective, rtol=0, atol=0)
    assert not out.value.requires_grad


def test_vimco_is_flagged_as_a_bound_method_and_refuses_one_particle():
    assert METHODS["vimco"].objective == "bound" and METHODS["vimco"].unbiased
    assert all(m.objective == "expectation" for name, m in METHODS.items() if name != "vimco")
    q = torch.distributions.Independent(torch.distributions.Bernoulli(logits=torch.zeros(2, 3)), 1)
    with pytest.raises(ValueError, match="particles ≥ 2"):
        estibench.grad(q, lambda z: z.sum(-1), "vimco", particles=1)
