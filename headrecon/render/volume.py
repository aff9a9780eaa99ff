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

* Hierarchical sampling (``n_fine > 0``; a documented variant of VolSDF's error-bounded sampler, as in NeRF and
  NeuS): the uniform samples above are evaluated without gradients, their compositing weights (max-blurred over
  neighbours, plus a small floor) make a piecewise-constant PDF along the ray, ``n_fine`` samples go to its
  quantiles ``(j + 0.5) / n_fine``, and the coarse and fine samples together, sorted, are rendered (with
  gradients), each standing for the stretch to the next sample (at most a coarse step).
  **Early ray termination**: the PDF ends where the coarse transmittance falls below ``stop_transmittance``, so no
  sample is spent behind an opaque surface (what lies there contributes at most that much).
  VolSDF bounds the opacity error to choose its samples and its beta; this variant does not bound it, it only
  concentrates the samples (measured against dense sampling in docs/results/engine-benchmarks.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .. import ops

__all__ = ["laplace_density", "occupied", "fill_occupancy", "render_volume", "VolumeResult", "sample_pdf"]


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
        vals = torch.cat([_sdf_only(sdf_fn(pts[i:i + chunk])) for i in range(0, len(pts), chunk)])
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
    sample_gradients: Optional[torch.Tensor] = None  # [S,3] SDF gradients at the rendered samples (with a graph
    #                                                  when gradients are enabled: an Eikonal term can use them)


def sample_pdf(t0: torch.Tensor, width: torch.Tensor, weights: torch.Tensor, n: int):
    """Quantile samples of piecewise-constant PDFs: ray m's bins start at ``t0 [M,K]`` with widths ``width [M,K]``
    and carry ``weights [M,K] >= 0`` (not all zero). Returns ``t [M,n]`` at the quantiles ``(j + 0.5) / n`` and
    ``delta [M,n]``, the length between the quantiles ``j / n`` and ``(j + 1) / n`` (the stretch each sample stands
    for; they tile the support of the PDF). Deterministic (no random offsets)."""
    M, K = weights.shape
    cdf = torch.cumsum(weights, 1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf / cdf[:, -1:]], 1)            # [M,K+1]

    def inverse(u):                                                                   # u [n'] -> t [M,n']
        uu = u.expand(M, -1).contiguous()
        i = (torch.searchsorted(cdf, uu, right=True) - 1).clamp(0, K - 1)
        lo, hi = cdf.gather(1, i), cdf.gather(1, i + 1)
        frac = torch.where(hi > lo, (uu - lo) / (hi - lo).clamp_min(1e-30), torch.zeros_like(uu))
        return t0.gather(1, i) + frac.clamp(0, 1) * width.gather(1, i)

    j = torch.arange(n, dtype=weights.dtype, device=weights.device)
    t = inverse((j + 0.5) / n)
    edges = inverse(torch.cat([j / n, j[-1:] * 0 + 1.0]))
    return t, edges[:, 1:] - edges[:, :-1]


