"""Argument validation shared by every backend of headrecon.ops (same errors for the C++ and torch paths)."""
from __future__ import annotations

import torch

FLOATS = (torch.float32, torch.float64)


def _t(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def floating(x, name, ref=None, shape=None):
    """x is a contiguous float32/float64 tensor (same device and dtype as ref, given shape; -1 = any).

    Called several times by every op call (the tracer makes hundreds per training step), so written with plain
    loops: no generator, and the device compared only when a reference is given."""
    _t(x, name)
    dtype = x.dtype
    if dtype not in FLOATS:
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    if ref is not None:
        if dtype != ref.dtype:
            raise TypeError(f"{name} has dtype {dtype} but expected {ref.dtype}")
        if x.device != ref.device:
            raise ValueError(f"{name} is on {x.device} but expected {ref.device}")
    if shape is not None:
        dims = x.shape
        ok = len(dims) == len(shape)
        if ok:
            for s, d in zip(shape, dims):
                if s != -1 and s != d:
                    ok = False
                    break
        if not ok:
            want = "[" + ",".join("*" if s == -1 else str(s) for s in shape) + "]"
            raise ValueError(f"{name} must have shape {want}, got {list(dims)}")
    if not x.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous())")


def rays(origins, dirs):
    floating(origins, "origins", shape=(-1, 3))
    floating(dirs, "dirs", origins, shape=(origins.shape[0], 3))


def index(x, name, ref, bound, check_bounds=True):
    """int64 1-D contiguous index tensor on ref's device; ``check_bounds`` also checks 0 <= x < bound (two host
    syncs; the C++ glue checks bounds itself, so the compiled path skips it here)."""
    _t(x, name)
    if x.dtype != torch.int64:
        raise TypeError(f"{name} must be int64, got {x.dtype}")
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {list(x.shape)}")
    if x.device != ref.device:
        raise ValueError(f"{name} is on {x.device} but expected {ref.device}")
    if not x.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous())")
    if check_bounds and x.numel() and (int(x.min()) < 0 or int(x.max()) >= bound):
        raise ValueError(f"{name} has indices outside [0, {bound})")


def int32(x, name, ref, n):
    _t(x, name)
    if x.dtype != torch.int32:
        raise TypeError(f"{name} must be int32, got {x.dtype}")
    if x.shape != (n,):
        raise ValueError(f"{name} must have shape [{n}], got {list(x.shape)}")
    if x.device != ref.device or not x.is_contiguous():
        raise ValueError(f"{name} must be a contiguous tensor on {ref.device}")


def finite(x, name):
    if x.numel() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf) out of {x.numel()}")
