"""Benchmark of the softplus activation: the engine's kernel (headrecon.ops.softplus, what the networks run on
the CPU) against torch's ``softplus``, as an op and inside a reconstruction, side by side in one process.

Summary:           python benches/bench_softplus.py [--iterations 40] [--rounds 2] [--methods sira idr]
                   [--threads 1] [--out softplus.json]
pytest-benchmark:  pytest benches/bench_softplus.py --benchmark-enable   (the op on [4096, 128])
CI smoke:          pytest benches/bench_softplus.py --benchmark-disable

Op rows: wall seconds per call (best of the repeats) on float32 [N, W] activations of the sizes the networks see.
Reconstruction rows: the ``fast`` preset on the shipped demo scene (``headrecon-reconstruct --demo``'s three views),
``--iterations`` iterations from the same seed, once with every network's activation replaced by
``torch.nn.Softplus`` (torch's kernel) and once as shipped, alternating, ``--rounds`` times, after an untimed
two-iteration run of each (the first runs of a process pay one-time costs); process-CPU seconds and the final loss
of each (the two differ only by the activations' rounding).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import final_loss, ratio_summary, train_demo  # noqa: E402

OP_SIZES = ((4096, 128), (16384, 128), (16384, 256))


def with_torch_softplus(model: torch.nn.Module) -> int:
    """Replace every ``nn.Softplus`` in ``model`` (the engine's subclass included) by torch's own; returns how
    many were replaced."""
    n = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Softplus):
                setattr(module, name, torch.nn.Softplus(beta=child.beta, threshold=child.threshold))
                n += 1
    return n


def op_rows(repeats: int = 20) -> list:
    from headrecon import ops

    rows = []
    g = torch.Generator().manual_seed(0)
    for n, w in OP_SIZES:
        x = torch.randn(n, w, generator=g) * 0.05
        row = {"shape": [n, w]}
        for name, fn in (("torch", lambda: F.softplus(x, 100.0)), ("engine", lambda: ops.softplus(x, 100.0))):
            fn()
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            row[f"{name}_ms"] = round(best * 1e3, 3)
        row["engine_over_torch"] = round(row["engine_ms"] / row["torch_ms"], 3)
        rows.append(row)
    return rows


def train_once(method: str, iterations: int, torch_activation: bool, seed: int = 0) -> dict:
    replaced = []

    def prepare(trainer):
        replaced.append(with_torch_softplus(trainer.model) if torch_activation else 0)

    tr, cpu, wall = train_demo("fast", method, iterations, seed, prepare=prepare)
    return {"method": method, "activation": "torch" if torch_activation else "engine", "replaced": replaced[0],
            "cpu_seconds": round(cpu, 2), "seconds": round(wall, 2), "final_loss": final_loss(tr)}


# ---------------------------------------------------------------------------------------------- pytest-benchmark
def test_softplus_op(benchmark):
    """Seconds of the engine's softplus on [4096, 128]; torch's beside it in ``extra_info``."""
    from headrecon import ops

    x = torch.randn(4096, 128) * 0.05
    benchmark(lambda: ops.softplus(x, 100.0))
    benchmark.extra_info["rows"] = op_rows(repeats=3)
    torch.testing.assert_close(ops.softplus(x, 100.0), F.softplus(x, 100.0), rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------------------------- summary
def main(argv=None) -> int:
    from headrecon.machine import write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=40, help="iterations of each reconstruction (default 40)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of torch / engine (default 2)")
    ap.add_argument("--methods", nargs="+", default=["sira", "idr"], help="methods (default: sira idr)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the fast preset)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    ops_ = op_rows()
    for r in ops_:
        print(json.dumps(r))
    for method in args.methods:  # untimed: the first runs of a process pay one-time costs
        for torch_activation in (True, False):
            train_once(method, 2, torch_activation)
    runs = []
    for rnd in range(args.rounds):
        for method in args.methods:
            for torch_activation in (True, False):
                r = {"round": rnd, **train_once(method, args.iterations, torch_activation)}
                print(json.dumps(r))
                runs.append(r)
    summary = ratio_summary(runs, "method", "activation", "torch", "engine")
    print(json.dumps(summary))
    if args.out:
        write_result(args.out, ops=ops_, runs=runs, summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
