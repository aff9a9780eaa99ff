"""Volume rendering of an SDF (VolSDF, Yariv et al. 2021) over the engine's ops: density from the SDF, samples
along rays inside the bounding sphere, empty-space skipping with an SDF voxel grid as occupancy grid (as nerfacc
does with its occupancy grid), and the compositing op (:func:`headrecon.ops.composite`).

* :func:`laplace_density`: ``sigma = alpha * Psi_beta(-d)`` with ``Psi_beta`` the CDF of the zero-mean Laplace
  distribution of scale ``beta`` (VolSDF Eq. 2; ``alpha = 1 / beta`` by default).
* :func:`occupied`: which samples may hold density. A voxel whose cached SDF value ``v`` (the smallest value
  written into it: any SDF value in the voxel) satisfies ``v - diag >= margin`` (``diag`` = the voxel's
  diagonal) is at least ``margin`` outside the surface everywhere (1-Lipschitz), so its density is at most
  ``alpha / 2 * exp(-margin / beta)``: its samples are skipped. Empty voxels (NaN) and anything else are kept, so a
  voxel with a surface in it is never skipped.
* :func:`render_volume`: uniform samples between the ray's entry and exit of the bounding sphere (``n`` per ray,
  the last segment's length the common step), skipping, packing, one SDF / colour evaluation of the kept samples,
  compositing of colour, depth, normal and opacity.

VolSDF's error-bounded sampler is not implemented yet: the uniform samples are its first stage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .. import ops

__all__ = ["laplace_density", "occupied", "fill_occupancy", "render_volume", "VolumeResult"]


def laplace_density(sdf: torch.Tensor, beta, alpha=None) -> torch.Tensor:
    """VolSDF density ``alpha * Psi_beta(-sdf)`` (``alpha`` default ``1 / beta``); ``beta`` a float or a tensor
    (learnable)."""
    beta = torch.as_tensor(beta, dtype=sdf.dtype, device=sdf.device)
    alpha = 1.0 / beta if alpha is None else torch.as_tensor(alpha, dtype=sdf.dtype, device=sdf.device)
    s = -sdf
    # numerically safe both sides: exp only of non-positive arguments
    cdf = torch.where(s <= 0, 0.5 * torch.exp(torch.clamp(s, max=0) / beta),
                      1 - 0.5 * torch.exp(-torch.clamp(s, min=0) / beta))
    return alpha * cdf


def fill_occupancy(sdf_fn: Callable[[torch.Tensor], torch.Tensor], resolution: int, radius: float,
                   device="cpu", dtype=torch.float32, chunk: int = 65536) -> torch.Tensor:
    """An occupancy grid [D,D,D] holding the SDF at every voxel centre (the layout of
    :class:`headrecon.render.SDFCache`'s grid, which a trainer can pass instead)."""
    D = int(resolution)
    c = (torch.arange(D, dtype=dtype, device=device) + 0.5) / D * 2 * radius - radius
    pts = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        vals = torch.cat([sdf_fn(pts[i:i + chunk]) for i in range(0, len(pts), chunk)])
    return vals.reshape(D, D, D).to(dtype)


def occupied(grid: torch.Tensor, points: torch.Tensor, radius: float, margin: float) -> torch.Tensor:
    """Bool [N]: False where the grid proves the point at least ``margin`` outside the surface (module docstring).
    Points outside the grid's cube are kept."""
    D = grid.shape[0]
    diag = 2.0 * radius * math.sqrt(3.0) / D
    # cache_query answers (need=False) exactly the points whose voxel value v satisfies v >= eps; p_force = 0
    _, need = ops.cache_query(grid.to(points.dtype).contiguous(), points.contiguous(), radius, eps=margin + diag,
                              p_force=0.0)
    return need


@dataclass
class VolumeResult:
    rgb: torch.Tensor        # [R,3]
    depth: torch.Tensor      # [R] (expected t of the opaque part, divided by the opacity where it is > 0)
    normal: torch.Tensor     # [R,3] composited unnormalised SDF gradients
    opacity: torch.Tensor    # [R]
    samples: int             # samples evaluated
    samples_total: int       # samples before skipping


def render_volume(sdf_fn: Callable, color_fn: Optional[Callable], origins: torch.Tensor, dirs: torch.Tensor,
                  n_samples: int = 64, beta: float = 0.01, radius: float = 1.0, grid: Optional[torch.Tensor] = None,
                  margin_betas: float = 12.0, with_normals: bool = False) -> VolumeResult:
    """Render rays through the SDF ``sdf_fn(points [N,3]) -> [N]``.

    ``color_fn(points, normals, view_dirs) -> [N,3]`` (None: white); ``grid``: an occupancy grid over
    [-radius, radius]^3 (:func:`fill_occupancy` or an SDF cache's grid) enabling the skip of samples proven
    ``margin_betas * beta`` outside the surface (their density is below ``exp(-margin_betas) / (2 beta)``).
    Differentiable in what ``sdf_fn`` / ``color_fn`` depend on (and ``beta`` if a tensor).
    """
    R = origins.shape[0]
    near, far, hit = ops.ray_sphere_intersect(origins, dirs, radius)
    ray_idx = torch.nonzero(hit).reshape(-1)
    t, pts = ops.search_samples(origins, dirs, ray_idx, near[ray_idx], far[ray_idx], int(n_samples))
    M = ray_idx.numel()
    step = (far[ray_idx] - near[ray_idx]) / max(1, n_samples - 1)                       # [M]
    keep = torch.ones(M, n_samples, dtype=torch.bool, device=origins.device)
    if grid is not None and M:
        margin = float(margin_betas) * float(beta)
        keep = occupied(grid, pts.reshape(-1, 3), radius, margin).reshape(M, n_samples)
    counts = keep.sum(1)
    packed = torch.stack([torch.cumsum(counts, 0) - counts, counts], 1).contiguous()
    x = pts[keep]                                                                     # [S,3], ray by ray
    ts = t[keep]
    deltas = step[:, None].expand(M, n_samples)[keep] * dirs[ray_idx].norm(dim=-1)[:, None].expand(
        M, n_samples)[keep]
    vdirs = dirs[ray_idx][:, None, :].expand(M, n_samples, 3)[keep]
    if with_normals or color_fn is not None:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            sdf = sdf_fn(xg)
            (grad,) = torch.autograd.grad(sdf.sum(), xg, create_graph=torch.is_grad_enabled())
    else:
        sdf, grad = sdf_fn(x), torch.zeros_like(x)
    sigma = laplace_density(sdf, beta)
    rgb = color_fn(x, grad, vdirs) if color_fn is not None else torch.ones_like(x)
    values = torch.cat([rgb, ts[:, None], grad], dim=1).contiguous()
    out, opacity, _ = ops.composite(packed, sigma.contiguous(), deltas.contiguous(), values)
    full = origins.new_zeros(R, 7)
    full = full.index_put((ray_idx,), out)
    op = origins.new_zeros(R).index_put((ray_idx,), opacity)
    depth = torch.where(op > 0, full[:, 3] / op.clamp_min(1e-12), torch.zeros_like(op))
    return VolumeResult(rgb=full[:, :3], depth=depth, normal=full[:, 4:], opacity=op, samples=int(x.shape[0]),
                        samples_total=int(M * n_samples))
