"""CIFAR-10 in the data layer (no network, never the real archive): a small fixture archive with the real
member names and the real batch format, fetched, verified, loaded; corrupted, missing and malicious archives
are refused in one line; the units (nats, bits/dim).

The fixture batches are written as Python 2's cPickle wrote CIFAR-10's (protocol 2, ``str`` as
SHORT_BINSTRING/BINSTRING, the array through ``numpy.core.multiarray._reconstruct``), opcode by opcode, so
the reader is tested on the layout of the real file; Python 3 pickles (protocols 3-5) are tested too.
The fixture's checksum and size are made the expected ones with ``sources.pinned`` only.
"""
import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import tarfile
import urllib.error

import numpy as np
import pytest
import torch

from estibench import data as estidata
from estibench.data import formats, sources

ARCHIVE = "cifar-10-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TRAIN_SIZES = (1000, 1001, 1002, 1003, 1004)  # 5,010 training images: 10 train + the 5,000 validation
N_TEST = 7


# --------------------------------------------------------------------------- fixture writers

def _sbs(raw: bytes) -> bytes:
    """A Python 2 ``str``: SHORT_BINSTRING, or BINSTRING when longer than 255 bytes."""
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw
    return b"T" + struct.pack("<i", len(raw)) + raw


def _int(v: int) -> bytes:
    return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)


