"""The generic study's data (``--data VALUE``, :func:`data_options`; read by its task, :func:`observations`).

``--data`` names either

* a file: ``.npz`` with an array ``train`` and optionally ``test`` and ``valid`` (no other arrays; read with
  ``allow_pickle=False``), or ``.pt`` / ``.pth`` holding one tensor (the training observations) or a dict of
  tensors with those keys (read with ``torch.load(weights_only=True)``).  Each array is ``[N, *obs]``: one
  observation a row, numbers (bool, integer or float; stored as float32), finite, N ≥ 1, every split of one shape
  per row.  The cell records the file's absolute path, its size in bytes and the SHA-256 of its contents
  (``data``, ``data_bytes``, ``data_sha256``: study options, so columns of the store and part of the cell's key): a
  changed file is another cell, and a cell refuses to train on a file that changed after it was planned;
* or a dataset of the data layer (``estibench.data``: ``mnist5k-bern0`` …), recorded by name (``data``).

Without ``--data`` the task draws the model's own samples (``model.sample(n)``).  Every check here runs before any
work, where the run plans its cells: a bad file is one line on stderr and exit status 2 (``cli/run.py``).
"""
from __future__ import annotations

import functools
import hashlib
import io
import math
import os
from typing import Dict, Optional, Tuple

SPLITS = ("train", "valid", "test")
SUFFIXES = (".npz", ".pt", ".pth")


def data_options(value: str) -> Dict[str, object]:
    """The study options of ``--data VALUE`` (``Study.data``): ``{"data": name}`` for a dataset of the data layer,
    ``{"data": path, "data_bytes": n, "data_sha256": hex}`` for a file, its arrays checked; a one-line ValueError
    otherwise."""
    from estibench import data as estidata
    text = str(value).strip()
    if not text:
        raise ValueError("is empty: name a .npz or .pt file, or a dataset")
    if text in estidata.SYNTHETIC:
        raise ValueError(f"{text}: a synthetic source drawn by its model's true_model, not observations; run "
                         f"without --data to train on the model's own samples")
    try:
        estidata.kind(text)
        return {"data": text}
    except estidata.UnknownDatasetError:
        pass
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.exists(path):
        raise ValueError(f"{text}: no such file, and no dataset of that name (a file: {', '.join(SUFFIXES)}; "
                         f"datasets: {', '.join(estidata.names())})")
    if os.path.isdir(path):
        raise ValueError(f"{text}: a folder; name a {', '.join(SUFFIXES)} file")
    if not path.lower().endswith(SUFFIXES):
        raise ValueError(f"{text}: not a {', '.join(SUFFIXES)} file (observations as arrays train[, test, valid])")
    digest, size, _ = read(path)
    return {"data": path, "data_bytes": size, "data_sha256": digest}


