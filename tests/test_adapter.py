"""The module adapter (``models/adapter.py``): a user's VAE (an encoder, a decoder and a prior, ``nn.Module``s that
return ``torch.distributions``) as a contract model, without a rewrite.  Its ``guide`` and ``log_joint`` agree with
the user's modules called by hand, replicate by replicate; exact log p(x) by enumeration is the log of the summed
joint; the contract checks of ``estibench check`` pass on it; ``screen`` and the generic study take it by import
path; estimators it does not suit and modules of the wrong shape are refused in one line."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical

from estibench import estimators
from estibench.cli import main
from estibench.harness import exact
from estibench.harness.checks import Fixture, run_checks, sample_data
from estibench.models.adapter import ModulesModel, from_modules
from estibench.models.protocols import BERNOULLI, ENUMERABLE, MULTICATEGORICAL, capabilities

#: this module as a plug-in (the tests folder is on sys.path: conftest.py)
MODEL = f"{__name__}:TinyVAE"
BITS, PIXELS = 4, 6


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(PIXELS, BITS)

    def forward(self, x):
        return Independent(Bernoulli(logits=self.net(x)), 1)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(BITS, PIXELS)

    def forward(self, z):
        return Independent(Bernoulli(logits=self.net(z)), 1)


class Prior(nn.Module):
    """Learned logits; a plain Bernoulli over the 4 bits (batch (4,), no Independent): the adapter takes either."""

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(BITS))

    def forward(self):
        return Bernoulli(logits=self.logits)


class TinyVAE(ModulesModel):
    """The user's VAE for the command line (``--model test_adapter:TinyVAE``): 4 Bernoulli latents, 6 binary
    pixels."""

    latent_kind = "bernoulli"

    def __init__(self, seeds=(0,)):
        super().__init__(encoder=Encoder, decoder=Decoder, prior=Prior, latent="bernoulli", latent_shape=(BITS,),
                         obs_shape=(PIXELS,), seeds=seeds)


class WideEncoder(Encoder):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(PIXELS, BITS + 1)


class WrongShape(TinyVAE):
    def __init__(self, seeds=(0,)):
        ModulesModel.__init__(self, encoder=WideEncoder, decoder=Decoder, prior=Prior, latent="bernoulli",
                              latent_shape=(BITS,), obs_shape=(PIXELS,), seeds=seeds)


def _built(seed):
    """The user's three modules as the adapter builds replicate ``seed``: each after ``torch.manual_seed(seed)``."""
    out = []
    for cls in (Encoder, Decoder, Prior):
        torch.manual_seed(seed)
        out.append(cls())
    return out


def _data(n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, PIXELS), 0.4), generator=gen)


def test_guide_and_log_joint_agree_with_the_users_modules_by_hand(rng):
    seeds = (3, 8)
    model = TinyVAE(seeds=seeds)
    assert capabilities(model) == {BERNOULLI, ENUMERABLE} and model.latent.num_bits == BITS
    x = torch.stack([_data(5, 0), _data(5, 1)])  # [R, B, 6]
    q = model.guide(x)
    assert tuple(q.batch_shape) == (2, 5) and tuple(q.event_shape) == (BITS,)
    z = q.sample((7,))  # [K, R, B, 4]
    log_joint = model.log_joint(x, z)
    assert log_joint.shape == (7, 2, 5)
    for r, seed in enumerate(seeds):
        enc, dec, prior = _built(seed)
        with torch.no_grad():
            torch.testing.assert_close(q.base_dist.logits[r], enc.net(x[r]))
            a = dec.net(z[:, r])  # log Bern(x; σ(a)) = x·a − softplus(a), summed over the pixels and the bits
            by_hand = (x[r] * a - nn.functional.softplus(a)).sum(-1)
            by_hand = by_hand + (z[:, r] * prior.logits - nn.functional.softplus(prior.logits)).sum(-1)
        torch.testing.assert_close(log_joint[:, r].detach(), by_hand)
    # particle dimensions of x broadcast too, and θ (decoder, prior) comes first in parameters(), then φ (encoder)
    assert model.log_joint(x.expand(7, *x.shape), z).shape == (7, 2, 5)
    assert model.guide(x.expand(3, *x.shape)).batch_shape == (3, 2, 5)
    params = list(model.parameters())
    theta, phi = model.generative_parameters(), model.guide_parameters()
    assert [id(p) for p in params] == [id(p) for p in theta + phi] and len(theta) == 3 and len(phi) == 2
    z_s, x_s = model.sample(11)
    assert z_s.shape == (2, 11, BITS) and x_s.shape == (2, 11, PIXELS) and set(z_s.unique().tolist()) <= {0.0, 1.0}


