"""Where a prior method places its prior in a scene (``--frame``), from what the user has: the photos and their
cameras. Ground truth is used only when asked for (``--frame gt``, for ablations).

:func:`scene_prior_frame` returns the 4x4 similarity *scene unit frame -> prior unit frame* and a JSON-ready
report for ``run.json`` (``source``, the fit's residuals in mm, the views with and without a face). Modes:

* ``auto`` (default): ``scene_info.json``'s ``head_transform`` (ICT model frame -> scene mm, written by
  ``headrecon-prepare``, whose fit already placed the head) when the scene gives one; else ``images``; else (no
  face found in any view, or MediaPipe missing) ``centre``, and the report says why. (Scenes prepared before
  ``head_transform`` existed carry ``prior_scale_mat``, the ICT-frame prior's matrix; it is converted.)
* ``images``: MediaPipe landmarks in every view, triangulated with the cameras, the sparse ICT morphable model
  fitted to them (:func:`headrecon.photos.fit.fit_head`): the prior's ICT frame maps onto the fitted head. One view:
  the model's size gives the depth (``--frame-depth model``), or the scene's unit-sphere centre does
  (``--frame-depth sphere``: the IDR/H3DS ``scale_mat`` that came with the cameras).
* ``gt``: the ground-truth landmarks (``landmarks.txt`` into ``full_head.obj``): a rigid fit of the prior's
  mean-head landmarks.
* ``centre``: the scene is assumed to be in the ICT orientation (+Y up, +Z out of the face, mm) and centred on its
  unit sphere's centre.
"""
from __future__ import annotations

import numpy as np

from ..priors.normalization import prior_normalization

__all__ = ["FRAME_MODES", "scene_prior_frame", "head_fit_from_scene"]

FRAME_MODES = ("auto", "images", "gt", "centre")


def _gt_landmarks(scene):
    lm, gt = getattr(scene, "landmarks", None), getattr(scene, "gt_mesh", None)
    if not lm:
        return None
    try:
        pos = {k: (np.asarray(gt.vertices)[int(v)] if np.ndim(v) == 0 else np.asarray(v, dtype=np.float64))
               for k, v in lm.items()}
    except (AttributeError, TypeError, IndexError):
        return None
    return pos if len(pos) >= 3 else None


def head_fit_from_scene(scene, detections=None, depth: str = "model"):
    """:class:`headrecon.photos.fit.HeadFit` of the scene's loaded images and cameras (scene units)."""
    from .detect import detect_landmarks
    from .fit import fit_head

    if not getattr(scene, "views", None):
        raise ValueError("the scene has no views to find a face in")
    if detections is None:
        missing = [k for k, v in enumerate(scene.views) if v.image is None]
        if missing:
            raise ValueError(f"views {missing[:10]} have no image loaded")
        detections = detect_landmarks([v.image for v in scene.views])
    names = [v.image_path.name if getattr(v, "image_path", None) is not None else f"view {k}"
             for k, v in enumerate(scene.views)]
    if not any(d is not None for d in detections):
        raise ValueError("no face was found in any image (" + ", ".join(names[:8]) +
                         (", ..." if len(names) > 8 else "") + "): the prior cannot be placed from the photos")
    depth_at = np.asarray(scene.scale_mat, dtype=np.float64)[:3, 3] if depth == "sphere" else None
    return fit_head([v.camera for v in scene.views], detections, metric=getattr(scene, "units", "mm") == "mm",
                    names=names, depth_at=depth_at)


def scene_prior_frame(scene, prior, mode: str = "auto", depth: str = "model"):
    """``(4x4 scene-unit -> prior-unit similarity, report)`` for ``scene`` and a prior with a ``norm``
    (:class:`headrecon.priors.normalization.Normalization`); see the module docstring for ``mode``. ``depth``
    (one view only): ``model`` = the depth the morphable model's size gives, ``sphere`` = the depth of the scene's
    unit-sphere centre (``scale_mat``), the head scaled so that its image is unchanged."""
    if mode not in FRAME_MODES:
        raise ValueError(f"frame must be one of {FRAME_MODES}, got {mode!r}")
    S_scene = np.asarray(scene.scale_mat, dtype=np.float64)
    meta = getattr(scene, "meta", None) or {}
    N = prior.norm.scale_mat
    report = {"mode": mode}
    S = None
    if mode == "auto" and meta.get("head_transform") is not None:
        S = np.asarray(meta["head_transform"], dtype=np.float64) @ N
        report["source"] = "scene_info.json head_transform"
    elif mode == "auto" and meta.get("prior_scale_mat") is not None:
        from ..priors.normalization import Normalization

        head = np.asarray(meta["prior_scale_mat"], dtype=np.float64) @ np.linalg.inv(Normalization().scale_mat)
        S = head @ N
        report["source"] = "scene_info.json prior_scale_mat"
    elif mode == "gt":
        pos = _gt_landmarks(scene)
        if pos is None:
            raise ValueError("--frame gt needs the scene's ground-truth landmarks (landmarks.txt and full_head.obj)")
        S = prior_normalization(landmarks=pos, norm=prior.norm)
        report["source"] = "ground-truth landmarks"
    elif mode in ("auto", "images"):
        try:
            fit = head_fit_from_scene(scene, depth=depth)
        except (ValueError, ImportError) as exc:
            if mode == "images":
                raise ValueError(f"--frame images: {exc}") from None
            report["images_failed"] = str(exc)
        else:
            S = fit.transform @ N
            report.update(source="images", **fit.report,
                          landmarks=[[round(float(c), 3) for c in fit.landmarks[k]] for k in fit.landmarks],
                          landmark_names=list(fit.landmarks))
    if S is None:
        S = N.copy()
        S[:3, 3] = S_scene[:3, 3]
        report["source"] = "scene centre, ICT orientation assumed"
    return np.linalg.inv(S) @ S_scene, report
