"""``headrecon-eval PRED_MESH SCENE_DIR``: metrics of a reconstruction against a scene's ground truth, with the
official H3DS protocol (default) or the ``exact`` one (:mod:`headrecon.eval.metrics`).

Writes ``metrics.json``, ``gt_error.ply`` (ground truth coloured by its distance to the prediction),
``pred_aligned_error.ply`` (aligned prediction coloured by its distance to the ground truth) and ``heatmap.png``
into ``--out`` (default: ``<pred name>_eval/`` next to the prediction). Also runnable as
``python -m headrecon.eval.cli``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..cli import add_debug_flag, run_command

__all__ = ["main", "build_parser", "read_pred_landmarks"]


def read_pred_landmarks(path) -> dict:
    """Landmarks of the prediction: JSON (name -> vertex index or [x, y, z]) or ``name value...`` text lines."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text())
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        vals = [float(x) for x in parts[1:]]
        out[parts[0]] = int(vals[0]) if len(vals) == 1 else vals
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="headrecon-eval",
        description="Evaluate a predicted head mesh against a scene's ground truth. --protocol h3ds (default) is "
                    "the official H3DS evaluation (the numbers of the H3D-Net / SIRA++ tables): optional landmark "
                    "Procrustes, trimesh ICP (20 iterations, with scale) of the ground truth's face/ears/neck "
                    "region (regions/face.txt; the face sphere without it) or face sphere (95 mm around the nose "
                    "tip) onto the predicted vertices, nearest-vertex distances in mm. --protocol exact is a second "
                    "opinion: a robust, trimmed, scale-bounded ICP and exact point-to-surface distances (--align "
                    "none: in the scene frame).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("pred_mesh", type=Path, help="predicted mesh (obj/ply/glb...)")
    ap.add_argument("scene_dir", type=Path, help="scene folder with full_head.obj (mm) and landmarks.txt")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: <pred>_eval next to the mesh)")
    ap.add_argument("--pred-frame", choices=["auto", "mm", "unit"], default="auto",
                    help="frame of the prediction: scene mm, or the normalised unit sphere (mapped with scale_mat); "
                         "auto = unit when the mesh fits in a radius-2 ball")
    ap.add_argument("--pred-landmarks", type=Path, default=None,
                    help="landmarks of the prediction (json or 'name index|x y z' lines) for coarse alignment, "
                         "e.g. a prior method's run folder's landmarks.json (the official protocol's "
                         "landmarks_pred)")
    ap.add_argument("--protocol", choices=["h3ds", "exact"], default="h3ds",
                    help="h3ds: the official H3DS evaluation; exact: robust ICP + exact point-to-surface distances")
    ap.add_argument("--align", choices=["auto", "icp", "landmarks", "landmarks+icp", "none"], default="auto",
                    help="alignment before measuring (--protocol exact only)")
    ap.add_argument("--rigid", action="store_true", help="rigid ICP, no scale (--protocol exact only)")
    ap.add_argument("--vmax", type=float, default=5.0, help="error (mm) at the top of the colour scale")
    ap.add_argument("--size", type=int, default=320, help="size of each heat-map view (pixels)")
    ap.add_argument("--no-images", action="store_true", help="skip the PLY and PNG outputs")
    add_debug_flag(ap)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("headrecon-eval", lambda: _main(args), argv)


def _main(args) -> int:
    from ..data import load_scene
    from ..data.meshio import load_mesh
    from .metrics import evaluate
    from .visualize import render_heatmap, save_error_ply

    t0 = time.time()
    pred = load_mesh(args.pred_mesh)
    scene = load_scene(args.scene_dir, load_images=False)
    if scene.gt_mesh is None:
        raise FileNotFoundError(f"{args.scene_dir / 'full_head.obj'}: ground-truth mesh not found")
    frame = args.pred_frame
    if frame == "auto":
        frame = "unit" if np.linalg.norm(pred.vertices, axis=1).max() < 2.0 else "mm"
    if frame == "unit":
        pred.vertices = scene.to_mm(pred.vertices)
    pred_lm = read_pred_landmarks(args.pred_landmarks) if args.pred_landmarks else None
    if pred_lm and frame == "unit":
        pred_lm = {k: (scene.to_mm(np.asarray(v, dtype=float))[0] if np.ndim(v) else v) for k, v in pred_lm.items()}
    exact = {"align": args.align, "icp_scale": not args.rigid} if args.protocol == "exact" else {}
    if args.protocol == "h3ds" and (args.align != "auto" or args.rigid):
        raise ValueError("--align and --rigid apply to --protocol exact only")
    metrics, det = evaluate(pred, scene, pred_landmarks=pred_lm, protocol=args.protocol, observed_from=scene,
                            return_details=True, **exact)
    metrics.update(pred_mesh=str(args.pred_mesh), scene=str(args.scene_dir), pred_frame=frame,
                   seconds=round(time.time() - t0, 2))
    out = args.out or args.pred_mesh.parent / f"{args.pred_mesh.stem}_eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if not args.no_images:
        save_error_ply(det.gt_mesh, det.gt2pred, out / "gt_error.ply", vmax=args.vmax)
        save_error_ply(det.pred_aligned, det.pred2gt, out / "pred_aligned_error.ply", vmax=args.vmax)
        title = (f"face: gt->pred {metrics['face_gt2pred_mm']:.2f} mm, pred->gt {metrics['face_pred2gt_mm']:.2f} mm"
                 f" | head: gt->pred {metrics['head_gt2pred_mm']:.2f} mm, pred->gt {metrics['head_pred2gt_mm']:.2f} mm")
        render_heatmap(det.gt_mesh, det.gt2pred, det.pred_aligned, det.pred2gt, out / "heatmap.png",
                       vmax=args.vmax, size=args.size, title=title)
    for k in ("face_gt2pred_mm", "face_pred2gt_mm", "head_gt2pred_mm", "head_pred2gt_mm", "face_gt2pred_observed_mm",
              "head_gt2pred_observed_mm"):
        print(f"{k:18s} {metrics[k]:.3f}")
    print(f"protocol {metrics['protocol']}" + (f", head aligned on regions/{metrics['head_icp_region']}.txt"
                                               if metrics["protocol"] == "h3ds" else ""))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
