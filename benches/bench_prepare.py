"""``headrecon-prepare`` on renders of known scenes: how well the cameras fitted to the faces match the true ones.

For each scene and view count, the chosen views' images (nothing else) go to :func:`headrecon.photos.prepare.prepare`,
once with the true focal length (``focal: true``) and once with the default (``focal: default``, 50 mm
equivalent). The prepared world (the fitted head's ICT frame) is aligned to the scene by the similarity between the
fitted head's six H3DS landmarks and the ground-truth ones with one or two posed views, of the camera centres with
three or more (evaluation only); then per posed view: rotation error
(degrees) and camera-centre error (mm); and, needing no alignment, the error of the relative rotation between
every pair of posed views (degrees). ``--reconstruct METHOD`` also runs that method (fast preset) on the
prepared scene and scores its mesh, mapped by the same similarity, with the official H3DS protocol.

    python benches/bench_prepare.py --scenes S/lps S/ict100000 S/ict100001 --views 1 3 8 --out prepare.json
    python benches/bench_prepare.py --scenes S/lps --views 3 --reconstruct sira --iterations 500 --out p_rec.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_methods import _metrics, _observed, machine  # noqa: E402


def camera_errors(cams_true, cams_fit, A) -> dict:
    """``A``: similarity prepared world -> scene. Rotation (deg) and centre (mm) error per view."""
    from scipy.spatial.transform import Rotation

    s = np.cbrt(np.linalg.det(A[:3, :3]))
    RA = A[:3, :3] / s
    rot, ctr = [], []
    for ct, cf in zip(cams_true, cams_fit):
        R_fit_scene = cf.R @ RA.T                    # world->camera rotation expressed in the scene
        rot.append(float(np.degrees(Rotation.from_matrix(R_fit_scene @ ct.R.T).magnitude())))
        c = A[:3, :3] @ cf.center + A[:3, 3]
        ctr.append(float(np.linalg.norm(c - ct.center)))
    rel = [float(np.degrees(Rotation.from_matrix((cams_fit[a].R @ cams_fit[b].R.T) @
                                                 (cams_true[a].R @ cams_true[b].R.T).T).magnitude()))
           for a in range(len(cams_fit)) for b in range(a + 1, len(cams_fit))]
    return {"rot_deg": [round(x, 3) for x in rot], "centre_mm": [round(x, 2) for x in ctr],
            "rot_deg_mean": round(float(np.mean(rot)), 3), "centre_mm_mean": round(float(np.mean(ctr)), 2),
            "relative_rot_deg_mean": round(float(np.mean(rel)), 3) if rel else None}


def run(args) -> list:
    from headrecon.data import load_scene
    from headrecon.photos.detect import H3DS_MEDIAPIPE
    from headrecon.photos.fit import umeyama
    from headrecon.photos.model import load_landmark_model
    from headrecon.photos.prepare import prepare
    from headrecon.recon.pipeline import load_views

    model = load_landmark_model()
    rows, out = [], Path(args.out) if args.out else None
    info = {"machine": machine(), "args": vars(args), "command": " ".join(sys.argv)}
    for scene_dir in args.scenes:
        for v in args.views:
            full, scene = load_views(scene_dir, str(v) if v != 8 else "all")
            V = scene.gt_mesh.vertices
            names = list(H3DS_MEDIAPIPE)
            gt = np.array([V[scene.landmarks[n]] for n in names])
            for focal in args.focal:
                with tempfile.TemporaryDirectory() as tmp:
                    photos = Path(tmp) / "photos"
                    photos.mkdir()
                    for k, view in enumerate(scene.views):
                        (photos / f"photo_{k:02d}{view.image_path.suffix}").write_bytes(view.image_path.read_bytes())
                    fpx = scene.views[0].camera.fx if focal == "true" else None
                    rep = prepare(photos, Path(tmp) / "scene", focal_px=fpx, log=lambda *_: None)
                    prep = load_scene(Path(tmp) / "scene")
                    w = np.asarray(rep["identity_weights"])
                    fitted = model.points(w)[[H3DS_MEDIAPIPE[n] for n in names]]
                    posed = [int(n.split("_")[1].split(".")[0]) for n in rep["views"]]
                    if len(posed) >= 3:  # cameras vs cameras: the similarity of the camera centres
                        A = umeyama(np.array([c.center for c in prep.cameras]),
                                    np.array([scene.views[k].camera.center for k in posed]), scale=True)
                        align = "camera centres"
                    else:  # one or two views: the fitted head's six landmarks onto the ground-truth ones
                        A, align = umeyama(fitted, gt, scale=True), "six landmarks"
                    err = camera_errors([scene.views[k].camera for k in posed], prep.cameras, A)
                    row = {"scene": Path(scene_dir).name, "views": v, "focal": focal, "posed": len(posed),
                           "alignment": align,
                           "left_out": rep["left_out_no_face"], "alignment_scale": round(float(np.cbrt(
                               np.linalg.det(A[:3, :3]))), 4), "focal_px_used": round(rep["focal_px"][0], 1),
                           "focal_px_true": round(scene.views[0].camera.fx, 1),
                           "reprojection_mm_median": rep["reprojection_mm_median"], **err}
                    if args.reconstruct and focal == args.focal[0]:
                        row.update(reconstruct(prep, args, A, scene, full))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if out:
                        out.write_text(json.dumps({**info, "rows": rows}, indent=1))
    return rows


def reconstruct(prep, args, A, scene, full) -> dict:
    import torch

    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    torch.manual_seed(0)
    cfg = make_config("fast", method=args.reconstruct, views="all", iterations=args.iterations,
                      mesh_resolution=args.mesh_res, refine_cameras=args.refine_cameras)
    tr = Trainer(cfg, prep, device="cpu")
    tr.train()
    mesh = tr.extract_mesh()
    mesh.apply_transform(A)
    res = _metrics(mesh, scene, _observed(scene, full), icp=False)
    return {"method": args.reconstruct, "refine_cameras": args.refine_cameras, "train_seconds": round(tr.elapsed, 1),
            "face_gt2pred_mm": res.get("face_gt2pred_mm"), "head_gt2pred_mm": res.get("head_gt2pred_mm"),
            "prior_frame": tr.method.info().get("prior_frame", {}).get("source")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", nargs="+", required=True)
    ap.add_argument("--views", nargs="+", type=int, default=[1, 3, 8])
    ap.add_argument("--focal", nargs="+", choices=["true", "default"], default=["true", "default"])
    ap.add_argument("--reconstruct", default=None, help="also run this method on the prepared scene")
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--refine-cameras", action="store_true", help="reconstruct with --refine-cameras")
    ap.add_argument("--mesh-res", type=int, default=256)
    ap.add_argument("--out", default=None)
    run(ap.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def test_prepare_bench_smoke(tmp_path):
    import pytest

    from headrecon import shared_dir
    from headrecon.photos.detect import mediapipe_available

    if shared_dir() is None or not mediapipe_available():
        pytest.skip("needs the shared data and mediapipe")
    from headrecon.data.ict import sample_ict_head
    from headrecon.data.synthetic import make_scene

    make_scene(sample_ict_head(100000), tmp_path / "s", views=[0.0, 30.0, -30.0], size=192, progress=False)
    rows = run(argparse.Namespace(scenes=[str(tmp_path / "s")], views=[3], focal=["true"], reconstruct=None,
                                  iterations=2, mesh_res=32, refine_cameras=False, out=str(tmp_path / "p.json")))
    assert rows[0]["posed"] == 3 and rows[0]["relative_rot_deg_mean"] < 15
