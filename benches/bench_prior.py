"""Benchmark of the head prior: training-iteration time per preset and latent-fit / mesh / render time.

Run ``python benches/bench_prior.py [--threads N] [--iters K]``. Prints, for the ``fast`` and ``paper``
presets (random scans, no shared data needed), the seconds per training iteration (one global batch: forward,
eikonal double-backward, Adam step) and the points per second, then for the fast preset the time of a
latent-only fit iteration (4096 points), a 96^3 marching-cubes extraction and a 128 x 128 shaded render.
Timings depend on the machine and its load; compare runs on the same machine only.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from headrecon.priors.h3dnet import ShapePrior, preset
from headrecon.priors.h3dnet.fit import fit_latent
from headrecon.priors.h3dnet.interpolate import render_sdf
from headrecon.priors.h3dnet.losses import prior_losses
from headrecon.priors.h3dnet.train import _Objective


def bench_train(name: str, iters: int, shapes: int = 8, **over) -> dict:
    cfg = preset(name, **over)
    prior = ShapePrior(cfg, num_latents=shapes)
    obj = _Objective(prior)
    opt = torch.optim.Adam(prior.parameters(), lr=cfg.lr)
    b = min(cfg.shapes_per_batch, shapes)
    n = cfg.surface_points + cfg.volume_points
    times = []
    for k in range(iters + 1):
        pts = torch.rand(b, n, 3) * 1.6 - 0.8
        nrm = torch.nn.functional.normalize(torch.randn(b, cfg.surface_points, 3), dim=-1)
        t0 = time.perf_counter()
        sdf, grad, z = obj(torch.arange(b) % shapes, pts)
        loss = prior_losses(sdf, grad, cfg.surface_points, nrm, torch.ones(b, dtype=torch.bool), z, cfg)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if k:  # skip warm-up
            times.append(time.perf_counter() - t0)
    s = float(np.median(times))
    return {"preset": name, "batch": f"{b} shapes x {n} pts", "s_per_iter": s, "points_per_s": b * n / s}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--skip-paper", action="store_true", help="the paper preset is slow on CPUs")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = [bench_train("fast", args.iters, shapes=32)]
    if not args.skip_paper:
        rows.append(bench_train("paper", args.iters, shapes=4, shapes_per_batch=4, surface_points=2048,
                                volume_points=2048))
    for r in rows:
        print(f"train {r['preset']:6s} {r['batch']:>22s}: {r['s_per_iter']:.3f} s/iter, "
              f"{r['points_per_s'] / 1e3:.1f} k points/s")
    prior = ShapePrior(preset("fast"), num_latents=4).eval()
    pts = np.random.default_rng(0).normal(size=(20000, 3))
    pts = 0.6 * pts / np.linalg.norm(pts, axis=1, keepdims=True)
    t0 = time.perf_counter()
    fit_latent(prior, pts, pts / 0.6, iters=10, n_points=4096)
    print(f"latent fit: {(time.perf_counter() - t0) / 10:.3f} s/iter (4096 points, with normals)")
    t0 = time.perf_counter()
    prior.mesh(None, resolution=96)
    print(f"mesh 96^3: {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    render_sdf(prior.sdf_fn(None), size=128)
    print(f"render 128x128: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
