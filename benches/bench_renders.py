"""Benchmark of the run folder's renders: ray-casting the run's mesh (what ``write_results`` does) against tracing
the fitted SDF with the run's tracer (what it did before), side by side in one process on the same trained model and
cameras (the input views and the novel yaws, at the run's ``render_size``).

Summary:           python benches/bench_renders.py RUN_DIR [--threads 1] [--out renders.json]
                   (a finished run folder: config.json, run.json, checkpoint.pt, mesh.ply; its scene as run.json
                   names it unless ``--scene`` names another copy)
pytest-benchmark:  pytest benches/bench_renders.py --benchmark-enable   (a tiny model, a few iterations)
CI smoke:          pytest benches/bench_renders.py --benchmark-disable

Per camera: wall and process-CPU seconds of each path, the hit pixels of each, the pixels whose hit differs, and
the mean / largest colour difference (0-1 scale) where both hit.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch


def cameras(trainer, full, scene):
    """``[(label, camera)]``: the renders ``write_results`` makes (input views, then the novel yaws)."""
    from headrecon.recon.renders import fit_camera, novel_cameras

    size = trainer.cfg.render_size
    out = [(f"input view {v.index}", fit_camera(c, size)) for v, c in zip(scene.views, trainer.training_cameras())]
    return out + [(label, cam) for label, cam, _ in novel_cameras(full, scene, trainer.cfg.novel_yaws, size)]


def compare(trainer, full, scene, mesh) -> list:
    """One row per camera: both paths timed one after the other (traced first), and how their pictures differ."""
    from headrecon.recon.pipeline import unit_mesh
    from headrecon.recon.renders import render_view

    mesh_unit = unit_mesh(mesh, scene)
    tracer = trainer.render_tracer()
    rows = []
    for label, cam in cameras(trainer, full, scene):
        row = {"camera": label, "pixels": cam.width * cam.height}
        out = {}
        for name, kw in (("traced", dict(tracer=tracer)), ("mesh", dict(tracer=None, mesh=mesh_unit))):
            t0, c0 = time.perf_counter(), time.process_time()
            out[name] = render_view(trainer.model, camera=cam, **kw)
            row[f"{name}_seconds"] = round(time.perf_counter() - t0, 3)
            row[f"{name}_cpu_seconds"] = round(time.process_time() - c0, 3)
            row[f"{name}_hits"] = int(out[name][2].sum())
        (rgb0, _, hit0), (rgb1, _, hit1) = out["traced"], out["mesh"]
        both = hit0 & hit1
        diff = np.abs(rgb0[both] - rgb1[both]) if both.any() else np.zeros((1, 3))
        row.update(hit_differs=int((hit0 != hit1).sum()), rgb_diff_mean=round(float(diff.mean()), 5),
                   rgb_diff_max=round(float(diff.max()), 4))
        rows.append(row)
    return rows


def summary(rows) -> dict:
    tot = {k: round(sum(r[k] for r in rows), 2) for k in ("traced_seconds", "traced_cpu_seconds", "mesh_seconds",
                                                           "mesh_cpu_seconds")}
    tot["mesh_over_traced_cpu"] = round(tot["mesh_cpu_seconds"] / max(tot["traced_cpu_seconds"], 1e-9), 4)
    tot["hit_pixels_traced"] = sum(r["traced_hits"] for r in rows)
    tot["hit_differs"] = sum(r["hit_differs"] for r in rows)
    return tot


# ---------------------------------------------------------------------------------------------- pytest-benchmark
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from headrecon.data import load_scene
    from headrecon.data.scene import parse_views
    from headrecon.recon.config import make_config
    from headrecon.recon.demo import make_demo_scene
    from headrecon.recon.trainer import Trainer

    out = tmp_path_factory.mktemp("bench") / "demo"
    make_demo_scene(out, views=8, size=64, resolution=64)
    full = load_scene(out)
    scene = full.subset(parse_views("3"))
    cfg = make_config("fast", iterations=4, image_size=48, batch_rays=256, mesh_resolution=48, render_size=32,
                      novel_yaws=(180.0,))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tr = Trainer(cfg, scene, device="cpu", progress=False)
        tr.train()
        yield tr, full, scene, tr.extract_mesh()
    finally:
        torch.set_num_threads(threads)


def test_renders_from_the_mesh(benchmark, tiny_run):
    """Seconds of the run folder's renders from the mesh; the traced path's beside it in ``extra_info``."""
    from headrecon.recon.pipeline import unit_mesh
    from headrecon.recon.renders import render_view

    tr, full, scene, mesh = tiny_run
    rows = compare(tr, full, scene, mesh)
    mesh_unit = unit_mesh(mesh, scene)
    cams = [c for _, c in cameras(tr, full, scene)]
    benchmark(lambda: [render_view(tr.model, None, c, mesh=mesh_unit) for c in cams])
    benchmark.extra_info.update(summary(rows))
    assert all(r["mesh_hits"] > 0 for r in rows)


# ---------------------------------------------------------------------------------------------- summary
def main(argv=None) -> int:
    import trimesh

    from headrecon.machine import write_result
    from headrecon.recon.pipeline import RunDirError, load_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished run folder (config.json, run.json, checkpoint.pt, mesh.ply)")
    ap.add_argument("--scene", type=Path, default=None, help="the run's scene (default: the one run.json names)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the fast preset)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows and the totals as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if not (args.run / "mesh.ply").is_file():
        raise SystemExit(f"{args.run / 'mesh.ply'}: missing; {args.run} is not a finished headrecon run folder")
    try:
        trainer, full, scene = load_run(args.run, args.scene)
    except RunDirError as exc:
        raise SystemExit(str(exc)) from None
    rows = compare(trainer, full, scene, trimesh.load(args.run / "mesh.ply", process=False))
    for r in rows:
        print(json.dumps(r))
    tot = summary(rows)
    print(json.dumps(tot))
    if args.out:
        write_result(args.out, rows=rows, total=tot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
