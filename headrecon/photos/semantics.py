"""Head label maps from photos (``--method wang``'s semantic supervision where a scene has no ``semantic/``).

No face-parsing network that ships its weights inside a wheel and runs offline was found, so the maps come from
what we already detect: MediaPipe's face-mesh landmarks and the person mask. In each image with a face:

* inside the face outline (the convex hull of the face-oval points): ``skin``; within it the convex hulls of each
  eyebrow's, eye's and the outer lips' points: ``brows``, ``eyes``, ``lips``;
* outside the outline but inside the mask, measured along the face's up direction (chin -> forehead point):
  above the top of the brows by more than ``hair_margin`` of the face height (chin to forehead point): ``hair``
  (hair or scalp); below the chin: ``neck``; everything in between (ears, temples, hair beside the face, a cheek
  past the outline): :data:`IGNORE_LABEL`, no loss. ``hair_margin`` 0.3 was chosen on a rendered held-out head
  with hair that no evaluation uses (ICT 100005, medium hair): pixels called hair were hair on 77 % (margin 0.05),
  81 % (0.15) and 100 % (0.3) of them, with 85, 82 and 75 % of the head's pixels labelled;
* outside the mask: ``background``.

A view without a detected face gets :data:`IGNORE_LABEL` over its mask (its labels are unknown). The classes are
those of :mod:`headrecon.data.semantics`; ``ears`` never appears in photo maps.
"""
from __future__ import annotations

import numpy as np

from ..data.semantics import IGNORE_LABEL, SEMANTIC_CLASSES

__all__ = ["labels_from_landmarks", "photo_label_maps", "PART_POINTS"]

_L = {n: i for i, n in enumerate(SEMANTIC_CLASSES)}
CHIN, FOREHEAD = 152, 10   # face-mesh points at the bottom of the chin and the top of the forehead (midline)


def _part_points() -> dict:
    from mediapipe.python.solutions import face_mesh_connections as C

    def pts(edges):
        return tuple(sorted({i for e in edges for i in e}))

    outer_lips = pts(C.FACEMESH_LIPS)  # outer and inner contours: their hull is the outer lips
    return {"skin": pts(C.FACEMESH_FACE_OVAL),
            "brows": (pts(C.FACEMESH_LEFT_EYEBROW), pts(C.FACEMESH_RIGHT_EYEBROW)),
            "eyes": (pts(C.FACEMESH_LEFT_EYE), pts(C.FACEMESH_RIGHT_EYE)),
            "lips": (outer_lips,)}


PART_POINTS = None  # filled on first use (needs MediaPipe's connection tables)


def _hull_mask(points: np.ndarray, shape) -> np.ndarray:
    from scipy.spatial import ConvexHull, QhullError
    from skimage.draw import polygon

    m = np.zeros(shape, dtype=bool)
    try:
        h = ConvexHull(points)
    except (QhullError, ValueError):
        return m
    v = points[h.vertices]
    rr, cc = polygon(v[:, 1] - 0.5, v[:, 0] - 0.5, shape)  # pixel (i, j) covers [j, j+1) x [i, i+1)
    m[rr, cc] = True
    return m


def labels_from_landmarks(points: np.ndarray, mask: np.ndarray, hair_margin: float = 0.3) -> np.ndarray:
    """The label map [H, W] uint8 of one image from its face-mesh ``points`` [478, 2] (pixels ``(u, v)``) and
    its person ``mask`` [H, W] (see the module docstring)."""
    global PART_POINTS
    if PART_POINTS is None:
        PART_POINTS = _part_points()
    mask = np.asarray(mask, dtype=bool)
    H, W = mask.shape
    P = np.asarray(points, dtype=np.float64)
    out = np.where(mask, IGNORE_LABEL, _L["background"]).astype(np.uint8)
    face = _hull_mask(P[list(PART_POINTS["skin"])], (H, W)) & mask
    up = P[FOREHEAD] - P[CHIN]
    height = float(np.linalg.norm(up))
    if height < 1.0:
        return out
    up /= height
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    s = (jj - P[CHIN, 0]) * up[0] + (ii - P[CHIN, 1]) * up[1]          # height above the chin along the face's up
    brow_top = max(float(((P[list(idx)] - P[CHIN]) @ up).max()) for idx in PART_POINTS["brows"])
    outside = mask & ~face
    out[outside & (s > brow_top + hair_margin * height)] = _L["hair"]
    out[outside & (s < 0.0)] = _L["neck"]
    out[face] = _L["skin"]
    for part in ("brows", "eyes", "lips"):
        for idx in PART_POINTS[part]:
            out[_hull_mask(P[list(idx)], (H, W)) & face] = _L[part]
    return out


def photo_label_maps(images, masks, detections=None) -> tuple:
    """``(label maps, faces found)`` for photos with their masks; ``detections`` as
    :func:`headrecon.photos.detect.detect_landmarks` returns them (detected here when None)."""
    from .detect import detect_landmarks

    if detections is None:
        detections = detect_landmarks(images)
    maps = []
    for det, m in zip(detections, masks):
        m = np.asarray(m, dtype=bool)
        maps.append(np.where(m, IGNORE_LABEL, 0).astype(np.uint8) if det is None else labels_from_landmarks(det.points, m))
    return maps, [d is not None for d in detections]
