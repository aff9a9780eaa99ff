"""Tests of headrecon.eval: point-to-surface distances, the ``exact`` protocol (self = 0, rigid offsets undone
by ICP, landmark coarse alignment, normal displacement of d mm gives d, face vs head regions) and headrecon-eval.
The official H3DS protocol is tested in test_h3ds_official.py."""
import functools
import json

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from headrecon.data import load_scene
from headrecon.eval import evaluate as _evaluate
from headrecon.eval import evaluate_with_own_landmarks, point_to_surface
from headrecon.eval.metrics import METRIC_KEYS, transform_points

evaluate = functools.partial(_evaluate, protocol="exact")


def head_mesh():
    """Analytic head-like mesh in mm (ellipsoid with a nose), landmarks in metadata."""
    m = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    v = m.vertices * [75.0, 105.0, 90.0]
    v[:, 2] += 25.0 * np.exp(-((v[:, 0] / 15) ** 2 + ((v[:, 1] + 5) / 25) ** 2)) * (v[:, 2] > 0)
    v[:, 1] += 8.0 * np.tanh(v[:, 0] / 30.0) * (v[:, 2] < 0)  # break symmetries so that ICP is well posed
    mesh = trimesh.Trimesh(v, m.faces, process=False)

    def near(p):
        return int(np.argmin(np.linalg.norm(v - p, axis=1)))
    mesh.metadata["landmarks"] = {"right_eye": near([-15, 25, 90]), "left_eye": near([15, 25, 90]),
                                  "nose_tip": int(np.argmax(v[:, 2])), "nose_base": near([0, -25, 95]),
                                  "right_lips": near([-22, -50, 80]), "left_lips": near([22, -50, 80])}
    return mesh


def rigid(deg, trans, scale=1.0):
    M = np.eye(4)
    M[:3, :3] = scale * Rotation.from_euler("xyz", deg, degrees=True).as_matrix()
    M[:3, 3] = trans
    return M


def test_point_to_surface_matches_brute_force():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=50.0)
    mesh.vertices += np.random.default_rng(0).normal(scale=2.0, size=mesh.vertices.shape)
    pts = np.random.default_rng(1).normal(scale=40.0, size=(300, 3))
    d, cp = point_to_surface(pts, mesh)
    tri = mesh.triangles
    brute = np.array([np.linalg.norm(trimesh.triangles.closest_point(tri, np.repeat(p[None], len(tri), 0)) - p,
                                     axis=1).min() for p in pts])
    np.testing.assert_allclose(d, brute, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(cp - pts, axis=1), d, atol=1e-9)


def test_gt_against_itself_is_zero():
    gt = head_mesh()
    res = evaluate(gt.copy(), gt)
    for k in METRIC_KEYS:
        assert res[k] < 1e-6, (k, res[k])
        assert res[k.replace("_mm", "_median_mm")] < 1e-6
    assert 0 < res["n_gt_face_vertices"] < res["n_gt_vertices"]
    assert abs(res["scale"] - 1) < 1e-9


def test_rigid_offset_undone_by_icp():
    gt = head_mesh()
    gt_plain = trimesh.Trimesh(gt.vertices, gt.faces, process=False)  # no landmarks: ICP only
    M = rigid([2, -3, 1], [4.0, -3.0, 5.0])  # a pose error of a reconstruction, not a random pose
    pred = gt_plain.copy()
    pred.apply_transform(M)
    without = evaluate(pred, gt, align="none")
    assert without["face_gt2pred_mm"] > 2.0  # the offset is large before alignment
    res, det = evaluate(pred, gt, align="icp", return_details=True)
    assert res["alignment"] == "icp"
    for k in METRIC_KEYS:
        assert res[k] < 0.01, (k, res[k])
    np.testing.assert_allclose(det.transform, np.linalg.inv(M), atol=1e-4)
    np.testing.assert_allclose(det.pred_aligned.vertices, gt.vertices, atol=1e-3)


