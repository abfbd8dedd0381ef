"""The normalised-importance-sampling view of IWAE and RWS (Bachman & Precup, "Training Deep Generative
Models: Variations on a Theme", ``002_…`` §3 and Eqs. 21–23): identities on enumerable models, and the ESS
and resampling-entropy metrics every multi-particle cell logs (harness.metrics.normalised_weight_diagnostics).

Models: the GMM (20 states) and ``sbn_tiny`` (two layers of 4 bits); K = 5 particles; torch seed 0."""
import math
import os

import pandas as pd
import pytest
import torch

from estibench.estimators.base import logmeanexp
from estibench.cli import main
from estibench.harness.metrics import normalised_weight_diagnostics
from estibench.harness.runner import build_model

K = 5


def models_under_test():
    return [("gmm", build_model("gmm", seeds=(0, 1))),
            ("sbn_tiny", build_model("sbn_tiny", seeds=(0, 1), arch="linear2", latent_bits=4))]


@pytest.mark.parametrize("name,model", models_under_test(), ids=lambda v: v if isinstance(v, str) else "")
def test_eq_21_has_the_iwae_gradient_and_differs_by_the_resampling_entropy(name, model, rng):
    """For fixed draws z_1..K ~ q: with f_k = log p(x, z_k) − log q(z_k|x) and w̃ = softmax(f),
    (a) ∇ Σ_k w̃_k f_k (w̃ held constant, Eq. 21) equals ∇ log (1/K) Σ_k e^{f_k} for every parameter (θ and φ:
    the pathwise part of the IWAE gradient; the estimators add their score-function terms on top), and
    (b) log (1/K) Σ_k e^{f_k} = Σ_k w̃_k f_k + E(w̃) − log K with E(w̃) = −Σ_k w̃_k log w̃_k (Eq. 23).
    Float64, 10 data points from the model."""
    model = model.double()
    x = model.sample(10)[1]
    q = model.guide(x)
    z = q.sample((K,))
    params = list(model.parameters())
    f = model.log_joint(x, z) - q.log_prob(z)
    w = torch.softmax(f.detach(), 0)
    bound = logmeanexp(f, 0)
    eq21 = (w * f).sum(0)
    g_bound = torch.autograd.grad(bound.sum(), params, retain_graph=True, allow_unused=True)
    g_eq21 = torch.autograd.grad(eq21.sum(), params, allow_unused=True)
    for a, b in zip(g_bound, g_eq21):
        if a is None:
            assert b is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    entropy = -(w * w.log()).sum(0)
    torch.testing.assert_close(bound.detach(), eq21.detach() + entropy - math.log(K), rtol=0, atol=1e-10)


class EqualWeights(torch.nn.Module):
    """A stand-in whose importance weights are all equal: log p(x, z) = log q(z|x) + 3."""
    replicates = 1

    def guide(self, x):
        return torch.distributions.Independent(torch.distributions.Bernoulli(logits=x), 1)

    def log_joint(self, x, z):
        return self.guide(x).log_prob(z) + 3.0


def test_the_diagnostics_are_bounded_exact_at_equal_weights_and_leave_the_rng_alone(rng):
    """ESS ∈ [1, K] and E(w̃) ∈ [0, log K] on real models; equal weights give ESS = K and E = log K; a
    single dominant weight gives ESS → 1 and E → 0; the global random stream is the same after the call."""
    for _, model in models_under_test():
        x = model.sample(20)[1]
        state = torch.get_rng_state()
        out = normalised_weight_diagnostics(model, x, K)
        assert torch.equal(torch.get_rng_state(), state)
        ess, entropy = out[f"ess[K={K}]"], out[f"resampling_entropy[K={K}]"]
        assert ess.shape == (2,) and ((ess >= 1 - 1e-6) & (ess <= K + 1e-6)).all()
        assert ((entropy >= -1e-6) & (entropy <= math.log(K) + 1e-6)).all()
    x = torch.randn(1, 7, 3)
    out = normalised_weight_diagnostics(EqualWeights(), x, K)
    torch.testing.assert_close(out[f"ess[K={K}]"], torch.full((1,), float(K)))
    torch.testing.assert_close(out[f"resampling_entropy[K={K}]"], torch.full((1,), math.log(K)))

    class OneDominant(EqualWeights):
        def log_joint(self, x, z):  # the all-ones particle outweighs every other by e^200
            return self.guide(x).log_prob(z) + 200.0 * z.prod(-1)

    x = torch.full((1, 4, 2), 50.0)  # q puts all its mass on z = (1, 1): every particle is the dominant one
    out = normalised_weight_diagnostics(OneDominant(), x, K)
    torch.testing.assert_close(out[f"ess[K={K}]"], torch.full((1,), float(K)), rtol=1e-4, atol=0)  # float32 at 200
    # q uniform on 4 states: with m ~ Binomial(5, ¼) all-ones particles the weights are uniform on those m
    # (ESS = m, E = log m), or on all 5 when m = 0; the mean over 4,000 points is within 0.1 (about 5 s.e.)
    x = torch.zeros(1, 4000, 2)
    out = normalised_weight_diagnostics(OneDominant(), x, K)
    p = [math.comb(K, m) * 0.25 ** m * 0.75 ** (K - m) for m in range(K + 1)]
    ess = p[0] * K + sum(p[m] * m for m in range(1, K + 1))
    entropy = p[0] * math.log(K) + sum(p[m] * math.log(m) for m in range(1, K + 1))
    assert abs(float(out[f"ess[K={K}]"]) - ess) < 0.1 and abs(float(out[f"resampling_entropy[K={K}]"]) - entropy) < 0.05


