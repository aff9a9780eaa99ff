"""Shared set-up of the tracer benchmark (benches/bench_tracer.py): rays, network and the configurations compared.

Everything is measured on the same rays and the same SDF network: an 8x512 Softplus MLP with 6-frequency
positional encoding and geometric initialisation (headrecon.models.GeometryNetwork.paper(), as in IDR/H3D-Net).
``HEADRECON_BENCH_FULL=1`` selects that network and 2048 rays (one IDR batch); otherwise a small network and
few rays keep the run a CI smoke test.
"""
from __future__ import annotations

import math
import os
import time

import torch

from headrecon.models import GeometryNetwork
from headrecon.render import RayTracer, SDFCache, reference_trace

FULL = os.environ.get("HEADRECON_BENCH_FULL", "0") == "1"
# Torch threads. On a shared, oversubscribed machine a 2-thread GEMM on a few hundred points stalls waiting for
# its second thread (measured here at load 10: 803 vs 79 us/point at 256 points with 2 vs 1 threads), which
# penalises the many small network calls of sphere tracing; 1 thread gives a flat per-point cost.
if os.environ.get("HEADRECON_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["HEADRECON_BENCH_THREADS"]))
N_RAYS = int(os.environ.get("HEADRECON_BENCH_RAYS", 2048 if FULL else 256))
WARMUP_BATCHES = 5 if FULL else 2  # batches traced before timing: the dynamic cache reaches its steady state


def make_network():
    torch.manual_seed(0)
    net = GeometryNetwork.paper() if FULL else GeometryNetwork(d_hidden=64, n_layers=4, skip_in=(2,), d_feature=16)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


VIEW_YAWS = (0.0, 45.0, -45.0)  # the V3 views of H3D-Net/SIRA++


def camera_rays(n, seed):
    """A training batch: n random pixels of three 30-degree pinhole cameras at distance 2.5 (yaw 0 and +-45 deg,
    the few-shot V3 set) looking at the origin; the network's initial sphere (radius 0.6) covers about half of
    each image, like a head in a portrait."""
    g = torch.Generator().manual_seed(seed)
    yaw = torch.tensor(VIEW_YAWS)[torch.randint(0, len(VIEW_YAWS), (n,), generator=g)] * math.pi / 180
    c = torch.stack([torch.sin(yaw), torch.full_like(yaw, 0.1), torch.cos(yaw)], -1) * 2.5
    fwd = torch.nn.functional.normalize(-c, dim=-1)
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, torch.tensor([[0.0, 1, 0]]).expand(n, 3)), dim=-1)
    up = torch.linalg.cross(right, fwd)
    uv = (torch.rand(n, 2, generator=g) * 2 - 1) * math.tan(math.radians(15))
    d = fwd + uv[:, :1] * right + uv[:, 1:] * up
    return c.contiguous(), torch.nn.functional.normalize(d, dim=-1).contiguous()


CONFIGS = {
    # name: (kind, kwargs)
    "reference (dense PyTorch)": ("reference", {}),
    "engine, torch ops, sphere": ("engine", dict(backend="torch", strategy="sphere")),
    "engine, C++, sphere": ("engine", dict(backend="cpp", strategy="sphere")),
    "engine, C++, sphere + cache": ("engine", dict(backend="cpp", strategy="sphere", cache=True)),
    "engine, C++, search (SIRA++: all 75 at once)": ("engine", dict(backend="cpp", strategy="search",
                                                                     coarse_chunks=1)),
    "engine, C++, search (SIRA++) + cache": ("engine", dict(backend="cpp", strategy="search", coarse_chunks=1,
                                                             cache=True)),
    "engine, C++, search (4 chunks)": ("engine", dict(backend="cpp", strategy="search")),
    "engine, C++, search (4 chunks) + cache": ("engine", dict(backend="cpp", strategy="search", cache=True)),
}


class Case:
    """A traced configuration: call run(seed) to trace one batch; returns a summary dict."""

    def __init__(self, name, net):
        self.name = name
        kind, kw = CONFIGS[name]
        self.kind = kind
        self.net = net
        self.fn = net.sdf
        if kind == "engine":
            kw = dict(kw)
            cache = SDFCache(seed=0) if kw.pop("cache", False) else None
            self.tracer = RayTracer(cache=cache, **kw)
            for s in range(WARMUP_BATCHES):
                self.tracer(self.fn, *camera_rays(N_RAYS, 1000 + s))

    def run(self, seed):
        o, d = camera_rays(N_RAYS, seed)
        t0 = time.perf_counter()
        if self.kind == "reference":
            res = reference_trace(self.fn, o, d)
            out = dict(t=res["t"], hit=res["hit"], evals=res["num_sdf_evals"], network_s=float("nan"))
        else:
            res = self.tracer(self.fn, o, d)
            out = dict(t=res.t, hit=res.hit, evals=res.num_sdf_evals, network_s=res.stats["network_s"])
        out["seconds"] = time.perf_counter() - t0
        return out
