"""The hash-grid detail field (``--detail hashgrid``, headrecon.models.hashgrid): it starts as its base, its
levels switch on coarse to fine, its gradients reach the table through the Eikonal term, an IDR fit with it runs
end to end on a tiny scene, improves on the initial sphere, and resumes exactly."""
import numpy as np
import pytest
import torch

from exact_resume import assert_resume_is_exact
from headrecon.models.hashgrid import HashGridSDF, sphere_sdf
from headrecon.recon.config import make_config


def test_starts_as_its_base_and_schedules_levels():
    m = HashGridSDF(sphere_sdf(0.6), levels=6, log2_size=12, start_levels=2, full_at=0.5)
    x = torch.rand(500, 3) * 2 - 1
    torch.testing.assert_close(m.sdf(x), x.norm(dim=1) - 0.6)
    assert m.active_levels == 2
    m.set_training_progress(0.25)
    assert m.active_levels == 4
    m.set_training_progress(0.5)
    assert m.active_levels == 6
    m.set_training_progress(1.0)
    assert m.active_levels == 6
    with pytest.raises(ValueError):
        HashGridSDF(sphere_sdf(0.6), levels=4, start_levels=5)


def test_eikonal_gradient_reaches_table_and_inactive_levels_get_none():
    torch.manual_seed(0)
    m = HashGridSDF(sphere_sdf(0.6), levels=4, log2_size=10, start_levels=2)
    with torch.no_grad():  # a non-trivial field: the SDF row of the last layer away from zero
        m.mlp[-1].weight[0].normal_(0, 0.1)
    x = torch.rand(400, 3) * 1.6 - 0.8
    sdf, feat, g = m.forward_with_gradient(x, create_graph=True)
    ((g.norm(dim=1) - 1) ** 2).mean().backward()
    per_level = m.table.grad.abs().sum(dim=(1, 2))
    assert (per_level[:2] > 0).all() and (per_level[2:] == 0).all()


