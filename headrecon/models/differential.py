"""Differential geometry of a neural SDF by autograd: Hessians and principal directions.

:func:`principal_direction` is the 3D hair orientation of Wang et al. (the direction of least curvature on the
surface): the eigenvector of the SDF's Hessian with the second-smallest absolute eigenvalue. For an exact SDF the
normal is an eigenvector with eigenvalue 0, so this is the tangent eigenvector with the smallest |eigenvalue|;
we compute it in the tangent plane (the 2 x 2 Hessian in a basis orthogonal to the gradient), which gives the same
direction for an exact SDF and stays well defined when a tangent direction also has zero curvature (a cylinder's
axis), where "second smallest" would tie with the normal.
"""
from __future__ import annotations

import torch

__all__ = ["sdf_hessian", "principal_direction"]


def sdf_hessian(sdf_fn, x: torch.Tensor, create_graph: bool = False):
    """``(gradient [N,3], Hessian [N,3,3])`` of ``sdf_fn(points [N,3]) -> [N]`` at ``x`` (double backward)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True) if not x.requires_grad else x
        f = sdf_fn(x)
        (g,) = torch.autograd.grad(f.sum(), x, create_graph=True)
        rows = [torch.autograd.grad(g[:, k].sum(), x, create_graph=create_graph, retain_graph=True)[0]
                for k in range(3)]
    H = torch.stack(rows, dim=1)
    return (g if create_graph else g.detach()), H


def _tangent_basis(n: torch.Tensor):
    """Two unit vectors [N,3] orthogonal to the unit normals ``n`` and to each other."""
    a = torch.where((n[:, :1].abs() < 0.9), torch.tensor([1.0, 0.0, 0.0], dtype=n.dtype, device=n.device),
                    torch.tensor([0.0, 1.0, 0.0], dtype=n.dtype, device=n.device))
    t1 = torch.nn.functional.normalize(a - (a * n).sum(-1, keepdim=True) * n, dim=-1)
    t2 = torch.cross(n, t1, dim=-1)
    return t1, t2


def principal_direction(sdf_fn, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Unit direction [N,3] of least absolute curvature in the tangent plane at ``x`` (module docstring); its
    sign is arbitrary. Differentiable in the SDF's parameters with ``create_graph``."""
    g, H = sdf_hessian(sdf_fn, x, create_graph=create_graph)
    n = torch.nn.functional.normalize(g, dim=-1)
    t1, t2 = _tangent_basis(n)
    T = torch.stack([t1, t2], dim=-1)                       # [N,3,2]
    B = T.transpose(1, 2) @ H @ T                           # [N,2,2]
    B = 0.5 * (B + B.transpose(1, 2))
    evals, evecs = torch.linalg.eigh(B)                     # ascending eigenvalues
    k = evals.abs().argmin(dim=-1)                          # least |curvature|
    v = torch.gather(evecs, 2, k[:, None, None].expand(-1, 2, 1))[..., 0]   # [N,2]
    return torch.nn.functional.normalize((T @ v[..., None])[..., 0], dim=-1)
