"""Shared by the benchmarks that time two variants of one run alternately (benches/bench_adam.py,
benches/bench_softplus.py): the per-run totals of process-CPU seconds and their ratio."""
from __future__ import annotations


def ratio_summary(runs: list, group: str, variant: str, before: str, after: str) -> dict:
    """``{run[group]: {"<before>_cpu_seconds", "<after>_cpu_seconds", "<after>_over_<before>"}}`` over ``runs``
    (rows with ``cpu_seconds``), the two variants told apart by ``run[variant]``."""
    out = {}
    for g in dict.fromkeys(r[group] for r in runs):
        cpu = {v: sum(r["cpu_seconds"] for r in runs if r[group] == g and r[variant] == v) for v in (before, after)}
        out[g] = {f"{before}_cpu_seconds": round(cpu[before], 2), f"{after}_cpu_seconds": round(cpu[after], 2),
                  f"{after}_over_{before}": round(cpu[after] / max(cpu[before], 1e-9), 3)}
    return out