def test_exact_log_marginal_by_enumeration_is_the_log_of_the_summed_joint(rng):
    model = TinyVAE(seeds=(0, 1))
    x = torch.stack([_data(4, 2), _data(4, 3)])
    got = exact.log_marginal(model, x)
    states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=BITS)))
    assert got.shape == (2, 4)
    for r in range(2):
        enc, dec, prior = _built(r)
        with torch.no_grad():
            joint = torch.stack([dec(s.expand(4, BITS)).log_prob(x[r]) + prior().log_prob(s).sum() for s in states])
        torch.testing.assert_close(got[r].detach().to(torch.float32), torch.logsumexp(joint, 0), rtol=1e-5,
                                   atol=1e-5)


def test_the_contract_checks_pass_for_vimco():
    make = lambda seeds: TinyVAE(seeds=seeds)  # noqa: E731
    fixtures = {"tiny_vae": Fixture(make, lambda: sample_data(make, 3, 0), (2,), 2000)}
    for name in ("vimco",):  # one estimator: building the 2,000 replicates of the draws is most of the time
        results = run_checks(name, fixtures=fixtures)
        assert {r.check for r in results} >= {"contract", "replicate independence", "state under measurement",
                                              "unbiased φ-gradient (n = 2000)"}, results
        assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_estimators_that_need_a_layered_model_are_refused_in_one_line():
    model = TinyVAE()
    for name in ("arm", "disarm", "nvil"):
        with pytest.raises(estimators.IncompatibleError) as err:
            estimators.get(name).check(model, 2)
        text = str(err.value)
        assert "\n" not in text and "layered Bernoulli interface" in text and "TinyVAE" in text, text


def test_screen_takes_the_adapted_model_by_import_path(capsys):
    assert main(["screen", "--model", MODEL, "--estimators", "reinforce,rloo,vimco,disarm", "--draws", "24",
                 "--points", "2", "--steps", "4", "--bootstrap", "50", "--batch-size", "8", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "Recommendation" in text and "refused (1)" in text and "disarm" in text
    assert "bias: not measured" not in text  # enumerable: the bias is measured


def test_the_generic_study_sweeps_it_on_a_file(tmp_path, capsys):
    npz = tmp_path / "pixels.npz"
    np.savez(npz, train=_data(40, 4).numpy(), test=_data(12, 5).numpy())
    out = tmp_path / "out"
    assert main(["--suite", "generic", "--model", MODEL, "--data", str(npz), "--estimators", "vimco,rloo",
                 "--iterations", "3", "--eval-every", "3", "--particles", "2", "--seeds", "2", "--device", "cpu",
                 "--out", str(out)]) == 0
    from estibench.harness.store import Store
    store = Store(str(out))
    try:
        cells, table = store.cells(), store.table()
    finally:
        store.close()
    assert len(cells) == 2 and set(cells.status) == {"done"} and set(cells.model) == {MODEL}
    assert {"test_ll[K=100]", "test_log_px_exact", "exact_grad/bias_sq"} <= set(table.metric)
    assert np.isfinite(table[table.metric == "test_log_px_exact"].value).all()


def test_modules_of_the_wrong_shape_or_kind_are_refused_in_one_line(capsys):
    with pytest.raises(ValueError) as err:
        WrongShape()
    text = str(err.value)
    assert "\n" not in text and "encoder" in text and "event shape (5,)" in text and "(4,)" in text, text
    # through the command line: one line, exit status 2
    assert main(["screen", "--model", f"{__name__}:WrongShape", "--device", "cpu"]) == 2
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1 and "event shape (5,)" in stderr, stderr
    # the declared kind must be the latents' kind
    with pytest.raises(ValueError, match="declares latent_kind = 'bernoulli'"):
        TinyVAE.__mro__[1].__init__(TinyVAE.__new__(TinyVAE), encoder=Encoder, decoder=Decoder, prior=Prior,
                                    latent="categorical", latent_shape=(4,), obs_shape=(PIXELS,))
    with pytest.raises(ValueError, match="not a torch.distributions.Distribution"):
        from_modules(encoder=lambda: nn.Linear(PIXELS, BITS), decoder=Decoder, prior=Prior, latent="bernoulli",
                     latent_shape=(BITS,), obs_shape=(PIXELS,))


def test_the_shipped_example_adapts_its_vae_and_writes_data_the_generic_study_reads(tmp_path):
    """``examples/own_model_sweep.py`` (its sweep runs in ``python -m estibench.examples.own_model_sweep``): its model
    by import path is a contract model, and its data file fits the model's observations."""
    from estibench import models
    from estibench.examples import own_model_sweep as example
    from estibench.studies.generic.data import fitted, read
    model = models.get(example.MODEL, seeds=(0, 1))
    assert type(model).__name__ == "OwnVAE" and ENUMERABLE in capabilities(model)
    _, _, splits = read(example.write_digits(str(tmp_path / "digits.npz"), train=20, test=5))
    splits = fitted(splits, model.obs_shape, "digits.npz", example.MODEL)
    assert splits["train"].shape == (20, example.PIXELS) and set(splits["train"].unique().tolist()) <= {0.0, 1.0}
    x = splits["test"].expand(2, *splits["test"].shape)
    assert torch.isfinite(exact.log_marginal(model, x)).all()


class OneHotEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(PIXELS, 2 * 3)

    def forward(self, x):
        return Independent(OneHotCategorical(logits=self.net(x).unflatten(-1, (2, 3))), 1)


class OneHotDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2 * 3, PIXELS)

    def forward(self, z):
        return Independent(Bernoulli(logits=self.net(z.flatten(-2))), 1)


class OneHotPrior(nn.Module):
    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(2, 3))

    def forward(self):
        return Independent(OneHotCategorical(logits=self.logits), 1)


