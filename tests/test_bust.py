"""Busts (heads with shoulders): Anny bodies and ICT heads joined to them, as meshes, scans, scenes and priors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from headrecon.data.bust import ANNY_LANDMARKS, anny_available

pytestmark = pytest.mark.skipif(not anny_available(), reason="needs the Anny body model: pip install anny")

NAMES = ("right_eye", "left_eye", "nose_tip", "nose_base", "right_lips", "left_lips")


def _check_bust(m, norm):
    lm = m.metadata["landmarks"]
    assert set(lm) == set(NAMES)
    V = np.asarray(m.vertices)
    P = {k: V[i] for k, i in lm.items()}
    assert P["left_eye"][0] > 0 > P["right_eye"][0]                 # +X = the subject's left
    assert P["nose_tip"][2] > P["left_eye"][2] and P["nose_tip"][2] > P["left_lips"][2]  # +Z out of the face
    mouth_y = (P["left_lips"][1] + P["right_lips"][1]) / 2
    assert 185 < mouth_y - V[:, 1].min() < 255                      # cut below the shoulders
    assert 330 < np.ptp(V[:, 0]) < 600                               # shoulders, not a neck
    r = np.linalg.norm(norm.to_unit(V), axis=1)
    assert r.max() < 1.0                                             # inside the bust prior's unit sphere
    assert m.visual.vertex_colors.shape == (len(V), 4)
    # one connected surface, open only at the bottom cut (and nowhere above the shoulders); Anny busts add two
    # eyeballs after the body's vertices, and are open where nothing can be seen (behind the eyeballs)
    n = m.metadata.get("n_body_vertices", len(V))
    body = trimesh.Trimesh(V[:n], m.faces[(m.faces < n).all(1)], process=False)
    assert len(body.split(only_watertight=False)) == 1
    assert len(m.split(only_watertight=False)) == (1 if n == len(V) else 3)
    edges = trimesh.grouping.group_rows(m.edges_sorted, require_count=1)
    open_v = np.unique(m.edges_sorted[edges])
    if n == len(V):  # composites: closed above the cut
        assert np.all(V[open_v, 1] < mouth_y - 120)
    else:  # Anny busts: nothing hidden is left (open where hidden cavities were removed), and no hole in the face
        from headrecon.data.geometry import outer_faces

        assert outer_faces(m).mean() > 0.99
        # open only at the cut, between the lips (the mouth cavity is gone) and behind the eyeballs
        c, r = np.asarray(m.metadata["eye_centres"]), m.metadata["eyeball_radius_mm"]
        near_eye = np.linalg.norm(V[open_v, None] - c[None], axis=2).min(1) < 2.0 * r
        lips = np.abs(V[open_v, 1] - mouth_y) < 15.0
        assert np.all(near_eye | lips | (V[open_v, 1] < mouth_y - 120))
    return body


def _check_eyeballs(m, body):
    """The eyeballs fill Anny's open eye sockets: a ray from the front through each eye centre meets the eye a few
    mm behind the inner eye corners (the body alone: a socket over 2 cm deep), and no eyeball reaches the body."""
    V = np.asarray(m.vertices)
    n, c, r = m.metadata["n_body_vertices"], np.asarray(m.metadata["eye_centres"]), m.metadata["eyeball_radius_mm"]
    assert len(V) > n and 8 < r < 20
    lm = m.metadata["landmarks"]
    corner_z = (V[lm["right_eye"], 2] + V[lm["left_eye"], 2]) / 2
    o, d = c + [0.0, 0.0, 300.0], np.tile([0.0, 0.0, -1.0], (2, 1))
    z_eye = m.ray.intersects_location(o, d, multiple_hits=False)[0][:, 2]
    z_body = body.ray.intersects_location(o, d, multiple_hits=False)[0][:, 2]
    assert len(z_eye) == 2 and np.all(corner_z - z_eye < 6.0) and np.all(corner_z - z_body > 15.0)
    d_body, _ = cKDTree(V[:n]).query(V[n:])
    assert d_body.min() > 0.2


def test_anny_and_composite_busts(shared_data):
    from headrecon.data.bust import anny_bust, composite_bust
    from headrecon.data.ict import sample_ict_head
    from headrecon.priors.normalization import bust_normalization

    norm = bust_normalization()
    for seed in (0, 100000):
        a = anny_bust(seed)
        _check_eyeballs(a, _check_bust(a, norm))
        c = composite_bust(seed)
        _check_bust(c, norm)
        # the composite's face and scalp are the ICT head's, vertex for vertex
        head = sample_ict_head(seed)
        lm_c, lm_h = c.metadata["landmarks"], head.metadata["landmarks"]
        for k in NAMES:
            assert np.allclose(c.vertices[lm_c[k]], head.vertices[lm_h[k]])
        top = head.vertices[head.vertices[:, 1] > c.metadata["junction_y"] + 1.0]
        d, _ = cKDTree(c.vertices).query(top)
        assert d.max() < 1e-6
        # deterministic in the seed
        assert np.array_equal(composite_bust(seed).vertices, c.vertices)
    assert not np.allclose(anny_bust(1).vertices[:100], anny_bust(2).vertices[:100])


def test_anny_landmarks_are_vertices():
    from headrecon.data.bust import anny_model

    n = len(anny_model().template_vertices)
    assert all(0 <= v < n for v in ANNY_LANDMARKS.values()) and len(set(ANNY_LANDMARKS.values())) == 6


def test_bust_scans_and_training_smoke(shared_data, tmp_path):
    from headrecon.priors.cli import main as train
    from headrecon.priors.h3dnet import load_prior
    from headrecon.priors.scans import bust_scanset
    from headrecon.priors.sira import load_sira

    s = bust_scanset("composite", 2, seed_start=100000, n_points=5000)
    assert len(s) == 2 and s.norm.mm_per_unit == 360.0
    assert all(float(p.norm(dim=1).max()) <= 0.98 for p in s.points)
    assert s.description["source"] == "composite" and s.description["seeds"] == [100000, 100001]
    out = tmp_path / "h.pt"
    assert train(["composite", "--out", str(out), "--shapes", "2", "--epochs", "1", "--points", "64",
                  "--scan-points", "3000", "--no-progress", "--threads", "1"]) == 0
    p = load_prior(out)
    assert p.norm.mm_per_unit == 360.0 and p.data["source"] == "composite"
    out = tmp_path / "s.pt"
    assert train(["anny", "--model", "sira", "--out", str(out), "--shapes", "2", "--epochs", "1", "--points", "64",
                  "--scan-points", "3000", "--no-progress", "--threads", "1"]) == 0
    q = load_sira(out)
    assert q.norm.mm_per_unit == 360.0 and tuple(q.config.outside_radius) == (0.99, 1.3)


def test_mixed_sources(shared_data, tmp_path):
    """'composite+ict': shape k from source k mod 2 with seed k, all in the bust frame; unknown parts are named."""
    from headrecon.priors.cli import main as train
    from headrecon.priors.scans import bust_scanset, is_shape_source, parse_sources
    from headrecon.priors.sira import load_sira

    assert parse_sources("Composite+ict") == ("composite", "ict") and is_shape_source("anny")
    assert not is_shape_source("my_scans/") and not is_shape_source("ict+ict")
    with pytest.raises(ValueError, match="bust"):
        parse_sources("composite+bust")
    s = bust_scanset("composite+ict", 2, seed_start=100000, n_points=4000)
    assert s.names == ["composite100000", "ict100001"] and s.norm.mm_per_unit == 360.0
    assert s.description["source"] == "composite+ict" and "k mod 2" in s.description["model"]
    # the ICT head sits in the bust frame: above the busts' centre, inside the unit ball
    assert float(s.points[1][:, 1].mean()) > float(s.points[0][:, 1].mean())
    out = tmp_path / "s.pt"
    assert train(["composite+ict", "--model", "sira", "--out", str(out), "--shapes", "2", "--epochs", "1",
                  "--points", "64", "--scan-points", "3000", "--no-progress", "--threads", "1"]) == 0
    q = load_sira(out)
    assert q.data["source"] == "composite+ict" and tuple(q.config.outside_radius) == (0.99, 1.3)


def test_make_scene_bust(tmp_path, shared_data, capsys):
    from headrecon.data import load_scene
    from headrecon.data.make_scene import main as make_scene

    out = tmp_path / "scene"
    assert make_scene(["--bust", "composite:100001", "--views", "2", "--size", "48", "--out", str(out),
                       "--quiet"]) == 0
    sc = load_scene(out)
    assert len(sc) == 2 and sc.gt_mesh is not None
    assert json.loads((out / "scene_info.json").read_text())["source"] == "composite:100001"
    assert make_scene(["--bust", "cartoon:1", "--out", str(tmp_path / "x"), "--quiet"]) != 0
    assert "expected SOURCE:SEED" in capsys.readouterr().err


def test_bust_depth(tmp_path, shared_data, capsys):
    """``depth_mm`` (``headrecon-make-scene --bust-depth``) cuts the body that far below the mouth: a waist-length
    bust reaches far below the training busts' 190-250 mm; out-of-range depths and the option without ``--bust``
    are refused before anything is built."""
    from headrecon.data.bust import _mouth_y, composite_bust
    from headrecon.data.make_scene import main as make_scene

    c = composite_bust(100000)
    deep = composite_bust(100000, depth_mm=450.0)
    mouth = _mouth_y(deep.vertices, deep.metadata["landmarks"])
    assert abs(deep.vertices[:, 1].min() - (mouth - 450.0)) < 1.0
    assert 190.0 - 1.0 < mouth - c.vertices[:, 1].min() < 250.0 + 1.0
    assert deep.metadata["cut_y"] < c.metadata["cut_y"] - 150.0
    with pytest.raises(ValueError, match="100-700 mm"):
        composite_bust(100000, depth_mm=50.0)
    assert make_scene(["--ict", "100000", "--bust-depth", "400", "--out", str(tmp_path / "x"), "--quiet"]) != 0
    assert "--bust-depth needs --bust" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
