"""SIRA++ shape-and-appearance statistical model (Caselles et al., "Implicit Shape and Appearance Priors for
Few-Shot Full Head Reconstruction"): configuration, networks, losses and the progressive PE schedule.

Model (:class:`SiraPrior`), all in the prior's unit-sphere frame (:mod:`headrecon.priors.normalization`):

* **deformation field** ``D(enc(x), z_sdf) -> (delta [3], gamma [d_gamma])`` — a Softplus MLP over the positionally
  encoded point concatenated with the shape latent ``z_sdf``; its last layer starts with a tiny variance
  (``init_std``) and zero bias, so ``delta ~ 0`` and ``gamma ~ 0`` at the start;
* **reference SDF** ``R(x_ref)`` with ``x_ref = x + delta`` — a :class:`headrecon.models.GeometryNetwork` with
  geometric (sphere) initialisation and no latent; its positional encoding is masked progressively
  (:func:`pe_progress`: frequencies unmasked with the BARF/SIRA++ cosine ramp between ``pe_start`` and
  ``pe_end`` epochs);
* **rendering function** ``r(x_ref, n, v, gamma; z_r) -> rgb`` — an IDR :class:`headrecon.models.RenderingNetwork`
  over the reference point, the normal, the encoded view direction and ``[gamma, z_r]``, with a small-variance
  last layer (output ~ sigmoid(0) = 0.5 everywhere at the start);
* one shape latent ``z_sdf`` and one appearance latent ``z_r`` per training head (``nn.Embedding``), zero at the
  start;
* optionally (``corr_hidden > 0``; not in the paper, off by default) a **correction field** ``C(enc(x), z_sdf) ->
  c``: a second Softplus MLP of the same kind whose scalar output is added to the SDF, with the L1 regulariser
  ``mean |c|`` (``corr_weight``). A deformation of one reference surface can only warp it smoothly; the correction
  lets each head differ from the warped reference where a warp cannot follow (a DeepSDF-style residual, as in
  ImFace's or i3DMM's template models), while the deformation still carries the correspondences that the colour
  and the landmarks use.

The SDF of shape ``i`` is ``f_i(x) = R(x + delta(x, z_i))`` (``+ C(x, z_i)`` with the correction field). Losses
(:func:`sira_losses`, the paper's weights in the ``paper`` preset): surface ``|f|`` (1), Eikonal (0.1), deformation
regulariser ``mean ||delta|| + ||mean delta||`` (1e-3), landmark consistency (1e-3: the six ICT landmarks of every
shape mapped to reference space must coincide across shapes, :func:`landmark_consistency`), colour L1 on surface
points seen in posed images of the training heads (1), latent ``||z_sdf||^2 + ||z_r||^2`` (1e-3). The ``fast``
preset adds the IGR normal term (weight 1, as the H3D-Net ``fast`` preset does) to converge in few CPU iterations,
and a hinge ``relu(-f)`` on a shell ``0.9 < |x| < 1.3`` that no head reaches (weight 1): raw scans (open neck,
missing back) leave the SDF free far from the data, and without it spurious surfaces appeared there (measured: 6 %
of the points at radius 1-1.4 inside the mean shape, head Chamfer 353 mm before fitting).

Training lives in :mod:`headrecon.priors.sira.train`; the reconstruction method in :mod:`headrecon.methods.sira`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...data.scene import FACE_SPHERE_RADIUS_MM, LANDMARK_NAMES
from ...models import GeometryNetwork, PositionalEncoding, RenderingNetwork
from ...models.geometry import sdf_with_gradient
from ...models.pose import FramedPrior
from ...ops.activation import Softplus
from ...weights import load_weights, save_weights
from ..codes import CodePrior
from ..normalization import Normalization

__all__ = ["SiraConfig", "SIRA_PRESETS", "sira_preset", "SiraPrior", "DeformationNetwork", "SiraGeometry",
           "SiraRendering", "CorrectionNetwork", "sira_losses", "landmark_consistency", "deformation_regulariser",
           "pe_progress",
           "load_sira", "default_sira_path", "SIRA_FORMAT", "LANDMARK_NAMES"]

SIRA_FORMAT = "headrecon-sira"
SIRA_VERSION = 1


# ============================================================================================== config
@dataclass
class SiraConfig:
    """Networks, loss weights, schedule and appearance-data settings of the SIRA++ prior (lengths in units)."""

    # ---- networks
    def_hidden: int = 256          # deformation MLP width
    def_layers: int = 4            # deformation MLP hidden layers
    def_freqs: int = 6             # PE frequencies of x for the deformation network
    ref_hidden: int = 256          # reference SDF width
    ref_layers: int = 6
    ref_skip: Tuple[int, ...] = (3,)
    ref_freqs: int = 6             # PE frequencies of the reference SDF (progressively unmasked)
    latent_dim: int = 256          # z_sdf
    app_latent_dim: int = 256      # z_r
    d_gamma: int = 64              # deformation feature gamma
    render_hidden: int = 256
    render_layers: int = 4
    view_freqs: int = 4
    corr_hidden: int = 0           # correction field width (0: none, the paper's model)
    corr_layers: int = 3           # correction field hidden layers
    corr_freqs: int = 4            # PE frequencies of x for the correction field
    init_std: float = 1e-4         # std of the last layers of the deformation and rendering networks
    sphere_radius: float = 0.6
    softplus_beta: float = 100.0
    # ---- losses (paper weights)
    surface_weight: float = 1.0
    eikonal_weight: float = 0.1
    deform_weight: float = 1e-3
    landmark_weight: float = 1e-3
    color_weight: float = 1.0
    latent_reg: float = 1e-3
    normal_weight: float = 0.0     # IGR normal term (not in the paper; fast preset)
    corr_weight: float = 1e-2      # L1 regulariser mean |c| of the correction field (when there is one)
    outside_weight: float = 0.0    # hinge relu(-f) on a shell outside the heads (not in the paper; fast preset)
    outside_radius: Tuple[float, float] = (0.9, 1.3)  # the shell (units): no head reaches it
    # ---- schedule
    epochs: int = 100
    pe_start: float = 0.0          # epoch where the reference SDF's first frequency starts to unmask
    pe_end: float = 50.0           # epoch where every frequency is on
    shapes_per_batch: int = 16
    surface_points: int = 4096
    volume_points: int = 4096
    color_points: int = 4096
    lr: float = 1e-4
    lr_latent: float = 1e-3
    decay_every: int = 25
    decay_factor: float = 0.5
    near_sigmas: Tuple[float, ...] = (0.004, 0.04)
    face_fraction: float = 0.0     # share of the surface samples drawn within face_radius_mm of the nose tip
    face_radius_mm: float = FACE_SPHERE_RADIUS_MM  # (the official protocol's face); 0 share: uniform
    uniform_fraction: float = 0.125
    seed: int = 0
    # ---- data
    scan_points: int = 30000       # raw-scan points per ICT head (as the H3D-Net prior)
    image_views: int = 6           # posed images per training head (appearance data)
    image_size: int = 96
    preset: str = "custom"

    def __post_init__(self):
        self.ref_skip = tuple(int(s) for s in self.ref_skip)
        self.near_sigmas = tuple(float(s) for s in self.near_sigmas)
        self.outside_radius = tuple(float(s) for s in self.outside_radius)
        self.validate()

    def validate(self) -> None:
        for k in ("def_hidden", "def_layers", "ref_hidden", "ref_layers", "latent_dim", "app_latent_dim",
                  "render_hidden", "render_layers", "epochs", "shapes_per_batch", "surface_points", "decay_every",
                  "image_views", "image_size", "scan_points"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"SiraConfig.{k} must be >= 1, got {getattr(self, k)}")
        for k in ("volume_points", "color_points", "d_gamma", "def_freqs", "ref_freqs", "corr_hidden", "corr_freqs"):
            if int(getattr(self, k)) < 0:
                raise ValueError(f"SiraConfig.{k} must be >= 0, got {getattr(self, k)}")
        if not (self.lr > 0 and self.lr_latent > 0):
            raise ValueError("learning rates must be positive")
        if not self.pe_end >= self.pe_start >= 0:
            raise ValueError(f"need 0 <= pe_start <= pe_end, got {self.pe_start}, {self.pe_end}")
        if not 0 < self.decay_factor <= 1:
            raise ValueError("decay_factor must be in (0, 1]")
        if int(self.corr_layers) < 1 or not self.corr_weight >= 0:
            raise ValueError(f"need corr_layers >= 1 and corr_weight >= 0, got {self.corr_layers}, {self.corr_weight}")
        if not self.init_std >= 0:
            raise ValueError("init_std must be >= 0")
        if not (0.0 <= self.face_fraction < 1.0 and self.face_radius_mm > 0):
            raise ValueError(f"need 0 <= face_fraction < 1 and face_radius_mm > 0, got {self.face_fraction}, "
                             f"{self.face_radius_mm}")
        for s in self.ref_skip:
            if not 1 <= s <= self.ref_layers:
                raise ValueError(f"ref_skip entries must be in [1, ref_layers={self.ref_layers}]")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ref_skip"] = list(self.ref_skip)
        d["near_sigmas"] = list(self.near_sigmas)
        d["outside_radius"] = list(self.outside_radius)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SiraConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SiraConfig fields: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **kw) -> "SiraConfig":
        return dataclasses.replace(self, **kw)

    def lr_at(self, epoch: int) -> tuple[float, float]:
        f = self.decay_factor ** (int(epoch) // int(self.decay_every))
        return self.lr * f, self.lr_latent * f


def _paper(**kw) -> SiraConfig:
    epochs = int(kw.get("epochs", 100))
    cfg = dict(def_hidden=512, def_layers=4, ref_hidden=512, ref_layers=8, ref_skip=(4,), latent_dim=256,
               app_latent_dim=256, d_gamma=256, render_hidden=512, render_layers=4, epochs=epochs,
               pe_start=0.0, pe_end=0.5 * epochs, shapes_per_batch=16, surface_points=8192, volume_points=8192,
               color_points=8192, lr=1e-4, lr_latent=1e-3, decay_every=max(1, round(epochs / 4)), image_views=16,
               image_size=256, scan_points=100000, preset="paper")
    cfg.update(kw)
    return SiraConfig(**cfg)


def _fast(**kw) -> SiraConfig:
    epochs = int(kw.get("epochs", 250))
    cfg = dict(def_hidden=128, def_layers=3, def_freqs=4, ref_hidden=160, ref_layers=5, ref_skip=(3,), ref_freqs=6,
               latent_dim=32, app_latent_dim=16, d_gamma=16, render_hidden=96, render_layers=2, epochs=epochs,
               pe_start=0.05 * epochs, pe_end=0.5 * epochs, shapes_per_batch=16, surface_points=192,
               volume_points=192, color_points=192, lr=5e-4, lr_latent=3e-3, decay_every=max(1, round(epochs / 3)),
               normal_weight=1.0, outside_weight=1.0, image_views=4, image_size=72, scan_points=20000, preset="fast")
    cfg.update(kw)
    return SiraConfig(**cfg)


SIRA_PRESETS = {"paper": _paper, "fast": _fast}


def sira_preset(name: str, **overrides) -> SiraConfig:
    """``paper`` or ``fast`` with field overrides (with ``epochs`` overridden, the PE ramp and the decay step
    scale with it unless given)."""
    if name not in SIRA_PRESETS:
        raise ValueError(f"unknown SIRA++ preset {name!r}; choose one of {sorted(SIRA_PRESETS)}")
    return SIRA_PRESETS[name](**overrides)


def pe_progress(epoch: float, start: float, end: float) -> float:
    """Progress in [0, 1] of the reference SDF's coarse-to-fine mask at ``epoch``: 0 before ``start``, 1 after
    ``end``, linear between; :meth:`PositionalEncoding.set_progress` turns it into per-frequency weights
    ``w_k = (1 - cos(pi * clamp(p * L - k, 0, 1))) / 2``."""
    if end <= start:
        return 1.0 if epoch >= start else 0.0
    return float(min(1.0, max(0.0, (float(epoch) - start) / (end - start))))


# ============================================================================================== networks
class _LatentMLP(nn.Module):
    """``(x [..., 3], z [..., D]) -> [..., d_out]``: Softplus MLP over ``[enc(x), z]``, last layer initialised with
    std ``init_std`` and zero bias (near-zero output). The body of the deformation and correction networks."""

    def __init__(self, d_latent: int, d_out: int, d_hidden: int, n_layers: int, n_freqs: int, init_std: float,
                 softplus_beta: float):
        super().__init__()
        self.encoding = PositionalEncoding(n_freqs, include_input=True, d_in=3)
        self.d_latent = int(d_latent)
        dims = [self.encoding.out_dim + self.d_latent] + [int(d_hidden)] * int(n_layers) + [int(d_out)]
        self.layers = nn.ModuleList([nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1)])
        self.activation = Softplus(beta=softplus_beta)
        with torch.no_grad():
            last = self.layers[-1]
            last.weight.normal_(0.0, float(init_std))
            last.bias.zero_()

    def _mlp(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.encoding(x)
        z = z.to(h.dtype).expand(*h.shape[:-1], self.d_latent)
        h = torch.cat([h, z], dim=-1)
        for i, lin in enumerate(self.layers):
            h = lin(h)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h


class DeformationNetwork(_LatentMLP):
    """``(x [..., 3], z [..., D]) -> (delta [..., 3], gamma [..., G])``: Softplus MLP over ``[enc(x), z]``, last
    layer initialised with std ``init_std`` and zero bias (near-zero output)."""

    def __init__(self, d_latent: int, d_gamma: int, d_hidden: int = 256, n_layers: int = 4, n_freqs: int = 6,
                 init_std: float = 1e-4, softplus_beta: float = 100.0):
        super().__init__(d_latent, 3 + int(d_gamma), d_hidden, n_layers, n_freqs, init_std, softplus_beta)
        self.d_gamma = int(d_gamma)

    def forward(self, x: torch.Tensor, z: torch.Tensor):
        h = self._mlp(x, z)
        return h[..., :3], h[..., 3:]


class CorrectionNetwork(_LatentMLP):
    """``(x [..., 3], z [..., D]) -> c [...]``: the optional SDF correction of a head (added to ``R(x + delta)``),
    near zero at the start."""

    def __init__(self, d_latent: int, d_hidden: int = 128, n_layers: int = 3, n_freqs: int = 4,
                 init_std: float = 1e-4, softplus_beta: float = 100.0):
        super().__init__(d_latent, 1, d_hidden, n_layers, n_freqs, init_std, softplus_beta)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self._mlp(x, z)[..., 0]


def head_sdf(reference, correct: CorrectionNetwork | None, x: torch.Tensor, x_ref: torch.Tensor, z: torch.Tensor):
    """``(sdf, c)``: the head's SDF at prior-frame points ``x`` warped to ``x_ref``, ``R(x_ref) (+ C(x, z))``, and the
    correction ``c`` (None without a correction field). The one rule shared by the model and the reconstruction."""
    sdf = reference.sdf(x_ref)
    if correct is None:
        return sdf, None
    c = correct(x, z)
    return sdf + c, c


def _small_last_layer(ren: RenderingNetwork, std: float) -> None:
    """Small-variance last layer of a (weight-normalised) rendering network: output ~ sigmoid(0) = 0.5."""
    last = ren.layers[-1]
    with torch.no_grad():
        if hasattr(last, "parametrizations"):
            v = last.parametrizations.weight.original1
            v.normal_(0.0, 1.0)
            last.parametrizations.weight.original0.fill_(float(std) * math.sqrt(v.shape[1]))
        else:
            last.weight.normal_(0.0, float(std))
        last.bias.zero_()


class SiraPrior(nn.Module):
    """The SIRA++ statistical model (see the module docstring): ``deform``, ``reference``, ``render``,
    ``z_sdf`` / ``z_r`` embeddings (one row per training head), config, frame and metadata."""

    def __init__(self, config: SiraConfig, num_latents: int, norm: Normalization | None = None,
                 data: dict | None = None, meta: dict | None = None):
        super().__init__()
        if int(num_latents) < 1:
            raise ValueError("num_latents must be >= 1")
        c = self.config = config
        self.norm = norm or Normalization()
        self.data = dict(data or {})
        self.meta = dict(meta or {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            self.deform = DeformationNetwork(c.latent_dim, c.d_gamma, c.def_hidden, c.def_layers, c.def_freqs,
                                             c.init_std, c.softplus_beta)
            self.reference = GeometryNetwork(d_in=3, d_hidden=c.ref_hidden, n_layers=c.ref_layers, skip_in=c.ref_skip,
                                             n_freqs=c.ref_freqs, d_feature=0, sphere_radius=c.sphere_radius,
                                             softplus_beta=c.softplus_beta, geometric_init=True, weight_norm=True)
            self.render = RenderingNetwork(d_feature=c.d_gamma + c.app_latent_dim, d_hidden=c.render_hidden,
                                           n_layers=c.render_layers, mode="idr", n_freqs_view=c.view_freqs)
            _small_last_layer(self.render, c.init_std)
            # last, so that the other networks start exactly as in a model without it
            self.correct = None if int(c.corr_hidden) == 0 else CorrectionNetwork(
                c.latent_dim, c.corr_hidden, c.corr_layers, c.corr_freqs, c.init_std, c.softplus_beta)
        self.z_sdf = nn.Embedding(int(num_latents), c.latent_dim)
        self.z_r = nn.Embedding(int(num_latents), c.app_latent_dim)
        with torch.no_grad():
            self.z_sdf.weight.zero_()
            self.z_r.weight.zero_()

    @property
    def num_latents(self) -> int:
        return int(self.z_sdf.num_embeddings)

    def set_epoch(self, epoch: float) -> float:
        """Apply the reference SDF's progressive PE mask for ``epoch``; returns the progress."""
        p = pe_progress(epoch, self.config.pe_start, self.config.pe_end)
        self.reference.set_progress(p)
        return p

    def mean_latents(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.z_sdf.weight.detach().mean(0), self.z_r.weight.detach().mean(0)

    # ------------------------------------------------------------------ evaluation
    def warp(self, x: torch.Tensor, z: torch.Tensor):
        """``(x_ref, delta, gamma)`` for points ``x [..., 3]`` and shape latent(s) ``z``."""
        delta, gamma = self.deform(x, z)
        return x + delta, delta, gamma

    def sdf(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.terms(x, z)[0]

    def forward(self, x: torch.Tensor, z: torch.Tensor):
        """``(sdf, x_ref, delta, gamma)``."""
        return self.terms(x, z)[:4]

    def terms(self, x: torch.Tensor, z: torch.Tensor):
        """``(sdf, x_ref, delta, gamma, c)``: ``c`` the correction added to the SDF (None without a correction
        field)."""
        x_ref, delta, gamma = self.warp(x, z)
        sdf, c = head_sdf(self.reference, self.correct, x, x_ref, z)
        return sdf, x_ref, delta, gamma, c

    def color(self, x_ref, normals, view_dirs, gamma, z_r) -> torch.Tensor:
        """``r(x_ref, n, v, gamma; z_r)`` in [0, 1] (``v`` points from the surface towards the camera)."""
        z_r = z_r.to(gamma.dtype).expand(*gamma.shape[:-1], z_r.shape[-1])
        return self.render(x_ref, normals, view_dirs, torch.cat([gamma, z_r], dim=-1))

    def sdf_fn(self, z=None):
        zz = (self.mean_latents()[0] if z is None else torch.as_tensor(z)).detach()
        return lambda x: self.sdf(x, zz)

    def mesh(self, z=None, resolution: int = 128, mm: bool = True, radius: float = 1.0):
        """Marching-cubes mesh of the shape for ``z`` (default the mean latent), in mm by default."""
        from ...render.mesh import extract_mesh

        return extract_mesh(self.sdf_fn(z), resolution=resolution, radius=radius,
                            scale_mat=self.norm.scale_mat if mm else None)

    def geometry_network(self, frame=None, z_sdf=None, z_r=None) -> "SiraGeometry":
        """The reconstruction-side module pair: :class:`SiraGeometry` (trainable ``z_sdf``, deformation,
        frozen reference SDF) and its :class:`SiraRendering` (trainable ``z_r``), latents initialised to the
        training mean (zero for an untrained model) unless given."""
        mz, mr = self.mean_latents()
        zs = (mz if z_sdf is None else torch.as_tensor(z_sdf, dtype=torch.float32)).detach().clone()
        zr = (mr if z_r is None else torch.as_tensor(z_r, dtype=torch.float32)).detach().clone()
        geo = SiraGeometry(copy.deepcopy(self.deform), copy.deepcopy(self.reference), zs, latent_mean=mz,
                           latent_reg=self.config.latent_reg, frame=frame, correct=copy.deepcopy(self.correct))
        geo.reference.set_progress(1.0)
        ren = SiraRendering(copy.deepcopy(self.render), zr, latent_mean=mr, latent_reg=self.config.latent_reg,
                            geometry=geo)
        return geo, ren

    # ------------------------------------------------------------------ persistence
    def state(self, dtype: torch.dtype | None = None) -> dict:
        """Checkpoint dict of plain tensors / numbers / strings (``torch.load(weights_only=True)`` reads it)."""
        cast = (lambda t: t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().cpu()) if dtype \
            else (lambda t: t.detach().cpu().clone())
        return {"format": SIRA_FORMAT, "version": SIRA_VERSION, "config": self.config.to_dict(),
                "weights": {k: cast(v) for k, v in self.state_dict().items()},
                "normalization": self.norm.to_dict(), "data": self.data, "meta": self.meta}

    def save(self, path, half: bool = False) -> Path:
        return save_weights(self.state(torch.float16 if half else None), path)

    @classmethod
    def from_state(cls, state: dict, source: str = "checkpoint") -> "SiraPrior":
        if not isinstance(state, dict) or state.get("format") != SIRA_FORMAT:
            raise ValueError(f"{source}: not a headrecon SIRA++ model (missing format={SIRA_FORMAT!r}); "
                             "an H3D-Net prior loads with headrecon.priors.h3dnet.load_prior")
        if int(state.get("version", 0)) > SIRA_VERSION:
            raise ValueError(f"{source}: SIRA++ model version {state['version']} is newer than this code supports")
        cfg = SiraConfig.from_dict(state["config"])
        w = state["weights"]
        model = cls(cfg, num_latents=int(w["z_sdf.weight"].shape[0]),
                    norm=Normalization.from_dict(state["normalization"]), data=state.get("data"),
                    meta=state.get("meta"))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in w.items()})
        return model

    # what :meth:`load` names, reads and defaults to (a subclass with its own file format sets its own)
    _KIND, _CLI_MODEL, _FORMAT = "SIRA++ model", "sira", SIRA_FORMAT

    @classmethod
    def _default_path(cls) -> Path:
        return default_sira_path()

    @classmethod
    def load(cls, path=None, map_location="cpu"):
        """Load a model (default: the shipped one); training checkpoints (``*.ckpt.pt``) load too."""
        path = Path(path) if path is not None else cls._default_path()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {cls._KIND} not found (train one with "
                                    f"'headrecon-train-prior ict --model {cls._CLI_MODEL} --out PATH')")
        state = load_weights(path, cls._KIND)
        if isinstance(state, dict) and state.get("format") == cls._FORMAT + "-train":
            state = state["model"]
        return cls.from_state(state, source=str(path)).to(map_location)


