"""Masks for views that have none: the user's masks always win; a view without one gets a head-and-shoulders mask
estimated from its photo (:func:`headrecon.photos.detect.estimate_masks`: MediaPipe Selfie Segmentation
thresholded at 0.5, a uniform backdrop removed, holes filled, the largest region kept)."""
from __future__ import annotations

from ..data.errors import SceneError
from .detect import estimate_masks

__all__ = ["fill_missing_masks"]


def fill_missing_masks(scene) -> dict:
    """Estimate the mask of every view of ``scene`` whose ``mask`` is None (images must be loaded). Records
    ``scene.meta['masks_estimated']`` (image name -> how) and returns it; ``{}`` when every view has a mask."""
    todo = [v for v in scene.views if v.mask is None]
    if not todo:
        return {}
    for v in todo:
        if v.image is None:
            raise ValueError("load the scene's images before estimating masks")
    est, notes = estimate_masks([v.image for v in todo])
    for v, m, note in zip(todo, est, notes):
        if not m.any():
            raise SceneError(v.image_path, "has no mask in mask/ and no person was found in the photo to make one")
        v.mask = m
    done = {(v.image_path.name if v.image_path is not None else str(v.index)): n for v, n in zip(todo, notes)}
    scene.meta["masks_estimated"] = done
    return done
