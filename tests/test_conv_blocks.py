"""The convolutional building blocks of ``models/conv_blocks.py`` (SE unit, SE-residual block, down/up stacks)."""
import pytest
import torch

from models.conv_blocks import (SEResidualBlock, DownStack, SqueezeExcite, UpStack, activation_estimate,
                                param_count)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("c_in,size", [(1, 28), (3, 32)])
def test_shapes_two_scales(c_in, size):
    down = DownStack(c_in, [8, 16], scales=2, blocks_per_scale=2, reduction=4)
    up = UpStack([8, 16], out_channels=c_in, scales=2, cond_channels=[5, 0], blocks_per_scale=2, reduction=4)
    x = torch.randn(2, 3, c_in, size, size)  # [R, B, C, H, W]: leading dims flattened and restored
    feats = down(x)
    assert [tuple(f.shape) for f in feats] == [(2, 3, 8, size // 2, size // 2), (2, 3, 16, size // 4, size // 4)]
    cond = [torch.randn(2, 3, 5, size // 2, size // 2), None]
    out, ufeats = up(feats[-1], cond=cond)
    assert tuple(out.shape) == (2, 3, c_in, size, size)
    assert [tuple(f.shape) for f in ufeats] == [tuple(f.shape) for f in feats]
    # the cond reaches the output; a callable hook sees the features at its scale and gets the same result
    out0, _ = up(feats[-1], cond=[torch.zeros_like(cond[0]), None])
    assert not torch.allclose(out, out0)
    seen = []

    def hook(i, h):
        seen.append((i, tuple(h.shape)))
        return cond[0].reshape(-1, *cond[0].shape[-3:]) if i == 0 else None

    out_hook, _ = up(feats[-1], cond=hook)
    assert seen == [(1, (6, 16, size // 4, size // 4)), (0, (6, 8, size // 2, size // 2))]
    torch.testing.assert_close(out_hook, out)


def test_se_is_channel_scaling_by_manual_gates():
    se = SqueezeExcite(6, reduction=2)
    x = torch.randn(4, 6, 5, 7)
    s = x.mean(dim=(2, 3))
    hidden = torch.relu(s @ se.fc1.weight.T + se.fc1.bias)
    gates = torch.sigmoid(hidden @ se.fc2.weight.T + se.fc2.bias)
    assert bool(((gates > 0) & (gates < 1)).all())
    y = se(x)
    torch.testing.assert_close(y, x * gates[:, :, None, None])
    ratio = y / x  # constant over space per (item, channel)
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))


def test_residual_block_is_identity_when_last_conv_zeroed():
    block = SEResidualBlock(8, reduction=4)
    x = torch.randn(3, 8, 6, 6)
    assert not torch.allclose(block(x), x)
    with torch.no_grad():
        block.last_conv.weight.zero_()
        block.last_conv.bias.zero_()
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_gradients_reach_every_parameter(norm):
    down = DownStack(3, [4, 6], scales=2, reduction=2, norm=norm)
    up = UpStack([4, 6], out_channels=3, scales=2, cond_channels=[2, 3], reduction=2, norm=norm)
    # At initialisation an SE unit's pooled input is nearly the same for every item, so its few bottleneck ReLUs can
    # all be off for the whole batch (zero gradient to fc1 by the ReLU, not by a broken graph).  This test is about
    # the wiring, so it switches every bottleneck unit on with a positive fc1 bias.
    with torch.no_grad():
        for m in list(down.modules()) + list(up.modules()):
            if isinstance(m, SqueezeExcite):
                m.fc1.bias.fill_(5.0)
    x = torch.randn(32, 3, 8, 8)
    feats = down(x)
    out, _ = up(feats[-1], cond=[torch.randn(32, 2, 4, 4), torch.randn(32, 3, 2, 2)])
    (out ** 2).sum().backward()
    for name, p in list(down.named_parameters()) + list(up.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def _refusal(fn):
    with pytest.raises(ValueError) as err:
        fn()
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def test_bad_inputs_are_refused_in_one_line():
    down = DownStack(1, 4, scales=2, reduction=2)
    up = UpStack(4, 1, scales=2, cond_channels=[3, 0], reduction=2)
    assert "divisible" in _refusal(lambda: down(torch.randn(2, 1, 30, 30)))
    assert "divisible" in _refusal(lambda: down(torch.randn(2, 1, 28, 26)))
    assert "channels" in _refusal(lambda: down(torch.randn(2, 3, 28, 28)))
    assert "batch" in _refusal(lambda: down(torch.randn(1, 28, 28)))
    assert "channels" in _refusal(lambda: SqueezeExcite(8)(torch.randn(2, 7, 4, 4)))
    assert "channels" in _refusal(lambda: SEResidualBlock(8)(torch.randn(2, 7, 4, 4)))
    assert "channels" in _refusal(lambda: up(torch.randn(2, 5, 7, 7), cond=[torch.randn(2, 3, 14, 14), None]))
    assert "channels" in _refusal(lambda: up(torch.randn(2, 4, 7, 7), cond=[torch.randn(2, 2, 14, 14), None]))
    _refusal(lambda: up(torch.randn(2, 4, 7, 7), cond=[torch.randn(2, 3, 7, 7), None]))  # wrong spatial size
    _refusal(lambda: up(torch.randn(2, 4, 7, 7)))  # cond required at scale 0
    _refusal(lambda: up(torch.randn(2, 4, 7, 7), cond=[torch.randn(2, 3, 14, 14), torch.randn(2, 1, 7, 7)]))
    _refusal(lambda: up(torch.randn(2, 4, 7, 7), cond=[None]))
    assert "channels" in _refusal(lambda: DownStack(1, [4, 4, 4], scales=2))
    assert "channels" in _refusal(lambda: DownStack(1, [4, 0], scales=2))
    _refusal(lambda: DownStack(0, 4, scales=2))
    _refusal(lambda: DownStack(1, 4, scales=0))
    _refusal(lambda: UpStack(4, 1, scales=2, cond_channels=[1, 2, 3]))
    _refusal(lambda: SEResidualBlock(8, norm="layer"))
    _refusal(lambda: SEResidualBlock(8, activation="gelu"))


def test_param_count_matches_hand_computation():
    # SE(C=4, r=2): hidden 2 → fc1 4·2+2, fc2 2·4+4                                  = 22
    # SE-residual block (C=4, 3×3, with biases): 2·(9·4·4 + 4) + 22                   = 318
    # DownStack(1 → 4, 1 scale): stem 9·1·4+4 = 40; down conv 16·4·4+4 = 260; block  = 618
    # UpStack(4 → 1, 1 scale, cond 3): merge 3·4+4 = 16; block 318;
    #   transposed conv 4·4·16+4 = 260; head 9·4·1+1 = 37                             = 631
    assert param_count(SqueezeExcite(4, reduction=2)) == 22
    assert param_count(SEResidualBlock(4, reduction=2)) == 318
    assert param_count(DownStack(1, 4, scales=1, reduction=2)) == 618
    assert param_count(UpStack(4, 1, scales=1, cond_channels=3, reduction=2)) == 631
    # with BatchNorm the convs of the block lose their biases and gain 2·C affine parameters each
    assert param_count(SEResidualBlock(4, reduction=2, norm="batch")) == 318 - 2 * 4 + 2 * 2 * 4


def test_activation_estimate_counts_layer_outputs():
    # DownStack(1 → [8, 16], 2 scales, 1 block): stem output 8·28·28 per image; each scale: the down conv and a
    # block's conv, ReLU, conv, SE and sum outputs (6 maps); the SE gates' FC outputs (hidden 1, then C)
    down = DownStack(1, [8, 16], scales=2, reduction=16)
    per_image = 8 * 784 + 6 * 8 * 196 + 6 * 16 * 49 + (1 + 8) + (1 + 16)
    est = activation_estimate(down, (100, 1, 28, 28))
    assert est["elements"] == 100 * per_image
    assert est["bytes"] == 4 * 100 * per_image
    assert est["parameters"] == param_count(down)
    assert activation_estimate(down, (4, 25, 1, 28, 28))["elements"] == est["elements"]  # [R, B] leading dims
    assert all(p.device.type == "cpu" for p in down.parameters())  # the module itself is untouched
    up = UpStack([8, 16], 1, scales=2, cond_channels=[4, 0])
    est_up = activation_estimate(up, (2, 16, 7, 7), cond=[torch.zeros(2, 4, 14, 14), None])
    assert est_up["elements"] > 0
