"""Readers for the file formats the datasets ship in.  All return numpy arrays, one image a row.

* ``.amat`` (Larochelle's static MNIST): one image per line, 784 space-separated ``0``/``1``.
* idx (LeCun's MNIST, optionally gzipped): big-endian header ``0x00 0x00 <type> <ndim>``, then
  ``ndim`` big-endian int32 sizes, then the values in C order.
* ``.mat`` (MATLAB, via ``scipy.io.loadmat``): Burda's ``chardata.mat`` and Marlin's Caltech-101
  silhouettes.  Both were written from MATLAB, whose 28x28 images flatten column-major: a row of
  784 values is the image read column by column.  :func:`columns_to_rows` transposes each image
  so that rows hold row-major (upright) images.  For Omniglot this is exactly what Burda's IWAE
  code and the REBAR code do with ``data.T.reshape((-1, 28, 28)).reshape((-1, 784),
  order='fortran')``.
"""
from __future__ import annotations

import gzip
import os
import struct
from typing import Dict

import numpy as np

_IDX_TYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def read_amat(path: os.PathLike, width: int = 784) -> np.ndarray:
    """A binary ``.amat`` file as a uint8 array [rows, width] of 0/1."""
    with open(path, "rb") as f:
        raw = f.read()
    data = np.frombuffer(raw, dtype=np.uint8)
    allowed = np.zeros(256, dtype=bool)
    allowed[list(b"01 \t\r\n")] = True
    if allowed[data].all():
        # fast path: every value is a single character '0' or '1'
        is_digit = (data == ord("0")) | (data == ord("1"))
        if (is_digit[1:] & is_digit[:-1]).any():
            raise ValueError(f"{path}: values must be single 0/1 characters separated by spaces")
        lines = [line for line in raw.splitlines() if line.strip()]
        for number, line in enumerate(lines, 1):
            if line.count(b"0") + line.count(b"1") != width:
                raise ValueError(f"{path}: line {number} does not hold {width} values")
        digits = data[is_digit] - ord("0")
        return digits.reshape(len(lines), width).astype(np.uint8)
    values = np.loadtxt(path, ndmin=2)
    if values.shape[1] != width or not np.isin(values, (0, 1)).all():
        raise ValueError(f"{path}: expected rows of {width} binary values, got {values.shape}")
    return values.astype(np.uint8)


def read_idx(path: os.PathLike) -> np.ndarray:
    """An idx file (gzipped or not) as an array of its stored shape and type (native order)."""
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an idx file (magic {raw[:4]!r})")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    shape = struct.unpack(f">{ndim}i", raw[4:4 + 4 * ndim])
    count = int(np.prod(shape)) if ndim else 1
    offset = 4 + 4 * ndim
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {shape} but {len(raw) - offset} bytes follow")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape).astype(
        dtype.newbyteorder("="))


def columns_to_rows(images: np.ndarray, side: int = 28) -> np.ndarray:
    """[N, side*side] column-major (MATLAB) images -> [N, side*side] row-major images."""
    n = images.shape[0]
    return np.ascontiguousarray(images.reshape(n, side, side).transpose(0, 2, 1)).reshape(n, -1)


def _loadmat(path: os.PathLike) -> Dict[str, np.ndarray]:
    try:
        from scipy.io import loadmat
    except ImportError as error:  # pragma: no cover - scipy comes with mlxtend
        raise ImportError(f"reading {path} needs scipy (pip install scipy)") from error
    return loadmat(os.fspath(path))


def read_burda_omniglot(path: os.PathLike):
    """Burda's ``chardata.mat``: (train, test) grey images in [0, 1], float32 [N, 784], upright.

    ``data`` is 784 x 24,345 and ``testdata`` 784 x 8,070, one column-major image per column.
    """
    raw = _loadmat(path)
    out = []
    for key in ("data", "testdata"):
        if key not in raw:
            raise ValueError(f"{path}: no {key!r} variable (Burda's chardata.mat has 'data', 'testdata')")
        images = np.asarray(raw[key], dtype=np.float32).T
        if images.ndim != 2 or images.shape[1] != 784:
            raise ValueError(f"{path}: {key!r} should be 784 x N, got {raw[key].shape}")
        if images.min() < 0 or images.max() > 1:
            raise ValueError(f"{path}: {key!r} values should lie in [0, 1]")
        out.append(columns_to_rows(images))
    return out[0], out[1]


def read_marlin_silhouettes(path: os.PathLike):
    """Marlin's Caltech-101 silhouettes: (train, valid, test) uint8 0/1 [N, 784], upright."""
    raw = _loadmat(path)
    out = []
    for key in ("train_data", "val_data", "test_data"):
        if key not in raw:
            raise ValueError(f"{path}: no {key!r} variable (expected train_data, val_data, test_data)")
        images = np.asarray(raw[key])
        if images.ndim != 2 or images.shape[1] != 784:
            raise ValueError(f"{path}: {key!r} should be N x 784, got {images.shape}")
        if not np.isin(images, (0, 1)).all():
            raise ValueError(f"{path}: {key!r} is not binary")
        out.append(columns_to_rows(images.astype(np.uint8)))
    return tuple(out)
