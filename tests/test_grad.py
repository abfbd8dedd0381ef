"""The functional API ``estibench.grad`` (``estimators/grad/``): exact gradients on enumerable distributions, the
same gradient as the registered estimator on an equivalent model, and one-line refusals.

Exact-gradient tests: for every unbiased method and every distribution it takes, n = 4,000 independent draws of the
gradient (the parameters are replicated n times along a batch dimension, so one backward pass gives n independent
estimates), at randomised logits and a randomised own parameter of a nonlinear f, against the gradient of
E_q[f] written out over every state.  The decision is ``harness.checks.unbiased_test`` (whole-vector Bonferroni
Student-t test, family-wise false-alarm rate ``FAMILY_ALPHA`` = 1e-3 per case), seeds fixed per case; a biased
method (straight-through) is rejected by the same test, so the test can fail.
"""
import itertools

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical

import estibench
from estibench import estimators, models
from estibench.estimators.base import IncompatibleError, batch_loss
from estibench.estimators.grad import METHODS, available
from estibench.harness.checks import FAMILY_ALPHA, unbiased_test
from estibench.models.protocols import bernoulli_log_mass

N_DRAWS = 4000
D, C, B = 3, 4, 2  # bits, categories, items


# -- enumerable cases: (distribution builder from logits [n, B, ·], the states, f's feature map) -------------------
def bernoulli_case(logits):
    return Independent(Bernoulli(logits=logits), 1)


def onehot_case(logits):
    return OneHotCategorical(logits=logits)


def index_case(logits):
    return Categorical(logits=logits)


def bits_states():
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=D)))


CASES = {
    # name: (builder, logits width, states [S, ·] as f receives them, features of z for f: [.., W])
    "bernoulli": (bernoulli_case, D, bits_states(), lambda z: z),
    "onehot": (onehot_case, C, torch.eye(C), lambda z: z),
    "categorical": (index_case, C, torch.arange(C), lambda z: torch.nn.functional.one_hot(z, C).to(torch.float32)),
}


def f_of(features, w):
    """A nonlinear objective with its own parameter w ``[..., W]``: sin(φ(z)·w) + (φ(z)·w)² / 4."""
    def f(z):
        s = (features(z) * w).sum(-1)
        return torch.sin(s) + 0.25 * s ** 2
    return f


def exact_gradient(case, logits, w):
    """∇ of Σ_items E_q[f] over (logits, w), written out over every state."""
    build, _, states, features = CASES[case]
    logits, w = logits.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    q = build(logits)
    z = states.reshape(len(states), *([1] * (logits.dim() - 1)), *states.shape[1:]).expand(
        len(states), *q.batch_shape, *states.shape[1:])
    total = (q.log_prob(z).exp() * f_of(features, w)(z)).sum()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, (logits, w))])


def draws(case, method, logits, w, n, K, seed):
    """n independent estimates of the same gradient ``[n, P]`` (each draw its own copy of the parameters)."""
    build, _, _, features = CASES[case]
    L = logits.detach().expand(n, *logits.shape).clone().requires_grad_()
    W = w.detach().expand(n, *w.shape).clone().requires_grad_()
    torch.manual_seed(seed)
    out = estibench.grad(build(L), f_of(features, W[:, None]), method, particles=K)
    out.surrogate.sum().backward()
    return torch.cat([L.grad.reshape(n, -1), W.grad.reshape(n, -1)], 1)


def parameters(case, seed):
    gen = torch.Generator().manual_seed(seed)
    _, width, _, _ = CASES[case]
    logits = 1.5 * torch.randn(B, width, generator=gen)
    w = torch.randn(D if case == "bernoulli" else C, generator=gen)
    return logits, w


UNBIASED = [(m, case, K) for m in available() if METHODS[m].unbiased and m not in ("relax", "rebar")  # tests below
            and METHODS[m].objective == "expectation"  # "bound" (vimco): tests/test_grad_weights.py
            for case in CASES if ("bernoulli" if case == "bernoulli" else "categorical") in METHODS[m].kinds
            or "any" in METHODS[m].kinds
            for K in ((2, 3) if METHODS[m].min_particles > 1 else (1, 2))]


