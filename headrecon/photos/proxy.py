"""The facial proxy of ``--method wang``: the morphable-model face fitted to the photos, as a triangle mesh in the
scene's units.

The fit is the photos-only one (:mod:`headrecon.photos.fit`: face-mesh landmarks detected in every view,
triangulated with the cameras, the sparse ICT-FaceKit identity model fitted to them). ``headrecon-prepare`` stores
its result in ``scene_info.json`` (``identity_weights``, ``head_transform``); other scenes are fitted here. The
proxy surface is the fitted model at the 468 face-mesh points (:mod:`headrecon.photos.model`) triangulated by
MediaPipe's face-mesh tessellation (the triangles are the 3-cliques of its edge list): the whole face from the
forehead to the chin and between the ears, at about the detail of the landmarks, without the ICT-FaceKit basis
(which does not ship).
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["FaceProxy", "face_proxy", "tessellation_triangles"]


@functools.lru_cache(maxsize=1)
def tessellation_triangles() -> np.ndarray:
    """[T, 3] triangles of MediaPipe's 468-point face mesh (from ``FACEMESH_TESSELATION``'s edges)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    nb: dict = {}
    for a, b in FACEMESH_TESSELATION:
        nb.setdefault(a, set()).add(b)
        nb.setdefault(b, set()).add(a)
    tris = {tuple(sorted((a, b, c))) for a in nb for b in nb[a] if b > a for c in nb[a] & nb[b] if c > b}
    return np.array(sorted(tris), dtype=np.int64)


class FaceProxy:
    """The proxy mesh: ``vertices`` [468, 3] scene units, ``triangles`` [T, 3], ``report`` (where the fit came
    from). :meth:`sample` draws area-uniform points on it."""

    def __init__(self, vertices, triangles, report):
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.triangles = np.asarray(triangles, dtype=np.int64)
        self.report = dict(report)
        v = self.vertices[self.triangles]
        self.areas = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)

    def sample(self, n: int, generator):
        """``n`` points [n, 3] (float64 numpy) drawn area-uniformly with the torch ``generator``."""
        import torch

        p = torch.as_tensor(self.areas / self.areas.sum())
        t = torch.multinomial(p, n, replacement=True, generator=generator).numpy()
        r = torch.rand(n, 2, generator=generator, dtype=torch.float64).numpy()
        flip = r.sum(1) > 1
        r[flip] = 1 - r[flip]
        v = self.vertices[self.triangles[t]]
        return v[:, 0] + r[:, :1] * (v[:, 1] - v[:, 0]) + r[:, 1:] * (v[:, 2] - v[:, 0])


def face_proxy(scene, radius_mm: float | None = None) -> FaceProxy:
    """The fitted face of ``scene`` (loaded images and cameras) as a :class:`FaceProxy`; ValueError saying why when
    no face can be fitted (no face found in any view; ImportError without MediaPipe). ``radius_mm``: keep only the
    triangles within that distance of the fitted nose tip (in the model's millimetres; None = the whole face
    mesh)."""
    from .model import load_landmark_model

    model = load_landmark_model()
    meta = getattr(scene, "meta", None) or {}
    if meta.get("identity_weights") is not None and meta.get("head_transform") is not None:
        w = np.asarray(meta["identity_weights"], dtype=np.float64)
        T = np.asarray(meta["head_transform"], dtype=np.float64)
        report = {"source": "scene_info.json (headrecon-prepare's fit)"}
    else:
        from .frame import head_fit_from_scene

        fit = head_fit_from_scene(scene)
        w, T = np.asarray(fit.weights, dtype=np.float64), np.asarray(fit.transform, dtype=np.float64)
        report = {"source": "images", **{k: v for k, v in fit.report.items() if not isinstance(v, (list, dict))}}
    tri = tessellation_triangles()
    n = int(tri.max()) + 1
    P = model.points(w[:model.n_modes], idx=np.arange(n))
    if radius_mm is not None:
        from .detect import H3DS_MEDIAPIPE

        near = np.linalg.norm(P - P[H3DS_MEDIAPIPE["nose_tip"]], axis=1) <= float(radius_mm)
        tri = tri[near[tri].all(axis=1)]
        if len(tri) == 0:
            raise ValueError(f"no face-mesh triangle lies within {radius_mm} mm of the nose tip")
    V = P @ T[:3, :3].T + T[:3, 3]
    report.update(vertices=n, triangles=int(len(tri)), radius_mm=radius_mm)
    return FaceProxy(V, tri, report)
