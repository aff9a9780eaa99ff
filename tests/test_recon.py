"""Tests of the reconstruction pipeline: tiny end-to-end fit with a Chamfer bound, exact resume, config and CLI
errors, the selective-sampling schedule, the method registry (phases/hooks) and the demo head."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from exact_resume import assert_resume_is_exact
from headrecon.data import load_scene
from headrecon.methods import METHODS, Phase, get_method, register_method
from headrecon.methods.idr import IDRMethod
from headrecon.recon import cli
from headrecon.recon.config import PRESETS, ReconConfig, config_diff, make_config
from headrecon.data.scene import parse_views
from headrecon.recon.pipeline import RunDirError, check_run_dir
from headrecon.recon.sampling import PixelSampler, RayBank, ss_steps
from headrecon.recon.trainer import Trainer

# Tiny CPU settings: 4 views at 64 px, a 3 x 64 geometry network.
TINY = dict(image_size=64, batch_rays=512, geo_hidden=64, geo_layers=3, geo_skip=(2,), feature_size=16,
            render_hidden=64, render_layers=2, mesh_resolution=64, render_size=48, checkpoint_every=50,
            log_every=5, novel_yaws=(180.0,))


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the fast preset uses (far faster for these small networks on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def ellipsoid_mesh():
    """An ellipsoid 'head' in mm (radii 70 x 90 x 80) with smooth colour bands, nose tip landmark at +Z."""
    m = trimesh.creation.icosphere(subdivisions=4)
    m.vertices = m.vertices * np.array([70.0, 90.0, 80.0])
    v = m.vertices / 80.0
    col = np.stack([0.55 + 0.35 * np.sin(3 * v[:, 1]), 0.5 + 0.3 * np.cos(2 * v[:, 0] + v[:, 2]),
                    0.45 + 0.3 * np.sin(2 * v[:, 2] - v[:, 1])], 1)
    rgba = np.concatenate([np.round(np.clip(col, 0, 1) * 255), np.full((len(v), 1), 255)], 1).astype(np.uint8)
    m.visual = trimesh.visual.ColorVisuals(m, vertex_colors=rgba)
    m.metadata["landmarks"] = {"nose_tip": int(np.argmax(m.vertices[:, 2]))}
    return m


@pytest.fixture(scope="module")
def tiny_scene_dir(tmp_path_factory):
    from headrecon.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("scene") / "ellipsoid"
    make_scene(ellipsoid_mesh(), out, views=8, size=96, progress=False)
    return out


@pytest.fixture(scope="module")
def three_view_scene_dir(tmp_path_factory):
    from headrecon.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("scene3") / "three"
    make_scene(ellipsoid_mesh(), out, views=[0.0, -45.0, 45.0], size=48, progress=False)
    return out


# ---------------------------------------------------------------------------------------------- end to end
def test_tiny_fit_reaches_chamfer_bound(tiny_scene_dir):
    """4 views of an ellipsoid (64 px, ~3 mm per pixel), 300 iterations: full-head Chamfer below 3.5 mm in both
    directions (about one pixel; the initial sphere is 19.5 mm off). Measured: 2.30 mm gt->pred, 2.29 mm pred->gt;
    ~100 s on the busy 2-core machine (one torch thread)."""
    from headrecon.eval import evaluate

    scene = load_scene(tiny_scene_dir, views="4")
    cfg = make_config("fast", iterations=300, lr=1e-3, **TINY)
    tr = Trainer(cfg, scene, device="cpu")
    before = evaluate(tr.extract_mesh(resolution=48), scene, protocol="exact", align="none")
    tr.train()
    res = evaluate(tr.extract_mesh(), scene, protocol="exact", align="none")
    assert before["head_gt2pred_mm"] > 8.0
    assert res["head_gt2pred_mm"] < 3.5, res
    assert res["head_pred2gt_mm"] < 3.5, res
    assert tr.history[-1]["hit_ratio"] > 0.95


def test_tracer_settings_reach_both_tracers(tiny_scene_dir):
    """The config's tracer fields (here ``--secant-tol``, ``--max-steps``) reach the training tracer and the one
    that renders the run folder's images."""
    scene = load_scene(tiny_scene_dir, views="3")
    cfg = make_config("fast", iterations=2, **dict(TINY, secant_tol=1e-5, max_steps=12))
    tr = Trainer(cfg, scene, device="cpu", progress=False)
    for tracer in (tr.tracer, tr.render_tracer()):
        assert tracer.secant_tol == 1e-5 and tracer.max_steps == 12 and tracer.n_secant == cfg.n_secant


