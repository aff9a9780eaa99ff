"""Surface metrics of a predicted head against a ground truth, in mm, under two protocols.

``protocol="h3ds"`` (the default) is the official H3DS evaluation (:mod:`headrecon.eval.h3ds`): trimesh ICP at
its defaults of the ground truth's ``regions/face.txt`` (head) or face sphere (face) onto the predicted vertices,
then nearest-*vertex* distances. These are the numbers comparable with the H3D-Net and SIRA++ tables.

``protocol="exact"`` is a second opinion:

1. optional coarse alignment: Procrustes with scale from the prediction's six landmarks to the ground truth's,
   when the prediction has landmarks;
2. fine alignment: similarity ICP of the ground truth's face region (vertices within 95 mm of the nose tip)
   onto the prediction; the prediction is then moved by the inverse, so distances are measured in the ground
   truth's millimetres. The ICP starts from the current pose (the scene frame, or the landmark alignment), is
   trimmed (correspondences beyond ``max(3 x median, 5 mm)`` or landing on an open boundary are dropped:
   extra geometry such as a neck, bust or blobs, holes and missing parts), uses correspondences in both
   directions within the face sphere (one-directional closest points are contractive, so plain similarity ICP
   shrinks the face at every iteration and the scale runs away), bounds the scale to +-10 % of the starting
   pose's, and is accepted only if it does not worsen the face fit (face Chamfer) of the starting pose.
   ``metrics["alignment_details"]`` reports what was used; ``align="none"`` measures in the scene frame;
3. unidirectional Chamfer distances to the *surface*, reported as means (and medians) for the full head and
   for the face: ``gt2pred`` = from ground-truth vertices to the predicted surface (H3DS / SIRA++ direction),
   ``pred2gt`` = from predicted vertices to the ground-truth surface (H3D-Net direction). For the face,
   ``gt2pred`` uses ground-truth vertices within 95 mm of the nose tip and ``pred2gt`` predicted vertices within
   95 mm of it (after alignment).

With ``observed_from`` (the scene's cameras) ``gt2pred`` is also reported over the ground-truth vertices some
camera sees (``*_observed``; DTU-style observability): a scan's hidden interior (eye sockets, nostrils, mouth)
is then left out. Point-to-surface distances are exact distances to a triangle (never below the true
distance): each point is tested against the triangles around its nearest vertex and the ``k`` triangles with
the nearest centroids.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from ..data.errors import SceneError
from ..data.geometry import seen_by_any
from ..data.scene import FACE_SPHERE_RADIUS_MM, FaceSphere, Scene, load_gt, load_region
from .h3ds import evaluate_h3ds

__all__ = ["point_to_surface", "landmark_alignment", "icp_similarity", "evaluate", "EvalDetails",
           "transform_points", "observed_vertices", "METRIC_KEYS", "PROTOCOLS"]

PROTOCOLS = ("h3ds", "exact")

METRIC_KEYS = ("face_gt2pred_mm", "face_pred2gt_mm", "head_gt2pred_mm", "head_pred2gt_mm")


def transform_points(M, points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ M[:3, :3].T + M[:3, 3]


class _SurfaceIndex:
    """Nearest-surface queries on a triangle mesh with scipy KD-trees (no rtree needed)."""

    def __init__(self, mesh: trimesh.Trimesh, k: int = 12):
        self.tris = np.asarray(mesh.triangles, dtype=np.float64)
        self.k = min(k, len(self.tris))
        self.centroid_tree = cKDTree(self.tris.mean(axis=1))
        self.vertex_tree = cKDTree(np.asarray(mesh.vertices))
        vf = np.asarray(mesh.vertex_faces)  # padded with -1
        self.vertex_faces = vf

    def query(self, points, chunk: int = 20000):
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        dist = np.empty(len(points))
        closest = np.empty((len(points), 3))
        for s in range(0, len(points), chunk):
            p = points[s:s + chunk]
            _, cand = self.centroid_tree.query(p, k=self.k)
            cand = cand.reshape(len(p), -1)
            _, nv = self.vertex_tree.query(p)
            cand = np.concatenate([cand, self.vertex_faces[nv]], axis=1)
            valid = cand >= 0
            cand = np.where(valid, cand, cand[:, :1])
            m = cand.shape[1]
            cp = trimesh.triangles.closest_point(self.tris[cand.ravel()], np.repeat(p, m, axis=0)).reshape(len(p), m, 3)
            d = np.linalg.norm(cp - p[:, None], axis=2)
            j = np.argmin(d, axis=1)
            dist[s:s + chunk] = d[np.arange(len(p)), j]
            closest[s:s + chunk] = cp[np.arange(len(p)), j]
        return dist, closest


def point_to_surface(points, mesh: trimesh.Trimesh, k: int = 12):
    """Unsigned distance [N] from ``points`` to the surface of ``mesh`` and the closest points [N, 3]."""
    return _SurfaceIndex(mesh, k).query(points)


def landmark_alignment(src_points, dst_points, scale: bool = True) -> np.ndarray:
    """4x4 similarity (Procrustes, no reflection) mapping ``src_points`` onto ``dst_points``."""
    M, _, _ = trimesh.registration.procrustes(np.asarray(src_points, dtype=np.float64),
                                              np.asarray(dst_points, dtype=np.float64),
                                              reflection=False, translation=True, scale=scale, return_cost=True)
    return M


def _similarity_fit(x, y, scale: bool = True, scale_bounds=(0.0, np.inf)) -> np.ndarray:
    """4x4 similarity minimising sum |y - (s R x + t)|^2 (no reflection). The scale is the symmetric (RMS-ratio)
    estimate, clipped to ``scale_bounds``; the rotation does not depend on it."""
    xc, yc = x.mean(axis=0), y.mean(axis=0)
    X, Y = x - xc, y - yc
    U, _, Vt = np.linalg.svd(Y.T @ X)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ D @ Vt
    s = float(np.sqrt((Y ** 2).sum() / max((X ** 2).sum(), 1e-300))) if scale else 1.0
    s = float(np.clip(s, scale_bounds[0], scale_bounds[1]))
    M = np.eye(4)
    M[:3, :3] = s * R
    M[:3, 3] = yc - s * R @ xc
    return M


def _dense_points(mesh: trimesh.Trimesh, n_samples: int, seed: int = 0, with_boundary: bool = False):
    """Vertices plus ``n_samples`` area-uniform surface points; with ``with_boundary`` also a bool mask of the
    points on or next to an open boundary (vertices of boundary edges, samples on faces touching them)."""
    pts = np.asarray(mesh.vertices, dtype=np.float64)
    fidx = np.zeros(0, dtype=np.int64)
    if n_samples and len(mesh.faces):
        samples, fidx = trimesh.sample.sample_surface(mesh, n_samples, seed=seed)
        pts = np.concatenate([pts, samples])
    if not with_boundary:
        return pts
    faces = np.asarray(mesh.faces)
    on_b = np.zeros(len(mesh.vertices), dtype=bool)
    if len(faces):
        edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        _, inv, cnt = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
        on_b[edges[cnt[inv.ravel()] == 1].ravel()] = True
        face_b = on_b[faces].any(axis=1)
        return pts, np.concatenate([on_b, face_b[fidx]])
    return pts, on_b


def _scale_of(M) -> float:
    return float(np.cbrt(np.linalg.det(np.asarray(M)[:3, :3])))


def _robust_icp(src, tgt_tree: cKDTree, tgt_pts, initial=None, scale: bool = True, max_scale_change: float = 0.1,
                max_iterations: int = 200, tol: float = 1e-6, trim_factor: float = 3.0, min_trim_mm: float = 5.0,
                reverse=None, rigid_first: bool = False, tgt_boundary=None):
    """Trimmed similarity ICP moving ``src`` onto the points of ``tgt_tree``; returns (4x4, trimmed RMS, iters).

    * correspondences farther than ``max(trim_factor * median, min_trim_mm)`` are dropped (extra or missing
      geometry, partial predictions);
    * correspondences whose target point lies on an open boundary (``tgt_boundary`` mask; for the reverse ones,
      the sixth item of ``reverse``) are dropped: points facing a hole or a missing part all land on its rim;
    * a rigid stage runs to convergence first, then the similarity stage, whose scale stays within
      ``[s0 / (1 + max_scale_change), s0 * (1 + max_scale_change)]`` (``s0``: scale of ``initial``);
    * ``reverse = (points_in_target_frame, src_tree, src_dense, center, radius[, src_boundary])`` adds reverse correspondences:
      target points whose pre-image lies within ``radius`` of ``center`` (source frame) paired with their nearest
      source point. Closest-point matching is contractive (many-to-one), so one-directional similarity ICP shrinks
      the source at every iteration and the scale runs away; the reverse pairs balance that bias.
    """
    T = np.eye(4) if initial is None else np.asarray(initial, dtype=np.float64).copy()
    s0 = _scale_of(T)
    bounds = (s0 / (1.0 + max_scale_change), s0 * (1.0 + max_scale_change))
    rms, it_total = float("nan"), 0
    for stage_scale in (((False, True) if rigid_first else (True,)) if scale else (False,)):
        for _ in range(max_iterations):
            it_total += 1
            xs = transform_points(T, src)
            d, j = tgt_tree.query(xs)
            x_all, y_all, d_all = [src], [tgt_pts[j]], [d]
            ok_all = [~tgt_boundary[j] if tgt_boundary is not None else np.ones(len(j), dtype=bool)]
            if reverse is not None:
                pts, s_tree, s_dense, center, radius = reverse[:5]
                s_bound = reverse[5] if len(reverse) > 5 else None
                pre = transform_points(np.linalg.inv(T), pts)
                sel = np.linalg.norm(pre - center, axis=1) <= radius
                if sel.sum() >= 10:
                    _, k = s_tree.query(pre[sel])
                    x_all.append(s_dense[k])
                    y_all.append(pts[sel])
                    d_all.append(np.linalg.norm(transform_points(T, s_dense[k]) - pts[sel], axis=1))
                    ok_all.append(~s_bound[k] if s_bound is not None else np.ones(len(k), dtype=bool))
            x_all, y_all, d_all, ok_all = (np.concatenate(a) for a in (x_all, y_all, d_all, ok_all))
            if ok_all.sum() < 6:
                ok_all[:] = True
            keep = ok_all & (d_all <= max(trim_factor * float(np.median(d_all[ok_all])), min_trim_mm * _scale_of(T)))
            if keep.sum() < 6:
                break
            rms = float(np.sqrt(np.mean(d_all[keep] ** 2)))
            if stage_scale:
                T_new = _similarity_fit(x_all[keep], y_all[keep], True, bounds)
            else:
                T_new = _similarity_fit(x_all[keep], y_all[keep], False)
                T_new[:3, :3] *= _scale_of(T)  # the rigid stage keeps the current scale
                T_new[:3, 3] = y_all[keep].mean(0) - T_new[:3, :3] @ x_all[keep].mean(0)
            step = float(np.sqrt(np.mean(np.sum((transform_points(T_new, src) - xs) ** 2, axis=1))))
            T = T_new
            if step < tol:
                break
    return T, rms, it_total


def icp_similarity(source_points, target_mesh: trimesh.Trimesh, initial=None, scale: bool = True,
                   max_iterations: int = 200, n_target_samples: int = 100_000, threshold: float = 1e-6,
                   seed: int = 0, max_scale_change: float = 0.1, trim_factor: float = 3.0,
                   min_trim_mm: float = 5.0) -> tuple[np.ndarray, float]:
    """Trimmed, scale-bounded ICP of ``source_points`` onto ``target_mesh``'s surface, densely sampled (its
    vertices plus ``n_target_samples`` area-uniform points); see :func:`_robust_icp`. ``threshold``: stop when the
    source moves less than this (RMS, target units) in an iteration. Returns the 4x4 source->target matrix and
    the final RMS residual of the kept correspondences."""
    tgt, tgt_b = _dense_points(target_mesh, n_target_samples, seed, with_boundary=True)
    T, rms, _ = _robust_icp(np.asarray(source_points, dtype=np.float64), cKDTree(tgt), tgt, initial=initial,
                            tgt_boundary=tgt_b,
                            scale=scale, max_scale_change=max_scale_change, max_iterations=max_iterations,
                            tol=threshold, trim_factor=trim_factor, min_trim_mm=min_trim_mm)
    return T, rms


def _pose_summary(M) -> dict:
    """Scale, rotation angle (degrees) and translation (mm) of a 4x4 similarity."""
    M = np.asarray(M, dtype=np.float64)
    sc = _scale_of(M)
    R = M[:3, :3] / sc
    ang = float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))
    return {"scale": sc, "rotation_deg": ang, "translation_mm": [float(x) for x in M[:3, 3]],
            "translation_norm_mm": float(np.linalg.norm(M[:3, 3]))}


@dataclass
class EvalDetails:
    """Per-vertex results of :func:`evaluate` (all in the ground truth's mm frame)."""

    gt_mesh: trimesh.Trimesh
    pred_aligned: trimesh.Trimesh
    gt2pred: np.ndarray          # [N_gt] distance of each GT vertex to the prediction
    pred2gt: np.ndarray          # [N_pred] distance of each predicted vertex to the GT
    gt_face: np.ndarray          # bool [N_gt]
    pred_face: np.ndarray        # bool [N_pred]
    transform: np.ndarray        # 4x4 applied to the input prediction
    face_gt2pred: np.ndarray | None = None  # [N_face] distances under the face's own alignment (h3ds protocol)


def observed_vertices(mesh: trimesh.Trimesh, cameras, tolerance_mm: float = 1.0) -> np.ndarray:
    """Bool ``[N]``: the mesh vertices that at least one of ``cameras`` sees (the first hit of the ray from the
    camera centre towards the vertex lies within ``tolerance_mm`` of it), like DTU's observability masks.

    Surfaces that no camera of a scene sees (the inside of eye sockets, nostrils and the mouth of a scan, the
    underside of the chin from a level orbit) cannot be reconstructed from its images by any method; the
    ``*_observed`` metrics of :func:`evaluate` leave them out. Cameras in the mesh's frame (``Camera.center``)."""
    return seen_by_any(mesh, mesh.vertices, cameras, tol=tolerance_mm, in_image=False)


def _landmark_points(mesh, landmarks):
    out = {}
    for k, v in (landmarks or {}).items():
        v = np.asarray(v)
        out[k] = mesh.vertices[int(v)] if v.ndim == 0 else v.astype(np.float64).reshape(3)
    return out


def _resolve_gt(scene_or_gt, gt_landmarks, face_sphere, face_region=None):
    """(mesh, landmarks, FaceSphere, H3DS face region indices or None) of the ground truth."""
    if isinstance(scene_or_gt, Scene):
        if scene_or_gt.gt_mesh is None:
            raise SceneError(scene_or_gt.path, "scene has no ground-truth mesh (full_head.obj)")
        return (scene_or_gt.gt_mesh, gt_landmarks or scene_or_gt.landmarks, face_sphere or scene_or_gt.face_sphere,
                face_region if face_region is not None else scene_or_gt.face_region)
    if isinstance(scene_or_gt, (str, Path)):
        p = Path(scene_or_gt)
        if p.is_dir():
            mesh, lm, fs = load_gt(p)
            if mesh is None:
                raise SceneError(p / "full_head.obj", "ground-truth mesh not found")
            if face_region is None:
                face_region = load_region(p, "face", len(mesh.vertices))
            return mesh, gt_landmarks or lm, face_sphere or fs, face_region
        from ..data.meshio import load_mesh
        return load_mesh(p), gt_landmarks, face_sphere, face_region
    if isinstance(scene_or_gt, trimesh.Trimesh):
        lm = gt_landmarks
        if lm is None and isinstance(scene_or_gt.metadata, dict):
            lm = scene_or_gt.metadata.get("landmarks")
        return scene_or_gt, lm, face_sphere, face_region
    raise TypeError(f"scene_or_gt must be a Scene, a scene folder, a mesh path or a trimesh, not {type(scene_or_gt)}")


def evaluate(pred_mesh: trimesh.Trimesh, scene_or_gt, pred_landmarks: dict | None = None,
             gt_landmarks: dict | None = None, face_sphere: FaceSphere | None = None, protocol: str = "h3ds",
             face_region=None, observed_from=None, return_details: bool = False, **exact_options):
    """Compare a predicted mesh with a ground truth (module docstring).

    ``pred_mesh``: trimesh in the ground truth's units (mm). ``scene_or_gt``: a :class:`Scene`, a scene folder,
    a mesh file or a trimesh (then ``gt_landmarks`` or ``mesh.metadata["landmarks"]`` give the nose tip).
    ``pred_landmarks``: name -> vertex index or 3D point (default ``pred_mesh.metadata["landmarks"]``): a coarse
    landmark alignment first. ``protocol``: "h3ds" (official, default) or "exact"; ``exact_options`` are
    :func:`_evaluate_exact`'s (``align``, ``icp_scale``, ...). ``face_region``: indices of the H3DS
    ``regions/face.txt`` (default: the scene's; the head is aligned on the face sphere without one).

    Returns a dict with ``face_gt2pred_mm``, ``face_pred2gt_mm``, ``head_gt2pred_mm``, ``head_pred2gt_mm``
    (means), the same with ``_median`` before ``_mm``, ``face_chamfer_mm``/``head_chamfer_mm``, ``protocol``,
    vertex counts, the applied 4x4 ``transform`` (the head's), ``alignment`` and ``alignment_details``. With
    ``observed_from`` (cameras, a :class:`Scene`, or the bool mask :func:`observed_vertices` returns) also
    ``face_gt2pred_observed_mm`` / ``head_gt2pred_observed_mm``. A scene's other ground-truth regions
    (``regions/NAME.txt``, e.g. ``hair``) add ``NAME_gt2pred_mm``: the head's gt2pred over their vertices. With
    ``return_details`` returns ``(metrics, EvalDetails)``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}")
    if protocol == "exact":
        res, det = _evaluate_exact(pred_mesh, scene_or_gt, pred_landmarks=pred_landmarks, gt_landmarks=gt_landmarks,
                                   face_sphere=face_sphere, **exact_options)
    else:
        if exact_options:
            raise ValueError(f"{sorted(exact_options)} apply to protocol='exact' only")
        res, det = _evaluate_official(pred_mesh, scene_or_gt, pred_landmarks, gt_landmarks, face_sphere, face_region)
    res["protocol"] = protocol
    if observed_from is not None:
        _add_observed(res, det, observed_from)
    for name, idx in (getattr(scene_or_gt, "regions", None) or {}).items():
        # a named region of the ground truth (e.g. regions/hair.txt): gt2pred over its vertices, head alignment
        if len(idx) and det.gt2pred is not None and len(det.gt2pred) == len(det.gt_mesh.vertices):
            res[f"{name}_gt2pred_mm"] = float(np.mean(det.gt2pred[np.asarray(idx, dtype=np.int64)]))
    if return_details:
        return res, det
    return res


def evaluate_with_own_landmarks(pred_mesh: trimesh.Trimesh, scene, pred_landmarks: dict | None,
                                observed_from=None) -> dict | None:
    """The official protocol aligned first by the prediction's own landmarks (H3DS ``evaluate_scene``'s
    ``landmarks_pred``): :func:`evaluate` with ``pred_landmarks``, the 4x4 ``transform`` left out.

    ``scene``: a :class:`Scene` (its ``landmarks`` are the ground truth's) or a ground-truth trimesh (its
    ``metadata["landmarks"]``). Returns None where the alignment cannot run: no predicted landmarks, or fewer than
    three ground-truth landmarks. Raises ValueError where the ground truth names a landmark the prediction has
    not."""
    gt_landmarks = scene.metadata.get("landmarks") if isinstance(scene, trimesh.Trimesh) \
        else getattr(scene, "landmarks", None)
    if pred_landmarks is None or len(gt_landmarks or {}) < 3:
        return None
    res = evaluate(pred_mesh, scene, pred_landmarks=pred_landmarks, observed_from=observed_from)
    return {k: v for k, v in res.items() if k != "transform"}


def _stats(x, sel):
    x = x[sel]
    return (float(x.mean()), float(np.median(x))) if len(x) else (float("nan"), float("nan"))


def _add_observed(res: dict, det: "EvalDetails", observed_from) -> None:
    """``*_gt2pred_observed_mm``: gt2pred over the GT vertices some camera sees (see :func:`evaluate`)."""
    gt = det.gt_mesh
    n = len(gt.vertices)
    if isinstance(observed_from, np.ndarray) and observed_from.dtype == bool:
        if observed_from.shape != (n,):
            raise ValueError(f"observed_from mask has shape {observed_from.shape}, expected ({n},)")
        seen = observed_from
    else:
        seen = observed_vertices(gt, observed_from.cameras if isinstance(observed_from, Scene)
                                 else list(observed_from))
    has_face = bool(det.gt_face.any()) and not np.isnan(res["face_gt2pred_mm"])
    face_d = det.face_gt2pred if det.face_gt2pred is not None else det.gt2pred[det.gt_face]
    for region, d, sel in (("head", det.gt2pred, seen), ("face", face_d, seen[det.gt_face])):
        mean, med = _stats(d, sel) if (region == "head" or has_face) else (float("nan"), float("nan"))
        res[f"{region}_gt2pred_observed_mm"] = mean
        res[f"{region}_gt2pred_observed_median_mm"] = med
    res["observed_fraction"] = float(seen.mean())
    res["face_observed_fraction"] = float(seen[det.gt_face].mean()) if has_face else float("nan")


def _evaluate_official(pred_mesh, scene_or_gt, pred_landmarks, gt_landmarks, face_sphere, face_region):
    """The official H3DS protocol (:func:`headrecon.eval.h3ds.evaluate_h3ds`) as a metrics dict."""
    gt, gt_lm, fs, head_region = _resolve_gt(scene_or_gt, gt_landmarks, face_sphere, face_region)
    if not isinstance(pred_mesh, trimesh.Trimesh) or len(pred_mesh.vertices) == 0:
        raise ValueError("pred_mesh must be a trimesh.Trimesh with vertices")
    if pred_landmarks is None and isinstance(pred_mesh.metadata, dict):
        pred_landmarks = pred_mesh.metadata.get("landmarks")
    gt_v = np.asarray(gt.vertices, dtype=np.float64)
    if (fs is None or fs.vertex_indices is None) and gt_lm and "nose_tip" in gt_lm:
        fs = FaceSphere.from_mesh(gt_v, _landmark_points(gt, {"nose_tip": gt_lm["nose_tip"]})["nose_tip"])
    if fs is None or fs.vertex_indices is None:
        raise ValueError("the H3DS protocol needs the ground truth's face sphere (regions/face_sphere.txt, or "
                         "landmarks.txt with nose_tip); use protocol='exact' without one")
    face_idx = np.asarray(fs.vertex_indices, dtype=np.int64)
    r = evaluate_h3ds(pred_mesh.vertices, gt_v, face_idx, head_region,
                      pred_landmarks=pred_landmarks or None, gt_landmarks=gt_lm if pred_landmarks else None)
    res = {}
    for region in ("head", "face"):
        for name in ("gt2pred", "pred2gt"):
            d = r[f"{region}_{name}"]
            res[f"{region}_{name}_mm"] = float(d.mean())
            res[f"{region}_{name}_median_mm"] = float(np.median(d))
        res[f"{region}_chamfer_mm"] = 0.5 * (res[f"{region}_gt2pred_mm"] + res[f"{region}_pred2gt_mm"])
    # the official face pred->gt runs from every predicted vertex (the rest of the head included) to the face
    # vertices; this one keeps the predicted vertices within the face sphere (after the face's alignment)
    center = fs.center_mm if fs.center_mm is not None else gt_v[face_idx].mean(axis=0)
    in_sphere = np.linalg.norm(r["face_pred"] - np.asarray(center, dtype=np.float64), axis=1) <= fs.radius_mm
    sel = r["face_pred2gt"][in_sphere]
    res["face_pred2gt_sphere_mm"] = float(sel.mean()) if len(sel) else float("nan")
    gt_face = np.zeros(len(gt_v), dtype=bool)
    gt_face[face_idx] = True
    M = r["head_transform"]
    steps = ("landmarks+" if r["coarse"] else "") + "h3ds-icp"
    res.update({
        "n_gt_vertices": int(len(gt_v)), "n_gt_face_vertices": int(len(face_idx)),
        "n_pred_vertices": int(len(pred_mesh.vertices)), "n_pred_face_vertices": int(len(pred_mesh.vertices)),
        "alignment": steps, "head_icp_region": r["head_icp_region"],
        "alignment_details": {"method": steps, "head_icp_region": r["head_icp_region"],
                              "head": _pose_summary(r["head_transform"]), "face": _pose_summary(r["face_transform"])},
        "transform": M.tolist(), "scale": _scale_of(M), "face_radius_mm": float(fs.radius_mm),
    })
    pred = pred_mesh.copy()
    pred.vertices = r["head_pred"]
    det = EvalDetails(gt_mesh=gt, pred_aligned=pred, gt2pred=r["head_gt2pred"], pred2gt=r["head_pred2gt"],
                      gt_face=gt_face, pred_face=np.ones(len(pred.vertices), dtype=bool), transform=M,
                      face_gt2pred=r["face_gt2pred"])
    return res, det


def _evaluate_exact(pred_mesh: trimesh.Trimesh, scene_or_gt, pred_landmarks: dict | None = None,
                    gt_landmarks: dict | None = None, face_sphere: FaceSphere | None = None, align: str = "auto",
                    icp_scale: bool = True, face_radius_mm: float = FACE_SPHERE_RADIUS_MM, icp_max_points: int = 8000,
                    icp_iterations: int = 400, icp_max_scale_change: float = 0.1, icp_target_samples: int = 100_000,
                    k: int = 12):
    """The ``exact`` protocol (module docstring); returns ``(metrics, EvalDetails)``.

    ``align``: "auto" (landmarks when both sides have them, then ICP), "icp", "landmarks", "landmarks+icp" or
    "none". ``icp_scale=False`` gives a rigid ICP; ``icp_max_scale_change`` bounds its scale relative to the
    starting pose (0.1: +-10 %); ``icp_max_points`` GT face points and ``icp_target_samples`` surface samples.
    ``alignment_details``: ``method``, ``accepted`` (whether the ICP was kept), ``scale``, ``rotation_deg``,
    ``translation_mm`` of the applied transform, and ``icp`` (the ICP's own pose, iterations, residual and face
    fit before/after). Face entries are NaN when the ground truth has no nose tip.
    """
    gt, gt_lm, fs, _ = _resolve_gt(scene_or_gt, gt_landmarks, face_sphere)
    if not isinstance(pred_mesh, trimesh.Trimesh) or len(pred_mesh.faces) == 0:
        raise ValueError("pred_mesh must be a trimesh.Trimesh with faces")
    if pred_landmarks is None and isinstance(pred_mesh.metadata, dict):
        pred_landmarks = pred_mesh.metadata.get("landmarks")
    gt_v = np.asarray(gt.vertices, dtype=np.float64)

    # face region of the ground truth
    if fs is not None and fs.vertex_indices is not None:
        center = np.asarray(fs.center_mm, dtype=np.float64)
        gt_face = np.zeros(len(gt_v), dtype=bool)
        gt_face[fs.vertex_indices] = True
    elif gt_lm and "nose_tip" in gt_lm:
        center = gt_v[int(gt_lm["nose_tip"])]
        gt_face = np.linalg.norm(gt_v - center, axis=1) <= face_radius_mm
    else:
        center, gt_face = None, np.ones(len(gt_v), dtype=bool)

    # 1. coarse alignment on landmarks
    align = align.lower()
    if align not in ("auto", "icp", "landmarks", "landmarks+icp", "none"):
        raise ValueError(f"unknown align {align!r}")
    M = np.eye(4)
    used = []
    pl, gl = _landmark_points(pred_mesh, pred_landmarks), _landmark_points(gt, gt_lm)
    common = [n for n in gl if n in pl]
    if align in ("landmarks", "landmarks+icp") and len(common) < 3:
        raise ValueError(f"landmark alignment needs >= 3 common landmarks, found {common}")
    if align in ("auto", "landmarks", "landmarks+icp") and len(common) >= 3:
        M = landmark_alignment([pl[n] for n in common], [gl[n] for n in common], scale=True)
        used.append("landmarks")
    pred = pred_mesh.copy()
    pred.vertices = transform_points(M, pred_mesh.vertices)

    # 2. similarity ICP of the GT face region onto the prediction, then move the prediction by the inverse.
    # Robust (trimmed, both directions, bounded scale, started from the current pose: the scene frame or the
    # landmark alignment) and guarded: the result is kept only if it does not worsen the face fit.
    icp_residual, icp_info = None, None
    if align in ("auto", "icp", "landmarks+icp"):
        rng = np.random.default_rng(0)
        src = gt_v[gt_face]
        if len(src) > icp_max_points:
            src = src[rng.choice(len(src), icp_max_points, replace=False)]
        pred_dense, pred_b = _dense_points(pred, icp_target_samples, with_boundary=True)
        reverse = None
        if center is not None:
            fmask = gt_face[np.asarray(gt.faces)].all(axis=1)
            gt_face_mesh = trimesh.Trimesh(gt_v, np.asarray(gt.faces)[fmask], process=False)
            gt_dense, gt_b = (_dense_points(gt_face_mesh, icp_target_samples // 2, with_boundary=True)
                              if fmask.any() else (gt_v[gt_face], np.zeros(int(gt_face.sum()), dtype=bool)))
            rev_pts = np.asarray(pred.vertices, dtype=np.float64)
            if len(rev_pts) > 4 * icp_max_points:
                rev_pts = rev_pts[rng.choice(len(rev_pts), 4 * icp_max_points, replace=False)]
            # a margin inside the sphere: predicted points near its border still find their GT partner
            reverse = (rev_pts, cKDTree(gt_dense), gt_dense, center, max(face_radius_mm - 5.0, 0.5 * face_radius_mm),
                       gt_b)
        T, icp_residual, iters = _robust_icp(src, cKDTree(pred_dense), pred_dense, scale=icp_scale,
                                             max_scale_change=icp_max_scale_change, max_iterations=icp_iterations,
                                             reverse=reverse, tgt_boundary=pred_b)
        pred_index, gt_index = _SurfaceIndex(pred, k), _SurfaceIndex(gt, k)

        def face_fit(Tm):
            """(face chamfer in GT mm, face gt->pred) of the prediction moved by inv(Tm); inf when no predicted
            vertex falls in the face region."""
            sc = _scale_of(Tm)
            d1, _ = pred_index.query(transform_points(Tm, gt_v[gt_face]))
            d1 = float(d1.mean()) / sc
            pre = transform_points(np.linalg.inv(Tm), pred.vertices)
            sel = (np.linalg.norm(pre - center, axis=1) <= face_radius_mm if center is not None
                   else np.ones(len(pre), dtype=bool))
            if not sel.any():
                return float("inf"), d1
            d2, _ = gt_index.query(pre[sel])
            return 0.5 * (d1 + float(d2.mean())), d1

        fit0, fit1 = face_fit(np.eye(4)), face_fit(T)
        accepted = bool(np.all(np.isfinite(T))) and fit1 <= fit0
        Tinv = np.linalg.inv(T)
        icp_info = {"accepted": accepted, "iterations": int(iters), "residual_mm": icp_residual,
                    "face_fit_before_mm": fit0[0], "face_fit_after_mm": fit1[0], **_pose_summary(Tinv)}
        if accepted:
            pred.vertices = transform_points(Tinv, pred.vertices)
            M = Tinv @ M
            used.append("icp" if icp_scale else "rigid-icp")

    # 3. distances
    gt2pred, _ = point_to_surface(gt_v, pred, k=k)
    pred2gt, _ = point_to_surface(pred.vertices, gt, k=k)
    pred_face = (np.linalg.norm(np.asarray(pred.vertices) - center, axis=1) <= face_radius_mm
                 if center is not None else np.ones(len(pred.vertices), dtype=bool))

    res = {}
    has_face = center is not None
    for region, gsel, psel in (("head", slice(None), slice(None)), ("face", gt_face, pred_face)):
        for name, d, sel in (("gt2pred", gt2pred, gsel), ("pred2gt", pred2gt, psel)):
            mean, med = _stats(d, sel) if (region == "head" or has_face) else (float("nan"), float("nan"))
            res[f"{region}_{name}_mm"] = mean
            res[f"{region}_{name}_median_mm"] = med
        res[f"{region}_chamfer_mm"] = 0.5 * (res[f"{region}_gt2pred_mm"] + res[f"{region}_pred2gt_mm"])
    s = _scale_of(M)
    details = {"method": "+".join(used) or "none", "requested": align,
               "accepted": icp_info["accepted"] if icp_info else None, **_pose_summary(M), "icp": icp_info}
    res.update({
        "n_gt_vertices": int(len(gt_v)), "n_gt_face_vertices": int(gt_face.sum()) if has_face else 0,
        "n_pred_vertices": int(len(pred.vertices)), "n_pred_face_vertices": int(pred_face.sum()) if has_face else 0,
        "alignment": "+".join(used) or "none", "alignment_details": details, "transform": M.tolist(), "scale": s,
        "icp_residual_mm": icp_residual, "face_radius_mm": float(face_radius_mm),
        "landmarks_used": common if "landmarks" in used else [],
    })
    return res, EvalDetails(gt_mesh=gt, pred_aligned=pred, gt2pred=gt2pred, pred2gt=pred2gt, gt_face=gt_face,
                            pred_face=pred_face, transform=M)
