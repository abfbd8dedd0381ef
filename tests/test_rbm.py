"""The RBM component (models/rbm.py) against exact enumeration: log Z exactly, by AIS and reverse AIS
(bracketing), the W = 0 closed form, the Gibbs sampler's distribution (χ²), persistent chains, and
RAISE's conservativeness.  Every statistical test states its seed, sample size and false-alarm rate."""
import math

import pytest
import torch
from scipy import stats

from estibench.models.rbm import RBM, PersistentChains, all_states, check_schedule, linear_schedule


def coupled_rbm(n_v, n_h, seeds=(0,), scale=0.6, bias=0.5, seed=1):
    """An RBM with coupling strong enough that AIS has work to do (|W| ~ U(±scale), biases N(0, bias))."""
    rbm = RBM(seeds, n_v, n_h)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        rbm.W.copy_((torch.rand(rbm.W.shape, generator=gen) * 2 - 1) * scale)
        rbm.a.copy_(torch.randn(rbm.a.shape, generator=gen) * bias)
        rbm.b.copy_(torch.randn(rbm.b.shape, generator=gen) * bias)
    return rbm


def brute_log_z(rbm):
    """log Σ_{v,h} e^{−E(v,h)} over every joint state (independent of the free-energy code)."""
    v = all_states(rbm.n_visible)
    h = all_states(rbm.n_hidden)
    out = []
    for r in range(rbm.replicates):
        W, a, b = rbm.W[r].double(), rbm.a[r].double(), rbm.b[r].double()
        neg_e = (v @ a)[:, None] + (h @ b)[None, :] + v @ W @ h.T
        out.append(torch.logsumexp(neg_e.flatten(), 0))
    return torch.stack(out).detach()


def test_exact_log_z_matches_brute_force_on_both_sides_and_per_replicate():
    for n_v, n_h in ((5, 7), (7, 5)):  # enumerates the visible side, then the hidden side
        rbm = coupled_rbm(n_v, n_h, seeds=(0, 1, 2))
        torch.testing.assert_close(rbm.log_partition_exact(chunk=16), brute_log_z(rbm), rtol=0, atol=1e-10)
        double = coupled_rbm(n_v, n_h, seeds=(0, 1, 2)).double()
        torch.testing.assert_close(double.log_partition(chunk=16), brute_log_z(rbm), rtol=0, atol=1e-10)


def test_the_differentiable_log_z_has_the_gradient_e_p_of_minus_grad_energy():
    """∇ log Z = E_p[−∇E(v, h)]: for W, E_p[v hᵀ]; for a, E_p[v]; for b, E_p[h] (exact by enumeration)."""
    rbm = coupled_rbm(4, 5).double()
    rbm.log_partition().sum().backward()
    v, h = all_states(4), all_states(5)
    neg_e = (v @ rbm.a[0])[:, None] + (h @ rbm.b[0])[None, :] + v @ rbm.W[0] @ h.T
    p = torch.softmax(neg_e.flatten(), 0).reshape(16, 32).detach()
    torch.testing.assert_close(rbm.a.grad[0], p.sum(1) @ v)
    torch.testing.assert_close(rbm.b.grad[0], p.sum(0) @ h)
    torch.testing.assert_close(rbm.W.grad[0], v.T @ p @ h)


def test_zero_coupling_reproduces_the_closed_form_including_the_n_h_log_2_term():
    rbm = coupled_rbm(6, 9, seeds=(0, 1))
    with torch.no_grad():
        rbm.W.zero_()
    closed = (torch.nn.functional.softplus(rbm.a.double()).sum(-1)
              + torch.nn.functional.softplus(rbm.b.double()).sum(-1))
    torch.testing.assert_close(rbm.log_partition_exact(), closed.detach(), rtol=0, atol=1e-12)
    with torch.no_grad():
        rbm.b.zero_()  # then the base-rate model at the visible biases is the RBM itself: AIS is exact
    log_z, log_w = rbm.log_partition_ais(chains=5, steps=3, generator=torch.Generator().manual_seed(0))
    exact = torch.nn.functional.softplus(rbm.a.double()).sum(-1) + 9 * math.log(2.0)
    torch.testing.assert_close(log_z, exact.detach(), rtol=0, atol=1e-12)
    assert torch.all(log_w.abs() < 1e-12)