def test_cache_p_force_reaches_the_cache(tiny_scene_dir):
    """``--cache-p-force`` sets the SDF cache's share of forced network evaluations (the paper preset: SIRA++'s 0.2;
    fast and instant: 0.05); outside [0, 1] the config is refused."""
    scene = load_scene(tiny_scene_dir, views="3")
    for preset, p, want in (("fast", None, 0.05), ("instant", None, 0.05), ("paper", None, 0.2), ("fast", 0.3, 0.3)):
        cfg = make_config(preset, iterations=2, sdf_cache=True, **TINY, **({} if p is None else {"cache_p_force": p}))
        assert Trainer(cfg, scene, device="cpu", progress=False).tracer.cache.p_force == want, preset
    with pytest.raises(ValueError, match="cache_p_force"):
        make_config("fast", cache_p_force=1.5)


def test_render_view_from_the_mesh_matches_the_traced_render(tiny_scene_dir):
    """The run folder's renders ray-cast the run's refined mesh and colour the hits with the networks; traced
    through the SDF instead, the same camera gives the same picture but at the silhouette: hit masks that differ
    only next to a silhouette pixel, and the same colour and shading elsewhere (bounds that a mesh moved off the
    surface does not meet)."""
    from headrecon.recon.renders import fit_camera, render_view

    scene = load_scene(tiny_scene_dir, views="3")
    tr = Trainer(make_config("fast", iterations=30, lr=1e-3, **dict(TINY, mesh_resolution=48, mesh_refine=1)), scene,
                 device="cpu", progress=False)
    tr.train()
    mesh = tr.extract_mesh()
    Sinv = np.linalg.inv(np.asarray(scene.scale_mat, dtype=np.float64))
    unit = trimesh.Trimesh(np.asarray(mesh.vertices) @ Sinv[:3, :3].T + Sinv[:3, 3], mesh.faces, process=False)
    for cam in tr.training_cameras()[:2]:
        c = fit_camera(cam, 64)
        rgb0, sh0, hit0 = render_view(tr.model, tr.render_tracer(), c)
        rgb1, sh1, hit1 = render_view(tr.model, None, c, mesh=unit)
        assert 0.1 < hit0.mean() < 0.9
        edge = np.zeros_like(hit0)  # traced hits with a 4-neighbour that misses, or misses beside a hit
        for ax in (0, 1):
            for s in (1, -1):
                edge |= hit0 != np.roll(hit0, s, axis=ax)
        assert not ((hit0 != hit1) & ~edge).any()
        assert (hit0 != hit1).sum() <= 0.05 * hit0.sum()
        both = hit0 & hit1 & ~edge
        assert np.abs(rgb0[both] - rgb1[both]).mean() < 0.01 and np.abs(sh0[both] - sh1[both]).mean() < 0.01
        assert np.abs(rgb0[both] - rgb1[both]).max() < 0.1
        assert not rgb1[~hit1].any()  # misses stay black
        # the bounds see a mesh that is off the surface: moved by 0.02 units, its shading no longer agrees
        moved = trimesh.Trimesh(unit.vertices + 0.02, unit.faces, process=False)
        _, sh2, hit2 = render_view(tr.model, None, c, mesh=moved)
        both2 = hit0 & hit2 & ~edge
        assert np.abs(sh0[both2] - sh2[both2]).mean() > 0.02


