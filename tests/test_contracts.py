"""Generic contract tests, run over every registered model and estimator (and a tiny Bernoulli
model defined in the tests, so the contracts are exercised beyond categorical latents)."""

import re

import pytest
import torch

from estibench import estimators
from estibench import models
from estibench.estimators.base import IncompatibleError
from estibench.harness import build_model, exact_gradient, gradient_samples
from estibench.models.registry import UnknownNameError
from registered import implementations
from tiny_models import PartialLayered, TinyBernoulli, TinyLayered, TinyStructured

R, B, K = 2, 5, 3


#: registered models whose defaults are larger than a contract check needs: the same classes at a smaller size (the
#: convolutional family on 4×4 images, every code path of its default sampled local latents kept)
SMALLER = {"conv_vae": dict(downsample=7, width=4, latent_bits=6, local_groups=1, local_channels=2),
           "conv_vae_normal": dict(downsample=7, width=4, latent_dim=6, local_groups=1, local_channels=2)}


def all_models():
    out = [(name, build_model(name, seeds=tuple(range(R)), **SMALLER.get(name, {})))  # data statistics: the data layer
           for name in models.names()]
    # two stochastic layers (the chains of the layered estimators), at 4 bits per layer
    out.append(("sbn_tiny-linear2", build_model("sbn_tiny", seeds=tuple(range(R)), arch="linear2", latent_bits=4)))
    out.append(("tiny_bernoulli", TinyBernoulli(seeds=tuple(range(R)))))
    out.append(("tiny_layered", TinyLayered(seeds=tuple(range(R)))))
    out.append(("tiny_structured", TinyStructured(seeds=tuple(range(R)))))
    return out


MODELS = all_models()


def data_for(model, n=B):
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return model.sample(n)[1]


@pytest.mark.parametrize("name,model", MODELS, ids=[m[0] for m in MODELS])
def test_model_contract(name, model, rng):
    x = data_for(model)
    assert x.shape[:2] == (R, B) and tuple(x.shape[2:]) == tuple(model.obs_shape)
    q = model.guide(x)
    assert isinstance(q, torch.distributions.Distribution)
    assert tuple(q.batch_shape) == (R, B)
    z = q.sample((K,))
    assert tuple(z.shape[:3]) == (K, R, B)
    lp = model.log_joint(x, z)
    assert lp.shape == (K, R, B) and torch.isfinite(lp).all()
    # broadcasting over two particle dimensions
    z2 = q.sample((2, K))
    assert model.log_joint(x, z2).shape == (2, K, R, B)
    zs, xs = model.sample(7)
    assert tuple(zs.shape[:2]) == (R, 7) and tuple(xs.shape[:2]) == (R, 7)
    theta, phi = model.generative_parameters(), model.guide_parameters()
    ids = [id(p) for p in model.parameters()]
    assert sorted(ids) == sorted(id(p) for p in theta + phi) and len(ids) == len(theta) + len(phi)
    assert all(p.shape[0] == R for p in model.parameters()), "parameters lead with the replicate dim"
    if not model.latent.enumerable:  # e.g. the 200-bit SBN: refused with a clear error
        with pytest.raises(ValueError, match="too many states"):
            model.enumerate_latents()
        return
    states = model.enumerate_latents()
    assert states.shape[0] == model.latent.num_states
    # the enumerated guide probabilities sum to one for every data point
    zz = states.view(states.shape[0], 1, 1, *states.shape[1:]).expand(states.shape[0], R, B, *states.shape[1:])
    assert torch.allclose(q.log_prob(zz).exp().sum(0), torch.ones(R, B), atol=1e-5)


def test_replicates_start_like_single_models():
    stacked = models.get("gmm", seeds=(4, 7))
    single = models.get("gmm", seeds=(7,))
    for a, b in zip(stacked.parameters(), single.parameters()):
        assert torch.equal(a[1], b[0])
    assert not torch.equal(list(stacked.guide_parameters())[0][0], list(stacked.guide_parameters())[0][1])


def compatible(est_name, model):
    """What the estimator's declarations accept (check() refuses the rest before any work)."""
    try:
        estimators.get(est_name).check(model, K)
    except IncompatibleError:
        return False
    return True


PAIRS = [(e, n, m) for e in estimators.names() for n, m in MODELS if compatible(e, m)]


