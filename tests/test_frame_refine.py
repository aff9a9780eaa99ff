"""``--frame-refine``: a rigid correction of the prior's placement (headrecon.models.pose) trained by the images'
losses. A prior geometry with a correction equals one built on the composed fixed frame (SDF, features, the SIRA++
rendering's rotated normals and view directions); the correction trains only in the chosen phases, is reported,
resumes exactly, and is refused for a method without a prior."""
import numpy as np
import pytest
import torch

from exact_resume import assert_resume_is_exact
from headrecon.models.pose import RigidCorrection, so3_exp
from headrecon.recon.config import make_config

@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from test_detail import _tiny_scene

    return _tiny_scene(tmp_path_factory)


OMEGA = torch.tensor([0.05, -0.12, 0.08])
T = torch.tensor([0.02, -0.03, 0.04])


def _frame():
    from scipy.spatial.transform import Rotation

    F = np.eye(4)
    F[:3, :3] = 1.3 * Rotation.from_rotvec([0.1, 0.4, -0.2]).as_matrix()
    F[:3, 3] = [0.05, -0.1, 0.2]
    return F


def _composed(F):
    P = np.eye(4)
    P[:3, :3] = so3_exp(OMEGA.double()).numpy()
    P[:3, 3] = T.double().numpy()
    return P @ F


def _set(pose):
    with torch.no_grad():
        pose.rotation.copy_(OMEGA)
        pose.translation.copy_(T)


def test_rigid_correction_starts_as_the_identity():
    c = RigidCorrection()
    x = torch.randn(20, 3)
    assert torch.equal(c(x), x)
    _set(c)
    R = c.matrix()
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-6, rtol=0)
    s = c.summary(mm_per_unit=100.0)
    assert s["rotation_deg"] == pytest.approx(float(np.degrees(float(OMEGA.norm()))), abs=1e-3)
    assert s["translation_mm"] == pytest.approx(100.0 * float(T.norm()), abs=1e-2)


def test_h3dnet_geometry_with_a_correction_equals_the_composed_frame():
    from headrecon.priors.h3dnet.model import load_prior

    prior = load_prior(None)
    F = _frame()
    a = prior.geometry_network(frame=F)
    x = torch.rand(300, 3) * 1.2 - 0.6
    s0 = a.sdf(x)
    a.enable_pose_refinement()
    torch.testing.assert_close(a.sdf(x), s0)  # identity at the start
    _set(a.pose)
    b = prior.geometry_network(frame=_composed(F))
    torch.testing.assert_close(a.sdf(x), b.sdf(x), atol=2e-5, rtol=0)
    torch.testing.assert_close(a.gradient(x, create_graph=False), b.gradient(x, create_graph=False), atol=1e-4, rtol=0)
    assert {id(p) for p in a.pose_parameters()} == {id(a.pose.rotation), id(a.pose.translation)}


def test_sira_geometry_and_rendering_follow_the_correction():
    from headrecon.priors.sira.model import load_sira

    model = load_sira(None)
    F = _frame()
    ga, ra = model.geometry_network(frame=F)
    ga.enable_pose_refinement()
    _set(ga.pose)
    gb, rb = model.geometry_network(frame=_composed(F))
    x = torch.rand(200, 3) * 1.2 - 0.6
    sa, fa = ga(x)
    sb, fb = gb(x)
    torch.testing.assert_close(sa, sb, atol=2e-5, rtol=0)
    torch.testing.assert_close(fa, fb, atol=2e-5, rtol=0)
    n, v = torch.nn.functional.normalize(torch.randn(200, 3), dim=1), torch.nn.functional.normalize(
        torch.randn(200, 3), dim=1)
    torch.testing.assert_close(ra(x, n, v, fa), rb(x, n, v, fb), atol=2e-5, rtol=0)
    # the rendering's gradient reaches the correction (normals and view directions turn with it)
    ra(x, n, v, fa.detach()).sum().backward()
    assert ga.pose.rotation.grad is not None and ga.pose.rotation.grad.abs().sum() > 0


def _tiny_cfg(method, mode, **extra):
    over = dict(image_size=32, batch_rays=128, render_hidden=32, render_layers=2, mesh_resolution=32,
                render_size=32, checkpoint_every=50, log_every=2, novel_yaws=(180.0,), detail="hashgrid",
                hash_levels=4, hash_log2_size=12, hash_finest_res=64, hash_hidden=16, threads=1, frame="centre",
                frame_refine=mode, frame_refine_lr=1e-2)
    over.update({"prior_latent_fraction": 0.5} if method == "h3dnet" else {"sira_unfreeze_epoch": 1000})
    over.update(extra)
    return make_config("fast", method=method, iterations=6, **over)


@pytest.mark.parametrize("method", ["h3dnet", "sira"])
def test_the_correction_trains_in_the_latent_phase_only_with_latent(tiny_scene, method):
    from headrecon.data import load_scene
    from headrecon.recon.trainer import Trainer

    scene = load_scene(tiny_scene, views="3")
    tr = Trainer(_tiny_cfg(method, "latent"), scene, device="cpu")
    pose = tr.prior_pose
    assert pose is not None and torch.equal(pose.rotation, torch.zeros(3))
    tr.train(stop_after=3)
    moved = torch.cat([pose.rotation, pose.translation]).detach().clone()
    assert moved.abs().sum() > 0  # the latent phase trained it
    tr.train()
    assert torch.equal(torch.cat([pose.rotation, pose.translation]).detach(), moved)  # phase 2 did not
    s = tr.prior_pose_summary()
    assert s["rotation_deg"] > 0 and s["translation_mm"] > 0


