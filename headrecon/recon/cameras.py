"""Camera refinement during a fit (``--refine-cameras``): one rigid correction per view, applied to its rays.

Each view ``k`` has a rotation vector ``omega_k`` and a translation ``tau_k`` (unit-sphere frame; zero at the
start). A ray ``(o, d)`` of view ``k`` becomes ``(o + tau_k, R(omega_k) d)``: the camera turns about its own centre
and moves, as in IDR's camera training. The corrections train with their own Adam learning rate
(``camera_lr``) after the first ``camera_start`` share of the run (the surface must exist before it can pull the
cameras). Gradients reach them through the differentiable surface points (the implicit-function formula, which
includes the ray's origin and direction: :func:`headrecon.render.surface_points`), the silhouette loss's
minimum-SDF points and the rendering network's view direction.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.camera import Camera
from ..models.pose import so3_exp

__all__ = ["CameraRefinement", "so3_exp"]


class CameraRefinement(nn.Module):
    """Per-view rigid corrections (see the module docstring)."""

    def __init__(self, n_views: int):
        super().__init__()
        self.rotation = nn.Parameter(torch.zeros(int(n_views), 3))
        self.translation = nn.Parameter(torch.zeros(int(n_views), 3))

    def forward(self, origins: torch.Tensor, dirs: torch.Tensor, view: torch.Tensor):
        R = so3_exp(self.rotation)[view]  # one matrix exponential per view, not per ray
        return origins + self.translation[view], (R @ dirs.unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def corrected(self, cameras_unit) -> list:
        """The corrected unit-frame :class:`Camera` of each view."""
        out = []
        for k, cam in enumerate(cameras_unit):
            R = so3_exp(self.rotation[k].detach().double().cpu()).numpy()
            c = cam.center + self.translation[k].detach().double().cpu().numpy()
            Rw = cam.R @ R.T
            out.append(Camera(K=cam.K.copy(), R=Rw, t=-Rw @ c, width=cam.width, height=cam.height,
                              meta=dict(cam.meta)))
        return out

    @torch.no_grad()
    def summary(self, mm_per_unit: float) -> dict:
        """Size of each view's correction: rotation (degrees) and translation (mm)."""
        rot = np.degrees(self.rotation.detach().double().norm(dim=-1).cpu().numpy())
        tr = self.translation.detach().double().norm(dim=-1).cpu().numpy() * float(mm_per_unit)
        return {"rotation_deg": [round(float(x), 4) for x in rot], "translation_mm": [round(float(x), 3) for x in tr]}
