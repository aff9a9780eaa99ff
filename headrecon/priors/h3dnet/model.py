"""The head prior: a DeepSDF auto-decoder (decoder MLP + one latent code per training shape) and the
latent-conditioned geometry module that reconstruction optimises.

* :class:`ShapePrior` — ``decoder`` (a :class:`headrecon.models.GeometryNetwork` with ``d_latent``) and
  ``latents`` (``nn.Embedding``, one row per training shape), plus the :class:`PriorConfig`, the
  :class:`Normalization` (mm <-> unit frame), a description of the training data and training metadata.
  ``sdf(x, z)`` evaluates the SDF in the unit frame for a latent ``z`` (vector, batch of vectors, or training
  index). ``save`` / ``load`` use plain tensors and dicts so that ``torch.load(weights_only=True)`` works.
* :class:`LatentGeometry` — what the H3D-Net reconstruction uses: a copy of the decoder plus a **trainable
  latent parameter**, exposing the ``GeometryNetwork`` interface without a latent argument
  (``forward(x) -> (sdf, feature)``, ``sdf``, ``gradient``, ``forward_with_gradient``, ``set_progress``).
  ``set_phase("latent")`` trains only the latent (H3D-Net phase 1), ``set_phase("all")`` latent and decoder
  (phase 2), ``set_phase("decoder")`` only the decoder. An optional fixed similarity maps the caller's unit frame
  (e.g. a scene's) into the prior's; SDF values are rescaled so they stay distances in the caller's frame.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ...models import GeometryNetwork
from ...models.geometry import sdf_with_gradient
from ...models.pose import FramedPrior
from ...weights import load_weights, save_weights
from ..codes import CodePrior
from ..normalization import Normalization
from .config import PriorConfig

__all__ = ["ShapePrior", "LatentGeometry", "CHECKPOINT_FORMAT", "build_decoder", "load_prior", "default_prior_path"]

CHECKPOINT_FORMAT = "headrecon-prior"
CHECKPOINT_VERSION = 1


def build_decoder(cfg: PriorConfig) -> GeometryNetwork:
    """The decoder MLP for ``cfg`` (geometric sphere init, zero weights on the latent input)."""
    return GeometryNetwork(d_in=3, d_hidden=cfg.d_hidden, n_layers=cfg.n_layers, skip_in=cfg.skip_in,
                           n_freqs=cfg.n_freqs, d_feature=cfg.d_feature, sphere_radius=cfg.sphere_radius,
                           softplus_beta=cfg.softplus_beta, geometric_init=True, weight_norm=cfg.weight_norm,
                           d_latent=cfg.latent_dim, calibrate_init=True)


def default_prior_path() -> Path:
    """The pretrained prior shipped with the package (``headrecon/assets/prior_h3dnet_bust.pt``)."""
    return Path(__file__).resolve().parents[2] / "assets" / "prior_h3dnet_bust.pt"


class ShapePrior(nn.Module):
    """DeepSDF-style auto-decoder head prior in the unit-sphere frame.

    Args:
        config: network / training configuration.
        num_latents: number of training shapes (rows of ``latents``).
        norm: the frame (default: the ICT frame, 250 mm per unit).
        data: description of the training data (not the data).
    """

    def __init__(self, config: PriorConfig, num_latents: int, norm: Normalization | None = None,
                 data: dict | None = None, meta: dict | None = None):
        super().__init__()
        if num_latents < 1:
            raise ValueError("num_latents must be >= 1")
        self.config = config
        self.norm = norm or Normalization()
        self.data = dict(data or {})
        self.meta = dict(meta or {})
        with torch.random.fork_rng(devices=[]):  # deterministic init without touching the caller's RNG
            torch.manual_seed(int(config.seed))
            self.decoder = build_decoder(config)
            self.latents = nn.Embedding(int(num_latents), int(config.latent_dim))
            with torch.no_grad():
                self.latents.weight.normal_(0.0, float(config.latent_init_std))

    # ------------------------------------------------------------------ properties
    @property
    def num_latents(self) -> int:
        return int(self.latents.num_embeddings)

    @property
    def latent_dim(self) -> int:
        return int(self.latents.embedding_dim)

    @property
    def d_feature(self) -> int:
        return int(self.decoder.d_feature)

    @property
    def device(self) -> torch.device:
        return self.latents.weight.device

    # ------------------------------------------------------------------ latents
    def latent(self, index) -> torch.Tensor:
        """Training latent(s) by index (int or LongTensor), detached."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return self.latents.weight[idx].detach()

    def mean_latent(self) -> torch.Tensor:
        """Mean of the training latents [latent_dim] (the 'mean head' is ``sdf(x, mean_latent())``)."""
        return self.latents.weight.detach().mean(dim=0)

    def latent_std(self) -> torch.Tensor:
        """Per-dimension standard deviation of the training latents [latent_dim] (0 for a single shape)."""
        w = self.latents.weight.detach()
        return w.std(dim=0, unbiased=False) if len(w) > 1 else torch.zeros_like(w[0])

    def sample_latents(self, n: int = 1, scale: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latents ``mean + scale * std * N(0, 1)`` [n, latent_dim]: shapes near the mean head."""
        eps = torch.randn(int(n), self.latent_dim, generator=generator).to(self.device)
        return self.mean_latent() + float(scale) * self.latent_std() * eps

    def _as_latent(self, z) -> torch.Tensor:
        if z is None:
            return self.mean_latent()
        if isinstance(z, int) or (isinstance(z, torch.Tensor) and not z.is_floating_point()):
            return self.latents(torch.as_tensor(z, dtype=torch.long, device=self.device))
        return torch.as_tensor(z, device=self.device)

    # ------------------------------------------------------------------ evaluation
    def sdf(self, x: torch.Tensor, z=None) -> torch.Tensor:
        """SDF in the unit frame at ``x [..., 3]`` for latent ``z``: a vector [D], per-point latents
        [..., D], a training index (int / LongTensor), or None for the mean latent."""
        return self.decoder.sdf(x, self._as_latent(z))

    def forward(self, x: torch.Tensor, z=None):
        """``(sdf, feature)`` like :meth:`GeometryNetwork.forward`."""
        return self.decoder(x, self._as_latent(z))

    def sdf_fn(self, z=None):
        """A callable ``points [N, 3] -> sdf [N]`` for a fixed latent (for the ray tracer and mesh extraction)."""
        zz = self._as_latent(z).detach()
        return lambda x: self.decoder.sdf(x, zz)

    def mesh(self, z=None, resolution: int = 128, mm: bool = True, radius: float = 1.0):
        """Marching-cubes mesh of the shape for ``z`` (in mm by default, else in the unit frame)."""
        from ...render.mesh import extract_mesh

        return extract_mesh(self.sdf_fn(z), resolution=resolution, radius=radius,
                            scale_mat=self.norm.scale_mat if mm else None)

    def to_unit(self, points_mm) -> np.ndarray:
        return self.norm.to_unit(points_mm)

    def to_mm(self, points_unit) -> np.ndarray:
        return self.norm.to_mm(points_unit)

    def geometry_network(self, z=None, frame=None, trainable_decoder: bool = True) -> "LatentGeometry":
        """A :class:`LatentGeometry` (decoder copy + trainable latent initialised to ``z``, default the mean).

        ``frame``: optional 4x4 similarity from the caller's unit frame to the prior's unit frame. For a
        scene normalised by ``scene.scale_mat`` (unit -> mm) and a head aligned by
        ``S = prior_normalization(...)`` (prior unit -> mm), ``frame = inv(S) @ scene.scale_mat``.
        """
        z0 = self._as_latent(z).detach().clone()
        if z0.dim() != 1:
            raise ValueError(f"geometry_network needs one latent vector, got shape {tuple(z0.shape)}")
        g = LatentGeometry(copy.deepcopy(self.decoder), z0, latent_mean=self.mean_latent(),
                           latent_reg=self.config.latent_reg, frame=frame)
        if not trainable_decoder:
            g.set_phase("latent")
        return g

    # ------------------------------------------------------------------ persistence
    def state(self, dtype: torch.dtype | None = None) -> dict:
        """Checkpoint dict (plain tensors, numbers, strings, lists, dicts; loadable with weights_only=True)."""
        cast = (lambda t: t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().cpu()) if dtype \
            else (lambda t: t.detach().cpu().clone())
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "decoder": {k: cast(v) for k, v in self.decoder.state_dict().items()},
            "latents": cast(self.latents.weight),
            "normalization": self.norm.to_dict(),
            "data": self.data, "meta": self.meta,
        }

    def save(self, path, half: bool = False) -> Path:
        """Write the prior (decoder, training latents, config, frame, data description, metadata).
        ``half`` stores the floating-point tensors as float16 (``load`` converts back to float32)."""
        return save_weights(self.state(torch.float16 if half else None), path)

    @classmethod
    def from_state(cls, state: dict, source: str = "checkpoint") -> "ShapePrior":
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{source}: not a headrecon prior checkpoint (missing format={CHECKPOINT_FORMAT!r})")
        if int(state.get("version", 0)) > CHECKPOINT_VERSION:
            raise ValueError(f"{source}: checkpoint version {state['version']} is newer than this code supports")
        cfg = PriorConfig.from_dict(state["config"])
        lat = state["latents"]
        prior = cls(cfg, num_latents=int(lat.shape[0]), norm=Normalization.from_dict(state["normalization"]),
                    data=state.get("data"), meta=state.get("meta"))
        prior.decoder.load_state_dict({k: v.float() if v.is_floating_point() else v
                                       for k, v in state["decoder"].items()})
        with torch.no_grad():
            prior.latents.weight.copy_(lat.float())
        return prior

    @classmethod
    def load(cls, path=None, map_location="cpu") -> "ShapePrior":
        """Load a prior (default: the shipped one; :func:`headrecon.weights.load_weights`: nothing in the file
        runs, its checksum is checked). Training checkpoints (``*.ckpt.pt``) load too."""
        path = Path(path) if path is not None else default_prior_path()
        state = load_weights(path, "H3D-Net prior", map_location=map_location)
        if isinstance(state, dict) and state.get("format") == "headrecon-prior-train":
            state = state["prior"]  # training checkpoint (prior + optimiser state)
        prior = cls.from_state(state, source=str(path))
        return prior.to(map_location) if map_location is not None else prior


def load_prior(path=None, device="cpu") -> ShapePrior:
    """``ShapePrior.load(path or the shipped prior)`` in eval mode on ``device``."""
    return ShapePrior.load(path, map_location=device).eval()


class LatentGeometry(FramedPrior, CodePrior, nn.Module):
    """Latent-conditioned SDF with the ``GeometryNetwork`` interface and a trainable latent.

    ``x`` is in the caller's unit frame; with ``frame`` (4x4 similarity ``A = s R``, ``b``) the decoder sees
    ``x_p = A x + b`` and the returned SDF is ``F(x_p, z) / s`` (a distance in the caller's frame).
    Parameters: ``latent`` [D] and the decoder's (``net``). Use :meth:`set_phase` to choose what trains and
    :meth:`latent_loss` as the code regulariser ``latent_reg * ||z - mean||^2`` when optimising the latent.
    """

    def __init__(self, net: GeometryNetwork, latent: torch.Tensor, latent_mean: torch.Tensor | None = None,
                 latent_reg: float = 0.0, frame=None):
        super().__init__()
        self.net = net
        self.latent = nn.Parameter(latent.detach().clone().float())
        mean = torch.zeros_like(self.latent) if latent_mean is None else latent_mean.detach().clone().float()
        self.register_buffer("latent_mean", mean)
        self.init_code_prior(latent_reg)  # latent_reg, latent_precision (CodePrior)
        F = np.eye(4) if frame is None else np.asarray(frame, dtype=np.float64)
        if F.shape != (4, 4):
            raise ValueError(f"frame must be 4x4, got {F.shape}")
        s = float(np.cbrt(np.linalg.det(F[:3, :3])))
        if not s > 0 or not np.allclose(F[:3, :3] @ F[:3, :3].T, (s * s) * np.eye(3), atol=1e-6 * s * s + 1e-9):
            raise ValueError("frame must be a similarity (s * rotation + translation) with positive scale")
        self.register_buffer("frame_A", torch.as_tensor(F[:3, :3], dtype=torch.float32))
        self.register_buffer("frame_b", torch.as_tensor(F[:3, 3], dtype=torch.float32))
        self.frame_scale = s
        self._identity = frame is None or np.allclose(F, np.eye(4))
        self.pose = None  # RigidCorrection after the fixed frame (enable_pose_refinement)

    # GeometryNetwork-like attributes used by reconstruction code
    @property
    def d_feature(self) -> int:
        return self.net.d_feature

    @property
    def d_in(self) -> int:
        return 3

    @property
    def sphere_radius(self) -> float:
        return self.net.sphere_radius

    def set_progress(self, progress: float) -> None:
        """No-op: the prior was trained with all positional-encoding frequencies on (masking them would change
        the learned function), so coarse-to-fine schedules do not apply."""

    def set_phase(self, phase: str) -> None:
        """``"latent"``: only the latent trains (H3D-Net phase 1); ``"all"``: latent and decoder (phase 2);
        ``"decoder"``: only the decoder."""
        if phase not in ("latent", "all", "decoder"):
            raise ValueError(f"phase must be 'latent', 'all' or 'decoder', got {phase!r}")
        self.latent.requires_grad_(phase in ("latent", "all"))
        for p in self.net.parameters():
            p.requires_grad_(phase in ("all", "decoder"))

    def latent_parameters(self):
        return [self.latent]

    def decoder_parameters(self):
        return list(self.net.parameters())

    def to_prior(self, x: torch.Tensor) -> torch.Tensor:
        """Scene points [..., 3] to prior coordinates (:meth:`FramedPrior.to_prior`; the points themselves when
        the frame is the identity and no correction is on)."""
        return x if self._identity and self.pose is None else self._framed(x)

    def forward(self, x: torch.Tensor, latent: Optional[torch.Tensor] = None):
        """``x [..., 3] -> (sdf [...], feature [..., d_feature])``; ``latent`` overrides the parameter."""
        z = self.latent if latent is None else latent
        sdf, feat = self.net(self.to_prior(x), z)
        return (sdf if self._identity else sdf / self.frame_scale), feat

    def sdf(self, x: torch.Tensor, latent: Optional[torch.Tensor] = None) -> torch.Tensor:
        z = self.latent if latent is None else latent
        s = self.net.sdf(self.to_prior(x), z)
        return s if self._identity else s / self.frame_scale

    def forward_with_gradient(self, x: torch.Tensor, latent=None, create_graph: Optional[bool] = None):
        """``(sdf, feature, dsdf/dx)`` w.r.t. the caller's ``x`` (see ``GeometryNetwork.forward_with_gradient``)."""
        if create_graph is None:
            create_graph = self.training
        return sdf_with_gradient(lambda p: self.forward(p, latent), x, create_graph)

    def gradient(self, x: torch.Tensor, latent=None, create_graph: Optional[bool] = None) -> torch.Tensor:
        if create_graph is None:
            create_graph = self.training
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            sdf = self.sdf(x, latent)
            (grad,) = torch.autograd.grad(sdf, x, grad_outputs=torch.ones_like(sdf), create_graph=create_graph,
                                          retain_graph=create_graph)
        return grad if create_graph else grad.detach()
