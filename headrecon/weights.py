"""Saving and loading headrecon's weight files and checkpoints safely.

* :func:`save_weights` writes a dict of tensors, numbers, strings, lists and dicts through a temporary file and a
  rename (a stopped write never leaves a truncated file) and stores a SHA-256 checksum of every tensor in it
  (key ``"checksum"``).
* :func:`load_weights` reads with ``torch.load(weights_only=True)``, so a file that carries pickled Python objects
  is refused and nothing in it runs, and checks the checksum: a file whose stored weights were altered (flipped
  bytes) is refused with an error naming the file. Files written before checksums existed load unchecked.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_weights", "load_weights", "checksum", "CHECKSUM_KEY"]

CHECKSUM_KEY = "checksum"


def _tensors(obj, prefix=""):
    """(path, tensor) pairs of a nested dict / list structure, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            if prefix == "" and k == CHECKSUM_KEY:
                continue
            yield from _tensors(obj[k], f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}")


def checksum(state) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor in ``state``."""
    h = hashlib.sha256()
    for name, t in _tensors(state):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_weights(state: dict, path) -> Path:
    """Write ``state`` (with its checksum added) atomically to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**state, CHECKSUM_KEY: checksum(state)}, tmp)
    tmp.replace(path)
    return path


def load_weights(path, what: str = "weight file", map_location="cpu") -> Any:
    """Read a file written by :func:`save_weights` (or any plain ``torch.save`` of tensors and containers).

    Raises FileNotFoundError when absent and ValueError naming the file when it is not a PyTorch file, carries
    Python objects other than tensors / numbers / strings / lists / dicts (nothing in it is executed), or its
    tensors do not match the stored checksum."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: cannot read the {what} (not a PyTorch file, or a truncated one)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        name = type(exc).__name__
        if "Unpickl" in name or "weights_only" in str(exc):
            why = ("it holds Python objects other than tensors, numbers, strings, lists and dicts; refused without "
                   "running any of it")
        elif isinstance(exc, (KeyError, RuntimeError, EOFError)) or "zip" in str(exc).lower():
            why = "not a PyTorch file, or a truncated one"
        else:
            why = f"{name}: {exc}"
        raise ValueError(f"{path}: cannot read the {what} ({why})") from None
    if isinstance(state, dict) and CHECKSUM_KEY in state:
        stored = state.pop(CHECKSUM_KEY)
        if stored != checksum(state):
            raise ValueError(f"{path}: the {what}'s weights do not match their stored checksum (the file was altered "
                             "or damaged)")
    return state
