"""Benchmark of the reconstruction's optimizer step: torch's fused Adam (what ``Trainer`` uses on the CPU and CUDA,
``headrecon.recon.trainer.make_adam``) against its default single-tensor Adam, side by side in one process.

Summary:           python benches/bench_adam.py [--iterations 100] [--rounds 2] [--runs instant:idr fast:sira]
                   [--threads 1] [--out adam.json]
pytest-benchmark:  pytest benches/bench_adam.py --benchmark-enable   (one step over hash-grid-sized tables)
CI smoke:          pytest benches/bench_adam.py --benchmark-disable

Reconstruction rows: ``PRESET:METHOD`` on the shipped demo scene (``headrecon-reconstruct --demo``'s three views),
``--iterations`` iterations from seed 0, once with each optimizer, alternating, ``--rounds`` times, after an
untimed two-iteration run of each (the first runs of a process pay one-time costs); process-CPU seconds and the
final loss of each (the two differ only by the optimizers' rounding).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import final_loss, ratio_summary, train_demo  # noqa: E402


@contextlib.contextmanager
def _default_adam():
    """``Trainer`` builds torch's default single-tensor Adam instead of ``make_adam``'s fused one."""
    import headrecon.recon.trainer as T

    shipped = T.make_adam
    T.make_adam = lambda groups, device: torch.optim.Adam(groups)
    try:
        yield
    finally:
        T.make_adam = shipped


def train_once(preset: str, method: str, iterations: int, fused: bool, seed: int = 0) -> dict:
    tr, cpu, wall = train_demo(preset, method, iterations, seed, context=None if fused else _default_adam())
    return {"run": f"{preset}:{method}", "adam": "fused" if fused else "default", "cpu_seconds": round(cpu, 2),
            "seconds": round(wall, 2), "final_loss": final_loss(tr)}


# ---------------------------------------------------------------------------------------------- pytest-benchmark
def test_fused_adam_step(benchmark):
    """Seconds of one fused Adam step over two hash-grid-sized tables with sparse gradients; the default Adam's
    beside it in ``extra_info``; both move the weights alike."""
    from headrecon.recon.trainer import make_adam

    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(8, 1 << 14, 2, generator=g) * 1e-4) for _ in range(2)]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for ps in (params, twins):
        for p in ps:
            p.grad = torch.zeros_like(p)
            p.grad.view(-1)[::97] = 1.0
    fused, default = make_adam([{"params": params, "lr": 1e-2}], "cpu"), torch.optim.Adam(twins, lr=1e-2)
    t0 = time.perf_counter()
    default.step()
    benchmark.extra_info["default_seconds"] = time.perf_counter() - t0
    benchmark.pedantic(fused.step, rounds=1, iterations=1)
    assert all(float((a - b).detach().abs().max()) < 1e-6 for a, b in zip(params, twins))


# ---------------------------------------------------------------------------------------------- summary
def main(argv=None) -> int:
    from headrecon.machine import write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=100, help="iterations of each reconstruction (default 100)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of default / fused (default 2)")
    ap.add_argument("--runs", nargs="+", default=["instant:idr", "fast:sira"], help="PRESET:METHOD (default: "
                    "instant:idr fast:sira)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the presets)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    for spec in args.runs:  # untimed: the first runs of a process pay one-time costs
        for fused in (False, True):
            train_once(*spec.split(":"), 2, fused)
    runs = []
    for rnd in range(args.rounds):
        for spec in args.runs:
            preset, method = spec.split(":")
            for fused in (False, True):
                r = {"round": rnd, **train_once(preset, method, args.iterations, fused)}
                print(json.dumps(r))
                runs.append(r)
    summary = ratio_summary(runs, "run", "adam", "default", "fused")
    print(json.dumps(summary))
    if args.out:
        write_result(args.out, runs=runs, summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
