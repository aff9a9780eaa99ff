"""Benchmark of the reconstruction pipeline: seconds per iteration and per scene of the ``fast`` preset.

pytest-benchmark:  pytest benches/bench_recon.py --benchmark-enable
                   (default: a quick smoke run on a small demo scene, < 1 min; ``HEADRECON_BENCH_FULL=1`` runs the
                   measurement reported in the README: the fast preset on the 3-view demo scene at 256 px, a full
                   1500-iteration scene run included, ~10 min on 2 CPU cores)
CI smoke:          pytest benches/bench_recon.py --benchmark-disable
Device:            ``HEADRECON_BENCH_DEVICE`` (default: auto = CUDA when available, else CPU).

Reported in ``extra_info``: rays/s, wall and process-CPU seconds per iteration (the CPU time is less sensitive to
other jobs on a shared machine), the torch thread count and the load average.
"""
from __future__ import annotations

import os
import time

import pytest
import torch

FULL = os.environ.get("HEADRECON_BENCH_FULL", "0").lower() in ("1", "true", "yes")
DEVICE = os.environ.get("HEADRECON_BENCH_DEVICE", "auto")
SCENE_SIZE = 256 if FULL else 96
SCENE_ITERATIONS = None if FULL else 4          # None: the preset's count (1500)
SMOKE = {} if FULL else dict(image_size=48, batch_rays=256, mesh_resolution=48, render_size=32, novel_yaws=(180.0,))


@pytest.fixture(scope="module")
def demo_scene_dir(tmp_path_factory):
    from headrecon.recon.demo import make_demo_scene

    out = tmp_path_factory.mktemp("bench") / "demo"
    make_demo_scene(out, views=8, size=SCENE_SIZE, resolution=160 if FULL else 64)
    return out


def _extra(benchmark, cfg, seconds, cpu_seconds, iterations):
    benchmark.extra_info.update(
        device=str(DEVICE), torch_threads=cfg.threads or torch.get_num_threads(), batch_rays=cfg.batch_rays,
        seconds_per_iteration=seconds / iterations, cpu_seconds_per_iteration=cpu_seconds / iterations,
        rays_per_second=cfg.batch_rays * iterations / seconds, load_average=os.getloadavg()[0],
        full=FULL)


def test_fast_iteration(benchmark, demo_scene_dir):
    """Seconds per training iteration of the fast preset (3 views of the demo head)."""
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    scene = load_scene(demo_scene_dir, views="3")
    cfg = make_config("fast", device=DEVICE, **SMOKE)
    threads = torch.get_num_threads()
    if cfg.threads > 0:  # as headrecon-reconstruct does
        torch.set_num_threads(cfg.threads)
    try:
        _iterations(benchmark, cfg, scene, Trainer)
    finally:
        torch.set_num_threads(threads)


def _iterations(benchmark, cfg, scene, Trainer):
    tr = Trainer(cfg, scene)
    for _ in range(3 if FULL else 1):  # warm-up (auto strategy measurement, allocator)
        tr.step()
        tr.iteration += 1
    n = 20 if FULL else 3
    clock = {}

    def run():
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            tr.step()
            tr.iteration += 1
        clock["wall"], clock["cpu"] = time.perf_counter() - t0, time.process_time() - c0

    benchmark.pedantic(run, rounds=3 if FULL else 1, iterations=1)
    _extra(benchmark, cfg, clock["wall"], clock["cpu"], n)
    benchmark.extra_info["iterations_per_round"] = n


def test_fast_scene(benchmark, demo_scene_dir, tmp_path):
    """Seconds per scene: the whole fast-preset run (fit, mesh, renders, H3DS metrics) on 3 views."""
    from headrecon.recon.config import make_config
    from headrecon.recon.pipeline import reconstruct

    overrides = dict(SMOKE)
    if SCENE_ITERATIONS is not None:
        overrides["iterations"] = SCENE_ITERATIONS
    cfg = make_config("fast", device=DEVICE, **overrides)
    runs = iter(range(100))
    out = {}

    def run():
        out["res"] = reconstruct(demo_scene_dir, cfg, tmp_path / f"run{next(runs)}", progress=False,
                                 log=lambda *a: None)

    benchmark.pedantic(run, rounds=1, iterations=1)
    m = out["res"].metrics
    _extra(benchmark, cfg, m["train_seconds"], m["train_cpu_seconds"], m["iterations"])
    benchmark.extra_info.update(mesh_seconds=m["mesh_seconds"], render_seconds=m["render_seconds"],
                                eval_seconds=m.get("eval_seconds"), iterations=m["iterations"],
                                **{k: m["h3ds"][k] for k in ("face_gt2pred_mm", "face_pred2gt_mm",
                                                             "head_gt2pred_mm", "head_pred2gt_mm")})
    assert m["finished"]
