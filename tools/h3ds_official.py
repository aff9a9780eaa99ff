"""Run the official H3DS evaluation (PyPI ``h3ds`` 0.4.0, ``H3DS.evaluate_scene``) on a folder of test cases and
print its figures as JSON. Runs in the side environment made by ``tools/h3ds_venv.sh`` (the package needs
``numpy<1.24``), never in headrecon's own; ``tests/test_h3ds_official.py`` compares our protocol with it.

    python tools/h3ds_official.py CASES_DIR

``CASES_DIR/<case>/`` holds an H3DS scene's ground truth (``full_head.obj`` without comments, ``landmarks.txt``,
``regions/face.txt``, ``regions/face_sphere.txt``) and the prediction ``pred.ply``. For each case it prints the
means of the official ``chamfer_gt_pred`` / ``chamfer_pred_gt`` arrays for the head (``region_id=None``: ICP on
``face.txt``) and the face (``region_id='face_sphere'``).
"""
import json
import os
import sys
import tempfile


def main(cases_dir):
    from h3ds.dataset import H3DS
    from h3ds.mesh import Mesh

    cases = sorted(d for d in os.listdir(cases_dir) if os.path.isfile(os.path.join(cases_dir, d, "pred.ply")))
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write('version = "0"\n')
        for c in cases:
            f.write(f'[scenes.{c}]\nviews = 0\n')
        config = f.name
    h3ds = H3DS(path=cases_dir, config_path=config)
    out = {}
    for c in cases:
        pred = Mesh().load(os.path.join(cases_dir, c, "pred.ply"))
        row = {}
        for region, region_id in (("head", None), ("face", "face_sphere")):
            gt2pred, pred2gt, _, _ = h3ds.evaluate_scene(c, pred, region_id=region_id)
            row[f"{region}_gt2pred_mm"] = float(gt2pred.mean())
            row[f"{region}_pred2gt_mm"] = float(pred2gt.mean())
        out[c] = row
    os.unlink(config)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
