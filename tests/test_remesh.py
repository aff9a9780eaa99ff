"""tools/remesh.py: a finished run meshed again reproduces its own mesh and scores, and a refined mesh has four
times the vertices on the fitted surface."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import trimesh

from headrecon.recon import cli

REPO = Path(__file__).resolve().parents[1]


def test_remesh_reproduces_the_run_and_refines(tmp_path):
    from headrecon.data.synthetic import make_scene

    m = trimesh.creation.icosphere(subdivisions=4)
    m.vertices = m.vertices * np.array([70.0, 90.0, 80.0])
    m.metadata["landmarks"] = {"nose_tip": int(np.argmax(m.vertices[:, 2]))}
    make_scene(m, tmp_path / "scene", views=8, size=64, progress=False)
    run = tmp_path / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the fast preset refines its mesh once
        assert cli.main([str(tmp_path / "scene"), "--views", "3", "--method", "idr", "--out", str(run),
                         "--iterations", "6", "--quiet", "--image-size", "32", "--batch-rays", "128",
                         "--geo-hidden", "64", "--geo-layers", "3", "--geo-skip", "2", "--mesh-resolution", "40",
                         "--render-size", "24", "--novel-yaws", "180"]) == 0
    finally:
        torch.set_num_threads(n)
    out = tmp_path / "remesh.json"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "remesh.py"), str(run), "40r1", "40",
                           "--save", str(tmp_path / "meshes"), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = {r["spec"]: r for r in json.loads(out.read_text())["rows"]}
    own = trimesh.load(run / "mesh.ply", process=False)
    again = trimesh.load(tmp_path / "meshes" / "mesh_40r1.ply", process=False)
    np.testing.assert_allclose(again.vertices, own.vertices, atol=1e-4)  # the run's own mesh (float32 PLY)
    metrics = json.loads((run / "metrics.json").read_text())
    assert abs(rows["40r1"]["head_gt2pred_mm"] - metrics["h3ds"]["head_gt2pred_mm"]) < 1e-3
    assert rows["40r1"]["vertices"] > 3.5 * rows["40r0"]["vertices"]
    assert "exact_head_gt2pred_mm" in rows["40r0"]
    for r in rows.values():  # the creases: counted, and no fold in a refined mesh of a smooth fit
        assert 0 < r["max_crease_deg"] < 180 and r["folds_over_150deg"] <= r["edges_over_90deg"]
    assert rows["40r1"]["folds_over_150deg"] == 0


def test_remesh_refuses_a_folder_without_a_run(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "remesh.py"), str(tmp_path), "64"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "config.json: missing" in proc.stderr
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "remesh.py"), str(tmp_path), "64x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "expected a resolution" in proc.stderr
