"""REBAR and RELAX in ``estibench.grad`` against the registered ``rebar`` and ``relax`` on the same draws.

The registered estimators run on a model's layers with the reference codes' variants (``estimators/rebar.py``); the
API runs on one distribution.  Where the registered options reduce to the API's (one stochastic layer, the paper's
fresh noise and concrete relaxation, one η per tensor all equal) the two give the same gradient, to float rounding,
for the model's parameters and for the control variate's own (η, λ, r_ρ: the gradient of the variance objective).
The registered estimators score the K-sample bound f(b_{1:K}) = log (1/K) Σ_k w_k; the API estimates ∇ E_q[f] for
the f it is given, so at K > 1 the API gets the K-fold product of q (one draw of all K particles) and that bound as
f, with one data point (then the two draw their noise in the same order).
"""
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical

import estibench
from estibench import estimators
from estibench.estimators.base import logmeanexp
from estibench.estimators.grad import RebarControlVariate
from estibench.models.protocols import bernoulli_log_mass
from test_grad import _model_gradients, _same, gmm_and_data, sbn_and_data

ETA, TEMPERATURE = 0.7, 0.3  # not the starting values: the comparison covers η and λ as parameters


def _set_registered(est, residual_scale=0.0):
    """η = ETA for every tensor, λ = TEMPERATURE; r_ρ's parameters random (its output layer starts at zero)."""
    cv = est.relaxation if hasattr(est, "relaxation") else est.bernoulli
    with torch.no_grad():
        cv.eta_raw.fill_(ETA)
        cv.log_temperature.fill_(torch.tensor(TEMPERATURE).log().item())
        if cv.residuals is not None:
            for p in cv.residuals.parameters():
                p.normal_(0.0, residual_scale)
    return cv


def _sbn_objective(model, x, a, K_inside):
    """f(z) = log p(x, z) − log q(z | x) with the relaxed log joint and log q linear in z (what the registered
    control variate evaluates at σ_λ(z)); with ``K_inside`` the K particles are z's second-to-last dimension and f is
    their bound log (1/K) Σ_k w_k."""
    joint = model.relaxed_log_joint

    def f(z):
        if not K_inside:
            return joint(x, z) - bernoulli_log_mass(a, z)
        zk = z.movedim(-2, 0).squeeze(1)  # [1, R, B, K, D] → [K, R, B, D]
        return logmeanexp(joint(x, zk) - bernoulli_log_mass(a, zk), 0).unsqueeze(0)
    return f


def _api_rebar(model, x, K, cv, name="rebar"):
    a = model.guide_layer(0, x)
    if K == 1:
        dist, f = Independent(Bernoulli(logits=a), 1), _sbn_objective(model, x, a, False)
    else:  # one draw of K particles: logits [R, B, K, D] (B = 1: the registered noise order [K, R, B, D])
        dist = Independent(Bernoulli(logits=a.unsqueeze(-2).expand(*a.shape[:-1], K, a.shape[-1])), 2)
        f = _sbn_objective(model, x, a, True)
    return estibench.grad(dist, f, name, particles=1, control_variate=cv)


@pytest.mark.parametrize("K", [1, 3])
def test_rebar_equals_the_registered_rebar_on_a_one_layer_sbn(K):
    """Registered ``rebar[theta_cv=True]`` (its η also on θ, where the API's control variate acts on every parameter
    f closes over) against the API's ``rebar`` at η = 0.7, λ = 0.3: model gradients, and the gradients of the
    variance objective Σ‖ĝ_φ‖² for λ and η (the API's one η is the registered per-tensor η's, so its gradient is
    their sum)."""
    model, x = sbn_and_data()
    if K > 1:
        x = x[:, :1]
    est = estimators.get("rebar", theta_cv=True).bind(model)
    _set_registered(est)
    torch.manual_seed(3)
    registered, own, _ = est.gradients(model, x, K, with_own=True)
    cv = RebarControlVariate(eta=ETA, temperature=TEMPERATURE)
    torch.manual_seed(3)
    out = _api_rebar(model, x, K, cv)
    variance = out.variance(model.guide_parameters())  # keeps the graph (create_graph)
    d_eta, d_log_t = torch.autograd.grad(variance, [cv.eta, cv.log_temperature], retain_graph=True)
    _same(registered, _model_gradients(model, out.loss))
    by_name = dict(zip([n for n, _ in est.named_parameters()], own))
    torch.testing.assert_close(d_log_t, by_name["relaxation.log_temperature"].sum(), rtol=1e-4, atol=1e-6)
    guide = {id(p) for p in model.guide_parameters()}
    phi_eta = [j for j, p in enumerate(model.parameters()) if id(p) in guide]
    torch.testing.assert_close(d_eta, by_name["relaxation.eta_raw"][0, phi_eta].sum(), rtol=1e-4, atol=1e-6)


class _RegisteredResidual(nn.Module):
    """The registered RELAX's r_ρ([x, tanh(z/2)]) as a module of the relaxed sample z ``[1, R, B, D]``."""

    def __init__(self, cv, x):
        super().__init__()
        self.cv, self.x = cv, x

    def forward(self, z, batch_dims):
        return self.cv.residual_value(self.x, [torch.tanh(0.5 * z)]).unsqueeze(0)