def test_landmark_coarse_alignment():
    gt = head_mesh()
    M = rigid([80, 30, -20], [150.0, 40.0, -30.0], scale=1.3)  # far beyond ICP's basin
    pred = trimesh.Trimesh(transform_points(M, gt.vertices), gt.faces, process=False)
    lm = gt.metadata["landmarks"]
    res = evaluate(pred, gt, pred_landmarks=lm)
    assert res["alignment"] == "landmarks+icp" and len(res["landmarks_used"]) == 6
    assert max(res[k] for k in METRIC_KEYS) < 0.01
    assert abs(res["scale"] - 1 / 1.3) < 1e-6
    # landmarks given as 3D points work too
    pts = {k: pred.vertices[i] for k, i in lm.items()}
    assert evaluate(pred, gt, pred_landmarks=pts, align="landmarks")["head_gt2pred_mm"] < 1e-6
    # ICP alone cannot undo it
    assert evaluate(pred, gt, pred_landmarks={}, align="icp")["face_gt2pred_mm"] > 1.0


def test_official_landmark_alignment_needs_three_ground_truth_landmarks():
    gt = head_mesh()
    lm = gt.metadata["landmarks"]
    with pytest.raises(ValueError, match="at least 3 ground-truth landmarks"):
        _evaluate(gt, gt, pred_landmarks=lm, gt_landmarks={"nose_tip": lm["nose_tip"], "left_eye": lm["left_eye"]})
    assert _evaluate(gt, gt, pred_landmarks=lm)["head_gt2pred_mm"] < 1e-6  # six: fine


def test_own_landmarks_align_a_misplaced_prediction_or_give_none():
    """evaluate_with_own_landmarks: None without predicted landmarks or with fewer than three ground-truth ones;
    otherwise the official protocol with them first, which undoes a misplacement the 20-step ICP alone does not."""
    gt = head_mesh()
    lm = {k: gt.vertices[v] for k, v in gt.metadata["landmarks"].items()}
    M = trimesh.transformations.rotation_matrix(0.35, [0.2, 1.0, 0.1])
    M[:3, :3] *= 0.9
    M[:3, 3] = [30.0, -20.0, 70.0]  # a one-view placement can be this far off in depth
    pred = gt.copy()
    pred.apply_transform(M)
    pred.metadata.pop("landmarks")  # the prediction's own landmarks are passed, not read from the mesh
    pred_lm = {k: trimesh.transform_points(v[None], M)[0] for k, v in lm.items()}
    assert evaluate_with_own_landmarks(pred, gt, None) is None
    two = gt.copy()
    two.metadata["landmarks"] = dict(list(gt.metadata["landmarks"].items())[:2])
    assert evaluate_with_own_landmarks(pred, two, pred_lm) is None
    res = evaluate_with_own_landmarks(pred, gt, pred_lm)
    assert "transform" not in res and res["head_gt2pred_mm"] < 1e-3 and res["face_gt2pred_mm"] < 1e-3
    assert _evaluate(pred, gt)["head_gt2pred_mm"] > 1.0  # without them the official ICP does not get there
    with pytest.raises(ValueError, match="lack"):
        evaluate_with_own_landmarks(pred, gt, dict(list(pred_lm.items())[:3]))


@pytest.mark.parametrize("d", [0.5, 2.0])
def test_normal_displacement_gives_d(d):
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=100.0)
    sphere.metadata["landmarks"] = {"nose_tip": int(np.argmax(sphere.vertices[:, 2]))}
    pred = trimesh.Trimesh(sphere.vertices + d * sphere.vertex_normals, sphere.faces, process=False)
    res = evaluate(pred, sphere, align="none")
    for k in METRIC_KEYS:
        assert abs(res[k] - d) < 0.01 * d + 0.005, (k, res[k])
    # on the head-like mesh (curved, nose): the median is d
    gt = head_mesh()
    pred = trimesh.Trimesh(gt.vertices + d * gt.vertex_normals, gt.faces, process=False)
    res = evaluate(pred, gt, align="none")
    assert abs(res["head_gt2pred_median_mm"] - d) < 0.03 * d
    assert abs(res["face_pred2gt_median_mm"] - d) < 0.03 * d
    # the H3DS protocol's similarity ICP absorbs part of a uniform inflation (documented behaviour)
    res_icp = evaluate(pred, gt)
    assert res_icp["face_gt2pred_mm"] < res["face_gt2pred_mm"]