def default_sira_path() -> Path:
    """The shipped SIRA++ model (``headrecon/assets/prior_sira_bust.pt``)."""
    return Path(__file__).resolve().parents[2] / "assets" / "prior_sira_bust.pt"


def load_sira(path=None, device="cpu") -> SiraPrior:
    """``SiraPrior.load(path or the shipped model)`` in eval mode."""
    return SiraPrior.load(path, map_location=device).eval()


# ============================================================================================== losses
def deformation_regulariser(delta: torch.Tensor) -> torch.Tensor:
    """``mean ||delta|| + ||mean delta||`` over all points (last dim 3)."""
    d = delta.reshape(-1, 3)
    return d.norm(dim=-1).mean() + d.mean(dim=0).norm()


def landmark_consistency(ref_landmarks: torch.Tensor) -> torch.Tensor:
    """Spread of the shapes' landmarks in reference space: ``ref_landmarks [B, K, 3]`` (landmark k of shape b
    mapped by ``x + delta(x, z_b)``) -> ``mean_k mean_b ||l_bk - mean_b l_bk||^2`` (0 when aligned; 0 for B=1)."""
    if ref_landmarks.dim() != 3 or ref_landmarks.shape[-1] != 3:
        raise ValueError(f"ref_landmarks must be [B, K, 3], got {tuple(ref_landmarks.shape)}")
    if ref_landmarks.shape[0] < 2:
        return ref_landmarks.sum() * 0.0
    c = ref_landmarks.mean(dim=0, keepdim=True)
    return (ref_landmarks - c).pow(2).sum(-1).mean()