def test_inactive_levels_skipped_equal_the_masked_encoding():
    """Inactive levels are not encoded: the field, its gradient and the table's gradient (Eikonal term, double
    backward) equal those of encoding every level and zeroing the inactive ones."""
    from headrecon import ops

    torch.manual_seed(0)
    m = HashGridSDF(sphere_sdf(0.6), levels=5, log2_size=10, start_levels=2, init_scale=0.1)
    with torch.no_grad():
        m.mlp[-1].weight.normal_(0, 0.1)
    m.set_training_progress(0.1)
    assert m.active_levels == 2

    def masked(x):  # the reference: all levels encoded, the inactive ones multiplied by zero
        mask = (torch.arange(m.levels) < m.active_levels).to(x.dtype).repeat_interleave(m.feats)
        h = torch.cat([ops.hash_encode(x, m.table, m.res_t, m.radius) * mask, x], dim=-1)
        for lin in m.mlp[:-1]:
            h = m.act(lin(h))
        out = m.mlp[-1](h)
        return x.norm(dim=-1) - 0.6 + out[:, 0], out[:, 1:]

    x = torch.rand(300, 3) * 1.8 - 0.9
    grads = []
    for fn in (m, masked):
        xx = x.clone().requires_grad_(True)
        sdf, feat = fn(xx)
        g = torch.autograd.grad(sdf.sum(), xx, create_graph=True)[0]
        m.table.grad = None
        (((g.norm(dim=1) - 1) ** 2).mean() + feat.square().mean()).backward()
        grads.append((sdf.detach(), feat.detach(), g.detach(), m.table.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert (grads[0][3][2:] == 0).all() and (grads[0][3][:2] != 0).any()


def test_sdf_alone_equals_the_forward_sdf():
    """``sdf`` (the tracer's and marching cubes' call: the base's SDF alone and the MLP's SDF row) equals the SDF
    of ``forward`` for a function base and for a geometry-module base (whose features it skips)."""
    from headrecon.models import GeometryNetwork

    torch.manual_seed(0)
    x = torch.rand(700, 3) * 1.8 - 0.9
    net = GeometryNetwork(d_hidden=32, n_layers=3, skip_in=(2,), n_freqs=0, d_feature=8)
    for base, d_feature in ((sphere_sdf(0.6), 16), (net, 0), (net, 8)):
        m = HashGridSDF(base, levels=4, log2_size=10, start_levels=3, d_feature=d_feature, init_scale=0.1)
        with torch.no_grad():
            m.mlp[-1].weight.normal_(0, 0.1)
            m.mlp[-1].bias.normal_(0, 0.1)
        torch.testing.assert_close(m.sdf(x), m(x)[0])
        torch.testing.assert_close(m.sdf(x.view(7, 100, 3)), m(x)[0].view(7, 100))


def test_fd_normals_are_central_differences_of_the_detail_over_the_base_gradient():
    """``normals="fd"``: same SDF and features as ``forward``; the gradient is the base's (analytic) plus central
    differences of the detail with a step of one cell of the finest active level; the Eikonal term reaches the
    table without a double backward; without a detail the two kinds of normals agree."""
    torch.manual_seed(0)
    kw = dict(levels=4, log2_size=10, start_levels=2, finest_res=64)
    fd = HashGridSDF(sphere_sdf(0.6), normals="fd", **kw)
    an = HashGridSDF(sphere_sdf(0.6), normals="analytic", **kw)
    x = torch.rand(300, 3) * 1.6 - 0.8
    torch.testing.assert_close(fd.forward_with_gradient(x, create_graph=False)[2],
                               an.forward_with_gradient(x, create_graph=False)[2])
    with torch.no_grad():
        fd.mlp[-1].weight.normal_(0, 0.1)
    h = fd.fd_step()
    assert h == pytest.approx(2.0 / fd.resolutions[1])
    sdf, feat, g = fd.forward_with_gradient(x, create_graph=True)
    s0, f0 = fd(x)
    torch.testing.assert_close(sdf, s0)
    torch.testing.assert_close(feat, f0)
    eye = torch.eye(3) * h
    cd = torch.stack([(fd.sdf(x + e) - fd.sdf(x - e)) / (2 * h) for e in eye], dim=1)
    base = torch.stack([((x + e).norm(dim=1) - (x - e).norm(dim=1)) / (2 * h) for e in eye], dim=1)
    torch.testing.assert_close(g, cd - base + x / x.norm(dim=1, keepdim=True), atol=2e-4, rtol=1e-4)
    ((g.norm(dim=1) - 1) ** 2).mean().backward()
    per_level = fd.table.grad.abs().sum(dim=(1, 2))
    assert (per_level[:2] > 0).all() and (per_level[2:] == 0).all()
    fd.set_training_progress(1.0)
    assert fd.fd_step() == pytest.approx(2.0 / 64)
    with pytest.raises(ValueError, match="normals"):
        HashGridSDF(sphere_sdf(0.6), normals="sobel")


def _tiny_scene(tmp_path_factory):
    from test_recon import ellipsoid_mesh

    from headrecon.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("scene") / "ellipsoid"
    make_scene(ellipsoid_mesh(), out, views=8, size=64, progress=False)
    return out


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    return _tiny_scene(tmp_path_factory)


TINY = dict(image_size=48, batch_rays=384, feature_size=16, render_hidden=32, render_layers=2, mesh_resolution=48,
            render_size=32, checkpoint_every=50, log_every=5, novel_yaws=(180.0,), detail="hashgrid",
            hash_levels=6, hash_log2_size=13, hash_finest_res=128, hash_hidden=32, threads=1)


def test_idr_with_hashgrid_improves_on_the_sphere(tiny_scene):
    """120 iterations of IDR with the detail field on 4 views of an ellipsoid: the head error falls well below
    the initial sphere's (~19.5 mm)."""
    from headrecon.data import load_scene
    from headrecon.eval import evaluate
    from headrecon.recon.trainer import Trainer

    scene = load_scene(tiny_scene, views="4")
    tr = Trainer(make_config("fast", iterations=120, **TINY), scene, device="cpu")
    assert type(tr.model.geometry).__name__ == "HashGridSDF"
    before = evaluate(tr.extract_mesh(resolution=48), scene, protocol="exact", align="none")
    tr.train()
    after = evaluate(tr.extract_mesh(), scene, protocol="exact", align="none")
    assert before["head_gt2pred_mm"] > 8.0
    assert after["head_gt2pred_mm"] < 0.5 * before["head_gt2pred_mm"], after
    assert tr.model.geometry.active_levels == 6


@pytest.mark.parametrize("normals", ["analytic", "fd"])
def test_hashgrid_resume_is_exact(tiny_scene, tmp_path, normals):
    from headrecon.data import load_scene
    from headrecon.recon.trainer import Trainer

    scene = load_scene(tiny_scene, views="3")
    cfg = make_config("fast", iterations=6, **dict(TINY, batch_rays=256, hash_full_at=0.5, hash_normals=normals))
    assert_resume_is_exact(lambda: Trainer(cfg, scene, device="cpu"), tmp_path / "ckpt.pt", stop_after=4)


def test_config_checks_hash_settings():
    with pytest.raises(ValueError, match="detail"):
        make_config("fast", detail="voxels")
    with pytest.raises(ValueError, match="hash grid settings"):
        make_config("fast", detail="hashgrid", hash_start_levels=20, hash_levels=8)
    with pytest.raises(ValueError, match="hash_normals"):
        make_config("fast", detail="hashgrid", hash_normals="sobel")


@pytest.mark.parametrize("method", ["h3dnet", "sira"])
def test_prior_methods_train_the_detail_field_in_phase_2(tiny_scene, method):
    """With --detail hashgrid a prior method's phase 1 fits the latent(s) as before; phase 2 trains the detail
    field and the latent, the prior's decoder / deformation stays as shipped."""
    from headrecon.data import load_scene
    from headrecon.methods.base import split_detail
    from headrecon.recon.trainer import Trainer

    scene = load_scene(tiny_scene, views="3")
    over = dict(image_size=32, batch_rays=128, render_hidden=32, render_layers=2, mesh_resolution=32,
                render_size=32, checkpoint_every=50, log_every=2, novel_yaws=(180.0,), detail="hashgrid",
                hash_levels=4, hash_log2_size=12, hash_finest_res=64, hash_hidden=16, threads=1, detail_weight=1.0,
                frame="centre")
    if method == "h3dnet":
        over["prior_latent_fraction"] = 0.5
    else:
        over["sira_unfreeze_epoch"] = 1000
    tr = Trainer(make_config("fast", method=method, iterations=6, **over), scene, device="cpu")
    base, detail = split_detail(tr.model.geometry)
    assert detail is not None
    frozen = {k: v.detach().clone() for k, v in base.named_parameters() if "latent" not in k}
    table0 = detail.table.detach().clone()
    tr.train(stop_after=3)
    assert torch.equal(detail.table, table0)  # phase 1: the detail field does not train
    tr.train()
    assert not torch.equal(detail.table, table0)
    for k, v in base.named_parameters():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    assert "detail_loss" in tr.history[-1]


def test_prior_methods_default_to_a_detail_field_except_the_paper_preset():
    from headrecon.recon.config import make_config

    for method in ("h3dnet", "sira"):
        assert make_config("fast", method=method).detail == "hashgrid"
        assert make_config("instant", method=method).detail == "hashgrid"
        assert make_config("paper", method=method).detail == "none"  # the paper's fine-tuning
        assert make_config("fast", method=method, detail="none").detail == "none"
    assert make_config("fast", method="idr").detail == "none"


def test_active_levels_follow_a_loaded_state():
    """The host-side count of active levels (read by ``fd_step`` every call) follows ``load_state_dict``."""
    a = HashGridSDF(sphere_sdf(0.6), levels=6, log2_size=10, start_levels=2, normals="fd")
    b = HashGridSDF(sphere_sdf(0.6), levels=6, log2_size=10, start_levels=2, normals="fd")
    a.set_training_progress(1.0)
    b.load_state_dict(a.state_dict())
    assert b.active_levels == 6 and b.fd_step() == a.fd_step()


def test_visibility_of_a_sphere_and_an_occluder():
    """``seen_by_any``: on a sphere (no occlusion) a point is seen exactly when it faces the camera within the
    angle; a second sphere in front hides the part of the first behind it; a point outside the image is unseen."""
    import trimesh

    from headrecon.data.camera import Camera
    from headrecon.data.geometry import seen_by_any, unseen_surface_points

    ball = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    K = np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])
    cam = Camera(K=K, R=np.diag([1.0, -1.0, -1.0]), t=np.array([0.0, 0.0, 3.0]), width=128, height=128)
    centre = -cam.R.T @ cam.t
    assert np.allclose(centre, [0, 0, 3])
    pts, face = trimesh.sample.sample_surface(ball, 3000, seed=1)
    n = ball.face_normals[face]
    seen = seen_by_any(ball, pts, [cam], normals=n, max_angle_deg=80.0)
    to_cam = centre - pts
    cosang = (n * to_cam).sum(1) / np.linalg.norm(to_cam, axis=1)
    clear = np.abs(cosang - np.cos(np.radians(80.0))) > 0.02  # away from the angle's edge (facet normals)
    assert np.array_equal(seen[clear], (cosang > np.cos(np.radians(80.0)))[clear])
    assert 0.2 < seen.mean() < 0.5
    # an occluder between the camera and the sphere's front
    blocker = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    blocker.apply_translation([0, 0, 1.2])
    both = trimesh.util.concatenate([ball, blocker])
    seen2 = seen_by_any(both, pts, [cam], normals=n, max_angle_deg=80.0)
    front = (pts[:, 2] > 0.45) & (np.hypot(pts[:, 0], pts[:, 1]) < 0.05)
    assert front.any() and not seen2[front].any() and seen[front].all()
    # outside the image: the camera turned away sees nothing
    away = Camera(K=K, R=np.eye(3), t=np.array([0.0, 0.0, -3.0]), width=128, height=128)  # at +3Z, looking +Z
    assert np.allclose(-away.R.T @ away.t, centre)
    assert not seen_by_any(ball, pts, [away], normals=n).any()
    u = unseen_surface_points(ball, [cam], n=500, seed=0, samples=4000)
    assert u.shape == (500, 3) and (u[:, 2] < 0.5 * np.cos(np.radians(10.0)) + 0.05).all()
    assert np.array_equal(u, unseen_surface_points(ball, [cam], n=500, seed=0, samples=4000))


