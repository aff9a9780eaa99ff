"""tools/error_bands.py: the per-height-band split of the official head error adds up to the head figure."""
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

