"""Specific checks of the factorial-categorical estimators IndeCateR, categorical DisARM, CARMS and the unordered
set estimator (their exact-gradient checks on ``gmm`` and ``sbn_categorical_tiny`` are in tests/test_unbiased.py).

Statistical tests state their seed, draw count and false-alarm rate; the whole file runs in well under a
minute on two CPUs."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from estibench import estimators
from estibench.estimators.base import Estimate, Estimator, IncompatibleError, batch_loss
from estibench.estimators.carms import carms_sample, orders, pair_pmf, pair_ratio, sampled_pair_pmf
from estibench.estimators.categorical_disarm import antithetic_pair, log_pair_weight, stick_breaking_logits
from estibench.estimators.onehot import NEEDS, ONEHOT_LATENTS, elbo_terms, log_probs, onehot_sample
from estibench.estimators.unordered_set import log_set_ratios, stochastic_beam_search
from estibench.harness.checks import FAMILY_ALPHA, draws, fixtures, sample_data, unbiased_test
from estibench.harness.gradients import gradient_draws
from estibench.harness.runner import build_model


def tiny(seeds):
    return build_model("sbn_categorical_tiny", seeds=seeds)


def chi_square_ok(counts: torch.Tensor, probs: torch.Tensor, alpha: float) -> bool:
    """Pearson's χ² goodness of fit of ``counts`` to ``probs`` at level ``alpha`` (cells of expected count ≥ 5)."""
    from scipy.stats import chi2
    n = counts.sum()
    expected = n * probs
    stat = float(((counts - expected) ** 2 / expected).sum())
    return stat < chi2.ppf(1 - alpha, counts.numel() - 1)


# -- IndeCateR -----------------------------------------------------------------------------------------
def test_indecater_on_one_variable_is_the_exact_elbo_gradient():
    """D = 1 (the GMM): the sum over the C categories is the whole expectation, so every draw equals the exact
    φ-gradient of the ELBO (enumeration, harness.exact), to float32 precision."""
    fx = fixtures()["gmm"]
    torch.manual_seed(0)
    d, exact = draws(fx.make, "indecater", fx.data(), 2, 8)
    tol = 1e-4 * float(exact.abs().max())
    assert torch.allclose(d, exact.expand_as(d), rtol=1e-4, atol=tol), (d - exact).abs().max()


class _OnehotRloo(Estimator):
    """Reference: REINFORCE with the leave-one-out baseline on the ELBO, score part only (no direct term)."""
    latent_types, needs, min_particles = ONEHOT_LATENTS, NEEDS, 2
    guide_target = generative_target = "elbo"
    registry_name = "onehot_rloo"

    def surrogate(self, model, x, K):
        ell = log_probs(model, x)
        y = onehot_sample(ell, K)
        log_p, lq = elbo_terms(model, x, ell, y)
        f = (log_p - lq).detach()
        signal = f - (f.sum(0, keepdim=True) - f) / (K - 1)
        return Estimate(batch_loss((signal * lq + log_p).mean(0)), f.mean(0).mean(-1))


def _total_variance(make, estimator, x, K, n):
    model = make((3,) * n)
    est = estimator.bind(model)
    d = gradient_draws(model, est, x.expand(n, *x.shape[1:]).contiguous(), K, 1)[0]
    return float(d.var(0).sum())


def test_indecater_has_lower_variance_than_rloo_at_equal_evaluations():
    """sbn_categorical_tiny (D = 3, C = 3), seed-3 parameters, 3 points (seed 0), torch seed 0, n = 1000 draws
    each: IndeCateR with K = 1 (1 + D·C = 10 evaluations of f) against RLOO with K = 10 (10 evaluations); the
    total φ-gradient variance of IndeCateR is below a tenth of RLOO's (measured ≈ 0.01, printed)."""
    x = sample_data(tiny, 3, 0)
    torch.manual_seed(0)
    v_ind = _total_variance(tiny, estimators.get("indecater"), x, 1, 1000)
    v_rloo = _total_variance(tiny, _OnehotRloo(), x, 10, 1000)
    print(f"IndeCateR / RLOO variance ratio: {v_ind / v_rloo:.3f}")
    assert v_ind < 0.1 * v_rloo, (v_ind, v_rloo)