@pytest.mark.parametrize("method", ["h3dnet", "sira"])
def test_unseen_surface_is_held_in_phase_2(tiny_scene, tmp_path, method):
    """``detail_unseen_weight``: when phase 2 starts the detail field stores surface points no training camera
    sees (from 3 front-ish views of the ellipsoid: the back), the magnitude term is trained on them, a resumed run
    is exact (the points come from the checkpoint), and the option is refused where it has no prior to hold."""
    from headrecon.data import load_scene
    from headrecon.methods.base import UNSEEN_POINTS, split_detail
    from headrecon.recon.trainer import Trainer

    scene = load_scene(tiny_scene, views="3")
    over = dict(image_size=32, batch_rays=128, render_hidden=32, render_layers=2, mesh_resolution=32,
                render_size=32, checkpoint_every=50, log_every=1, novel_yaws=(180.0,), detail="hashgrid",
                hash_levels=4, hash_log2_size=12, hash_finest_res=64, hash_hidden=16, threads=1,
                detail_unseen_weight=100.0, frame="centre")
    if method == "h3dnet":
        over["prior_latent_fraction"] = 0.5
    else:
        over["sira_unfreeze_epoch"] = 1000
    cfg = make_config("fast", method=method, iterations=6, **over)
    tr = Trainer(cfg, scene, device="cpu")
    detail = split_detail(tr.model.geometry)[1]
    tr.train(stop_after=3)
    assert detail.n_unseen == 0  # phase 1
    tr.train()
    assert detail.n_unseen == UNSEEN_POINTS == int(detail.unseen_count)
    cams = scene.cameras_normalized()
    centres = torch.tensor(np.array([-c.R.T @ c.t for c in cams]), dtype=torch.float32)
    # the held points lie away from the cameras: on the far side of the head's centre from every camera
    front = centres.mean(0) / centres.mean(0).norm()
    assert (detail.unseen_points @ front < 0.1).float().mean() > 0.8
    assert tr.history[-1]["detail_loss"] > 0
    assert_resume_is_exact(lambda: Trainer(cfg, scene, device="cpu"), tmp_path / "ckpt.pt", stop_after=4)
    with pytest.raises(ValueError, match="detail_unseen_weight"):
        make_config("fast", method="idr", detail="hashgrid", detail_unseen_weight=1.0)
    with pytest.raises(ValueError, match="detail_unseen_weight"):
        make_config("fast", method=method, detail="none", detail_unseen_weight=1.0)


