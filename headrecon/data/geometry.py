"""Small geometry shared by the data, prior and photo code: least-squares similarity (Umeyama), the faces of a
mesh that can be seen from outside.

Lives at the data level so that scene and shape generators (:mod:`headrecon.data.bust`) and the prior frame
(:mod:`headrecon.priors.normalization`, which re-exports it) use one implementation without an import cycle.
"""
from __future__ import annotations

import numpy as np

__all__ = ["umeyama", "apply_transform", "outer_faces"]


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


def outer_faces(mesh, n_directions: int = 256, distance: float | None = None) -> np.ndarray:
    """Bool mask [F] of the faces of ``mesh`` that can be seen from outside: a ray from far away in one of
    ``n_directions`` directions (a Fibonacci sphere) towards the face's centroid hits that face first. Interior
    surfaces (a scan's mouth bag, eye sockets behind closed lids) are never seen by any camera, so they are not
    part of what a reconstruction from photographs can be compared with."""
    import trimesh

    F = np.asarray(mesh.faces)
    C = np.asarray(mesh.triangles_center, dtype=np.float64)
    N = np.asarray(mesh.face_normals, dtype=np.float64)
    dist = float(distance or 4.0 * np.ptp(np.asarray(mesh.vertices), axis=0).max())
    i = np.arange(n_directions) + 0.5
    phi = np.arccos(1.0 - 2.0 * i / n_directions)
    th = np.pi * (1.0 + 5.0 ** 0.5) * i
    D = np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1)
    try:
        inter = trimesh.ray.ray_pyembree.RayMeshIntersector(mesh)
    except Exception:  # no embree: trimesh's slower intersector
        inter = mesh.ray
    seen = np.zeros(len(F), dtype=bool)
    for d in D:
        todo = np.nonzero(~seen & (N @ d > 0.0))[0]  # only faces turned towards that side can be seen from it
        if len(todo) == 0:
            continue
        o = C[todo] + d * dist
        tri = inter.intersects_first(o, np.broadcast_to(-d, o.shape).copy())
        seen[todo[tri == todo]] = True
    return seen
