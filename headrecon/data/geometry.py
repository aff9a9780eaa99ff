"""Small geometry shared by the data, prior, photo, method and evaluation code: least-squares similarity
(Umeyama), the faces of a mesh that can be seen from outside, the points that given cameras see.

Lives at the data level so that scene and shape generators (:mod:`headrecon.data.bust`) and the prior frame
(:mod:`headrecon.priors.normalization`, which re-exports it) use one implementation without an import cycle.
"""
from __future__ import annotations

import numpy as np

__all__ = ["umeyama", "apply_transform", "outer_faces", "seen_by_any", "unseen_surface_points"]


def umeyama(src, dst, weights=None, scale: bool = False) -> np.ndarray:
    """4x4 similarity (rigid without ``scale``) minimising ``sum w_i |T src_i - dst_i|^2`` over points [N, 3]
    (least squares, Umeyama, no reflection)."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    ca, cb = w @ src, w @ dst
    A0, B0 = src - ca, dst - cb
    U, S, Vt = np.linalg.svd((B0 * w[:, None]).T @ A0)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt)) or 1.0
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (w @ (A0 ** 2).sum(1))) if scale else 1.0
    T = np.eye(4)
    T[:3, :3] = s * R
    T[:3, 3] = cb - s * R @ ca
    return T


def apply_transform(T, points) -> np.ndarray:
    """Points [N, 3] mapped by the 4x4 matrix ``T`` (affine part)."""
    p = np.asarray(points, dtype=np.float64)
    return p @ np.asarray(T)[:3, :3].T + np.asarray(T)[:3, 3]


def keep_faces(faces, keep, landmarks: dict | None = None):
    """The faces ``faces[keep]`` re-indexed onto the vertices they use: (faces [K, 3], used vertex indices [U] (the
    old index of each new vertex, ascending), ``landmarks`` (name -> vertex index) re-indexed, or None when one
    of them lies on a dropped vertex (the caller says which file or mesh that was))."""
    F = np.asarray(faces)[np.asarray(keep, dtype=bool)]
    used = np.unique(F)
    new = np.full(int(np.max(faces)) + 1 if len(faces) else 0, -1, dtype=np.int64)
    new[used] = np.arange(len(used))
    lm = None
    if landmarks is not None and all(int(v) < len(new) and new[int(v)] >= 0 for v in landmarks.values()):
        lm = {k: int(new[int(v)]) for k, v in landmarks.items()}
    return new[F], used, lm


def _intersector(mesh):
    """Embree ray casting for ``mesh`` when installed, else trimesh's slower intersector (same hits)."""
    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector
        return RayMeshIntersector(mesh)
    except Exception:
        from trimesh.ray.ray_triangle import RayMeshIntersector
        return RayMeshIntersector(mesh)


def outer_faces(mesh, n_directions: int = 256, distance: float | None = None) -> np.ndarray:
    """Bool mask [F] of the faces of ``mesh`` that can be seen from outside: a ray from far away in one of
    ``n_directions`` directions (a Fibonacci sphere) towards the face's centroid hits that face first. Interior
    surfaces (a scan's mouth bag, eye sockets behind closed lids) are never seen by any camera, so they are not
    part of what a reconstruction from photographs can be compared with."""
    F = np.asarray(mesh.faces)
    C = np.asarray(mesh.triangles_center, dtype=np.float64)
    N = np.asarray(mesh.face_normals, dtype=np.float64)
    dist = float(distance or 4.0 * np.ptp(np.asarray(mesh.vertices), axis=0).max())
    i = np.arange(n_directions) + 0.5
    phi = np.arccos(1.0 - 2.0 * i / n_directions)
    th = np.pi * (1.0 + 5.0 ** 0.5) * i
    D = np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1)
    inter = _intersector(mesh)
    seen = np.zeros(len(F), dtype=bool)
    for d in D:
        todo = np.nonzero(~seen & (N @ d > 0.0))[0]  # only faces turned towards that side can be seen from it
        if len(todo) == 0:
            continue
        o = C[todo] + d * dist
        tri = inter.intersects_first(o, np.broadcast_to(-d, o.shape).copy())
        seen[todo[tri == todo]] = True
    return seen


def seen_by_any(mesh, points, cameras, normals=None, max_angle_deg: float = 90.0, tol: float = 1e-3,
                in_image: bool = True) -> np.ndarray:
    """Bool ``[N]``: whether any of ``cameras`` (:class:`headrecon.data.Camera`, in ``mesh``'s frame) sees the
    point ``points[i]`` on ``mesh``: the first hit of the ray from the camera centre towards it lies within ``tol``
    of it (like DTU's observability masks); with ``in_image``, it projects inside the camera's image; with
    ``normals``, its normal is within ``max_angle_deg`` of the direction to the camera."""
    P = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    N = None if normals is None else np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    cos_min = float(np.cos(np.radians(max_angle_deg)))
    inter = _intersector(mesh)
    seen = np.zeros(len(P), dtype=bool)
    for cam in cameras:
        c = np.asarray(cam.center, dtype=np.float64)
        to_cam = c - P
        dist = np.linalg.norm(to_cam, axis=1)
        ok = ~seen
        if in_image:
            pc = P @ np.asarray(cam.R, np.float64).T + np.asarray(cam.t, np.float64)
            z = pc[:, 2]
            uv = (pc @ np.asarray(cam.K, np.float64).T)[:, :2] / np.where(np.abs(z) > 1e-12, z, 1e-12)[:, None]
            ok &= (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        if N is not None:
            ok &= (N * to_cam).sum(1) > cos_min * dist
        cand = np.nonzero(ok)[0]
        if len(cand) == 0:
            continue
        dirs = -to_cam[cand] / np.maximum(dist[cand], 1e-12)[:, None]
        hits, ray_idx, _ = inter.intersects_location(np.repeat(c[None], len(cand), 0), dirs, multiple_hits=False)
        first = np.full(len(cand), np.inf)
        first[ray_idx] = np.linalg.norm(hits - c, axis=1)
        seen[cand[first >= dist[cand] - tol]] = True
    return seen


def unseen_surface_points(mesh, cameras, n: int, seed: int = 0, samples: int = 20000,
                          max_angle_deg: float = 90.0, tol: float = 1e-3) -> np.ndarray:
    """``n`` points [n, 3] drawn (seeded, with repetition when fewer) among ``samples`` area-uniform points of
    ``mesh``'s surface that no camera sees (:func:`seen_by_any`: in its image, facing it, not hidden); ``[0, 3]``
    when every sample is seen. The prior methods' ``detail_unseen_weight`` holds their detail field there."""
    import trimesh

    rng = np.random.default_rng(int(seed))
    pts, face = trimesh.sample.sample_surface(mesh, int(samples), seed=int(seed))
    normals = np.asarray(mesh.face_normals)[face]
    unseen = pts[~seen_by_any(mesh, pts, cameras, normals=normals, max_angle_deg=max_angle_deg, tol=tol)]
    if len(unseen) == 0:
        return np.zeros((0, 3))
    return unseen[rng.choice(len(unseen), size=int(n), replace=len(unseen) < n)]