def test_face_region_is_95mm_around_nose():
    gt = head_mesh()
    v = np.asarray(gt.vertices)
    nose = v[gt.metadata["landmarks"]["nose_tip"]]
    far = np.linalg.norm(v - nose, axis=1) > 130  # displace only the back of the head
    pred = trimesh.Trimesh(v + 3.0 * gt.vertex_normals * far[:, None], gt.faces, process=False)
    res = evaluate(pred, gt, align="none")
    assert res["face_gt2pred_mm"] < 0.01 and res["face_pred2gt_mm"] < 0.01
    assert res["head_gt2pred_mm"] > 0.3 and res["head_pred2gt_mm"] > 0.3
    assert res["n_gt_face_vertices"] == int((np.linalg.norm(v - nose, axis=1) <= 95).sum())
    # ICP on the face region keeps the face exact although the back moved
    res_icp = evaluate(pred, gt)
    assert res_icp["face_gt2pred_mm"] < 0.05


def test_eval_cli(tmp_path):
    from headrecon.data.synthetic import make_scene
    from headrecon.eval.cli import main
    gt = head_mesh()
    sc = make_scene(gt, tmp_path / "scene", views=[0], size=32, progress=False)
    # a prediction in the unit-sphere frame, 1 mm too big everywhere and slightly moved
    pred_mm = trimesh.Trimesh(gt.vertices + 1.0 * gt.vertex_normals + [1.0, 0, 0], gt.faces, process=False)
    pred_unit = trimesh.Trimesh(sc.to_unit(pred_mm.vertices), gt.faces, process=False)
    pred_unit.export(tmp_path / "pred.ply")
    assert main([str(tmp_path / "pred.ply"), str(tmp_path / "scene"), "--size", "64", "--protocol", "exact",
                 "--align", "none"]) == 0
    out = tmp_path / "pred_eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pred_frame"] == "unit"
    for k in METRIC_KEYS:
        assert 0.5 < metrics[k] < 2.0, (k, metrics[k])
    ply = trimesh.load(out / "gt_error.ply", process=False)
    assert len(ply.vertices) == len(gt.vertices) and ply.visual.vertex_colors.shape[1] == 4
    assert len(np.unique(ply.visual.vertex_colors[:, :3], axis=0)) > 5  # errors vary -> colours vary
    img = np.asarray(Image.open(out / "heatmap.png"))
    assert img.shape[0] > 128 and img.shape[1] > 4 * 64 and img.std() > 10
    # with ICP (default) and an explicit --out
    assert main([str(tmp_path / "pred.ply"), str(tmp_path / "scene"), "--out", str(tmp_path / "o2"),
                 "--no-images", "--protocol", "exact"]) == 0
    m2 = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    assert m2["alignment"] == "icp" and m2["face_gt2pred_mm"] < metrics["face_gt2pred_mm"]
    assert not (tmp_path / "o2" / "heatmap.png").exists()
    # the default: the official protocol (make-scene wrote regions/face.txt, so the head is aligned on it)
    assert main([str(tmp_path / "pred.ply"), str(tmp_path / "scene"), "--out", str(tmp_path / "o3"),
                 "--no-images"]) == 0
    m3 = json.loads((tmp_path / "o3" / "metrics.json").read_text())
    assert m3["protocol"] == "h3ds" and m3["head_icp_region"] == "face"
    assert 0.0 < m3["face_gt2pred_mm"] < 2.0


