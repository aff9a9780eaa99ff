"""Where on the head the error is: ``gt->pred`` distance (mm) per region of the ground truth, for saved meshes.

A diagnostic beside ``bench_methods.py`` (whose ``--save-meshes`` writes the meshes, in the scene frame and mm).
Regions of the ground-truth vertices (the frame is +Y up, as in H3DS and ``headrecon-make-scene`` scenes):

* ``face``: within 95 mm of the nose tip (the protocol's face region);
* ``head``: the rest above ``--neck-mm`` (100) below the nose tip: scalp, sides, ears, back of the head;
* ``neck+``: below that height: neck, and shoulders / chest where the scan has a bust;
* ``front`` / ``back`` of the whole mesh split at the vertices' mean depth (+Z faces the camera of yaw 0).

Each cell is the mean over the region's vertices, with the region's share of the vertices; ``all`` is the
protocol's ``head gt->pred`` in the scene frame (``align="none"``, as ``bench_methods.py`` reports it).

    python benches/bench_regions.py SCENE pred1.ply pred2.ply ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def region_masks(vertices, nose_mm, face_radius_mm: float = 95.0, neck_mm: float = 100.0) -> dict:
    """Boolean masks over ground-truth ``vertices [N,3]`` (mm, +Y up) for the regions of the module docstring."""
    v = np.asarray(vertices, dtype=np.float64)
    nose = np.asarray(nose_mm, dtype=np.float64)
    face = np.linalg.norm(v - nose, axis=1) <= face_radius_mm
    low = v[:, 1] < nose[1] - neck_mm
    front = v[:, 2] >= v[:, 2].mean()
    return {"face": face, "head": ~face & ~low, "neck+": low, "front": front, "back": ~front}


def region_errors(scene_dir, mesh_paths, neck_mm: float = 100.0) -> list[dict]:
    import trimesh

    from headrecon.data.scene import load_gt
    from headrecon.eval.metrics import point_to_surface

    gt, _, face_sphere = load_gt(scene_dir)
    if gt is None or face_sphere is None:
        raise ValueError(f"{scene_dir}: needs full_head.obj and a face region (landmarks.txt / regions/)")
    v = np.asarray(gt.vertices)
    masks = region_masks(v, face_sphere.center_mm, face_sphere.radius_mm, neck_mm)
    rows = []
    for path in mesh_paths:
        d, _ = point_to_surface(v, trimesh.load(path, process=False))
        row = {"mesh": Path(path).name, "all": float(d.mean())}
        row.update({k: float(d[m].mean()) if m.any() else float("nan") for k, m in masks.items()})
        row["share"] = {k: float(m.mean()) for k, m in masks.items()}
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene", help="scene folder with full_head.obj and landmarks")
    ap.add_argument("meshes", nargs="+", help="predicted meshes (scene frame, mm)")
    ap.add_argument("--neck-mm", type=float, default=100.0, help="height below the nose tip where neck+ starts")
    args = ap.parse_args(argv)
    rows = region_errors(args.scene, args.meshes, args.neck_mm)
    keys = ["all", "face", "head", "neck+", "front", "back"]
    share = rows[0]["share"] if rows else {}
    print("| mesh | " + " | ".join(k if k == "all" else f"{k} ({share[k] * 100:.0f} %)" for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in rows:
        print(f"| {r['mesh']} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + " |")
    return 0


# ---------------------------------------------------------------------------------------------- pytest smoke
def test_region_masks_partition():
    v = np.array([[0.0, 0.0, 100.0], [0.0, 50.0, -80.0], [0.0, -150.0, 0.0], [10.0, 0.0, 90.0]])
    m = region_masks(v, nose_mm=[0.0, 0.0, 100.0])
    assert m["face"].tolist() == [True, False, False, True]
    assert m["head"].tolist() == [False, True, False, False]
    assert m["neck+"].tolist() == [False, False, True, False]
    assert (m["face"] | m["head"] | m["neck+"]).all() and not (m["face"] & m["neck+"]).any()
    assert (m["front"] ^ m["back"]).all()


if __name__ == "__main__":
    sys.exit(main())
