"""The RBM-prior VAEs (models/rbm_vae.py): a normalised prior and guide on the enumerable model, the
unnormalised-prior capability, and VIMCO's gradients including −∇ log Z against the exact gradient.

Statistical tests: seed 3 for the model (``harness.checks.draws``), global seed 0 (the ``rng`` fixture),
n = 2,000 draws, 3 data points sampled from the model (seed 0), whole-vector false-alarm rate 1e-3
(Bonferroni over the tested coordinates)."""
import pytest
import torch

from estibench import estimators
from estibench.estimators import contrastive_rws as crws_module
from estibench.estimators import vimco as vimco_module
from estibench.estimators.base import IncompatibleError
from estibench.harness import exact
from estibench.harness.checks import sample_data
from estibench.harness.runner import build_model
from estibench.models.protocols import UNNORMALISED_PRIOR, capabilities
from stats import draws, unbiased_test

SETTINGS = [{"arch": "linear", "groups": 1}, {"arch": "linear", "groups": 2}, {"arch": "nonlinear", "groups": 2},
            # the RBM-prior paper's form: every latent visible, 5 hidden units summed out
            {"arch": "linear", "groups": 1, "latent_bits": 6, "rbm_hidden": 5}]


def tiny(**options):
    return lambda seeds: build_model("rbm_vae_tiny", seeds=seeds, **options)


@pytest.mark.parametrize("options", SETTINGS, ids=str)
def test_prior_and_guide_are_normalised_on_the_tiny_model(options):
    model = exact.float64_copy(tiny(**options)((0, 1)))
    z = model.enumerate_latents()  # [2^D, D]
    D = z.shape[-1]
    zz = z.unsqueeze(0).expand(model.replicates, -1, -1)  # every state as a batch, per replicate
    log_prior = model.log_prior_unnormalised(zz) - model.log_partition().unsqueeze(-1)
    torch.testing.assert_close(torch.logsumexp(log_prior, -1), torch.zeros(2, dtype=torch.float64))
    x = model.sample(3)[1]
    q = model.guide(x)
    log_q = q.log_prob(z.view(-1, 1, 1, D).expand(-1, 2, 3, -1))
    torch.testing.assert_close(torch.logsumexp(log_q, 0), torch.zeros(2, 3, dtype=torch.float64))
    assert UNNORMALISED_PRIOR in capabilities(model)


def test_estimators_that_do_not_handle_log_z_are_refused_with_one_line():
    model = tiny()((0,))
    refused = 0
    for name in estimators.names():
        est = estimators.get(name)
        if UNNORMALISED_PRIOR in est.handles or "bernoulli" not in est.latent_types:
            continue
        with pytest.raises(IncompatibleError) as err:
            est.check(model, max(2, est.min_particles))
        message = str(err.value)
        assert "\n" not in message and ("unnormalised prior" in message or "does not provide" in message), message
        refused += "unnormalised prior" in message
    assert refused >= 4  # reinforce, ws, ww, dww, ...: those that need nothing else are refused for the prior itself
    estimators.get("vimco").check(model, 2)


CASES = [("vimco", "generative"), ("vimco", "guide"), ("contrastive_rws", "generative")]


@pytest.mark.parametrize("options", SETTINGS, ids=str)
@pytest.mark.parametrize("name,which", CASES, ids=[f"{n}-{w}" for n, w in CASES])
def test_unbiased_for_the_exact_gradient_including_log_z(name, which, options, rng):
    """θ (RBM and decoder) gradients of VIMCO and Contrastive RWS and φ gradients of VIMCO (K = 2,
    unnormalised weights, negative phase from exact prior samples) against the exact gradient of the
    normalised IWAE bound (log Z by enumeration).  Contrastive RWS's θ step is wake-θ, the exact ∇_θ of
    that bound; its φ step is biased (self-normalised weights and a sleep phase) and not tested here."""
    make = tiny(**options)
    d, exact_grad = draws(make, name, sample_data(make, 3, 0), 2, 2000, which=which)
    ok, zmax, threshold = unbiased_test(d, exact_grad)
    assert ok, f"max |z| = {zmax:.2f} ≥ {threshold:.2f}"