@pytest.mark.parametrize("method, case, K", UNBIASED)
def test_unbiased_methods_match_the_exact_gradient_at_randomised_parameters(method, case, K):
    seed = 11 * K + len(method) + len(case)
    logits, w = parameters(case, seed)
    d = draws(case, method, logits, w, N_DRAWS, K, seed)
    passed, zmax, thr = unbiased_test(d, exact_gradient(case, logits, w), FAMILY_ALPHA)
    assert passed, f"{method} on {case}, K={K}: max |z| {zmax:.2f} ≥ {thr:.2f}"


def test_the_exact_gradient_test_rejects_a_biased_method():
    logits, w = parameters("bernoulli", 3)
    d = draws("bernoulli", "straight_through", logits, w, N_DRAWS, 1, 3)
    passed, zmax, thr = unbiased_test(d, exact_gradient("bernoulli", logits, w), FAMILY_ALPHA)
    assert not passed, f"straight-through passed (max |z| {zmax:.2f} < {thr:.2f}): the test would see nothing"


def test_a_product_of_distributions_takes_the_score_function_estimators():
    """(Bernoulli bits, a categorical) as one product: f gets a tuple; RLOO's mean over 4,000 draws matches the
    exact gradient of the logits of both factors (α = 1e-3)."""
    gen = torch.Generator().manual_seed(5)
    a0, c0 = torch.randn(B, D, generator=gen), torch.randn(B, C, generator=gen)
    v = torch.randn(D, generator=gen)

    def f(z):
        bits, k = z
        return torch.cos((bits * v).sum(-1) + k.to(torch.float32))

    a, c = a0.expand(N_DRAWS, B, D).clone().requires_grad_(), c0.expand(N_DRAWS, B, C).clone().requires_grad_()
    torch.manual_seed(5)
    estibench.grad((Independent(Bernoulli(logits=a), 1), Categorical(logits=c)), f, "rloo", particles=2
                   ).surrogate.sum().backward()
    d = torch.cat([a.grad.reshape(N_DRAWS, -1), c.grad.reshape(N_DRAWS, -1)], 1)
    a1, c1 = a0.clone().requires_grad_(), c0.clone().requires_grad_()
    qa, qc = Independent(Bernoulli(logits=a1), 1), Categorical(logits=c1)
    total = 0
    for bits in bits_states():
        for k in range(C):
            zb, zk = bits.expand(B, D), torch.full((B,), k)
            total = total + (qa.log_prob(zb) + qc.log_prob(zk)).exp() * f((zb, zk))
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(total.sum(), (a1, c1))])
    passed, zmax, thr = unbiased_test(d, exact, FAMILY_ALPHA)
    assert passed, f"max |z| {zmax:.2f} ≥ {thr:.2f}"