def _py2_array(a: np.ndarray) -> bytes:
    """A C-contiguous uint8 numpy array as Python 2 numpy pickled it (protocol 2)."""
    out = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _int(0) + b"\x85" + _sbs(b"b") + b"\x87R"
    out += b"(" + _int(1) + b"(" + b"".join(_int(d) for d in a.shape) + b"t"
    out += b"cnumpy\ndtype\n" + _sbs(b"u1") + _int(0) + _int(1) + b"\x87R"
    out += b"(" + _int(3) + _sbs(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb"
    out += b"\x89" + _sbs(a.tobytes()) + b"tb"
    return out


def py2_batch(data: np.ndarray, labels, batch_label: str) -> bytes:
    """A CIFAR batch: {'batch_label', 'labels', 'data', 'filenames'} in cPickle protocol 2."""
    out = b"\x80\x02}("
    out += _sbs(b"batch_label") + _sbs(batch_label.encode())
    out += _sbs(b"labels") + b"](" + b"".join(_int(int(v)) for v in labels) + b"e"
    out += _sbs(b"data") + _py2_array(np.ascontiguousarray(data, dtype=np.uint8))
    out += _sbs(b"filenames") + b"](" + b"".join(_sbs(f"img_{i}.png".encode()) for i in range(len(labels))) + b"e"
    return out + b"u."


def write_archive(path, members: dict):
    """A tar.gz holding ``cifar-10-batches-py/<name>`` for each (name → bytes) of ``members``."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def cifar_members(rng):
    """The six batches and batches.meta; returns (members, all train rows, train labels, test rows, test labels)."""
    rows = [rng.integers(0, 256, (n, 3072), dtype=np.uint8) for n in TRAIN_SIZES]
    # the first image: a red plane of 255, a green plane of 0, a blue plane of 128 (channel-major order)
    rows[0][0] = np.concatenate([np.full(1024, 255), np.zeros(1024), np.full(1024, 128)]).astype(np.uint8)
    labels = [rng.integers(0, 10, n) for n in TRAIN_SIZES]
    test_rows, test_labels = rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8), rng.integers(0, 10, N_TEST)
    members = {f"data_batch_{i + 1}": py2_batch(rows[i], labels[i], f"training batch {i + 1} of 5")
               for i in range(5)}
    members["test_batch"] = py2_batch(test_rows, test_labels, "testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10, b"num_vis": 3072}, protocol=3)
    return members, np.concatenate(rows), np.concatenate(labels), test_rows, test_labels


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@pytest.fixture(scope="module")
def fixture_archive(tmp_path_factory):
    server = tmp_path_factory.mktemp("cifar-server")
    members, train, train_labels, test, test_labels = cifar_members(np.random.default_rng(0))
    path = write_archive(server / ARCHIVE, members)
    return {"path": path, "sha256": sha256(path), "size": path.stat().st_size, "members": members,
            "train": train, "train_labels": train_labels, "test": test, "test_labels": test_labels}


@pytest.fixture
def pin(fixture_archive):
    """The fixture's SHA-256 and size as the expected ones, through the documented hook."""
    with sources.pinned(ARCHIVE, fixture_archive["sha256"], fixture_archive["size"]):
        yield fixture_archive
    estidata.clear_memory_cache()


def serve(monkeypatch, path, calls=None):
    def copy(url, dest):
        if calls is not None:
            calls.append(url)
        with open(path, "rb") as src, open(dest, "wb") as out:
            out.write(src.read())
    monkeypatch.setattr(sources, "_download", copy)


def offline(monkeypatch):
    def refuse(url, dest):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(sources, "_download", refuse)


def one_line_error(argv, capsys):
    assert estidata.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and "Traceback" not in captured.err
    assert all(line.startswith("fetching ") for line in lines[:-1]), captured.err
    assert lines[-1].startswith(("run_all.py fetch-data: error: ", "estibench fetch-data: error: "))
    return lines[-1]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- source table

def test_the_source_is_krizhevskys_archive_with_its_published_checksum():
    (filename, url, digest), = estidata.SOURCES["cifar10"]
    assert filename == ARCHIVE and url == URL
    assert digest == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert sources.KNOWN_SIZES[ARCHIVE] == 170_498_071
    assert "cifar10" in estidata.names()


def test_pinned_restores_the_published_values():
    before = (sources.KNOWN_SHA256[ARCHIVE], sources.KNOWN_SIZES[ARCHIVE])
    with sources.pinned(ARCHIVE, "a" * 64, 12):
        assert (sources.KNOWN_SHA256[ARCHIVE], sources.KNOWN_SIZES[ARCHIVE]) == ("a" * 64, 12)
    assert (sources.KNOWN_SHA256[ARCHIVE], sources.KNOWN_SIZES[ARCHIVE]) == before
    with pytest.raises(RuntimeError), sources.pinned(ARCHIVE, "b" * 64):
        assert ARCHIVE not in sources.KNOWN_SIZES
        raise RuntimeError("restored on an error too")
    assert (sources.KNOWN_SHA256[ARCHIVE], sources.KNOWN_SIZES[ARCHIVE]) == before
    with pytest.raises(ValueError):
        with sources.pinned(ARCHIVE, "not a digest"):
            pass


# --------------------------------------------------------------------------- fetch and load

def test_fetch_data_downloads_verifies_and_load_gives_the_exact_pixels(pin, tmp_path, monkeypatch, capsys):
    calls = []
    serve(monkeypatch, pin["path"], calls)
    cache = tmp_path / "cache"
    monkeypatch.setenv(estidata.CACHE_ENV, str(cache))  # the cache through $ESTIBENCH_DATA
    assert estidata.main(["fetch-data", "cifar10"]) == 0
    folder = cache.resolve() / "cifar10"
    assert capsys.readouterr().out.strip() == str(folder)
    assert calls == [URL] and leftovers(folder) == [ARCHIVE]  # no .part, no sidecar (a published hash)
    assert sha256(folder / ARCHIVE) == pin["sha256"]
    offline(monkeypatch)  # fetching again and loading use the cache only
    assert estidata.main(["cifar10"]) == 0
    capsys.readouterr()

    ds = estidata.load("cifar10")
    assert isinstance(ds, estidata.ColourImageData) and ds.name == "cifar10"
    assert [tuple(t.shape) for t in (ds.train, ds.valid, ds.test)] == [(10, 3, 32, 32), (5000, 3, 32, 32),
                                                                       (N_TEST, 3, 32, 32)]
    assert all(t.dtype == torch.uint8 and t.device.type == "cpu" for t in (ds.train, ds.valid, ds.test))
    assert ds.image_shape == (3, 32, 32) and ds.bits == 8 and ds.levels == 256 and ds.dims == 3072
    assert ds.unit == "bits/dim" == estidata.unit("cifar10") and ds.kind == "colour"
    assert not hasattr(ds, "binarise") and not hasattr(ds, "dynamic")
    # exact values: train = the first 10 training rows, valid = the last 5,000, test = test_batch
    images = pin["train"].reshape(-1, 3, 32, 32)
    assert np.array_equal(ds.train.numpy(), images[:10])
    assert np.array_equal(ds.valid.numpy(), images[10:])
    assert np.array_equal(ds.test.numpy(), pin["test"].reshape(-1, 3, 32, 32))
    # channel-major: a row holds the R plane, then G, then B, each row-major 32 x 32
    assert (ds.train[0, 0] == 255).all() and (ds.train[0, 1] == 0).all() and (ds.train[0, 2] == 128).all()
    row = pin["train"][3]
    for c, h, w in ((0, 0, 1), (1, 2, 3), (2, 31, 0), (2, 5, 31)):
        assert int(ds.train[3, c, h, w]) == int(row[c * 1024 + h * 32 + w])
    assert np.array_equal(ds.targets["train"]["labels"].numpy(), pin["train_labels"][:10])
    assert np.array_equal(ds.targets["valid"]["labels"].numpy(), pin["train_labels"][10:])
    assert np.array_equal(ds.targets["test"]["labels"].numpy(), pin["test_labels"])
    assert ds.train_mean.dtype == torch.float32 and ds.train_mean.shape == (3, 32, 32)
    assert torch.allclose(ds.train_mean, ds.train.float().mean(0))
    line = ds.describe()
    assert "\n" not in line and "10/5,000/7 train/valid/test" in line and "bits/dim" in line
    assert "ColourImageData('cifar10'" in repr(ds)
    # each load is its own copy; statistics come from the data layer, at full resolution only
    ds.train.zero_()
    assert np.array_equal(estidata.load("cifar10").train.numpy(), images[:10])
    stats = estidata.statistics("cifar10")
    assert stats["unit"] == "bits/dim" and stats["dims"] == 3072 and stats["image_shape"] == (3, 32, 32)
    assert torch.allclose(stats["train_mean"], torch.from_numpy(images[:10]).float().mean(0))
    with pytest.raises(ValueError, match="downsample=2") as info:
        estidata.statistics("cifar10", downsample=2)
    assert "\n" not in str(info.value)
    assert leftovers(folder) == [ARCHIVE]  # no processed copy is written


def test_python3_pickles_of_a_batch_load_too():
    rng = np.random.default_rng(1)
    data, labels = rng.integers(0, 256, (4, 3072), dtype=np.uint8), [0, 9, 3, 3]
    for protocol in (3, 4, 5):
        raw = pickle.dumps({b"batch_label": b"x", b"labels": labels, b"data": data}, protocol=protocol)
        rows, got = formats.read_cifar_batch(raw, f"protocol {protocol}")
        assert np.array_equal(rows, data) and got.tolist() == labels


# --------------------------------------------------------------------------- corrupt, missing, malicious

def test_a_corrupted_download_is_one_line_and_leaves_no_file(pin, tmp_path, monkeypatch, capsys):
    raw = bytearray(pin["path"].read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes
    bad = tmp_path / "server" / ARCHIVE
    bad.parent.mkdir()
    bad.write_bytes(bytes(raw))
    serve(monkeypatch, bad)
    cache = tmp_path / "cache"
    with pytest.raises(estidata.DatasetChecksumError) as info:
        estidata.fetch("cifar10", cache_dir=cache)
    message = str(info.value)
    assert "\n" not in message and ARCHIVE in message and pin["sha256"] in message and sha256(bad) in message
    assert leftovers(cache / "cifar10") == []
    err = one_line_error(["cifar10", "--cache", str(cache)], capsys)
    assert "SHA-256" in err and ARCHIVE in err and leftovers(cache / "cifar10") == []
    # a truncated download: refused on its size before hashing, one line, nothing written
    bad.write_bytes(pin["path"].read_bytes()[:1000])
    err = one_line_error(["cifar10", "--cache", str(cache)], capsys)
    assert f"has 1,000 bytes but {pin['size']:,} are expected" in err and leftovers(cache / "cifar10") == []


def test_a_corrupted_file_in_the_cache_is_refused_in_one_line_and_left_in_place(pin, tmp_path, monkeypatch):
    offline(monkeypatch)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    raw = bytearray(pin["path"].read_bytes())
    raw[-5] ^= 0x01
    (folder / ARCHIVE).write_bytes(bytes(raw))
    with pytest.raises(estidata.DatasetChecksumError) as info:
        estidata.load("cifar10", cache_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "delete it and fetch it again" in message and "fetch-data cifar10" in message
    assert leftovers(folder) == [ARCHIVE]


def test_the_fixture_fails_the_real_published_values(fixture_archive, tmp_path, monkeypatch):
    """Without pinning, the real size and SHA-256 are in force: the fixture in the cache is refused."""
    offline(monkeypatch)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / ARCHIVE).write_bytes(fixture_archive["path"].read_bytes())
    with pytest.raises(estidata.DatasetChecksumError, match="170,498,071 are expected") as info:
        estidata.load("cifar10", cache_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_missing_archive_offline_is_one_line_naming_the_url_and_the_place(tmp_path, monkeypatch, capsys):
    def refuse(url, dest):
        raise AssertionError("load must not download")
    monkeypatch.setattr(sources, "_download", refuse)
    target = tmp_path.resolve() / "cifar10" / ARCHIVE
    with pytest.raises(estidata.DatasetMissingError) as info:
        estidata.load("cifar10", cache_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and ARCHIVE in message and URL in message and str(target) in message
    assert "fetch-data cifar10" in message
    offline(monkeypatch)
    with pytest.raises(estidata.DatasetMissingError) as info:
        estidata.fetch("cifar10", cache_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and URL in message and str(target) in message
    assert "Temporary failure in name resolution" in message
    err = one_line_error(["cifar10", "--cache", str(tmp_path)], capsys)
    assert URL in err and str(target) in err
    assert leftovers(tmp_path / "cifar10") == []


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_naming_a_forbidden_global_is_refused_without_running_it(fixture_archive, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    members = dict(fixture_archive["members"])
    members["data_batch_1"] = pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=4)
    (tmp_path / "server").mkdir()
    evil = write_archive(tmp_path / "server" / ARCHIVE, members)
    folder = tmp_path / "cache" / "cifar10"
    folder.mkdir(parents=True)
    (folder / ARCHIVE).write_bytes(evil.read_bytes())
    offline(monkeypatch)
    # the checksum passes (pinned): the restricted unpickler is what refuses it
    with sources.pinned(ARCHIVE, sha256(evil), evil.stat().st_size):
        with pytest.raises(estidata.UnsafePickleError) as info:
            estidata.load("cifar10", cache_dir=tmp_path / "cache")
    estidata.clear_memory_cache()
    message = str(info.value)
    assert "\n" not in message and "data_batch_1" in message and "system" in message
    assert "nothing was executed" in message and isinstance(info.value, ValueError)
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                          ("subprocess", "Popen"), ("numpy", "load"), ("_codecs", "encode"),
                                          ("numpy.core.multiarray", "scalar")])
def test_only_the_numpy_array_globals_are_allowed(module, name):
    raw = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    with pytest.raises(formats.UnsafePickleError, match=f"{module}.{name}") as info:
        formats.restricted_loads(raw, "evil")
    assert "\n" not in str(info.value)


def test_a_malformed_archive_is_one_line(fixture_archive, tmp_path):
    members = dict(fixture_archive["members"])
    del members["test_batch"]
    with pytest.raises(ValueError, match="no member cifar-10-batches-py/test_batch") as info:
        formats.read_cifar_python(write_archive(tmp_path / "short.tar.gz", members))
    assert "\n" not in str(info.value)
    (tmp_path / "junk.tar.gz").write_bytes(gzip.compress(b"not a tar")[:20])
    with pytest.raises(ValueError, match="not a readable tar.gz archive") as info:
        formats.read_cifar_python(tmp_path / "junk.tar.gz")
    assert "\n" not in str(info.value)
    bad = {**members, "test_batch": pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]})}
    with pytest.raises(ValueError, match=r"'data' should be a uint8 array \[n, 3072\]"):
        formats.read_cifar_python(write_archive(tmp_path / "bad.tar.gz", bad))


