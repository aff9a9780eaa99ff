"""Face landmarks on rendered heads with a known ground truth: detection rate per yaw, the six H3DS landmarks'
2D error, and the 3D error (mm) of the six landmarks that :func:`headrecon.photos.fit.fit_head` gives with the true
cameras (triangulated from the views that face them; from the fitted model where fewer than two views do).

Each source (the Lee Perry-Smith scan, held-out ICT heads) is rendered by ``make_scene`` at yaws -90..90 deg
(step 15) and pitches 0 and +-20, at ``--size`` pixels; MediaPipe runs on every image. Triangulation uses the
views of a yaw set (``3``: 0 and +-45; ``5``: 0, +-30, +-60; ``all``) at pitch 0.

    python benches/bench_landmarks.py --sources lps 100000 100001 --size 256 --out landmarks.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_methods import machine  # noqa: E402

YAW_SETS = {"3": [0.0, 45.0, -45.0], "5": [0.0, 30.0, -30.0, 60.0, -60.0], "all": None}


def run(args) -> list:
    from headrecon.data.synthetic import make_scene
    from headrecon.photos.detect import H3DS_MEDIAPIPE, detect_landmarks
    from headrecon.photos.fit import fit_head

    yaws = [float(y) for y in range(-90, 91, 15)]
    rows = []
    for src in args.sources:
        if src == "lps":
            from headrecon.data.scans import load_lee_perry_smith
            mesh = load_lee_perry_smith()
        else:
            from headrecon.data.ict import sample_ict_head
            mesh = sample_ict_head(int(src))
        sc = make_scene(mesh, None, views=yaws, pitch=[0.0, 20.0, -20.0], size=args.size, progress=False)
        dets = detect_landmarks([v.image for v in sc.views])
        V = sc.gt_mesh.vertices
        gt = {k: V[sc.landmarks[k]] for k in H3DS_MEDIAPIPE}
        per_yaw = {}
        for v, d in zip(sc.views, dets):
            y = v.camera.meta["yaw_deg"]
            rec = per_yaw.setdefault(f"{y:+.0f}", {"found": 0, "views": 0, "err_px": []})
            rec["views"] += 1
            if d is None:
                continue
            rec["found"] += 1
            if abs(y) <= 30:  # all six are visible: their 2D error against the projected ground truth
                for k, i in H3DS_MEDIAPIPE.items():
                    rec["err_px"].append(float(np.linalg.norm(d.points[i] - v.camera.project(gt[k][None])[0])))
        det = {y: {"rate": r["found"] / r["views"],
                   "six_err_px": round(float(np.mean(r["err_px"])), 2) if r["err_px"] else None}
               for y, r in per_yaw.items()}
        mm_per_px = float(np.linalg.norm(sc.views[0].camera.center - sc.scale_mat[:3, 3]) / sc.views[0].camera.fx)
        tri = {}
        for name, ys in YAW_SETS.items():
            pick = [k for k, v in enumerate(sc.views) if v.camera.meta["pitch_deg"] == 0.0
                    and (ys is None or v.camera.meta["yaw_deg"] in ys)]
            fit = fit_head([sc.views[k].camera for k in pick], [dets[k] for k in pick])
            e = {k: float(np.linalg.norm(fit.landmarks[k] - gt[k])) for k in H3DS_MEDIAPIPE}
            tri[name] = {"views": len(pick), "views_with_face": int(sum(dets[k] is not None for k in pick)),
                         "six_err_mm": {k: round(v, 2) for k, v in e.items()},
                         "six_err_mm_mean": round(float(np.mean(list(e.values()))), 2) if e else None}
        row = {"source": src, "size": args.size, "mm_per_px_at_head": round(mm_per_px, 3), "detection": det,
               "triangulation": tri}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "rows": rows},
                                             indent=1))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", nargs="+", default=["lps", "100000", "100001"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default=None)
    run(ap.parse_args(argv))
    return 0


def test_landmark_bench_smoke(tmp_path):
    import pytest

    from headrecon import shared_dir
    from headrecon.photos.detect import mediapipe_available

    if shared_dir() is None or not mediapipe_available():
        pytest.skip("needs the shared data and mediapipe")
    rows = run(argparse.Namespace(sources=["100000"], size=128, out=str(tmp_path / "l.json")))
    assert rows[0]["detection"]["+0"]["rate"] > 0


if __name__ == "__main__":
    sys.exit(main())