# -- one implementation: the registered estimator on an equivalent model, the same draws -----------------------------
def _model_gradients(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def _same(a, b):
    assert any(g is not None and g.abs().sum() > 0 for g in a), "no gradient: the comparison would see nothing"
    for ga, gb in zip(a, b):
        if ga is None or gb is None:
            assert ga is None and gb is None
        else:
            torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


def gmm_and_data():
    model = models.get("gmm", seeds=(0,))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = model.true_model().sample(4)[1]
    return model, x


@pytest.mark.parametrize("name, K", [("rloo", 3), ("reinforce", 1)])
def test_score_function_methods_equal_the_registered_estimator_on_the_gmm(name, K):
    """f(z) = log p(x, z) − log q(z | x), the ELBO's integrand the registered estimators use (REINFORCE's K-sample
    bound is the same objective at K = 1)."""
    model, x = gmm_and_data()
    est = estimators.get(name).bind(model)
    torch.manual_seed(1)
    registered = _model_gradients(model, est.surrogate(model, x, K).loss)
    torch.manual_seed(1)
    q = model.guide(x)
    out = estibench.grad(q, lambda z: model.log_joint(x, z) - q.log_prob(z), name, particles=K)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


def sbn_and_data():
    model = models.get("sbn_tiny", seeds=(0,), latent_bits=4, arch="linear1", train_mean=torch.full((49,), 0.3))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = model.sample(3)[1]
    return model, x


@pytest.mark.parametrize("name, options, registered_options", [
    ("arm", {}, {}), ("disarm", {}, {}), ("straight_through", {}, {}),
    ("gumbel_st", {"temperature": 0.7}, {"initial_temperature": 0.7, "final_temperature": 0.7}),
    ("concrete", {"temperature": 0.7}, {"initial_temperature": 0.7, "final_temperature": 0.7})])
def test_bernoulli_methods_equal_the_registered_estimator_on_a_one_layer_sbn(name, options, registered_options):
    """K = 1 on a one-layer linear SBN.  f(z) = log p(x, z) − log q(z | x) with log q written as the registered
    estimators write it (Σ z·a − softplus a, differentiable in z for the relaxations); for ARM and DisARM, whose
    registered form replaces the direct term −∇_φ log q(z) by a zero one (both of zero mean), log q is held fixed in
    f.  Concrete scores ``relaxed_log_joint``."""
    model, x = sbn_and_data()
    est = estimators.get(name, **registered_options).bind(model)
    torch.manual_seed(2)
    registered = _model_gradients(model, est.surrogate(model, x, 1).loss)
    torch.manual_seed(2)
    a = model.guide_layer(0, x)
    joint = model.relaxed_log_joint if name == "concrete" else model.log_joint
    hold = name in ("arm", "disarm")

    def f(z):
        log_q = bernoulli_log_mass(a, z)
        return joint(x, z) - (log_q.detach() if hold else log_q)

    out = estibench.grad(Independent(Bernoulli(logits=a), 1), f, name, particles=1, **options)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


@pytest.mark.parametrize("name, options", [("reinmax", {"temperature": 1.5}), ("gst", {"gap": 1.0, "temperature": 0.8}),
                                           ("gumbel_rao", {"samples": 5, "temperature": 0.8})])
def test_straight_through_categorical_methods_equal_the_registered_estimator_on_the_gmm(name, options):
    """K = 2 on the GMM through its factorial categorical interface: f(y) = log p(x, y) − Σ y·ℓ at one-hot codes."""
    model, x = gmm_and_data()
    est = estimators.get(name, **options).bind(model)
    torch.manual_seed(3)
    registered = _model_gradients(model, est.surrogate(model, x, 2).loss)
    torch.manual_seed(3)
    ell = torch.log_softmax(model.guide_logits(x), -1)  # [R, B, D, C]
    q = Independent(OneHotCategorical(logits=ell), 1)
    out = estibench.grad(q, lambda y: model.log_joint_onehot(x, y) - (y * ell).sum((-1, -2)), name, particles=2,
                         **options)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


# -- refusals ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, words", [
    (lambda q, f: estibench.grad(q, f, "muprop"), "muprop"),
    (lambda q, f: estibench.grad(q, f, "nvil"), "baseline network"),
    (lambda q, f: estibench.grad(q, f, "relax"), "needs control_variate="),
    (lambda q, f: estibench.grad(q, f, "rebar", control_variate=torch.nn.Linear(1, 1)), "RebarControlVariate"),
    (lambda q, f: estibench.grad(q, f, "disarmm"), "did you mean disarm"),
    (lambda q, f: estibench.grad(q, f, "rloo", particles=1), "particles ≥ 2"),
    (lambda q, f: estibench.grad(q, f, "disarm", temperature=1.0), "no option temperature"),
    (lambda q, f: estibench.grad(OneHotCategorical(logits=torch.zeros(2, 3)), f, "arm"), "takes Bernoulli"),
    (lambda q, f: estibench.grad(q, lambda z: z.sum(), "rloo"), "one value per particle and item"),
    (lambda q, f: estibench.grad("q", f, "rloo"), "torch.distributions"),
])
def test_bad_calls_are_refused_with_one_line(call, words):
    q = Independent(Bernoulli(logits=torch.zeros(2, 3)), 1)
    assert_refused_in_one_line(lambda: call(q, lambda z: z.sum(-1)), words)


