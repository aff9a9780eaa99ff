"""A fast detail field: SDF = base(x) + tiny-MLP(hash-grid(x)) (``--detail hashgrid``).

The encoding is the engine's multiresolution hash op (:func:`headrecon.ops.hash_encode`, Instant-NGP) over the
tracer's bounding cube; a small MLP (Softplus(beta=100), as IDR's network) maps the features (and the point) to a
signed-distance *correction* and the feature vector the rendering network reads. The base is a callable
``x [N,3] -> sdf [N]`` (the initial sphere ``|x| - r`` for IDR) or a geometry module ``x -> (sdf, feature)``
(a prior's latent-conditioned decoder, H3D-Net or SIRA++, whose phase 2 then trains this field instead of
fine-tuning the decoder; with ``d_feature=0`` the features stay the base's, so the method's rendering network is
unchanged). The MLP's last layer starts at zero, so the field starts as its base.

Coarse to fine: only the first ``start_levels`` levels are active at the start; the others switch on one by one
until ``full_at`` of the run (``set_training_progress``, called by the trainer), as Neuralangelo does; inactive
levels feed zeros (and get no gradient); they are not encoded, so the first part of a run costs less.

Interface: like :class:`headrecon.models.GeometryNetwork` (``forward``, ``sdf``, ``forward_with_gradient``).
Normals (``normals``): ``"analytic"`` takes the op's points gradient, so the Eikonal term's gradient to the table
is a double backward through the op (exact; see :mod:`headrecon.ops.hash_grid` for the second-order limits);
``"fd"`` takes the base's gradient by autograd and the detail's by central differences with a step of one cell of
the finest active level (Neuralangelo, Li et al. 2023): six more evaluations of the detail field and no double
backward, and a gradient that spans neighbouring cells, so the Eikonal term smooths the table across them.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops.activation import Softplus
from .geometry import sdf_with_gradient

__all__ = ["HashGridSDF", "sphere_sdf"]


def sphere_sdf(radius: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The base of IDR's detail field: the initial sphere."""
    def base(x: torch.Tensor) -> torch.Tensor:
        return x.norm(dim=-1) - radius

    return base


