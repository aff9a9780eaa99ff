"""Tests of SIRA++ (headrecon.priors.sira.model, headrecon.priors.sira.train, headrecon.methods.sira): model shapes and
near-zero initialisation, each loss term on analytic cases, progressive PE masking, a tiny training run on
coloured ellipsoids, checkpoint round trip (weights_only), exact resume, 2-process gloo DDP, the phase schedule of
``--method sira`` and a one-view reconstruction smoke run. No shared data needed."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
import trimesh
from torchrun import run_torchrun

from headrecon.priors.sira.options import SIRA_OPTIONS, option_field
from headrecon.priors.normalization import Normalization
from headrecon.priors.sira.model import (
    SiraConfig,
    SiraPrior,
    deformation_regulariser,
    landmark_consistency,
    load_sira,
    pe_progress,
    sira_losses,
    sira_preset,
)
from headrecon.priors.sira.train import checkpoint_path, sample_batch, sira_mesh_data, surface_indices, train_sira
from headrecon.priors.training import TrainingError

TINY = dict(def_hidden=32, def_layers=2, def_freqs=2, ref_hidden=48, ref_layers=3, ref_skip=(2,), ref_freqs=4,
            latent_dim=8, app_latent_dim=4, d_gamma=4, render_hidden=32, render_layers=1, epochs=24,
            pe_start=2.0, pe_end=12.0, shapes_per_batch=3, surface_points=96, volume_points=96, color_points=96,
            lr=2e-3, lr_latent=1e-2, decay_every=100, normal_weight=1.0, image_views=2, image_size=32,
            scan_points=2000, preset="custom")
AXES = [(70.0, 90.0, 80.0), (62.0, 84.0, 88.0), (76.0, 96.0, 74.0)]


pytestmark = pytest.mark.usefixtures("one_thread")


def coloured_ellipsoid(axes, phase: float = 0.0):
    """An ellipsoid head in mm around the prior's centre with smooth colour bands and six landmarks."""
    norm = Normalization()
    m = trimesh.creation.icosphere(subdivisions=3)
    u = np.asarray(m.vertices)
    col = np.stack([0.55 + 0.35 * np.sin(3 * u[:, 1] + phase), 0.5 + 0.3 * np.cos(2 * u[:, 0] + u[:, 2]),
                    0.45 + 0.3 * np.sin(2 * u[:, 2] - u[:, 1])], 1)
    m.vertices = u * np.asarray(axes) + np.asarray(norm.center_mm)
    rgba = np.concatenate([np.round(np.clip(col, 0, 1) * 255), np.full((len(u), 1), 255)], 1).astype(np.uint8)
    m.visual = trimesh.visual.ColorVisuals(m, vertex_colors=rgba)
    dirs = {"right_eye": (-0.4, 0.3, 0.85), "left_eye": (0.4, 0.3, 0.85), "nose_tip": (0, 0, 1),
            "nose_base": (0, -0.2, 0.95), "right_lips": (-0.3, -0.5, 0.8), "left_lips": (0.3, -0.5, 0.8)}
    m.metadata["landmarks"] = {k: int(np.argmax(u @ (np.asarray(d) / np.linalg.norm(d)))) for k, d in dirs.items()}
    return m


def tiny_cfg(**kw):
    c = dict(TINY)
    c.update(kw)
    return SiraConfig(**c)


@pytest.fixture(scope="module")
def data():
    meshes = [coloured_ellipsoid(a, phase=i) for i, a in enumerate(AXES)]
    return sira_mesh_data(meshes, tiny_cfg(), description={"source": "test-ellipsoids"},
                          simulation=dict(back_cut=(0.0, 0.0), n_holes=(0, 0), noise_mm=0.0, normal_noise_deg=0.0))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sira") / "sira.pt"
    model = train_sira(tiny_cfg(), data, out, progress=False, log=lambda *_: None)
    return model, out


# ------------------------------------------------------------------------------------------ model
def test_model_shapes_and_near_zero_init():
    cfg = tiny_cfg()
    m = SiraPrior(cfg, num_latents=5)
    assert m.z_sdf.weight.shape == (5, 8) and m.z_r.weight.shape == (5, 4)
    assert float(m.z_sdf.weight.detach().abs().max()) == 0.0 and float(m.z_r.weight.detach().abs().max()) == 0.0
    x = torch.rand(200, 3) * 1.6 - 0.8
    z = m.z_sdf(torch.tensor(1))
    with torch.no_grad():
        sdf, x_ref, delta, gamma = m(x, z)
    assert sdf.shape == (200,) and x_ref.shape == (200, 3) and delta.shape == (200, 3) and gamma.shape == (200, 4)
    assert float(delta.abs().max()) < 1e-2 and float(gamma.abs().max()) < 1e-2
    # reference SDF starts as the geometric-init sphere
    dirs = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    with torch.no_grad():
        assert float(m.sdf(dirs * 0.05, z).max()) < 0 < float(m.sdf(dirs * 1.2, z).min())
    n = torch.nn.functional.normalize(torch.randn(200, 3), dim=-1)
    rgb = m.color(x_ref, n, -n, gamma, m.z_r(torch.tensor(1)))
    assert rgb.shape == (200, 3) and float((rgb.detach() - 0.5).abs().max()) < 1e-2  # ~ constant at the start
    with pytest.raises(ValueError):
        SiraPrior(cfg, num_latents=0)
    with pytest.raises(ValueError):
        tiny_cfg(epochs=0)
    with pytest.raises(ValueError):
        sira_preset("nope")


