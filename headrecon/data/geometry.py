"""Small point-set geometry shared by the data, prior and photo code: least-squares similarity (Umeyama).

Lives at the data level so that scene and shape generators (:mod:`headrecon.data.bust`) and the prior frame
(:mod:`headrecon.priors.normalization`, which re-exports it) use one implementation without an import cycle.
"""
from __future__ import annotations

import numpy as np

__all__ = ["umeyama", "apply_transform"]


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
