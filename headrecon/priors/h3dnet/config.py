"""Configuration of the H3D-Net head prior: network size, loss weights, optimiser schedule and data sampling.

:class:`PriorConfig` is a plain dataclass (stored in checkpoints as a dict of numbers, strings and lists, so
``torch.load(..., weights_only=True)`` reads it). Two presets:

* ``paper`` — H3D-Net / DeepSDF: 8 x 512 MLP, skip connection from the input to the 4th layer, Softplus, latent
  256, 6 positional-encoding frequencies, Adam with lr 1e-4 halved every 15 epochs (of 100).
* ``fast`` — CPU-friendly: 6 x 192 (skip at 3), latent 64, 250 epochs of batches of 32 shapes x 256 surface +
  256 volume samples (many small per-shape batches, so every latent is updated often on few iterations),
  higher learning rates (5e-4 decoder / 3e-3 latents) with the step decay halving every quarter of the run
  (``decay_every = epochs / 4``: the paper's 15-of-100 schedule leaves a short CPU run mostly at tiny learning
  rates), and an IGR normal term (weight 1) that speeds up convergence on few iterations (raw scans carry
  normals; scans without normals skip it). The paper preset keeps the paper's schedule, rescaled
  (``decay_every = round(15 / 100 * epochs)``) when ``epochs`` is overridden.

Units: every length (``near_sigma``, ``sphere_radius``...) is in the prior's **unit-sphere frame** (see
:mod:`headrecon.priors.normalization`: 1 unit = 250 mm for the ICT frame).

Loss (per iteration, averaged over the shapes of the batch; :mod:`headrecon.priors.h3dnet.losses`)::

    L = w_s * mean|F(x_s, z)| + w_n * mean||grad F(x_s, z) - n_s|| + w_e * mean(||grad F(x_v, z)|| - 1)^2
        + w_b * mean relu(-F(x_b, z)) + latent_reg * mean ||z||^2

The boundary term (``x_b`` uniform on the sphere of radius 1; not in the paper) only states the frame's
assumption that everything outside the unit sphere is empty: raw head scans are open at the neck, and without
it the zero level set leaves the open neck as a skirt that runs out to the domain boundary.

``latent_reg`` is ``1 / sigma^2`` of the Gaussian prior on the codes (DeepSDF's code regulariser).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Tuple

__all__ = ["PriorConfig", "PRESETS", "preset"]


@dataclass
class PriorConfig:
    # ---------------------------------------------------------------- network
    d_hidden: int = 512
    n_layers: int = 8
    skip_in: Tuple[int, ...] = (4,)
    n_freqs: int = 6
    latent_dim: int = 256
    d_feature: int = 256          # feature channels for the rendering network (untrained by the prior)
    softplus_beta: float = 100.0
    sphere_radius: float = 0.6    # geometric initialisation
    weight_norm: bool = True
    # ---------------------------------------------------------------- optimisation
    epochs: int = 100
    shapes_per_batch: int = 16    # global batch (split across DDP ranks)
    surface_points: int = 8192    # surface samples per shape and iteration
    volume_points: int = 8192     # eikonal samples per shape and iteration
    lr: float = 1e-4
    lr_latent: float = 1e-4
    decay_every: int = 15         # epochs
    decay_factor: float = 0.5
    surface_weight: float = 1.0
    normal_weight: float = 0.0
    eikonal_weight: float = 0.1
    latent_reg: float = 1e-3      # 1 / sigma^2
    latent_init_std: float = 0.01
    near_sigmas: Tuple[float, ...] = (0.004, 0.04)  # Gaussian offsets of near-surface eikonal samples (units)
    uniform_fraction: float = 0.125  # fraction of eikonal samples uniform in the unit ball
    boundary_points: int = 64     # samples on the sphere of radius boundary_radius per shape and iteration
    boundary_radius: float = 1.0
    boundary_weight: float = 1.0  # mean relu(-F) there: the surface closes inside the unit sphere
    grad_clip: float = 0.0        # 0 = off
    seed: int = 0
    # ---------------------------------------------------------------- data (raw scans)
    scan_points: int = 40000      # surface samples drawn per ICT head before incompleteness
    preset: str = "custom"

    def __post_init__(self):
        self.skip_in = tuple(int(s) for s in self.skip_in)
        self.near_sigmas = tuple(float(s) for s in self.near_sigmas)
        self.validate()

    def validate(self) -> None:
        pos = dict(d_hidden=self.d_hidden, n_layers=self.n_layers, latent_dim=self.latent_dim, epochs=self.epochs,
                   shapes_per_batch=self.shapes_per_batch, surface_points=self.surface_points,
                   decay_every=self.decay_every, scan_points=self.scan_points)
        for k, v in pos.items():
            if int(v) < 1:
                raise ValueError(f"PriorConfig.{k} must be >= 1, got {v}")
        if self.volume_points < 0 or self.d_feature < 0 or self.n_freqs < 0 or self.boundary_points < 0:
            raise ValueError("volume_points, boundary_points, d_feature and n_freqs must be >= 0")
        if not (self.lr > 0 and self.lr_latent > 0):
            raise ValueError("learning rates must be positive")
        if not 0 < self.decay_factor <= 1:
            raise ValueError(f"decay_factor must be in (0, 1], got {self.decay_factor}")
        if not 0 <= self.uniform_fraction <= 1:
            raise ValueError("uniform_fraction must be in [0, 1]")
        for s in self.skip_in:
            if not 1 <= s <= self.n_layers:
                raise ValueError(f"skip_in entries must be in [1, n_layers={self.n_layers}], got {s}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["skip_in"] = list(self.skip_in)
        d["near_sigmas"] = list(self.near_sigmas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PriorConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown PriorConfig fields: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **kw) -> "PriorConfig":
        return dataclasses.replace(self, **kw)

    def lr_at(self, epoch: int) -> tuple[float, float]:
        """(decoder lr, latent lr) during ``epoch`` (0-based): step decay every ``decay_every`` epochs."""
        f = self.decay_factor ** (int(epoch) // int(self.decay_every))
        return self.lr * f, self.lr_latent * f


def scaled_decay(epochs: int) -> int:
    """The paper's 'halve every 15 epochs' scaled to a run of ``epochs`` epochs (15 of 100)."""
    return max(1, int(round(15 * int(epochs) / 100)))


