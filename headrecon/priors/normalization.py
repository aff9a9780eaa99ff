"""The prior's coordinate frame: a fixed similarity between ICT-FaceKit millimetres and the unit sphere.

The prior lives in the same **unit-sphere frame** as the reconstruction (IDR / H3D-Net normalise every scene
into the unit sphere with a ``scale_mat`` that maps unit coordinates to scene millimetres). For the prior that
map is *the same for every head* (so head size and position are part of what the prior learns):

    x_mm = MM_PER_UNIT * x_unit + CENTER_MM          (ICT model frame: +Y up, +Z out of the face, +X = left)

with ``CENTER_MM = (0, -24, 19.3)`` (the bounding-box centre of the neutral ICT head, neck included) and
``MM_PER_UNIT = 250``. A typical ICT head (seeds clipped at 2.5 sigma) then has its farthest vertex at radius
~0.79 (mean) and <= 0.92 (max over sampled heads), neck included, so it fits in the unit sphere with margin.

The frame is stored in every checkpoint (:class:`Normalization`), together with the six H3DS landmarks of the
neutral ICT head in that frame, so that inference can map mm <-> unit and so that a user's head (mesh or
landmarks in mm, any pose) can be aligned with the prior: :func:`prior_normalization` returns the 4x4
``scale_mat`` (prior unit frame -> user's mm), which a reconstruction can use in place of its scene's
``scale_mat`` (see :meth:`headrecon.priors.h3dnet.ShapePrior.geometry_network` for composing the two frames instead).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.geometry import umeyama

__all__ = ["CENTER_MM", "MM_PER_UNIT", "BUST_CENTER_MM", "BUST_MM_PER_UNIT", "bust_normalization",
           "ICT_MEAN_LANDMARKS_MM", "Normalization", "prior_normalization",
           "similarity_from_landmarks", "umeyama"]

CENTER_MM = (0.0, -24.0, 19.3)
MM_PER_UNIT = 250.0
# The frame of priors trained on busts (head, neck, shoulders, upper chest; :mod:`headrecon.data.bust`): centred
# lower and 1.44x larger, so that shoulders up to about 570 mm wide and 260 mm below the mouth fit in the unit
# sphere (the widest training busts reach radius ~0.98; scan points beyond 0.98 are dropped in training).
BUST_CENTER_MM = (0.0, -65.0, 0.0)
BUST_MM_PER_UNIT = 360.0
# The six H3DS landmarks of the neutral ICT-FaceKit head (mm, ICT frame): inner eye corners, nose tip, nose
# base, mouth corners. Six numbers per point derived from the MIT-licensed ICT-FaceKit model.
ICT_MEAN_LANDMARKS_MM = {
    "right_eye": (-16.918, 32.690, 93.205),
    "left_eye": (16.918, 32.690, 93.205),
    "nose_tip": (0.0, -4.538, 128.425),
    "nose_base": (0.0, -10.882, 116.331),
    "right_lips": (-23.484, -33.921, 103.733),
    "left_lips": (22.731, -33.444, 104.777),
}


@dataclass
class Normalization:
    """``x_mm = mm_per_unit * x_unit + center_mm`` (uniform scale + translation, no rotation)."""

    center_mm: tuple = CENTER_MM
    mm_per_unit: float = MM_PER_UNIT
    landmarks_mm: dict = field(default_factory=lambda: dict(ICT_MEAN_LANDMARKS_MM))

    @property
    def scale_mat(self) -> np.ndarray:
        """4x4 unit -> mm (the IDR ``scale_mat`` convention)."""
        M = np.eye(4)
        M[:3, :3] *= float(self.mm_per_unit)
        M[:3, 3] = np.asarray(self.center_mm, dtype=np.float64)
        return M

    def to_unit(self, points_mm) -> np.ndarray:
        p = np.asarray(points_mm, dtype=np.float64)
        return (p - np.asarray(self.center_mm)) / float(self.mm_per_unit)

    def to_mm(self, points_unit) -> np.ndarray:
        p = np.asarray(points_unit, dtype=np.float64)
        return p * float(self.mm_per_unit) + np.asarray(self.center_mm)

    @property
    def landmarks_unit(self) -> dict:
        return {k: self.to_unit(v) for k, v in self.landmarks_mm.items()}

    def to_dict(self) -> dict:
        return {"center_mm": [float(c) for c in self.center_mm], "mm_per_unit": float(self.mm_per_unit),
                "landmarks_mm": {k: [float(c) for c in v] for k, v in self.landmarks_mm.items()},
                "convention": "x_mm = mm_per_unit * x_unit + center_mm (ICT frame: +Y up, +Z front)"}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(center_mm=tuple(float(c) for c in d["center_mm"]), mm_per_unit=float(d["mm_per_unit"]),
                   landmarks_mm={k: tuple(float(c) for c in v) for k, v in d.get("landmarks_mm", {}).items()})


def bust_normalization() -> "Normalization":
    """The frame of bust priors (:data:`BUST_CENTER_MM`, :data:`BUST_MM_PER_UNIT`; same landmarks)."""
    return Normalization(center_mm=BUST_CENTER_MM, mm_per_unit=BUST_MM_PER_UNIT)


def similarity_from_landmarks(src: dict, dst: dict, scale: bool = False) -> np.ndarray:
    """4x4 rigid (or similarity with ``scale``) transform mapping landmark dict ``src`` onto ``dst`` (names in
    common, at least 3), least squares (:func:`umeyama`)."""
    names = [k for k in src if k in dst]
    if len(names) < 3:
        raise ValueError(f"need at least 3 common landmarks, got {names}")
    return umeyama([src[k] for k in names], [dst[k] for k in names], scale=scale)


def _landmark_points(head, landmarks) -> dict | None:
    """Landmarks as name -> xyz (mm): given directly, or vertex indices from ``head.metadata['landmarks']``."""
    if landmarks is None and head is not None:
        landmarks = getattr(head, "metadata", {}).get("landmarks")
    if not landmarks:
        return None
    out = {}
    V = None if head is None else np.asarray(head.vertices)
    for k, v in landmarks.items():
        a = np.asarray(v)
        if a.ndim == 0:  # vertex index
            if V is None:
                raise ValueError(f"landmark {k!r} is a vertex index but no mesh was given")
            out[k] = V[int(a)]
        else:
            out[k] = a.astype(np.float64).reshape(3)
    return out


def prior_normalization(head=None, landmarks=None, norm: Normalization | None = None,
                        scale: bool = False) -> np.ndarray:
    """The 4x4 ``scale_mat`` (prior unit frame -> the head's mm) that aligns a head with the prior.

    Args:
        head: a ``trimesh.Trimesh`` (or anything with ``vertices``) in mm; its ``metadata['landmarks']`` (vertex
            indices) are used when ``landmarks`` is None.
        landmarks: dict name -> xyz in mm (or vertex index into ``head``) of the H3DS landmarks (``right_eye``,
            ``left_eye``, ``nose_tip``, ``nose_base``, ``right_lips``, ``left_lips``; at least three of them).
        norm: the prior's :class:`Normalization` (default: the ICT frame).
        scale: also fit a scale (similarity) instead of a rigid map; the prior was trained at metric scale, so
            leave it off unless the head's units are uncertain.

    With landmarks: a rigid (or similarity) least-squares fit of the prior's mean-head landmarks onto them, so
    any pose works. Without landmarks: the head is assumed to be in the ICT orientation (+Y up, +Z out of the
    face) and is only translated so that its bounding-box centre lands on the prior's centre.

    Returns ``M`` with ``x_mm = M @ [x_unit, 1]``; ``np.linalg.inv(M)`` maps the head into the prior frame.
    """
    norm = norm or Normalization()
    N = norm.scale_mat
    lm = _landmark_points(head, landmarks)
    if lm:
        A = similarity_from_landmarks(norm.landmarks_mm, lm, scale=scale)  # prior mm -> head mm
        return A @ N
    if head is None:
        raise ValueError("prior_normalization needs a head mesh/point cloud or landmarks")
    V = np.asarray(head.vertices if hasattr(head, "vertices") else head, dtype=np.float64).reshape(-1, 3)
    if not len(V):
        raise ValueError("head has no vertices")
    c = (V.min(0) + V.max(0)) / 2.0
    M = N.copy()
    M[:3, 3] = c
    return M

