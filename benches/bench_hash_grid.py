"""Benchmark of the multiresolution hash encoding op: the C++ kernels against the pure-PyTorch reference, and
against the MLPs it is meant to replace (8x512, the paper's SDF network; 4x128, the fast preset's), on the same
points: points/s for the forward pass and for forward + backward (to the table and the points).

pytest-benchmark:   pytest benches/bench_hash_grid.py --benchmark-enable   (HEADRECON_BENCH_FULL=1: 2^16 points,
                    16 levels x 2^19 entries x 2 features; default: a quick smoke size)
Summary table:      python benches/bench_hash_grid.py [--points N] [--rounds R] [--device cuda] [--json OUT]
                    [--levels L --log2-size T --feats F] (default: Instant-NGP's 16 x 2^19 x 2)
                    (every configuration interleaved round by round in one process: ratios are side by side)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import pytest
import torch
from torch import nn

from headrecon import ops

FULL = os.environ.get("HEADRECON_BENCH_FULL") == "1"
N_POINTS = 1 << 16 if FULL else 2048
LEVELS, LOG2_SIZE, FEATS = (16, 19, 2) if FULL else (8, 14, 2)


def _mlp(depth: int, width: int, n_in: int = 39) -> nn.Module:
    layers, d = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.Softplus(beta=100)]
        d = width
    layers.append(nn.Linear(d, 1))
    return nn.Sequential(*layers)


def make_cases(n_points: int, device: str = "cpu", levels: int = LEVELS, log2_size: int = LOG2_SIZE,
               feats: int = FEATS) -> dict:
    """name -> (forward(points), parameters): the encodings and the MLPs on the same [N,3] points."""
    g = torch.Generator().manual_seed(0)
    table = (1e-2 * torch.randn(levels, 1 << log2_size, feats, generator=g)).to(device).requires_grad_()
    res = ops.hash_resolutions(levels, 16, 2048)
    cases = {
        "hash grid, C++ op": (lambda x: ops.hash_encode(x, table, res, 1.0, backend="cpp"), [table]),
        "hash grid, PyTorch reference": (lambda x: ops.hash_encode(x, table, res, 1.0, backend="torch"), [table]),
    }
    for depth, width in ((8, 512), (4, 128)):
        net = _mlp(depth, width).to(device)
        from headrecon.models.encoding import PositionalEncoding

        pe = PositionalEncoding(6)
        cases[f"MLP {depth}x{width} (+ positional encoding)"] = (lambda x, net=net, pe=pe: net(pe(x)),
                                                               list(net.parameters()))
    return cases


def run_case(fn, params, points, backward: bool, device: str) -> float:
    x = points.clone().requires_grad_(backward)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    y = fn(x)
    if backward:
        y.sum().backward()
        for p in params:
            p.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _points(n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (1.8 * torch.rand(n, 3, generator=g) - 0.9).to(device)


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
@pytest.mark.parametrize("name", ["hash grid, C++ op", "hash grid, PyTorch reference",
                                  "MLP 4x128 (+ positional encoding)"])
def test_hash_grid(benchmark, name, backward):
    cases = make_cases(N_POINTS)
    fn, params = cases[name]
    pts = _points(N_POINTS, "cpu")
    benchmark.pedantic(lambda: run_case(fn, params, pts, backward, "cpu"), rounds=3 if FULL else 1, iterations=1)
    benchmark.extra_info.update(points=N_POINTS, levels=LEVELS, log2_size=LOG2_SIZE, feats=FEATS)


def summary(n_points: int, rounds: int, device: str, json_out: str | None = None):
    cases = make_cases(n_points, device)
    times = {(name, bw): [] for name in cases for bw in (False, True)}
    for r in range(rounds + 1):  # round 0 warms up
        pts = _points(n_points, device, seed=r)
        for (name, bw), acc in times.items():
            fn, params = cases[name]
            t = run_case(fn, params, pts, bw, device)
            if r:
                acc.append(t)
    rows = []
    ref = {bw: statistics.median(times[("MLP 8x512 (+ positional encoding)", bw)]) for bw in (False, True)}
    for (name, bw), acc in times.items():
        s = statistics.median(acc)
        rows.append(dict(case=name, backward=bw, seconds=s, points_per_s=n_points / s, vs_mlp_8x512=ref[bw] / s))
    print(f"points: {n_points}; hash grid: {LEVELS} levels x 2^{LOG2_SIZE} x {FEATS} (float32); device: {device}; "
          f"torch threads: {torch.get_num_threads()}; median of {rounds} interleaved rounds\n")
    print("| case | pass | s | points/s | speed vs MLP 8x512 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {'fwd+bwd' if r['backward'] else 'fwd'} | {r['seconds']:.4f} | "
              f"{r['points_per_s']:,.0f} | {r['vs_mlp_8x512']:.1f}x |")
    if json_out:
        meta = dict(machine=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                    device=device, points=n_points, rounds=rounds, levels=LEVELS, log2_size=LOG2_SIZE,
                    feats=FEATS, torch=torch.__version__)
        with open(json_out, "w") as fh:
            json.dump(dict(meta=meta, rows=rows), fh, indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1 << 16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--levels", type=int, default=16, help="table levels (Instant-NGP: 16; instant preset: 12)")
    ap.add_argument("--log2-size", type=int, default=19, help="log2 rows per level (Instant-NGP: 19; instant: 17)")
    ap.add_argument("--feats", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    LEVELS, LOG2_SIZE, FEATS = a.levels, a.log2_size, a.feats
    summary(a.points, a.rounds, a.device, a.json)
