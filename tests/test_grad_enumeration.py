"""``estibench.grad``'s IndeCateR, unordered set, double CV, RODEO and ZGR: the same gradient as the registered
estimator on the same draws (GMM, enumerable categorical SBN with D = 3 variables, one-layer SBN), and exact-gradient
tests beyond ``tests/test_grad.py``'s UNBIASED cases (which cover D = 1 categoricals, Bernoulli bits, and double CV /
RODEO without a control variate, i.e. at α = β = 0): IndeCateR and the unordered set on a product of D = 2
categoricals, double CV and RODEO at random and trained control variates (RODEO also at its initial state with a
random network).  Each exact-gradient test: n = 4,000 draws, whole-vector Bonferroni t-test at family-wise false-alarm
rate ``FAMILY_ALPHA`` = 1e-3 (``harness.checks.unbiased_test``), seed fixed per case.
"""
import itertools

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical

import estibench
from estibench import estimators, models
from estibench.estimators.base import batch_loss
from estibench.estimators.grad import DoubleCVControlVariate, RodeoControlVariate
from estibench.harness.checks import FAMILY_ALPHA, unbiased_test
from estibench.models.protocols import bernoulli_log_mass
from test_grad import (CASES, N_DRAWS, _model_gradients, _same, assert_refused_in_one_line, exact_gradient, f_of,
                       gmm_and_data, parameters, sbn_and_data)


# -- the same gradient as the registered estimator ---------------------------------------------------------------------
def _onehot_call(model, x, name, K, **options):
    """f(y) = log p(x, y) − Σ y·ℓ at one-hot codes, ℓ held in f (the registered estimators drop the direct term)."""
    ell = torch.log_softmax(model.guide_logits(x), -1)  # [R, B, D, C]
    q = Independent(OneHotCategorical(logits=ell), 1)
    return estibench.grad(q, lambda y: model.log_joint_onehot(x, y) - (y * ell.detach()).sum((-1, -2)), name,
                          particles=K, **options)


def ctiny_and_data():
    model = models.get("sbn_categorical_tiny", seeds=(0,), train_mean=torch.full((49,), 0.3))  # D = 3, C = 3
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = model.sample(3)[1]
    return model, x


@pytest.mark.parametrize("model_of", [gmm_and_data, ctiny_and_data], ids=["gmm", "categorical_sbn"])
@pytest.mark.parametrize("name, K", [("indecater", 2), ("unordered_set", 2), ("unordered_set", 3)])
def test_enumeration_methods_equal_the_registered_estimator(model_of, name, K):
    model, x = model_of()
    est = estimators.get(name).bind(model)
    torch.manual_seed(1)
    registered = _model_gradients(model, est.surrogate(model, x, K).loss)
    torch.manual_seed(1)
    out = _onehot_call(model, x, name, K)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


def test_indecater_on_a_categorical_of_indices_equals_the_registered_estimator_on_the_gmm():
    """f(z) = log p(x, z) − log q(z | x) at indices (q's logits held in f)."""
    model, x = gmm_and_data()
    est = estimators.get("indecater").bind(model)
    torch.manual_seed(2)
    registered = _model_gradients(model, est.surrogate(model, x, 2).loss)
    torch.manual_seed(2)
    q = Categorical(logits=model.guide_logits(x)[..., 0, :])
    held = Categorical(logits=q.logits.detach())
    out = estibench.grad(q, lambda z: model.log_joint(x, z) - held.log_prob(z), "indecater", particles=2)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


def test_zgr_equals_the_registered_estimator_on_the_gmm():
    """K = 2: f(y) = log p(x, y) − Σ y·ℓ with ℓ differentiated (the straight-through family's registered form)."""
    model, x = gmm_and_data()
    est = estimators.get("zgr").bind(model)
    torch.manual_seed(3)
    registered = _model_gradients(model, est.surrogate(model, x, 2).loss)
    torch.manual_seed(3)
    ell = torch.log_softmax(model.guide_logits(x), -1)
    q = Independent(OneHotCategorical(logits=ell), 1)
    out = estibench.grad(q, lambda y: model.log_joint_onehot(x, y) - (y * ell).sum((-1, -2)), "zgr", particles=2)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


class _RegisteredStein(RodeoControlVariate):
    """The registered RODEO's NN_ψ (per-replicate StackedLinear, replicates after the pair dimensions), α and β."""

    def __init__(self, est):
        super().__init__(hidden=1)
        self.est = [est]  # not a submodule
        self.alpha, self.beta = est.alpha, est.beta

    def forward(self, t):
        return self.est[0].control(t.movedim(2, 0)).movedim(0, 2)


