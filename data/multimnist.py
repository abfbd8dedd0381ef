"""Multi-MNIST for Attend-Infer-Repeat (the RWS paper's §4.1 data; ``akosiorek/ws_air``'s generator):
0, 1 or 2 MNIST digits on a 50 × 50 canvas, each digit cropped to its bounding box, no two overlapping,
the count uniform on {0, 1, 2}; stochastically binarised (grey levels kept, each batch re-sampled, as the
paper's Bernoulli likelihood on "stochastically binarised images").

The name records the source and the seed, so a set is a pure function of its name:

* ``multi-mnist5k-s<seed>`` — from the embedded 5,000 digits (``mnist5k-dynamic``'s grey levels and split):
  4,000 training images from the training digits, 500 validation and 500 test images from the others; no
  download.
* ``multi-mnist-s<seed>`` — from LeCun's MNIST (``mnist-dynamic``, which must be cached:
  ``run_all.py fetch-data mnist-dynamic``): 60,000 training images from its 60,000 training digits (the
  paper), 10,000 validation from the same digits with another stream, 10,000 test from the test digits.

Generation (numpy ``RandomState(seed)``, one stream per split: seeds ``seed``, ``seed + 1``, ``seed + 2``):
per image, the count c ~ U{0, 1, 2}; per digit, a source digit uniformly, cropped to the rows and columns
with a non-zero pixel, placed at a uniform top-left corner where it fits, re-placed until its box overlaps
no earlier box.  Deviation, stated: the reference code gives up after 5 placements (what it does then is
not documented); here placement is retried up to 100 times and then the digit is redrawn, so every image
has exactly c non-overlapping digits.  Each image records its count and boxes (top, left, height, width)
for count accuracy and box drawings.
"""
from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

import numpy as np
import torch

CANVAS = 50
MAX_DIGITS = 2
PLACEMENT_TRIES = 100
PATTERN = re.compile(r"multi-mnist(5k)?-s(\d+)")
#: images per split (train, valid, test) for each source
SIZES = {"5k": (4000, 500, 500), "full": (60000, 10000, 10000)}


def parse(name: str) -> Optional[Tuple[str, int]]:
    """(source, seed) for a multi-MNIST name (source "5k" or "full"), else None."""
    match = PATTERN.fullmatch(str(name))
    if not match:
        return None
    return ("5k" if match.group(1) else "full"), int(match.group(2))


def crop(digit: np.ndarray) -> np.ndarray:
    """The digit (28 × 28) cut to the rows and columns holding a non-zero pixel."""
    rows, cols = np.nonzero(digit.any(1))[0], np.nonzero(digit.any(0))[0]
    if len(rows) == 0:
        return digit[:1, :1]
    return digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _overlaps(box, boxes) -> bool:
    top, left, h, w = box
    return any(top < t + hh and t < top + h and left < l + ww and l < left + w for t, l, hh, ww in boxes)


def generate(digits: np.ndarray, n: int, seed: int, canvas: int = CANVAS, max_digits: int = MAX_DIGITS
             ) -> Dict[str, np.ndarray]:
    """``n`` images from ``digits`` (uint8 [N, 28, 28]): ``images`` uint8 [n, canvas²], ``counts`` int64 [n],
    ``boxes`` int64 [n, max_digits, 4] (top, left, height, width; −1 where absent)."""
    rng = np.random.RandomState(int(seed))
    images = np.zeros((n, canvas, canvas), dtype=np.uint8)
    counts = rng.randint(0, max_digits + 1, size=n)
    boxes = np.full((n, max_digits, 4), -1, dtype=np.int64)
    for i in range(n):
        placed = []
        while len(placed) < counts[i]:
            patch = crop(digits[rng.randint(len(digits))])
            h, w = patch.shape
            for _ in range(PLACEMENT_TRIES):
                box = (rng.randint(canvas - h + 1), rng.randint(canvas - w + 1), h, w)
                if not _overlaps(box, placed):
                    break
            else:
                continue  # redraw the digit
            top, left = box[0], box[1]
            images[i, top:top + h, left:left + w] = patch
            boxes[i, len(placed)] = box
            placed.append(box)
    return {"images": images.reshape(n, canvas * canvas), "counts": counts.astype(np.int64), "boxes": boxes}


def build(source: str, seed: int, cache_dir=None) -> Tuple[Dict[str, Dict[str, np.ndarray]], str]:
    """Every split of ``multi-mnist{5k}-s<seed>``: split → generate()'s arrays, and a one-line description."""
    from .datasets import load
    base = load("mnist5k-dynamic" if source == "5k" else "mnist-dynamic", cache_dir=cache_dir)
    grey = [np.rint(t.numpy() * 255).astype(np.uint8).reshape(-1, 28, 28) for t in (base.train, base.valid, base.test)]
    train_digits = grey[0] if source == "5k" else np.concatenate([grey[0], grey[1]])  # mnist-dynamic: all 60k
    held_out = grey[1] if source == "5k" else grey[0]
    sizes = SIZES[source]
    splits = {"train": generate(train_digits, sizes[0], seed),
              "valid": generate(held_out if source == "5k" else train_digits, sizes[1], seed + 1),
              "test": generate(grey[2], sizes[2], seed + 2)}
    origin = "the embedded 5,000 digits (mnist5k-dynamic)" if source == "5k" else "LeCun's MNIST (mnist-dynamic)"
    described = "/".join(f"{len(splits[s]['counts']):,}" for s in ("train", "valid", "test"))
    return splits, (f"multi-MNIST from {origin}: 0–2 digits cropped to their boxes on a {CANVAS} × {CANVAS} canvas, "
                    f"no overlap, count uniform on {{0, 1, 2}}, numpy RandomState({seed}, +1, +2 per split); "
                    f"stochastically binarised; {described} train/valid/test")


def tensors(splits: Dict[str, Dict[str, np.ndarray]]):
    """(train, valid, test) grey levels in [0, 1] as float32 tensors, and split → {counts, boxes} tensors."""
    images = [torch.from_numpy(splits[s]["images"]).to(torch.float32) / 255.0 for s in ("train", "valid", "test")]
    targets = {s: {k: torch.from_numpy(splits[s][k]) for k in ("counts", "boxes")} for s in splits}
    return images, targets
