"""``headrecon-train-prior``: train the H3D-Net head prior on raw scans (a folder, or simulated ICT heads).

Examples::

    headrecon-train-prior ict --out prior.pt --preset fast --shapes 200 --epochs 60
    headrecon-train-prior my_scans/ --out prior.pt --preset paper --units mm --align landmarks
    headrecon-train-prior ict --out prior.pt --resume                 # continue from prior.ckpt.pt
    torchrun --nproc_per_node=2 -m headrecon.priors.cli ict --out prior.pt --ddp   # DistributedDataParallel
    headrecon-train-prior ict --model sira --out sira.pt --preset fast --shapes 48   # SIRA++ shape + appearance
    headrecon-train-prior composite --model sira --out sira_bust.pt --shapes 500   # heads with shoulders
    headrecon-train-prior composite --model xu --out xu.pt --shapes 24 --epochs 4000  # from rendered images

``SCANS_OR_ICT`` is ``ict`` (training identities = ICT-FaceKit seeds ``0 .. N-1``, see :mod:`headrecon.priors`),
``composite`` (ICT head ``i`` joined at the neck to Anny bust ``i``, shoulders included) or ``anny`` (Anny busts;
both in the bust frame, :func:`headrecon.priors.normalization.bust_normalization`; need ``pip install anny``), or a
folder of ``.ply`` / ``.obj`` / ``.stl`` / ``.off`` / ``.glb`` point clouds or meshes.
Writes ``OUT`` (the prior) and ``OUT.ckpt.pt``-style checkpoints (``prior.pt`` -> ``prior.ckpt.pt``).
"""
from __future__ import annotations

import argparse
import os
import sys

