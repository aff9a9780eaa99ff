"""The engine's sphere tracer against IDR's own tracing algorithm, side by side in one process.

Same rays (4096 random pixels of the three V3 cameras, benches/tracer_cases.py), same 8x512 geometric-init SDF
network (GeometryNetwork.paper()), the same object mask (rays that meet the network's initial sphere, radius 0.6),
rounds interleaved. IDR: benches/idr_tracer.py (its training-mode algorithm: 10 two-sided sphere-tracing steps,
100-sample search and 8 secant steps for the rest, 100-sample minimal-SDF points for the silhouette loss). The
engine: ``RayTracer(strategy="sphere")`` as reconstruction uses it on the CPU (minimal-SDF points from the walk),
with back walkers from the start (IDR's walkers, the engine's behaviour before ``back_after``), from step 15 for
the rays still marching (its CPU default), never; and its default with other thread rules for small network calls
(``single_thread_below``; the default runs calls under 1024 points on one torch thread).

    python benches/bench_tracer_idr.py [--rounds 3] [--rays 4096] [--threads N] [--configs SUBSTR ...]
        [--single-thread-below 0 4096 ...] [--json out.json]

Prints per configuration: seconds per batch (median), ratio to IDR, network evaluations per ray, network calls
per batch, microseconds per evaluated point, and agreement of the hit masks with IDR's. The per-point cost by
call size shows where small calls cost more.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from idr_tracer import IDRTracer  # noqa: E402
from tracer_cases import camera_rays  # noqa: E402

from headrecon.models import GeometryNetwork  # noqa: E402
from headrecon.render import RayTracer  # noqa: E402


class Timed:
    """Wraps an SDF function and records (points, seconds) of every call."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, p):
        t0 = time.perf_counter()
        v = self.fn(p)
        self.calls.append((p.shape[0], time.perf_counter() - t0))
        return v


def sphere_mask(o, d, radius=0.6):
    od = (o * d).sum(-1)
    return od ** 2 - ((o * o).sum(-1) - radius ** 2) > 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rays", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--configs", nargs="*", default=None, help="engine configurations to run (default: all)")
    ap.add_argument("--single-thread-below", type=int, nargs="*", default=[0, 4096],
                    help="also run the CPU default with one torch thread for network calls under each of these "
                         "sizes (0: torch's thread count for every call)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = GeometryNetwork.paper().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    engines = {
        "engine, back walkers from the start (IDR's; before)": dict(strategy="sphere", backend="cpp", back_after=0),
        "engine, CPU default (back walkers after 15 steps, 1 thread below 1024 points)":
            dict(strategy="sphere", backend="cpp"),
        "engine, no back walkers (back_after=30)": dict(strategy="sphere", backend="cpp", back_after=30),
    }
    for n in a.single_thread_below:
        label = "torch's threads for every call" if n == 0 else f"1 thread below {n} points"
        engines[f"engine, back walkers after 15 steps, {label}"] = dict(strategy="sphere", backend="cpp",
                                                                         single_thread_below=n)
    if a.configs:
        engines = {k: v for k, v in engines.items() if any(c in k for c in a.configs)}
    tracers = {name: RayTracer(**kw) for name, kw in engines.items()}
    idr = IDRTracer()
    rows = {"IDR": []}
    rows.update({k: [] for k in tracers})
    with torch.inference_mode():
        net.sdf(torch.zeros(64, 3))  # warm-up
        for r in range(a.rounds):
            o, d = camera_rays(a.rays, 100 + r)
            mask = sphere_mask(o, d)
            fn = Timed(net.sdf)
            t0 = time.perf_counter()
            hit_ref, t_ref, ev = idr(fn, o, d, mask)
            rows["IDR"].append(dict(seconds=time.perf_counter() - t0, evals=ev, calls=fn.calls, agree=1.0))
            for name, tr in tracers.items():
                fn = Timed(net.sdf)
                t0 = time.perf_counter()
                res = tr(fn, o, d)
                sec = time.perf_counter() - t0
                agree = float((res.hit == hit_ref).float().mean())
                rows[name].append(dict(seconds=sec, evals=res.num_sdf_evals, calls=fn.calls, agree=agree))
    base = statistics.median(x["seconds"] for x in rows["IDR"])
    out = dict(rays=a.rays, rounds=a.rounds, threads=torch.get_num_threads(), configs={})
    print(f"rays per batch {a.rays}; 8x512 geometric-init network; torch threads {torch.get_num_threads()}; "
          f"median of {a.rounds} interleaved rounds\n")
    print("| tracer | s / batch | time vs IDR | evaluations / ray | network calls | µs / evaluated point "
          "| hits equal to IDR's |")
    print("|---|---|---|---|---|---|---|")
    for name, xs in rows.items():
        s = statistics.median(x["seconds"] for x in xs)
        ev = statistics.median(x["evals"] for x in xs) / a.rays
        calls = statistics.median(len(x["calls"]) for x in xs)
        net_s = sum(c[1] for x in xs for c in x["calls"])
        pts = sum(c[0] for x in xs for c in x["calls"])
        us = 1e6 * net_s / max(pts, 1)
        agree = min(x["agree"] for x in xs)
        buckets = {}
        for x in xs:
            for n, sec in x["calls"]:
                b = "<256" if n < 256 else "256-2047" if n < 2048 else ">=2048"
                e = buckets.setdefault(b, [0, 0.0, 0])
                e[0] += n
                e[1] += sec
                e[2] += 1
        out["configs"][name] = dict(seconds=s, ratio=s / base, evals_per_ray=ev, calls=calls, us_per_point=us,
                                    hit_agreement=agree,
                                    by_call_size={b: dict(points=e[0], calls=e[2], us_per_point=1e6 * e[1] / e[0])
                                                  for b, e in buckets.items()})
        print(f"| {name} | {s:.3f} | {s / base:.2f}x | {ev:.1f} | {calls:.0f} | {us:.1f} | {100 * agree:.2f}% |")
    print("\nper-point cost by call size (µs/point, share of points):")
    for name, c in out["configs"].items():
        tot = sum(v["points"] for v in c["by_call_size"].values())
        print(f"  {name}: " + ", ".join(f"{b}: {v['us_per_point']:.1f} ({100 * v['points'] / tot:.0f}%)"
                                        for b, v in sorted(c["by_call_size"].items())))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