def sira_losses(cfg: SiraConfig, sdf_surf, sdf_vol_grad, delta, ref_landmarks, rgb_pred, rgb_gt, z_sdf, z_r,
                grad_surf=None, normals=None, sdf_outside=None, correction=None) -> dict:
    """Weighted total and unweighted terms.

    Args:
        sdf_surf: SDF at raw-scan surface points (any shape); sdf_vol_grad: SDF gradients [..., 3] at the Eikonal
        samples; delta: deformations [..., 3] at every evaluated point; ref_landmarks [B, K, 3] or None;
        rgb_pred / rgb_gt [..., 3] at the colour points (or None); z_sdf, z_r [B, D] latents of the batch;
        grad_surf / normals [..., 3]: for the optional normal term; sdf_outside: SDF on the outside shell
        (optional hinge ``mean relu(-f)``: raw scans leave the SDF free far from the data, where spurious
        surfaces would otherwise appear, e.g. a neck tube continuing downwards); correction: the correction
        field's values at every evaluated point (optional L1 term ``mean |c|``).
    """
    zero = sdf_surf.new_zeros(())
    surface = sdf_surf.abs().mean()
    eikonal = (sdf_vol_grad.norm(dim=-1) - 1.0).pow(2).mean() if sdf_vol_grad.numel() else zero
    deform = deformation_regulariser(delta)
    landmark = landmark_consistency(ref_landmarks) if ref_landmarks is not None else zero
    color = (rgb_pred - rgb_gt).abs().mean() if rgb_pred is not None and rgb_pred.numel() else zero
    latent = z_sdf.pow(2).sum(-1).mean() + z_r.pow(2).sum(-1).mean()
    normal = zero
    if cfg.normal_weight > 0 and grad_surf is not None and normals is not None:
        normal = (grad_surf - normals).norm(dim=-1).mean()
    outside = F.relu(-sdf_outside).mean() if sdf_outside is not None and sdf_outside.numel() else zero
    corr = correction.abs().mean() if correction is not None and correction.numel() else zero
    loss = (cfg.corr_weight * corr + cfg.outside_weight * outside + cfg.surface_weight * surface
            + cfg.eikonal_weight * eikonal + cfg.deform_weight * deform
            + cfg.landmark_weight * landmark + cfg.color_weight * color + cfg.latent_reg * latent
            + cfg.normal_weight * normal)
    return {"loss": loss, "surface": surface, "eikonal": eikonal, "deform": deform, "landmark": landmark,
            "color": color, "latent": latent, "normal": normal, "outside": outside, "correction": corr}