def render_volume(sdf_fn: Callable, color_fn: Optional[Callable], origins: torch.Tensor, dirs: torch.Tensor,
                  n_samples: int = 64, beta: float = 0.01, radius: float = 1.0, grid: Optional[torch.Tensor] = None,
                  margin_betas: float = 12.0, with_normals: bool = False, n_fine: int = 0,
                  stop_transmittance: float = 1e-4, pdf_floor: float = 1e-3,
                  no_skip: Optional[torch.Tensor] = None) -> VolumeResult:
    """Render rays through the SDF ``sdf_fn(points [N,3]) -> [N]``.

    ``color_fn(points, normals, view_dirs) -> [N,3]`` (None: white); when ``sdf_fn`` returns ``(sdf, feature)``
    (a geometry module's ``forward``), ``color_fn(points, normals, view_dirs, feature)``; ``grid``: an occupancy grid over
    [-radius, radius]^3 (:func:`fill_occupancy` or an SDF cache's grid) enabling the skip of samples proven
    ``margin_betas * beta`` outside the surface (their density is below ``exp(-margin_betas) / (2 beta)``).
    ``n_fine > 0``: hierarchical sampling (module docstring): the ``n_samples`` uniform samples only place
    ``n_fine`` rendered ones; ``stop_transmittance`` ends each ray's PDF once the coarse transmittance falls below
    it; ``pdf_floor`` is the share of each ray's PDF spread uniformly over its unskipped coarse bins.
    ``no_skip`` (bool [R]): rays whose samples the grid never skips (a fit's rays inside the object mask: where the
    surface is still missing, skipping their samples would leave the loss no density to grow it from).
    Differentiable in what ``sdf_fn`` / ``color_fn`` depend on (and ``beta`` if a tensor; not through where the
    fine samples are placed).
    """
    R = origins.shape[0]
    beta_f = float(beta.detach()) if isinstance(beta, torch.Tensor) else float(beta)  # where samples go: no gradient
    near, far, hit = ops.ray_sphere_intersect(origins, dirs, radius)
    ray_idx = torch.nonzero(hit).reshape(-1)
    t, pts = ops.search_samples(origins, dirs, ray_idx, near[ray_idx], far[ray_idx], int(n_samples))
    M = ray_idx.numel()
    step = (far[ray_idx] - near[ray_idx]) / max(1, n_samples - 1)                       # [M]
    keep = torch.ones(M, n_samples, dtype=torch.bool, device=origins.device)
    if grid is not None and M:
        margin = float(margin_betas) * beta_f
        keep = occupied(grid, pts.reshape(-1, 3), radius, margin).reshape(M, n_samples)
        if no_skip is not None:
            keep = keep | no_skip[ray_idx][:, None]
    coarse_evals = 0
    if n_fine > 0 and M:
        with torch.no_grad():  # where to sample: the coarse weights
            sig = torch.zeros(M, n_samples, dtype=t.dtype, device=t.device)
            sdf_c = _sdf_only(sdf_fn(pts[keep]))
            coarse_evals = int(sdf_c.shape[0])
            sig[keep] = laplace_density(sdf_c.reshape(-1), beta_f).to(t.dtype)
            dense = torch.stack([torch.arange(M, device=t.device) * n_samples,
                                 torch.full((M,), n_samples, device=t.device)], 1)    # every coarse sample
            dl = (step * dirs[ray_idx].norm(dim=-1))[:, None].expand(M, n_samples).reshape(-1)
            _, _, w = ops.composite(dense, sig.reshape(-1).contiguous(), dl.contiguous(), t.reshape(-1, 1))
            w = w.view(M, n_samples)
            trans = (1 - (torch.cumsum(w, 1) - w)).clamp_min(0)                       # before each sample
            # a sample's weight stands for the stretch around it, and the density's rise may lie in either
            # neighbour's half-step: each bin, centred on its sample, gets the largest weight of it and its two
            # neighbours (mip-NeRF's max blur) so that the fine samples cover the whole rise
            w = torch.maximum(w, torch.maximum(torch.nn.functional.pad(w[:, 1:], (0, 1)),
                                               torch.nn.functional.pad(w[:, :-1], (1, 0))))
            live = keep & (trans >= stop_transmittance)
            live = live | torch.nn.functional.pad(live[:, :-1], (1, 0))  # the bin where the ray becomes opaque
            floor = live.to(w.dtype) / live.sum(1, keepdim=True).clamp_min(1)
            pdf = torch.where(live, w, torch.zeros_like(w))
            pdf = pdf / pdf.sum(1, keepdim=True).clamp_min(1e-30) * (1 - pdf_floor) + pdf_floor * floor
            pdf = torch.where((pdf.sum(1, keepdim=True) > 0), pdf, torch.ones_like(pdf))  # nothing live (dropped below)
            t_f, _ = sample_pdf(t - 0.5 * step[:, None], step[:, None].expand(M, n_samples), pdf, int(n_fine))
            t_f = torch.where(live.any(1, keepdim=True), t_f, torch.full_like(t_f, float("inf")))  # all skipped
            # rendered: the live coarse samples (they cover empty space) and the fine ones, sorted along the ray;
            # each stands for the stretch to the next one, at most a coarse step (so that a gap left by skipped
            # samples is not filled with a kept sample's density)
            t_all = torch.cat([torch.where(live, t, torch.full_like(t, float("inf"))), t_f], 1).sort(1).values
            keep = torch.isfinite(t_all)
            t_next = torch.cat([t_all[:, 1:], torch.full_like(t_all[:, :1], float("inf"))], 1)
            d_all = torch.minimum(torch.where(torch.isfinite(t_next), t_next - t_all, step[:, None]),
                                  step[:, None].expand_as(t_all))
            d_all = torch.where(keep, d_all, torch.zeros_like(d_all))
            t_all = torch.where(keep, t_all, torch.zeros_like(t_all))
        n_per = t_all.shape[1]
        t = t_all
        pts = origins[ray_idx][:, None, :] + t[..., None] * dirs[ray_idx][:, None, :]
        deltas_dense = d_all * dirs[ray_idx].norm(dim=-1)[:, None]
    else:
        n_per = int(n_samples)
        deltas_dense = (step * dirs[ray_idx].norm(dim=-1))[:, None].expand(M, n_per)
    counts = keep.sum(1)
    packed = torch.stack([torch.cumsum(counts, 0) - counts, counts], 1).contiguous()
    x = pts[keep]                                                                     # [S,3], ray by ray
    ts = t[keep]
    deltas = deltas_dense[keep]
    vdirs = dirs[ray_idx][:, None, :].expand(M, n_per, 3)[keep]
    feat = None
    if with_normals or color_fn is not None:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            out = sdf_fn(xg)
            sdf, feat = out if isinstance(out, tuple) else (out, None)
            (grad,) = torch.autograd.grad(sdf.sum(), xg, create_graph=torch.is_grad_enabled())
    else:
        sdf, grad = _sdf_only(sdf_fn(x)), torch.zeros_like(x)
    sigma = laplace_density(sdf, beta)
    if color_fn is None:
        rgb = torch.ones_like(x)
    else:
        rgb = color_fn(x, grad, vdirs) if feat is None else color_fn(x, grad, vdirs, feat)
    values = torch.cat([rgb, ts[:, None], grad], dim=1).contiguous()
    out, opacity, _ = ops.composite(packed, sigma.contiguous(), deltas.contiguous(), values)
    full = origins.new_zeros(R, 7)
    full = full.index_put((ray_idx,), out)
    op = origins.new_zeros(R).index_put((ray_idx,), opacity)
    depth = torch.where(op > 0, full[:, 3] / op.clamp_min(1e-12), torch.zeros_like(op))
    return VolumeResult(rgb=full[:, :3], depth=depth, normal=full[:, 4:], opacity=op,
                        samples=int(x.shape[0]) + coarse_evals, samples_total=int(M * n_samples),
                        sample_gradients=grad)


def _sdf_only(out):
    """The SDF of an ``sdf_fn`` result: ``sdf`` or ``(sdf, feature)``."""
    return out[0] if isinstance(out, tuple) else out
