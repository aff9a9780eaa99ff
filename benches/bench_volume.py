"""Benchmark of the volume-rendering compositing op (``headrecon.ops.composite``): the C++ kernels against the
vectorised pure-PyTorch reference on the same packed rays (forward, and forward + backward).

pytest-benchmark:   pytest benches/bench_volume.py --benchmark-enable
Summary table:      python benches/bench_volume.py [--rays 4096] [--samples 64] [--rounds 5] [--device cuda]
"""
from __future__ import annotations

import argparse
import statistics
import time

import pytest
import torch

from headrecon import ops


def make_rays(n_rays: int, mean_samples: int, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 2 * mean_samples + 1, (n_rays,), generator=g)
    starts = torch.cumsum(counts, 0) - counts
    S = int(counts.sum())
    packed = torch.stack([starts, counts], 1).to(device)
    sig = (5 * torch.rand(S, generator=g)).to(device)
    dl = (0.02 * torch.rand(S, generator=g)).to(device)
    val = torch.rand(S, 7, generator=g).to(device)  # colour, normal, depth
    return packed, sig, dl, val


def run(backend, packed, sig, dl, val, backward: bool, device="cpu") -> float:
    s = sig.clone().requires_grad_(backward)
    v = val.clone().requires_grad_(backward)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out, opacity, _ = ops.composite(packed, s, dl, v, backend=backend)
    if backward:
        (out.sum() + opacity.sum()).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_composite(benchmark, backend, backward):
    rays = make_rays(512, 32)
    benchmark.pedantic(lambda: run(backend, *rays, backward), rounds=1, iterations=1)


def summary(n_rays, samples, rounds, device):
    rays = make_rays(n_rays, samples, device)
    times = {(b, bw): [] for b in ("cpp", "torch") for bw in (False, True)}
    for r in range(rounds + 1):
        for (b, bw), acc in times.items():
            t = run(b, *rays, bw, device)
            if r:
                acc.append(t)
    S = rays[1].numel()
    print(f"rays: {n_rays}, samples: {S} ({S / n_rays:.1f} per ray), 7 channels; device {device}; "
          f"torch threads {torch.get_num_threads()}; median of {rounds} interleaved rounds\n")
    print("| backend | pass | s | rays/s | speed-up vs reference |")
    print("|---|---|---|---|---|")
    for bw in (False, True):
        ref = statistics.median(times[("torch", bw)])
        for b in ("cpp", "torch"):
            s = statistics.median(times[(b, bw)])
            print(f"| {b} | {'fwd+bwd' if bw else 'fwd'} | {s:.4f} | {n_rays / s:,.0f} | {ref / s:.1f}x |")