def test_evaluate_scene_dir_and_errors(tmp_path):
    from headrecon.data.synthetic import make_scene
    gt = head_mesh()
    make_scene(gt, tmp_path / "s", views=[0], size=24, progress=False)
    scene = load_scene(tmp_path / "s", load_images=False)
    a = evaluate(gt.copy(), tmp_path / "s", align="none")
    b = evaluate(gt.copy(), scene, align="none")
    assert a["head_gt2pred_mm"] < 1e-6 and b["face_pred2gt_mm"] < 1e-6
    with pytest.raises(ValueError, match="unknown align"):
        evaluate(gt, gt, align="magic")
    with pytest.raises(ValueError, match="3 common landmarks"):
        evaluate(gt, gt, pred_landmarks={}, align="landmarks")


def test_ict_self_and_offset(shared_data):
    """On a real ICT head (watertight, caps): self = 0 and a rigid offset is undone."""
    from headrecon.data.ict import sample_ict_head
    head = sample_ict_head(11)
    gt = trimesh.Trimesh(head.vertices, head.faces, process=False)
    gt.metadata["landmarks"] = head.metadata["landmarks"]
    pred = trimesh.Trimesh(transform_points(rigid([3, 5, -2], [4, 7, -3]), gt.vertices), gt.faces, process=False)
    res = evaluate(pred, gt, pred_landmarks={})
    assert max(res[k] for k in METRIC_KEYS) < 0.01


def with_extra_geometry(mesh):
    """``mesh`` plus what reconstructions add and the ground truth lacks: a long neck cylinder running far below
    the head, and a detached blob in front of the chin, inside the 95 mm face sphere."""
    neck = trimesh.creation.cylinder(radius=38.0, height=260.0, sections=48)
    neck.apply_transform(rigid([90, 0, 0], [0.0, -200.0, -10.0]))  # along y, from y=-330 to y=-70
    blob = trimesh.creation.icosphere(subdivisions=1, radius=14.0)
    blob.apply_translation([0.0, -80.0, 125.0])
    return trimesh.util.concatenate([trimesh.Trimesh(mesh.vertices, mesh.faces, process=False), neck, blob])


def test_alignment_robust_to_extra_geometry():
    """Regression: similarity ICP used to shrink the GT face onto imperfect predictions (closest points are
    contractive; a hole makes it worse) and the scale ran away (head errors of tens to hundreds of mm).
    Prediction = GT with a bumpy surface, a hole in the cheek, a neck and a blob, slightly moved and scaled: after
    alignment every GT->pred error must equal its value in the true pose, the scale must be recovered, and the
    face fit must not be worse than without alignment."""
    gt = head_mesh()
    v = np.asarray(gt.vertices)
    bump = 1.5 * np.sin(v[:, 0] / 9.0) * np.sin(v[:, 1] / 11.0) * np.cos(v[:, 2] / 13.0)
    keep = np.linalg.norm(v[gt.faces].mean(axis=1) - [-45, 20, 70], axis=1) > 45  # hole in the right cheek
    bumpy = trimesh.Trimesh(v + bump[:, None] * gt.vertex_normals, gt.faces[keep], process=False)
    bumpy.remove_unreferenced_vertices()
    truth = evaluate(with_extra_geometry(bumpy), gt, align="none")  # in the true pose
    S = rigid([1.5, -2, 1], [2.0, -1.5, 3.0], scale=1.03)
    pred = with_extra_geometry(bumpy)
    pred.apply_transform(S)
    without = evaluate(pred, gt, align="none")
    assert without["face_gt2pred_mm"] > truth["face_gt2pred_mm"] + 1.0
    res = evaluate(pred, gt)
    al = res["alignment_details"]
    assert res["alignment"] == "icp" and al["accepted"] and al["method"] == "icp"
    for k in ("face_gt2pred_mm", "head_gt2pred_mm", "face_gt2pred_median_mm", "head_gt2pred_median_mm",
              "face_pred2gt_median_mm"):
        assert abs(res[k] - truth[k]) < 0.02, (k, res[k], truth[k])
    assert abs(res["scale"] - 1 / 1.03) < 2e-3 and abs(al["scale"] - res["scale"]) < 1e-12
    assert res["face_chamfer_mm"] < without["face_chamfer_mm"]
    assert al["icp"]["face_fit_after_mm"] <= al["icp"]["face_fit_before_mm"]
    # the extra geometry is still measured (pred -> GT over the whole head), not aligned away
    assert res["head_pred2gt_mm"] > 2.0