# -- categorical DisARM ----------------------------------------------------------------------------------
LOGITS = torch.tensor([[0.3, -1.0, 2.0, 0.3, -0.2], [0.0, 0.0, 0.0, 0.0, 0.0], [4.0, -3.0, 1.0, 1.0, 0.5]])


def _pairs(n, seed=0):
    """n antithetic pairs for the three rows of LOGITS (one with a tie, one uniform, one peaked): the sorted
    categories mapped back, plus the sorted indices and the logits λ for the weights."""
    ell = torch.log_softmax(LOGITS, -1)[None, :, None, :]            # [R=1, B=3, D=1, C=5]
    order = torch.argsort(ell, -1)
    lam = stick_breaking_logits(ell.gather(-1, order))
    torch.manual_seed(seed)
    _, _, z, zt = antithetic_pair(lam, n)
    o = order.expand(n, *order.shape)
    return ell, o.gather(-1, z[..., None])[..., 0], o.gather(-1, zt[..., None])[..., 0], lam, z, zt


def test_antithetic_pairs_have_marginals_q():
    """Each of the coupled draws is distributed as q (χ² goodness of fit on every row of LOGITS, n = 20,000
    pairs, torch seed 0, α = FAMILY_ALPHA / 6 per test: 3 rows × 2 marginals); and the pair differs more often
    than two independent draws would."""
    n = 20000
    ell, z, zt, *_ = _pairs(n)
    q = ell.exp()[0, :, 0]
    for row in range(3):
        for draw in (z, zt):
            counts = torch.bincount(draw[:, 0, row, 0], minlength=5).double()
            assert chi_square_ok(counts, q[row].double(), FAMILY_ALPHA / 6), (row, counts, q[row])
        differ = float((z[:, 0, row, 0] != zt[:, 0, row, 0]).double().mean())
        assert differ > 1 - float((q[row] ** 2).sum()), row


def test_importance_weight_is_the_product_over_the_coupling():
    """w(z, z̃) = q(z) q(z̃) / p(z, z̃): the frequency of every ordered pair z ≠ z̃ (sorted indices) under the
    coupling matches q(z) q(z̃) / w(z, z̃), the pairs z = z̃ taking the rest (χ² over the cells, those expected
    below 5 pooled; each LOGITS row, n = 20,000 pairs, torch seed 1, α = FAMILY_ALPHA / 3 per row)."""
    n, C = 20000, 5
    ell, _, _, lam, zs, zts = _pairs(n, seed=1)
    q_sorted = ell.gather(-1, torch.argsort(ell, -1)).exp()[0, :, 0].double()        # [3, C]
    cells = [(i, j) for i, j in itertools.permutations(range(C), 2)]
    a = torch.tensor([i for i, _ in cells]).reshape(-1, 1, 1, 1).expand(-1, 1, 3, 1)
    b = torch.tensor([j for _, j in cells]).reshape(-1, 1, 1, 1).expand(-1, 1, 3, 1)
    w = torch.exp(log_pair_weight(lam, a, b)).double()[:, 0, :, 0]                     # [cells, 3]
    for row in range(3):
        probs = torch.stack([q_sorted[row, i] * q_sorted[row, j] / w[k, row] for k, (i, j) in enumerate(cells)])
        counts = torch.stack([((zs[:, 0, row, 0] == i) & (zts[:, 0, row, 0] == j)).sum() for i, j in cells]).double()
        probs = torch.cat([probs, 1 - probs.sum(0, keepdim=True)])
        counts = torch.cat([counts, (zs[:, 0, row, 0] == zts[:, 0, row, 0]).sum().double()[None]])
        small = probs * n < 5
        if bool(small.any()):
            probs = torch.cat([probs[~small], probs[small].sum(0, keepdim=True)])
            counts = torch.cat([counts[~small], counts[small].sum(0, keepdim=True)])
        assert chi_square_ok(counts, probs, FAMILY_ALPHA / 3), (row, counts, probs * n)