@pytest.mark.parametrize("method,detail", [("sira", "hashgrid"), ("h3dnet", "none")])
def test_prior_hold_keeps_the_placed_prior_where_no_camera_looks(tiny_scene, tmp_path, method, detail):
    """``prior_hold_weight``: the placed prior's SDF is recorded, before any fitting, at fixed points around the
    part of its surface that no training camera sees (3 front-ish views: the back); the term is 0 on the
    unfitted model, weighted, grows when the latent moves, reaches the latent, is trained from the first
    iteration, and a resumed run is exact (the points are rebuilt from the config); refused for ``idr``."""
    from headrecon.data import load_scene
    from headrecon.methods.base import HOLD_POINTS, split_detail
    from headrecon.recon.trainer import Trainer

    scene = load_scene(tiny_scene, views="3")
    over = dict(image_size=32, batch_rays=128, render_hidden=32, render_layers=2, mesh_resolution=32,
                render_size=32, checkpoint_every=50, log_every=1, novel_yaws=(180.0,), detail=detail,
                hash_levels=4, hash_log2_size=12, hash_finest_res=64, hash_hidden=16, threads=1, frame="centre")
    terms = {}
    for w in (10.0, 30.0):
        cfg = make_config("fast", method=method, iterations=6, prior_hold_weight=w, **over)
        tr = Trainer(cfg, scene, device="cpu")
        hold = tr.method.hold
        assert len(hold) == HOLD_POINTS
        cams = scene.cameras_normalized()
        centres = torch.tensor(np.array([-c.R.T @ c.t for c in cams]), dtype=torch.float32)
        front = centres.mean(0) / centres.mean(0).norm()
        assert (hold.points @ front < 0.1).float().mean() > 0.8  # the far side from the cameras
        assert float(tr.method.extra_losses(tr.model, iteration=2)["hold_loss"].detach()) < 1e-10  # unfitted: no change
        geo, _ = split_detail(tr.model.geometry)
        with torch.no_grad():
            geo.latent.add_(0.05 * torch.randn(geo.latent.shape, generator=torch.Generator().manual_seed(1)))
        terms[w] = tr.method.extra_losses(tr.model, iteration=2)["hold_loss"]
    assert float(terms[10.0].detach()) > 0 and torch.allclose(terms[30.0], 3.0 * terms[10.0], rtol=1e-4)
    (g,) = torch.autograd.grad(terms[30.0], geo.latent)
    assert float(g.norm()) > 0
    tr = Trainer(cfg, scene, device="cpu")
    tr.train(stop_after=2)
    assert tr.history[-1]["hold_loss"] > 0  # phase 1 already holds it
    assert_resume_is_exact(lambda: Trainer(cfg, scene, device="cpu"), tmp_path / "ckpt.pt", stop_after=4)
    off = Trainer(make_config("fast", method=method, iterations=6, **over), scene, device="cpu")
    assert off.method.hold is None and "hold_loss" not in off.method.extra_losses(off.model, iteration=0)
    with pytest.raises(ValueError, match="prior_hold_weight"):
        make_config("fast", method="idr", prior_hold_weight=1.0)
    with pytest.raises(ValueError, match="prior_hold_weight"):
        make_config("fast", method=method, prior_hold_weight=-1.0)