def test_alignment_recovers_bad_start_and_guard_rejects_worse(monkeypatch):
    """A bad starting pose (8 deg, 20 mm, 5 % scale; prediction with a neck) is still recovered; and the guard
    keeps the starting pose when the ICP result fits the face worse."""
    from headrecon.eval import metrics
    gt = head_mesh()
    S = rigid([6, -5, 3], [12.0, -10.0, 12.0], scale=1.05)
    pred = with_extra_geometry(gt)
    pred.apply_transform(S)
    without = evaluate(pred, gt, align="none")
    assert without["face_gt2pred_mm"] > 8.0
    res, det = evaluate(pred, gt, return_details=True)
    assert res["alignment_details"]["accepted"]
    assert max(res["face_gt2pred_mm"], res["face_pred2gt_median_mm"], res["head_gt2pred_mm"]) < 0.05, res
    np.testing.assert_allclose(det.transform, np.linalg.inv(S), atol=2e-3)

    # guard: an ICP that wanders off (here forced) is rejected and the starting pose is kept
    bad = rigid([0, 25, 0], [30.0, 0.0, 0.0], scale=0.7)
    monkeypatch.setattr(metrics, "_robust_icp", lambda *a, **k: (bad, 1.0, 1))
    res = evaluate(pred, gt)
    al = res["alignment_details"]
    assert res["alignment"] == "none" and al["accepted"] is False and al["icp"]["accepted"] is False
    assert al["icp"]["face_fit_after_mm"] > al["icp"]["face_fit_before_mm"]
    assert abs(al["scale"] - 1.0) < 1e-12 and al["rotation_deg"] < 1e-6
    for k in METRIC_KEYS:
        assert abs(res[k] - without[k]) < 1e-9, k


def test_observed_vertices_leave_out_hidden_interior():
    """A sphere with a cavity-like inner shell: cameras outside see the outer shell only. The ``*_observed``
    metrics leave the inner shell out; the plain ``gt2pred`` counts it (its vertices are 30 mm from the
    prediction, which is the outer shell)."""
    from headrecon.data.camera import Camera
    from headrecon.eval import observed_vertices

    outer = trimesh.creation.icosphere(subdivisions=3, radius=80.0)
    inner = trimesh.creation.icosphere(subdivisions=2, radius=50.0)
    gt = trimesh.util.concatenate([outer, inner])
    cams = [Camera.look_at(eye=600.0 * np.array([np.sin(a), 0.0, np.cos(a)]), target=(0, 0, 0), focal=300.0,
                           width=128, height=128) for a in np.radians([0, 90, 180, 270])]
    seen = observed_vertices(gt, cams)
    n_out = len(outer.vertices)
    assert not seen[n_out:].any(), "inner shell vertices are hidden"
    assert seen[:n_out].mean() > 0.85  # the poles are grazing for a level orbit
    res = evaluate(outer, gt, align="none", observed_from=cams)
    assert res["head_gt2pred_mm"] > 5.0  # inner shell: 30 mm
    assert res["head_gt2pred_observed_mm"] < 0.5  # observed outer shell lies on the prediction
    assert res["observed_fraction"] == pytest.approx(seen.mean())
    assert np.isnan(res["face_gt2pred_observed_mm"])  # no nose tip: no face region
    # a precomputed mask gives the same numbers; a mask of the wrong length is refused
    again = evaluate(outer, gt, align="none", observed_from=seen)
    assert again["head_gt2pred_observed_mm"] == res["head_gt2pred_observed_mm"]
    with pytest.raises(ValueError, match="observed_from"):
        evaluate(outer, gt, align="none", observed_from=seen[:-1])
