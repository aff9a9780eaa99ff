"""Which parts of a surface no training camera sees (``--detail-unseen-weight``).

:func:`unseen_surface_points` samples a mesh's surface (area-uniform, seeded) and keeps the points that no camera
sees: a camera sees a point when the point projects inside its image, faces it (the surface normal makes less than
``max_angle_deg`` with the direction to the camera) and is the first surface its ray meets (trimesh ray casting;
Embree when installed). The prior methods use it once, when their second phase starts, to keep their detail field
at zero where no photo shows the head: there the prior's shape is all the evidence there is.
"""
from __future__ import annotations

import numpy as np
import trimesh

__all__ = ["seen_by_any", "unseen_surface_points"]


def seen_by_any(mesh: trimesh.Trimesh, points: np.ndarray, normals: np.ndarray, cameras,
                max_angle_deg: float = 90.0, tol: float = 1e-3) -> np.ndarray:
    """``[N]`` bool: whether any of ``cameras`` (:class:`headrecon.data.Camera`, in ``mesh``'s frame) sees the
    surface point ``points[i]`` (normal ``normals[i]``, on ``mesh``): inside the image, facing the camera within
    ``max_angle_deg`` and not hidden (the camera's ray towards it meets no surface more than ``tol`` before it)."""
    P = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    N = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    seen = np.zeros(len(P), dtype=bool)
    cos_min = float(np.cos(np.radians(max_angle_deg)))
    for cam in cameras:
        R, t, K = np.asarray(cam.R, np.float64), np.asarray(cam.t, np.float64), np.asarray(cam.K, np.float64)
        centre = -R.T @ t
        pc = P @ R.T + t
        z = pc[:, 2]
        uv = (pc @ K.T)[:, :2] / np.where(np.abs(z) > 1e-12, z, 1e-12)[:, None]
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        to_cam = centre - P
        dist = np.linalg.norm(to_cam, axis=1)
        facing = (N * to_cam).sum(1) > cos_min * dist
        cand = np.nonzero(inside & facing & ~seen)[0]
        if len(cand) == 0:
            continue
        dirs = -to_cam[cand] / dist[cand, None]
        hits, ray_idx, _ = mesh.ray.intersects_location(np.repeat(centre[None], len(cand), 0), dirs,
                                                        multiple_hits=False)
        first = np.full(len(cand), np.inf)
        first[ray_idx] = np.linalg.norm(hits - centre, axis=1)
        seen[cand[first >= dist[cand] - tol]] = True
    return seen


def unseen_surface_points(mesh: trimesh.Trimesh, cameras, n: int, seed: int = 0, samples: int = 20000,
                          max_angle_deg: float = 90.0, tol: float = 1e-3) -> np.ndarray:
    """``n`` points [n, 3] drawn (seeded, with repetition when fewer) among ``samples`` area-uniform points of
    ``mesh``'s surface that no camera sees (:func:`seen_by_any`); ``[0, 3]`` when every sample is seen."""
    rng = np.random.default_rng(int(seed))
    pts, face = trimesh.sample.sample_surface(mesh, int(samples), seed=int(seed))
    normals = np.asarray(mesh.face_normals)[face]
    unseen = pts[~seen_by_any(mesh, pts, normals, cameras, max_angle_deg=max_angle_deg, tol=tol)]
    if len(unseen) == 0:
        return np.zeros((0, 3))
    return unseen[rng.choice(len(unseen), size=int(n), replace=len(unseen) < n)]