def test_relax_with_rebars_control_variate_and_a_residual_equals_the_registered_bernoulli_relax():
    """Registered Bernoulli ``relax`` (c = η f̃(σ_λ(z)) + r_ρ(z)) against the API's ``relax`` with
    ``RebarControlVariate(residual=…)`` holding the registered r_ρ: the same φ-gradients (the registered RELAX applies
    its control variate to φ only; on θ the API adds η(∇_θ f̃(z) − ∇_θ f̃(z̃)) + ∇_θ r, of mean zero)."""
    model, x = sbn_and_data()
    est = estimators.get("relax", bernoulli_hidden=(8,)).bind(model)
    reg_cv = _set_registered(est, residual_scale=0.3)
    torch.manual_seed(5)
    registered, _, _ = est.gradients(model, x, 1, with_own=False)
    cv = RebarControlVariate(eta=ETA, temperature=TEMPERATURE, residual=_RegisteredResidual(reg_cv, x))
    torch.manual_seed(5)
    out = _api_rebar(model, x, 1, cv, name="relax")
    api = _model_gradients(model, -out.surrogate.mean())
    guide = {id(p) for p in model.guide_parameters()}
    phi = [(r, a) for p, r, a in zip(model.parameters(), registered, api) if id(p) in guide]
    _same([r for r, _ in phi], [a for _, a in phi])


def test_relax_at_k3_equals_the_registered_categorical_relax_on_the_gmm():
    """The registered categorical RELAX at K = 3 (the 3-sample bound, c = (1/K) Σ_k MLP_ρ([x, g_k])) against the API's
    ``relax`` on the 3-fold product of q with that bound as f and the registered MLP as its control variate, one data
    point: the same gradient for θ and φ."""
    model, x = gmm_and_data()
    x = x[:, :1]
    K = 3
    est = estimators.get("relax").bind(model)
    with torch.no_grad():
        for p in est.parameters():
            p.normal_(0.0, 0.5)
    torch.manual_seed(6)
    registered = _model_gradients(model, est.surrogate(model, x, K).loss)

    class RegisteredCV(nn.Module):
        def forward(self, g, batch_dims):  # g [1, R, B, K, C] → the registered c of the K particles, [1, R, B]
            return est.control_variate(x, g[0].movedim(-2, 0)).unsqueeze(0)

    torch.manual_seed(6)
    logits = model.guide(x).logits  # [R, B, C], normalised
    q_k = Independent(OneHotCategorical(logits=logits.unsqueeze(-2).expand(*logits.shape[:-1], K,
                                                                              logits.shape[-1])), 1)

    def bound(y):  # y [1, R, B, K, C] one-hot → log (1/K) Σ_k w_k, [1, R, B]
        z = y[0].argmax(-1).movedim(-1, 0)
        log_q = Categorical(logits=logits).log_prob(z)
        return logmeanexp(model.log_joint(x, z) - log_q, 0).unsqueeze(0)

    out = estibench.grad(q_k, bound, "relax", particles=1, control_variate=RegisteredCV())
    _same(registered, _model_gradients(model, -out.surrogate.sum()))


def test_rebar_and_relax_refuse_each_others_control_variates():
    q = Independent(Bernoulli(logits=torch.zeros(2, 3)), 1)
    f = lambda z: z.sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match="call 'relax'"):
        estibench.grad(q, f, "rebar", control_variate=RebarControlVariate(residual=nn.Identity()))
    with pytest.raises(ValueError, match="call 'rebar'"):
        estibench.grad(q, f, "relax", control_variate=RebarControlVariate())


@pytest.mark.parametrize("case", ["bernoulli", "onehot"])
def test_relax_with_a_residual_matches_the_exact_gradient(case):
    """RELAX's discrete control variate η·f(σ_λ(z)) + r_ρ(z) at η = 1.7, λ = 0.3 and a random r_ρ (its output layer
    drawn, not zero), f depending on q's own logits: n = 4,000 draws, K = 1, seed 31, α = 1e-3 family-wise
    (``test_grad.unbiased_test``)."""
    from estibench.estimators.grad import RelaxControlVariate
    from estibench.harness.checks import FAMILY_ALPHA, unbiased_test
    from test_grad import CASES, N_DRAWS, exact_with_direct, f_of, parameters
    torch.manual_seed(31)
    logits, w = parameters(case, 31)
    residual = RelaxControlVariate(logits.shape[-1], hidden=(8,), zero_output=False, bernoulli=case == "bernoulli")
    cv = RebarControlVariate(1.7, 0.3, residual=residual)
    build, _, _, features = CASES[case]
    L = logits.detach().expand(N_DRAWS, *logits.shape).clone().requires_grad_()
    W = w.detach().expand(N_DRAWS, *w.shape).clone().requires_grad_()
    base = f_of(features, W[:, None])
    estibench.grad(build(L), lambda z: base(z) + 0.3 * (z * L).sum(-1), "relax", control_variate=cv
                   ).surrogate.sum().backward()
    d = torch.cat([L.grad.reshape(N_DRAWS, -1), W.grad.reshape(N_DRAWS, -1)], 1)
    passed, zmax, thr = unbiased_test(d, exact_with_direct(case, logits, w), FAMILY_ALPHA)
    assert passed, f"relax with a residual on {case}: max |z| {zmax:.2f} ≥ {thr:.2f}"