def bump_scene(n_rays, seed):
    """A network-sized SDF (a sphere of radius 0.5 plus a 4 x 128 MLP bump) and ``n_rays`` rays from (0, 0, 2.5)
    towards random points of the z = 0 square of side 1.6."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 128), torch.nn.Softplus(beta=100), torch.nn.Linear(128, 128),
                              torch.nn.Softplus(beta=100), torch.nn.Linear(128, 128), torch.nn.Softplus(beta=100),
                              torch.nn.Linear(128, 128), torch.nn.Softplus(beta=100), torch.nn.Linear(128, 1))
    with torch.no_grad():
        net[-1].weight.mul_(0.01)
    sdf = lambda x: x.norm(dim=-1) - 0.5 + net(x)[:, 0]  # noqa: E731
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, 2.5]).expand(n_rays, 3).contiguous()
    tgt = (torch.rand(n_rays, 3, generator=g) - 0.5) * 1.6
    tgt[:, 2] = 0
    d = torch.nn.functional.normalize(tgt - o, dim=-1).contiguous()
    return sdf, o, d


def skip_summary(n_rays=2048, n_samples=128, rounds=3, resolution=64):
    """render_volume on a sphere plus a 4 x 128 MLP bump (a network-sized SDF), with and without the occupancy
    grid: samples evaluated per ray and rays/s."""
    from headrecon.render.volume import fill_occupancy, render_volume

    sdf, o, d = bump_scene(n_rays, seed=1)
    grid = fill_occupancy(sdf, resolution, 1.0)
    rows = {}
    for r in range(rounds + 1):
        for name, gr in (("no skip", None), (f"occupancy grid {resolution}^3", grid)):
            t0 = time.perf_counter()
            with torch.no_grad():
                res = render_volume(sdf, None, o, d, n_samples=n_samples, beta=0.01, grid=gr)
            dt = time.perf_counter() - t0
            if r:
                rows.setdefault(name, []).append((dt, res.samples / n_rays, res.opacity))
    base = statistics.median(t for t, _, _ in rows["no skip"])
    ref_op = rows["no skip"][0][2]
    print(f"\n{n_rays} rays, {n_samples} uniform samples per ray in the unit sphere, beta 0.01, SDF = sphere + "
          f"4 x 128 MLP; median of {rounds} interleaved rounds\n")
    print("| sampling | samples evaluated / ray | s | rays/s | speed-up | max opacity change |")
    print("|---|---|---|---|---|---|")
    for name, vals in rows.items():
        s_ = statistics.median(t for t, _, _ in vals)
        print(f"| {name} | {vals[0][1]:.1f} | {s_:.3f} | {n_rays / s_:,.0f} | {base / s_:.2f}x | "
              f"{float((vals[0][2] - ref_op).abs().max()):.1e} |")


def hierarchical_summary(n_rays=1024, beta=0.002, rounds=3, resolution=64):
    """Hierarchical sampling with early termination (render_volume's n_fine) against uniform sampling: samples per
    ray, rays/s, and the depth / opacity error against a dense 4096-sample rendering, on the same SDF as above."""
    from headrecon.render.volume import fill_occupancy, render_volume

    sdf, o, d = bump_scene(n_rays, seed=2)
    grid = fill_occupancy(sdf, resolution, 1.0)
    configs = {"uniform 64": dict(n_samples=64), "uniform 128": dict(n_samples=128),
               f"uniform 64, grid {resolution}^3": dict(n_samples=64, grid=grid),
               "64 -> 32 fine, grid, no early stop": dict(n_samples=64, n_fine=32, grid=grid, stop_transmittance=0.0),
               "64 -> 32 fine, grid, early stop (1e-4)": dict(n_samples=64, n_fine=32, grid=grid)}
    with torch.no_grad():
        ref = render_volume(sdf, None, o, d, n_samples=4096, beta=beta)
    seen = ref.opacity > 0.5
    rows = {}
    for r in range(rounds + 1):
        for name, kw in configs.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                res = render_volume(sdf, None, o, d, beta=beta, **kw)
            dt = time.perf_counter() - t0
            if r:
                rows.setdefault(name, []).append((dt, res))
    print(f"\n{n_rays} rays, beta {beta}, SDF = sphere + 4 x 128 MLP; errors against 4096 uniform samples per ray "
          f"(depth over the {int(seen.sum())} rays of opacity > 0.5); median of {rounds} interleaved rounds\n")
    print("| sampling | samples evaluated / ray | s | rays/s | mean depth error | max opacity error |")
    print("|---|---|---|---|---|---|")
    for name, vals in rows.items():
        s_ = statistics.median(t for t, _ in vals)
        res = vals[0][1]
        print(f"| {name} | {res.samples / n_rays:.1f} | {s_:.3f} | {n_rays / s_:,.0f} | "
              f"{float((res.depth - ref.depth)[seen].abs().mean()):.1e} | "
              f"{float((res.opacity - ref.opacity).abs().max()):.1e} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rays", type=int, default=4096)
    ap.add_argument("--samples", type=int, default=64, help="mean samples per ray (uniform 0 .. 2x)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    summary(a.rays, a.samples, a.rounds, a.device)
    if a.device == "cpu":
        skip_summary()
        hierarchical_summary()
