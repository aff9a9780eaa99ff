"""Benchmark of what an op call costs above its kernel, and of training under two checkouts of the package.

Per call:   python benches/bench_call_overhead.py [--repeats 3000] [--out calls.json]
            microseconds per call (median of 5 interleaved rounds, one thread) of the compiled kernel alone and of
            the public op (``headrecon.ops.hash_encode``; the networks' ``Softplus`` module), and of the hash-grid
            SDF the tracer calls (``HashGridSDF.sdf``, the ``instant`` preset's table: 8 levels of 2^15 rows, all
            active) at 16, 150 and 1,000 points (sphere tracing's late steps send a few hundred points per call).
Two trees:  python benches/bench_call_overhead.py --compare OLD_TREE NEW_TREE [--runs instant:idr fast:sira ...]
                [--iterations 300] [--rounds 3] [--out train.json]
            trains each ``PRESET:METHOD[:field=value,...]`` on the shipped demo scene from seed 0 in a fresh
            process per run, importing ``headrecon`` from each tree in turn (OLD, NEW, OLD, NEW, ...), one thread,
            after one untimed two-iteration run of each; process-CPU seconds of the training and a checksum of
            the trained parameters (the sum of every float tensor: equal checksums = the same training).
Breakdown:  python benches/bench_call_overhead.py --breakdown instant:idr [fast:sira:cache_p_force=0.05 ...]
                [--warmup 300] [--iterations 30]
            one training per ``PRESET:METHOD[:field=value,...]`` on the demo scene (one thread): after ``--warmup``
            iterations, per iteration of the next ``--iterations``: wall and CPU milliseconds, the tracer's share
            of the wall time, its network calls, points evaluated, network seconds (``RayTracer.totals``) and what
            a call costs on average, and the points looked up per phase (sphere tracing, the search's coarse, fine
            and secant samples, the minimum-SDF points of misses; with an SDF cache these include the points it
            answered, and ``cache_hits`` counts those).
CI smoke:   pytest benches/bench_call_overhead.py --benchmark-disable
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import demo_trainer, ratio_summary, train_demo  # noqa: E402


def _field():
    from headrecon.models.hashgrid import HashGridSDF, sphere_sdf

    f = HashGridSDF(sphere_sdf(0.6), levels=8, log2_size=15, finest_res=512, start_levels=8)
    f.set_training_progress(1.0)
    return f


def call_rows(repeats: int = 3000, rounds: int = 5) -> list:
    """Microseconds per call of each case (module docstring), the cases interleaved round by round."""
    from headrecon import _backend, ops
    from headrecon.ops.activation import Softplus

    ext = _backend.get_ext()
    field, act = _field(), Softplus(beta=100)
    g = torch.Generator().manual_seed(0)
    x16 = torch.rand(16, 3, generator=g) - 0.5
    h16 = torch.randn(16, 64, generator=g)
    cases = {
        "hash_encode kernel (16 points)": lambda: ext.hash_encode_fwd(x16, field.table, field.res_t, None, 1.0),
        "hash_encode op (16 points)": lambda: ops.hash_encode(x16, field.table, field.res_t, 1.0),
        "softplus kernel [16, 64]": lambda: ext.softplus_forward(h16, 100.0, 20.0),
        "Softplus module [16, 64]": lambda: act(h16),
    }
    for n in (16, 150, 1000):
        x = torch.rand(n, 3, generator=g) - 0.5
        cases[f"HashGridSDF.sdf ({n} points)"] = (lambda x=x: field.sdf(x))
    times = {k: [] for k in cases}
    with torch.no_grad():
        for f in cases.values():
            for _ in range(50):
                f()
        for _ in range(rounds):
            for k, f in cases.items():
                t0 = time.perf_counter()
                for _ in range(repeats):
                    f()
                times[k].append((time.perf_counter() - t0) / repeats * 1e6)
    return [{"case": k, "us_per_call": round(statistics.median(v), 2)} for k, v in times.items()]


def parse_run(run: str):
    """``"PRESET:METHOD[:field=value,...]"`` -> ``(preset, method, overrides)`` (config fields as
    ``bench_methods.py``'s variants take them)."""
    from bench_methods import parse_variant

    preset, _, rest = run.partition(":")
    _, method, overrides = parse_variant(rest)
    return preset, method, overrides


def train_once(run: str, iterations: int, seed: int = 0) -> dict:
    """One training of ``run`` (:func:`parse_run`) on the demo scene with the ``headrecon`` this process imports
    (the child of ``--compare``)."""
    import headrecon

    torch.set_num_threads(1)
    preset, method, overrides = parse_run(run)
    tr, cpu, _ = train_demo(preset, method, iterations, seed, **overrides)
    checksum = sum(float(v.double().sum()) for v in tr.model.state_dict().values() if v.is_floating_point())
    return {"run": run, "package": str(Path(headrecon.__file__).resolve().parent),
            "cpu_seconds": round(cpu, 2), "checksum": repr(checksum)}


PHASES = ("evals_sphere", "evals_coarse", "evals_fine", "evals_secant", "evals_min")  # the tracer's counters


def breakdown(run: str, warmup: int, iterations: int, seed: int = 0) -> dict:
    """Where a training iteration's time goes (module docstring), from the tracer's running totals, for ``run`` =
    ``PRESET:METHOD[:field=value,...]`` (config fields as ``bench_methods.py``'s variants take them)."""
    preset, method, overrides = parse_run(run)
    tr = demo_trainer(preset, method, seed=seed, **overrides)
    tr.train(stop_after=warmup)
    before = dict(tr.tracer.totals)
    cache = tr.tracer.cache
    hits0 = cache.hits if cache is not None else 0
    t0, c0 = time.perf_counter(), time.process_time()
    tr.train(stop_after=warmup + iterations)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    d = {k: (v - before.get(k, 0)) / iterations for k, v in tr.tracer.totals.items()}
    calls = max(d.get("network_calls", 0), 1e-9)
    return {"run": run, "from_iteration": warmup, "iterations": iterations,
            "ms_per_iteration": round(wall / iterations * 1e3, 2),
            "cpu_ms_per_iteration": round(cpu / iterations * 1e3, 2),
            "trace_share": round(d.get("total_s", 0) * iterations / wall, 3),
            "trace_ms": round(d.get("total_s", 0) * 1e3, 2), "network_ms": round(d.get("network_s", 0) * 1e3, 2),
            "network_calls": round(d.get("network_calls", 0), 1), "points": round(d.get("num_sdf_evals", 0), 1),
            "us_per_call": round(d.get("network_s", 0) / calls * 1e6, 1),
            "points_per_call": round(d.get("num_sdf_evals", 0) / calls, 1),
            "lookups_by_phase": {k[6:]: round(d.get(k, 0), 1) for k in PHASES},
            "cache_hits": round((cache.hits - hits0) / iterations, 1) if cache is not None else None}


def _tree_commit(tree: str) -> str:
    try:
        return subprocess.run(["git", "-C", tree, "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _child(tree: str, run: str, iterations: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    out = subprocess.run([sys.executable, __file__, "--child", run, "--iterations", str(iterations)], env=env,
                         capture_output=True, text=True, cwd="/", check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    if not row["package"].startswith(str(Path(tree).resolve())):
        raise RuntimeError(f"{tree}: the child imported headrecon from {row['package']}")
    return row


def compare(old: str, new: str, runs: list, iterations: int, rounds: int) -> dict:
    trees = {"old": old, "new": new}
    rows = []
    for run in runs:
        for tree in trees.values():
            _child(tree, run, 2)  # untimed: the first runs pay one-time costs
        for rnd in range(rounds):
            for name, tree in trees.items():
                r = _child(tree, run, iterations)
                rows.append({"round": rnd, "tree": name, "commit": _tree_commit(tree), "run": r["run"],
                             "cpu_seconds": r["cpu_seconds"], "checksum": r["checksum"]})
                print(json.dumps(rows[-1]), flush=True)
    same = {run: len({r["checksum"] for r in rows if r["run"] == run}) == 1 for run in dict.fromkeys(runs)}
    return {"rows": rows, "totals": ratio_summary(rows, "run", "tree", "old", "new"), "same_training": same}


# ---------------------------------------------------------------------------------------------- pytest-benchmark
def test_hash_grid_sdf_call(benchmark):
    field = _field()
    x = torch.rand(150, 3) - 0.5
    with torch.no_grad():
        out = benchmark(field.sdf, x)
    assert out.shape == (150,) and torch.isfinite(out).all()


def main(argv=None) -> int:
    from headrecon.machine import write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3000, help="calls per case and round")
    ap.add_argument("--compare", nargs=2, metavar=("OLD_TREE", "NEW_TREE"),
                    help="train under two checkouts (each a folder holding the headrecon package, built)")
    ap.add_argument("--runs", nargs="+", default=["instant:idr", "fast:sira"],
                    metavar="PRESET:METHOD[:field=value,...]",
                    help="--compare: the trainings (config fields as --breakdown takes them; both trees must "
                         "know them)")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--breakdown", nargs="+", metavar="PRESET:METHOD[:field=value,...]",
                    help="where an iteration's time goes")
    ap.add_argument("--warmup", type=int, default=300, help="--breakdown: iterations trained before timing")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(train_once(args.child, args.iterations)))
        return 0
    torch.set_num_threads(1)
    import headrecon

    commit = _tree_commit(str(Path(headrecon.__file__).resolve().parent.parent))  # the tree this process imports
    if args.breakdown:
        result = {"commit": commit,
                  "rows": [breakdown(r, args.warmup, args.iterations) for r in args.breakdown]}
        for r in result["rows"]:
            print(json.dumps(r))
    elif args.compare:
        result = compare(*args.compare, args.runs, args.iterations, args.rounds)
        print(json.dumps({"totals": result["totals"], "same_training": result["same_training"]}, indent=1))
    else:
        result = {"commit": commit, "rows": call_rows(args.repeats)}
        for r in result["rows"]:
            print(f"{r['case']:34s} {r['us_per_call']:9.2f} us")
    if args.out:
        write_result(args.out, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