class HashGridSDF(nn.Module):
    """``sdf(x) = base(x) + mlp(enc(x))[0]``; ``feature(x) = mlp(enc(x))[1:]`` (module docstring).

    Args:
        base: ``x [N,3] -> sdf [N]`` (not trained here; a module's parameters stay where its owner puts them).
        levels, log2_size, feats: table shape [levels, 2^log2_size, feats]; base_res, finest_res: cells per axis
            of the coarsest and finest level over [-radius, radius]^3.
        hidden, layers: the MLP; d_feature: feature size for the rendering network.
        start_levels, full_at: coarse-to-fine schedule.
        normals: ``"analytic"`` or ``"fd"`` (finite differences of the detail field; module docstring).
        init_scale: tables start uniform in [-init_scale, init_scale] (Instant-NGP: 1e-4).
        unseen: rows of the ``unseen_points`` buffer (surface points no training camera sees, set by
            :meth:`set_unseen` when a prior method's phase 2 starts, saved with the model; 0 = no buffer).
    """

    def __init__(self, base: Callable[[torch.Tensor], torch.Tensor], levels: int = 12, log2_size: int = 17,
                 feats: int = 2, base_res: int = 16, finest_res: int = 512, hidden: int = 64, layers: int = 2,
                 d_feature: int = 64, radius: float = 1.0, start_levels: int = 4, full_at: float = 0.5,
                 init_scale: float = 1e-4, seed: int = 0, normals: str = "analytic", unseen: int = 0):
        super().__init__()
        if normals not in ("analytic", "fd"):
            raise ValueError(f"normals must be analytic or fd, got {normals!r}")
        self.normals = normals
        if not 1 <= start_levels <= levels:
            raise ValueError(f"start_levels must be in [1, levels={levels}], got {start_levels}")
        if not 0 < full_at <= 1:
            raise ValueError(f"full_at must be in (0, 1], got {full_at}")
        self.base = base
        self.levels, self.feats, self.radius = int(levels), int(feats), float(radius)
        self.resolutions = ops.hash_resolutions(levels, base_res, finest_res)
        # on the module's device, so that each encoding call passes it without a host copy or sync
        self.register_buffer("res_t", torch.tensor(self.resolutions, dtype=torch.int64), persistent=False)
        self.start_levels, self.full_at = int(start_levels), float(full_at)
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter((torch.rand(levels, 1 << log2_size, feats, generator=g) * 2 - 1) * init_scale)
        if d_feature < 0:
            raise ValueError(f"d_feature must be >= 0, got {d_feature}")
        dims = [levels * feats + 3] + [hidden] * layers + [1 + d_feature]
        lins = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
        with torch.no_grad():
            lins[-1].weight[0].zero_()
            lins[-1].bias[0] = 0.0
            if isinstance(base, nn.Module):  # added to the base's features: start without changing them
                lins[-1].weight.zero_()
                lins[-1].bias.zero_()
        self.mlp = nn.ModuleList(lins)
        self.act = Softplus(beta=100)
        self.register_buffer("level_mask", torch.ones(levels))
        self.set_training_progress(0.0)
        self.n_unseen = 0  # rows of unseen_points in use (host copy of unseen_count)
        if unseen:
            self.register_buffer("unseen_points", torch.zeros(int(unseen), 3))
            self.register_buffer("unseen_count", torch.zeros((), dtype=torch.int64))

    def set_unseen(self, points: torch.Tensor) -> None:
        """Store the unseen surface points [M <= buffer rows, 3] (unit frame)."""
        m = int(points.shape[0])
        if m > self.unseen_points.shape[0]:
            raise ValueError(f"{m} unseen points for a buffer of {self.unseen_points.shape[0]}")
        self.unseen_points.zero_()
        self.unseen_points[:m] = points.to(self.unseen_points)
        self.unseen_count.fill_(m)
        self.n_unseen = m

    def set_training_progress(self, progress: float) -> None:
        """Activate levels coarse to fine: all of them from ``full_at`` of the run on."""
        p = min(1.0, max(0.0, float(progress)) / self.full_at)
        active = self.start_levels + int(math.floor(p * (self.levels - self.start_levels) + 1e-9))
        m = torch.zeros(self.levels)
        m[:active] = 1.0
        self.level_mask.copy_(m)
        self._active = active  # kept on the host: fd_step reads it every call without a device sync

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._active = int(self.level_mask.sum())  # a loaded schedule (one sync at load time)
        if hasattr(self, "unseen_count"):
            self.n_unseen = int(self.unseen_count)

    @property
    def active_levels(self) -> int:
        return self._active

    def detail(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP's raw output [N, 1 + d_feature] (the SDF correction and the feature vector)."""
        return self.mlp[-1](self._hidden(x)).reshape(*x.shape[:-1], -1)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP's last hidden activations [N', hidden] at ``x [..., 3]`` (flattened)."""
        x2 = x.reshape(-1, 3)
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        a = self._active  # inactive levels are not encoded at all: they feed zeros (and get no gradient)
        if a == self.levels:
            enc = ops.hash_encode(x2, self.table.to(x2.dtype), self.res_t, self.radius)
            h = torch.cat([enc, x2], dim=-1)
        else:
            enc = ops.hash_encode(x2, self.table[:a].to(x2.dtype), self.res_t[:a], self.radius)
            h = torch.cat([enc, enc.new_zeros(enc.shape[0], (self.levels - a) * self.feats), x2], dim=-1)
        act, mlp = self.act, self.mlp
        for lin in itertools.islice(mlp, len(mlp) - 1):  # (slicing a ModuleList builds a new one per call)
            h = act(lin(h))
        return h

    def forward(self, x: torch.Tensor, latent: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._combine(self.base(x), self.detail(x))

    @staticmethod
    def _combine(b, out: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(sdf, feature)`` from the base's output (``sdf`` or, for a geometry module, ``(sdf, feature)``) and
        the MLP's output ``out [..., 1 + F]``."""
        if isinstance(b, tuple):  # a geometry module: (sdf, feature)
            sdf_b, feat_b = b
            feat = feat_b if out.shape[-1] == 1 else feat_b + out[..., 1:].to(feat_b.dtype)
            return sdf_b + out[..., 0].to(sdf_b.dtype), feat
        return b + out[..., 0], out[..., 1:]

    def sdf(self, x: torch.Tensor, latent: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Signed distance only, ``[...]`` (what the tracer and marching cubes call): the base's SDF alone (a
        geometry module's ``sdf``, without its features) plus the SDF row of the MLP's last layer."""
        last = self.mlp[-1]
        corr = F.linear(self._hidden(x), last.weight[:1], last.bias[:1]).reshape(x.shape[:-1])
        b = self.base.sdf(x) if isinstance(self.base, nn.Module) and hasattr(self.base, "sdf") else self.base(x)
        if isinstance(b, tuple):
            b = b[0]
        return b + corr.to(b.dtype)

    def forward_with_gradient(self, x: torch.Tensor, latent: Optional[torch.Tensor] = None,
                              create_graph: Optional[bool] = None):
        if create_graph is None:
            create_graph = self.training
        if self.normals == "analytic":
            return sdf_with_gradient(lambda p: self.forward(p), x, create_graph)
        return self._forward_with_fd_gradient(x, create_graph)

    def fd_step(self) -> float:
        """The central-difference step of ``normals="fd"``: one cell of the finest active level."""
        return 2.0 * self.radius / self.resolutions[self.active_levels - 1]

    def _forward_with_fd_gradient(self, x: torch.Tensor, create_graph: bool):
        """``(sdf, feature, grad)``: the base's gradient by autograd, the detail's by central differences."""
        if isinstance(self.base, nn.Module):
            sdf_b, feat_b, g_b = self.base.forward_with_gradient(x, create_graph=create_graph)
            b = (sdf_b, feat_b)
        else:
            b, _, g_b = sdf_with_gradient(lambda p: (self.base(p), p[..., :0]), x, create_graph)
        with torch.set_grad_enabled(create_graph or torch.is_grad_enabled()):
            h = self.fd_step()
            offs = torch.eye(3, dtype=x.dtype, device=x.device) * h
            xs = torch.cat([x[..., None, :], x[..., None, :] + offs, x[..., None, :] - offs], dim=-2)  # [..., 7, 3]
            out = self.detail(xs)  # [..., 7, 1 + F]: at x, then +h and -h along each axis
            d = out[..., 1:, 0]
            grad = g_b + ((d[..., :3] - d[..., 3:]) / (2.0 * h)).to(g_b.dtype)
            sdf, feat = self._combine(b, out[..., 0, :])
        if not create_graph:
            sdf, feat, grad = sdf.detach(), feat.detach(), grad.detach()
        return sdf, feat, grad

    def detail_magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared SDF correction at ``x`` (the small-magnitude regulariser of a prior's detail field)."""
        return (self.detail(x)[..., 0] ** 2).mean()