@pytest.mark.parametrize("name", ["vimco", "contrastive_rws"])
def test_the_theta_test_catches_a_missing_log_z_term(name, monkeypatch, rng):
    """The same θ test with the −∇ log Z term removed must fail: the RBM's gradient is then biased."""
    make = tiny()
    x = sample_data(make, 3, 0)
    module = vimco_module if name == "vimco" else crws_module
    monkeypatch.setattr(module, "log_partition_term", lambda model, negatives=None: torch.zeros(()))
    d, exact_grad = draws(make, name, x, 2, 2000, which="generative")
    ok, zmax, _ = unbiased_test(d, exact_grad)
    assert not ok and zmax > 10


def test_contrastive_rws_needs_an_unnormalised_prior():
    with pytest.raises(IncompatibleError, match="unnormalised prior") as err:
        estimators.get("contrastive_rws").check(build_model("sbn_tiny", latent_bits=4), 2)
    assert "\n" not in str(err.value)


def test_the_large_model_uses_persistent_chains_and_an_ais_estimate(rng):
    """rbm_vae (100 + 100 latents): negative samples come from the persistent chains (which advance and
    stay in the model's state), log Z is the AIS estimate refreshed on request, and one VIMCO step gives
    finite gradients for every parameter group."""
    model = build_model("rbm_vae", seeds=(0, 1), chains=50, gibbs_sweeps=2, ais_chains=20, ais_steps=20)
    assert not model.exact_prior() and model.chains.v.shape == (2, 50, 100)
    before = model.chains.v.clone()
    negatives = model.negative_samples()
    assert negatives.shape == (50, 2, 200) and int(model.chains.steps) == 2
    assert not torch.equal(model.chains.v, before) and "chains.v" in model.state_dict()
    with torch.no_grad():
        model.rbm.W.mul_(0)  # W = 0: log Z has the closed form, which the AIS estimate must reproduce
    closed = torch.nn.functional.softplus(model.rbm.a).sum(-1) + torch.nn.functional.softplus(model.rbm.b).sum(-1)
    torch.testing.assert_close(model.estimate_log_partition(), closed.detach(), rtol=0, atol=1e-4)
    torch.testing.assert_close(model.log_partition(), closed.detach(), rtol=0, atol=1e-4)
    x = model.sample(4)[1]
    est = estimators.get("vimco").bind(model)
    grads, _, objective = est.gradients(model, x, 3)
    assert all(bool(torch.isfinite(g).all()) for g in grads) and objective.shape == (2,)
    assert all(bool(g.abs().sum() > 0) for g in grads[:3])  # the RBM's W, a, b get gradients


def test_bad_rbm_options_are_one_line():
    for options, message in (({"groups": 3}, "groups must be 1"), ({"chains": 0}, "chains must be at least 1"),
                             ({"gibbs_sweeps": -1}, "gibbs_sweeps must be at least 1"),
                             ({"ais_steps": 0}, "at least 2 temperatures"), ({"latent_bits": 1}, "at least 2"),
                             ({"arch": "conv"}, "unknown RBM-VAE arch"), ({"rbm_hidden": -1}, "rbm_hidden must be 0")):
        with pytest.raises(ValueError, match=message) as err:
            build_model("rbm_vae", seeds=(0,), **options)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="at most 16 latent bits"):
        build_model("rbm_vae_tiny", seeds=(0,), latent_bits=18)


def test_the_rbm_prior_papers_200_plus_400_prior_trains(rng):
    """rbm_hidden = 400 over 200 latents (the RBM-prior paper's MNIST prior): negatives are the chains'
    visible states (the latents), log p*(z) = −F(z), and one VIMCO step gives finite gradients."""
    model = build_model("rbm_vae", seeds=(0,), rbm_hidden=400, chains=20, gibbs_sweeps=1, ais_chains=10, ais_steps=10)
    assert (model.rbm.n_visible, model.rbm.n_hidden) == (200, 400) and not model.exact_prior()
    assert model.negative_samples().shape == (20, 1, 200)
    x = model.sample(3)[1]
    z = model.guide(x).sample((2,))
    torch.testing.assert_close(model.log_prior_unnormalised(z), -model.rbm.free_energy(z.movedim(-2, 0)).movedim(0, -1))
    grads, _, objective = estimators.get("vimco").bind(model).gradients(model, x, 2)
    assert all(bool(torch.isfinite(g).all()) for g in grads) and bool(torch.isfinite(objective).all())