def assert_refused_in_one_line(call, words):
    """``call()`` raises a ValueError or TypeError whose message is one line containing ``words``."""
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert words in message and "\n" not in message, message


def test_every_offered_method_is_a_registered_estimator_and_runs_on_what_it_takes():
    assert set(available()) <= set(estimators.names())
    w = torch.randn(C)
    for name in available():
        kind = "bernoulli" if "bernoulli" in METHODS[name].kinds else "categorical"
        logits = torch.randn(B, D if kind == "bernoulli" else C, requires_grad=True)
        q = Independent(Bernoulli(logits=logits), 1) if kind == "bernoulli" else OneHotCategorical(logits=logits)
        options = {}
        if name == "rebar" and kind != "bernoulli":
            continue  # f below takes one-hot codes of its own width; rebar evaluates it at relaxed ones too: covered below
        if name == "relax":
            from estibench.estimators.grad import RelaxControlVariate
            options["control_variate"] = RelaxControlVariate(logits.shape[-1], zero_output=False,
                                                             bernoulli=kind == "bernoulli")
        out = estibench.grad(q, lambda z: torch.sin(z @ w[:z.shape[-1]]), name, **options)
        out.loss.backward()
        assert out.surrogate.shape == out.value.shape == (B,) and not out.value.requires_grad
        assert logits.grad is not None and bool(torch.isfinite(logits.grad).all()) and logits.grad.abs().sum() > 0


def test_every_registered_estimator_is_offered_or_refused_with_a_reason():
    """Each name the project registers is either a method of ``estibench.grad`` or has its one-line reason in
    ``NOT_OFFERED`` (never the generic refusal meant for plug-ins), and the refusal says that reason."""
    from estibench.estimators.grad import NOT_OFFERED
    from estibench.reports.estimator_doc import registered  # the project's own entries, never a plug-in
    names = {name for name, _ in registered()}
    assert not set(NOT_OFFERED) & set(available()), "a method is both offered and refused"
    assert set(NOT_OFFERED) <= names, f"reasons for unregistered names: {sorted(set(NOT_OFFERED) - names)}"
    assert names <= set(available()) | set(NOT_OFFERED), \
        f"registered, neither offered nor refused with a reason: {sorted(names - set(available()) - set(NOT_OFFERED))}"
    for name, reason in NOT_OFFERED.items():
        with pytest.raises(IncompatibleError) as refused:
            estibench.grad(Independent(Bernoulli(logits=torch.zeros(2, 3)), 1), lambda z: z.sum(-1), name)
        assert reason in str(refused.value) and "\n" not in str(refused.value)


# -- RELAX: unbiased for every value of its control variate's parameters ----------------------------------------------
def relax_draws(case, logits, w, cv, n, K, seed):
    build, _, _, features = CASES[case]
    L = logits.detach().expand(n, *logits.shape).clone().requires_grad_()
    W = w.detach().expand(n, *w.shape).clone().requires_grad_()
    torch.manual_seed(seed)
    out = estibench.grad(build(L), f_of(features, W[:, None]), "relax", particles=K, control_variate=cv)
    out.surrogate.sum().backward()
    return torch.cat([L.grad.reshape(n, -1), W.grad.reshape(n, -1)], 1)


def trained_control_variate(case, logits, w, cv, steps=40, seed=0):
    """``steps`` Adam steps of the control variate's parameters on RELAX's variance objective at (logits, w)."""
    build, _, _, features = CASES[case]
    opt = torch.optim.Adam(cv.parameters(), lr=0.05)
    torch.manual_seed(seed)
    before = [p.detach().clone() for p in cv.parameters()]
    for _ in range(steps):
        L = logits.detach().clone().requires_grad_()
        out = estibench.grad(build(L), f_of(features, w), "relax", particles=1, control_variate=cv)
        opt.zero_grad()
        out.variance([L]).backward(inputs=list(cv.parameters()))
        opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, cv.parameters())), "the variance objective moved nothing"
    return cv


