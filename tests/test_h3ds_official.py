"""The official H3DS protocol (headrecon.eval.h3ds) against the official code itself (PyPI h3ds 0.4.0).

The comparison runs the official package in a side environment (``tools/h3ds_venv.sh``; it needs numpy<1.24) named
by ``HEADRECON_H3DS_PYTHON``; ``.ci/run`` makes it. Without it that test skips with the reason; the checks of the
protocol's own behaviour run everywhere.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from headrecon.data.regions import h3ds_face_region
from headrecon.data.scene import FaceSphere, write_landmarks
from headrecon.eval import evaluate

REPO = Path(__file__).resolve().parents[1]
TOL_MM = 0.01


def _write_obj(path, mesh):
    """A plain OBJ (no comment lines: the official reader counts 'v '/'f ' inside comments)."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64) + 1
    with open(path, "w") as fh:
        fh.writelines(f"v {a!r} {b!r} {c!r}\n" for a, b, c in v.tolist())
        fh.writelines(f"f {a} {b} {c}\n" for a, b, c in f.tolist())


@pytest.fixture(scope="module")
def gt_head():
    from headrecon.recon.demo import demo_head_mesh

    mesh = demo_head_mesh(resolution=96)
    lm = mesh.metadata["landmarks"]
    mesh = trimesh.Trimesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces), process=False)
    fs = FaceSphere.from_mesh(mesh.vertices, mesh.vertices[lm["nose_tip"]])
    return mesh, lm, fs, h3ds_face_region(mesh.vertices, lm)


def _rotated(mesh, deg, shift_mm):
    m = mesh.copy()
    R = trimesh.transformations.rotation_matrix(np.radians(deg), [0, 1, 0])
    R[:3, 3] = shift_mm
    m.apply_transform(R)
    return m


def _predictions(gt, recon=None):
    rng = np.random.default_rng(0)
    out = {"copy": gt.copy()}
    off = gt.copy()
    off.vertices = gt.vertices + 1.0 * gt.vertex_normals
    out["offset_1mm"] = off
    out["rigid_3deg_6mm"] = _rotated(gt, 3.0, [6.0, 0.0, 0.0])
    noisy = gt.copy()
    noisy.vertices = gt.vertices + rng.normal(0.0, 0.5, gt.vertices.shape)
    out["noise_0.5mm"] = noisy
    half = gt.copy()
    half.update_faces(half.vertices[half.faces].mean(axis=1)[:, 0] < 0.0)  # the subject's right half only
    half.remove_unreferenced_vertices()
    out["half_deleted"] = half
    if recon is not None:
        out["reconstruction"] = recon
    return out


def test_gt_copy_reads_zero_and_rigid_motion_is_only_partly_undone(gt_head):
    """A GT copy reads 0 (the official face pred->gt runs from every predicted vertex to the face vertices, so it
    is not 0: ``face_pred2gt_sphere_mm`` keeps the predicted vertices within the face sphere); a copy turned 3 degrees about the origin and moved 6 mm is not fully re-aligned by the
    official 20-iteration ICP (the protocol is reproduced, shortfall included), while the exact protocol's ICP
    finds the true pose."""
    gt, lm, fs, face = gt_head
    res = evaluate(gt.copy(), gt, gt_landmarks=lm, face_sphere=fs, face_region=face)
    for k in ("face_gt2pred_mm", "face_pred2gt_sphere_mm", "head_gt2pred_mm", "head_pred2gt_mm"):
        assert res[k] < 1e-9, (k, res[k])
    assert res["face_pred2gt_mm"] > 10.0  # the official definition: the rest of the head counts
    assert res["protocol"] == "h3ds" and res["head_icp_region"] == "face"
    moved = _rotated(gt, 3.0, [6.0, 0.0, 0.0])
    official = evaluate(moved, gt, gt_landmarks=lm, face_sphere=fs, face_region=face)
    exact = evaluate(moved, gt, gt_landmarks=lm, face_sphere=fs, protocol="exact")
    assert official["head_gt2pred_mm"] > 0.3, official["head_gt2pred_mm"]
    assert exact["head_gt2pred_mm"] < 0.2, exact["head_gt2pred_mm"]