def test_presets_are_small_and_paper_weights():
    fast, paper = sira_preset("fast"), sira_preset("paper")
    for c in (fast, paper):
        assert (c.surface_weight, c.eikonal_weight, c.deform_weight, c.landmark_weight, c.color_weight,
                c.latent_reg) == (1.0, 0.1, 1e-3, 1e-3, 1.0, 1e-3)
    assert paper.normal_weight == 0.0
    n = sum(p.numel() for p in SiraPrior(fast, 64).parameters())
    assert n * 2 < 1.5e6  # float16 asset well under a few MB
    assert sira_preset("fast", epochs=100).pe_end == 50.0


# ------------------------------------------------------------------------------------------ losses
def test_loss_terms_analytic():
    cfg = tiny_cfg(normal_weight=0.0)
    # deformation regulariser: a constant delta c gives |c| + |c|; opposite deltas give mean norm only
    c = torch.tensor([0.03, -0.04, 0.0])
    assert math.isclose(float(deformation_regulariser(c.expand(10, 3))), 0.1, rel_tol=1e-6)
    d = torch.stack([c, -c])
    assert math.isclose(float(deformation_regulariser(d)), 0.05, rel_tol=1e-6)
    # landmark spread: aligned -> 0, two shapes offset by t -> |t|^2 / 4
    L = torch.randn(6, 3)
    assert float(landmark_consistency(torch.stack([L, L, L]))) < 1e-12
    t = torch.tensor([0.2, 0.0, 0.0])
    assert math.isclose(float(landmark_consistency(torch.stack([L, L + t]))), 0.01, rel_tol=1e-5)
    assert float(landmark_consistency(L[None])) == 0.0
    with pytest.raises(ValueError):
        landmark_consistency(L)
    # exact sphere SDF: zero surface and eikonal terms; colours off by 0.1 -> colour term 0.1
    x = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1) * 0.5
    xv = (torch.rand(80, 3) - 0.5).requires_grad_(True)
    (g,) = torch.autograd.grad((xv.norm(dim=-1) - 0.5).sum(), xv)
    z, zr = torch.ones(2, 8) * 0.5, torch.zeros(2, 4)
    terms = sira_losses(cfg, x.norm(dim=-1) - 0.5, g, torch.zeros(50, 3), torch.stack([L, L]),
                        torch.full((20, 3), 0.6), torch.full((20, 3), 0.5), z, zr)
    assert float(terms["surface"]) < 1e-6 and float(terms["eikonal"]) < 1e-10
    assert math.isclose(float(terms["color"]), 0.1, rel_tol=1e-5)
    assert math.isclose(float(terms["latent"]), 2.0, rel_tol=1e-6)
    assert math.isclose(float(terms["loss"]), 0.1 + 1e-3 * 2.0, rel_tol=1e-4)
    # outside-shell hinge: only negative SDF values count
    terms = sira_losses(tiny_cfg(outside_weight=1.0), x.norm(dim=-1) - 0.5, g, torch.zeros(50, 3), None, None,
                        None, z, zr, sdf_outside=torch.tensor([0.3, -0.2, 0.1, -0.2]))
    assert math.isclose(float(terms["outside"]), 0.1, rel_tol=1e-6) and float(terms["landmark"]) == 0.0


def test_landmark_term_decreases_when_deformations_align_landmarks():
    m = SiraPrior(tiny_cfg(init_std=1e-2), num_latents=2)
    with torch.no_grad():
        m.z_sdf.weight.copy_(torch.randn(2, 8))
    L = torch.randn(6, 3) * 0.3
    lms = torch.stack([L, L + torch.tensor([0.05, -0.03, 0.02])])
    opt = torch.optim.Adam(m.deform.parameters(), lr=3e-3)

    def loss():
        x_ref, _, _ = m.warp(lms, m.z_sdf.weight[:, None, :])
        return landmark_consistency(x_ref)
    first = float(loss().detach())
    for _ in range(150):
        opt.zero_grad()
        v = loss()
        v.backward()
        opt.step()
    last = float(loss().detach())
    assert last < 0.2 * first, (first, last)


