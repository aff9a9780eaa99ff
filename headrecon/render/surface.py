"""Differentiable ray/surface intersection (IDR, Yariv et al. 2020, eq. 3).

The tracer finds hits without autograd. ``surface_points`` re-attaches them to the graph:
    x_s = x - v / (n . v) * F(x)
with x, v and n = grad F(x) detached and F(x) evaluated with its graph, so gradients of x_s reach the SDF
parameters (first-order exact at the surface, where F(x) = 0) without differentiating through the tracer.
Camera gradients flow through ``origins``/``dirs`` into x = o + t v when those require grad.
"""
from __future__ import annotations

import torch


def sdf_gradient(sdf_fn, x: torch.Tensor) -> torch.Tensor:
    """grad F at x [N,3] without keeping a graph (used for the detached normal n)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        y = sdf_fn(xg).reshape(-1)
        (g,) = torch.autograd.grad(y.sum(), xg)
    return g.detach()


def surface_points(sdf_fn, origins: torch.Tensor, dirs: torch.Tensor, t: torch.Tensor,
                   normals: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Differentiable surface points for rays that hit.

    Args:
        sdf_fn: points [N,3] -> sdf [N] (with autograd, e.g. the geometry network).
        origins, dirs: [N,3] rays (may require grad, e.g. camera refinement); t: [N] hit parameters (detached).
        normals: optional [N,3] grad F at the hits (computed when None).
        eps: guard for grazing rays where |n . v| is tiny.
    Returns: x_s [N,3], equal to the hit (up to F(x)) with gradients w.r.t. the SDF parameters.
    """
    if origins.shape != dirs.shape or origins.dim() != 2 or origins.shape[1] != 3:
        raise ValueError(f"origins and dirs must both be [N,3], got {list(origins.shape)} and {list(dirs.shape)}")
    if t.shape != origins.shape[:1]:
        raise ValueError(f"t must be [N] with N={origins.shape[0]}, got {list(t.shape)}")
    t = t.detach()
    x_det = (origins.detach() + t[:, None] * dirs.detach())
    v = dirs.detach()
    n = sdf_gradient(sdf_fn, x_det) if normals is None else normals.detach()
    # IDR's formula x = c + t0 v - v F(c + t0 v) / (n . v): evaluated at the ray's own point so that a camera
    # being refined (origins / dirs with gradients) gets d x / d c = I - v n^T / (n . v)
    rays_grad = origins.requires_grad or dirs.requires_grad
    f = sdf_fn(origins + t[:, None] * dirs if rays_grad else x_det).reshape(-1)
    dot = (n * v).sum(-1)
    dot = torch.where(dot.abs() < eps, torch.where(dot < 0, -eps, eps) * torch.ones_like(dot), dot)
    if rays_grad:
        return origins + t[:, None] * dirs - (f / dot)[:, None] * v
    return origins + (t - f / dot)[:, None] * dirs