# --------------------------------------------------------------------------- units

def test_bits_per_dim_arithmetic():
    ln2 = math.log(2.0)
    assert estidata.bits_per_dim(-3072 * ln2 * 2.92, 3072) == pytest.approx(2.92)
    assert estidata.bits_per_dim(-ln2, 1) == pytest.approx(1.0)
    assert estidata.bits_per_dim(0.0, 10) == 0.0
    # a uniform model over 256 levels: exactly 8 bits/dim
    assert estidata.bits_per_dim(-3072 * math.log(256), 3072) == pytest.approx(8.0)
    t = torch.tensor([-3072 * ln2, -2 * 3072 * ln2], dtype=torch.float64)
    assert torch.allclose(estidata.bits_per_dim(t, 3072), torch.tensor([1.0, 2.0], dtype=torch.float64))
    a = np.array([-784 * ln2])
    assert np.allclose(estidata.bits_per_dim(a, 784), [1.0])
    for dims in (0, -3, 2.5, True):
        with pytest.raises(ValueError):
            estidata.bits_per_dim(-1.0, dims)
    assert estidata.report_value(-84.4, estidata.NATS, 784) == pytest.approx(84.4)
    assert estidata.report_value(-3072 * ln2 * 3.0, estidata.BITS_PER_DIM, 3072) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="unknown unit"):
        estidata.report_value(-1.0, "bits", 3)


