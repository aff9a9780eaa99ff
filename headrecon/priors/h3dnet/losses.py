"""Losses and point sampling of the prior's training (IGR / SAL-style, no signed distances needed).

For a batch of shapes with latents ``z_b`` and raw surface samples ``x_s`` (normals ``n_s`` when the scan has
them), with ``F`` the decoder:

* surface loss ``mean |F(x_s, z)|`` — the zero level set passes through the scan points;
* normal loss ``mean ||grad F(x_s, z) - n_s||`` (IGR; optional, weight 0 in the paper preset);
* eikonal loss ``mean (||grad F(x_v, z)|| - 1)^2`` on volume samples ``x_v``: scan points displaced by Gaussian
  offsets of a few scales (``near_sigmas``) plus a fraction drawn uniformly in the unit ball — this makes ``F`` a
  distance function away from the data without ever computing one;
* boundary loss ``mean relu(-F(x_b, z))`` on points ``x_b`` uniform on the sphere of radius ``boundary_radius``
  (1): outside the unit sphere is empty, so open scans (a neck cut) close inside it instead of running out to
  the domain boundary (not in the paper; ``boundary_weight=0`` disables it);
* latent loss ``latent_reg * ||z||^2`` (``latent_reg = 1 / sigma^2``), averaged over the shapes of the batch.

All point sampling is driven by an explicit ``torch.Generator`` seeded from (seed, epoch, shape index), so a
shape gets the same samples in a given epoch whichever process (DDP rank) draws them; this is what makes
resumed and distributed training reproducible.
"""
from __future__ import annotations

import torch

from ..sampling import sample_volume, shape_generator, uniform_ball
from .config import PriorConfig

__all__ = ["shape_generator", "sample_shape_points", "sample_volume", "uniform_ball", "prior_losses"]


def sample_shape_points(points: torch.Tensor, normals, cfg: PriorConfig, generator: torch.Generator):
    """Surface samples [P, 3], their normals [P, 3] (or None) and volume samples [V + B, 3] for one shape (the
    last ``B = cfg.boundary_points`` on the sphere of radius ``cfg.boundary_radius``)."""
    idx = torch.randint(len(points), (cfg.surface_points,), generator=generator).to(points.device)
    surf = points[idx]
    nrm = normals[idx] if normals is not None else None
    vol = sample_volume(points, cfg.volume_points, cfg.near_sigmas, cfg.uniform_fraction, generator)
    if cfg.boundary_points:
        d = torch.randn(cfg.boundary_points, 3, generator=generator, dtype=points.dtype)
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12) * cfg.boundary_radius
        vol = torch.cat([vol, d.to(points.device)], 0)
    return surf, nrm, vol


def prior_losses(sdf: torch.Tensor, grad: torch.Tensor, n_surface: int, normals: torch.Tensor | None,
                 normal_mask: torch.Tensor | None, z: torch.Tensor, cfg: PriorConfig, n_boundary: int = 0) -> dict:
    """Loss terms for a batch.

    Args:
        sdf: [B, P + V] decoder output on surface samples (first ``n_surface = P``) then volume samples, the
            last ``n_boundary`` of which are boundary samples (eikonal applies to them too).
        grad: [B, P + V, 3] spatial gradient of ``sdf`` (with graph).
        normals: [B, P, 3] scan normals (rows of shapes without normals are ignored) or None.
        normal_mask: [B] bool, shapes that have normals.
        z: [B, D] latents of the batch.
    Returns a dict with ``loss`` (weighted total) and the unweighted terms ``surface``, ``normal``,
    ``eikonal``, ``boundary``, ``latent`` (``||z||^2`` averaged over the batch).
    """
    P = int(n_surface)
    surface = sdf[:, :P].abs().mean()
    zero = sdf.new_zeros(())
    if cfg.normal_weight > 0 and normals is not None and normal_mask is not None and bool(normal_mask.any()):
        per = (grad[:, :P] - normals).norm(dim=-1).mean(dim=1)  # [B]
        m = normal_mask.to(per.dtype)
        normal = (per * m).sum() / m.sum()
    else:
        normal = zero
    g_vol = grad[:, P:] if grad.shape[1] > P else grad
    eikonal = (g_vol.norm(dim=-1) - 1.0).pow(2).mean()
    boundary = torch.relu(-sdf[:, -int(n_boundary):]).mean() if n_boundary else zero
    latent = z.pow(2).sum(dim=-1).mean()
    loss = (cfg.surface_weight * surface + cfg.normal_weight * normal + cfg.eikonal_weight * eikonal
            + cfg.boundary_weight * boundary + cfg.latent_reg * latent)
    return {"loss": loss, "surface": surface, "normal": normal, "eikonal": eikonal, "boundary": boundary,
            "latent": latent}
