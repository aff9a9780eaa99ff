"""Head label maps made from photos (:mod:`headrecon.photos.semantics`, ``--method wang`` without ``semantic/``)
against the exact label maps of rendered heads with hair (``headrecon-make-scene --hair``): the share of head pixels
that get a label, the share of those that agree, and per class the share of its pixels that are right, for several
``hair_margin`` values.

With ``--proxy-radii``: instead, how far ``--method wang``'s facial proxy (:func:`headrecon.photos.proxy.face_proxy`,
fitted to the scene's photos) lies from the ground-truth surface, for each radius around the nose tip (``0`` = the
whole face mesh); the ground truth serves this measurement only.

Usage (docs/methods/wang.md)::

    python benches/bench_labels.py --scenes S/ict100005_medium --views 0 2 22 3 21 --margins 0.05 0.15 0.3
    python benches/bench_labels.py --scenes S/ict100005_medium --views 12 --proxy-radii 50 60 70 80 0
    # pytest smoke (needs MediaPipe and the shared data): pytest benches/bench_labels.py
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def score(scene, margins) -> list:
    from headrecon.data.semantics import IGNORE_LABEL, SEMANTIC_CLASSES
    from headrecon.photos.detect import detect_landmarks
    from headrecon.photos.semantics import labels_from_landmarks

    dets = detect_landmarks([v.image for v in scene.views])
    rows = []
    for margin in margins:
        for v, det in zip(scene.views, dets):
            if det is None:
                continue
            m = labels_from_landmarks(det.points, v.mask, hair_margin=margin)
            known = (m != IGNORE_LABEL) & v.mask
            row = {"view": int(v.index), "margin": margin, "labelled": float(known.sum() / v.mask.sum()),
                   "agree": float((m[known] == v.semantic[known]).mean())}
            for c, name in enumerate(SEMANTIC_CLASSES[1:], 1):
                sel = known & (m == c)
                if sel.any():
                    row[f"{name}_right"] = float((v.semantic[sel] == c).mean())
            rows.append(row)
    return rows


def proxy_distances(scene, radii) -> list:
    """Per radius (mm; 0 = the whole face mesh): triangles, median and 90th-percentile distance (mm) of 20,000
    points drawn on the proxy to the ground-truth surface."""
    import torch
    from scipy.spatial import cKDTree

    from headrecon.photos.proxy import face_proxy

    tree = cKDTree(scene.gt_mesh.sample(300000, seed=0))
    rows = []
    for r in radii:
        p = face_proxy(scene, radius_mm=r or None)
        d, _ = tree.query(p.sample(20000, torch.Generator().manual_seed(0)))
        rows.append({"radius_mm": r or None, "triangles": int(len(p.triangles)), "median_mm": round(float(np.median(d)), 2),
                     "p90_mm": round(float(np.percentile(d, 90)), 2)})
    return rows


def main(argv=None) -> int:
    from headrecon.data import load_scene

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", required=True)
    ap.add_argument("--views", nargs="+", default=["0", "2", "22", "3", "21"],
                    help="view indices, or one count (3, 12, ...)")
    ap.add_argument("--margins", nargs="+", type=float, default=[0.05, 0.15, 0.3])
    ap.add_argument("--proxy-radii", nargs="+", type=float, default=None)
    a = ap.parse_args(argv)
    views = a.views[0] if len(a.views) == 1 else [int(v) for v in a.views]
    if a.proxy_radii:
        for sd in a.scenes:
            for row in proxy_distances(load_scene(sd, views=views), a.proxy_radii):
                print(json.dumps({"scene": sd, **row}))
        return 0
    for sd in a.scenes:
        rows = score(load_scene(sd, views=views, load_gt_mesh=False), a.margins)
        for margin in a.margins:
            sel = [r for r in rows if r["margin"] == margin]
            keys = sorted({k for r in sel for k in r} - {"view", "margin"})
            mean = {k: round(float(np.mean([r[k] for r in sel if k in r])), 3) for k in keys}
            print(json.dumps({"scene": sd, "margin": margin, "views": len(sel), **mean}))
    return 0


def test_bench_labels_smoke(tmp_path):
    import pytest

    from headrecon import shared_dir
    from headrecon.photos.detect import mediapipe_available

    if shared_dir() is None or not mediapipe_available():
        pytest.skip("needs the shared data and mediapipe")
    from headrecon.data import load_scene
    from headrecon.data.make_scene import main as make

    out = tmp_path / "s"
    assert make(["--ict", "100002", "--hair", "short", "--views", "8", "--size", "192", "--hair-voxel", "3",
                 "--quiet", "--out", str(out)]) == 0
    rows = score(load_scene(out, views=[0, 1]), [0.3])
    assert rows and all(0 < r["labelled"] <= 1 and r["agree"] > 0.7 for r in rows)


if __name__ == "__main__":
    sys.exit(main())