# ============================================================================================== reconstruction
class SiraGeometry(FramedPrior, CodePrior, nn.Module):
    """Reconstruction-side SDF of SIRA++ with the ``GeometryNetwork`` interface: ``forward(x) -> (sdf,
    feature)`` where ``feature = [x_ref (prior frame), gamma]`` feeds :class:`SiraRendering`.

    Parameters: ``latent`` (z_sdf), ``deform`` (deformation network), ``correct`` (the model's correction field or
    None; trains with the deformation), ``reference`` (reference SDF, frozen by :meth:`set_phase` in every phase).
    ``frame`` (4x4 similarity ``A = s R``, ``b``) maps the caller's unit frame to the prior's; SDF values are
    divided by ``s`` so they stay distances in the caller's frame."""

    def __init__(self, deform: DeformationNetwork, reference: GeometryNetwork, latent: torch.Tensor,
                 latent_mean: torch.Tensor | None = None, latent_reg: float = 0.0, frame=None,
                 correct: CorrectionNetwork | None = None):
        super().__init__()
        self.deform = deform
        self.correct = correct
        self.reference = reference
        self.latent = nn.Parameter(latent.detach().clone().float())
        self.register_buffer("latent_mean", torch.zeros_like(self.latent) if latent_mean is None
                             else latent_mean.detach().clone().float())
        self.init_code_prior(latent_reg)  # latent_reg, latent_precision (CodePrior)
        Fm = np.eye(4) if frame is None else np.asarray(frame, dtype=np.float64)
        if Fm.shape != (4, 4):
            raise ValueError(f"frame must be 4x4, got {Fm.shape}")
        s = float(np.cbrt(np.linalg.det(Fm[:3, :3])))
        if not s > 0 or not np.allclose(Fm[:3, :3] @ Fm[:3, :3].T, s * s * np.eye(3), atol=1e-6 * s * s + 1e-9):
            raise ValueError("frame must be a similarity (s * rotation + translation) with positive scale")
        self.register_buffer("frame_A", torch.as_tensor(Fm[:3, :3], dtype=torch.float32))
        self.register_buffer("frame_b", torch.as_tensor(Fm[:3, 3], dtype=torch.float32))
        self.frame_scale = s
        self.pose = None  # RigidCorrection after the fixed frame (enable_pose_refinement)
        self.set_phase("latent")

    d_in = 3

    @property
    def d_feature(self) -> int:
        return 3 + self.deform.d_gamma

    @property
    def sphere_radius(self) -> float:
        return self.reference.sphere_radius

    def set_progress(self, progress: float) -> None:
        """No-op: the reference SDF was trained to its full encoding; reconstruction keeps every frequency on."""

    def set_phase(self, phase: str) -> None:
        """``"latent"``: only ``z_sdf`` trains; ``"all"``: ``z_sdf`` and the deformation network (and the
        correction field). The reference SDF stays frozen in every phase."""
        if phase not in ("latent", "all"):
            raise ValueError(f"phase must be 'latent' or 'all', got {phase!r}")
        self.phase = phase
        self.latent.requires_grad_(True)
        for p in self.shape_parameters():
            p.requires_grad_(phase == "all")
        for p in self.reference.parameters():
            p.requires_grad_(False)

    def shape_parameters(self) -> list:
        """The parameters that phase ``"all"`` trains besides the latent: the deformation network's and the
        correction field's."""
        return list(self.deform.parameters()) + ([] if self.correct is None else list(self.correct.parameters()))

    def _prior_sdf(self, xp: torch.Tensor, x_ref: torch.Tensor) -> torch.Tensor:
        return head_sdf(self.reference, self.correct, xp, x_ref, self.latent)[0] / self.frame_scale

    def forward(self, x: torch.Tensor):
        xp = self.to_prior(x)
        delta, gamma = self.deform(xp, self.latent)
        x_ref = xp + delta
        return self._prior_sdf(xp, x_ref), torch.cat([x_ref, gamma], dim=-1)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        xp = self.to_prior(x)
        delta, _ = self.deform(xp, self.latent)
        return self._prior_sdf(xp, xp + delta)

    def forward_with_gradient(self, x: torch.Tensor, create_graph: Optional[bool] = None):
        if create_graph is None:
            create_graph = self.training
        return sdf_with_gradient(self.forward, x, create_graph)

    def gradient(self, x: torch.Tensor, create_graph: Optional[bool] = None) -> torch.Tensor:
        return self.forward_with_gradient(x, create_graph)[2]


