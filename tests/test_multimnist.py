"""The multi-MNIST generator for Attend-Infer-Repeat (data/multimnist.py): a pure function of its name,
0–2 non-overlapping digits cropped to their boxes on a 50 × 50 canvas, the count uniform on {0, 1, 2}."""
import numpy as np
import pytest
import torch

from estibench import data
from estibench.data import multimnist


def test_a_set_is_a_pure_function_of_its_name():
    a = data.load("multi-mnist5k-s0")
    data.clear_memory_cache()
    b = data.load("multi-mnist5k-s0")
    assert torch.equal(a.train, b.train) and torch.equal(a.targets["test"]["boxes"], b.targets["test"]["boxes"])
    c = data.load("multi-mnist5k-s1")
    assert not torch.equal(a.train, c.train)
    assert a.image_shape == (50, 50) and a.train.shape == (4000, 2500) and a.dynamic
    assert (len(a.valid), len(a.test)) == (500, 500) and data.statistics("multi-mnist5k-s0")["train_mean"].shape == (2500,)


def test_counts_are_uniform_and_digits_never_overlap():
    """χ² of the 4,000 training counts against U{0, 1, 2}: below 13.8 (df 2, false-alarm rate 1e-3).  Every
    box lies on the canvas, no two boxes of an image overlap, each box is tight (its border rows and columns
    hold ink), and nothing is drawn outside the boxes."""
    d = data.load("multi-mnist5k-s0")
    counts = d.targets["train"]["counts"]
    observed = torch.bincount(counts, minlength=3).double()
    chi2 = float(((observed - len(counts) / 3) ** 2 / (len(counts) / 3)).sum())
    assert chi2 < 13.8, observed
    images = (d.train * 255).round().to(torch.uint8).view(-1, 50, 50).numpy()
    boxes = d.targets["train"]["boxes"].numpy()
    for image, c, bs in zip(images[:1000], counts[:1000].numpy(), boxes[:1000]):
        live = [tuple(b) for b in bs if b[0] >= 0]
        assert len(live) == c
        mask = np.zeros_like(image, dtype=bool)
        for top, left, h, w in live:
            assert 0 <= top and top + h <= 50 and 0 <= left and left + w <= 50
            patch = image[top:top + h, left:left + w]
            assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()
            assert not mask[top:top + h, left:left + w].any()  # no overlap with an earlier box
            mask[top:top + h, left:left + w] = True
        assert not image[~mask].any()


def test_every_placed_digit_is_a_cropped_source_digit():
    grey = np.rint(data.load("mnist5k-dynamic").test.numpy() * 255).astype(np.uint8).reshape(-1, 28, 28)
    crops = {}
    for digit in grey:
        patch = multimnist.crop(digit)
        crops.setdefault(patch.shape, []).append(patch)
    d = data.load("multi-mnist5k-s0")
    images = (d.test * 255).round().to(torch.uint8).view(-1, 50, 50).numpy()
    checked = 0
    for image, bs in zip(images[:50], d.targets["test"]["boxes"].numpy()[:50]):
        for top, left, h, w in (b for b in bs if b[0] >= 0):
            patch = image[top:top + h, left:left + w]
            assert any(np.array_equal(patch, c) for c in crops[(h, w)])
            checked += 1
    assert checked > 30


def test_names_are_checked_and_the_full_set_needs_mnist_dynamic(tmp_path):
    with pytest.raises(data.UnknownDatasetError, match="multi-mnist5k-s<seed>") as err:
        data.load("multi-mnist5k-seed0")
    assert "\n" not in str(err.value)
    with pytest.raises(data.DatasetMissingError) as err:
        data.load("multi-mnist-s0", cache_dir=tmp_path)
    assert "\n" not in str(err.value) and "mnist-dynamic" in str(err.value)