@pytest.mark.parametrize("est_name,model_name,model", PAIRS, ids=[f"{e}-{n}" for e, n, _ in PAIRS])
def test_estimator_contract(est_name, model_name, model, rng):
    est = estimators.get(est_name).bind(model)
    doc = type(est).__doc__ or ""
    cites = "et al" in doc or "RWS" in doc or re.search(r"\w+ & \w+,? \(?\d{4}", doc) is not None  # two authors
    assert cites and ("Eq" in doc or "§" in doc), "docstring naming paper and equation"
    assert est.guide_target in ("iwae", "inclusive_kl", "elbo")
    x = data_for(model)
    out = est.surrogate(model, x, K)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.objective.shape == (R,)
    grads, own, objective = est.gradients(model, x, K)
    assert [g.shape for g in grads] == [p.shape for p in model.parameters()]
    assert [g.shape for g in own] == [p.shape for p in est.parameters()]
    assert all(torch.isfinite(g).all() for g in grads + own)
    n_theta = len(model.generative_parameters())
    assert any(g.abs().sum() > 0 for g in grads[:n_theta]), "no gradient for the generative parameters θ"
    assert any(g.abs().sum() > 0 for g in grads[n_theta:]), "no gradient for the guide parameters φ"
    draws = gradient_samples(model, est, x, K, 3, which="guide")
    D = sum(p.numel() for p in model.guide_parameters())
    assert draws.shape == (3, D)
    if not model.latent.enumerable:
        return
    assert exact_gradient(model, est, x, K, which="guide").shape == (D,)
    assert exact_gradient(model, est, x, K, which="generative").shape == (sum(p.numel() for p in model.generative_parameters()),)


#: option sets beyond the defaults and the declared variants that take other code paths
#: (non-default own parameters of REBAR/RELAX; the DVAE estimators at a fixed β = 4)
EXTRA_OPTIONS = {"rebar": [dict(temperature=2.0, eta=0.3)],
                 "relax": [dict(temperature=0.2, eta=1.7, zero_output=False)],
                 **{n: [dict(beta_start=4.0, beta_end=4.0)] for n in ("spike_exp", "overlap_exp", "overlap_logistic",
                                                                      "overlap_power")}}


def option_sets(name):
    est = estimators.get(name)
    return [{}] + [{"variant": v} for v in est.variants[1:]] + EXTRA_OPTIONS.get(name, [])


REPLICATE_CASES = [(e, opts, n, m) for e, n, m in PAIRS for opts in option_sets(e)]


@pytest.mark.parametrize("est_name,options,model_name,model", REPLICATE_CASES,
                         ids=[f"{e}{opts or ''}-{n}" for e, opts, n, _ in REPLICATE_CASES])
def test_replicates_do_not_interact(est_name, options, model_name, model, rng):
    """Every estimator (defaults, each declared variant, the extra option sets above) on every model it
    accepts: replicate 0's model and own gradients and its objective do not change when replicate 1's
    model and own parameters do (same noise; the estimator is copied before each call so running
    statistics start equal).  The check itself is ``harness/checks.py independence`` (also behind
    ``estibench check``)."""
    import copy

    from estibench.harness.checks import independence

    model = copy.deepcopy(model)
    K = max(2, estimators.get(est_name, **options).min_particles)
    assert independence(est_name, options, model, data_for(model), K) is None


def test_registry_errors():
    with pytest.raises(UnknownNameError, match="did you mean vimco"):
        estimators.get("vimc")
    with pytest.raises(UnknownNameError, match="unknown model"):
        models.get("gmmm")
    assert "\n" not in str(UnknownNameError("unknown estimator 'x'"))


def test_incompatible_pairs_refused():
    gmm = models.get("gmm")
    with pytest.raises(IncompatibleError, match="at least 2 particle"):
        estimators.get("vimco").check(gmm, 1)
    tiny = TinyBernoulli()
    for name in ("concrete",):  # Bernoulli latents, but no layered interface
        with pytest.raises(IncompatibleError, match="needs the layered Bernoulli interface .*guide_layer"):
            estimators.get(name).check(tiny, 2)
    with pytest.raises(IncompatibleError):
        estimators.get("dww", delta=1.5)
    with pytest.raises(IncompatibleError):
        estimators.get("concrete", final_temperature=0.0)