def test_cli_run_folder(tiny_scene_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = [str(tiny_scene_dir), "--views", "3", "--method", "idr", "--preset", "fast", "--device", "cpu",
            "--out", str(run), "--iterations", "12", "--quiet", "--image-size", "48", "--batch-rays", "256",
            "--geo-hidden", "64", "--geo-layers", "3", "--geo-skip", "2", "--mesh-resolution", "48",
            "--render-size", "32", "--novel-yaws", "90,180"]
    assert cli.main(args) == 0
    for name in ("config.json", "run.json", "checkpoint.pt", "history.json", "loss_curve.png", "mesh.ply",
                 "renders_inputs.png", "renders_novel.png", "metrics.json"):
        assert (run / name).is_file(), name
    cfg = ReconConfig.load(run / "config.json")
    assert cfg.iterations == 12 and cfg.geo_hidden == 64 and cfg.batch_rays == 256 and cfg.preset == "fast"
    m = json.loads((run / "metrics.json").read_text())
    assert m["finished"] and m["iterations"] == 12 and m["train_seconds"] > 0
    assert np.isfinite(m["h3ds"]["head_gt2pred_mm"]) and np.isfinite(m["h3ds"]["face_gt2pred_mm"])
    assert m["h3ds"]["protocol"] == "h3ds" and m["exact"]["protocol"] == "exact"
    assert np.isfinite(m["scene_frame"]["head_pred2gt_mm"])
    mach = json.loads((run / "run.json").read_text())["machine"]  # what decides a bit-identical mesh
    assert mach["cpu_capability"] and "torch CPU kernels" in mach["kind"] and mach["libraries"]["numpy"]
    assert str(run.resolve()) in capsys.readouterr().out
    # the same command again: the folder holds a run with this config -> error suggesting --resume
    assert cli.main(args) == 2
    assert "--resume" in capsys.readouterr().err
    # resuming a finished run only rewrites the results
    assert cli.main(args + ["--resume"]) == 0


# ---------------------------------------------------------------------------------------------- resume
def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_is_exact(tiny_scene_dir, tmp_path):
    scene = load_scene(tiny_scene_dir, views="3")
    cfg = make_config("fast", iterations=6, strategy="search", ss_every=50, **dict(TINY, batch_rays=256))
    straight, second = assert_resume_is_exact(lambda: Trainer(cfg, scene, device="cpu"), tmp_path / "ckpt.pt",
                                              stop_after=5)
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in second.history]
    assert straight.sampler.steps == second.sampler.steps > 0


class _Planted:
    """A pickled object whose loading would run code (writes the file named in ``MARK``)."""

    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Planted.MARK}",))


def test_checkpoint_with_planted_code_executes_nothing(tiny_scene_dir, tmp_path):
    """A checkpoint carrying a pickled callable is refused (weights_only=True) with an error naming the file."""
    scene = load_scene(tiny_scene_dir, views="3")
    cfg = make_config("fast", iterations=6, **dict(TINY, batch_rays=256))
    _Planted.MARK = tmp_path / "pwned"
    bad = tmp_path / "checkpoint.pt"
    torch.save({"total_iterations": 6, "payload": _Planted()}, bad)
    with pytest.raises(ValueError, match="checkpoint.pt"):
        Trainer(cfg, scene, device="cpu").load_checkpoint(bad)
    assert not _Planted.MARK.exists()


def test_step_logs_stay_on_device_until_logged(tiny_scene_dir):
    """step() returns the losses as detached 0-dim tensors (converting each to a float would be a host sync per
    step on GPU); the history converts once per logged point, as the mean over log_every steps."""
    scene = load_scene(tiny_scene_dir, views="3")
    tr = Trainer(make_config("fast", iterations=4, **dict(TINY, log_every=2)), scene, device="cpu")
    seen = []
    tr.train(callback=lambda t, logs: seen.append(logs))
    assert len(seen) == 4
    for logs in seen:
        for k in ("loss", "rgb_loss", "mask_loss", "eikonal_loss", "hit_ratio"):
            assert isinstance(logs[k], torch.Tensor) and logs[k].dim() == 0 and not logs[k].requires_grad
    assert len(tr.history) == 2 and all(isinstance(h["loss"], float) for h in tr.history)
    assert tr.history[1]["loss"] == pytest.approx((float(seen[2]["loss"]) + float(seen[3]["loss"])) / 2)
    assert tr.history[1]["iteration"] == 4


def test_soft_masks_keep_each_pixels_coverage(tiny_scene_dir):
    """The ray bank keeps each reduced pixel's mask coverage (the mask is its >= 50 %), the outline's pixels in
    between; ``soft_masks`` trains the silhouette loss on it, which changes the loss on the same batch."""
    scene = load_scene(tiny_scene_dir, views="3")
    bank = RayBank.from_scene(scene, image_size=48)
    cov = bank.coverage
    assert cov.dtype == torch.float32 and cov.shape == bank.mask.shape
    assert torch.equal(bank.mask, cov >= 0.5) and float(cov.min()) >= 0.0 and float(cov.max()) <= 1.0
    partial = (cov > 0) & (cov < 1)
    assert 0 < int(partial.sum()) < 0.2 * len(bank)  # only the outline's pixels
    full = RayBank.from_scene(scene)
    assert torch.equal(full.coverage, full.mask.float())
    losses = {}
    for soft in (False, True):
        torch.manual_seed(0)
        tr = Trainer(make_config("fast", iterations=1, soft_masks=soft, **dict(TINY, image_size=48)), scene,
                     device="cpu")
        seen = []
        tr.train(callback=lambda t, logs: seen.append(float(logs["mask_loss"])))
        losses[soft] = seen[0]
    assert losses[True] != losses[False]