from ..cli import add_debug_flag, run_command
from .h3dnet.config import PRESETS, preset
from .sira.options import SIRA_OPTIONS, option_field

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="headrecon-train-prior", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("scans", metavar="SCANS_OR_ICT", help="'ict' (heads, head frame), 'composite', 'anny' (busts, bust frame), a mix "
                    "such as 'composite+ict' (shape k from source k mod 2, bust frame) or a folder of scans "
                    "(ply/obj/stl/off/glb)")
    ap.add_argument("--out", required=True, help="output prior (.pt)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    ap.add_argument("--shapes", type=int, default=None,
                    help="number of training shapes (ict/composite/anny: seeds 0..N-1, default 200; folder: the "
                         "first N files)")
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (decay rescaled)")
    ap.add_argument("--batch-shapes", type=int, default=None, help="shapes per iteration (global)")
    ap.add_argument("--points", type=int, default=None, help="surface (= volume) samples per shape and iteration")
    ap.add_argument("--lr", type=float, default=None, help="decoder learning rate")
    ap.add_argument("--lr-latent", type=float, default=None, help="latent learning rate")
    ap.add_argument("--latent-dim", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=None, help="MLP width")
    ap.add_argument("--layers", type=int, default=None, help="MLP hidden layers (skip at layers // 2)")
    ap.add_argument("--normal-weight", type=float, default=None, help="IGR normal term weight (0 = paper)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--scan-points", type=int, default=None, help="points drawn per ICT head / mesh scan")
    ap.add_argument("--closed-bottom", nargs="?", const="all", default=None, choices=["all", "busts"],
                    help="simulated shapes: the scans are closed at the bottom (a flat cap on a bust's cut; with "
                         "'all', the default, an ICT head's neck cap too; with 'busts' ICT heads stay open at the "
                         "neck), so the prior learns where the shape ends; without it the bottom is open like a "
                         "real scan's and the prior closes it anywhere inside its frame")
    ap.add_argument("--units", choices=["mm", "cm", "m"], default="mm", help="units of the scan folder's files")
    ap.add_argument("--align", choices=["auto", "landmarks", "bbox", "fixed"], default="auto",
                    help="how folder scans are placed in the prior frame (see headrecon.priors.scans.folder_scanset)")
    ap.add_argument("--checkpoint-every", type=int, default=None, help="epochs between checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    ap.add_argument("--stop-after-epoch", type=int, default=None, help="stop (with a checkpoint) after N epochs")
    ap.add_argument("--ddp", action="store_true", help="DistributedDataParallel (launch with torchrun); "
                    "automatic when WORLD_SIZE > 1")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda:LOCAL_RANK if available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    ap.add_argument("--no-progress", action="store_true")
    add_debug_flag(ap)
    # --- SIRA++ (headrecon.priors.sira.train) ---
    ap.add_argument("--model", choices=["h3dnet", "sira", "xu"], default="h3dnet",
                    help="h3dnet: shape-only DeepSDF prior; sira: SIRA++ shape-and-appearance model; xu: Xu et al.'s "
                         "template + deformation learnt from rendered images by volume rendering (--epochs is its "
                         "iteration count)")
    ap.add_argument("--half", action="store_true", help="sira: store the final model as float16 (shipped asset)")
    for flag, kind, text in SIRA_OPTIONS:
        ap.add_argument(flag, type=kind, default=None, help="sira: " + text)
    # --- end SIRA++ ---
    ap.add_argument("--xu-views", type=int, default=None, help="xu: images per training head (default 8)")
    ap.add_argument("--xu-size", type=int, default=None, help="xu: image size in px (default 64)")
    return ap


def _config(args):
    over = {}
    if args.epochs is not None:
        over["epochs"] = args.epochs
    if args.batch_shapes is not None:
        over["shapes_per_batch"] = args.batch_shapes
    if args.points is not None:
        over["surface_points"] = over["volume_points"] = args.points
    for name, key in (("lr", "lr"), ("lr_latent", "lr_latent"), ("latent_dim", "latent_dim"),
                      ("hidden", "d_hidden"), ("normal_weight", "normal_weight"), ("seed", "seed"),
                      ("scan_points", "scan_points")):
        v = getattr(args, name)
        if v is not None:
            over[key] = v
    if args.layers is not None:
        over["n_layers"] = args.layers
        over["skip_in"] = (max(1, args.layers // 2),)
    return preset(args.preset, **over)


def main(argv=None) -> int:
    """The command. Run as the command (``argv`` None) by a torchrun worker, it ends the process itself once the
    training is done (:func:`~headrecon.priors.training.finish_ddp_worker`: no crash in the interpreter's teardown
    can turn a finished training into a failure)."""
    args = build_parser().parse_args(argv)
    rc = run_command("headrecon-train-prior", lambda: _main(args, argv), argv)
    if argv is None:
        from .training import finish_ddp_worker

        finish_ddp_worker(rc)
    return rc


def _main(args, argv) -> int:
    import torch

    from .h3dnet.train import train_prior
    from .training import recorded_command
    from .scans import bust_scanset, closed_bottom_simulation, folder_scanset, ict_scanset, is_shape_source

    if args.threads:
        torch.set_num_threads(args.threads)
    sira_only = [flag for flag, _, _ in SIRA_OPTIONS if getattr(args, option_field(flag)) is not None]
    if sira_only and args.model != "sira":
        raise ValueError(f"{', '.join(sira_only)} set the SIRA++ model's training: they need --model sira "
                         f"(got --model {args.model})")
    if args.model == "sira":  # --- SIRA++ ---
        from .sira.train import main_from_args

        return main_from_args(args, argv)
    if args.model == "xu":  # --- Xu et al. (from images) ---
        from .xu.train import main_from_args

        return main_from_args(args, argv)
    cfg = _config(args)
    sim = closed_bottom_simulation(args.closed_bottom)
    if sim and not is_shape_source(args.scans):
        raise ValueError("--closed-bottom applies to simulated shapes (ict, composite, anny or a mix), not to a "
                         f"scan folder ({args.scans})")
    rank = int(os.environ.get("RANK", "0"))
    progress = not args.no_progress and rank == 0
    if args.scans.lower() == "ict":
        n = 200 if args.shapes is None else args.shapes
        if n < 1:
            raise ValueError("--shapes must be >= 1")
        scans = ict_scanset(n, seed_start=0, n_points=cfg.scan_points, progress=progress, simulation=sim)
    elif is_shape_source(args.scans):
        n = 200 if args.shapes is None else args.shapes
        if n < 1:
            raise ValueError("--shapes must be >= 1")
        scans = bust_scanset(args.scans.lower(), n, seed_start=0, n_points=cfg.scan_points, progress=progress,
                             simulation=sim)
    else:
        units = {"mm": 1.0, "cm": 10.0, "m": 1000.0}[args.units]
        scans = folder_scanset(args.scans, n_shapes=args.shapes, n_points=cfg.scan_points, units_to_mm=units,
                               align=args.align, progress=progress)
    cmd = recorded_command(argv)
    train_prior(cfg, scans, args.out, resume=args.resume, checkpoint_every=args.checkpoint_every,
                device=args.device, progress=progress, ddp=True if args.ddp else None,
                stop_after_epoch=args.stop_after_epoch, extra_meta={"command": cmd})
    return 0


if __name__ == "__main__":
    sys.exit(main())
