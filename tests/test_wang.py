"""Tests of ``--method wang`` (headrecon.methods.wang) and what it reads: label maps in scenes (semantic/), label
maps made from photos, the reduction of labels and orientations to the training size, the projection of 3D
directions, the semantic loss falling on a tiny scene, exact resume, and an end-to-end run. The photo label maps and
the facial proxy need the shared data (an ICT head rendered with hair) and MediaPipe."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from exact_resume import assert_resume_is_exact
from headrecon.data.errors import SceneError
from headrecon.data.semantics import IGNORE_LABEL, SEMANTIC_CLASSES, reduce_labels
from headrecon.photos.orientation import reduce_orientation

L = {n: i for i, n in enumerate(SEMANTIC_CLASSES)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _row_labels(mask: np.ndarray) -> np.ndarray:
    """Synthetic head labels: the top 40 % of the mask's rows hair, the next 40 % skin, the rest neck."""
    rows = np.nonzero(mask.any(1))[0]
    top, bottom = rows.min(), rows.max() + 1
    cut1, cut2 = top + 0.4 * (bottom - top), top + 0.8 * (bottom - top)
    i = np.arange(mask.shape[0])[:, None] + np.zeros(mask.shape[1], dtype=int)[None]
    lab = np.where(i < cut1, L["hair"], np.where(i < cut2, L["skin"], L["neck"])).astype(np.uint8)
    return np.where(mask, lab, 0).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    """The procedural demo head, 8 views of 64 px, with row-wise labels written to semantic/."""
    from headrecon.recon.demo import make_demo_scene

    out = tmp_path_factory.mktemp("wang") / "scene"
    scene = make_demo_scene(None, views=8, size=64, resolution=64)
    for v in scene.views:
        v.semantic = _row_labels(v.mask)
    scene.write(out)
    return out


TINY = dict(iterations=30, batch_rays=256, image_size=64, geo_hidden=32, geo_layers=2, geo_skip=(1,), geo_freqs=4,
            feature_size=16, render_hidden=32, render_layers=1, sem_hidden=32, sem_layers=2, n_coarse=24, n_fine=8,
            mesh_resolution=48, render_size=48, log_every=5, checkpoint_every=10, novel_yaws=(180.0,),
            orient_points=64, proxy_points=128, orient_min_confidence=0.0)


def make_trainer(scene_dir, **kw):
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    cfg = make_config("fast", method="wang", **{**TINY, **kw})
    return Trainer(cfg, load_scene(scene_dir, views="3"), device="cpu")


# ---------------------------------------------------------------------------------------------- scene files
def test_scene_reads_writes_and_checks_label_maps(tiny_scene, tmp_path):
    from headrecon.data import load_scene

    s = load_scene(tiny_scene)
    assert all(v.semantic is not None and v.semantic.shape == v.mask.shape for v in s.views)
    assert np.array_equal(s.views[2].semantic, _row_labels(s.views[2].mask))
    s.write(tmp_path / "copy")
    assert np.array_equal(load_scene(tmp_path / "copy").views[5].semantic, s.views[5].semantic)
    # a wrong size, a colour image and an unknown class are refused, naming the file
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_scene, bad)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad / "semantic" / "sem_0001.png")
    with pytest.raises(SceneError, match="sem_0001.png.*label map is 10x10"):
        load_scene(bad)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(bad / "semantic" / "sem_0001.png")
    with pytest.raises(SceneError, match="sem_0001.png.*8-bit single-channel"):
        load_scene(bad)
    Image.fromarray(np.full((64, 64), 9, np.uint8)).save(bad / "semantic" / "sem_0001.png")
    with pytest.raises(SceneError, match="sem_0001.png.*class indices"):
        load_scene(bad)
    (bad / "semantic" / "sem_0001.png").unlink()
    with pytest.raises(SceneError, match="one sem_XXXX.png per image"):
        load_scene(bad)


