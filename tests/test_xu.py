"""Tests of Xu et al. (headrecon.priors.xu, headrecon.methods.xu, the trainer's volume step): the prior's round
trip and its errors, training from rendered images of coloured ellipsoids (the objective falls, resume is exact,
the command line writes a loadable prior), and the method: its stages and what trains in each, the regularisers,
masks on and off, exact resume with the empty-space grid, and an end-to-end run with a mesh. No shared data
needed."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from exact_resume import assert_resume_is_exact
from headrecon.priors.normalization import Normalization
from headrecon.priors.xu.model import XuPrior, load_xu, xu_network_config
from headrecon.priors.xu.train import XuTrainConfig, _objective, train_xu, xu_mesh_data
from test_sira import coloured_ellipsoid
from torchrun import run_torchrun

TINY_NET = dict(def_hidden=32, def_layers=2, def_freqs=2, ref_hidden=48, ref_layers=3, ref_skip=(2,), ref_freqs=4,
                latent_dim=8, app_latent_dim=4, d_gamma=4, render_hidden=32, render_layers=1)
AXES = [(70.0, 90.0, 80.0), (62.0, 84.0, 88.0), (76.0, 96.0, 74.0)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    meshes = [(k, coloured_ellipsoid(a, phase=0.7 * k)) for k, a in enumerate(AXES)]
    return xu_mesh_data(meshes, Normalization(), views=3, size=24, description={"source": "ellipsoids"})


def tiny_train(**kw):
    return XuTrainConfig(**{**dict(iterations=30, batch_shapes=2, rays_per_shape=96, n_samples=16, n_fine=8,
                                   lr=2e-3, lr_latent=1e-2, checkpoint_every=10, eikonal_points=64), **kw})


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory, monkeypatch_module):
    out = tmp_path_factory.mktemp("xu") / "xu.pt"
    monkeypatch_module.setattr("headrecon.priors.xu.train.xu_network_config",
                               lambda preset, **kw: xu_network_config(preset, **{**TINY_NET, **kw}))
    model = train_xu(tiny_train(), data, out)
    return model, out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_images_hold_rays_in_the_prior_frame(data):
    assert len(data) == 3
    for o, d, c, m in zip(data.origins, data.dirs, data.rgb, data.mask):
        assert o.shape == d.shape == c.shape == (3 * 24 * 24, 3) and m.dtype == torch.bool
        assert torch.allclose(d.norm(dim=1), torch.ones(len(d)), atol=1e-5)
        assert 0.05 < float(m.float().mean()) < 0.6  # the ellipsoid fills part of each image
        assert float(o.norm(dim=1).min()) > 1.0  # cameras outside the unit sphere
        assert float(c[~m].abs().max()) == 0.0  # black background


def test_training_lowers_the_objective_and_writes_a_loadable_prior(trained, data):
    model, out = trained
    assert out.is_file()
    loaded = load_xu(out)
    assert loaded.num_latents == 3 and loaded.meta["iterations_done"] == 30
    assert float(loaded.beta().detach()) == pytest.approx(float(model.beta().detach()), rel=1e-6)
    assert float(model.beta().detach()) < 0.05  # beta learnt: the surface sharpened
    cfg = tiny_train()
    fresh = XuPrior(xu_network_config("fast", **TINY_NET), 3, norm=data.norm)
    with torch.random.fork_rng(devices=[]):
        before = float(_objective(fresh, data, cfg, 0, "cpu")["loss"].detach())
        after = float(_objective(loaded.train(), data, cfg, 0, "cpu")["loss"].detach())
    assert after < 0.8 * before
    x = torch.zeros(1, 3)  # inside every head
    assert float(loaded.sdf(x, loaded.mean_latents()[0]).detach()) < 0


def test_training_resumes_exactly(data, tmp_path, monkeypatch):
    monkeypatch.setattr("headrecon.priors.xu.train.xu_network_config",
                        lambda preset, **kw: xu_network_config(preset, **{**TINY_NET, **kw}))
    cfg = tiny_train(iterations=12, checkpoint_every=4)
    a = train_xu(cfg, data, tmp_path / "a.pt")
    train_xu(cfg, data, tmp_path / "b.pt", stop_after=8)
    assert not (tmp_path / "b.pt").exists() and (tmp_path / "b.ckpt.pt").is_file()
    b = train_xu(cfg, data, tmp_path / "b.pt", resume=True)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(Exception, match="other settings"):
        train_xu(tiny_train(iterations=12, checkpoint_every=4, lr=1e-3), data, tmp_path / "b.pt", resume=True)


def test_prior_file_errors(tmp_path):
    from headrecon.priors.sira.model import SiraPrior, sira_preset

    sira = tmp_path / "sira.pt"
    SiraPrior(sira_preset("fast"), 2).save(sira)
    with pytest.raises(ValueError, match="not a headrecon Xu et al. prior"):
        load_xu(sira)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_xu(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------------ the method
@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    from headrecon.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("scene") / "ellipsoid"
    make_scene(coloured_ellipsoid((68.0, 88.0, 84.0), phase=0.5), out, views=4, size=48, progress=False)
    return out


RECON_TINY = dict(image_size=32, batch_rays=128, mesh_resolution=40, render_size=24, checkpoint_every=50,
                  log_every=2, novel_yaws=(180.0,), xu_samples=12, xu_fine=6, hash_levels=4, hash_log2_size=10,
                  eikonal_points=64)


def make_trainer(trained, scene_dir, **kw):
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    cfg = make_config("fast", method="xu", **{"iterations": 8, "xu_prior": str(trained[1]), **RECON_TINY, **kw})
    return Trainer(cfg, load_scene(scene_dir, views="3"), device="cpu")


def test_xu_stages_train_what_the_paper_says(trained, scene_dir):
    tr = make_trainer(trained, scene_dir)
    assert [p.name for p in tr.phases] == ["deform", "detail"]
    geo = tr.model.geometry.base
    detail = tr.model.geometry
    ref0 = [p.detach().clone() for p in geo.reference.parameters()]
    table0 = detail.table.detach().clone()
    tr.train(stop_after=2)  # stage 1 (the first 30 % of 8 iterations)
    assert {g["name"] for g in tr.optimizer.param_groups} == {"latents", "rendering", "beta", "deformation"}
    assert torch.equal(table0, detail.table)  # no displacement in stage 1
    assert tr.occupancy is not None and tr.occupancy.shape == (64, 64, 64)
    logs = tr.history[-1]
    assert logs["samples_per_ray"] > 0 and "deform_loss" in logs and "beta" in logs
    tr.train()  # stage 2
    assert "detail" in {g["name"] for g in tr.optimizer.param_groups}
    assert not torch.equal(table0, detail.table)
    assert "displacement_loss" in tr.history[-1]
    assert all(torch.equal(a, b) for a, b in zip(ref0, geo.reference.parameters()))  # template frozen
    assert all(np.isfinite(v) for h in tr.history for v in h.values())


def test_template_only_and_no_displacement(trained, scene_dir):
    tr = make_trainer(trained, scene_dir, xu_finetune_deform=False, detail="none")
    assert [p.name for p in tr.phases] == ["deform"]
    geo = tr.model.geometry
    d0 = [p.detach().clone() for p in geo.deform.parameters()]
    tr.train()
    assert {g["name"] for g in tr.optimizer.param_groups} == {"latents", "rendering", "beta"}
    assert all(torch.equal(a, b) for a, b in zip(d0, geo.deform.parameters()))
    assert "deform_loss" not in tr.history[-1]


def test_masks_off_uses_colour_only(trained, scene_dir):
    tr = make_trainer(trained, scene_dir, xu_masks=False, iterations=2)
    assert not tr.method.volume_settings().use_masks
    tr.train()
    assert tr.history[-1]["mask_loss"] == 0.0 and tr.history[-1]["rgb_loss"] > 0


def test_xu_resume_is_exact(trained, scene_dir, tmp_path):
    # stopped mid-way between grid refreshes, in stage 2
    assert_resume_is_exact(lambda: make_trainer(trained, scene_dir, xu_grid_every=3), tmp_path / "ck.pt",
                           stop_after=5)


def test_xu_reconstructs_end_to_end(trained, scene_dir, tmp_path):
    from headrecon.recon.config import make_config
    from headrecon.recon.pipeline import reconstruct

    cfg = make_config("fast", method="xu", iterations=6, xu_prior=str(trained[1]), **RECON_TINY)
    res = reconstruct(scene_dir, cfg, tmp_path / "run", progress=False, log=lambda *a, **k: None)
    run = tmp_path / "run"
    assert (run / "mesh.ply").is_file() and (run / "metrics.json").is_file()
    assert res is not None


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_xu import AXES, TINY_NET, tiny_train
from test_sira import coloured_ellipsoid
import headrecon.priors.xu.train as T
from headrecon.priors.normalization import Normalization
from headrecon.priors.xu.model import xu_network_config
torch.set_num_threads(1)
T.xu_network_config = lambda preset, **kw: xu_network_config(preset, **{{**TINY_NET, **kw}})
meshes = [(k, coloured_ellipsoid(a, phase=0.7 * k)) for k, a in enumerate(AXES)]
data = T.xu_mesh_data(meshes, Normalization(), views=3, size=24, description={{"source": "ellipsoids"}})
T.train_xu(tiny_train(iterations=4, batch_shapes=3), data, {out!r}, ddp=True)
from headrecon.priors.training import finish_ddp_worker
finish_ddp_worker(0)  # as the command ends a worker
"""