class SiraRendering(CodePrior, nn.Module):
    """Reconstruction-side ``r(x_ref, n, v, gamma; z_r)`` with the ``RenderingNetwork`` call signature
    ``(points, normals, view_dirs, features)``: ``features = [x_ref, gamma]`` from :class:`SiraGeometry`;
    normals and view directions are rotated into the prior frame. Parameters: ``latent`` (z_r), ``net``."""

    def __init__(self, net: RenderingNetwork, latent: torch.Tensor, latent_mean: torch.Tensor | None = None,
                 latent_reg: float = 0.0, geometry: SiraGeometry | None = None):
        super().__init__()
        self.net = net
        self.latent = nn.Parameter(latent.detach().clone().float())
        self.register_buffer("latent_mean", torch.zeros_like(self.latent) if latent_mean is None
                             else latent_mean.detach().clone().float())
        self.init_code_prior(latent_reg)  # latent_reg, latent_precision (CodePrior)
        R = torch.eye(3) if geometry is None else geometry.frame_A.detach().cpu() / geometry.frame_scale
        self.register_buffer("rot", R.float())
        # the geometry (not a submodule: its parameters are the geometry's): its pose refinement, if enabled
        # later, turns normals and view directions too
        self.__dict__["_geometry"] = geometry
        self.set_phase("latent")

    def set_phase(self, phase: str) -> None:
        """``"latent"``: only ``z_r`` trains; ``"all"``: ``z_r`` and the rendering network."""
        if phase not in ("latent", "all"):
            raise ValueError(f"phase must be 'latent' or 'all', got {phase!r}")
        self.latent.requires_grad_(True)
        for p in self.net.parameters():
            p.requires_grad_(phase == "all")

    def forward(self, points, normals, view_dirs, features):
        x_ref, gamma = features[..., :3], features[..., 3:]
        R = self.rot.to(features.dtype)
        pose = getattr(self.__dict__.get("_geometry"), "pose", None)
        if pose is not None:
            R = pose.matrix().to(features.dtype) @ R
        n = normals @ R.T  # caller-frame SDF gradient = R^T (prior-frame gradient)
        v = view_dirs @ R.T
        z = self.latent.to(gamma.dtype).expand(*gamma.shape[:-1], self.latent.shape[-1])
        return self.net(x_ref, n, v, torch.cat([gamma, z], dim=-1))
