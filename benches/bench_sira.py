"""SIRA++ acceleration ablation (SIRA++ Table 1 style): the time of the same run with each acceleration off, as
ratios measured in one process. (Accuracy and time against IDR and H3D-Net: ``benches/bench_methods.py``.)

Usage (CPU numbers in the README were produced with this command)::

    # full vs no cache / no selective sampling / neither / the anchor on all points / parallel fine samples,
    # plus sphere tracing + cache and H3D-Net, in one process
    python benches/bench_sira.py accel --scene S --views 3 --iterations 150 --out accel.json
    # pytest smoke (tiny synthetic scene, a few iterations): pytest benches/bench_sira.py

``accel`` builds one trainer per variant on the same scene and config and runs them round-robin in chunks of
``--chunk`` iterations (the order rotating every round, after an untimed warm-up run that takes the process's
one-time costs), so that load changes on a shared machine hit every variant alike; it reports seconds per
variant, ``time(variant) / time(full)`` and the median over rounds of the per-round ratio (robust to a load spike
in one round). ``ss_shrink`` removes the dropped background rays from the batch
(``--ss-shrink true``) instead of replacing them from the pool. Reference rows: ``sphere_tracing_cache``
(the cache under IDR's sphere tracing instead of the search), ``h3dnet`` (``--method h3dnet`` with the same
config) and ``h3dnet_ss_shrink`` (the same with the shrinking batch), so the SIRA++ / H3D-Net time ratio is
measured side by side too. Mixed precision only acts on CUDA and is not part of a CPU ablation.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_methods import machine  # noqa: E402


def _trainer(scene, views, overrides: dict, sira_prior=None, device="cpu", method="sira"):
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    extra = {"sira_prior": sira_prior} if sira_prior and method == "sira" else {}
    cfg = make_config("fast", method=method, views=str(views), device=device, **extra, **overrides)
    return Trainer(cfg, scene, device=device)


VARIANTS = {  # name: (method, use_cache, strategy, config overrides / "tracer.*" tracer attributes)
    "full": ("sira", True, "auto", {}),               # SIRA++ default: "auto" -> coarse/fine search + cache
    "no_cache": ("sira", False, "auto", {}),
    "no_selective_sampling": ("sira", True, "auto", {"ss_fraction": 0.0}),
    "none": ("sira", False, "auto", {"ss_fraction": 0.0}),
    # engine/regulariser costs: the anchor on all its points every iteration (sira_anchor_batch 0), and the N_f
    # fine samples evaluated all at once (tracer fine_chunks 1, as SIRA++ does) instead of front to back
    "anchor_all_points": ("sira", True, "auto", {"sira_anchor_batch": 0}),
    "fine_samples_parallel": ("sira", True, "auto", {"tracer.fine_chunks": 1}),
    # selective sampling whose dropped rays leave the batch (--ss-shrink true) instead of being replaced from the pool
    "ss_shrink": ("sira", True, "auto", {"ss_shrink": True}),
    "sphere_tracing_cache": ("sira", True, "sphere", {}),  # the cache under IDR's sphere tracing instead
    "h3dnet": ("h3dnet", None, "auto", {}),             # H3D-Net's default run, same config: time reference
    "h3dnet_ss_shrink": ("h3dnet", None, "auto", {"ss_shrink": True}),  # ... with the shrinking batch
}


def accel(args) -> dict:
    from headrecon.recon.pipeline import load_views

    _, scene = load_views(args.scene, str(args.views))
    trainers = {}
    for name, (method, cache, strategy, extra) in VARIANTS.items():
        cfg_extra = {k: v for k, v in extra.items() if not k.startswith("tracer.")}
        over = dict(iterations=args.iterations, strategy=strategy, **cfg_extra, **(args.extra or {}))
        torch.manual_seed(0)
        tr = _trainer(scene, args.views, over, args.sira_prior, method=method)
        if cache is not None:
            tr.method.use_cache = cache
        for k, v in extra.items():
            if k.startswith("tracer."):
                setattr(tr.tracer, k[len("tracer."):], v)
        trainers[name] = tr
    # the process's one-time costs (allocator, thread pools, first kernel calls) would land on whichever variant
    # runs first: pay them on a throwaway copy of the first variant, untimed
    method, cache, strategy, extra = next(iter(VARIANTS.values()))
    warm = _trainer(scene, args.views, dict(iterations=args.iterations, strategy=strategy, **(args.extra or {})),
                    args.sira_prior, method=method)
    warm.train(stop_after=min(args.chunk, warm.total_iterations))
    del warm
    secs = {k: 0.0 for k in trainers}
    rounds = {k: [] for k in trainers}  # seconds of each round (chunk of iterations) per variant
    total = trainers["full"].total_iterations
    names = list(trainers)
    it, rnd = 0, 0
    while it < total:
        n = min(args.chunk, total - it)
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:  # the order rotates every round
            tr = trainers[name]
            t0 = time.perf_counter()
            tr.train(stop_after=it + n)
            dt = time.perf_counter() - t0
            secs[name] += dt
            rounds[name].append(dt)
        it += n
        rnd += 1
        print(f"iteration {it}/{total}: " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()), flush=True)
    cache = trainers["full"].tracer.cache
    res = {"machine": machine(), "scene": str(args.scene), "views": args.views, "iterations": total,
           "seconds": {k: round(v, 2) for k, v in secs.items()},
           "ratio_to_full": {k: round(v / secs["full"], 3) for k, v in secs.items()},
           # per-round ratios: a load spike during one round moves the median less than the totals
           "median_round_ratio_to_full": {k: round(statistics.median(a / b for a, b in zip(v, rounds["full"])), 3)
                                          for k, v in rounds.items()},
           "saved_fraction": {k: round(1 - secs["full"] / v, 3) for k, v in secs.items() if k != "full"},
           "cache_hit_rate": None if cache is None else round(cache.hit_rate, 3),
           "tracer_strategy": {k: tr.tracer.resolved_strategy(tr.device) or tr.tracer.strategy
                               for k, tr in trainers.items()},
           "final_loss": {k: round(tr.history[-1]["loss"], 4) for k, tr in trainers.items() if tr.history},
           "final_batch_rays": {k: tr.sampler.batch_size for k, tr in trainers.items()},
           # per iteration: points the tracer looked up (cache or network) and those the network evaluated
           "tracer_lookups_per_iteration": {k: round(sum(v for c, v in tr.tracer.totals.items()
                                                         if c.startswith("evals_")) / total)
                                            for k, tr in trainers.items()},
           "tracer_network_evals_per_iteration": {k: round(tr.tracer.totals.get("num_sdf_evals", 0) / total)
                                                  for k, tr in trainers.items()},
           "mixed_precision": "CUDA only; not measured on CPU"}
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return res


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("accel")
    a.add_argument("--scene", required=True)
    a.add_argument("--views", type=int, default=3)
    a.add_argument("--iterations", type=int, default=150)
    a.add_argument("--chunk", type=int, default=10)
    a.add_argument("--sira-prior", default=None)
    a.add_argument("--out", default=None)
    a.add_argument("--threads", type=int, default=None)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.extra = None
    accel(args)
    return 0


# ---------------------------------------------------------------------------------------------- pytest smoke
def test_accel_smoke(tmp_path, monkeypatch):
    """Tiny run of the ablation on a synthetic ellipsoid with an untrained SIRA++ model (no shared data)."""
    import numpy as np
    import trimesh

    from headrecon.data.synthetic import make_scene
    from headrecon.priors.sira.model import SiraPrior, sira_preset

    torch.set_num_threads(1)
    m = trimesh.creation.icosphere(subdivisions=3)
    m.vertices = m.vertices * np.array([70.0, 90.0, 80.0])
    make_scene(m, tmp_path / "s", views=4, size=40, progress=False)
    p = SiraPrior(sira_preset("fast"), 2).save(tmp_path / "sira.pt")
    args = build_parser().parse_args(["accel", "--scene", str(tmp_path / "s"), "--views", "3", "--iterations", "4",
                                      "--chunk", "2", "--sira-prior", str(p)])
    args.extra = dict(image_size=32, batch_rays=128)
    res = accel(args)
    assert set(res["ratio_to_full"]) == set(VARIANTS) and res["ratio_to_full"]["full"] == 1.0
    assert res["median_round_ratio_to_full"]["full"] == 1.0 and len(res["final_batch_rays"]) == len(VARIANTS)
    assert res["tracer_lookups_per_iteration"]["full"] >= res["tracer_network_evals_per_iteration"]["full"] > 0


if __name__ == "__main__":
    sys.exit(main())