@pytest.mark.parametrize("case", ["bernoulli", "onehot", "categorical"])
@pytest.mark.parametrize("state", ["initial", "random", "trained"])
def test_relax_matches_the_exact_gradient_for_any_control_variate(case, state):
    """At the control variate's initial parameters (zero output: c ≡ 0), at random ones (every layer random, output
    included) and after 40 steps of its own variance objective: n = 4,000 draws, K = 1, α = 1e-3."""
    from estibench.estimators.grad import RelaxControlVariate
    seed = {"initial": 1, "random": 2, "trained": 3}[state] + 10 * len(case)
    logits, w = parameters(case, seed)
    torch.manual_seed(seed)
    size = D if case == "bernoulli" else C
    cv = RelaxControlVariate(size, hidden=(8,), zero_output=(state == "initial"), bernoulli=(case == "bernoulli"))
    if state == "random":
        with torch.no_grad():
            for p in cv.parameters():
                p.normal_(0.0, 1.0)
    if state == "trained":
        cv = trained_control_variate(case, logits, w, cv, seed=seed)
    d = relax_draws(case, logits, w, cv, N_DRAWS, 1, seed)
    passed, zmax, thr = unbiased_test(d, exact_gradient(case, logits, w), FAMILY_ALPHA)
    assert passed, f"relax on {case} ({state} control variate): max |z| {zmax:.2f} ≥ {thr:.2f}"


def test_the_trained_control_variate_lowers_relaxs_variance():
    """The variance objective does what it is for: after 100 steps, RELAX's gradient variance on the Bernoulli case
    is below its variance with c ≡ 0 (4,000 draws each, the same seed)."""
    from estibench.estimators.grad import RelaxControlVariate
    logits, w = parameters("bernoulli", 7)
    torch.manual_seed(7)
    zero = RelaxControlVariate(D, hidden=(16,))
    trained = trained_control_variate("bernoulli", logits, w, RelaxControlVariate(D, hidden=(16,)), steps=100)
    v0 = relax_draws("bernoulli", logits, w, zero, N_DRAWS, 1, 8)[:, :B * D].var(0).sum()
    v1 = relax_draws("bernoulli", logits, w, trained, N_DRAWS, 1, 8)[:, :B * D].var(0).sum()
    assert v1 < v0, (float(v1), float(v0))


def test_concrete_on_a_categorical_equals_the_registered_estimator_on_the_gmm():
    """K = 1 on the GMM: f(z̃) = log p(x, z̃) − log q̃_τ(z̃) with the relaxed joint and the Concrete density the
    registered estimator scores (its default ``relaxation``), at the same temperature."""
    from torch.distributions.relaxed_categorical import ExpRelaxedCategorical
    model, x = gmm_and_data()
    est = estimators.get("concrete", initial_temperature=0.7, final_temperature=0.7).bind(model)
    torch.manual_seed(4)
    registered = _model_gradients(model, est.surrogate(model, x, 1).loss)
    torch.manual_seed(4)
    logits = model.guide(x).logits
    tau = torch.tensor(0.7)

    def f(z):
        log_q = ExpRelaxedCategorical(tau, logits=logits, validate_args=False).log_prob(z.log()) - z.log().sum(-1)
        return model.relaxed_log_joint(x, z) - log_q

    out = estibench.grad(Categorical(logits=logits), f, "concrete", particles=1, temperature=0.7)
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