def test_ddp_two_processes_gloo_match_one_process(tmp_path, data, monkeypatch):
    """Two processes (each rendering its share of the heads, gradients summed, the Eikonal and deformation means
    over every process's samples) agree exactly with each other and with one process up to the order of float
    sums."""
    out = tmp_path / "ddp.pt"
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests=os.path.dirname(__file__), out=str(out)))
    run_torchrun([script])
    two = load_xu(out)
    assert two.meta["world_size"] == 2 and two.meta["ddp_max_param_diff"] == 0.0
    monkeypatch.setattr("headrecon.priors.xu.train.xu_network_config",
                        lambda preset, **kw: xu_network_config(preset, **{**TINY_NET, **kw}))
    one = train_xu(tiny_train(iterations=4, batch_shapes=3), data, tmp_path / "one.pt")
    # Adam divides by sqrt(v) + 1e-8: a weight whose gradient is near 1e-8 (a saturated softplus unit feeds it)
    # moves by an amount that depends on the gradient's last bits, which the order of the sums sets; measured up
    # to 1.3e-5 (0.7 % of a step of lr 2e-3) on 3 of 1024 weights. A process's lost share of the heads, or
    # gradients not summed, would move whole steps on most weights.
    for (k, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        d = (a - b).abs().float()
        assert float(d.max()) < 1e-4, k
        assert int((d > 1e-6).sum()) <= max(3, d.numel() // 100), k


def test_soft_masks_reach_the_volume_loss(trained, scene_dir):
    """--soft-masks: the opacity's BCE target is each pixel's mask coverage (the same first batch, another loss)."""
    losses = []
    for soft in (False, True):
        tr = make_trainer(trained, scene_dir, soft_masks=soft, image_size=24)
        seen = []
        tr.train(stop_after=1, callback=lambda t, logs: seen.append(float(logs["mask_loss"])))
        losses.append(seen[0])
    assert losses[0] != losses[1]


def test_soft_masks_without_masks_refused():
    """--soft-masks with xu_masks=false would change nothing: the config says so instead of running."""
    from headrecon.recon.config import make_config

    make_config("fast", method="xu", soft_masks=True)  # with masks: accepted
    with pytest.raises(ValueError, match="soft_masks .* xu_masks=false"):
        make_config("fast", method="xu", soft_masks=True, xu_masks=False)