def test_label_and_orientation_reduction():
    lab = np.zeros((8, 8), np.uint8)
    lab[:, :5] = L["hair"]          # 5 of 8 columns: the left reduced pixel is all hair, the right mostly skin
    lab[:, 5:] = L["skin"]
    lab[0, 0] = IGNORE_LABEL
    small = reduce_labels(lab, 2, 2)
    assert small.tolist() == [[L["hair"], L["skin"]], [L["hair"], L["skin"]]]
    # orientations at 0 and just under pi are the same undirected direction: their mean is 0, not pi/2
    theta = np.where(np.arange(4)[None] % 2 == 0, 0.02, np.pi - 0.02) * np.ones((4, 1))
    t, c = reduce_orientation(theta, np.ones((4, 4)), 1, 1)
    assert min(t[0, 0], np.pi - t[0, 0]) < 1e-6 and c[0, 0] > 0.99
    # crossing orientations cancel: low confidence
    t, c = reduce_orientation(np.where(np.arange(4)[None] % 2 == 0, 0.0, np.pi / 2) * np.ones((4, 1)),
                              np.ones((4, 4)), 1, 1)
    assert c[0, 0] < 1e-6


def test_projected_directions_match_the_projection_of_nearby_points():
    from headrecon.data.camera import Camera
    from headrecon.methods.wang import project_directions

    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 64], [0, 280.0, 60], [0, 0, 1]])
    from scipy.spatial.transform import Rotation

    R = Rotation.from_rotvec([0.2, -0.4, 0.1]).as_matrix()
    cam = Camera(K=K, R=R, t=np.array([0.1, -0.05, 3.0]), width=128, height=128)
    x = rng.normal(size=(50, 3)) * 0.5
    d = rng.normal(size=(50, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    fd = cam.project(x + 1e-6 * d) - cam.project(x)
    fd /= np.linalg.norm(fd, axis=1, keepdims=True)
    T = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    got = project_directions(T(np.repeat(R[None], 50, 0)), T(np.repeat(cam.t[None], 50, 0)),
                             T(np.repeat([[300.0, 280.0]], 50, 0)), T(x), T(d)).numpy()
    assert np.abs(got - fd).max() < 1e-4


# ---------------------------------------------------------------------------------------------- the method
def test_semantic_loss_decreases_on_a_tiny_scene(tiny_scene):
    tr = make_trainer(tiny_scene, iterations=120, semantic_from=0.0, use_orientation=False, use_proxy=False,
                      log_every=10)
    assert tr.method.info()["semantics"]["source"] == "scene"
    tr.train()
    ce = [h["semantic_loss"] for h in tr.history]
    assert len(ce) == 12 and all(np.isfinite(ce))
    assert np.mean(ce[-3:]) < 0.7 * np.mean(ce[:2]), ce


def test_stages_weights_and_exact_resume(tiny_scene, tmp_path):
    kw = dict(iterations=12, semantic_from=0.25, orientation_from=0.5, log_every=1, checkpoint_every=4)
    a = make_trainer(tiny_scene, **kw)
    assert a.cfg.refine_cameras and a.cameras is not None  # on by default for this method
    a.train()
    first = {k for k in a.history[0] if k.endswith("_loss")}
    assert "semantic_loss" not in first and "orientation_loss" not in first
    assert "semantic_loss" in a.history[3] and "orientation_loss" not in a.history[3]
    assert "orientation_loss" in a.history[-1] and np.isfinite(a.history[-1]["orientation_loss"])
    assert a.loss_fn.rgb_weight == pytest.approx(100 * a.cfg.rgb_weight)
    assert a.loss_fn.eikonal_weight == pytest.approx(100 * a.cfg.eikonal_weight)
    # stopped in the orientation stage
    assert_resume_is_exact(lambda: make_trainer(tiny_scene, **kw), tmp_path / "ck.pt", stop_after=8, straight=a)


def test_ablation_switches(tiny_scene):
    tr = make_trainer(tiny_scene, iterations=4, semantic_from=0.0, orientation_from=0.0, use_semantics=False,
                      use_orientation=False, use_proxy=False)
    tr.train()
    assert not {"semantic_loss", "orientation_loss", "proxy_loss"} & set(tr.history[-1])
    assert tr.loss_fn.rgb_weight == tr.cfg.rgb_weight
    merged = make_trainer(tiny_scene, iterations=2, semantic_hair=False, use_orientation=False)
    t = merged.method.sem_target
    assert not (t == L["hair"] - 1).any() and (t == L["skin"] - 1).any()
    with pytest.raises(ValueError, match="semantics_source"):
        make_trainer(tiny_scene, semantics_source="nowhere")


def test_every_network_trains_in_every_preset(tiny_scene):
    for preset in ("fast", "instant"):
        from headrecon.data import load_scene
        from headrecon.recon.config import make_config
        from headrecon.recon.trainer import Trainer

        cfg = make_config(preset, method="wang", **{**TINY, "iterations": 3, "semantic_from": 0.0, "hash_levels": 4,
                                                   "hash_log2_size": 10})
        tr = Trainer(cfg, load_scene(tiny_scene, views="3"), device="cpu")
        tr.train()
        trained = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
        assert all(id(p) in trained for p in tr.model.parameters()), preset


def test_wang_reconstructs_end_to_end(tiny_scene, tmp_path):
    from headrecon.recon.config import make_config
    from headrecon.recon.pipeline import reconstruct

    cfg = make_config("fast", method="wang", **{**TINY, "iterations": 8, "semantic_from": 0.25,
                                                "orientation_from": 0.5})
    reconstruct(tiny_scene, cfg, tmp_path / "run", progress=False, log=lambda *a, **k: None)
    run = tmp_path / "run"
    assert (run / "mesh.ply").is_file() and (run / "metrics.json").is_file()
    info = json.loads((run / "run.json").read_text())["method_info"]
    assert info["semantics"]["source"] == "scene" and info["orientation"]["hair_pixels"] > 0
    assert info["proxy"]["source"] == "images" and info["proxy"]["triangles"] > 300
    assert (run / "cameras_refined.npz").is_file()


def test_no_face_no_proxy_and_the_run_says_why(tiny_scene):
    pytest.importorskip("mediapipe")
    from headrecon.data import load_scene
    from headrecon.methods.wang import WangMethod
    from headrecon.recon.config import make_config

    s = load_scene(tiny_scene, views="3")
    for v in s.views:
        v.image = np.full_like(v.image, 0.5)
    m = WangMethod(make_config("fast", method="wang", **TINY))
    m.build(s, torch.device("cpu"))
    assert m.proxy is None and "no face" in m.info()["proxy"]["why_not"]
    assert m.extra_losses(torch.nn.Linear(1, 1), iteration=0) == {}


# ---------------------------------------------------------------------------------------------- photos (shared data)
@pytest.fixture(scope="module")
def haired_scene(shared_data, tmp_path_factory):
    from headrecon.data.make_scene import main

    out = tmp_path_factory.mktemp("wang_hair") / "s"
    assert main(["--ict", "100002", "--hair", "short", "--views", "8", "--size", "256", "--hair-voxel", "2.5",
                 "--quiet", "--out", str(out)]) == 0
    return out


def test_photo_label_maps_agree_with_the_rendered_labels(haired_scene):
    pytest.importorskip("mediapipe")
    from headrecon.data import load_scene
    from headrecon.photos.semantics import photo_label_maps

    s = load_scene(haired_scene, views=[0, 1, 4])   # front, 45 degrees, back
    maps, found = photo_label_maps([v.image for v in s.views], [v.mask for v in s.views])
    assert found == [True, True, False]
    assert ((maps[2] == IGNORE_LABEL) == s.views[2].mask).all()  # no face: unknown over the head
    for m, v in zip(maps[:2], s.views[:2]):
        known = (m != IGNORE_LABEL) & v.mask
        assert known.sum() > 0.6 * v.mask.sum()
        assert (m[~v.mask] == 0).all()
        assert (m[known] == v.semantic[known]).mean() > 0.8
        for c in ("skin", "neck", "hair"):
            sel = known & (m == L[c])
            assert (v.semantic[sel] == L[c]).mean() > 0.85, c


def test_face_proxy_lies_on_the_face(haired_scene):
    pytest.importorskip("mediapipe")
    from scipy.spatial import cKDTree

    from headrecon.data import load_scene
    from headrecon.photos.proxy import face_proxy

    s = load_scene(haired_scene, views="3")
    whole, inner = face_proxy(s), face_proxy(s, radius_mm=70.0)
    assert whole.report["source"] == "images" and whole.triangles.shape[0] > 800
    assert 400 < inner.triangles.shape[0] < whole.triangles.shape[0]
    tree = cKDTree(s.gt_mesh.sample(200000, seed=0))  # evaluation only: how far the fitted face lies from the truth
    d, _ = tree.query(inner.sample(5000, torch.Generator().manual_seed(0)))
    assert np.median(d) < 2.5 and np.percentile(d, 90) < 5.0, (np.median(d), np.percentile(d, 90))
    d_whole, _ = tree.query(whole.sample(5000, torch.Generator().manual_seed(0)))
    assert np.median(d_whole) > np.median(d)