@pytest.mark.parametrize("name, K", [("zgr", 1), ("zgr", 2), ("double_cv", 2), ("double_cv", 3), ("rodeo", 2),
                                     ("rodeo", 3)])
def test_bernoulli_methods_equal_the_registered_estimator_on_a_one_layer_sbn(name, K):
    """f(z) = log p(x, z) − log q(z | x) (log q as Σ z·a − softplus a); for double CV and RODEO, whose registered
    form drops the direct term, with a held (z still enters f, so g = ∇_z f includes −a), and at nonzero α (β, ψ)
    copied from the registered estimator."""
    model, x = sbn_and_data()
    est = estimators.get(name).bind(model)
    options = {}
    if name in ("double_cv", "rodeo"):
        with torch.no_grad():
            est.alpha.fill_(0.7)
            if name == "rodeo":
                est.beta.fill_(-0.4)
        options["control_variate"] = (DoubleCVControlVariate(0.7) if name == "double_cv" else _RegisteredStein(est))
    torch.manual_seed(4)
    registered = _model_gradients(model, est.surrogate(model, x, K).loss)
    torch.manual_seed(4)
    a = model.guide_layer(0, x)
    hold = name != "zgr"
    out = estibench.grad(Independent(Bernoulli(logits=a), 1),
                         lambda z: model.log_joint(x, z) - bernoulli_log_mass(a.detach() if hold else a, z), name,
                         particles=K, **options)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


# -- exact gradients on a product of categoricals (D = 2, C = 3) -----------------------------------------------------
PD, PC, PB = 2, 3, 2


def product_f(w):
    """A nonlinear f of one-hot codes ``[..., PD, PC]`` with its own parameter w ``[..., PD·PC]``."""
    def f(y):
        s = (y.flatten(-2) * w).sum(-1)
        return torch.sin(s) + 0.25 * s ** 2 + 0.3 * s * y[..., 0, 0]
    return f


def product_exact(logits, w):
    logits, w = logits.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    q = Independent(OneHotCategorical(logits=logits), 1)
    states = torch.stack([torch.nn.functional.one_hot(torch.tensor(c), PC).float()
                          for c in itertools.product(range(PC), repeat=PD)])  # [S, PD, PC]
    y = states[:, None].expand(len(states), PB, PD, PC)
    total = (q.log_prob(y).exp() * product_f(w)(y)).sum()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, (logits, w))])


@pytest.mark.parametrize("name, K, indices", [("indecater", 1, False), ("indecater", 2, True),
                                              ("unordered_set", 2, False), ("unordered_set", 4, True)])
def test_enumeration_methods_match_the_exact_gradient_on_a_product_of_categoricals(name, K, indices):
    seed = 5 * K + len(name) + indices
    gen = torch.Generator().manual_seed(seed)
    logits, w = 1.5 * torch.randn(PB, PD, PC, generator=gen), torch.randn(PD * PC, generator=gen)
    n = N_DRAWS
    L = logits.expand(n, *logits.shape).clone().requires_grad_()
    W = w.expand(n, *w.shape).clone().requires_grad_()
    f = product_f(W[:, None])
    if indices:
        q, g = Independent(Categorical(logits=L), 1), (lambda z: f(torch.nn.functional.one_hot(z, PC).float()))
    else:
        q, g = Independent(OneHotCategorical(logits=L), 1), f
    torch.manual_seed(seed)
    estibench.grad(q, g, name, particles=K).surrogate.sum().backward()
    d = torch.cat([L.grad.reshape(n, -1), W.grad.reshape(n, -1)], 1)
    passed, zmax, thr = unbiased_test(d, product_exact(logits, w), FAMILY_ALPHA)
    assert passed, f"{name}, K={K}, indices={indices}: max |z| {zmax:.2f} ≥ {thr:.2f}"


# -- double CV and RODEO: unbiased for every value of their adapted state --------------------------------------------
def _control_variate(name, state, seed):
    torch.manual_seed(seed)
    cv = DoubleCVControlVariate() if name == "double_cv" else RodeoControlVariate(hidden=16)
    if state == "random":
        with torch.no_grad():
            for p in cv.parameters():
                p.normal_(0.0, 1.0)
    return cv