def test_fast_categorical_sampler_matches_probabilities(rng):
    """Inverse-CDF sampler: χ² goodness of fit per batch element (seed 0, n = 20,000 draws,
    threshold = χ²₁₉ quantile at 1 − 1e-4, so ≈ 2.4e-3 false alarms over 24 tests)."""
    from scipy.stats import chi2

    from estibench.models.distributions import Categorical

    probs = torch.softmax(torch.randn(4, 6, 20) * 2, -1)
    n = 20_000
    s = Categorical(probs=probs).sample((n,))
    counts = torch.nn.functional.one_hot(s, 20).sum(0).double()
    expected = probs.double() * n
    stat = ((counts - expected) ** 2 / expected).sum(-1)
    assert (stat < chi2.ppf(1 - 1e-4, 19)).all()


# -- declared capabilities (models/protocols.py) ------------------------------------------------------
def test_a_model_providing_part_of_a_protocol_is_refused_up_front():
    """PartialLayered declares the layered Bernoulli interface but lacks prior_layer, log_likelihood and
    log_prior: every estimator that needs the interface refuses it in one line naming the capability
    and the missing members, in check(), before any work; the complete TinyLayered is accepted."""
    from estibench.models.protocols import LAYERED_BERNOULLI
    partial, complete = PartialLayered(), TinyLayered()
    layered = [n for n in estimators.names() if any(LAYERED_BERNOULLI in i.needs for i in implementations(n))]
    assert {"arm", "nvil", "rebar", "relax", "concrete", "overlap_exp"} <= set(layered)
    for name in layered:
        K = max(1, estimators.get(name).min_particles)
        with pytest.raises(IncompatibleError) as err:
            estimators.get(name).check(partial, K)
        message = str(err.value)
        assert "\n" not in message and "layered Bernoulli interface" in message
        assert all(m in message for m in ("prior_layer", "log_likelihood", "log_prior")), message
        estimators.get(name).check(complete, K)


def test_an_unnormalised_prior_is_refused_unless_the_estimator_handles_log_z():
    """A model providing UNNORMALISED_PRIOR (log Z estimates, negative-phase samples) is refused by
    every registered estimator that does not declare that it handles −∇ log Z, and accepted by those
    (and by one of your own) that declare it."""
    from estibench.models.protocols import UNNORMALISED_PRIOR

    class Unnormalised(TinyLayered):
        provides = TinyLayered.provides + (UNNORMALISED_PRIOR,)

        def log_partition(self):
            return torch.zeros(self.replicates)

        def negative_samples(self, n):
            return self.sample(n)[0].transpose(0, 1)

        def log_prior_unnormalised(self, z):
            return self.log_prior(self.split(z))

        def sample_observations(self, z):
            raise NotImplementedError  # never called: check() only

    model = Unnormalised()
    for name in ("arm", "relax", "concrete"):  # the same model without the unnormalised prior: accepted
        estimators.get(name).check(TinyLayered(), 2)
    for name in estimators.names():
        est = estimators.get(name)
        if "bernoulli" not in est.latent_types:
            continue
        if UNNORMALISED_PRIOR in est.handles:
            try:
                est.check(model, 2)
            except IncompatibleError as err:  # only for another capability it needs (gumbolt: the relaxed interface)
                # a family: some implementation handles it
                if all(UNNORMALISED_PRIOR in i.handles for i in implementations(name)):
                    assert "unnormalised prior" not in str(err) and "does not provide" in str(err), str(err)
                assert "\n" not in str(err)
            continue
        with pytest.raises(IncompatibleError, match="unnormalised prior"):
            est.check(model, 2)

    class Handles(type(estimators.get("reinforce"))):
        handles = frozenset({UNNORMALISED_PRIOR})
        registry_name = "reinforce_with_log_z"

    Handles().check(model, 2)


