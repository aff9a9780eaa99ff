"""Reconstruction: the fitting pipeline behind ``headrecon-reconstruct``.

* :mod:`~headrecon.recon.config` — :class:`ReconConfig` (typed run settings, presets ``fast`` / ``paper``; each
  method's own options come from :mod:`headrecon.methods`);
* :mod:`~headrecon.recon.sampling` — training rays and selective sampling;
* :mod:`~headrecon.recon.trainer` — :class:`Trainer` (the IDR fitting loop, checkpoints, resume);
* :mod:`~headrecon.recon.pipeline` — :func:`reconstruct` (scene folder -> run folder);
* :mod:`~headrecon.recon.renders` — result images and the loss curve;
* :mod:`~headrecon.recon.demo` — a procedural head scene needing no external data;
* :mod:`~headrecon.recon.losses` — IDR losses.

Names are imported lazily on first access, so ``import headrecon.recon`` stays cheap. Methods live in
:mod:`headrecon.methods`, mesh extraction in :mod:`headrecon.render.mesh`.
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
    "ReconConfig": "config",
    "PRESETS": "config",
    "make_config": "config",
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
