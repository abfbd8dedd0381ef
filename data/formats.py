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
* CIFAR-10's python archive (``cifar-10-python.tar.gz``): a gzipped tar holding
  ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``; each
  batch a pickle (Python 2 ``cPickle``, protocol 2) of a dict whose ``data`` is a uint8 numpy array
  [10000, 3072] (each row the 1,024 red, then green, then blue values of a 32x32 image, each plane
  row-major) and ``labels`` a list of 10,000 ints in 0..9.  :func:`read_cifar_python` reads the members
  straight from the archive (nothing is extracted to disk) through :class:`RestrictedUnpickler`.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zlib
from typing import Dict, List, Tuple

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


# --------------------------------------------------------------------------- CIFAR-10 (python version)

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_ROW = 3 * 32 * 32


class UnsafePickleError(ValueError):
    """A pickle asked for a global its reader does not allow; nothing it named was imported or called.
    The message is one line naming the file and the refused global."""


def _numpy_globals() -> Dict[Tuple[str, str], object]:
    """The globals a pickled numpy array needs, resolved from numpy itself (never by importing a
    name the pickle gives): ``_reconstruct``, ``ndarray`` and ``dtype`` (protocols 0-4, as Python 2's
    cPickle wrote CIFAR-10) and ``_frombuffer`` (protocol 5), under numpy 1's ``numpy.core`` and
    numpy 2's ``numpy._core`` module names."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric
    table: Dict[Tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        table[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        if hasattr(numeric, "_frombuffer"):
            table[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy globals of :func:`_numpy_globals` (from a fixed table;
    ``find_class`` never imports) and refuses every other global with :class:`UnsafePickleError`, so a
    pickle naming ``os.system``, ``builtins.eval``, ``subprocess.Popen``... raises before anything it
    names is looked up, let alone called.  Persistent ids are refused too.  What it can build is plain
    data: dicts, lists, tuples, str/bytes, numbers, and numpy arrays and dtypes."""

    def __init__(self, file, source: str = "pickle", **kwargs):
        super().__init__(file, **kwargs)
        self._source = source
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        found = self._allowed.get((module, name))
        if found is None:
            raise UnsafePickleError(f"{self._source}: refused to load the global {module}.{name} (only numpy "
                                    f"arrays are allowed in this file); nothing was executed")
        return found

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: refused a persistent id in the pickle; nothing was executed")


def restricted_loads(data: bytes, source: str = "pickle", encoding: str = "latin1"):
    """``pickle.loads`` through :class:`RestrictedUnpickler`; ``encoding="latin1"`` turns Python 2 ``str``
    into ``str`` and lets numpy read Python 2 array data (numpy's documented setting)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source, encoding=encoding).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, UnicodeDecodeError) as error:
        text = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{source}: not a readable pickle ({type(error).__name__}: {text})") from None


def _key(key) -> object:
    return key.decode("latin1") if isinstance(key, bytes) else key


def read_cifar_batch(raw: bytes, source: str = "batch") -> Tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch pickle → (uint8 [n, 3072] rows, uint8 [n] labels), both checked."""
    batch = restricted_loads(raw, source)
    if not isinstance(batch, dict):
        raise ValueError(f"{source}: expected a pickled dict, got {type(batch).__name__}")
    batch = {_key(k): v for k, v in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise ValueError(f"{source}: no {key!r} entry (has {', '.join(sorted(map(str, batch)))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        described = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{source}: 'data' should be a uint8 array [n, {CIFAR_ROW}], got {described}")
    labels = batch["labels"]
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if (not isinstance(labels, (list, tuple)) or len(labels) != data.shape[0]
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 9 for v in labels)):
        raise ValueError(f"{source}: 'labels' should be {data.shape[0]} ints in 0..9")
    return np.ascontiguousarray(data), np.asarray(labels, dtype=np.uint8)


def read_cifar_python(path: os.PathLike) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10's python archive → ``{"train": (images, labels), "test": (images, labels)}``.

    ``images`` are uint8 [N, 3, 32, 32] (channel-major as stored: R, G, B planes), ``labels`` uint8
    [N]; train is ``data_batch_1`` .. ``data_batch_5`` in that order, test is ``test_batch``.  Members
    are read from the archive by their exact names (nothing is extracted; a member that is not a
    regular file is refused), and each pickle through :class:`RestrictedUnpickler`.
    """
    out: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(os.fspath(path), mode="r:gz") as archive:
            def member(name: str) -> bytes:
                full = f"{CIFAR_FOLDER}/{name}"
                try:
                    info = archive.getmember(full)
                except KeyError:
                    raise ValueError(f"{path}: no member {full} (not CIFAR-10's python archive?)") from None
                if not info.isfile():
                    raise ValueError(f"{path}: member {full} is not a regular file")
                handle = archive.extractfile(info)
                if handle is None:
                    raise ValueError(f"{path}: member {full} cannot be read")
                return handle.read()

            for split, batches in (("train", CIFAR_TRAIN_BATCHES), ("test", (CIFAR_TEST_BATCH,))):
                images: List[np.ndarray] = []
                labels: List[np.ndarray] = []
                for name in batches:
                    rows, batch_labels = read_cifar_batch(member(name), f"{path}:{CIFAR_FOLDER}/{name}")
                    images.append(rows)
                    labels.append(batch_labels)
                rows = np.concatenate(images)
                out[split] = (rows.reshape(len(rows), 3, 32, 32), np.concatenate(labels))
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        text = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{path}: not a readable tar.gz archive ({text})") from None
    return out