def test_relax_equals_the_registered_estimator_on_the_gmm():
    """K = 1 on the GMM with the registered RELAX's own control variate (its MLP of [x, g], wrapped as a module of
    the relaxed sample): the same gradient for θ and φ.  (K > 1, where the registered form scores the K-sample bound:
    ``tests/test_grad_rebar.py``.)"""
    from torch import nn
    model, x = gmm_and_data()
    est = estimators.get("relax").bind(model)
    with torch.no_grad():  # a control variate that is not zero (its output layer starts at zero)
        for p in est.parameters():
            p.normal_(0.0, 0.5)
    torch.manual_seed(6)
    registered = _model_gradients(model, est.surrogate(model, x, 1).loss)

    class RegisteredCV(nn.Module):
        def __init__(self):
            super().__init__()
            self.est = est

        def forward(self, g, batch_dims):
            return self.est.control_variate(x, g).unsqueeze(0)  # [R, B] for K = 1 → [1, R, B]

    torch.manual_seed(6)
    q = Categorical(logits=model.guide(x).logits)
    out = estibench.grad(q, lambda z: model.log_joint(x, z) - q.log_prob(z), "relax", particles=1,
                         control_variate=RegisteredCV())
    _same(registered, _model_gradients(model, batch_loss(out.surrogate)))


# -- REBAR: unbiased for every η and λ, also where f depends on q's own logits ----------------------------------------
def rebar_draws(case, logits, w, cv, n, seed, direct):
    """n draws, K = 1; f = sin(z·w) + (z·w)²/4 (+ 0.3 Σ z·logits with ``direct``: f depends on q's parameters)."""
    build, _, _, features = CASES[case]
    L = logits.detach().expand(n, *logits.shape).clone().requires_grad_()
    W = w.detach().expand(n, *w.shape).clone().requires_grad_()
    base = f_of(features, W[:, None])
    f = (lambda z: base(z) + 0.3 * (z * L).sum(-1)) if direct else base
    torch.manual_seed(seed)
    estibench.grad(build(L), f, "rebar", particles=1, control_variate=cv).surrogate.sum().backward()
    return torch.cat([L.grad.reshape(n, -1), W.grad.reshape(n, -1)], 1)


def exact_with_direct(case, logits, w):
    build, _, states, features = CASES[case]
    logits, w = logits.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    q = build(logits)
    z = states.reshape(len(states), 1, *states.shape[1:]).expand(len(states), *q.batch_shape, *states.shape[1:])
    f = f_of(features, w)(z) + 0.3 * (z * logits).sum(-1)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad((q.log_prob(z).exp() * f).sum(), (logits, w))])


@pytest.mark.parametrize("case", ["bernoulli", "onehot"])
@pytest.mark.parametrize("state", ["initial", "random", "trained"])
def test_rebar_matches_the_exact_gradient_for_any_eta_and_temperature(case, state):
    """η = 1, λ = 0.5 (initial); η = 1.7, λ = 0.3 (random); after 40 steps of the variance objective (trained); f
    depends on q's own logits too (so the coefficient's c carries φ): n = 4,000 draws, K = 1, α = 1e-3."""
    from estibench.estimators.grad import RebarControlVariate
    seed = {"initial": 1, "random": 2, "trained": 3}[state] + 20 * len(case)
    logits, w = parameters(case, seed)
    cv = RebarControlVariate(*((1.7, 0.3) if state == "random" else (1.0, 0.5)))
    if state == "trained":
        build, _, _, features = CASES[case]
        opt = torch.optim.Adam(cv.parameters(), lr=0.05)
        torch.manual_seed(seed)
        for _ in range(40):
            L = logits.detach().clone().requires_grad_()
            out = estibench.grad(build(L), lambda z: f_of(features, w)(z) + 0.3 * (z * L).sum(-1), "rebar",
                                 control_variate=cv)
            opt.zero_grad()
            out.variance([L]).backward(inputs=list(cv.parameters()))
            opt.step()
        assert abs(float(cv.eta.detach()) - 1.0) > 1e-3, "the variance objective moved nothing"
    d = rebar_draws(case, logits, w, cv, N_DRAWS, seed, direct=True)
    passed, zmax, thr = unbiased_test(d, exact_with_direct(case, logits, w), FAMILY_ALPHA)
    assert passed, f"rebar on {case} ({state}): max |z| {zmax:.2f} ≥ {thr:.2f}"
