"""The GMM Concrete scores the RWS code's relaxed densities (the paper's "weighted average of
likelihood parameters"), and ``relaxation=mass`` keeps the mixture of log-masses.

Deterministic checks (fixed torch seeds): the estimator's relaxed bound equals the bound written
out with torch's own distributions on the same draws — log q̃ = RelaxedOneHotCategorical(τ,
logits).log_prob(z̃), log p̃ = OneHotCategorical(logits = prior).log_prob(z̃) + Normal(Σ_c z̃_c μ_c,
σ).log_prob(x) — and the prior term has no pathwise gradient through z̃.
"""
import math

import pytest
import torch
from torch.distributions import Normal, OneHotCategorical, RelaxedOneHotCategorical

from estibench import estimators
from estibench import models
from estibench.estimators.base import IncompatibleError


def setup(relaxation="reference", tau=0.7, seed=3):
    model = models.get("gmm", seeds=(0, 1))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        x = model.true_model().sample(6)[1]
    est = estimators.get("concrete", relaxation=relaxation).bind(model)
    est.temperature = tau
    return model, est, x


def test_default_concrete_is_the_reference_relaxation():
    assert estimators.get("concrete").relaxation == "reference"
    model, est, x = setup()
    with torch.random.fork_rng():
        torch.manual_seed(11)
        bound = est.surrogate(model, x, 4).objective
    with torch.random.fork_rng():
        torch.manual_seed(11)
        z, log_q = est.relaxed_sample(model.guide(x).logits, 4)
    logits = model.guide(x).logits
    tau = torch.tensor(0.7)
    ref_q = RelaxedOneHotCategorical(tau, logits=logits, validate_args=False).log_prob(z)
    ref_prior = OneHotCategorical(logits=model.prior_logits().unsqueeze(-2), validate_args=False).log_prob(z)
    ref_lik = Normal((z * model.means).sum(-1), model.std).log_prob(x)
    ref = (torch.logsumexp(ref_prior + ref_lik - ref_q, 0) - math.log(4)).mean(-1)
    assert torch.allclose(log_q, ref_q, atol=1e-4, rtol=1e-5)
    assert torch.allclose(bound, ref, atol=1e-4, rtol=1e-5)
    # the prior is the hard mass at argmax z̃: no pathwise gradient; the likelihood has one
    zz = z.detach().requires_grad_(True)
    g_prior, = torch.autograd.grad(OneHotCategorical(logits=model.prior_logits().unsqueeze(-2), validate_args=False).log_prob(zz).sum(),
                                   zz, allow_unused=True)
    assert g_prior is None or float(g_prior.abs().max()) == 0.0
    g_joint, = torch.autograd.grad(model.relaxed_log_joint(x, zz).sum(), zz)
    expected = ((x - (zz * model.means).sum(-1)) / model.std ** 2).unsqueeze(-1) * model.means
    assert torch.allclose(g_joint, expected.detach(), atol=1e-4, rtol=1e-4)


def test_mass_relaxation_is_the_mixture_of_log_masses():
    model, est, x = setup("mass")
    with torch.random.fork_rng():
        torch.manual_seed(11)
        z, log_q = est.relaxed_sample(model.guide(x).logits, 4)
    assert torch.allclose(log_q, (z * model.guide(x).logits).sum(-1))
    table = model.log_joint_table(x)
    assert torch.allclose(model.relaxed_log_joint_mass(x, z), (z * table).sum(-1), atol=1e-4)
    assert not torch.allclose(model.relaxed_log_joint_mass(x, z), model.relaxed_log_joint(x, z), atol=1e-2)


def test_relaxation_option_is_checked():
    with pytest.raises(IncompatibleError, match="unknown relaxation"):
        estimators.get("concrete", relaxation="masses")


def test_reference_density_is_finite_at_small_temperature():
    """Evaluated in log space: no underflow of z̃ (torch's log_prob of z̃ itself returns -inf/NaN there)."""
    model, est, x = setup(tau=0.05)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out = est.surrogate(model, x, 5)
    assert torch.isfinite(out.loss) and torch.isfinite(out.objective).all()
