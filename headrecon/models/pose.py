"""A learnable rigid correction of a fixed frame: the prior's placement refined from the photos (``--frame-refine``).

A prior method places its prior in the scene with a similarity estimated from the photos
(:func:`headrecon.photos.frame.scene_prior_frame`): face landmarks, a morphable-model fit. Its error (about 10-25 mm
and a few degrees on a real scan seen from 3-4 views) is an error of the whole reconstructed head that neither the
latent nor a detail field can undo cheaply. :class:`RigidCorrection` adds a rotation vector ``omega`` and a
translation ``t`` (prior units, zero at the start) after the fixed map: ``x_p -> R(omega) x_p + t``, the rotation
about the prior frame's origin. The prior geometries (:class:`headrecon.priors.h3dnet.model.LatentGeometry`,
:class:`headrecon.priors.sira.model.SiraGeometry`) apply it when enabled; the mask and colour losses train it through
their SDF like any other parameter; both take :class:`FramedPrior` for the fixed map and its correction.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

__all__ = ["FramedPrior", "RigidCorrection", "so3_exp"]


def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of rotation vectors [..., 3] (matrix exponential of the skew matrix)."""
    z = torch.zeros_like(omega[..., 0])
    K = torch.stack([torch.stack([z, -omega[..., 2], omega[..., 1]], -1),
                     torch.stack([omega[..., 2], z, -omega[..., 0]], -1),
                     torch.stack([-omega[..., 1], omega[..., 0], z], -1)], -2)
    return torch.linalg.matrix_exp(K)


class RigidCorrection(nn.Module):
    """``x -> R(rotation) x + translation`` with both parameters zero at the start (identity)."""

    def __init__(self):
        super().__init__()
        self.rotation = nn.Parameter(torch.zeros(3))
        self.translation = nn.Parameter(torch.zeros(3))

    def matrix(self) -> torch.Tensor:
        """The current rotation [3, 3]."""
        return so3_exp(self.rotation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        R = self.matrix().to(x.dtype)
        return x @ R.T + self.translation.to(x.dtype)

    @torch.no_grad()
    def summary(self, mm_per_unit: float) -> dict:
        """The correction's size: rotation (degrees), translation (mm) and the rotation vector / translation."""
        w = self.rotation.detach().double().cpu()
        t = self.translation.detach().double().cpu()
        return {"rotation_deg": round(float(np.degrees(float(w.norm()))), 4),
                "translation_mm": round(float(t.norm()) * float(mm_per_unit), 3),
                "rotation_vector": [round(float(v), 6) for v in w],
                "translation_unit": [round(float(v), 6) for v in t]}


class FramedPrior:
    """Mixin for a prior geometry placed in the scene by a fixed similarity (buffers ``frame_A`` [3, 3], ``frame_b``
    [3]: ``x_p = A x + b``) with an optional :class:`RigidCorrection` after it (``--frame-refine``)."""

    pose: Optional[RigidCorrection]  # set to None by the geometry's __init__ (a class default would hide the module)

    def enable_pose_refinement(self) -> None:
        """Add a trainable rigid correction after the fixed frame (identity at the start)."""
        if self.pose is None:
            self.pose = RigidCorrection().to(self.frame_A.device)

    def pose_parameters(self) -> list:
        """The correction's parameters (none until :meth:`enable_pose_refinement`)."""
        return [] if self.pose is None else list(self.pose.parameters())

    def _framed(self, x: torch.Tensor) -> torch.Tensor:
        """Scene points [..., 3] to prior coordinates: the fixed frame, then the correction if enabled."""
        xp = x @ self.frame_A.to(x.dtype).T + self.frame_b.to(x.dtype)
        return xp if self.pose is None else self.pose(xp)

    def to_prior(self, x: torch.Tensor) -> torch.Tensor:
        """Scene points [..., 3] (the scene's unit frame) to prior coordinates (:meth:`_framed`)."""
        return self._framed(x)

    @torch.no_grad()
    def from_prior(self, xp: torch.Tensor) -> torch.Tensor:
        """Prior coordinates [N, 3] to scene points: the inverse of :meth:`_framed` (correction included)."""
        xp = xp.to(self.frame_A.dtype)
        if self.pose is not None:  # x_c = R x_p + t  ->  x_p = R^T (x_c - t)
            xp = (xp - self.pose.translation.to(xp.dtype)) @ self.pose.matrix().to(xp.dtype)
        return torch.linalg.solve(self.frame_A, (xp - self.frame_b).T).T
