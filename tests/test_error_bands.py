"""tools/error_bands.py: the per-height-band and per-part splits of the head error add up to the head figure and
put the error where the shape moved."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "headrecon" / "assets" / "demo_lps"


def test_bands_add_up_to_the_head_error(tmp_path):
    gt = trimesh.load(DEMO / "full_head.obj", process=False)
    pred = gt.copy()
    y = pred.vertices[:, 1]
    low = y < y.min() + 0.25 * (y.max() - y.min())  # the lowest of 4 bands (the chest, below the face)
    pred.vertices = pred.vertices + np.where(low[:, None], 4.0, 0.0) * np.array([0.0, 0.0, 1.0])  # 4 mm forward
    mesh = tmp_path / "pred.ply"
    pred.export(mesh)
    out = tmp_path / "bands.json"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "error_bands.py"), str(DEMO), str(mesh), "--bands", "4",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())["meshes"]["pred.ply"]
    b = m["bands"]
    assert sum(x["n"] for x in b) == len(gt.vertices)
    assert sum(x["share"] for x in b) == pytest.approx(1.0, abs=1e-3)
    mean = sum(x["n"] * x["mean_mm"] for x in b) / sum(x["n"] for x in b)
    assert abs(mean - m["head_gt2pred_mm"]) < 0.01
    # the moved part carries the error (the rest is off only by the alignment that the moved part pulls)
    assert b[0]["mean_mm"] > 2.0 and b[0]["mean_mm"] > 2 * max(x["mean_mm"] for x in b[1:])



def _bands(tmp_path, mesh, *args):
    out = tmp_path / "bands.json"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "error_bands.py"), str(DEMO), str(mesh), "--bands", "4",
                        "--out", str(out), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())["meshes"][mesh.name]


def test_scene_frame_bands_keep_the_error_where_the_shape_moved(tmp_path):
    """--frame scene: no alignment, so the unmoved vertices (still vertices of the prediction) are at 0 mm and
    only the moved band carries error; the official alignment spreads some of it over the other bands."""
    gt = trimesh.load(DEMO / "full_head.obj", process=False)
    pred = gt.copy()
    y = pred.vertices[:, 1]
    low = y < y.min() + 0.25 * (y.max() - y.min())
    pred.vertices = pred.vertices + np.where(low[:, None], 4.0, 0.0) * np.array([0.0, 0.0, 1.0])
    mesh = tmp_path / "moved.ply"
    pred.export(mesh)
    scene, official = _bands(tmp_path, mesh, "--frame", "scene"), _bands(tmp_path, mesh)
    assert scene["frame"] == "scene" and official["frame"] == "official" and scene["align_scale"] == 1.0
    assert 2.0 < scene["bands"][0]["mean_mm"] <= 4.0 + 1e-6
    assert max(b["mean_mm"] for b in scene["bands"][1:]) < 1e-6
    assert max(b["mean_mm"] for b in official["bands"][1:]) > 0.05
    assert all(b["outside"] is None for b in scene["bands"])  # an open prediction has no inside


def test_outside_share_says_where_the_prediction_is_too_small(tmp_path):
    gt = trimesh.load(DEMO / "full_head.obj", process=False)
    c = (gt.vertices.min(0) + gt.vertices.max(0)) / 2
    r = np.linalg.norm(gt.vertices - c, axis=1).max()
    # a sphere around the whole head: nothing outside it; a small one beside the head: everything
    for name, radius, at, expect in (("big.ply", 1.2 * r, c, 0.0), ("small.ply", 0.2 * r, c + [3 * r, 0, 0], 1.0)):
        sphere = trimesh.creation.icosphere(subdivisions=4, radius=radius)
        sphere.apply_translation(at)
        sphere.export(tmp_path / name)
        b = _bands(tmp_path, tmp_path / name, "--frame", "scene")["bands"]
        assert all(x["outside"] == pytest.approx(expect) for x in b), (name, b)


def test_parts_add_up_and_hold_a_moved_ear(tmp_path):
    """The parts (face, ears, neck_bust, scalp_back) cover every ground-truth vertex once, their head_mm add up to
    the head error, and in the scene frame a shape moved only around the ears puts all the error in ``ears``."""
    sys.path.insert(0, str(REPO / "tools"))
    from error_bands import parts

    from headrecon.data import load_scene

    scene = load_scene(DEMO)
    gt = trimesh.load(DEMO / "full_head.obj", process=False)
    masks = parts(gt.vertices, scene.landmarks)
    assert sum(m.astype(int) for m in masks.values()).tolist() == [1] * len(gt.vertices)
    assert all(masks[k].any() for k in masks)
    pred = gt.copy()
    pred.vertices = pred.vertices + np.where(masks["ears"][:, None], 3.0, 0.0) * np.array([0.0, 1.0, 0.0])
    mesh = tmp_path / "ears.ply"
    pred.export(mesh)
    r = _bands(tmp_path, mesh, "--frame", "scene")
    p = {x["part"]: x for x in r["parts"]}
    assert sum(x["n"] for x in p.values()) == len(gt.vertices)
    assert sum(x["head_mm"] for x in p.values()) == pytest.approx(r["head_gt2pred_mm"], abs=0.01)
    assert sum(x["head_mm"] for x in r["bands"]) == pytest.approx(r["head_gt2pred_mm"], abs=0.01)
    assert 0.5 < p["ears"]["mean_mm"] <= 3.0 + 1e-6
    assert max(p[k]["mean_mm"] for k in ("face", "neck_bust", "scalp_back")) < 1e-6


def test_icp_without_ears_leaves_wide_ears_out_of_the_scale(tmp_path):
    """Ears that stand 4 mm too far out pull the official alignment's scale away from 1; aligned without them
    (``--icp-without-ears``) the scale stays nearer 1. Refused in the scene frame."""
    sys.path.insert(0, str(REPO / "tools"))
    from error_bands import parts

    from headrecon.data import load_scene

    scene = load_scene(DEMO)
    gt = trimesh.load(DEMO / "full_head.obj", process=False)
    ears = parts(gt.vertices, scene.landmarks)["ears"]
    pred = gt.copy()
    side = np.sign(pred.vertices[:, 0] - pred.vertices[:, 0].mean())
    pred.vertices = pred.vertices + np.where(ears, 4.0 * side, 0.0)[:, None] * np.array([1.0, 0.0, 0.0])
    mesh = tmp_path / "wide.ply"
    pred.export(mesh)
    official, without = _bands(tmp_path, mesh), _bands(tmp_path, mesh, "--icp-without-ears")
    assert not official["icp_without_ears"] and without["icp_without_ears"]
    assert abs(without["align_scale"] - 1) < abs(official["align_scale"] - 1)
    r = subprocess.run([sys.executable, str(REPO / "tools" / "error_bands.py"), str(DEMO), str(mesh), "--frame",
                        "scene", "--icp-without-ears"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "--icp-without-ears" in r.stderr
