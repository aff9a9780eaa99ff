"""Reconstruction: the fitting pipeline behind ``headrecon-reconstruct``.

* :mod:`~headrecon.recon.config` — :class:`ReconConfig` (typed run settings, presets ``fast`` / ``paper``);
* :mod:`~headrecon.methods` — the ``--method`` registry (:class:`ReconMethod`, ``idr``);
* :mod:`~headrecon.recon.sampling` — training rays and selective sampling;
* :mod:`~headrecon.recon.trainer` — :class:`Trainer` (the IDR fitting loop, checkpoints, resume);
* :mod:`~headrecon.recon.pipeline` — :func:`reconstruct` (scene folder -> run folder);
* :mod:`~headrecon.recon.renders` — result images and the loss curve;
* :mod:`~headrecon.recon.demo` — a procedural head scene needing no external data;
* :mod:`~headrecon.recon.losses` — IDR losses; :mod:`~headrecon.render.mesh` — SDF-to-mesh extraction.

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
    "ReconConfig": "config",
    "PRESETS": "config",
    "make_config": "config",
    "ReconMethod": "methods",
    "Phase": "methods",
    "METHODS": "methods",
    "register_method": "methods",
    "get_method": "methods",
    "Trainer": "trainer",
    "reconstruct": "pipeline",
    "RunDirError": "pipeline",
    "make_demo_scene": "demo",
    "demo_head_mesh": "demo",
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
