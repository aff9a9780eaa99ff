"""Where a mesh's head error lies: the official H3DS ``gt->pred`` of every ground-truth vertex, by height band.

    python tools/error_bands.py SCENE MESH [MESH ...] [--bands 8] [--frame official|scene] [--icp-without-ears]
        [--out bands.json] [--heatmaps DIR]

For each mesh (in the scene's mm, as ``headrecon-reconstruct`` writes it): the official protocol's head alignment
and per-vertex ``gt->pred`` (:func:`headrecon.eval.metrics.evaluate`), then the ground truth's vertices in equal
height bands (scene +Y up, lowest band first): vertex count, mean error, the band's share of the head's summed
error and the vertices over 5 mm; ``align_scale``: the scale of the head's alignment (the official ICP
scales the prediction, and a scale off by a few per cent moves the parts far from the face, the bust, by
millimetres). Two meshes of one scene compare band by band (same vertices, same bands):
``head_gt2pred_mm`` is the vertex-weighted mean of the bands' means. ``--heatmaps`` also writes each mesh's error
heat map (:func:`headrecon.eval.visualize.render_heatmap`).

Each mesh also gets the same figures by **part** of the head (``parts``; where the scene has its six landmarks), in
the landmark frame of :func:`headrecon.data.regions.landmark_frame` (origin between the eyes, up, front): ``face``
(within 95 mm of the nose tip, the H3DS face sphere), ``ears`` (outside the face, from 70 mm below to 35 mm above
the eye line, 30-120 mm behind the eyes and more than 55 mm to either side: each ear and the skin around it),
``neck_bust`` (the rest below 40 mm under the mouth corners) and ``scalp_back`` (the rest). A scan's vertices are
not spread evenly (the Lee Perry-Smith scan has 38 % of its head's vertices in the ``ears`` boxes), so the band or
part that carries the head error is the one with the largest ``head_mm`` (its summed error over the head's vertex
count: the bands', or the parts', ``head_mm`` add up to ``head_gt2pred_mm``), not the one with the largest mean.

``--frame scene`` skips the alignment and measures exact point-to-surface distances in the scene's own frame
(:func:`headrecon.eval.metrics.evaluate` with ``protocol="exact", align="none"``): for synthetic scenes, whose
frame is the ground truth's, this separates a shape error from what the official ICP (which scales) adds. Each
band also gives ``outside``: the share of its ground-truth vertices that lie outside the (aligned) prediction, i.e.
where the prediction is too thin or too short (None when the predicted mesh is not watertight).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def bands(scene, mesh, n_bands: int = 8, frame: str = "official", icp_without_ears: bool = False) -> dict:
    """The per-band figures of one mesh against ``scene`` (module docstring); also ``errors`` (per GT vertex).
    ``frame``: "official" (the H3DS protocol's alignment and nearest-vertex distances) or "scene" (none, exact
    distances). ``icp_without_ears`` (official frame; a diagnostic, not the protocol): the head's ICP region
    without the ``ears`` part."""
    from headrecon.eval.metrics import evaluate

    if frame not in ("official", "scene"):
        raise ValueError(f"frame must be official or scene, got {frame!r}")
    opts = {} if frame == "official" else {"protocol": "exact", "align": "none"}
    if icp_without_ears:
        if frame != "official" or scene.face_region is None or not scene.landmarks:
            raise ValueError("icp_without_ears needs the official frame and a scene with regions/face.txt and "
                             "landmarks")
        region = np.asarray(scene.face_region)
        opts["face_region"] = region[~parts(scene.gt_mesh.vertices, scene.landmarks)["ears"][region]]
    res, det = evaluate(mesh, scene, return_details=True, **opts)
    gt = np.asarray(det.gt_mesh.vertices)
    y = gt[:, 1]
    d = np.asarray(det.gt2pred)
    outside = ~det.pred_aligned.contains(gt) if det.pred_aligned.is_watertight else None
    edges = np.linspace(y.min(), y.max(), n_bands + 1)
    idx = np.clip(np.digitize(y, edges) - 1, 0, n_bands - 1)
    def figures(s: np.ndarray) -> dict:
        return {"n": int(s.sum()), "mean_mm": round(float(d[s].mean()), 3) if s.any() else None,
                "head_mm": round(float(d[s].sum() / d.size), 3), "share": round(float(d[s].sum() / d.sum()), 4),
                "over_5mm": int((d[s] > 5.0).sum()),
                "outside": round(float(outside[s].mean()), 3) if outside is not None and s.any() else None}

    rows = [dict(y_mm=[round(float(edges[b]), 1), round(float(edges[b + 1]), 1)], **figures(idx == b))
            for b in range(n_bands)]
    same = gt.shape == np.asarray(scene.gt_mesh.vertices).shape and np.array_equal(gt, scene.gt_mesh.vertices)
    masks = parts(gt, scene.landmarks) if scene.landmarks and same else None  # landmark indices need its vertices
    scale = float(np.cbrt(np.linalg.det(np.asarray(det.transform)[:3, :3])))  # the alignment's scale (1: none)
    return {"frame": frame, "icp_without_ears": icp_without_ears, "align_scale": round(scale, 4),
            "face_gt2pred_mm": round(res["face_gt2pred_mm"], 3),
            "head_gt2pred_mm": round(res["head_gt2pred_mm"], 3), "bands": rows,
            "parts": None if masks is None else [dict(part=k, **figures(m)) for k, m in masks.items()],
            "errors": d, "details": det}


def parts(vertices, landmarks) -> dict:
    """Boolean masks of the head's parts (module docstring) over ``vertices`` (mm), from the six ``landmarks``
    (name -> vertex index)."""
    from headrecon.data.regions import landmark_frame

    V = np.asarray(vertices, dtype=np.float64)
    eyes, x, up, front = landmark_frame(V, landmarks)
    rel = V - eyes
    side, h, f = np.abs(rel @ x), rel @ up, rel @ front
    mouth_h = (0.5 * (V[int(landmarks["right_lips"])] + V[int(landmarks["left_lips"])]) - eyes) @ up
    face = np.linalg.norm(V - V[int(landmarks["nose_tip"])], axis=1) <= 95.0
    ears = ~face & (h > -70.0) & (h < 35.0) & (f < -30.0) & (f > -120.0) & (side > 55.0)
    low = ~face & ~ears & (h < mouth_h - 40.0)
    return {"face": face, "ears": ears, "neck_bust": low, "scalp_back": ~face & ~ears & ~low}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scene", help="scene folder with ground truth (full_head.obj, regions/, landmarks.txt)")
    ap.add_argument("meshes", nargs="+", help="meshes in the scene's mm (e.g. a run folder's mesh.ply)")
    ap.add_argument("--bands", type=int, default=8, help="height bands (default 8)")
    ap.add_argument("--frame", choices=["official", "scene"], default="official",
                    help="official: the H3DS protocol's alignment and distances; scene: no alignment, exact "
                         "point-to-surface distances (synthetic scenes, whose frame is the ground truth's)")
    ap.add_argument("--icp-without-ears", action="store_true",
                    help="official frame, a diagnostic (not the protocol): align the head on its ICP region "
                         "(regions/face.txt) without the ears part, to see how much of the alignment's scale the "
                         "ears set")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--heatmaps", default=None, help="write MESH-NAME_heat.png error heat maps into this folder")
    args = ap.parse_args(argv)
    if args.bands < 1:
        ap.error("--bands must be >= 1")
    if args.icp_without_ears and args.frame != "official":
        ap.error("--icp-without-ears changes the official alignment: it needs --frame official")
    import trimesh

    from headrecon.data import load_scene

    scene = load_scene(args.scene)
    if scene.gt_mesh is None:
        ap.error(f"{args.scene}: the scene has no ground truth (full_head.obj)")
    out = {"scene": Path(args.scene).name, "meshes": {}}
    for p in args.meshes:
        mesh = trimesh.load(p, process=False, force="mesh")
        r = bands(scene, mesh, args.bands, args.frame, args.icp_without_ears)
        print(f"{Path(p).name}: face {r['face_gt2pred_mm']:.2f}, head {r['head_gt2pred_mm']:.2f} mm (gt->pred), "
              f"head alignment's scale {r['align_scale']:.4f}")
        print("  band y (mm) / part    n   mean   head  share  >5mm outside")
        for b in r["bands"] + (r["parts"] or []):
            mean = f"{b['mean_mm']:6.2f}" if b["mean_mm"] is not None else "     -"
            outside = f"{100 * b['outside']:6.0f}%" if b["outside"] is not None else "      -"
            name = f"{b['y_mm'][0]:7.1f} .. {b['y_mm'][1]:7.1f}" if "y_mm" in b else f"  {b['part']:<16}"
            print(f"  {name} {b['n']:6d} {mean} {b['head_mm']:6.2f} {100 * b['share']:5.1f}% {b['over_5mm']:5d} "
                  f"{outside}")
        if args.heatmaps:
            from headrecon.eval.visualize import render_heatmap

            det = r["details"]
            path = Path(args.heatmaps) / (Path(p).stem + "_heat.png")
            render_heatmap(det.gt_mesh, r["errors"], det.pred_aligned, det.pred2gt, path=path, size=240, vmax=8.0,
                           title=f"{Path(p).name} on {Path(args.scene).name}: gt->pred, "
                                 + ("official alignment" if args.frame == "official" else "scene frame"))
        out["meshes"][Path(p).name] = {k: v for k, v in r.items() if k not in ("errors", "details")}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
