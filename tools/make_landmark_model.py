"""Build ``headrecon/assets/ict_mediapipe_landmarks.npz``: where each MediaPipe Face Mesh landmark lies on the
ICT-FaceKit head model (a sparse morphable model of the 468 face-mesh points, used to place a head in a scene
from photographs: :mod:`headrecon.photos.model`).

How: ICT-FaceKit training identities (seeds 0..N-1; held-out seeds start at 100000) are rendered at several yaws
with the procedural albedo; MediaPipe detects the 478 landmarks; each detection is cast as a ray onto the rendered
mesh, and the hit (triangle + barycentric coordinates, shared topology) is carried to the **mean** head. The
median over identities and views, snapped to the mean head's skin surface, is the landmark's place on the model;
the spread of the carried hits (median distance to that point, mm) says how stable the landmark is. Iris points
(468..477) hit the eye caps, which are not part of the linear model, and are left out.

Run (about 2 minutes on 2 CPU cores): ``python tools/make_landmark_model.py --identities 24``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from headrecon.data.ict import cap_loops, ict_vertices_cm, ict_weights, load_ict_basis, procedural_albedo
from headrecon.data.synthetic import MeshRenderer, default_distance_focal, fit_scale_mat, orbit_cameras
from headrecon.photos.detect import N_MEDIAPIPE, detect_landmarks


def head(w, basis, albedo_seed):
    V, F, caps = cap_loops(ict_vertices_cm(w, basis) * 10.0, basis.faces, rings=5)
    m = trimesh.Trimesh(V, F, process=False)
    from headrecon.data.ict import _classify_caps
    cols = procedural_albedo(V, basis.landmarks, _classify_caps(caps, V, basis.landmarks), seed=albedo_seed)
    rgba = np.concatenate([np.round(cols * 255), np.full((len(V), 1), 255)], axis=1).astype(np.uint8)
    m.visual = trimesh.visual.ColorVisuals(m, vertex_colors=rgba)
    return m


def closest_triangle(mesh, vtree, vert_faces, p, k=16):
    """(triangle index, closest point) of ``mesh`` to ``p``, searched among the triangles around the ``k``
    nearest vertices."""
    _, vi = vtree.query(p, k=k)
    cand = np.unique(np.concatenate([vert_faces[v] for v in np.atleast_1d(vi)]))
    cps = trimesh.triangles.closest_point(mesh.triangles[cand], np.repeat(p[None], len(cand), 0))
    j = int(np.argmin(np.linalg.norm(cps - p, axis=1)))
    return int(cand[j]), cps[j]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--identities", type=int, default=24)
    ap.add_argument("--yaws", default="-70,-52.5,-35,-17.5,0,17.5,35,52.5,70")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "headrecon/assets/ict_mediapipe_landmarks.npz")
    args = ap.parse_args(argv)
    basis = load_ict_basis()
    n_skin = len(basis.mean_cm)
    mean_head = head(np.zeros(1), basis, 0)
    Vmean = np.asarray(mean_head.vertices)
    Fall = np.asarray(mean_head.faces)
    yaws = [float(y) for y in args.yaws.split(",")]
    carried = [[] for _ in range(N_MEDIAPIPE)]
    n_views = n_found = 0
    for seed in range(args.identities):
        mesh = head(ict_weights(seed), basis, seed)
        S = fit_scale_mat(mesh.vertices)
        dist, focal = default_distance_focal(S[0, 0], args.size)
        cams = orbit_cameras(S[:3, 3], dist, yaws, [0.0], focal, args.size, args.size)
        r = MeshRenderer(mesh)
        images = [r.render(c).image for c in cams]
        dets = detect_landmarks(images)
        inter = trimesh.ray.ray_pyembree.RayMeshIntersector(mesh) if hasattr(trimesh.ray, "ray_pyembree") else mesh.ray
        for cam, det in zip(cams, dets):
            n_views += 1
            if det is None:
                continue
            n_found += 1
            uv = det.points
            hom = np.concatenate([uv, np.ones((len(uv), 1))], 1)
            d = np.linalg.solve(cam.K, hom.T).T @ cam.R
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            o = np.broadcast_to(cam.center, d.shape).copy()
            locs, ray_idx, tri = inter.intersects_location(o, d, multiple_hits=False)
            for loc, i, f in zip(locs, ray_idx, tri):
                tri_v = mesh.vertices[Fall[f]]
                b = trimesh.triangles.points_to_barycentric(tri_v[None], loc[None])[0]
                carried[i].append(b @ Vmean[Fall[f]])
        print(f"identity {seed}: faces found in {sum(d is not None for d in dets)}/{len(dets)} views", flush=True)
    skin = trimesh.Trimesh(Vmean[:n_skin], basis.faces, process=False)
    vtree = cKDTree(skin.vertices)
    vert_faces = [[] for _ in range(n_skin)]
    for f, tri in enumerate(basis.faces):
        for v in tri:
            vert_faces[v].append(f)
    tri_idx = np.full(N_MEDIAPIPE, -1, dtype=np.int32)
    bary = np.zeros((N_MEDIAPIPE, 3), dtype=np.float32)
    spread = np.full(N_MEDIAPIPE, np.inf, dtype=np.float32)
    for i in range(468):
        if len(carried[i]) < max(3, n_found // 2):
            continue
        P = np.array(carried[i])
        med = np.median(P, axis=0)
        f, cp = closest_triangle(skin, vtree, vert_faces, med)
        b = trimesh.triangles.points_to_barycentric(skin.triangles[[f]], cp[None])[0]
        tri_idx[i], bary[i] = f, np.clip(b, 0, 1) / np.clip(b, 0, 1).sum()
        spread[i] = float(np.median(np.linalg.norm(P - cp, axis=1)))
    ok = tri_idx >= 0
    Fi = basis.faces[np.maximum(tri_idx, 0)]                               # [478, 3]
    mean_mm = np.einsum("nk,nkc->nc", bary, basis.mean_cm[Fi] * 10.0)
    modes_mm = np.einsum("nk,mnkc->mnc", bary, basis.modes_cm[:, Fi] * 10.0)
    tri = basis.mean_cm[basis.faces[np.maximum(tri_idx, 0)]] * 10.0               # [478, 3, 3]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)   # outward (consistent winding)
    normal[~ok] = 0.0
    mean_mm[~ok] = 0.0
    modes_mm[:, ~ok] = 0.0
    info = {"identities": args.identities, "yaws_deg": yaws, "size_px": args.size, "views": n_views,
            "views_with_face": n_found, "landmarks_placed": int(ok.sum()),
            "spread_mm_median": float(np.median(spread[ok])), "tool": "tools/make_landmark_model.py",
            "source": "ICT-FaceKit (MIT) identity basis; MediaPipe Face Mesh 0.10.21 (Apache-2.0) detections"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, mean_mm=mean_mm.astype(np.float32), modes_mm=modes_mm.astype(np.float16),
                        triangle=tri_idx, barycentric=bary,
                        normal=normal.astype(np.float32), spread_mm=spread, info=np.array(json.dumps(info)))
    print(json.dumps(info, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