def test_the_correction_trains_all_run_with_all_and_resumes_exactly(tiny_scene, tmp_path):
    from headrecon.data import load_scene
    from headrecon.recon.trainer import Trainer

    scene = load_scene(tiny_scene, views="3")
    cfg = _tiny_cfg("h3dnet", "all")
    straight = Trainer(cfg, scene, device="cpu")
    straight.train(stop_after=3)
    mid = straight.prior_pose.translation.detach().clone()
    straight.train()
    assert not torch.equal(straight.prior_pose.translation.detach(), mid)  # phase 2 trained it too
    assert_resume_is_exact(lambda: Trainer(cfg, scene, device="cpu"), tmp_path / "ckpt.pt", stop_after=4,
                           straight=straight)


def test_the_correction_needs_a_prior_method(tiny_scene):
    from headrecon.data import load_scene
    from headrecon.recon.trainer import Trainer

    with pytest.raises(ValueError, match="frame_refine"):
        make_config("fast", method="h3dnet", frame_refine="yes")
    scene = load_scene(tiny_scene, views="3")
    with pytest.raises(ValueError, match="places no prior"):
        Trainer(make_config("fast", method="idr", frame_refine="latent", image_size=32, iterations=2), scene,
                device="cpu")


def test_from_prior_inverts_the_frame_and_the_correction():
    from headrecon.priors.h3dnet.model import load_prior

    geo = load_prior(device="cpu").geometry_network(frame=_frame())
    x = torch.randn(50, 3) * 0.4
    assert torch.allclose(geo.from_prior(geo._framed(x)), x, atol=1e-5)
    geo.enable_pose_refinement()
    _set(geo.pose)
    assert torch.allclose(geo.from_prior(geo._framed(x)), x, atol=1e-5)


def test_predicted_landmarks_are_the_placed_priors(tiny_scene):
    """``Trainer.predicted_landmarks`` (the run folder's landmarks.json): with ``--frame gt`` on ground-truth
    landmarks that are the prior's mean-head landmarks moved rigidly, exactly those; with a correction they move
    with it (back through the placement they are the prior's own); none for a method without a prior."""
    from scipy.spatial.transform import Rotation

    from headrecon.data import load_scene
    from headrecon.methods.base import split_detail
    from headrecon.priors.h3dnet.model import load_prior
    from headrecon.recon.trainer import Trainer

    scene = load_scene(tiny_scene, views="3")
    R = Rotation.from_rotvec([0.1, -0.3, 0.05]).as_matrix()
    t = np.array([4.0, -12.0, 7.0])
    mean = {k: np.asarray(v, dtype=np.float64) for k, v in load_prior().norm.landmarks_mm.items()}
    scene.landmarks = {k: R @ v + t for k, v in mean.items()}  # points, not vertex indices
    tr = Trainer(_tiny_cfg("h3dnet", "latent", frame="gt"), scene, device="cpu")
    pred = tr.predicted_landmarks()
    assert sorted(pred) == sorted(mean)
    for k in mean:
        assert np.allclose(pred[k], scene.landmarks[k], atol=0.05), (k, pred[k], scene.landmarks[k])
    _set(tr.prior_pose)
    moved = tr.predicted_landmarks()
    assert min(np.linalg.norm(np.subtract(moved[k], pred[k])) for k in pred) > 1.0
    S = np.linalg.inv(np.asarray(scene.scale_mat, dtype=np.float64))
    x = torch.tensor(np.stack([S[:3, :3] @ moved[k] + S[:3, 3] for k in tr.method.prior_landmarks]),
                     dtype=torch.float32)
    back = split_detail(tr.model.geometry)[0]._framed(x).detach().numpy()
    assert np.allclose(back, np.stack(list(tr.method.prior_landmarks.values())), atol=1e-4)
    idr = Trainer(make_config("fast", method="idr", image_size=32, iterations=2, threads=1), scene, device="cpu")
    assert idr.predicted_landmarks() is None


def test_run_folder_has_the_landmarks_and_the_official_figures_with_them(tmp_path):
    """A prior method's run folder: landmarks.json (the placed prior's six landmarks, scene mm) and, against a
    ground truth with six landmarks, ``metrics.json``'s ``h3ds_landmarks`` (the official protocol with them as the
    prediction's landmarks: Procrustes first), equal to evaluating the mesh with that file."""
    import json

    from test_eval import head_mesh

    from headrecon.data.synthetic import make_scene
    from headrecon.eval import evaluate
    from headrecon.recon.pipeline import reconstruct

    scene_dir = tmp_path / "head"
    make_scene(head_mesh(), scene_dir, views=[0.0, -45.0, 45.0], size=48, progress=False)
    cfg = _tiny_cfg("h3dnet", "off")
    run = tmp_path / "run"
    reconstruct(scene_dir, cfg, run, progress=False, log=lambda *a: None)
    lm = json.loads((run / "landmarks.json").read_text())
    m = json.loads((run / "metrics.json").read_text())
    got = m["h3ds_landmarks"]
    assert got["alignment"] == "landmarks+h3ds-icp" and m["h3ds"]["alignment"] != got["alignment"]
    import trimesh
    again = evaluate(trimesh.load(run / "mesh.ply", process=False), scene_dir, pred_landmarks=lm)
    assert abs(again["head_gt2pred_mm"] - got["head_gt2pred_mm"]) < 1e-6
    assert got["head_gt2pred_mm"] != m["h3ds"]["head_gt2pred_mm"]  # a different alignment
