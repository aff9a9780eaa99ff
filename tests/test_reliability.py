"""Bad input gets a clear error naming the file, nothing we load runs code, no run folder gets stuck, and the
engine's backends agree on awkward inputs. Each test failed before its fix."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_recon import TINY, ellipsoid_mesh, one_thread, tiny_scene_dir  # noqa: F401  (fixtures)

from headrecon import ops
from headrecon.data import load_scene
from headrecon.data.errors import SceneError
from headrecon.data.scene import load_image, load_mask

RUN_FAST = ["--iterations", "4", "--image-size", "32", "--batch-rays", "64", "--mesh-resolution", "32",
            "--render-size", "24", "--novel-yaws", "180", "--quiet", "--device", "cpu"]


class _Planted:
    """Loading a pickle of this runs ``touch MARK``."""

    MARK = None

    def __reduce__(self):
        return (os.system, (f"touch {_Planted.MARK}",))


@pytest.fixture
def planted(tmp_path):
    _Planted.MARK = tmp_path / "code_ran"
    return _Planted


# ---------------------------------------------------------------------------------------------- nothing runs
@pytest.mark.parametrize("what", ["prior", "sira", "train_resume"])
def test_planted_pickle_in_weight_files_runs_nothing(tmp_path, planted, what):
    from headrecon.priors.h3dnet import load_prior
    from headrecon.priors.sira import load_sira
    from headrecon.priors.training import load_resume_state

    f = tmp_path / "evil.pt"
    torch.save({"format": "headrecon-prior", "weights": planted()}, f)
    load = {"prior": lambda: load_prior(f), "sira": lambda: load_sira(f),
            "train_resume": lambda: load_resume_state(f, "headrecon-prior-train", "prior", None, 1, {}, 1)}[what]
    with pytest.raises(ValueError, match="evil.pt.*Python objects"):
        load()
    assert not planted.MARK.exists()


def test_planted_pickle_in_cameras_npz_runs_nothing(tiny_scene_dir, tmp_path, planted):
    scene = tmp_path / "s"
    shutil.copytree(tiny_scene_dir, scene)
    cams = dict(np.load(scene / "cameras.npz"))
    cams["world_mat_0"] = np.array([planted()], dtype=object)
    np.savez(scene / "cameras.npz", **cams)
    with pytest.raises(SceneError, match="cameras.npz"):
        load_scene(scene)
    assert not planted.MARK.exists()


def test_cli_prior_with_planted_code(tiny_scene_dir, tmp_path, planted, capsys):
    from headrecon.recon import cli

    f = tmp_path / "evil.pt"
    torch.save({"x": planted()}, f)
    for flag, method in (("--prior", "h3dnet"), ("--sira-prior", "sira")):
        rc = cli.main([str(tiny_scene_dir), "--method", method, flag, str(f), "--out", str(tmp_path / method),
                       *RUN_FAST])
        err = capsys.readouterr().err
        assert rc == 2 and "evil.pt" in err and "Traceback" not in err, err
    assert not planted.MARK.exists()


def test_text_file_as_prior_is_a_clear_error(tmp_path):
    from headrecon.priors.h3dnet import load_prior

    f = tmp_path / "notes.txt"
    f.write_text("not a prior\n")
    with pytest.raises(ValueError, match="notes.txt.*not a PyTorch file"):
        load_prior(f)


def test_altered_weights_fail_their_checksum(tmp_path):
    """Flip one byte inside a stored tensor of a prior file: the load names the file instead of giving another
    mesh."""
    from headrecon.priors.h3dnet import default_prior_path, load_prior

    f = tmp_path / "prior.pt"
    shutil.copy(default_prior_path(), f)
    load_prior(f)  # intact: loads
    first = next(iter(torch.load(f, weights_only=True)["decoder"].values()))
    raw = bytearray(f.read_bytes())
    pos = bytes(raw).find(first.numpy().tobytes()[:32])
    assert pos > 0
    raw[pos + 5] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="prior.pt.*checksum"):
        load_prior(f)


# ---------------------------------------------------------------------------------------------- engine
@pytest.mark.parametrize("strategy", ["sphere", "search"])
def test_tracer_takes_directions_of_any_length(strategy):
    """t is in units of |dir| and both strategies hit (sphere tracing missed every non-unit ray)."""
    from headrecon.render import RayTracer

    o = torch.tensor([[0.0, 0.0, 3.0]] * 3)
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -2.0], [0.0, 0.0, -0.3]])
    r = RayTracer(strategy=strategy)(lambda x: x.norm(dim=-1) - 0.5, o, d)
    assert r.hit.all()
    torch.testing.assert_close(r.t, torch.tensor([2.5, 1.25, 2.5 / 0.3]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r.points[:, 2], torch.full((3,), 0.5), rtol=0, atol=1e-4)


def test_search_select_backends_agree_with_nan():
    t = torch.linspace(0, 1, 5).repeat(4, 1)
    nan = float("nan")
    s = torch.tensor([[1.0, 0.5, nan, -0.2, 0.3], [nan, nan, 0.2, 0.1, -1.0], [nan] * 5, [nan, float("inf"), 2.0,
                                                                                         2.0, nan]])
    a = ops.search_select(t, s, check_finite=False, backend="cpp")
    b = ops.search_select(t, s, check_finite=False, backend="torch")
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, equal_nan=True)
    assert a[5][:2].tolist() == pytest.approx([-0.2, -1.0]) and a[6][3] == 0.5  # NaN skipped; first minimum


def test_duplicate_walkers_and_negative_cache_radius_are_refused_by_both_backends():
    n2 = 4
    state = lambda: (torch.zeros(n2), torch.zeros(n2), torch.ones(n2), torch.ones(n2, dtype=torch.int32),
                     torch.full((n2,), float("inf")), torch.zeros(n2))
    for backend in ("cpp", "torch"):
        with pytest.raises(ValueError, match="duplicate"):
            ops.sphere_trace_step(*state(), torch.tensor([1, 1]), torch.tensor([0.3, 0.3]), backend=backend)
        with pytest.raises(ValueError, match="radius"):
            ops.cache_query(torch.zeros(4, 4, 4), torch.zeros(2, 3), -1.0, backend=backend)
        with pytest.raises(ValueError, match="radius"):
            ops.cache_update(torch.zeros(4, 4, 4), torch.zeros(2, 3), torch.zeros(2), -1.0, backend=backend)


# ---------------------------------------------------------------------------------------------- scenes
def test_make_scene_refuses_an_existing_scene_and_replaces_it_whole(tmp_path, capsys):
    from headrecon.data.make_scene import main

    mesh = tmp_path / "head.ply"
    ellipsoid_mesh().export(mesh)
    out = tmp_path / "scene"
    args = ["--mesh", str(mesh), "--size", "24", "--quiet", "--out", str(out)]
    assert main(args + ["--views", "8"]) == 0
    assert main(args + ["--views", "4"]) == 2
    assert "not empty" in capsys.readouterr().err and len(list((out / "image").iterdir())) == 8
    assert main(args + ["--views", "4", "--overwrite"]) == 0
    assert len(list((out / "image").iterdir())) == 4 and len(load_scene(out, load_images=False)) == 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    assert main(["--mesh", str(mesh), "--size", "24", "--quiet", "--out", str(tmp_path / "other"),
                 "--overwrite"]) == 2
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_sixteen_bit_png_images_and_masks(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == "I;16"
    img = load_image(tmp_path / "a.png")
    np.testing.assert_allclose(img[..., 0], ramp / 65535.0, atol=1e-6)
    assert 0.45 < load_mask(tmp_path / "a.png").mean() < 0.55  # not every non-zero pixel


@pytest.mark.parametrize("scale, where", [
    (0.5, "principal point.*resized"),                         # 2x smaller: the point at the far corner (outside)
    (2.0, "principal point.*far from the centre.*resized"),    # 2x larger: the near quarter on both axes
])
def test_images_resized_without_their_cameras_are_refused(tiny_scene_dir, tmp_path, scale, where):
    scene = tmp_path / "s"
    shutil.copytree(tiny_scene_dir, scene)
    for sub in ("image", "mask"):
        for f in (scene / sub).iterdir():
            with Image.open(f) as im:
                im.resize((int(im.width * scale), int(im.height * scale))).save(f)
    with pytest.raises(SceneError, match="img_0000.png.*" + where):
        load_scene(scene)


def test_portrait_crop_keeps_its_cameras_and_loads(tiny_scene_dir, tmp_path):
    """Photos whose bottom 40 % of rows were cut off, cameras unchanged (the principal point now at 0.83 of the
    height): a crop moves the point on one axis only and is accepted, with the same cameras."""
    scene = tmp_path / "s"
    shutil.copytree(tiny_scene_dir, scene)
    full = load_scene(tiny_scene_dir, load_images=False)
    for sub in ("image", "mask"):
        for f in (scene / sub).iterdir():
            with Image.open(f) as im:
                im.crop((0, 0, im.width, int(round(0.6 * im.height)))).save(f)
    cut = load_scene(scene)
    for a, b in zip(full.cameras, cut.cameras):
        assert b.height == int(round(0.6 * a.height)) and b.width == a.width
        np.testing.assert_allclose(b.K, a.K, atol=1e-9)
        assert b.K[1, 2] / b.height > 0.7


def test_transforms_json_with_frames_not_a_list(tmp_path):
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 100, "frames": {"file_path": "a.png"}}))
    with pytest.raises(SceneError, match="transforms.json.*'frames' must be a non-empty list"):
        load_scene(tmp_path)


# ---------------------------------------------------------------------------------------------- commands
@pytest.mark.parametrize("views", ["1,1,1", "0,-1"])
def test_bad_views_are_refused(tiny_scene_dir, tmp_path, capsys, views):
    from headrecon.recon import cli

    assert cli.main([str(tiny_scene_dir), "--views", views, "--out", str(tmp_path / "r"), *RUN_FAST]) == 2
    err = capsys.readouterr().err
    assert "bad views" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_prior_option_of_another_method_is_refused(tiny_scene_dir, tmp_path, capsys):
    from headrecon.recon import cli

    with pytest.raises(SystemExit) as exc:
        cli.main([str(tiny_scene_dir), "--method", "idr", "--prior", "p.pt", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "--prior" in capsys.readouterr().err


def test_run_folder_never_stuck(tiny_scene_dir, tmp_path, capsys):
    """A run that stopped before its first checkpoint (failed start, kill) is started again, with or without
    --resume."""
    from headrecon.recon import cli

    run = tmp_path / "run"
    args = [str(tiny_scene_dir), "--out", str(run), *RUN_FAST, "--geo-hidden", "48", "--geo-layers", "2", "--geo-skip", "1"]
    assert cli.main(args) == 0
    (run / "checkpoint.pt").unlink()  # as if killed before the first checkpoint
    assert cli.main(args) == 0, capsys.readouterr().err
    (run / "checkpoint.pt").unlink()
    assert cli.main(args + ["--resume"]) == 0, capsys.readouterr().err
    assert json.loads((run / "metrics.json").read_text())["finished"]


def test_a_live_run_is_not_taken_for_a_stopped_one(tiny_scene_dir, tmp_path, capsys):
    """While a process holds a run folder (its lock), a second start there is refused, even before the first
    checkpoint; the OS drops the lock when the process ends, however it ends."""
    import fcntl

    from headrecon.recon import cli

    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main([str(tiny_scene_dir), "--out", str(run), *RUN_FAST]) == 2
        assert "another headrecon-reconstruct is running" in capsys.readouterr().err
    args = [str(tiny_scene_dir), "--out", str(run), *RUN_FAST, "--geo-hidden", "48", "--geo-layers", "2",
            "--geo-skip", "1"]
    assert cli.main(args) == 0, capsys.readouterr().err


def test_damaged_run_checkpoint_is_a_clear_error(tiny_scene_dir, tmp_path, capsys):
    from headrecon.recon import cli

    run = tmp_path / "run"
    args = [str(tiny_scene_dir), "--out", str(run), *RUN_FAST, "--geo-hidden", "48", "--geo-layers", "2", "--geo-skip", "1",
            "--stop-after", "2"]
    assert cli.main(args) == 0
    st = torch.load(run / "checkpoint.pt", weights_only=True)
    del st["sampler"], st["checksum"]
    torch.save(st, run / "checkpoint.pt")
    assert cli.main(args[:-2] + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt" in err and "sampler" in err and "Traceback" not in err


def test_out_under_a_file(tiny_scene_dir, tmp_path, capsys):
    from headrecon.recon import cli

    (tmp_path / "file").write_text("x")
    assert cli.main([str(tiny_scene_dir), "--out", str(tmp_path / "file" / "run"), *RUN_FAST]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err


def test_every_command_reports_errors_without_traceback(tmp_path, capsys):
    from headrecon.data.make_scene import main as make_scene_main
    from headrecon.eval.cli import main as eval_main
    from headrecon.priors.cli import main as prior_main

    cases = [
        (eval_main, ["nope.ply", str(tmp_path)], "nope.ply"),
        (make_scene_main, ["--mesh", str(tmp_path / "nope.glb"), "--out", str(tmp_path / "s")], "nope.glb"),
        (prior_main, [str(tmp_path / "no_scans"), "--out", str(tmp_path / "p.pt"), "--no-progress"], "no_scans"),
    ]
    for main, args, name in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert name in err and "Traceback" not in err and "error:" in err, err
    with pytest.raises(SceneError, match="nope.ply"):  # --debug shows the real exception
        eval_main(["nope.ply", str(tmp_path), "--debug"])
