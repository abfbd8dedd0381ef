"""``estibench.grad`` for the coupled-sample estimators (``arms``, ``carms``, ``categorical_disarm``;
``estimators/functional/coupled.py``): on the same draws, the same gradient as the registered estimator on an
equivalent model, for every variant; one-line refusals.  The exact-gradient tests of their default variants are
``tests/test_grad.py``'s ``UNBIASED`` cases; the non-default unbiased variant ``categorical_disarm`` ``sb`` is checked
against the exact gradient here (n = 4,000 draws, seed 29, the same Bonferroni t-test at FAMILY_ALPHA = 1e-3).

Every registered form drops the zero-mean direct term −∇_φ log q(z) (``estimators/arms.py``, ``carms.py``,
``categorical_disarm.py``), so f holds log q fixed here, as ``test_grad.py`` does for ARM and DisARM.
"""
import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical

import estibench
from estibench import estimators, models
from estibench.estimators.base import batch_loss
from estibench.harness.checks import FAMILY_ALPHA, unbiased_test
from estibench.models.protocols import bernoulli_log_mass
from test_grad import (CASES, N_DRAWS, _model_gradients, _same, assert_refused_in_one_line, exact_gradient, f_of,
                       gmm_and_data, parameters, sbn_and_data)


def categorical_sbn_and_data():
    model = models.get("sbn_categorical_tiny", seeds=(0,), train_mean=torch.full((49,), 0.3))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = model.sample(3)[1]
    return model, x


@pytest.mark.parametrize("name, variant, K, form", [
    ("carms", "exact", 3, "index"), ("carms", "carms_code", 2, "onehot"), ("carms", "exact", 4, "sbn"),
    ("categorical_disarm", "iw", 2, "index"), ("categorical_disarm", "sb", 1, "onehot"),
    ("categorical_disarm", "iw", 2, "sbn"), ("categorical_disarm", "sb", 2, "sbn")])
def test_categorical_coupled_methods_equal_the_registered_estimator(name, variant, K, form):
    """On the GMM (C = 20) as a ``Categorical`` (``index``: f = log p(x, z) − log q(z | x)) or as one-hot codes
    (``onehot``: ``Independent(OneHotCategorical(ℓ), 1)``, f = log p(x, y) − Σ y·ℓ), and on the tiny categorical
    SBN (``sbn``: 3 variables of 3 categories, so K = 4 > C takes CARMS's C × C table); log q held fixed in f."""
    model, x = categorical_sbn_and_data() if form == "sbn" else gmm_and_data()
    est = estimators.get(name, variant=variant).bind(model)
    torch.manual_seed(5)
    registered = _model_gradients(model, est.surrogate(model, x, K).loss)
    torch.manual_seed(5)
    if form == "index":
        q = model.guide(x)
        out = estibench.grad(q, lambda z: model.log_joint(x, z) - q.log_prob(z).detach(), name, particles=K,
                             variant=variant)
    else:
        ell = torch.log_softmax(model.guide_logits(x), -1)  # [R, B, D, C]
        out = estibench.grad(Independent(OneHotCategorical(logits=ell), 1),
                             lambda y: model.log_joint_onehot(x, y) - (y * ell.detach()).sum((-1, -2)), name,
                             particles=K, variant=variant)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


@pytest.mark.parametrize("variant, K", [("paper", 3), ("arms_code", 2), ("paper", 5)])
def test_arms_equals_the_registered_estimator_on_a_one_layer_sbn(variant, K):
    """``test_grad.py``'s one-layer linear SBN (4 bits): f = log p(x, z) − log q(z | x), log q held fixed."""
    model, x = sbn_and_data()
    est = estimators.get("arms", variant=variant).bind(model)
    torch.manual_seed(2)
    registered = _model_gradients(model, est.surrogate(model, x, K).loss)
    torch.manual_seed(2)
    a = model.guide_layer(0, x)
    out = estibench.grad(Independent(Bernoulli(logits=a), 1),
                         lambda z: model.log_joint(x, z) - bernoulli_log_mass(a, z).detach(), "arms", particles=K,
                         variant=variant)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


def test_categorical_disarm_sb_matches_the_exact_gradient():
    """The ``sb`` variant (the default ``iw`` is a ``test_grad.py`` UNBIASED case) on ``test_grad.py``'s one-hot
    case (B = 2 items, C = 4, nonlinear f with its own parameter), K = 2 pairs."""
    build, _, _, features = CASES["onehot"]
    logits, w = parameters("onehot", 29)
    L = logits.detach().expand(N_DRAWS, *logits.shape).clone().requires_grad_()
    W = w.detach().expand(N_DRAWS, *w.shape).clone().requires_grad_()
    torch.manual_seed(29)
    estibench.grad(build(L), f_of(features, W[:, None]), "categorical_disarm", particles=2, variant="sb"
                   ).surrogate.sum().backward()
    d = torch.cat([L.grad.reshape(N_DRAWS, -1), W.grad.reshape(N_DRAWS, -1)], 1)
    passed, zmax, thr = unbiased_test(d, exact_gradient("onehot", logits, w), FAMILY_ALPHA)
    assert passed, f"categorical_disarm sb: max |z| {zmax:.2f} ≥ {thr:.2f}"


def test_coupled_samples_have_the_shapes_f_expects():
    """A Bernoulli with scalar events, a ``Categorical`` and a ``OneHotCategorical`` with two variables per item:
    f gets [K, *batch, *event] (2K points for categorical DisARM) and the surrogate is [*batch]."""
    seen = {}

    def f(name):
        def g(z):
            seen[name] = tuple(z.shape)
            return torch.sin(z.reshape(*z.shape[:2], -1).float() @ torch.arange(1.0, 9.0))
        return g

    a = torch.randn(2, 3, requires_grad=True)
    assert estibench.grad(Bernoulli(logits=a), lambda z: z, "arms", particles=3).surrogate.shape == (2, 3)
    ell = torch.randn(2, 2, 4, requires_grad=True)
    for name in ("carms", "categorical_disarm"):
        out = estibench.grad(Independent(OneHotCategorical(logits=ell), 1), f(name), name, particles=3)
        out.loss.backward()
        assert out.surrogate.shape == (2,) and out.samples.shape == seen[name]
    assert seen == {"carms": (3, 2, 2, 4), "categorical_disarm": (6, 2, 2, 4)}
    assert bool(torch.isfinite(ell.grad).all()) and ell.grad.abs().sum() > 0


@pytest.mark.parametrize("call, words", [
    (lambda: estibench.grad(Categorical(logits=torch.zeros(2, 3)), lambda z: z.float(), "carms", particles=1),
     "particles ≥ 2"),
    (lambda: estibench.grad(Categorical(logits=torch.zeros(2, 3)), lambda z: z.float(), "carms", variant="ecarms"),
     "takes variant="),
    (lambda: estibench.grad(Categorical(logits=torch.zeros(2, 1)), lambda z: z.float(), "categorical_disarm"),
     "at least two categories"),
    (lambda: estibench.grad(Independent(Bernoulli(logits=torch.zeros(2, 3)), 1), lambda z: z.sum(-1), "carms"),
     "takes Categorical or OneHotCategorical"),
    (lambda: estibench.grad(OneHotCategorical(logits=torch.zeros(2, 3)), lambda z: z.sum(-1), "arms"),
     "takes Bernoulli"),
    (lambda: estibench.grad(Categorical(logits=torch.zeros(2, 3)), lambda z: z.float()[0], "categorical_disarm"),
     "one value per particle and item"),
])
def test_bad_calls_are_refused_with_one_line(call, words):
    assert_refused_in_one_line(call, words)