def _paper(**kw) -> PriorConfig:
    cfg = dict(d_hidden=512, n_layers=8, skip_in=(4,), latent_dim=256, d_feature=256, epochs=100,
               shapes_per_batch=16, surface_points=8192, volume_points=8192, lr=1e-4, lr_latent=1e-4,
               decay_every=15, normal_weight=0.0, scan_points=100000, preset="paper")
    cfg.update(kw)
    return PriorConfig(**cfg)


def _fast(**kw) -> PriorConfig:
    epochs = int(kw.get("epochs", 250))
    cfg = dict(d_hidden=192, n_layers=6, skip_in=(3,), latent_dim=64, d_feature=64, epochs=epochs,
               shapes_per_batch=32, surface_points=256, volume_points=256, lr=5e-4, lr_latent=3e-3,
               decay_every=max(1, int(round(epochs / 4))), normal_weight=1.0, scan_points=30000, preset="fast")
    cfg.update(kw)
    return PriorConfig(**cfg)


PRESETS = {"paper": _paper, "fast": _fast}


def preset(name: str, **overrides) -> PriorConfig:
    """A preset (``paper`` or ``fast``) with field overrides. With ``epochs`` overridden and no explicit
    ``decay_every``, the decay step is rescaled (paper: 15 of every 100 epochs; fast: a quarter of the run)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    if name == "paper" and "epochs" in overrides and "decay_every" not in overrides:
        overrides["decay_every"] = scaled_decay(overrides["epochs"])
    return PRESETS[name](**overrides)