def test_stick_breaking_variant_is_unbiased():
    """The ``sb`` variant (not the default, so not in tests/test_unbiased.py): sbn_categorical_tiny, K = 2,
    n = 2000 draws, α = FAMILY_ALPHA over the φ coordinates (Bonferroni), torch seed 0."""
    fx = fixtures()["sbn_categorical_tiny"]
    torch.manual_seed(0)
    d, exact = draws(fx.make, "categorical_disarm", fx.data(), 2, 2000, variant="sb")
    ok, zmax, threshold = unbiased_test(d, exact)
    assert ok, (zmax, threshold)


# -- the unordered set estimator -------------------------------------------------------------------------
def _ordered_probability(p, seq, excluded=()):
    out, used = 1.0, sum(p[e] for e in excluded)
    for s in seq:
        out *= p[s] / (1.0 - used)
        used += p[s]
    return out


def test_set_ratios_match_enumerated_orderings():
    """log R(S, s) and log R^{D∖s}(S, s') by quadrature against sums over the orderings of the sets (relative
    error < 1e-8), for random distributions over 12 states of several temperatures, K = 2..5."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(12):
        p = torch.softmax(torch.randn(12, generator=gen, dtype=torch.float64) * [0.5, 2.0, 6.0][trial % 3], 0)
        K = 2 + trial % 4
        S = torch.randperm(12, generator=gen)[:K].tolist()
        r1, r2 = log_set_ratios(torch.log(p[S])[:, None], torch.log(1 - p[S].sum())[None])
        P = lambda T, ex=(): sum(_ordered_probability(p.tolist(), s, ex) for s in itertools.permutations(T))  # noqa
        for i, s in enumerate(S):
            rest = [t for t in S if t != s]
            assert abs(float(r1[i, 0].exp()) / (P(rest, (s,)) / P(S)) - 1) < 1e-8
            for j, t in enumerate(S):
                if t != s:
                    want = P([u for u in rest if u != t], (s, t)) / P(rest, (s,))
                    assert abs(float(r2[i, j, 0].exp()) / want - 1) < 1e-8


def test_beam_search_draws_distinct_states_with_the_right_inclusion_probabilities():
    """Stochastic beam search over D = 3 variables of C = 3 states (27 states), K = 3, fixed random guide
    (seed 0): no set has repeats (and K = 27 returns every state); the frequency with which each state is in the
    set matches its exact inclusion probability (a sum over the ordered triples of Gumbel-top-k), z-test per
    state with Bonferroni over the 27 states, family false-alarm rate FAMILY_ALPHA, n = 20,000 sets, torch
    seed 0."""
    gen = torch.Generator().manual_seed(0)
    ell = torch.log_softmax(torch.randn(3, 3, generator=gen, dtype=torch.float64) * 1.5, -1)
    n, K = 20000, 3
    torch.manual_seed(0)
    codes = stochastic_beam_search(ell.expand(1, n, 3, 3), K)[:, 0]   # [K, n, D]
    flat = (codes * torch.tensor([9, 3, 1])).sum(-1)                   # state index, [K, n]
    assert bool((flat[0] != flat[1]).all() and (flat[0] != flat[2]).all() and (flat[1] != flat[2]).all())
    every = stochastic_beam_search(ell.expand(1, 4, 3, 3), 27)[:, 0]
    assert all(len({tuple(c) for c in every[:, b].tolist()}) == 27 for b in range(4))
    states = list(itertools.product(range(3), repeat=3))
    p = [float(sum(ell[d, s[d]] for d in range(3)).exp()) for s in states]
    inclusion = [0.0] * 27
    for seq in itertools.permutations(range(27), K):
        pr = _ordered_probability(p, seq)
        for s in seq:
            inclusion[s] += pr
    freq = F.one_hot(flat, 27).sum((0, 1)).double() / n
    pi = torch.tensor(inclusion, dtype=torch.float64)
    assert abs(float(pi.sum()) - K) < 1e-9
    from scipy.stats import norm
    z = (freq - pi) / torch.sqrt(pi * (1 - pi) / n)
    assert float(z.abs().max()) < norm.ppf(1 - FAMILY_ALPHA / (2 * 27)), z


def test_unordered_set_refuses_what_it_cannot_do():
    """One line each: K = 1 (no baseline) and K above the number of states C^D."""
    model = tiny((0,))
    est = estimators.get("unordered_set")
    with pytest.raises(IncompatibleError, match="at least 2"):
        est.check(model, 1)
    with pytest.raises(IncompatibleError, match=r"C\^D = 3\^3 = 27"):
        est.check(model, 28)
    est.check(model, 27)


def test_unordered_set_with_the_whole_space_is_exact():
    """K = C^D (S is every state): the ratios are 1, so the objective is the exact ELBO and the φ-gradient the
    exact ELBO gradient, in every draw (sbn_categorical_tiny, 27 states, 4 draws)."""
    fx = fixtures()["sbn_categorical_tiny"]
    torch.manual_seed(0)
    d, exact = draws(fx.make, "unordered_set", fx.data(), 27, 4)
    tol = 1e-4 * float(exact.abs().max())
    assert torch.allclose(d, exact.expand_as(d), rtol=1e-3, atol=tol), (d - exact).abs().max()


# -- CARMS -------------------------------------------------------------------------------------------------
def test_carms_orders_put_every_pair_at_the_ends_once():
    """Π: C(C − 1)/2 permutations of the C categories, each unordered pair {a < b} exactly once as (first, last)."""
    for C in (2, 3, 5, 10):
        pi = orders(C)
        assert pi.shape == (C * (C - 1) // 2, C)
        assert bool((torch.sort(pi, -1).values == torch.arange(C)).all())
        ends = sorted(zip(pi[:, 0].tolist(), pi[:, -1].tolist()))
        assert ends == list(itertools.combinations(range(C), 2))


def test_carms_pair_pmf_has_marginals_q_and_matches_the_sampler():
    """Q: rows and columns sum to q (1e-9), positive off the diagonal; the sampler's ordered pairs (draws 1 and 2
    of K) follow Q (χ² over the 25 cells, those expected below 5 pooled; n = 20,000 per K, torch seed 2,
    α = FAMILY_ALPHA / 9: 3 rows × K ∈ {2, 3, 6}); each draw is marginally q (implied by the pair cells' sums)."""
    n, C = 20000, 5
    gen = torch.Generator().manual_seed(2)
    q = torch.softmax(torch.randn(3, C, generator=gen, dtype=torch.float64) * torch.tensor([[0.5], [2.0], [4.0]]), -1)
    torch.manual_seed(2)
    for K in (2, 3, 6):
        table = pair_pmf(q, K)
        assert torch.allclose(table.sum(-1), q, atol=1e-9) and torch.allclose(table.sum(-2), q, atol=1e-9)
        assert float((table + torch.eye(C, dtype=table.dtype)).min()) > 0
        z = carms_sample(q.expand(n, 3, C), K)                               # [K, n, 3]
        for row in range(3):
            counts = torch.bincount(z[0, :, row] * C + z[1, :, row], minlength=C * C).double()
            probs = table[row].reshape(-1)
            impossible = probs < 1e-12                                         # e.g. (i, i) for small q_i at K = 2
            assert float(counts[impossible].sum()) == 0, (K, row)
            probs, counts = probs[~impossible], counts[~impossible]
            order = torch.argsort(probs)                                       # pool the smallest cells up to
            m = int((torch.cumsum(probs[order] * n, 0) < 5).sum()) + 1          # an expected count of 5
            if m > 1:
                pool, rest = order[:m], order[m:]
                probs = torch.cat([probs[rest], probs[pool].sum().reshape(1)])
                counts = torch.cat([counts[rest], counts[pool].sum().reshape(1)])
            assert chi_square_ok(counts, probs, FAMILY_ALPHA / 9), (K, row, counts, probs * n)


def _carms_expectation(q, f, K, variant):
    """E[ĝ] for one variable (D = 1) by summing over the ordered pairs (i, j) with their probability Q(i, j):
    Σ_{i,j} Q(i, j) r(i, j) (f(i) − f(j)) (e_i − q), r as the estimator computes it."""
    C = q.shape[-1]
    i, j = torch.meshgrid(torch.arange(C), torch.arange(C), indexing="ij")
    z = torch.stack([i.reshape(-1), j.reshape(-1)])                           # [2, C²] the pairs as K = 2 "draws"
    table = pair_pmf(q, K).reshape(-1)
    # the ratio for pair (i, j) from pair_ratio on a batch of C² variables holding those pairs as draws 1 and 2;
    # K enters only through Q, so the batch of two draws is filled up to K with copies of draw 2
    zz = torch.cat([z, z[1:].expand(K - 2, -1)]) if K > 2 else z
    r = pair_ratio(q.expand(C * C, C), zz, K, variant)[0, 1]                  # [C²]
    score = F.one_hot(z[0], C).double() - q
    return ((table * r * (f[z[0]] - f[z[1]]))[:, None] * score).sum(0)


def test_carms_exact_ratio_is_unbiased_and_the_code_ratio_is_not():
    """Exact, not statistical: with one variable, the estimator's expectation Σ Q r (f(i) − f(j))(e_i − q) equals
    ∇_η E_q f = Σ_i q_i f_i (e_i − q) to 1e-9 with the exact ratio, for peaked and flat q and K ∈ {2, 3, 5}; the
    reference code's smoothed, clipped ratio (``carms_code``) is not: off by more than 0.05 % of the gradient's
    norm at every one of these points (measured 0.12–1.3 %, largest at K = 2)."""
    gen = torch.Generator().manual_seed(3)
    C = 6
    for scale in (0.5, 3.0):
        q = torch.softmax(torch.randn(C, generator=gen, dtype=torch.float64) * scale, -1)
        f = torch.randn(C, generator=gen, dtype=torch.float64) * 5
        exact = (q * f)[:, None] * (torch.eye(C, dtype=torch.float64) - q)
        exact = exact.sum(0)
        for K in (2, 3, 5):
            got = _carms_expectation(q, f, K, "exact")
            assert torch.allclose(got, exact, atol=1e-9), (scale, K, got, exact)
            code = _carms_expectation(q, f, K, "carms_code")
            assert float((code - exact).norm()) > 5e-4 * float(exact.norm()), (scale, K, code, exact)


def test_carms_ratio_is_the_same_from_the_table_and_from_the_sampled_pairs():
    """``pair_ratio`` reads Q from the C × C table when K > C and from the sampled pairs otherwise: both give
    q(z_k) q(z_j) / Q(z_k, z_j) off the equal pairs (1e-12), 0 on them (C = 3, K = 5, torch seed 4)."""
    torch.manual_seed(4)
    q = torch.softmax(torch.randn(7, 2, 3, dtype=torch.float64) * 2, -1)
    K = 5
    z = carms_sample(q, K)
    table_path = pair_ratio(q, z, K)                                          # K > C: the table
    qz = q[None].expand(K, *q.shape).gather(-1, z[..., None])[..., 0]
    direct = qz[:, None] * qz[None] / sampled_pair_pmf(q, z, K)
    same = z[:, None] == z[None]
    assert bool((table_path[same] == 0).all())
    assert torch.allclose(table_path[~same], direct[~same], rtol=1e-12, atol=0)