def _trained(name, cv, logits, w, seed, steps=40):
    """``steps`` Adam steps (lr 0.05) of the control variate on the variance objective at (logits, w), K = 2."""
    features = CASES["bernoulli"][3]
    opt = torch.optim.Adam(cv.parameters(), lr=0.05)
    before = [p.detach().clone() for p in cv.parameters()]
    torch.manual_seed(seed)
    for _ in range(steps):
        L = logits.detach().clone().requires_grad_()
        out = estibench.grad(Independent(Bernoulli(logits=L), 1), f_of(features, w), name, particles=2,
                             control_variate=cv)
        opt.zero_grad()
        out.variance([L]).backward(inputs=list(cv.parameters()))
        opt.step()
    assert not torch.equal(before[0], cv.alpha.detach()), "the variance objective moved nothing"
    return cv


@pytest.mark.parametrize("name, state", [("double_cv", "random"), ("double_cv", "trained"), ("rodeo", "initial"),
                                         ("rodeo", "random"), ("rodeo", "trained")])
def test_control_variate_methods_match_the_exact_gradient_for_any_state(name, state):
    """Bernoulli bits (test_grad's case: D = 3, B = 2, f = sin(z·w) + (z·w)²/4), K = 2; RODEO's initial state: α = β = 0
    with a random network (RLOO); random: every parameter N(0, 1); trained: 40 steps of the variance objective."""
    seed = {"initial": 1, "random": 2, "trained": 3}[state] + 7 * len(name)
    logits, w = parameters("bernoulli", seed)
    cv = _control_variate(name, state, seed)
    if state == "trained":
        cv = _trained(name, cv, logits, w, seed)
    build, _, _, features = CASES["bernoulli"]
    L = logits.expand(N_DRAWS, *logits.shape).clone().requires_grad_()
    W = w.expand(N_DRAWS, *w.shape).clone().requires_grad_()
    torch.manual_seed(seed)
    estibench.grad(build(L), f_of(features, W[:, None]), name, particles=2, control_variate=cv
                   ).surrogate.sum().backward()
    d = torch.cat([L.grad.reshape(N_DRAWS, -1), W.grad.reshape(N_DRAWS, -1)], 1)
    passed, zmax, thr = unbiased_test(d, exact_gradient("bernoulli", logits, w), FAMILY_ALPHA)
    assert passed, f"{name} ({state}): max |z| {zmax:.2f} ≥ {thr:.2f}"


def test_the_trained_rodeo_state_lowers_the_variance():
    """The variance objective does what it is for: RODEO's logit-gradient variance after 100 steps is below that at
    α = β = 0 (RLOO), 4,000 draws each, the same seed."""
    logits, w = parameters("bernoulli", 9)
    features = CASES["bernoulli"][3]
    trained = _trained("rodeo", _control_variate("rodeo", "initial", 9), logits, w, 9, steps=100)

    def variance(cv):
        L = logits.expand(N_DRAWS, *logits.shape).clone().requires_grad_()
        torch.manual_seed(10)
        estibench.grad(Independent(Bernoulli(logits=L), 1), f_of(features, w), "rodeo", particles=2,
                       control_variate=cv).surrogate.sum().backward()
        return L.grad.reshape(N_DRAWS, -1).var(0).sum()

    assert variance(trained) < variance(None)


# -- refusals ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, words", [
    (lambda: estibench.grad(OneHotCategorical(logits=torch.zeros(2, 3)), lambda z: z.sum(-1), "unordered_set",
                            particles=4), "only C^D = 3^1 = 3"),
    (lambda: estibench.grad(OneHotCategorical(logits=torch.zeros(2, 3)), lambda z: z.sum(-1), "unordered_set",
                            particles=1), "particles ≥ 2"),
    (lambda: estibench.grad(Independent(Bernoulli(logits=torch.zeros(2, 3)), 1), lambda z: z.sum(-1), "rodeo",
                            control_variate=nn.Linear(2, 2)), "RodeoControlVariate"),
    (lambda: estibench.grad(Independent(Bernoulli(logits=torch.zeros(2, 3)), 1), lambda z: z.sum(-1), "double_cv",
                            control_variate=RodeoControlVariate()), "DoubleCVControlVariate"),
    (lambda: estibench.grad(OneHotCategorical(logits=torch.zeros(2, 3)), lambda z: z.sum(-1), "double_cv"),
     "takes Bernoulli"),
])
def test_bad_calls_are_refused_with_one_line(call, words):
    assert_refused_in_one_line(call, words)
