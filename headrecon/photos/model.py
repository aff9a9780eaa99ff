"""The sparse morphable model of the MediaPipe face-mesh points on the ICT-FaceKit head (millimetres, ICT frame:
+Y up, +Z out of the face, +X = the subject's left).

``headrecon/assets/ict_mediapipe_landmarks.npz`` (270 KB, made by ``tools/make_landmark_model.py`` from the MIT
ICT-FaceKit basis and MediaPipe detections on rendered ICT training identities) holds, for each of the 468
face-mesh points: its place on the ICT mesh (triangle + barycentric coordinates), the identity model at that
place (``mean_mm`` + ``modes_mm @ w``, ``w ~ N(0, 1)``, 100 modes) and how consistently the detector hits it
(``spread_mm``: the median distance between the detections carried onto the mean head and the chosen point),
and the mean head's outward normal there (``normal``: a landmark on a surface turned away from a camera is a
guess of the detector, not an observation).
Fits use the stable points only (:meth:`LandmarkModel.fit_indices`: not the face outline, which slides with the
view, nor the irises, nor points that spread more than 6 mm).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detect import FACE_OVAL, IRISES, N_MEDIAPIPE

__all__ = ["LandmarkModel", "load_landmark_model", "DEFAULT_MODEL_PATH"]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "assets" / "ict_mediapipe_landmarks.npz"


@dataclass
class LandmarkModel:
    mean_mm: np.ndarray       # [478, 3]
    modes_mm: np.ndarray      # [K, 478, 3] (one standard deviation per mode)
    spread_mm: np.ndarray     # [478] (inf where the point is not on the model)
    triangle: np.ndarray      # [478] ICT skin triangle (-1: not on the model)
    barycentric: np.ndarray   # [478, 3]
    normal: np.ndarray        # [478, 3] outward unit normal of the mean head there
    info: dict

    @property
    def n_modes(self) -> int:
        return int(self.modes_mm.shape[0])

    def points(self, w=None, idx=None) -> np.ndarray:
        """Model points [len(idx), 3] mm for identity weights ``w`` (None = the mean head)."""
        idx = np.arange(N_MEDIAPIPE) if idx is None else np.asarray(idx)
        p = self.mean_mm[idx].astype(np.float64)
        if w is not None:
            w = np.asarray(w, dtype=np.float64)
            p = p + np.tensordot(w, self.modes_mm[:len(w), idx].astype(np.float64), axes=1)
        return p

    def fit_indices(self, max_spread_mm: float = 6.0) -> np.ndarray:
        """The stable points (see the module docstring)."""
        bad = set(FACE_OVAL) | set(IRISES)
        return np.array([i for i in range(N_MEDIAPIPE) if i not in bad and self.triangle[i] >= 0
                         and self.spread_mm[i] <= max_spread_mm], dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _load(path: str) -> LandmarkModel:
    try:
        with np.load(path, allow_pickle=False) as d:
            return LandmarkModel(mean_mm=d["mean_mm"].astype(np.float64), modes_mm=d["modes_mm"].astype(np.float32),
                                 spread_mm=d["spread_mm"].astype(np.float64), triangle=d["triangle"].astype(np.int64),
                                 barycentric=d["barycentric"].astype(np.float64), normal=d["normal"].astype(np.float64),
                                 info=json.loads(str(d["info"])))
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a landmark model ({type(exc).__name__}: {exc}); rebuild it with "
                         "tools/make_landmark_model.py") from None


def load_landmark_model(path=None) -> LandmarkModel:
    """The shipped model (cached), or the one in ``path``."""
    return _load(str(Path(path or DEFAULT_MODEL_PATH).resolve()))
