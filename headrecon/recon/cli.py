"""``headrecon-reconstruct``: reconstruct a head from a few posed photos with masks (also ``python -m
headrecon.recon.cli``).

    headrecon-reconstruct SCENE_DIR --views 3 --method idr --preset fast --device auto --out RUN_DIR
    headrecon-reconstruct SCENE_DIR --out RUN_DIR --resume          # continue a stopped run exactly
    headrecon-reconstruct --demo                   # the shipped 3-view scene of a real head, SIRA++ prior
    headrecon-reconstruct --demo --method idr      # the same scene with the model-free baseline

Every field of :class:`headrecon.recon.config.ReconConfig` is also an option (``--batch-rays``, ``--lr``...), and
so is every option of the chosen method (``--method sira --help`` lists SIRA++'s); options not given come from
the preset, or from the stored run with ``--resume``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..cli import add_debug_flag, run_command
from .config import add_config_arguments, config_from_args, explicit_overrides

__all__ = ["main", "build_parser"]

PROG = "headrecon-reconstruct"
DEMO_METHOD = "sira"        # --demo without --method
DEMO_ITERATIONS = 500       # --demo without --iterations: about 3 minutes on 2 CPU cores


def demo_scene_dir() -> Path:
    """The shipped demo scene (three renders of the Lee Perry-Smith scan, CC BY 3.0; see its README.md)."""
    return Path(__file__).resolve().parents[1] / "assets" / "demo_lps"


def _method_of(argv) -> str:
    """The ``--method`` given in ``argv`` (default idr), read before the full parser is built."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default="idr")
    known, _ = pre.parse_known_args(argv)
    return known.method


def build_parser(method: str = "idr") -> argparse.ArgumentParser:
    """The parser for ``--method method``: the shared options plus that method's own."""
    from ..methods import available_methods

    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Reconstruct a full 3D head (neural SDF fitted by implicit differentiable rendering) from the "
                    "posed photos and masks of an IDR/H3DS scene folder. Writes the mesh (mm), renders, a loss "
                    "curve and metrics.json into the run folder (--out).",
        epilog="Presets: 'fast' = CPU-sized (small networks, 128 px images, 1500 iterations); 'paper' = IDR / "
               "H3D-Net settings (8x512, 2048 rays, 2000 epochs). Schedules are given in epochs and scaled to "
               f"the run length. Ctrl-C saves a checkpoint; continue with --resume. The options listed under "
               f"'--method {method}' are that method's; `--method NAME --help` lists another's (methods: "
               f"{', '.join(available_methods())}).")
    ap.add_argument("scene", nargs="?", type=Path, metavar="SCENE_DIR",
                    help="scene folder (image/, mask/, cameras.npz; optional full_head.obj ground truth) or a "
                         "nerfstudio transforms.json")
    ap.add_argument("--out", type=Path, default=None, metavar="RUN_DIR",
                    help="run folder (new or empty; with --resume the stopped run). Default for --demo: "
                         "./headrecon-demo/run")
    ap.add_argument("--resume", action="store_true", help="continue the run stored in --out exactly")
    ap.add_argument("--demo", action="store_true",
                    help=f"reconstruct the shipped 3-view scene of a real head (renders of the Lee Perry-Smith scan, "
                         f"CC BY 3.0) with --method {DEMO_METHOD} (unless given) and the fast preset, "
                         f"{DEMO_ITERATIONS} iterations (unless --iterations), and print its error against the "
                         f"scan; the scene is copied to RUN_DIR's parent")
    ap.add_argument("--stop-after", type=int, default=None, metavar="N",
                    help="stop after iteration N with a checkpoint (continue later with --resume)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_flag(ap)
    add_config_arguments(ap, method if method in available_methods() else "idr")
    for action in ap._actions:  # the registry decides the valid methods
        if action.dest == "method":
            action.choices = available_methods()
    return ap


def _demo_paths(out, resume: bool):
    """Scene and run folders of --demo. Without --out: ./headrecon-demo/scene and the first of run, run-2, ...
    that holds no run yet (the last one that does with --resume)."""
    if out is None:
        root = Path("headrecon-demo")
        runs = [root / "run"] + [root / f"run-{k}" for k in range(2, 1000)]
        used = [r for r in runs if (r / "config.json").exists()]
        if resume and used:
            return root / "scene", used[-1]
        return root / "scene", next(r for r in runs if not (r.exists() and any(r.iterdir())))
    out = Path(out)
    return out.parent / f"{out.name}-scene", out


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return run_command(PROG, lambda: _main(argv), argv)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)  # `kill PID` also leaves a checkpoint
    try:
        return run_command(PROG, lambda: _main(argv), argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--demo" in argv and not any(a == "--method" or a.startswith("--method=") for a in argv):
        argv += ["--method", DEMO_METHOD]
    ap = build_parser(_method_of(argv))
    args = ap.parse_args(argv)
    explicit = explicit_overrides(args)
    try:
        if args.demo:
            if args.scene is not None:
                ap.error("--demo builds its own scene; do not pass SCENE_DIR")
            if explicit.get("preset", "fast") != "fast":
                ap.error("--demo runs the fast preset")
            scene_dir, out = _demo_paths(args.out, args.resume)
            if not (scene_dir / "cameras.npz").is_file():
                import shutil

                shutil.copytree(demo_scene_dir(), scene_dir, dirs_exist_ok=True)
                print(f"demo scene (3 renders of the Lee Perry-Smith head scan, CC BY 3.0) copied to {scene_dir}")
            if getattr(args, "iterations", None) is None:
                args.iterations = DEMO_ITERATIONS
                explicit = explicit_overrides(args)
        else:
            if args.scene is None:
                ap.error("SCENE_DIR is required (or use --demo)")
            if args.out is None:
                ap.error("--out RUN_DIR is required")
            scene_dir, out = args.scene, args.out
        cfg = config_from_args(args)
        from .pipeline import reconstruct

        t0 = time.time()
        res = reconstruct(scene_dir, cfg, out, resume=args.resume, explicit=explicit, stop_after=args.stop_after,
                          progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted (once training has started a checkpoint is saved: continue with --resume)",
              file=sys.stderr)
        return 130
    m = res.metrics
    state = "finished" if m["finished"] else f"stopped at iteration {m['iterations']} (continue with --resume)"
    print(f"{state}: {m['iterations']} iterations in {m['train_seconds']:.0f} s of training, "
          f"{time.time() - t0:.0f} s in all")
    extra = ", landmarks.json" if (res.run_dir / "landmarks.json").is_file() else ""
    print(f"results in {res.run_dir.resolve()}: mesh.ply, renders_inputs.png, renders_novel.png, loss_curve.png, "
          f"metrics.json{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
