"""Evaluation regions of a ground-truth head mesh: the H3DS ``regions/face.txt`` (face, ears and neck) for
scenes that do not ship one (``headrecon-make-scene`` writes it from the six landmarks)."""
from __future__ import annotations

import numpy as np

__all__ = ["h3ds_face_region", "landmark_frame", "FACE_REGION_LIMITS_MM"]

# (top above the eye line, bottom below it, how far behind the eyes the face/ears part reaches), in mm
FACE_REGION_LIMITS_MM = (45.0, 200.0, 120.0)


def h3ds_face_region(vertices, landmarks) -> np.ndarray:
    """Vertex indices of an H3DS-style ``regions/face.txt`` (face, ears and neck; the scalp and the back of the
    skull left out) of a head mesh in mm, from its six landmarks (name -> vertex index or point).

    Frame: origin the eyes' midpoint, ``x`` along left_eye - right_eye, ``up`` from the mouth corners' midpoint to the eyes' midpoint
    (orthogonalised), ``front`` = x cross up (towards the nose tip). With ``(top, bottom, back) =``
    :data:`FACE_REGION_LIMITS_MM` a vertex belongs to the region when its height above the eye line ``h`` is in
    ``[-bottom, top]`` and either it lies at most ``back`` mm behind the eyes (face, forehead, ears) or below
    the mouth line (the neck all round). A bust below ``-bottom`` is left out.
    """
    V = np.asarray(vertices, dtype=np.float64)
    eyes, x, up, front = landmark_frame(V, landmarks)
    mouth = _landmark_point(V, landmarks, "right_lips") * 0.5 + _landmark_point(V, landmarks, "left_lips") * 0.5
    top, bottom, back = FACE_REGION_LIMITS_MM
    d = V - eyes
    h, f = d @ up, d @ front
    mouth_h = (mouth - eyes) @ up
    keep = (h <= top) & (h >= -bottom) & ((f >= -back) | (h <= mouth_h))
    return np.nonzero(keep)[0]


def _landmark_point(V, landmarks, name) -> np.ndarray:
    v = np.asarray(landmarks[name])
    return V[int(v)] if v.ndim == 0 else v.astype(np.float64).reshape(3)


def landmark_frame(vertices, landmarks):
    """``(eyes, x, up, front)`` of a head mesh in mm from its landmarks (name -> vertex index or point): origin
    the eyes' midpoint, ``x`` along left_eye - right_eye, ``up`` from the mouth corners' midpoint to the eyes'
    midpoint (orthogonalised), ``front`` = x cross up, turned towards the nose tip."""
    V = np.asarray(vertices, dtype=np.float64)
    need = ("right_eye", "left_eye", "nose_tip", "right_lips", "left_lips")
    missing = [n for n in need if n not in (landmarks or {})]
    if missing:
        raise ValueError(f"the head frame needs the landmarks {list(need)}; missing {missing}")

    def point(name):
        return _landmark_point(V, landmarks, name)

    eyes = 0.5 * (point("right_eye") + point("left_eye"))
    mouth = 0.5 * (point("right_lips") + point("left_lips"))
    x = point("left_eye") - point("right_eye")
    x /= np.linalg.norm(x)
    up = eyes - mouth
    up -= x * (up @ x)
    up /= np.linalg.norm(up)
    front = np.cross(x, up)
    if (point("nose_tip") - eyes) @ front < 0:
        front = -front
    return eyes, x, up, front
