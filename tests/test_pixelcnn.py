"""PixelCNN++ (models/pixelcnn.py) and its discretised logistic mixture likelihood (models/logistic_mixture.py).

Causality by gradients, normalisation of the 256-bin likelihood (grey: the sum over 256 values; RGB: each channel's
conditional given fixed earlier channels, per component), an independent float64 oracle for the RGB coupling,
shapes at 28×28×1 and 32×32×3 (with leading replicate dimensions), sampling, bits/dim of a uniform mixture, and the
one-line errors on bad input.  Tiny networks (8 filters, one layer per block), CPU, fixed seeds.
"""
import math

import pytest
import torch

from estibench.models.logistic_mixture import (DiscretizedLogisticMixture, dlm_bits_per_dim, dlm_component_log_probs,
                                               dlm_log_prob, dlm_num_params, dlm_sample, to_bins, to_unit)
from estibench.models.pixelcnn import PixelCNNpp

GRID64 = to_unit(torch.arange(256), torch.float64)


def tiny(channels, cond=0, n_mix=2, seed=0):
    torch.manual_seed(seed)
    return PixelCNNpp(channels=channels, filters=8, n_blocks=1, n_mix=n_mix, cond_channels=cond).double().eval()


# ---------------------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("channels", [1, 3])
def test_output_at_a_pixel_depends_only_on_earlier_pixels(channels):
    size, cond = 8, 2
    model = tiny(channels, cond)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(2, channels, size, size, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_()
    h = torch.randn(2, cond, size, size, generator=gen, dtype=torch.float64).requires_grad_()
    out = model(x, h)
    order = torch.arange(size * size).view(size, size)
    for i, j in [(0, 0), (0, 3), (1, 7), (3, 0), (4, 5), (7, 0), (7, 7)]:
        w = torch.randn(out.shape[1], generator=gen, dtype=torch.float64)
        gx, gh = torch.autograd.grad((out[0, :, i, j] * w).sum(), (x, h), retain_graph=True)
        assert torch.all(gx[1] == 0) and torch.all(gh[1] == 0), "images of a batch must not interact"
        depends = (gx[0] != 0).any(dim=0)                      # any channel of the input pixel
        earlier = order < i * size + j
        assert not depends[~earlier].any(), f"output at {(i, j)} depends on the pixel itself or later ones"
        if i > 0:
            assert depends[i - 1, j], f"output at {(i, j)} ignores the pixel above"
        if j > 0:
            assert depends[i, j - 1], f"output at {(i, j)} ignores the pixel to the left"
        if i * size + j > 0:
            assert depends[earlier].float().mean() > 0.9
        # the conditioning map is not constrained: it reaches the output from the pixel itself and later ones
        assert (gh[0] != 0).any(dim=0)[~earlier].any()


# ---------------------------------------------------------------------------------------------------- likelihood
def extreme_grey_params(n_mix=3):
    """``[1, 3K, 4, 8]``: 32 parameter settings, random and extreme (means at/over the edges, tiny/huge scales)."""
    gen = torch.Generator().manual_seed(2)
    p = torch.randn(1, 3 * n_mix, 4, 8, generator=gen, dtype=torch.float64)
    means = torch.tensor([-1.0, -0.999, 1.0, 0.999, -1.5, 2.0, 0.0, 1 / 255, -3.0, 0.5])
    log_scales = torch.tensor([-7.0, -30.0, -5.0, 0.0, 3.0, 10.0, 30.0, 100.0, -3.0, 1.0])
    flat = p.view(1, 3 * n_mix, 32)
    for s in range(10):
        flat[0, n_mix:2 * n_mix, s] = means[s]
        flat[0, 2 * n_mix:, s] = log_scales[(s + torch.arange(n_mix)) % 10]
    flat[0, :n_mix, 10] = torch.tensor([50.0, -50.0, 0.0])[:n_mix]
    return p


def test_grey_mixture_sums_to_one_over_256_values():
    params = extreme_grey_params().requires_grad_()
    x = GRID64.view(256, 1, 1, 1).expand(256, 1, 4, 8)
    lp = dlm_log_prob(x, params, 3, per_pixel=True)           # [256, 4, 8]
    total = lp.exp().sum(dim=0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5, rtol=0), (total - 1).abs().max()
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(params.grad).all()
    # float32 keeps it within float32's means (the mid-bin fallback and the log-space difference)
    lp32 = dlm_log_prob(x.float(), params.detach().float(), 3, per_pixel=True)
    assert torch.isfinite(lp32).all()
    assert (lp32.double().exp().sum(dim=0) - 1).abs().max() < 1e-4


def test_rgb_channel_conditionals_sum_to_one():
    n_mix, channels = 3, 3
    gen = torch.Generator().manual_seed(3)
    p = torch.randn(1, dlm_num_params(channels, n_mix), 4, 8, generator=gen, dtype=torch.float64) * 3
    k = n_mix
    means = p[0, k:k + channels * k].view(channels, k, 4, 8)
    log_scales = p[0, k + channels * k:k + 2 * channels * k].view(channels, k, 4, 8)
    means[:, :, 0] = torch.tensor([-1.0, 1.0, 0.999, -0.999, 2.0, -2.0, 0.0, 1.0])   # means near/over the edges
    log_scales[:, :, 1] = torch.tensor([-7.0, -20.0, 5.0, 20.0, 60.0, 0.0, -4.0, 2.0])  # tiny and huge scales
    p[0, k + 2 * channels * k:, 2] = 40.0                                                 # saturated coupling
    earlier = to_unit(torch.randint(0, 256, (1, channels, 4, 8), generator=gen), torch.float64)
    for c in range(channels):
        x = earlier.repeat(256, 1, 1, 1)
        x[:, c] = GRID64.view(256, 1, 1)                  # channel c over its 256 values, earlier ones fixed
        _, lp = dlm_component_log_probs(x, p, n_mix)      # [256, K, C, 4, 8]
        total = lp[:, :, c].exp().sum(dim=0)
        assert torch.allclose(total, torch.ones_like(total), atol=1e-5, rtol=0), (c, (total - 1).abs().max())
    log_w, _ = dlm_component_log_probs(earlier, p, n_mix)
    assert torch.allclose(log_w.exp().sum(dim=-3), torch.ones(1, 4, 8, dtype=torch.float64))


def test_rgb_log_prob_matches_a_direct_float64_formula():
    """Eq. (2)–(3) written out with plain sigmoids (fine for moderate parameters): edges, coupling order, tanh."""
    n_mix = 2
    gen = torch.Generator().manual_seed(4)
    params = torch.randn(3, 10 * n_mix, 2, 2, generator=gen, dtype=torch.float64)
    params[:, 2 * n_mix * 3 + n_mix:] *= 0.3                                   # log scales ~ e^0 (not floored)
    v = torch.randint(0, 256, (3, 3, 2, 2), generator=gen)
    v[0, 0, 0, 0], v[0, 1, 0, 1], v[1, 2, 1, 1] = 0, 255, 0
    x = to_unit(v, torch.float64)
    got = dlm_log_prob(x, params, n_mix, per_pixel=True)
    for b in range(3):
        for i in range(2):
            for j in range(2):
                q = params[b, :, i, j]
                logits, rest = q[:n_mix], q[n_mix:].view(3, 3, n_mix)   # [means|log scales|coeffs] × channel × K
                means, log_scales, coeffs = rest[0], rest[1], torch.tanh(rest[2])
                xs = x[b, :, i, j]
                total = 0.0
                for m in range(n_mix):
                    mu = [means[0, m], means[1, m] + coeffs[0, m] * xs[0],
                          means[2, m] + coeffs[1, m] * xs[0] + coeffs[2, m] * xs[1]]
                    prob = torch.softmax(logits, 0)[m]
                    for c in range(3):
                        s = torch.exp(log_scales[c, m])
                        hi = 1.0 if v[b, c, i, j] == 255 else torch.sigmoid((xs[c] + 1 / 255 - mu[c]) / s)
                        lo = 0.0 if v[b, c, i, j] == 0 else torch.sigmoid((xs[c] - 1 / 255 - mu[c]) / s)
                        prob = prob * (hi - lo)
                    total = total + prob
                assert math.isclose(got[b, i, j].item(), math.log(total), rel_tol=1e-9), (b, i, j)


# ---------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_shapes_with_replicate_dimensions(channels, size):
    model = tiny(channels, cond=3).float()
    n_params = dlm_num_params(channels, 2)
    assert n_params == (6 if channels == 1 else 20)
    x = to_unit(torch.randint(0, 256, (2, 3, channels, size, size), generator=torch.Generator().manual_seed(5)))
    for h in (torch.randn(2, 3, 3, size, size), torch.randn(2, 3, 3), torch.randn(2, 3, 3, 1, 1)):
        out = model(x, h)
        assert out.shape == (2, 3, n_params, size, size)
    lp = model.log_prob(x, h)
    assert lp.shape == (2, 3) and torch.isfinite(lp).all()
    assert torch.allclose(model(x[1], h[1]), out[1], atol=1e-5)     # leading dims are batch dims
    bpd = dlm_bits_per_dim(x, out, 2)
    assert bpd.shape == (2, 3) and (bpd > 0).all()


# ---------------------------------------------------------------------------------------------------- sampling
def test_sampling_round_trip_and_law():
    gen = torch.Generator().manual_seed(6)
    for channels in (1, 3):
        params = torch.randn(2, 3, dlm_num_params(channels, 4), 5, 6, generator=gen) * 2
        s = dlm_sample(params, 4, channels, generator=gen)
        assert s.shape == (2, 3, channels, 5, 6)
        assert torch.equal(to_unit(to_bins(s)), s) and s.abs().max() <= 1
        assert torch.isfinite(DiscretizedLogisticMixture(params, 4, channels).log_prob(s)).all()
    # grey: the empirical law of 40 000 draws against the 256 probabilities (total variation)
    params = torch.tensor([1.0, 0.0, -0.2, 0.9, -3.0, -1.5]).view(1, 6, 1, 1).double()
    probs = dlm_log_prob(GRID64.view(256, 1, 1, 1), params, 2, per_pixel=True).exp().view(256)
    draws = dlm_sample(params.expand(40_000, 6, 1, 1), 2, 1, generator=gen)
    freq = torch.bincount(to_bins(draws).view(-1), minlength=256).double() / 40_000
    assert 0.5 * (freq - probs).abs().sum() < 0.05
    # RGB coupling uses the rounded earlier values: with (almost) no noise the draw is the rounded coupled mean
    p = torch.zeros(1, 10, 1, 1, dtype=torch.float64)
    p[0, 1:4, 0, 0] = torch.tensor([0.3, -0.2, 0.1])       # means R, G, B
    p[0, 4:7, 0, 0] = -40.0                                 # log scales
    p[0, 7:10, 0, 0] = torch.atanh(torch.tensor([0.5, -0.25, 0.75], dtype=torch.float64))
    draw = dlm_sample(p, 1, 3, generator=gen, min_log_scale=-40.0)[0, :, 0, 0]
    r = to_unit(to_bins(torch.tensor(0.3, dtype=torch.float64)), torch.float64)
    g = to_unit(to_bins(-0.2 + 0.5 * r), torch.float64)
    b = to_unit(to_bins(0.1 - 0.25 * r + 0.75 * g), torch.float64)
    assert torch.equal(draw, torch.stack([r, g, b]))


def test_model_samples_pixel_by_pixel():
    model = tiny(3, cond=2)
    gen = torch.Generator().manual_seed(7)
    h = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    x = model.sample(2, (4, 4), h=h, generator=gen)
    assert x.shape == (2, 3, 4, 4) and torch.equal(to_unit(to_bins(x), torch.float64), x)
    assert torch.isfinite(model.log_prob(x, h)).all()


def test_uniform_mixture_has_8_bits_per_dim():
    """256 narrow components at the bin centres with equal weights: p ≈ 1/256 per value, so ≈ 8 bits/dim."""
    n_mix, size = 256, 28
    params = torch.zeros(1, 3 * n_mix, size, size, dtype=torch.float64)
    params[0, n_mix:2 * n_mix] = GRID64.view(n_mix, 1, 1)
    params[0, 2 * n_mix:] = -7.0
    x = to_unit(torch.randint(0, 256, (4, 1, size, size), generator=torch.Generator().manual_seed(8)), torch.float64)
    bpd = DiscretizedLogisticMixture(params, n_mix, channels=1).bits_per_dim(x)
    assert bpd.shape == (4,)
    assert torch.allclose(bpd, torch.full_like(bpd, 8.0), atol=2e-3), bpd
    assert torch.allclose(bpd, -dlm_log_prob(x, params, n_mix) / (size * size * math.log(2)))


# ---------------------------------------------------------------------------------------------------- bad input
def one_line_error(fn, match):
    with pytest.raises(ValueError, match=match) as err:
        fn()
    assert "\n" not in str(err.value)


def test_bad_input_is_refused_with_one_line():
    model = tiny(3)
    one_line_error(lambda: model(torch.zeros(1, 3, 30, 32, dtype=torch.float64)), "not divisible by 4")
    one_line_error(lambda: model(torch.zeros(1, 1, 32, 32, dtype=torch.float64)), "3-channel images, got 1")
    one_line_error(lambda: model(torch.zeros(1, 3, 8, 8, dtype=torch.float64), torch.zeros(1, 2)), "cond_channels=0")
    cond = tiny(1, cond=2)
    one_line_error(lambda: cond(torch.zeros(1, 1, 8, 8, dtype=torch.float64)), "pass h")
    one_line_error(lambda: cond(torch.zeros(1, 1, 8, 8, dtype=torch.float64), torch.zeros(1, 2, 4, 4)), "h must be")
    grey = torch.zeros(1, dlm_num_params(1, 2), 4, 4)
    one_line_error(lambda: dlm_log_prob(torch.zeros(1, 3, 4, 4), grey, 2), "3-channel mixture .* got 6 .*1-channel")
    one_line_error(lambda: DiscretizedLogisticMixture(grey, 2, channels=1).log_prob(torch.zeros(1, 3, 4, 4)),
                   "1-channel images")
    one_line_error(lambda: DiscretizedLogisticMixture(grey, 2, channels=3), "takes 20 parameter maps")
    one_line_error(lambda: dlm_num_params(0, 2), "channels")
    one_line_error(lambda: PixelCNNpp(channels=3, filters=0), "filters")