def test_progressive_pe_masking_values():
    assert pe_progress(0, 10, 60) == 0.0 and pe_progress(10, 10, 60) == 0.0
    assert pe_progress(35, 10, 60) == 0.5 and pe_progress(60, 10, 60) == 1.0 and pe_progress(99, 10, 60) == 1.0
    m = SiraPrior(tiny_cfg(), num_latents=1)  # ref_freqs=4, pe 2 -> 12 epochs
    assert m.set_epoch(0) == 0.0
    assert torch.all(m.reference.encoding.freq_weights == 0)
    p = m.set_epoch(7)  # progress 0.5 -> alpha = 2: bands 0, 1 fully on, 2, 3 off
    assert p == 0.5
    assert torch.allclose(m.reference.encoding.freq_weights, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    m.set_epoch(2 + 10 * 0.625)  # alpha 2.5 -> band 2 at (1 - cos(pi/2)) / 2 = 0.5
    assert torch.allclose(m.reference.encoding.freq_weights, torch.tensor([1.0, 1.0, 0.5, 0.0]), atol=1e-6)
    m.set_epoch(12)
    assert torch.all(m.reference.encoding.freq_weights == 1)
    # the deformation network's encoding is never masked
    assert torch.all(m.deform.encoding.freq_weights == 1)


# ------------------------------------------------------------------------------------------ training
def test_tiny_training_decreases_loss(trained):
    model, _ = trained
    h = model.meta["history"]
    assert len(h) == TINY["epochs"]
    assert h[-1]["loss"] < 0.6 * h[0]["loss"], (h[0], h[-1])
    assert h[-1]["surface"] < h[0]["surface"] and h[-1]["color"] < h[0]["color"]
    assert h[-1]["pe"] == 1.0 and h[0]["pe"] == 0.0
    assert float(model.z_sdf.weight.detach().abs().max()) > 0 and float(model.z_r.weight.detach().abs().max()) > 0


def test_checkpoint_round_trip_weights_only(trained, tmp_path):
    model, out = trained
    st = torch.load(out, weights_only=True)
    assert st["format"] == "headrecon-sira"
    back = SiraPrior.load(out)
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.load(checkpoint_path(out), weights_only=True)["epoch"] == TINY["epochs"]
    SiraPrior.load(checkpoint_path(out))  # training checkpoints load too
    half = model.save(tmp_path / "half.pt", half=True)
    hb = load_sira(half)
    x = torch.rand(64, 3) - 0.5
    z = model.z_sdf.weight[0]
    assert float((hb.sdf(x, z) - model.sdf(x, z)).detach().abs().max()) < 5e-3
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something"}, bad)
    with pytest.raises(ValueError, match="not a headrecon SIRA"):
        SiraPrior.load(bad)
    with pytest.raises(FileNotFoundError):
        SiraPrior.load(tmp_path / "missing.pt")


def test_resume_is_exact(data, tmp_path):
    cfg = tiny_cfg(epochs=6)
    full = train_sira(cfg, data, tmp_path / "a.pt", progress=False, log=lambda *_: None)
    train_sira(cfg, data, tmp_path / "b.pt", progress=False, log=lambda *_: None, stop_after_epoch=3)
    resumed = train_sira(cfg, data, tmp_path / "b.pt", resume=True, progress=False, log=lambda *_: None)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(TrainingError, match="no checkpoint"):
        train_sira(cfg, data, tmp_path / "c.pt", resume=True, progress=False, log=lambda *_: None)
    with pytest.raises(TrainingError, match="shorten"):
        train_sira(tiny_cfg(epochs=4), data, tmp_path / "b.pt", resume=True, progress=False, log=lambda *_: None)


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_sira import AXES, coloured_ellipsoid, tiny_cfg
from headrecon.priors.sira.train import sira_mesh_data, train_sira
torch.set_num_threads(1)
cfg = tiny_cfg(epochs=3, shapes_per_batch=4)
meshes = [coloured_ellipsoid(a, phase=i) for i, a in enumerate(AXES + [(66.0, 88.0, 82.0)])]
data = sira_mesh_data(meshes, cfg, description={{"source": "ddp-test"}})
train_sira(cfg, data, {out!r}, progress=False, ddp=True)
from headrecon.priors.training import finish_ddp_worker
finish_ddp_worker(0)  # as the command ends a worker
"""


def test_ddp_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp.pt"
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests=os.path.dirname(__file__), out=str(out)))
    run_torchrun([script])
    m = SiraPrior.load(out)
    assert m.meta["world_size"] == 2 and m.meta["ddp_max_param_diff"] == 0.0
    assert len(m.meta["history"]) == 3


def test_cli_model_sira_errors(tmp_path, capsys):
    from headrecon.priors import cli

    rc = cli.main([str(tmp_path), "--model", "sira", "--out", str(tmp_path / "x.pt"), "--no-progress"])
    assert rc == 2 and "simulated shapes only" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ reconstruction
@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    from headrecon.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("scene") / "ellipsoid"
    make_scene(coloured_ellipsoid((68.0, 88.0, 84.0), phase=0.5), out, views=4, size=48, progress=False)
    return out


# detail="none": these tests exercise the paper's phase 2 (fine-tuning the deformation; the fast preset's detail
# field is tested in test_detail.py)
RECON_TINY = dict(image_size=40, batch_rays=256, mesh_resolution=48, render_size=32, checkpoint_every=50,
                  log_every=2, novel_yaws=(180.0,), detail="none")


def test_sira_method_phase_schedule(trained, scene_dir, monkeypatch):
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    cfg = make_config("fast", method="sira", iterations=40, sira_prior=str(trained[1]), **RECON_TINY)
    tr = Trainer(cfg, load_scene(scene_dir, views="3"), device="cpu")
    assert [p.name for p in tr.phases] == ["latent", "all"] and tr.phases[0].end == pytest.approx(100 / 2000)
    geo, ren = tr.model.geometry, tr.model.rendering
    ref0 = [p.detach().clone() for p in geo.reference.parameters()]
    def0 = [p.detach().clone() for p in geo.deform.parameters()]
    z0 = geo.latent.detach().clone()
    tr.train(stop_after=2)  # phase 1 (iterations 0, 1 < 0.05 * 40)
    assert tr.phases[tr.phase_index].name == "latent"
    assert geo.latent.requires_grad and ren.latent.requires_grad
    assert not any(p.requires_grad for p in geo.deform.parameters())
    assert not any(p.requires_grad for p in ren.net.parameters())
    assert not any(p.requires_grad for p in geo.reference.parameters())
    assert all(torch.equal(a, b) for a, b in zip(def0, geo.deform.parameters()))
    assert not torch.equal(z0, geo.latent)
    names = {g["name"] for g in tr.optimizer.param_groups}
    assert names == {"latents"}
    # acceleration on by default: search tracer + 64^3 cache (eps 0.1, p 0.05 in the fast preset)
    assert tr.tracer.cache is not None and tr.tracer.cache.resolution == 64
    assert tr.tracer.cache.eps == 0.1 and tr.tracer.cache.p_force == 0.05 and tr.tracer.strategy == "search"
    other = Trainer(make_config("fast", method="sira", iterations=40, sira_prior=str(trained[1]), cache_p_force=0.2,
                                **RECON_TINY), load_scene(scene_dir, views="3"), device="cpu")
    other.method.setup_acceleration(other)
    assert other.tracer.cache.p_force == 0.2  # --cache-p-force
    tr.train(stop_after=6)  # phase 2
    assert tr.phases[tr.phase_index].name == "all"
    assert all(p.requires_grad for p in geo.deform.parameters())
    assert all(p.requires_grad for p in ren.net.parameters())
    assert not any(p.requires_grad for p in geo.reference.parameters())
    assert {g["name"] for g in tr.optimizer.param_groups} == {"latents", "deformation", "rendering"}
    assert not all(torch.equal(a, b) for a, b in zip(def0, geo.deform.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ref0, geo.reference.parameters()))  # frozen throughout
    # --head-rays latent (tests/test_h3dnet.py tests the rays): the latent phase's draws only, then every ray
    cfg = make_config("fast", method="sira", iterations=40, sira_prior=str(trained[1]), head_rays="latent",
                      **RECON_TINY)
    tr = Trainer(cfg, load_scene(scene_dir, views="3"), device="cpu")
    tr.train(stop_after=1)
    keep = tr.sampler.keep
    assert keep is not None and keep[tr.sampler.last_idx.numpy()].all() and tr.method.head_ray_share > 0
    tr.train(stop_after=3)
    assert tr.phases[tr.phase_index].name == "all" and tr.sampler.keep is None
    # --freeze-codes: phase 2 trains the deformation and the rendering network, the codes stay where phase 1 left them
    cfg = make_config("fast", method="sira", iterations=40, sira_prior=str(trained[1]), freeze_codes=True,
                      **RECON_TINY)
    tr = Trainer(cfg, load_scene(scene_dir, views="3"), device="cpu")
    geo, ren = tr.model.geometry, tr.model.rendering
    tr.train(stop_after=2)
    assert geo.latent.requires_grad and {g["name"] for g in tr.optimizer.param_groups} == {"latents"}
    z1, r1 = geo.latent.detach().clone(), ren.latent.detach().clone()
    assert not torch.equal(z1, z0)
    tr.train(stop_after=5)
    assert tr.phases[tr.phase_index].name == "all"
    assert {g["name"] for g in tr.optimizer.param_groups} == {"deformation", "rendering"}
    assert not geo.latent.requires_grad and not ren.latent.requires_grad
    assert torch.equal(geo.latent, z1) and torch.equal(ren.latent, r1)
    assert not all(torch.equal(a, b) for a, b in zip(def0, geo.deform.parameters()))


def test_sira_latent_prior_and_deformation_anchor(trained, scene_dir, tmp_path):
    """The code prior acts in both phases; the anchor only in phase 2, is zero when the fine-tuned deformation
    equals the pretrained one, and a heavier anchor keeps the deformation nearer to it. Resume stays exact."""
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    scene = load_scene(scene_dir, views="3")

    def run(stop=None, ckpt=None, resume=None, **kw):
        cfg = make_config("fast", method="sira", iterations=24, sira_prior=str(trained[1]), finetune_lr=5e-3,
                          **RECON_TINY, **kw)
        tr = Trainer(cfg, scene, device="cpu")
        if resume is not None:
            tr.load_checkpoint(resume)
        tr.train(checkpoint_path=ckpt, stop_after=stop)
        return tr

    tr = run(stop=1, sira_anchor_weight=1e4)  # phase 1 (0.05 * 24 = 1.2 iterations)
    m = tr.method
    assert tr.model.geometry.phase == "latent" and m.latent_reg == pytest.approx(trained[0].config.latent_reg)
    losses = m.extra_losses(tr.model)
    assert set(losses) == {"latent_loss"} and losses["latent_loss"] > 0  # z moved away from the mean
    tr.train(stop_after=2)  # end of phase 1: the anchor's copy is exactly the (untouched) deformation network
    assert all(torch.equal(a, b) for a, b in zip(m.deform0.parameters(), tr.model.geometry.deform.parameters()))
    tr.train(stop_after=3)  # first phase-2 step
    assert tr.model.geometry.phase == "all"
    a0 = m.extra_losses(tr.model)["anchor_loss"]
    assert float(a0.detach()) > 0
    a0.backward()  # differentiable w.r.t. the deformation network
    assert all(p.grad is not None for p in tr.model.geometry.deform.parameters())
    tr.model.zero_grad(set_to_none=True)
    tr.train()
    assert "anchor_loss" not in tr.history[0] and "anchor_loss" in tr.history[-1]
    assert "latent_loss" in tr.history[-1]

    def dist(t):  # unweighted anchor distance after the run
        return float(t.method.extra_losses(t.model)["anchor_loss"].detach()) / t.method.anchor_weight

    free = run(sira_anchor_weight=1e-6, sira_latent_reg=0.0)
    assert "latent_loss" not in free.history[-1]
    assert dist(tr) < 0.5 * dist(free)
    # resume with the anchor is exact (the anchor points and the pretrained copy are rebuilt identically)
    ckpt = tmp_path / "ckpt.pt"
    run(stop=10, ckpt=ckpt, sira_anchor_weight=1e4)
    resumed = run(resume=ckpt, sira_anchor_weight=1e4)
    a, b = resumed.model.state_dict(), tr.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("views,anchor_views,expected", [("3", 3, 30.0), ("all", 3, 22.5), ("all", 0, 30.0),
                                                          ("1", 3, 30.0), ("all", 2, 15.0)])
def test_sira_anchor_weight_scales_beyond_anchor_views(trained, scene_dir, views, anchor_views, expected):
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    scene = load_scene(scene_dir, views=views)  # the test scene has 4 views
    cfg = make_config("fast", method="sira", iterations=10, sira_prior=str(trained[1]), sira_anchor_weight=30.0,
                      sira_anchor_views=anchor_views, **RECON_TINY)
    assert Trainer(cfg, scene, device="cpu").method.anchor_weight == pytest.approx(expected)


def test_sira_anchor_points_radius_and_batches(trained, scene_dir):
    """The anchor holds only fixed points inside ``sira_anchor_radius`` of the prior frame (default: the model's
    outside shell), and each iteration takes ``sira_anchor_batch`` of them, cycling deterministically."""
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    scene = load_scene(scene_dir, views="3")

    def method(**kw):
        cfg = make_config("fast", method="sira", iterations=10, sira_prior=str(trained[1]), **RECON_TINY, **kw)
        return Trainer(cfg, scene, device="cpu")

    everywhere = method(sira_anchor_radius=0.0)
    m_all = everywhere.method
    assert m_all.anchor_points.shape == (m_all.ANCHOR_POINTS, 3)
    geo = everywhere.model.geometry
    r_all = geo.to_prior(m_all.anchor_points).norm(dim=-1)
    tr = method(sira_anchor_radius=float(r_all.median()), sira_anchor_batch=100)  # keeps about half of them
    m = tr.method
    r = geo.to_prior(m.anchor_points).norm(dim=-1)
    assert bool((r < m.anchor_radius).all()) and len(r) == int((r_all < m.anchor_radius).sum())
    assert 0 < len(r) < m_all.ANCHOR_POINTS
    assert method().method.anchor_radius == pytest.approx(trained[0].config.outside_radius[0])  # the default
    n = len(m.anchor_points)
    batches = [m.anchor_batch(i) for i in range(-(-n // 100))]
    assert all(b.shape == (100, 3) for b in batches)
    assert torch.equal(m.anchor_batch(3), batches[3])  # a function of the iteration only (exact resume)
    covered = torch.unique(torch.cat(batches), dim=0)
    assert covered.shape[0] == n  # every point is used once per cycle
    assert torch.equal(m.anchor_batch(None), m.anchor_points)
    assert torch.equal(method(sira_anchor_batch=0).method.anchor_batch(5), method().method.anchor_points)
    assert tr.method.info()["anchor_points"] == n
    # a radius that keeps no point turns the anchor off instead of failing
    none = method(sira_anchor_radius=1e-6).method
    assert none.deform0 is None and none.info()["anchor_points"] == 0
    # with a detail field phase 2 leaves the deformation frozen: no anchor, and the run's info says so
    cfg = make_config("fast", method="sira", iterations=10, sira_prior=str(trained[1]),
                      **{**RECON_TINY, "detail": "hashgrid"})
    held = Trainer(cfg, scene, device="cpu").method
    assert held.deform0 is None and held.info()["anchor_weight"] == 0.0 and held.info()["anchor_points"] == 0


@pytest.mark.parametrize("field,value", [("sira_anchor_weight", -1.0), ("sira_latent_reg", -1e-3),
                                         ("sira_anchor_views", -1), ("sira_anchor_radius", -0.5),
                                         ("sira_anchor_batch", -1)])
def test_sira_regulariser_fields_validated(field, value):
    from headrecon.recon.config import make_config

    with pytest.raises(ValueError, match=field):
        make_config("fast", method="sira", **{field: value})


def test_sira_accel_switch(trained, scene_dir, monkeypatch):
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    cfg = make_config("fast", method="sira", iterations=10, sira_prior=str(trained[1]), sira_accel=False,
                      **RECON_TINY)
    tr = Trainer(cfg, load_scene(scene_dir, views="3"), device="cpu")
    tr.train(stop_after=1)
    assert tr.tracer.cache is None and tr.tracer.strategy == "sphere"  # the CPU default


def test_sira_one_view_cli_smoke(trained, scene_dir, tmp_path, monkeypatch, capsys):
    from headrecon.recon import cli

    run = tmp_path / "run"
    args = [str(scene_dir), "--views", "1", "--method", "sira", "--device", "cpu", "--out", str(run),
            "--iterations", "8", "--quiet", "--sira-prior", str(trained[1])]
    for k, v in RECON_TINY.items():
        args += ["--" + k.replace("_", "-"), ",".join(map(str, v)) if isinstance(v, tuple) else str(v)]
    assert cli.main(args) == 0, capsys.readouterr().err
    m = json.loads((run / "metrics.json").read_text())
    assert m["finished"] and m["iterations"] == 8 and len(m["views"]) == 1
    assert (run / "mesh.ply").is_file() and "h3ds" in m
    lm = json.loads((run / "landmarks.json").read_text())  # the placed prior's six H3DS landmarks, scene mm
    assert len(lm) == 6 and all(len(p) == 3 and np.isfinite(p).all() for p in lm.values())
    assert m["h3ds_landmarks"]["alignment"] == "landmarks+h3ds-icp"  # the official protocol with them
    assert json.loads((run / "config.json").read_text())["sira_prior"] == str(trained[1])  # recorded
    info = json.loads((run / "run.json").read_text())["method_info"]
    assert info["anchor_weight"] == 30.0 and info["prior_frame"]  # effective anchor weight at one view


def test_shipped_sira_model():
    from headrecon.priors.sira.model import default_sira_path

    path = default_sira_path()
    if not path.is_file():
        pytest.skip("shipped SIRA++ model not present")
    assert path.stat().st_size < 3e6
    m = load_sira()
    assert m.num_latents >= 500 and m.meta.get("epochs_done") == m.config.epochs
    assert m.data["source"] == "composite+ict" and m.norm.mm_per_unit == 360.0  # busts and heads, bust frame
    z = m.mean_latents()[0]
    with torch.no_grad():
        # inside at the head's centre and at the chest, outside above the head and beside the face
        inside = m.norm.to_unit(np.array([[0.0, 30.0, 0.0], [0.0, -200.0, 0.0]]))
        outside = m.norm.to_unit(np.array([[0.0, 220.0, 0.0], [150.0, 30.0, 0.0], [0.0, 30.0, 200.0]]))
        assert float(m.sdf(torch.as_tensor(inside, dtype=torch.float32), z).max()) < 0
        assert float(m.sdf(torch.as_tensor(outside, dtype=torch.float32), z).min()) > 0
        # closed at the bottom (--closed-bottom busts): the bust ends at its training cut, about 255 mm below the
        # origin; 45 mm below it the mean shape is well outside (the open-bottom model is 70 mm inside there)
        below = m.norm.to_unit(np.array([[0.0, -300.0, 0.0]]))
        assert float(m.sdf(torch.as_tensor(below, dtype=torch.float32), z)) * m.norm.mm_per_unit > 20.0
    assert m.data["simulation"]["closed_bottom"] == "busts"


def test_cli_model_sira_deformation_flags(tmp_path, monkeypatch):
    """--def-hidden / --def-freqs reach the SIRA++ config (the README's larger-deformation probe uses them)."""
    from headrecon.priors import cli
    from headrecon.priors.sira import train as sira_train

    seen = {}
    monkeypatch.setattr(sira_train, "sira_ict_data", lambda n, cfg, **kw: seen.setdefault("n", n))
    monkeypatch.setattr(sira_train, "train_sira", lambda cfg, data, out, **kw: seen.setdefault("cfg", cfg))
    rc = cli.main(["ict", "--model", "sira", "--out", str(tmp_path / "x.pt"), "--no-progress", "--shapes", "3",
                   "--def-hidden", "192", "--def-freqs", "6"])
    assert rc == 0 and seen["n"] == 3
    assert seen["cfg"].def_hidden == 192 and seen["cfg"].def_freqs == 6


def test_face_fraction_draws_that_share_near_the_nose_tip(data):
    """face_fraction: that share of the surface samples lies within face_radius_mm of the shape's nose tip (the
    uniform draw puts far fewer there); without it the draws are the uniform ones, bit for bit; the same seed and
    epoch give the same batch."""
    nose = data.landmarks[:, 2]  # LANDMARK_NAMES: right_eye, left_eye, nose_tip, ...
    r = 40.0 / data.norm.mm_per_unit

    def near_share(cfg):
        pts, _, _, _ = sample_batch(data, [0, 1, 2], cfg, epoch=3, device="cpu")
        s = pts[:, :cfg.surface_points]
        return float(((s - nose[:, None]).norm(dim=-1) < r).float().mean()), pts

    plain = tiny_cfg()
    share0, pts0 = near_share(plain)
    share, pts = near_share(tiny_cfg(face_fraction=0.5, face_radius_mm=40.0))
    assert share >= 0.5 and share0 < 0.3
    assert torch.equal(near_share(tiny_cfg(face_fraction=0.5, face_radius_mm=40.0))[1], pts)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(surface_indices(data, 0, plain, g), torch.randint(len(data.points[0]), (96,),
                                                                         generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="face_fraction"):
        tiny_cfg(face_fraction=1.0)
    with pytest.raises(ValueError, match="nose tip"):  # a radius that holds no scan sample
        surface_indices(data, 0, tiny_cfg(face_fraction=0.5, face_radius_mm=1e-6), g)


@pytest.mark.parametrize("flag, kind", [(f, k) for f, k, _ in SIRA_OPTIONS])
def test_cli_sira_training_flags_need_model_sira(tmp_path, monkeypatch, capsys, flag, kind):
    """Each of the SIRA++ model's own training flags (``SIRA_OPTIONS``) reaches its same-named config field; with
    another model it is an error, not silently ignored."""
    from headrecon.priors import cli
    from headrecon.priors.sira import train as sira_train

    value, field = ("0.3" if kind is float else "8"), option_field(flag)

    seen = {}
    monkeypatch.setattr(sira_train, "sira_ict_data", lambda n, cfg, **kw: seen.setdefault("n", n))
    monkeypatch.setattr(sira_train, "train_sira", lambda cfg, data, out, **kw: seen.setdefault("cfg", cfg))
    out = str(tmp_path / "x.pt")
    assert cli.main(["ict", "--model", "sira", "--out", out, "--no-progress", "--shapes", "3", flag, value]) == 0
    assert getattr(seen["cfg"], field) == type(getattr(seen["cfg"], field))(value)
    assert cli.main(["ict", "--out", out, "--no-progress", flag, value]) == 2
    assert flag in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_sira_face_proxy_term(tmp_path):
    """``sira_proxy_weight``: the morphable-model face fitted to the shipped demo photos (a real head) lies near the
    shipped model's mean shape placed by the same fit (mean |f| in mm), the term is weighted and its gradient reaches
    the shape latent; off by default (no fit, no term)."""
    pytest.importorskip("mediapipe")
    from headrecon.data import load_scene
    from headrecon.methods.base import split_detail
    from headrecon.methods.sira import SiraMethod
    from headrecon.priors.sira.model import default_sira_path
    from headrecon.recon.cli import demo_scene_dir
    from headrecon.recon.config import make_config

    if not default_sira_path().is_file():
        pytest.skip("shipped SIRA++ model not present")
    scene = load_scene(demo_scene_dir(), views="1")
    off = SiraMethod(make_config("fast", method="sira"))
    model = off.build(scene, torch.device("cpu"))
    assert off.proxy is None and "proxy_loss" not in off.extra_losses(model, iteration=0)
    terms = {}
    for w in (1.0, 3.0):
        m = SiraMethod(make_config("fast", method="sira", sira_proxy_weight=w))
        model = m.build(scene, torch.device("cpu"))
        assert m.info()["proxy"]["source"] and m.info()["proxy"]["triangles"] > 300
        terms[w] = m.extra_losses(model, iteration=5)["proxy_loss"]
    assert torch.allclose(terms[3.0], 3.0 * terms[1.0])  # same points at one iteration, the weight applied
    mm_per_unit = float(scene.scale_mat[0, 0])
    assert 0.0 < float(terms[1.0].detach()) * mm_per_unit < 3.0  # the fit and the prior agree on the face (1.3 mm)
    geo, _ = split_detail(model.geometry)
    (g,) = torch.autograd.grad(terms[3.0], geo.latent)
    assert float(g.norm()) > 0


# ------------------------------------------------------------------------------------------ correction field
def test_correction_field_adds_to_the_warped_reference_and_leaves_other_networks_unchanged():
    """``corr_hidden > 0``: ``f = R(x + delta) + C(x, z)``, ``C`` near zero at the start; the other networks start
    exactly as without it (a model without one is the earlier model); the reconstruction geometry evaluates the same
    SDF, trains the field with the deformation in phase "all", and a save / load keeps it."""
    plain, corr = SiraPrior(tiny_cfg(), num_latents=2), SiraPrior(tiny_cfg(corr_hidden=16, init_std=1e-2), 2)
    assert plain.correct is None and corr.correct is not None
    pc, cc = plain.state_dict(), corr.state_dict()
    assert set(pc) < set(cc) and all(k.startswith("correct.") for k in set(cc) - set(pc))
    same = SiraPrior(tiny_cfg(corr_hidden=16), num_latents=2).state_dict()  # the plain model's init_std
    assert all(torch.equal(pc[k], same[k]) for k in pc)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, generator=g) * 1.2 - 0.6
    z = torch.randn(8, generator=g) * 0.1
    with torch.no_grad():
        corr.correct.layers[-1].bias.fill_(0.05)
        sdf, x_ref, delta, gamma, c = corr.terms(x, z)
        assert c.shape == sdf.shape == (64,)
        assert torch.allclose(sdf, corr.reference.sdf(x_ref) + c)
        assert torch.allclose(corr.sdf(x, z), sdf) and torch.allclose(corr(x, z)[0], sdf)
        assert plain.terms(x, z)[4] is None
    geo, _ = corr.geometry_network(z_sdf=z)
    with torch.no_grad():
        assert torch.allclose(geo.sdf(x), sdf, atol=1e-6) and torch.allclose(geo(x)[0], sdf, atol=1e-6)
    geo.set_phase("all")
    params = geo.shape_parameters()
    assert len(params) == len(list(geo.deform.parameters())) + len(list(geo.correct.parameters()))
    assert all(p.requires_grad for p in params)
    geo.set_phase("latent")
    assert not any(p.requires_grad for p in params)
    # the L1 term, weighted
    L = torch.zeros(2, 6, 3)
    t = sira_losses(tiny_cfg(corr_weight=0.5), x.norm(dim=-1) - 0.5, x, torch.zeros(64, 3), L, None, None,
                    torch.zeros(2, 8), torch.zeros(2, 4), correction=torch.full((64,), -0.2))
    t0 = sira_losses(tiny_cfg(corr_weight=0.5), x.norm(dim=-1) - 0.5, x, torch.zeros(64, 3), L, None, None,
                     torch.zeros(2, 8), torch.zeros(2, 4))
    assert float(t["correction"]) == pytest.approx(0.2) and float(t0["correction"]) == 0.0
    assert float(t["loss"] - t0["loss"]) == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ValueError, match="corr_layers"):
        tiny_cfg(corr_hidden=8, corr_layers=0)
    with pytest.raises(ValueError, match="corr_hidden"):
        tiny_cfg(corr_hidden=-1)


def test_correction_field_trains_and_round_trips(data, scene_dir, tmp_path):
    """A tiny training with the field: the loss falls, the field's term is logged, the saved model loads with it
    (weights_only) and gives the trained SDF. Reconstructing with it and ``--detail none``, the deformation anchor
    holds the field too (phase 2 trains both)."""
    out = tmp_path / "corr.pt"
    model = train_sira(tiny_cfg(corr_hidden=16, epochs=8), data, out, progress=False, log=lambda *_: None)
    h = model.meta["history"]
    assert h[-1]["loss"] < h[0]["loss"] and all("correction" in e for e in h) and h[-1]["correction"] > 0
    back = SiraPrior.load(out)
    assert back.correct is not None and back.config.corr_hidden == 16
    x = torch.rand(32, 3) - 0.5
    z = back.z_sdf.weight[1]
    with torch.no_grad():
        assert torch.allclose(back.sdf(x, z), model.sdf(x, z), atol=1e-6)
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    cfg = make_config("fast", method="sira", iterations=10, sira_prior=str(out), **RECON_TINY)
    tr = Trainer(cfg, load_scene(scene_dir, views="3"), device="cpu")
    m, geo = tr.method, tr.model.geometry
    assert m.correct0 is not None and m.correct0 is not geo.correct
    geo.set_phase("all")
    assert float(m.extra_losses(tr.model, iteration=0)["anchor_loss"].detach()) == 0.0  # both as pretrained
    with torch.no_grad():
        geo.correct.layers[-1].bias.add_(0.01)  # the correction alone moves: every point's c - c0 = 0.01
    held = m.extra_losses(tr.model, iteration=0)["anchor_loss"]
    assert float(held.detach()) == pytest.approx(m.anchor_weight * 1e-4, rel=1e-3)
    held.backward()
    assert geo.correct.layers[-1].bias.grad is not None and float(geo.correct.layers[-1].bias.grad.abs().sum()) > 0



# ------------------------------------------------------------------------------------------ code prior's shape
def test_code_precision_holds_unused_directions_and_keeps_the_isotropic_weight():
    """``code_precision``: isotropic codes give about the identity (the weight keeps its meaning); a direction the
    codes never use weighs up to ``1 / shrink`` times more, a much-used one less; ``code_prior`` is the quadratic
    form (the squared distance without a precision)."""
    from headrecon.priors.codes import code_precision, code_prior

    g = torch.Generator().manual_seed(0)
    iso = torch.randn(20000, 6, generator=g) * 0.1
    assert torch.allclose(code_precision(iso, shrink=0.01), torch.eye(6) / 1.01, atol=0.05)
    flat = iso.clone()
    flat[:, 0] *= 3.0  # much used
    flat[:, 5] = 0.0   # never used
    P = code_precision(flat, shrink=0.01)
    assert P[0, 0] < 0.3 and P[5, 5] > 50 and torch.allclose(P, P.T)
    z, m = torch.randn(6, generator=g), torch.randn(6, generator=g)
    assert torch.allclose(code_prior(z, m), (z - m).pow(2).sum())
    assert torch.allclose(code_prior(z, m, P), (z - m) @ P @ (z - m))
    for bad, match in ((torch.zeros(1, 6), "N >= 2"), (torch.zeros(10, 6), "do not vary")):
        with pytest.raises(ValueError, match=match):
            code_precision(bad)
    with pytest.raises(ValueError, match="shrink"):
        code_precision(iso, shrink=0.0)


def test_sira_covariance_code_prior(trained, scene_dir):
    """``sira_latent_prior covariance``: both latents' code prior uses the model's training codes' precision; the
    default stays the isotropic term; another value is refused."""
    from headrecon.data import load_scene
    from headrecon.priors.codes import code_precision
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    scene = load_scene(scene_dir, views="3")
    losses = {}
    for prior in ("isotropic", "covariance"):
        cfg = make_config("fast", method="sira", iterations=10, sira_prior=str(trained[1]), sira_latent_prior=prior,
                          **RECON_TINY)
        tr = Trainer(cfg, scene, device="cpu")
        geo, ren = tr.model.geometry, tr.model.rendering
        with torch.no_grad():
            geo.latent.add_(0.05)
            ren.latent.sub_(0.05)
        d_s, d_r = geo.latent - geo.latent_mean, ren.latent - ren.latent_mean
        if prior == "isotropic":
            assert geo.latent_precision is None and ren.latent_precision is None
            expect = d_s.pow(2).sum() + d_r.pow(2).sum()
        else:
            P_s, P_r = code_precision(trained[0].z_sdf.weight), code_precision(trained[0].z_r.weight)
            assert torch.equal(geo.latent_precision, P_s) and torch.equal(ren.latent_precision, P_r)
            expect = d_s @ P_s @ d_s + d_r @ P_r @ d_r
        losses[prior] = tr.method.extra_losses(tr.model)["latent_loss"].detach()
        assert torch.allclose(losses[prior], tr.method.latent_reg * expect.detach(), rtol=1e-5)
    assert not torch.allclose(losses["isotropic"], losses["covariance"])
    with pytest.raises(ValueError, match="sira_latent_prior"):
        make_config("fast", method="sira", sira_latent_prior="pca")
