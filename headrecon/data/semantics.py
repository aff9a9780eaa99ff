"""Per-pixel head semantics: the label set shared by the scene files (``semantic/sem_XXXX.png``), the procedural
hair of test heads (:mod:`headrecon.data.hair`), the label maps made from photos
(:mod:`headrecon.photos.semantics`) and ``--method wang``'s semantic network.

A label map is uint8 [H, W]: the index of a class in :data:`SEMANTIC_CLASSES` (0 = background), or
:data:`IGNORE_LABEL` where the class is unknown (no loss there). :func:`reduce_labels` shrinks a map the way the
training images are shrunk (:func:`headrecon.recon.sampling.resize_view`): each reduced pixel takes the class that
covers most of it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SEMANTIC_CLASSES", "IGNORE_LABEL", "reduce_labels", "check_labels"]

SEMANTIC_CLASSES = ("background", "skin", "hair", "brows", "eyes", "lips", "ears", "neck")
IGNORE_LABEL = 255


def check_labels(labels: np.ndarray) -> str | None:
    """None when ``labels`` is a valid label map, else what is wrong with it."""
    a = np.asarray(labels)
    if a.ndim != 2:
        return f"a label map must be one channel [H, W], got shape {a.shape}"
    bad = (a >= len(SEMANTIC_CLASSES)) & (a != IGNORE_LABEL)
    if bad.any():
        return (f"values must be class indices 0..{len(SEMANTIC_CLASSES) - 1} ({', '.join(SEMANTIC_CLASSES)}) or "
                f"{IGNORE_LABEL} (unknown), found {sorted(np.unique(a[bad]).tolist())[:5]}")
    return None


def reduce_labels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``labels`` [H, W] reduced to [height, width] by majority over each reduced pixel's footprint (the box of
    :func:`PIL.Image.resize` with ``Image.BOX``); unchanged when the size already matches."""
    from PIL import Image

    a = np.asarray(labels, dtype=np.uint8)
    if a.shape == (height, width):
        return a.copy()
    classes = list(range(len(SEMANTIC_CLASSES))) + [IGNORE_LABEL]
    votes = np.stack([np.asarray(Image.fromarray((a == c).astype(np.float32), mode="F").resize((width, height),
                                                                                            Image.BOX))
                      for c in classes])
    return np.asarray(classes, dtype=np.uint8)[votes.argmax(0)]
