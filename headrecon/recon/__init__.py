"""Reconstruction: IDR losses (:mod:`headrecon.recon.losses`) and SDF-to-mesh extraction (:mod:`headrecon.recon.mesh`).

Names are imported lazily on first access, so ``import headrecon.recon`` stays cheap (no scikit-image / trimesh
import until :func:`extract_mesh` is used).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "rgb_loss": "losses",
    "mask_loss": "losses",
    "eikonal_loss": "losses",
    "alpha_schedule": "losses",
    "IDRLoss": "losses",
    "IDR_ALPHA_MILESTONES": "losses",
    "extract_mesh": "mesh",
    "evaluate_grid": "mesh",
    "EmptyLevelSetError": "mesh",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