def test_every_dataset_declares_its_unit():
    for name in estidata.names():
        assert estidata.unit(name) == ("bits/dim" if name == "cifar10" else "nats"), name
    assert estidata.unit("multi-mnist5k-s0") == "nats" and estidata.unit("gmm-true-model") == "nats"
    assert estidata.BinaryImageData.unit == "nats" and estidata.ColourImageData.unit == "bits/dim"
    with pytest.raises(estidata.UnknownDatasetError, match="did you mean cifar10"):
        estidata.unit("cifar-10")
    ds = estidata.load("mnist5k-bern0")
    assert ds.unit == "nats" and ds.dims == 784 and ds.bits == 1


def test_a_binary_model_on_colour_data_is_one_line_before_any_work(tmp_path, capsys):
    """A model declares the kinds of data it trains on (``data_kinds``); the SBN suite pointed at CIFAR-10 is refused
    in one line (exit 2) before anything is loaded or stored."""
    from estibench.cli import main
    from estibench.data import kind
    assert (kind("cifar10"), kind("mnist5k-bern0"), kind("gmm-true-model")) == ("colour", "binary", "synthetic")
    out = tmp_path / "o"
    assert main(["--suite", "sbn", "--model", "sbn_tiny", "--dataset", "cifar10", "--estimators", "reinforce",
                 "--iterations", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "colour data" in err, err
    assert not out.exists()


def test_a_conv_cell_trains_and_evaluates_on_the_fixture(pin, tmp_path, monkeypatch):
    """The convolutional study's colour path end to end on the fixture archive: a miniature ``paper_cifar``
    configuration (logistic mixture of 2, width 4, one local group) trains 2 steps of ``spike_exp`` and is evaluated
    by the conv task: 8-bit observations, finite log-likelihoods in nats per image and the KL term."""
    from estibench.harness.runner import Cell, train_cell
    from estibench.models.conv_vae import CONFIGS
    from estibench.studies import TASKS
    serve(monkeypatch, pin["path"])
    monkeypatch.setenv(estidata.CACHE_ENV, str(tmp_path / "cache"))
    assert estidata.main(["fetch-data", "cifar10"]) == 0
    options = {**CONFIGS["paper_cifar"], "width": 4, "local_groups": 1, "local_channels": 1, "latent_bits": 4,
               "n_mix": 2, "chains": 4, "ais_chains": 4, "ais_steps": 2}
    cell = Cell(study="conv", model="conv_vae", estimator="spike_exp", particles=1, seeds=(0,), iterations=2,
                eval_every=1, batch_size=4, model_options=options,
                study_options={"eval_points": 3, "test_points": 3, "eval_particles": 2, "final_particles": (2,),
                               "valid_final_particles": (2,), "elbo_samples": 1, "grad_samples": 2, "raise_points": 0,
                               "prior_samples": 2, "kl_samples": 2})
    result = train_cell(cell, TASKS["conv"])
    assert result.status == "done", result.error
    final = {m: v for _, i, m, v in result.rows if i == 2}
    # test_kl is a 2-draw Monte Carlo estimate of a KL near 0 after 2 steps: finite, of either sign
    assert math.isfinite(final["test_ll[K=2]"]) and final["test_ll[K=2]"] < 0 and math.isfinite(final["test_kl"])
    assert final["test_ll[K=2]"] > -3072 * math.log(256) * 2  # nats per image of 3,072 sub-pixels, not a sum of batches