def test_multi_particle_cells_log_them_and_single_particle_cells_do_not(tmp_path):
    out = str(tmp_path)
    argv = ["--suite", "gmm", "--estimators", "vimco,ww", "--particles", "1,2", "--seeds", "1", "--iterations", "4",
            "--eval-every", "2", "--device", "cpu", "--out", out, "--no-report"]
    assert main(argv) == 2  # vimco needs K ≥ 2: refused up front
    assert main([*argv[:2], "--estimators", "ww", *argv[4:]]) == 0
    table = pd.read_csv(os.path.join(out, "metrics.csv"))
    k2 = table[table.particles == 2]
    assert {"ess[K=2]", "resampling_entropy[K=2]"} <= set(k2.metric)
    assert not table[table.particles == 1].metric.str.startswith("ess[").any()
    ess = k2[k2.metric == "ess[K=2]"].value
    assert ((ess >= 1) & (ess <= 2)).all() and len(ess) == 3  # iterations 0, 2, 4


def test_the_resampled_proposal_is_exact():
    """Bachman & Precup's q_p^K (draw K from q, resample one by the normalised weights): the closed form of
    harness.metrics.resampled_proposal against the enumeration of every K-tuple (C = 4 categories, K = 2, 3, 5,
    three random (q, p) pairs from torch seed 0, float64): within 1e-12; K = 1 is q; it sums to one; it tends to the
    posterior as K grows; a category q never proposes keeps mass 0."""
    import itertools
    from estibench.harness.metrics import resampled_proposal
    gen = torch.Generator().manual_seed(0)
    C = 4
    for _ in range(3):
        log_q = torch.log_softmax(3 * torch.randn(C, generator=gen, dtype=torch.float64), -1)
        log_p = 4 * torch.randn(C, generator=gen, dtype=torch.float64)
        q, w = log_q.exp(), (log_p - log_q).exp()
        torch.testing.assert_close(resampled_proposal(log_q, log_p, 1), q, rtol=0, atol=1e-15)
        for K in (2, 3, 5):
            brute = torch.zeros(C, dtype=torch.float64)
            for draws in itertools.product(range(C), repeat=K):
                chosen = list(draws)
                mass, weights = q[chosen].prod(), w[chosen]
                for j, c in enumerate(draws):
                    brute[c] += mass * weights[j] / weights.sum()
            exact = resampled_proposal(log_q, log_p, K)
            torch.testing.assert_close(exact, brute, rtol=0, atol=1e-12)
        posterior = torch.softmax(log_p, -1)
        far = resampled_proposal(log_q, log_p, 10 ** 7)  # the bias falls like E_q[w²] / K (up to 1,700 here)
        assert (far - posterior).abs().max() < 1e-3 < (q - posterior).abs().max()
    log_q = torch.tensor([0.0, -math.inf, 0.0], dtype=torch.float64)
    pmf = resampled_proposal(log_q, torch.zeros(3, dtype=torch.float64), 50)
    assert pmf[1] == 0 and abs(float(pmf.sum()) - 1) < 1e-12


def test_the_gmm_report_measures_how_far_resampling_corrects_each_guide():
    """studies.gmm.page.resampled_proposal_distances on a table with two cells: a guide equal to the model's posterior
    (distance 0 at every K) and a uniform guide (distance falling with K, and at K = 1 the guide's own distance)."""
    from estibench.models.gmm import GMM
    from estibench.studies.gmm.page import resampled_proposal_distances, resampled_proposal_table
    model = GMM()
    prior = torch.softmax(torch.linspace(0, 1, 20), -1).double()
    rows = []
    for x in (20.0, 70.0):
        posterior = torch.softmax(prior.log() + model.log_likelihood_table(torch.tensor([x])).double()[0], -1)
        for key, guide in (("good", posterior), ("flat", torch.full((20,), 0.05, dtype=torch.float64))):
            rows += [dict(key=key, label=key, particles=2, seed=0, iteration=10, metric=f"guide_pmf[x={x:g},z={c}]",
                          value=float(v)) for c, v in enumerate(guide)]
    for key in ("good", "flat"):
        rows += [dict(key=key, label=key, particles=2, seed=0, iteration=10, metric=f"prior_pmf[z={c}]",
                      value=float(v)) for c, v in enumerate(prior)]
    gmm = {"model__num_clusters": 20, "model__mean_spacing": 10.0, "model__std": 5.0}  # the cells' option columns
    rows = [{**r, **gmm} for r in rows]
    d = resampled_proposal_distances(pd.DataFrame(rows)).set_index(["label", "K"]).distance
    assert d["good"].max() < 1e-7
    flat = d["flat"].sort_index()
    assert flat.is_monotonic_decreasing and flat.iloc[0] > 0.3 and flat.iloc[-1] < 0.01
    assert list(resampled_proposal_table(resampled_proposal_distances(pd.DataFrame(rows))).columns[:3]) == [
        "estimator", "trained at K", "K = 1"]
