"""Benchmark of the run's mesh extraction: the SDF grid that marching cubes reads, evaluated whole, from one
lattice 4x coarser (``strides=(4,)``) and from the default lattices (16, 8, 4, 2), side by side in one process on
the same trained model (the run's checkpoint), at the run's mesh resolution or the ones given.

Summary:           python benches/bench_mesh.py RUN_DIR [--res 160 256] [--threads 1] [--out mesh.json]
                   (a finished run folder: config.json, run.json, checkpoint.pt; its scene as run.json names it
                   unless ``--scene`` names another copy)
pytest-benchmark:  pytest benches/bench_mesh.py --benchmark-enable   (a tiny model, a few iterations)
CI smoke:          pytest benches/bench_mesh.py --benchmark-disable

Per resolution and way: SDF evaluations (share of the grid), wall and process-CPU seconds of the grid, and whether
marching cubes on it gives the full grid's mesh exactly (vertices and faces; the run's clip to the bounding ball
applied as ``extract_mesh`` does); then the run's whole mesh step (``Trainer.extract_mesh``: the default grid,
marching cubes, the largest component and the run's refinements).
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

WAYS = (("full", None), ("one lattice (4,)", (4,)), ("lattices (16, 8, 4, 2)", (16, 8, 4, 2)))


def clipped_mesh(values, radius):
    """Marching cubes on ``values`` clipped to the ball of ``radius`` (the clip of ``extract_mesh(clip_sphere=True)``,
    on a copy)."""
    from skimage import measure

    from headrecon.render.mesh import clip_to_ball

    values = clip_to_ball(values.copy(), radius)
    return measure.marching_cubes(values, level=0.0, spacing=(2.0 * radius / (values.shape[0] - 1),) * 3)[:2]


def compare(sdf_fn, resolution: int, radius: float, chunk: int = 65536) -> list:
    """One row per way of evaluating the ``resolution^3`` grid (the full grid first)."""
    from headrecon.render.mesh import evaluate_grid

    calls = []

    def counted(x):
        calls.append(int(x.shape[0]))
        return sdf_fn(x)

    rows, want = [], None
    for name, strides in WAYS:
        calls.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        kw = {} if strides is None else {"narrow_band": 2.0, "strides": strides}
        values = evaluate_grid(counted, resolution, radius, chunk, progress=False, **kw)
        row = {"resolution": resolution, "way": name, "evaluations": sum(calls),
               "share_of_grid": round(sum(calls) / resolution ** 3, 4),
               "seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(time.process_time() - c0, 2)}
        verts, faces = clipped_mesh(values, radius)
        if want is None:
            want = (verts, faces)
        row["vertices"] = len(verts)
        row["same_mesh_as_full"] = bool(np.array_equal(verts, want[0]) and np.array_equal(faces, want[1]))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- pytest-benchmark
@pytest.fixture(scope="module")
def tiny_model():
    import tempfile

    from headrecon.data import load_scene
    from headrecon.data.scene import parse_views
    from headrecon.recon.config import make_config
    from headrecon.recon.demo import make_demo_scene
    from headrecon.recon.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        make_demo_scene(Path(tmp) / "demo", views=8, size=64, resolution=64)
        scene = load_scene(Path(tmp) / "demo").subset(parse_views("3"))
        cfg = make_config("fast", iterations=4, image_size=48, batch_rays=256, mesh_resolution=48, render_size=32)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            tr = Trainer(cfg, scene, device="cpu", progress=False)
            tr.train()
            tr.model.eval()
            yield tr
        finally:
            torch.set_num_threads(threads)


def test_mesh_grid_from_the_lattices(benchmark, tiny_model):
    """Seconds of the default narrow-band grid at 96^3; the other ways' rows in ``extra_info``, all the same mesh."""
    from headrecon.render.mesh import evaluate_grid

    tr = tiny_model
    rows = compare(tr.sdf_fn, 96, tr.cfg.scene_radius)
    benchmark(lambda: evaluate_grid(tr.sdf_fn, 96, tr.cfg.scene_radius, narrow_band=2.0, progress=False))
    benchmark.extra_info["rows"] = rows
    assert all(r["same_mesh_as_full"] for r in rows)
    assert rows[2]["evaluations"] < rows[1]["evaluations"] < rows[0]["evaluations"]


# ---------------------------------------------------------------------------------------------- summary
def main(argv=None) -> int:
    from headrecon.machine import write_result
    from headrecon.recon.pipeline import RunDirError, load_run
    from torch.nn.utils.parametrize import cached

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished run folder (config.json, run.json, checkpoint.pt)")
    ap.add_argument("--scene", type=Path, default=None, help="the run's scene (default: the one run.json names)")
    ap.add_argument("--res", type=int, nargs="+", default=None,
                    help="marching-cubes resolutions (default: the run's mesh_resolution)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the fast preset)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        trainer, _, _ = load_run(args.run, args.scene)
    except RunDirError as exc:
        raise SystemExit(str(exc)) from None
    trainer.model.eval()
    rows = []
    with cached():
        for res in args.res or [trainer.cfg.mesh_resolution]:
            for r in compare(trainer.sdf_fn, res, trainer.cfg.scene_radius):
                print(json.dumps(r))
                rows.append(r)
            t0, c0 = time.perf_counter(), time.process_time()  # the run's whole mesh step, as the run does it
            mesh = trainer.extract_mesh(resolution=res)
            r = {"resolution": res, "way": f"extract_mesh (refine={trainer.cfg.mesh_refine})",
                 "seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(time.process_time() - c0, 2),
                 "vertices": len(mesh.vertices)}
            print(json.dumps(r))
            rows.append(r)
    if args.out:
        write_result(args.out, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
