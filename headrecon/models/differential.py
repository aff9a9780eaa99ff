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


def _tangent_hessian(sdf_fn, x, create_graph):
    """``(tangent basis T [N,3,2], a, b, c)``: the Hessian in the tangent plane ``[[a, b], [b, c]]``."""
    g, H = sdf_hessian(sdf_fn, x, create_graph=create_graph)
    n = torch.nn.functional.normalize(g, dim=-1)
    t1, t2 = _tangent_basis(n)
    T = torch.stack([t1, t2], dim=-1)                       # [N,3,2]
    B = T.transpose(1, 2) @ H @ T                           # [N,2,2]
    return T, B[:, 0, 0], 0.5 * (B[:, 0, 1] + B[:, 1, 0]), B[:, 1, 1]


def principal_direction(sdf_fn, x: torch.Tensor, create_graph: bool = False, return_weight: bool = False,
                        eps: float = 0.1):
    """Unit direction [N,3] of least absolute curvature in the tangent plane at ``x`` (module docstring); its
    sign is arbitrary. Differentiable in the SDF's parameters with ``create_graph``.

    The 2 x 2 tangent Hessian ``[[a, b], [b, c]]`` is diagonalised in closed form: its larger eigenvalue's
    eigenvector lies at the angle ``phi = atan2(2b, a - c) / 2`` in the tangent basis, the other one at ``phi +
    pi/2``; the one of smaller ``|eigenvalue|`` is the second exactly when ``a + c >= 0``. Where the two curvatures
    are equal (an umbilic point: a sphere, a plane) the direction is undefined and the angle's derivative grows as
    ``1 / |u|``, ``u = (a - c, 2b)``. With ``return_weight`` it also returns the anisotropy weight ``|u|^2 /
    (|u|^2 + (eps (|a| + |c|))^2 + 1e-12)`` [N] (0 at umbilic points, near 1 where the direction is well defined),
    without gradient: a loss multiplied by it has bounded gradients, and cannot be lowered by making the curvature
    isotropic (a weight with gradient rewarded exactly that: the fitted head grew bumps).
    """
    T, a, b, c = _tangent_hessian(sdf_fn, x, create_graph)
    u0, u1 = a - c, 2.0 * b
    flat = (u0 * u0 + u1 * u1) < 1e-24  # atan2's gradient at (0, 0) is NaN: any angle there, with no gradient
    phi = 0.5 * torch.atan2(torch.where(flat, torch.zeros_like(u1), u1), torch.where(flat, torch.ones_like(u0), u0))
    phi = phi + torch.where(a + c >= 0, 0.5 * torch.pi, 0.0)
    v = torch.stack([torch.cos(phi), torch.sin(phi)], dim=-1)
    d = torch.nn.functional.normalize((T @ v[..., None])[..., 0], dim=-1)
    if not return_weight:
        return d
    u2 = (u0 * u0 + u1 * u1).detach()
    scale = (eps * (a.abs() + c.abs())).detach()
    return d, u2 / (u2 + scale * scale + 1e-12)