def test_ais_is_within_a_tenth_of_a_nat_of_exact_log_z_on_a_10x10_rbm():
    """Seed 0; 1,000 chains × 1,000 linear temperatures, 3 replicates with different couplings."""
    rbm = coupled_rbm(10, 10, seeds=(0, 1, 2), scale=0.8)
    exact = rbm.log_partition_exact()
    log_z, _ = rbm.log_partition_ais(chains=1000, steps=1000, generator=torch.Generator().manual_seed(0))
    assert torch.all((log_z - exact).abs() < 0.1), (log_z, exact)


def test_forward_and_reverse_ais_bracket_exact_log_z_over_repeated_runs():
    """Short runs (one chain, 6 temperatures) on a strongly coupled 10 × 10 RBM, so the bounds' biases
    are visible: over 100 runs (seed 1) the forward mean lies below exact log Z and the reverse mean
    above, each by more than 3.1 standard errors (one-sided, false-alarm rate 1e-3 each were the bound
    false; measured: about 8 standard errors each)."""
    rbm = coupled_rbm(10, 10, scale=2.0, seed=3)
    exact = float(rbm.log_partition_exact())
    gen = torch.Generator().manual_seed(1)
    forward, reverse = [], []
    for _ in range(100):
        forward.append(float(rbm.log_partition_ais(chains=1, steps=5, generator=gen)[0]))
        samples, _ = rbm.sample_exact(1, generator=gen)
        reverse.append(float(rbm.log_partition_reverse_ais(samples, steps=5, generator=gen)[0]))
    f, r = torch.tensor(forward, dtype=torch.float64), torch.tensor(reverse, dtype=torch.float64)
    se_f, se_r = f.std() / math.sqrt(len(f)), r.std() / math.sqrt(len(r))
    assert (exact - f.mean()) / se_f > 3.1, (exact, f.mean(), se_f)
    assert (r.mean() - exact) / se_r > 3.1, (exact, r.mean(), se_r)


def test_block_gibbs_matches_the_exact_distribution_of_a_4_plus_4_rbm():
    """χ² over the 256 joint states: 20,000 chains (seed 2) after 50 sweeps from random starts,
    against exact enumeration; rejected at p < 1e-3 (the false-alarm rate)."""
    rbm = coupled_rbm(4, 4, scale=1.0, seed=5)
    gen = torch.Generator().manual_seed(2)
    v, h = rbm.gibbs(rbm.random_visible(20000, generator=gen), sweeps=50, generator=gen)
    codes = (v[:, 0] @ (2 ** torch.arange(4.0)) * 16 + h[:, 0] @ (2 ** torch.arange(4.0))).long()
    counts = torch.bincount(codes, minlength=256).double()
    states_v, states_h = all_states(4), all_states(4)
    W, a, b = rbm.W[0].double(), rbm.a[0].double(), rbm.b[0].double()
    logp = ((states_v @ a)[:, None] + (states_h @ b)[None, :] + states_v @ W @ states_h.T).flatten()
    p = torch.softmax(logp, 0).detach()
    chi2, pvalue = stats.chisquare(counts.numpy(), (p * counts.sum()).numpy())
    assert pvalue > 1e-3, (chi2, pvalue)


def test_exact_samples_match_the_exact_distribution():
    """χ² over the 2^5 visible states of 20,000 exact samples (seed 4), false-alarm rate 1e-3."""
    rbm = coupled_rbm(5, 8, scale=0.9, seed=7)
    v, _ = rbm.sample_exact(20000, generator=torch.Generator().manual_seed(4))
    counts = torch.bincount((v[:, 0] @ (2 ** torch.arange(5.0))).long(), minlength=32).double()
    p = torch.softmax(-rbm.free_energy(all_states(5)[:, None, :].float())[:, 0].double(), 0).detach()
    assert stats.chisquare(counts.numpy(), (p * counts.sum()).numpy()).pvalue > 1e-3


