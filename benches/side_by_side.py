"""Shared by the benchmarks that time variants of one training run (benches/bench_adam.py, benches/bench_softplus.py,
benches/bench_call_overhead.py): a trainer on the shipped demo scene, one timed training, and the per-run totals of
process-CPU seconds and their ratio."""
from __future__ import annotations

import contextlib
import time


def ratio_summary(runs: list, group: str, variant: str, before: str, after: str) -> dict:
    """``{run[group]: {"<before>_cpu_seconds", "<after>_cpu_seconds", "<after>_over_<before>"}}`` over ``runs``
    (rows with ``cpu_seconds``), the two variants told apart by ``run[variant]``."""
    out = {}
    for g in dict.fromkeys(r[group] for r in runs):
        cpu = {v: sum(r["cpu_seconds"] for r in runs if r[group] == g and r[variant] == v) for v in (before, after)}
        out[g] = {f"{before}_cpu_seconds": round(cpu[before], 2), f"{after}_cpu_seconds": round(cpu[after], 2),
                  f"{after}_over_{before}": round(cpu[after] / max(cpu[before], 1e-9), 3)}
    return out


def demo_trainer(preset: str, method: str, iterations=None, seed: int = 0, **overrides):
    """A CPU :class:`headrecon.recon.trainer.Trainer` of ``preset``/``method`` (config fields ``overrides``) on the
    shipped demo scene (``headrecon-reconstruct --demo``'s three views), seed ``seed``, without a progress bar."""
    from headrecon.recon.cli import demo_scene_dir
    from headrecon.recon.config import make_config
    from headrecon.recon.pipeline import load_views
    from headrecon.recon.trainer import Trainer

    cfg = make_config(preset, method=method, seed=seed, **({} if iterations is None else {"iterations": iterations}),
                      **overrides)
    _, scene = load_views(demo_scene_dir(), cfg.views)
    return Trainer(cfg, scene, device="cpu", progress=False)


def train_demo(preset: str, method: str, iterations: int, seed: int = 0, prepare=None, context=None, **overrides):
    """Build :func:`demo_trainer` (config fields ``overrides``; inside ``context``, e.g. a patch, which stays on
    through the training), call ``prepare(trainer)`` if given, train; returns ``(trainer, cpu_seconds,
    wall_seconds)`` of the training."""
    with context if context is not None else contextlib.nullcontext():
        tr = demo_trainer(preset, method, iterations, seed, **overrides)
        if prepare is not None:
            prepare(tr)
        c0, t0 = time.process_time(), time.perf_counter()
        tr.train()
        return tr, time.process_time() - c0, time.perf_counter() - t0


def final_loss(trainer):
    """The last logged loss of a trained :class:`Trainer` (None before any log), rounded to 6 decimals."""
    return round(float(trainer.history[-1]["loss"]), 6) if trainer.history else None