def test_families_register_one_implementation_per_latent_kind():
    """relax and concrete are one name each, with one implementation per latent kind chosen by the
    model's capabilities; ``bind`` returns that implementation (its own parameters and class), which the
    family holds (composition: the family keeps its class) and answers with."""
    gmm, sbn = models.get("gmm"), models.get("sbn_tiny", latent_bits=4, train_mean=torch.full((49,), 0.3))
    for name, kinds in (("relax", ("RelaxCategorical", "RelaxBernoulli")),
                        ("concrete", ("ConcreteCategorical", "ConcreteBernoulli"))):
        assert [type(estimators.get(name).bind(m)).__name__ for m in (gmm, sbn)] == list(kinds)
        assert estimators.get(name).bind(sbn).name == name
        family = estimators.get(name, variant="relax_code") if name == "relax" else estimators.get(name)
        family_class = type(family)
        chosen = family.bind(sbn)
        assert type(family) is family_class and family.implementation is chosen
        assert family.latent_types == chosen.latent_types == {"bernoulli"} != family_class.latent_types
        assert (family.needs, family.own_lr_multiplier) == (chosen.needs, chosen.own_lr_multiplier)
        assert [id(p) for p in family.parameters()] == [id(p) for p in chosen.parameters()]
    assert all(k.startswith("control.") for k, _ in estimators.get("relax").bind(gmm).named_parameters())
    from estibench.models.protocols import RELAXED_LOG_JOINT

    class WithoutMass(type(gmm)):
        provides = (RELAXED_LOG_JOINT,)

    estimators.get("concrete").check(WithoutMass(), 2)
    with pytest.raises(IncompatibleError, match="log-mass average"):
        estimators.get("concrete", relaxation="mass").check(WithoutMass(), 2)


@pytest.mark.parametrize("est_name,options,model_name,model", REPLICATE_CASES,
                         ids=[f"{e}{opts or ''}-{n}" for e, opts, n, _ in REPLICATE_CASES])
def test_state_unchanged_under_measurement(est_name, options, model_name, model, rng):
    """Every estimator (each variant and extra option set) on every model it accepts: after one training call,
    three gradient draws at frozen parameters (``with_own=False``) leave its parameters, buffers and plain
    attributes as they were (``harness/checks.py measurement_state``, also behind ``estibench check``)."""
    import copy

    from estibench.harness.checks import measurement_state
    assert measurement_state(est_name, options, copy.deepcopy(model), data_for(model), K) is None


FAMILY_PAIRS = [(e, n, m) for e, n, m in PAIRS if len(implementations(e)) > 1]


@pytest.mark.parametrize("est_name,model_name,model", FAMILY_PAIRS, ids=[f"{e}-{n}" for e, n, _ in FAMILY_PAIRS])
def test_a_bound_family_answers_as_its_implementation(est_name, model_name, model):
    """The harness keeps the object ``estimators.get`` returned and ignores what ``bind`` returns: for every family
    and every model it accepts, that object's training step (gradients, own gradients, objective) and its
    declarations are its bound implementation's, from the same random stream."""
    import copy

    from estibench.estimators.base import DECLARATIONS
    x = data_for(model)
    family = estimators.get(est_name)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        family.bind(model)
    twin = copy.deepcopy(family.implementation)
    assert all(getattr(family, d) == getattr(twin, d) for d in DECLARATIONS)
    out = []
    for est in (family, twin):
        with torch.random.fork_rng():
            torch.manual_seed(4)
            grads, own, objective = est.gradients(model, x, max(2, est.min_particles))
        out.append([g.detach() for g in grads + own] + [objective.detach()])
    assert len(out[0]) == len(out[1]) and all(torch.equal(a, b) for a, b in zip(*out))


def test_an_estimator_asks_a_model_only_for_what_it_declared():
    """NVIL and REBAR centre their baselines' inputs with the model's training mean where it provides one
    (TRAINING_MEAN, declared in ``uses``) and do without it on a model that does not (TinyLayered); asking for an
    undeclared capability is refused; no estimator module probes a model with getattr / hasattr."""
    import ast
    import pathlib

    from estibench.models.protocols import CLOSED_FORM_GAUSSIAN, TRAINING_MEAN
    mean = torch.full((49,), 0.3)
    sbn = models.get("sbn_tiny", latent_bits=4, train_mean=mean)
    for model, centre in ((sbn, mean), (TinyLayered(), None)):
        nvil = estimators.get("nvil").bind(model)
        rebar = estimators.get("rebar", variant="rebar_code").bind(model)
        for est, buffer in ((nvil, nvil.baseline.input_mean), (rebar, rebar.relaxation.input_mean)):
            assert TRAINING_MEAN in est.uses and TRAINING_MEAN not in est.needs
            assert (buffer is None) if centre is None else torch.equal(buffer, centre)
    with pytest.raises(TypeError, match="does not declare"):
        estimators.get("nvil").provided(sbn, CLOSED_FORM_GAUSSIAN)
    probes = []
    for path in sorted((pathlib.Path(estimators.__file__).parent).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                    and node.args and isinstance(node.args[0], ast.Name) and "model" in node.args[0].id):
                probes.append(f"{path.name}:{node.lineno}")
    assert not probes, probes
