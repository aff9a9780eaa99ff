"""Lazy access to the compiled extension ``headrecon._C`` (never compiles, never raises at import time)."""
from __future__ import annotations

import functools
import importlib

_FIX = (
    "Build it with `pip install --no-build-isolation -e .` from the repository root "
    "(see README, 'Install')."
)


@functools.lru_cache(maxsize=None)
def _load():
    """Return (module or None, error message or None)."""
    try:
        importlib.import_module("torch")  # loads libc10/libtorch, which headrecon._C links against
        return importlib.import_module("headrecon._C"), None
    except ImportError as exc:  # not built, or built against another torch
        return None, f"{type(exc).__name__}: {exc}"


def get_ext():
    """The compiled extension, or a clear ImportError that says how to build it."""
    mod, err = _load()
    if mod is None:
        raise ImportError(f"headrecon's C++ extension headrecon._C is not available ({err}). {_FIX}")
    return mod


def has_ext() -> bool:
    return _load()[0] is not None


def has_cuda_backend() -> bool:
    mod, _ = _load()
    return bool(mod is not None and mod.with_cuda())


def build_info() -> dict:
    """Which backends were compiled into ``headrecon._C``.

    Returns a dict with keys ``extension`` (bool: the extension imports), ``cpu`` (C++ CPU backend),
    ``cuda`` (CUDA backend compiled in), ``torch`` (the torch version it was built against) and ``error`` (why it did not load, or None).
    """
    mod, err = _load()
    if mod is None:
        return {"extension": False, "cpu": False, "cuda": False, "torch": None, "error": err}
    return {
        "extension": True,
        "cpu": True,
        "cuda": bool(mod.with_cuda()),
        "torch": mod.torch_version(),
        "error": None,
    }


def check_device(t, name: str = "tensor") -> None:
    """Raise a clear error when a CUDA tensor reaches a build without the CUDA backend."""
    if t.device.type == "cuda" and not has_cuda_backend():
        raise RuntimeError(
            f"{name} is on {t.device}, but headrecon._C was built without its CUDA backend "
            f"(build_info()={build_info()}). Rebuild on a machine with CUDA torch and nvcc "
            "(`pip install --no-build-isolation -e .`, or set HEADRECON_FORCE_CUDA=1), "
            "or pass backend='torch' to use the pure-PyTorch reference."
        )
    if t.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"{name} is on {t.device}; headrecon kernels support cpu and cuda tensors only.")