def test_persistent_chains_continue_across_calls_and_live_in_the_state_dict():
    rbm = coupled_rbm(6, 4, seeds=(0, 1))
    owner = torch.nn.Module()
    owner.chains = PersistentChains(rbm, chains=7, seed=3)
    start = owner.chains.states.clone()
    gen = torch.Generator().manual_seed(0)
    first, _ = owner.chains.advance(rbm, sweeps=2, generator=gen)
    assert torch.equal(owner.chains.states, first) and not torch.equal(first, start)
    assert owner.chains.v.shape == (2, 7, 6)  # stored replicate-first
    state = {k: t.clone() for k, t in owner.state_dict().items()}
    assert {"chains.v", "chains.steps"} <= set(state) and int(state["chains.steps"]) == 2
    # continuing from the stored states is the same as running the sampler from them by hand
    second, _ = owner.chains.advance(rbm, sweeps=3, generator=torch.Generator().manual_seed(9))
    by_hand, _ = rbm.gibbs(first, sweeps=3, generator=torch.Generator().manual_seed(9))
    assert torch.equal(second, by_hand)
    # a restored owner continues from the saved states, not from a fresh start
    restored = torch.nn.Module()
    restored.chains = PersistentChains(rbm, chains=7, seed=99)
    restored.load_state_dict(state)
    again, _ = restored.chains.advance(rbm, sweeps=3, generator=torch.Generator().manual_seed(9))
    assert torch.equal(again, by_hand) and int(restored.chains.steps) == 5


def test_raise_is_conservative_on_samples_of_the_model():
    """For v drawn from the RBM, E[log p̂_RAISE(v)] ≤ E[log p(v)] (Gibbs' inequality and Jensen).
    400 exact samples (seed 6) of a strongly coupled 8 × 8 RBM, one reverse chain × 6 temperatures
    each: the mean RAISE estimate lies below the mean exact log p(v), by more than 3.1 standard errors
    of the paired differences (false-alarm rate 1e-3 were it not conservative; measured: about 9.5);
    with a long schedule (20 chains × 500 temperatures) it comes within 0.05 nat."""
    rbm = coupled_rbm(8, 8, scale=2.0, seed=11)
    gen = torch.Generator().manual_seed(6)
    v, _ = rbm.sample_exact(400, generator=gen)
    exact = (-rbm.free_energy(v.double()) - rbm.log_partition_exact()).detach()[:, 0]
    short = rbm.log_prob_raise(v, chains=1, steps=5, generator=gen)[:, 0]
    diff = short - exact
    assert diff.mean() / (diff.std() / math.sqrt(len(diff))) < -3.1, diff.mean()
    long = rbm.log_prob_raise(v[:50], chains=20, steps=500, generator=gen)[:, 0]
    assert (long - exact[:50]).mean().abs() < 0.05


def test_annealed_estimates_are_vectorised_over_replicates():
    """Replicate r of a stacked RBM gives the same AIS estimate as an RBM holding replicate r alone,
    given the same random draws (a replicate never mixes with another)."""
    rbm = coupled_rbm(6, 5, seeds=(0, 1, 2))
    exact = rbm.log_partition_exact()
    log_z, log_w = rbm.log_partition_ais(chains=200, steps=200, generator=torch.Generator().manual_seed(0))
    assert log_z.shape == (3,) and log_w.shape == (200, 3)
    assert torch.all((log_z - exact).abs() < 0.1)
    assert len(set(exact.tolist())) == 3  # the replicates differ


def test_bad_settings_are_one_line_errors():
    rbm = coupled_rbm(4, 4)
    for call, message in ((lambda: linear_schedule(0), "at least 2 temperatures"),
                          (lambda: check_schedule([0.0]), "at least 2 temperatures"),
                          (lambda: check_schedule([0.0, 0.7, 0.5, 1.0]), "rise strictly"),
                          (lambda: rbm.log_partition_ais(chains=0), "at least one chain"),
                          (lambda: rbm.log_prob_raise(rbm.random_visible(2), chains=-1), "at least one chain"),
                          (lambda: rbm.gibbs(rbm.random_visible(2), sweeps=0), "at least one sweep"),
                          (lambda: PersistentChains(rbm, chains=-3), "at least one chain"),
                          (lambda: RBM((0,), 30, 30).log_partition_exact(), "use AIS")):
        with pytest.raises(ValueError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
