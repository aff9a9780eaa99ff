"""Benchmark of the ray tracer: the engine's strategies (C++ kernels, with/without the SDF cache) against the
dense pure-PyTorch reference tracer, on the same rays and the same 8x512 SDF network.

pytest-benchmark:   pytest benches/bench_tracer.py --benchmark-enable            (HEADRECON_BENCH_FULL=1 for the
                    paper-size network and 2048 rays; default sizes are a quick smoke run)
Summary table:      HEADRECON_BENCH_FULL=1 python benches/bench_tracer.py        (all configurations interleaved
                    in one run; prints the markdown table used in the README)
"""
from __future__ import annotations

import statistics
import sys

import pytest
import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from tracer_cases import CONFIGS, FULL, N_RAYS, Case, make_network  # noqa: E402

NET = None


def _net():
    global NET
    if NET is None:
        NET = make_network()
    return NET


@pytest.mark.parametrize("name", list(CONFIGS))
def test_trace(benchmark, name):
    case = Case(name, _net())
    seeds = iter(range(10 ** 6))
    out = benchmark.pedantic(lambda: case.run(next(seeds)), rounds=3 if FULL else 2, iterations=1)
    benchmark.extra_info.update(rays=N_RAYS, evals_per_ray=out["evals"] / N_RAYS,
                                network_share=out["network_s"] / out["seconds"])
    assert out["t"].shape == (N_RAYS,)


def summary(rounds=3):
    """Interleave all configurations round by round (same rays per round) and print a markdown table."""
    net = _net()
    cases = {name: Case(name, net) for name in CONFIGS}
    rows = {name: [] for name in CONFIGS}
    for r in range(rounds):
        seed = 10 + r
        ref = None
        for name, case in cases.items():
            out = case.run(seed)
            if ref is None:
                ref = out
            out["agree"] = float((out["hit"] == ref["hit"]).float().mean())
            both = out["hit"] & ref["hit"]
            out["dt"] = float((out["t"] - ref["t"])[both].abs().max()) if both.any() else 0.0
            rows[name].append(out)
    base = statistics.median(o["seconds"] for o in rows["reference (dense PyTorch)"])
    print(f"rays per batch: {N_RAYS}; network: {'8x512 (paper)' if FULL else 'small (smoke)'}; "
          f"torch threads: {torch.get_num_threads()}; median of {rounds} interleaved rounds\n")
    print("| configuration | s / batch | rays/s | speed-up vs reference | SDF evals / ray | time outside network "
          "| hits equal to reference | max abs dt |")
    print("|---|---|---|---|---|---|---|---|")
    for name, outs in rows.items():
        s = statistics.median(o["seconds"] for o in outs)
        ev = statistics.median(o["evals"] for o in outs) / N_RAYS
        share = statistics.median(1 - o["network_s"] / o["seconds"] for o in outs)
        share_s = "n/a" if share != share else f"{100 * share:.1f}%"
        agree = min(o["agree"] for o in outs)
        dt = max(o["dt"] for o in outs)
        print(f"| {name} | {s:.3f} | {N_RAYS / s:,.0f} | {base / s:.2f}x | {ev:.1f} | {share_s} | "
              f"{100 * agree:.2f}% | {dt:.1e} |")


if __name__ == "__main__":
    summary(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3)
