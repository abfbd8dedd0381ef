"""models.nn.StackedModule: R seeded copies of a plain module, stacked with torch.func (vmap + functional_call)."""
import pytest
import torch

from models.conv_blocks import SEResidualBlock
from models.nn import StackedModule
from models.pixelcnn import PixelCNNpp

SEEDS = [3, 11, 42]
R = len(SEEDS)


def se_block():
    return SEResidualBlock(8)


def pixelcnn():
    return PixelCNNpp(channels=1, filters=8, n_blocks=1, n_mix=2)


FACTORIES = {"se_block": (se_block, (R, 2, 8, 8, 8)), "pixelcnn": (pixelcnn, (R, 2, 1, 8, 8))}


def single(factory, seed):
    torch.manual_seed(seed)
    return factory()


def make_input(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    return x.clamp(-1, 1)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_replicates_equal_seeded_single_modules(name):
    factory, shape = FACTORIES[name]
    stacked = StackedModule(factory, SEEDS)
    x = make_input(shape)
    y = stacked(x)
    assert y.shape[0] == R
    for r, seed in enumerate(SEEDS):
        torch.testing.assert_close(y[r], single(factory, seed)(x[r]), atol=1e-6, rtol=0)
    assert not torch.allclose(y[0], y[1])  # distinct seeds, distinct networks


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_replicates_are_independent(name):
    factory, shape = FACTORIES[name]
    stacked = StackedModule(factory, SEEDS)
    stacked(make_input(shape))[0].sum().backward()
    some_nonzero = False
    for p in stacked.parameters():
        assert p.grad is not None
        assert torch.all(p.grad[1:] == 0)
        some_nonzero |= bool(p.grad[0].abs().sum() > 0)
    assert some_nonzero


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_summed_loss_adam_step_equals_independent_trainings(name):
    # float64: Adam divides by sqrt(v), which turns float32 rounding in a near-zero gradient into ~1e-6 steps
    base_factory, shape = FACTORIES[name]
    factory = lambda: base_factory().double()  # noqa: E731
    stacked = StackedModule(factory, SEEDS)
    singles = [single(factory, s) for s in SEEDS]
    x = make_input(shape).double()
    opt = torch.optim.Adam(stacked.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        (stacked(x) ** 2).mean(dim=tuple(range(1, x.dim()))).sum().backward()
        opt.step()
    for r, m in enumerate(singles):
        o = torch.optim.Adam(m.parameters(), lr=1e-2)
        for _ in range(2):
            o.zero_grad()
            (m(x[r]) ** 2).mean().backward()
            o.step()
        for n, p in m.named_parameters():
            torch.testing.assert_close(stacked.params[n.replace(".", "__")][r], p.detach(), atol=1e-6, rtol=0)


def test_global_rng_untouched():
    before = torch.random.get_rng_state()
    StackedModule(se_block, SEEDS)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_parameters_lead_with_R(name):
    factory, _ = FACTORIES[name]
    stacked = StackedModule(factory, SEEDS)
    params = list(stacked.parameters())
    ref = list(factory().parameters())
    assert all(p.shape[0] == R for p in params)
    assert len(params) == len(ref)
    assert sum(p.numel() for p in params) == R * sum(p.numel() for p in ref)
    assert all(p.device.type == "cpu" for p in params)  # the meta base copy is not a submodule


def test_batch_norm_training_mode_matches_single_modules():
    factory = lambda: SEResidualBlock(8, norm="batch")  # noqa: E731
    stacked = StackedModule(factory, SEEDS).train()
    x = make_input((R, 4, 8, 8, 8))
    y = stacked(x)
    for r, seed in enumerate(SEEDS):
        m = single(factory, seed).train()
        torch.testing.assert_close(y[r], m(x[r]), atol=1e-6, rtol=0)
        for n, b in m.named_buffers():
            torch.testing.assert_close(getattr(stacked.stacked_buffers, n.replace(".", "__"))[r], b,
                                       atol=1e-6, rtol=0)


def test_extra_tensor_arguments_and_shape_errors():
    factory = lambda: PixelCNNpp(channels=1, filters=8, n_blocks=1, n_mix=2, cond_channels=3)  # noqa: E731
    stacked = StackedModule(factory, SEEDS)
    x, h = make_input((R, 2, 1, 8, 8)), make_input((R, 2, 3))
    y = stacked(x, h)
    torch.testing.assert_close(y[1], single(factory, SEEDS[1])(x[1], h[1]), atol=1e-6, rtol=0)
    torch.testing.assert_close(stacked(x, h=h), y)
    with pytest.raises(ValueError, match="replicate dimension"):
        stacked(x[:2], h[:2])
    with pytest.raises(ValueError, match="replicate dimension"):
        stacked(x, h[:2])


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_one_replicate_runs_the_module_itself_and_follows_parameter_updates(name):
    """R = 1 takes the direct path (the module on views of slice 0, no vmap): its outputs and gradients equal the
    seeded single module's, and an in-place parameter update (an optimiser step) or a BatchNorm buffer is seen by
    the next call (the views are made anew when a stacked tensor's version changes)."""
    factory, shape = FACTORIES[name]
    stacked = StackedModule(factory, [SEEDS[0]])
    plain = single(factory, SEEDS[0])
    x = make_input((1, *shape[1:]))
    y = stacked(x)
    assert y.shape[0] == 1
    torch.testing.assert_close(y[0], plain(x[0]), atol=1e-6, rtol=0)
    y.square().sum().backward()
    plain(x[0]).square().sum().backward()
    for n, q in plain.named_parameters():
        torch.testing.assert_close(stacked.params[n.replace(".", "__")].grad[0], q.grad, atol=1e-5, rtol=1e-5)
    first = stacked(x).detach().clone()
    with torch.no_grad():
        for p in stacked.parameters():
            p.mul_(0.5)
    assert not torch.allclose(stacked(x), first)
    for p in stacked.parameters():  # new storage without a version bump (Snapshot.restore of a reshaped tensor)
        p.data = p.data * 2.0
    torch.testing.assert_close(stacked(x), first, atol=1e-6, rtol=0)
