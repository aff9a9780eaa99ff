"""The GPU check: everything tools/gpu_check.sh measures once the package is built, written to one JSON.

    python tools/gpu_check.py --out gpu_check.json [--device cuda] [--iterations N] [--rounds R] [--methods ...]

1. ``env``: torch, CUDA, the GPU, ``headrecon.build_info()``;
   ``errors``: bad input through the extension (and torch's own errors) in child processes: each must raise a Python
   exception, never crash the process;
2. ``tests``: the CUDA tests (``HEADRECON_REQUIRE_CUDA=1``: they fail instead of skipping without CUDA), the
   engine's op and tracer tests and the host-sync bound, with pytest's summary line; a test that crashes the
   process is named (faulthandler), deselected, and the rest run again;
3. ``tracer``: one training batch (2048 rays of three cameras) through the paper-size 8x512 SDF network, every
   configuration traced on the same rays, interleaved over rounds (median seconds per batch, network evaluations
   per ray, hits equal to the CPU run): CPU vs the device, sphere tracing vs the coarse/fine search, with and
   without the SDF cache, and float16 autocast of the network (AMP) on CUDA;
4. ``host_syncs``: on CUDA, the syncs torch itself reports for one training iteration
   (``torch.cuda.set_sync_debug_mode``) beside the count of ``headrecon._sync``;
5. ``recon``: one 3-view reconstruction of the procedural demo head per method (``idr``, ``h3dnet``, ``sira``, ``xu``),
   ``fast`` preset (``--iterations`` shortens it), on the device: training seconds, seconds per iteration, peak
   device memory and the official H3DS figures.

``--device cpu`` rehearses the whole script on a machine without a GPU (the CUDA-only rows are left out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benches"))


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _first_line(cmd, last=False):
    try:
        lines = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return (lines[-1] if last else lines[0]) if lines else None


def env(device) -> dict:
    import headrecon

    out = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "build_info": headrecon.build_info(), "device": str(device), "cpu_count": os.cpu_count(),
           "torch_built_with": next((ln.strip() for ln in torch.__config__.show().splitlines() if "GCC" in ln
                                     or "compiler" in ln.lower()), None),
           "host_cxx": _first_line(["c++", "--version"]), "nvcc": _first_line(["nvcc", "--version"], last=True)}
    if torch.device(device).type == "cuda":
        p = torch.cuda.get_device_properties(device)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2 ** 30, 1), sm_count=p.multi_processor_count,
                   capability=f"{p.major}.{p.minor}")
    return out


TEST_FILES = ["tests/test_ops.py", "tests/test_hash_grid.py", "tests/test_composite.py", "tests/test_tracer.py",
              "tests/test_host_syncs.py", "tests/test_softplus.py"]


def tests(device, max_crashes: int = 5) -> dict:
    """The engine's tests; a test that crashes the process is recorded and deselected, and the rest run again, so
    that one crash does not hide the other tests' results."""
    envv = dict(os.environ)
    if torch.device(device).type == "cuda":
        envv["HEADRECON_REQUIRE_CUDA"] = "1"
    t0 = time.time()
    crashed, runs = [], []
    while True:
        cmd = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-p", "no:cacheprovider", *TEST_FILES]
        for c in crashed:
            cmd += ["--deselect", c]
        r = subprocess.run(cmd, cwd=REPO, env=envv, capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        runs.append({"returncode": r.returncode, "summary": lines[-1] if lines else "",
                     "failures": [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:20]})
        # faulthandler's traceback names the file, line and test function that was running
        where = [m for m in (re.search(r'File "[^"]*/(tests/[^"]+\.py)", line \d+ in (test_\w+)', ln)
                             for ln in r.stderr.splitlines()) if m]
        if r.returncode >= 0 or not where or len(crashed) >= max_crashes:
            break
        node = f"{where[-1].group(1)}::{where[-1].group(2)}"
        if node in crashed:
            break
        crashed.append(node)
    return {"returncode": r.returncode, "summary": runs[-1]["summary"], "seconds": round(time.time() - t0, 1),
            "failures": runs[-1]["failures"], "crashed": crashed, "runs": runs}


# Each snippet raises from C++ (TORCH_CHECK) or from torch; run in its own process so that a crash is recorded
# (return code -11: the process died on the exception) instead of ending the check.
ERROR_CASES = {
    "torch_own_error": "import torch; torch.zeros(3).view(2)",
    "extension_type_error": "import torch, headrecon._C as C; C.ray_sphere_intersect(torch.zeros(4, 3).int(), "
                            "torch.zeros(4, 3), 1.0)",
    "extension_value_error": "import torch, headrecon._C as C; C.ray_points(torch.zeros(4, 3), torch.zeros(4, 3), "
                             "torch.tensor([9]), torch.zeros(1, 1))",
    "torch_error_after_extension_import": "import torch, headrecon._C; torch.zeros(3).view(2)",
    "extension_error_on_cuda_tensors": "import torch, headrecon._C as C; C.ray_sphere_intersect(torch.zeros(4, 3, "
                                       "device='cuda').int(), torch.zeros(4, 3, device='cuda'), 1.0)",
}


def errors(device) -> dict:
    """Bad input must raise a Python exception, never crash: return code and last stderr line per case."""
    out = {}
    for name, code in ERROR_CASES.items():
        if "cuda" in code and torch.device(device).type != "cuda":
            continue
        r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        out[name] = {"returncode": r.returncode, "raised": r.returncode == 1 and any(
            ln.startswith(("TypeError", "ValueError", "RuntimeError")) for ln in lines[-3:]),
            "last_line": lines[-1][:300] if lines else ""}
    return out


def tracer(device, rounds: int, n_rays: int = 2048) -> list:
    from tracer_cases import camera_rays

    from headrecon.models import GeometryNetwork
    from headrecon.render import RayTracer, SDFCache

    torch.manual_seed(0)
    base = GeometryNetwork.paper().eval()
    for p in base.parameters():
        p.requires_grad_(False)
    on_gpu = torch.device(device).type == "cuda"
    # (device, strategy, cache, amp, back_after); back_after None: the per-device default (0 on CUDA, 15 on the CPU)
    configs = [("cpu", "sphere", False, False, None), ("cpu", "search", False, False, None),
               ("cpu", "search", True, False, None)]
    if on_gpu:
        configs += [(device, s, c, a, None) for s in ("sphere", "search") for c in (False, True) for a in (False, True)]
        configs += [(device, "sphere", c, False, 15) for c in (False, True)]  # the CPU's default, for comparison
    nets = {"cpu": base}
    if on_gpu:
        nets[device] = GeometryNetwork.paper().to(device).eval()
        nets[device].load_state_dict(base.state_dict())
    cases = []
    for dev, strategy, cache, amp, back_after in configs:
        tr = RayTracer(strategy=strategy, cache=SDFCache(seed=0) if cache else None, amp=amp, back_after=back_after)
        net = nets[dev]
        for s in range(3):  # warm-up batches (the cache reaches its steady state)
            o, d = camera_rays(n_rays, 1000 + s)
            with torch.no_grad():
                tr(net.sdf, o.to(dev), d.to(dev))
        cases.append({"device": str(dev), "strategy": strategy, "cache": cache, "amp": amp,
                      "back_after": tr.resolved_back_after(torch.device(dev)), "tracer": tr,
                      "net": net, "seconds": [], "evals": [], "agree": []})
    for r in range(rounds):
        o, d = camera_rays(n_rays, 10 + r)
        ref = None
        for c in cases:
            dev = c["device"]
            oo, dd = o.to(dev), d.to(dev)
            _sync(dev)
            t0 = time.perf_counter()
            with torch.no_grad():
                res = c["tracer"](c["net"].sdf, oo, dd)
            _sync(dev)
            c["seconds"].append(time.perf_counter() - t0)
            c["evals"].append(res.num_sdf_evals / n_rays)
            hit = res.hit.cpu()
            ref = hit if ref is None else ref
            c["agree"].append(float((hit == ref).float().mean()))
    cpu0 = statistics.median(cases[0]["seconds"])
    return [{"device": c["device"], "strategy": c["strategy"], "cache": c["cache"], "amp": c["amp"],
             "back_after": c["back_after"],
             "seconds_per_batch": statistics.median(c["seconds"]),
             "rays_per_second": n_rays / statistics.median(c["seconds"]),
             "speedup_vs_cpu_sphere": cpu0 / statistics.median(c["seconds"]),
             "sdf_evals_per_ray": statistics.median(c["evals"]), "hits_equal_to_cpu_sphere": min(c["agree"])}
            for c in cases]


def _demo_scene(root: Path) -> Path:
    from headrecon.recon.demo import make_demo_scene

    d = root / "demo_scene"
    if not (d / "cameras.npz").is_file():
        make_demo_scene(d, views=8, size=256)
    return d


def host_syncs(device, scene_dir) -> dict:
    from headrecon import _sync as hs
    from headrecon.data import load_scene
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    out = {}
    for method in ("idr", "sira"):
        cfg = make_config("fast", method=method, device=str(device), iterations=10)
        tr = Trainer(cfg, load_scene(scene_dir, views="3"), device=device)
        for _ in range(3):
            tr.step()
            tr.iteration += 1
        c0 = hs.count()
        n_torch = None
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode(1)
                try:
                    tr.step()
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            n_torch = sum("synchroniz" in str(w.message).lower() for w in caught)
        else:
            tr.step()
        out[method] = {"headrecon_sync_points": hs.count() - c0, "torch_reported_syncs": n_torch}
    return out


METHODS = ("idr", "h3dnet", "sira", "xu")


def recon(device, scene_dir, iterations, root: Path, methods=METHODS) -> list:
    from headrecon.recon.config import make_config
    from headrecon.recon.pipeline import reconstruct

    from bench_methods import parse_variant

    rows = []
    for spec in methods:
        label, method, over = parse_variant(spec)
        if iterations:
            over["iterations"] = iterations
        cfg = make_config("fast", method=method, device=str(device), views="3", threads=0, **over)
        if torch.device(device).type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        res = reconstruct(scene_dir, cfg, root / f"run_{label}", progress=False, log=lambda *a: None)
        m = res.metrics
        row = {"method": method, "label": label, "overrides": over, "iterations": m["iterations"], "train_seconds": round(m["train_seconds"], 2),
               "seconds_per_iteration": m["seconds_per_iteration"], "scene_seconds": round(time.perf_counter() - t0, 1),
               "face_gt2pred_mm": m.get("h3ds", {}).get("face_gt2pred_mm"),
               "head_gt2pred_mm": m.get("h3ds", {}).get("head_gt2pred_mm")}
        if torch.device(device).type == "cuda":
            row["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iterations", type=int, default=None, help="reconstruction iterations (fast preset: 1500)")
    ap.add_argument("--rounds", type=int, default=5, help="tracer benchmark rounds")
    ap.add_argument("--methods", nargs="+", default=list(METHODS),
                    help="what the recon step reconstructs: method | label=method:field=value,... (as "
                         "benches/bench_methods.py), e.g. sira_fp32=sira:sira_accel=false")
    ap.add_argument("--skip", nargs="*", default=[], choices=["errors", "tests", "tracer", "host_syncs", "recon"])
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no CUDA device")
    result = {"command": " ".join(sys.argv), "env": env(device)}
    print(json.dumps(result["env"]), flush=True)

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        steps = [("errors", lambda: errors(device)), ("tests", lambda: tests(device)),
                 ("tracer", lambda: tracer(device, args.rounds)),
                 ("host_syncs", lambda: host_syncs(device, _demo_scene(root))),
                 ("recon", lambda: recon(device, _demo_scene(root), args.iterations, root, args.methods))]
        for name, fn in steps:
            if name in args.skip:
                continue
            t0 = time.time()
            try:
                result[name] = fn()
            except Exception as exc:  # record and go on: one broken part must not hide the others' figures
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            result.setdefault("seconds", {})[name] = round(time.time() - t0, 1)
            print(f"== {name}: {json.dumps(result[name], default=str)[:2000]}", flush=True)
            save()
    ok = all(not (isinstance(result.get(k), dict) and "error" in result[k]) for k in ("tracer", "host_syncs", "recon"))
    ok = ok and result.get("tests", {}).get("returncode", 0) == 0 and not result.get("tests", {}).get("crashed")
    ok = ok and all(c.get("raised", True) for c in result.get("errors", {}).values() if isinstance(c, dict))
    print(f"wrote {args.out}; {'ok' if ok else 'FAILED parts, see the JSON'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