def test_resume_keeps_auto_strategy(tiny_scene_dir, tmp_path):
    scene = load_scene(tiny_scene_dir, views="3")
    cfg = make_config("fast", iterations=4, **TINY)
    tr = Trainer(cfg, scene, device="cpu")
    tr.train(checkpoint_path=tmp_path / "c.pt", stop_after=2)
    choice = tr.tracer.auto_choice
    tr2 = Trainer(cfg, scene, device="cpu")
    tr2.load_checkpoint(tmp_path / "c.pt")
    assert tr2.tracer.auto_choice == choice and tr2.tracer.resolved_strategy(torch.device("cpu")) is not None


def test_cli_stop_and_resume(tiny_scene_dir, tmp_path):
    base = [str(tiny_scene_dir), "--device", "cpu", "--iterations", "6", "--quiet", "--image-size", "32",
            "--batch-rays", "128", "--geo-hidden", "48", "--geo-layers", "2", "--geo-skip", "2",
            "--mesh-resolution", "32", "--render-size", "24", "--strategy", "search", "--evaluate", "false"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(base + ["--out", str(a)]) == 0
    assert cli.main(base + ["--out", str(b), "--stop-after", "3"]) == 0
    assert not json.loads((b / "metrics.json").read_text())["finished"]
    assert cli.main([str(tiny_scene_dir), "--out", str(b), "--resume", "--quiet"]) == 0
    sa = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
    sb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------- errors
def test_cli_errors(tiny_scene_dir, three_view_scene_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main([str(tmp_path / "missing"), "--out", out]) == 2
    assert "scene folder not found" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    assert cli.main([str(tmp_path / "bad"), "--out", out]) == 2
    assert "cameras.npz" in capsys.readouterr().err
    assert cli.main([str(three_view_scene_dir), "--views", "8", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "needs 8 views" in err and "only 3" in err
    assert cli.main([str(three_view_scene_dir), "--views", "0,5", "--out", out]) == 2
    assert "out of range" in capsys.readouterr().err
    assert cli.main([str(three_view_scene_dir), "--views", "three", "--out", out]) == 2
    assert "bad views 'three'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([str(three_view_scene_dir), "--method", "nope", "--out", out])
    assert cli.main([str(three_view_scene_dir), "--out", out, "--resume"]) == 2
    assert "no run to resume" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main([str(three_view_scene_dir), "--out", out, "--device", "cuda"]) == 2
        assert "CUDA" in capsys.readouterr().err
    assert cli.main([str(three_view_scene_dir), "--out", out, "--lr", "-1"]) == 2
    assert "lr must be positive" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written for failed starts
    with pytest.raises(SystemExit):
        cli.main(["--out", out])  # neither SCENE_DIR nor --demo


def test_run_dir_with_another_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = make_config("fast")
    assert check_run_dir(run, cfg, resume=False) is cfg  # empty folder is fine
    cfg.save(run / "config.json")
    # stopped before its first checkpoint: nothing to keep, it starts again (with or without --resume)
    assert check_run_dir(run, cfg.replace(batch_rays=64), resume=False).batch_rays == 64
    assert check_run_dir(run, cfg.replace(batch_rays=64), resume=True) == cfg
    (run / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(RunDirError, match="--resume"):
        check_run_dir(run, cfg, resume=False)
    with pytest.raises(RunDirError, match=r"another run \(different config: batch_rays: 1024 there vs 64 now"):
        check_run_dir(run, cfg.replace(batch_rays=64), resume=False)
    assert check_run_dir(run, cfg.replace(batch_rays=64), resume=True) == cfg  # stored config wins
    with pytest.raises(RunDirError, match="batch_rays"):
        check_run_dir(run, cfg, resume=True, explicit={"batch_rays": 64})
    assert check_run_dir(run, cfg, resume=True, explicit={"device": "cpu"}).device == "cpu"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(RunDirError, match="not empty"):
        check_run_dir(other, cfg, resume=False)


# ---------------------------------------------------------------------------------------------- config
def test_config_presets_and_json(tmp_path):
    paper, fast = make_config("paper"), make_config("fast")
    assert (paper.geo_hidden, paper.geo_layers, paper.batch_rays, paper.epochs) == (512, 8, 2048, 2000)
    assert paper.lr_milestones == (1000, 1500) and paper.iterations is None and paper.image_size == 0
    assert fast.geo_hidden < paper.geo_hidden and fast.iterations and fast.image_size > 0
    fast.save(tmp_path / "c.json")
    assert ReconConfig.load(tmp_path / "c.json") == fast
    assert config_diff(fast, fast.replace(device="cuda")) == {}
    assert config_diff(fast, fast.replace(lr=1.0)) == {"lr": (fast.lr, 1.0)}
    with pytest.raises(ValueError, match="unknown config field"):
        make_config("fast", bogus=1)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("slow")
    with pytest.raises(ValueError, match="ss_fraction"):
        make_config("fast", ss_fraction=1.5)
    (tmp_path / "bad.json").write_text('{"lr": "x", "nope": 1}')
    with pytest.raises(ValueError, match="not a valid headrecon config"):
        ReconConfig.load(tmp_path / "bad.json")
    assert set(PRESETS) == {"fast", "paper", "instant"}
    inst = make_config("instant")
    assert inst.detail == "hashgrid" and fast.detail == paper.detail == "none"
    assert config_diff(fast, inst).keys() == {"detail", "image_size", "preset", "hash_levels", "hash_log2_size"}


def test_help_comes_from_config(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--views", "--method", "--preset", "--device", "--out", "--iterations", "--resume", "--demo",
                 "--seed", "--batch-rays", "--ss-fraction"):
        assert flag in out, flag
    flat = " ".join(out.split())  # argparse wraps the help lines
    assert "rays per iteration" in flat and "fast: 1024, paper: 2048" in flat


def test_parse_views():
    assert parse_views("3") == "3" and parse_views("all") == "all" and parse_views("0,2,5") == [0, 2, 5]
    for bad in ("x", "0", "-3", "1,a", "1,1,1", "0,-1", ","):
        with pytest.raises(ValueError):
            parse_views(bad)


# ---------------------------------------------------------------------------------------------- selective sampling
def test_selective_sampling_schedule():
    # paper: drop steps at epochs 250, 500, 750, 1000 and none after
    assert [ss_steps(e, 0.12, 250, 1000) for e in (0, 249.9, 250, 499, 500, 999, 1000, 1999)] == \
        [0, 0, 1, 1, 2, 3, 4, 4]
    assert ss_steps(1500, 0.0, 250, 1000) == 0


def test_selective_sampling_pool(three_view_scene_dir):
    scene = load_scene(three_view_scene_dir)
    bank = RayBank.from_scene(scene)
    s = PixelSampler(bank, 64, fraction=0.12, seed=0)
    n_fg, n_bg = bank.n_foreground, len(bank) - bank.n_foreground
    bg = ~bank.mask.numpy()
    s.set_steps(2)
    assert len(s.pool) == len(bank)  # nothing observed yet: no background pixel is known to be satisfied
    # every background pixel satisfied except the 50 farthest, which the surface still covers
    covered = s.bg_order[:50]
    s.last_idx = torch.arange(len(bank))
    sat = torch.from_numpy(bg.copy())
    sat[torch.from_numpy(covered)] = False
    s.observe(sat)
    sizes = []
    for k in range(2, 5):
        s.set_steps(k)
        sizes.append(len(s.pool))
        assert bank.mask.numpy()[s.pool.numpy()].sum() == n_fg  # foreground always kept
    assert sizes == [n_fg + n_bg - int(round(k * 0.12 * n_bg)) for k in range(2, 5)]
    kept = np.zeros(len(bank), bool)
    kept[s.pool.numpy()] = True
    assert kept[covered].all()  # covered pixels stay in the pool whatever their distance
    # among the satisfied ones, the dropped are the farthest from the silhouette
    sat_np = sat.numpy()
    assert bank.bg_dist[bg & ~kept].min() >= bank.bg_dist[bg & kept & sat_np].max() - 1e-12
    # once the covered pixels are satisfied too, they go at the next step; the state round-trips
    sat[torch.from_numpy(covered)] = True
    s.observe(sat)
    st = s.state_dict()
    s2 = PixelSampler(bank, 64, fraction=0.12, seed=0)
    s2.load_state_dict(st)
    assert torch.equal(s2.pool, s.pool)
    s.set_steps(5)
    assert not np.isin(covered, s.pool.numpy()).any()
    o, d, rgb, m = s.sample()
    assert o.shape == (64, 3) and m.dtype == torch.bool


def test_selective_sampling_shrinking_batch(three_view_scene_dir):
    """ss_shrink: the batch is batch_rays * |pool| / P, so each pixel left in the pool is drawn as often as
    without selective sampling; the fixed batch stays batch_rays."""
    bank = RayBank.from_scene(load_scene(three_view_scene_dir))
    fixed = PixelSampler(bank, 400, fraction=0.12, seed=0)
    shrink = PixelSampler(bank, 400, fraction=0.12, seed=0, shrink=True)
    assert shrink.batch_size == fixed.batch_size == 400  # nothing dropped yet
    for s in (fixed, shrink):
        s.last_idx = torch.arange(len(bank))
        s.observe(~bank.mask)  # every background ray satisfied
        s.set_steps(3)
    assert torch.equal(fixed.pool, shrink.pool) and len(shrink.pool) < len(bank)
    assert fixed.batch_size == 400 and fixed.sample()[0].shape == (400, 3)
    want = round(400 * len(shrink.pool) / len(bank))
    assert shrink.batch_size == want < 400
    o, d, rgb, m = shrink.sample()
    assert o.shape == (want, 3) and shrink.last_idx.shape == (want,)
    # the foreground rate per iteration is that of a sampler without selective sampling
    n_draw = 200
    fg = sum(int(shrink.sample()[3].sum()) for _ in range(n_draw)) / n_draw
    assert fg == pytest.approx(400 * bank.n_foreground / len(bank), rel=0.08)
    # the state round-trips with the same batch size
    s2 = PixelSampler(bank, 400, fraction=0.12, seed=0, shrink=True)
    s2.load_state_dict(shrink.state_dict())
    assert s2.batch_size == want and torch.equal(s2.sample()[0], shrink.sample()[0])


def test_ss_shrink_is_opt_in(three_view_scene_dir):
    """The default keeps the batch size for every method (measured: the shrinking batch costs accuracy from 4
    views on, README); --ss-shrink reaches the trainer's sampler."""
    assert make_config("fast").ss_shrink is False and make_config("paper").ss_shrink is False
    scene = load_scene(three_view_scene_dir)
    small = dict(TINY, iterations=4)
    assert not Trainer(make_config("fast", **small), scene, device="cpu").sampler.shrink
    assert Trainer(make_config("fast", ss_shrink=True, **small), scene, device="cpu").sampler.shrink


def test_every_config_field_parses_from_the_command_line():
    """For every method, each shared field's and each option's --flag gives a value of the field's type (Optional
    fields also take 'none'); the types come from the type hints."""
    import argparse
    import dataclasses
    import typing

    from headrecon.recon.config import add_config_arguments, config_from_args, options_class

    samples = {float: ("0.5", 0.5), int: ("7", 7), bool: ("false", False), str: ("some/path", "some/path")}
    for method in METHODS:
        p = argparse.ArgumentParser()
        add_config_arguments(p, method)
        for cls in (ReconConfig, options_class(method)):
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                if f.name == "options":
                    continue
                args = typing.get_args(hints[f.name])
                if typing.get_origin(hints[f.name]) is typing.Union and type(None) in args:
                    text, want = samples[next(a for a in args if a is not type(None))]
                    flag = f"--{f.name.replace('_', '-')}"
                    assert getattr(p.parse_args([flag, text]), f.name) == want, (method, f.name)
                    assert getattr(p.parse_args([flag, "none"]), f.name) is None, (method, f.name)
    p = argparse.ArgumentParser()
    add_config_arguments(p, "sira")
    cfg = config_from_args(p.parse_args(["--method", "sira", "--finetune-lr", "1e-4", "--sira-anchor-radius", "0.5",
                                         "--ss-shrink", "true", "--iterations", "none"]))
    assert (cfg.finetune_lr, cfg.sira_anchor_radius, cfg.ss_shrink, cfg.iterations) == (1e-4, 0.5, True, None)
    assert cfg.options.sira_anchor_radius == 0.5


def test_method_options_belong_to_their_method():
    """A method's config holds only its own options: IDR with a short nominal run no longer trips a SIRA++ check
    (fixed bug), another method's option is refused with a hint, and ReconConfig() is the paper preset it holds
    (fixed bug: it said 'fast')."""
    from headrecon.recon.config import make_config

    cfg = make_config("fast", method="idr", epochs=80)
    assert cfg.epochs == 80 and cfg.options.geo_hidden == 128
    with pytest.raises(ValueError, match="sira_unfreeze_epoch"):  # SIRA++ itself still checks its schedule
        make_config("fast", method="sira", epochs=80)
    with pytest.raises(ValueError, match="option of --method sira"):
        make_config("fast", method="idr", sira_anchor_weight=3.0)
    with pytest.raises(AttributeError, match="sira_prior"):
        make_config("fast", method="idr").sira_prior
    paper = ReconConfig()
    assert paper.preset == "paper" and paper == make_config("paper")
    assert paper.options.geo_hidden == 512
    d = make_config("fast", method="h3dnet").to_dict()  # config.json: shared fields and the options, flat
    assert d["prior_latent_fraction"] == 0.25 and "geo_hidden" not in d and "sira_accel" not in d
    assert ReconConfig.from_dict(d) == make_config("fast", method="h3dnet")


def test_config_json_of_the_flat_format_still_loads(tmp_path):
    """A config.json written when one flat config held every method's fields resumes: the other methods' fields
    are dropped on load (an unknown name still fails)."""
    import json

    cfg = make_config("fast", method="h3dnet")
    old = {**cfg.to_dict(), "geo_hidden": 128, "sira_accel": True, "sira_anchor_weight": 30.0}
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert ReconConfig.load(tmp_path / "config.json") == cfg
    (tmp_path / "bad.json").write_text(json.dumps({**old, "no_such_field": 1}))
    with pytest.raises(ValueError, match="no_such_field"):
        ReconConfig.load(tmp_path / "bad.json")


def test_help_per_method(capsys):
    """`--method M --help` lists M's options and not another method's."""
    for method, own, other in (("idr", "--geo-hidden", "--sira-anchor-weight"),
                               ("sira", "--sira-anchor-weight", "--prior-latent-lr"),
                               ("h3dnet", "--prior-latent-lr", "--geo-hidden")):
        with pytest.raises(SystemExit):
            cli.main(["--method", method, "--help"])
        out = capsys.readouterr().out
        assert own in out and other not in out and "--batch-rays" in out, method


def test_schedules_scale_with_run_length(three_view_scene_dir):
    scene = load_scene(three_view_scene_dir)
    cfg = make_config("fast", iterations=80, image_size=32, batch_rays=64, geo_hidden=48, geo_layers=2,
                      geo_skip=(1,), feature_size=8, render_hidden=32, render_layers=1)
    tr = Trainer(cfg, scene, device="cpu")
    # epochs 2000 over 80 iterations: epoch 250 = iteration 10, lr decays at iterations 40 and 60
    checks = {0: (0, 50.0, 1.0), 10: (1, 100.0, 1.0), 40: (4, 800.0, 0.5), 60: (4, 1600.0, 0.25)}
    for it, (steps, alpha, lr_factor) in checks.items():
        tr._apply_schedules(it)
        assert tr.sampler.steps == steps and tr.loss_fn.alpha == alpha
        assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.lr * lr_factor)
    paper = Trainer(make_config("paper", image_size=32, geo_hidden=64, geo_layers=2, geo_skip=(1,),
                                feature_size=8, render_hidden=32, render_layers=1), scene, device="cpu")
    assert paper.iters_per_epoch == 3 and paper.total_iterations == 6000
    pix = Trainer(make_config("paper", epoch_mode="pixels", image_size=32, batch_rays=100, geo_hidden=64,
                              geo_layers=2, geo_skip=(1,), feature_size=8, render_hidden=32, render_layers=1),
                  scene, device="cpu")
    assert pix.iters_per_epoch == int(np.ceil(len(pix.bank) / 100))


# ---------------------------------------------------------------------------------------------- method registry
def test_method_registry_phases_and_hooks(three_view_scene_dir):
    calls = []

    @register_method("_two_phase_test")
    class TwoPhase(IDRMethod):
        def phases(self):
            return [Phase("latent", 0.5), Phase("finetune", 1.0)]

        def param_groups(self, model, phase):
            mod = model.rendering if phase.name == "latent" else model
            return [{"params": list(mod.parameters()), "lr": 1e-3 if phase.name == "latent" else 1e-4}]

        def on_phase_start(self, trainer, phase, resumed=False):
            calls.append((phase.name, trainer.iteration, resumed))

    try:
        scene = load_scene(three_view_scene_dir)
        cfg = make_config("fast", method="_two_phase_test", iterations=4, image_size=32, batch_rays=64,
                          geo_hidden=48, geo_layers=2, geo_skip=(1,), feature_size=8, render_hidden=32,
                          render_layers=1)
        tr = Trainer(cfg, scene, device="cpu")
        geo0 = _params(tr.model.geometry)
        tr.train(stop_after=2)
        assert all(torch.equal(v, _params(tr.model.geometry)[k]) for k, v in geo0.items())  # frozen phase 1
        tr.train()
        assert calls == [("latent", 0, False), ("finetune", 2, False)]
        assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.25)  # epoch 1500: two decays
    finally:
        METHODS.pop("_two_phase_test", None)
    with pytest.raises(ValueError, match="unknown reconstruction method .nope.; available: .*idr"):
        get_method("nope", make_config("fast"))


# ---------------------------------------------------------------------------------------------- demo head
def test_demo_head_mesh():
    from headrecon.recon.demo import demo_head_mesh, demo_head_sdf

    m = demo_head_mesh(resolution=64)
    assert m.is_watertight and m.volume > 0
    lm = m.metadata["landmarks"]
    assert set(lm) == {"right_eye", "left_eye", "nose_tip", "nose_base", "right_lips", "left_lips"}
    nose = m.vertices[lm["nose_tip"]]
    assert nose[2] > m.vertices[lm["left_eye"]][2] and nose[2] > 80
    assert m.vertices[lm["left_eye"]][0] > 0 > m.vertices[lm["right_eye"]][0]  # +X = subject's left
    assert 180 < np.ptp(m.vertices[:, 1]) < 300  # head + neck height in mm
    assert demo_head_sdf(np.zeros((1, 3)))[0] < 0 and demo_head_sdf(np.array([[0, 0, 300.0]]))[0] > 0
    assert m.visual.vertex_colors.shape == (len(m.vertices), 4)


def test_cli_demo_smoke(tmp_path, capsys):
    """``--demo`` copies the shipped 3-view scene of the real scan, runs SIRA++ by default (``--method idr`` the
    baseline), prints the H3DS errors and writes a vertex-coloured mesh (tiny settings)."""
    out = tmp_path / "demo-run"
    tiny = ["--iterations", "2", "--quiet", "--image-size", "32", "--batch-rays", "128", "--mesh-resolution", "48",
            "--render-size", "24", "--novel-yaws", "180"]
    assert cli.main(["--demo", "--out", str(out)] + tiny) == 0
    scene = tmp_path / "demo-run-scene"
    assert (scene / "full_head.obj").is_file() and (scene / "LICENSE.txt").is_file()
    assert "CC BY 3.0" in (scene / "README.md").read_text() or "Attribution 3.0" in (scene / "README.md").read_text()
    assert json.loads((out / "config.json").read_text())["method"] == "sira"
    m = json.loads((out / "metrics.json").read_text())
    assert m["finished"] and m["views"] == [0, 1, 2] and "face_gt2pred_mm" in m["h3ds"]
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed and "face gt->pred" in printed
    mesh = trimesh.load(out / "mesh.ply", process=False)
    cols = np.asarray(mesh.visual.vertex_colors)[:, :3]
    assert cols.shape == (len(mesh.vertices), 3) and cols.std(axis=0).max() > 1.0  # coloured, not one colour
    out2 = tmp_path / "demo-idr"
    assert cli.main(["--demo", "--method", "idr", "--out", str(out2), "--geo-hidden", "48", "--geo-layers", "2",
                     "--geo-skip", "2"] + tiny) == 0
    assert json.loads((out2 / "config.json").read_text())["method"] == "idr"
    with pytest.raises(SystemExit):
        cli.main(["--demo", "--preset", "paper", "--out", str(tmp_path / "x")])


def test_default_strategy_is_fixed_per_device():
    """The default tracer strategy does not depend on timing (reproducible under any load): sphere on CPU,
    search on CUDA; 'auto' (timing) is opt-in."""
    from headrecon.recon.trainer import resolve_strategy

    assert make_config("fast").strategy == "default"
    assert resolve_strategy("default", "cpu") == "sphere"
    assert resolve_strategy("default", "cuda") == "search"
    assert resolve_strategy("auto", "cpu") == "auto" and resolve_strategy("search", "cpu") == "search"


def test_bench_methods_variant_parsing_keeps_none_for_string_fields():
    """benches/bench_methods.py --methods: 'detail=none' (the fine-tuned second phase) stays the string 'none';
    'none' of another field is None."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benches" / "bench_methods.py"
    spec = importlib.util.spec_from_file_location("bench_methods_for_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    label, method, over = mod.parse_variant("ft=sira:detail=none,finetune_lr=none,iterations=5,hash_lr=0.03")
    assert (label, method) == ("ft", "sira")
    assert over == {"detail": "none", "finetune_lr": None, "iterations": 5, "hash_lr": 0.03}
