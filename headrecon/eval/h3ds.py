"""The official H3DS evaluation protocol, written for headrecon: the numbers of H3DS 0.4.0's
``H3DS.evaluate_scene`` (the code behind the H3D-Net and SIRA++ tables) without depending on that package.

For one predicted mesh (vertices in the ground truth's millimetres) and one region ``r`` the official code does:

1. optional coarse alignment: when the prediction has landmarks, ``trimesh.registration.procrustes`` (no
   reflection, with scale) of the prediction's landmarks onto the ground truth's, applied to the prediction;
2. fine alignment: ``trimesh.registration.icp`` at its defaults (20 iterations, threshold 1e-5, similarity
   *with scale and reflection allowed*, closest *vertices*) of the ground-truth vertices of the ICP region onto
   **all** predicted vertices; the prediction is moved by the inverse. The ICP region is ``regions/face.txt``
   (face, ears and neck) for the head and ``regions/face_sphere.txt`` (vertices within 95 mm of the nose tip)
   for the face;
3. nearest-**vertex** distances (``cKDTree``) from the ground-truth vertices to the predicted vertices
   (``gt2pred``) and back (``pred2gt``); for the face the ground truth is first cut to the face sphere, so the
   face ``pred2gt`` runs from *every* predicted vertex to the face vertices (as in the official code: even a
   perfect prediction reads tens of mm there; :func:`headrecon.eval.metrics.evaluate` adds
   ``face_pred2gt_sphere_mm`` over the predicted vertices within the face sphere).

Means of these arrays are the reported figures. Two known bugs of the package are deliberately not copied: its
OBJ reader counts ``"v "``/``"f "`` inside comments (phantom rows) and keeps only three corners of a face
(``h3ds/mesh.py``; we read meshes with :func:`headrecon.data.meshio.load_mesh`), and ``perform_icp`` indexes the
wrong mesh with ``mask_target`` (unused by ``evaluate_scene``). The official ICP can stop short (20 iterations):
a ground-truth copy turned 3 degrees about the origin and moved 6 mm still reads about 1 / 1.6 mm; the ``exact``
protocol (:func:`headrecon.eval.metrics.evaluate` with ``protocol="exact"``) is the second opinion.

Scenes without ``regions/face.txt`` align the head on the face sphere (``head_icp_region`` says which was used).
:func:`headrecon.data.regions.h3ds_face_region` defines ``face.txt`` for synthetic scenes from the six
landmarks.
"""
from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from ..data.regions import FACE_REGION_LIMITS_MM, h3ds_face_region

__all__ = ["h3ds_icp", "nearest_vertex_distance", "evaluate_h3ds", "h3ds_face_region", "FACE_REGION_LIMITS_MM"]


def _apply(M, points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(M)[:3, :3].T + np.asarray(M)[:3, 3]


def nearest_vertex_distance(source, target) -> np.ndarray:
    """Distance from each ``source`` point to its nearest ``target`` point (the official
    ``unidirectional_chamfer_distance``: a KD-tree over the target vertices, leaf size 10)."""
    d, _ = cKDTree(np.asarray(target, dtype=np.float64), leafsize=10).query(np.asarray(source, dtype=np.float64),
                                                                           k=1)
    return d


def h3ds_icp(gt_region_points, pred_vertices) -> np.ndarray:
    """4x4 matrix moving ``gt_region_points`` onto ``pred_vertices``: ``trimesh.registration.icp`` with the
    settings the official code inherits (identity start, threshold 1e-5, 20 iterations, Procrustes with
    reflection, translation and scale)."""
    M, _, _ = trimesh.registration.icp(np.asarray(gt_region_points, dtype=np.float64),
                                       np.asarray(pred_vertices, dtype=np.float64), initial=None, threshold=1e-5,
                                       max_iterations=20, reflection=True, translation=True, scale=True)
    return np.asarray(M, dtype=np.float64)


def _landmark_procrustes(pred_vertices, gt_vertices, pred_landmarks, gt_landmarks):
    """The official coarse alignment: Procrustes (with scale, no reflection) of the prediction's landmarks onto
    the ground truth's, over the ground truth's landmark names (every one must be on the prediction)."""
    def point(vertices, v):
        v = np.asarray(v)
        return vertices[int(v)] if v.ndim == 0 else v.astype(np.float64).reshape(3)

    names = list(gt_landmarks)
    if len(names) < 3:
        raise ValueError(f"the landmark alignment needs at least 3 ground-truth landmarks, the scene has {names}")
    missing = [n for n in names if n not in pred_landmarks]
    if missing:
        raise ValueError(f"the prediction's landmarks lack {missing} (the H3DS protocol uses all of {names})")
    src = np.stack([point(pred_vertices, pred_landmarks[n]) for n in names])
    dst = np.stack([point(gt_vertices, gt_landmarks[n]) for n in names])
    M, _, _ = trimesh.registration.procrustes(src, dst, reflection=False)
    return np.asarray(M, dtype=np.float64)


def evaluate_h3ds(pred_vertices, gt_vertices, face_sphere_idx, head_icp_idx=None, pred_landmarks=None,
                  gt_landmarks=None) -> dict:
    """The official H3DS evaluation of one prediction (module docstring) for the head and the face.

    ``pred_vertices`` [M, 3] and ``gt_vertices`` [N, 3] in the ground truth's mm; ``face_sphere_idx``: GT vertex
    indices of ``regions/face_sphere.txt``; ``head_icp_idx``: those of ``regions/face.txt`` (None: the head is
    aligned on the face sphere too); ``pred_landmarks`` / ``gt_landmarks`` (name -> vertex index or point) enable
    the coarse alignment (both needed).

    Returns a dict: for ``region`` in head / face, ``{region}_gt2pred`` [N or N_face] and ``{region}_pred2gt``
    [M] (arrays), ``{region}_transform`` (4x4 applied to the prediction, coarse alignment included) and
    ``{region}_pred`` (the aligned predicted vertices); ``head_icp_region`` ("face" or "face_sphere") and
    ``coarse`` (whether landmarks were used).
    """
    P = np.asarray(pred_vertices, dtype=np.float64)
    G = np.asarray(gt_vertices, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3 or len(P) == 0:
        raise ValueError(f"pred_vertices must be a non-empty [M, 3] array, got shape {P.shape}")
    face_idx = np.asarray(face_sphere_idx, dtype=np.int64).reshape(-1)
    if len(face_idx) == 0:
        raise ValueError("the face-sphere region is empty")
    coarse = np.eye(4)
    if pred_landmarks and gt_landmarks:
        coarse = _landmark_procrustes(P, G, pred_landmarks, gt_landmarks)
    P0 = _apply(coarse, P)
    out = {"coarse": bool(pred_landmarks and gt_landmarks),
           "head_icp_region": "face" if head_icp_idx is not None else "face_sphere"}
    head_idx = face_idx if head_icp_idx is None else np.asarray(head_icp_idx, dtype=np.int64).reshape(-1)
    for region, icp_idx, cut in (("head", head_idx, None), ("face", face_idx, face_idx)):
        T = h3ds_icp(G[icp_idx], P0)
        Tinv = np.linalg.inv(T)
        Pa = _apply(Tinv, P0)
        Gr = G if cut is None else G[cut]
        out[f"{region}_gt2pred"] = nearest_vertex_distance(Gr, Pa)
        out[f"{region}_pred2gt"] = nearest_vertex_distance(Pa, Gr)
        out[f"{region}_transform"] = Tinv @ coarse
        out[f"{region}_pred"] = Pa
    return out