def test_categorical_latents_one_hot_and_indices(rng):
    """Two 3-way variables: the encoder's OneHotCategorical becomes the project's indices, the decoder sees one-hot
    codes; exact log p(x) sums the 9 states."""
    model = from_modules(encoder=OneHotEncoder, decoder=OneHotDecoder, prior=OneHotPrior, latent="categorical",
                         latent_shape=(2, 3), obs_shape=(PIXELS,), seeds=(0, 1), onehot=True)
    assert model.latent_kind == "multicategorical" and MULTICATEGORICAL in capabilities(model)
    x = torch.stack([_data(3, 6), _data(3, 7)])
    z = model.guide(x).sample((4,))
    assert z.shape == (4, 2, 3, 2) and z.dtype == torch.long
    enc, dec, prior = [(torch.manual_seed(1), cls())[1] for cls in (OneHotEncoder, OneHotDecoder, OneHotPrior)]
    y = nn.functional.one_hot(z[:, 1], 3).float()
    with torch.no_grad():
        want = dec(y).log_prob(x[1]) + prior().log_prob(y)
    torch.testing.assert_close(model.log_joint(x, z)[:, 1].detach(), want)
    states = model.enumerate_latents()
    assert states.shape == (9, 2)
    with torch.no_grad():
        joint = torch.stack([dec(nn.functional.one_hot(s, 3).float().expand(3, 2, 3)).log_prob(x[1])
                             + prior().log_prob(nn.functional.one_hot(s, 3).float()) for s in states])
    torch.testing.assert_close(exact.log_marginal(model, x)[1].detach().float(), torch.logsumexp(joint, 0))
    # an index encoder (Categorical) where one-hot codes were declared: refused in one line
    with pytest.raises(ValueError, match="OneHotCategorical"):
        from_modules(encoder=lambda: _IndexEncoder(), decoder=OneHotDecoder, prior=OneHotPrior, latent="categorical",
                     latent_shape=(2, 3), obs_shape=(PIXELS,), onehot=True)


class _IndexEncoder(OneHotEncoder):
    def forward(self, x):
        return Independent(Categorical(logits=self.net(x).unflatten(-1, (2, 3))), 1)