def test_face_region_and_fallback(gt_head):
    """face.txt of a synthetic head: the face, ears and neck, not the scalp; without it the head is aligned on
    the face sphere and the metrics say so."""
    gt, lm, fs, face = gt_head
    v = gt.vertices
    in_face = np.zeros(len(v), dtype=bool)
    in_face[face] = True
    assert in_face[fs.vertex_indices].mean() > 0.9  # most of the face sphere (not the upper forehead)
    top = v[:, 1] > v[:, 1].max() - 20.0                   # the crown
    assert not in_face[top].any()
    assert 0.3 < in_face.mean() < 0.9
    res = evaluate(gt.copy(), gt, gt_landmarks=lm, face_sphere=fs)
    assert res["head_icp_region"] == "face_sphere"


def test_unknown_protocol_and_exact_only_options(gt_head):
    gt, lm, fs, face = gt_head
    with pytest.raises(ValueError, match="protocol"):
        evaluate(gt, gt, gt_landmarks=lm, protocol="nope")
    with pytest.raises(ValueError, match="exact"):
        evaluate(gt, gt, gt_landmarks=lm, align="none")


@pytest.fixture(scope="module")
def official_python():
    py = os.environ.get("HEADRECON_H3DS_PYTHON")
    if not py:
        pytest.skip("the official h3ds package needs its own environment: run `bash tools/h3ds_venv.sh` and set "
                    "HEADRECON_H3DS_PYTHON to the python it prints (.ci/run does)")
    if not Path(py).is_file():
        pytest.fail(f"HEADRECON_H3DS_PYTHON={py} does not exist")
    return py


@pytest.fixture(scope="module")
def reconstruction(tmp_path_factory):
    """A real reconstruction: a short IDR fit of the demo head (3 views, 48 px, 150 iterations)."""
    import torch

    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.demo import make_demo_scene
    from headrecon.recon.trainer import Trainer

    d = tmp_path_factory.mktemp("h3ds_recon") / "scene"
    make_demo_scene(d, views=8, size=96, resolution=96, progress=False)
    scene = load_scene(d, views="3")
    cfg = make_config("fast", method="idr", iterations=150, image_size=48, batch_rays=512, mesh_resolution=96,
                      threads=1)
    torch.manual_seed(0)
    tr = Trainer(cfg, scene, device="cpu")
    tr.train()
    mesh = tr.extract_mesh()
    return trimesh.Trimesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces), process=False), d


def test_agrees_with_official_h3ds(official_python, tmp_path, reconstruction):
    """Ours and the official evaluate_scene agree within 0.01 mm (face and head, both directions) on a GT copy, a
    +1 mm normal offset, a rigid motion, vertex noise, a half-deleted head and a real reconstruction."""
    from headrecon.data import load_gt

    recon, recon_scene = reconstruction
    gt, lm, fs = load_gt(recon_scene)
    face = h3ds_face_region(gt.vertices, lm)
    cases = tmp_path / "cases"
    ours = {}
    for name, pred in _predictions(gt, recon).items():
        d = cases / name
        (d / "regions").mkdir(parents=True)
        _write_obj(d / "full_head.obj", gt)
        write_landmarks(d / "landmarks.txt", lm)
        (d / "regions" / "face.txt").write_text("".join(f"{i}\n" for i in face))
        (d / "regions" / "face_sphere.txt").write_text("".join(f"{i}\n" for i in fs.vertex_indices))
        pred.export(d / "pred.ply")
        ours[name] = evaluate(trimesh.load(d / "pred.ply", process=False), d)
    out = subprocess.run([official_python, str(REPO / "tools" / "h3ds_official.py"), str(cases)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    official = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(official) == sorted(ours)
    rows = []
    for name, row in official.items():
        for k, v in row.items():
            rows.append((name, k, v, ours[name][k]))
    print("\n".join(f"{n:16s} {k:18s} official {a:8.4f} ours {b:8.4f}" for n, k, a, b in rows), file=sys.stderr)
    bad = [(n, k, a, b) for n, k, a, b in rows if not abs(a - b) <= TOL_MM]
    assert not bad, bad
    # the cases span the range the protocol must get right
    assert official["copy"]["head_gt2pred_mm"] < 1e-4  # PLY stores float32
    assert official["offset_1mm"]["face_gt2pred_mm"] > 0.2  # its scaled ICP absorbs part of an offset
    assert official["rigid_3deg_6mm"]["head_gt2pred_mm"] > 0.3