def read(path: str) -> Tuple[str, int, Dict[str, "object"]]:
    """``(sha256, size, splits)`` of a data file, its splits float32 CPU tensors ``[N, *obs]`` (checked: see the
    module's docstring); read once per version of the file (its size and modification time) in this process."""
    stat = os.stat(path)
    return _read(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read(path: str, size: int, mtime_ns: int):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise ValueError(f"{path}: cannot read it ({err.strerror or err})") from None
    digest = hashlib.sha256(raw).hexdigest()
    arrays = _npz(path, raw) if path.lower().endswith(".npz") else _pt(path, raw)
    return digest, len(raw), _checked(path, arrays)


def _npz(path: str, raw: bytes) -> dict:
    import zipfile
    import numpy as np
    if not zipfile.is_zipfile(io.BytesIO(raw)):  # np.load would try it as a pickle or a lone .npy
        raise ValueError(f"{path}: not a readable .npz file (not a zip archive of arrays)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as found:
            return {name: found[name] for name in found.files}
    except ValueError:  # an object array (pickled): refused, never unpickled
        raise ValueError(f"{path}: holds object (pickled) arrays; observations are numbers, saved without "
                         f"pickling") from None
    except Exception as err:  # noqa: BLE001 - not a zip, a truncated file: whatever numpy raises, one line
        raise ValueError(f"{path}: not a readable .npz file ({type(err).__name__})") from None


def _pt(path: str, raw: bytes) -> dict:
    import torch
    try:
        loaded = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - not a torch file, or one that needs unpickling code: one line
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: not a readable tensor file ({first[:160]})") from None
    if isinstance(loaded, torch.Tensor):
        return {"train": loaded}
    if isinstance(loaded, dict):
        return dict(loaded)
    raise ValueError(f"{path}: holds a {type(loaded).__name__}; it needs a tensor (the training observations) or a "
                     f"dict of tensors train[, test, valid]")


def _checked(path: str, arrays: dict) -> dict:
    """The splits as float32 tensors, or a one-line ValueError naming what is wrong."""
    import numpy as np
    import torch
    names = [str(k) for k in arrays]
    unknown = sorted(n for n in names if n not in SPLITS)
    if "train" not in arrays or unknown:
        said = f"arrays {', '.join(sorted(names))}" if names else "no arrays"
        raise ValueError(f"{path}: holds {said}; it needs train (and optionally test, valid), and no other")
    out, row = {}, None
    for name in SPLITS:
        if name not in arrays:
            continue
        value = arrays[name]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            tensor = None if value.is_complex() else value.to(torch.float32)
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            tensor = torch.from_numpy(np.ascontiguousarray(value).astype(np.float32))
        else:
            tensor = None
        if tensor is None:
            kind = getattr(value, "dtype", type(value).__name__)
            raise ValueError(f"{path}: {name} holds {kind}; observations are numbers (bool, integer or float)")
        if tensor.dim() < 1 or tensor.shape[0] < 1:
            raise ValueError(f"{path}: {name} has shape {tuple(tensor.shape)}; it needs [N, *obs] with N ≥ 1")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: {name} holds non-finite values (NaN or inf)")
        if row is not None and tuple(tensor.shape[1:]) != row:
            raise ValueError(f"{path}: {name} has observations of shape {tuple(tensor.shape[1:])}, train "
                             f"{row}; every split needs the same")
        row = tuple(tensor.shape[1:]) if row is None else row
        out[name] = tensor
    return out


def fitted(splits: dict, obs_shape, source: str, model_name: str) -> dict:
    """The splits reshaped to ``[N, *obs_shape]``: as they are when each row has that shape, reshaped when it has
    as many values (``[N, 784]`` for images of 28 × 28); a one-line ValueError otherwise."""
    obs = tuple(int(d) for d in obs_shape)
    out = {}
    for name, t in splits.items():
        row = tuple(t.shape[1:])
        if row != obs:
            if math.prod(row) != math.prod(obs):
                raise ValueError(f"{source}: observations of shape {row} per row ({math.prod(row)} values); "
                                 f"{model_name} takes obs_shape {obs} ({math.prod(obs)} values)")
            t = t.reshape(t.shape[0], *obs)
        out[name] = t
    return out


def observations(options: dict, model, model_name: str = "the model") -> Optional[dict]:
    """The splits (``train``, and ``valid`` / ``test`` where given) the task trains and measures on, float32 CPU
    tensors ``[N, *model.obs_shape]``; None for the model's own samples (no ``data``).  A file is read again and
    checked against the hash recorded in the cell (a one-line ValueError when it changed since)."""
    source = str(options.get("data") or "")
    if not source:
        return None
    import torch
    from estibench import data as estidata
    try:
        estidata.kind(source)
        known = True
    except estidata.UnknownDatasetError:
        known = False
    if known:
        ds = estidata.load(source)
        splits = {name: getattr(ds, name).to("cpu", dtype=torch.float32) for name in SPLITS}
        if getattr(ds, "dynamic", False):  # grey levels: binarised once with a fixed stream for every split
            gen = torch.Generator().manual_seed(int(options.get("data_seed") or 0))
            splits = {name: ds.binarise(t, generator=gen) for name, t in splits.items()}
    else:
        digest, size, splits = read(source)
        wanted = options.get("data_sha256")
        if wanted and digest != wanted:
            raise ValueError(f"--data {source} changed since this cell was planned (SHA-256 {digest[:12]}…, the "
                             f"cell's {str(wanted)[:12]}…): run again to plan a cell for its new contents")
    return fitted(splits, getattr(model, "obs_shape", ()), source, model_name)
