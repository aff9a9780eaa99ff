"""``headrecon-make-scene``: render a synthetic IDR/H3DS scene from a mesh, an ICT-FaceKit head, a bust (an ICT
head on Anny shoulders, or an Anny bust) or the Lee Perry-Smith scan (CPU ray casting). Also runnable as ``python -m headrecon.data.make_scene``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..cli import add_debug_flag, run_command

__all__ = ["main", "build_parser"]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.replace(" ", "").split(",") if x]


def _views(text: str):
    vals = _floats(text)
    if len(vals) == 1 and "," not in text and float(vals[0]).is_integer():
        return int(vals[0])
    return vals


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="headrecon-make-scene",
        description="Render posed RGB images and masks of a head mesh on the CPU and write an IDR/H3DS scene "
                    "(image/, mask/, cameras.npz, full_head.obj in mm, landmarks.txt, regions/face_sphere.txt). "
                    "Cameras orbit the head: yaw 0 looks at the face along -Z, positive yaw moves towards +X.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--mesh", type=Path, help="any mesh trimesh reads (glb/obj/ply...), +Y up, +Z out of the face")
    src.add_argument("--ict", type=int, metavar="SEED", help="a random ICT-FaceKit head (seed fixes the identity)")
    src.add_argument("--lps", action="store_true", help="the shared Lee Perry-Smith textured scan")
    src.add_argument("--bust", metavar="SOURCE:SEED",
                     help="a head with shoulders: 'composite:SEED' (ICT head SEED on Anny bust SEED) or 'anny:SEED' "
                          "(an Anny bust); see headrecon.data.bust (needs `pip install anny`)")
    ap.add_argument("--bust-depth", type=float, default=None, metavar="MM",
                    help="--bust: cut the body this far below the mouth corners (100-700 mm; e.g. 340 for a "
                         "photo down to below the armpits) instead of the seed's draw in 190-250 mm, the training "
                         "busts' range")
    ap.add_argument("--hair", choices=["short", "medium", "bob"], default=None,
                    help="add procedural hair (a closed volume over the scalp with strand stripes; needs the "
                         "six landmarks: --ict, --lps, --bust); writes semantic/ label maps and, for "
                         "evaluation, orientation_gt/ (headrecon.data.hair)")
    ap.add_argument("--fringe", action="store_true", help="--hair: a fringe down to just above the brows")
    ap.add_argument("--hair-seed", type=int, default=0, help="--hair: seed of the hair colour and stripes")
    ap.add_argument("--hair-voxel", type=float, default=1.5, help="--hair: grid step of the hair surface (mm)")
    ap.add_argument("--gt-surfaces", choices=["auto", "outer", "all"], default="auto",
                    help="ground truth: 'outer' keeps only the surfaces a camera can see from outside (a scan has "
                         "no others: an ICT head's inner lips, mouth and eye caps are dropped), 'all' keeps "
                         "every surface; 'auto': outer for --ict/--bust/--lps, all for --mesh. The images and "
                         "cameras are the same either way")
    ap.add_argument("--out", type=Path, required=True, help="output scene folder (new or empty)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the scene in --out whole (no file of the old scene is left)")
    ap.add_argument("--mm-per-unit", type=float, default=1.0, help="scale of --mesh to millimetres")
    ap.add_argument("--flip-v", action="store_true", help="--mesh texture uses glTF/three.js V-down UVs")
    ap.add_argument("--ict-clip", type=float, default=2.5, help="clip |w| of the ICT identity weights")
    ap.add_argument("--views", type=_views, default=32,
                    help="number of yaw steps around 360 deg, or a comma list of yaws in degrees")
    ap.add_argument("--pitch", type=_floats, default=[0.0], help="comma list of pitches (deg); one ring each")
    ap.add_argument("--size", type=int, nargs="+", default=[512], help="image size: S or W H (pixels)")
    ap.add_argument("--focal", type=float, default=None,
                    help="focal length in pixels (default: the head's bounding sphere fills ~90%% of the image)")
    ap.add_argument("--distance", type=float, default=None, help="camera distance in mm (default 3 sphere radii)")
    ap.add_argument("--crop-bottom", type=float, default=0.0,
                    help="fraction of image rows cut off at the bottom of every view, so that the frame cuts the "
                         "body as in a portrait photo, below 0.5 (cameras keep their intrinsics; the ground truth stays whole)")
    ap.add_argument("--lights", default="studio",
                    help="preset (studio, front, headlight, none) or 'x,y,z@I;...' world light directions")
    ap.add_argument("--ambient", type=float, default=0.35, help="ambient light")
    ap.add_argument("--shadows", action="store_true", help="cast shadows from the world lights")
    ap.add_argument("--ssaa", type=int, default=1, help="supersampling factor per axis (anti-aliasing)")
    ap.add_argument("--background", type=_floats, default=[0.0, 0.0, 0.0], help="background RGB in [0, 1]")
    ap.add_argument("--pose-noise-rot", type=float, default=0.0, help="camera rotation noise sigma (deg)")
    ap.add_argument("--pose-noise-pos", type=float, default=0.0, help="camera position noise sigma (mm)")
    ap.add_argument("--pose-noise", type=float, default=None,
                    help="one noise sigma in the unit-sphere frame (rotation in rad, position in sphere radii); "
                         "overrides the two above")
    ap.add_argument("--seed", type=int, default=0, help="seed of the pose noise")
    ap.add_argument("--format", choices=["png", "jpg"], default="png", help="image file format")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_flag(ap)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("headrecon-make-scene", lambda: _main(args), argv)


def _main(args) -> int:
    from .synthetic import make_scene

    t0 = time.time()
    if args.bust_depth is not None and args.bust is None:
        raise ValueError("--bust-depth needs --bust SOURCE:SEED")
    flip_v, mm_per_unit = args.flip_v, args.mm_per_unit
    if args.ict is not None:
        from .ict import sample_ict_head
        mesh, mm_per_unit, source = sample_ict_head(args.ict, clip=args.ict_clip), 1.0, f"ict:{args.ict}"
    elif args.bust is not None:
        from .bust import BUST_SOURCES, bust_mesh
        kind, _, seed = args.bust.partition(":")
        if kind not in BUST_SOURCES or not seed.lstrip("-").isdigit():
            raise ValueError(f"--bust {args.bust!r}: expected SOURCE:SEED with SOURCE one of {BUST_SOURCES}")
        mesh, mm_per_unit = bust_mesh(kind, int(seed), depth_mm=args.bust_depth), 1.0
        source = f"{kind}:{int(seed)}" + (f" cut {args.bust_depth:g} mm below the mouth" if args.bust_depth else "")
    elif args.lps:
        from .scans import load_lee_perry_smith
        mesh, mm_per_unit, source = load_lee_perry_smith(), 1.0, "lee_perry_smith (outer surface)"
    else:
        from .meshio import load_mesh
        mesh, source = load_mesh(args.mesh), str(args.mesh)
    hair = None
    if args.hair is not None:
        from .hair import add_hair
        if mm_per_unit != 1.0:
            mesh = mesh.copy()
            mesh.apply_scale(mm_per_unit)
            mm_per_unit = 1.0
        hair = add_hair(mesh, args.hair, fringe=args.fringe, seed=args.hair_seed, voxel_mm=args.hair_voxel)
        source += f" + hair:{args.hair}" + (" fringe" if args.fringe else "")
    elif args.fringe:
        raise ValueError("--fringe needs --hair STYLE")
    gt_surfaces = args.gt_surfaces if args.gt_surfaces != "auto" else ("all" if args.mesh is not None else "outer")
    size = args.size[0] if len(args.size) == 1 else tuple(args.size[:2])
    if len(args.background) != 3:
        raise ValueError("--background needs three numbers R,G,B")
    scene = make_scene(mesh, args.out, views=args.views, pitch=args.pitch, size=size, focal=args.focal,
                       distance=args.distance, mm_per_unit=mm_per_unit, lights=args.lights, ambient=args.ambient,
                       background=args.background, flip_v=flip_v, ssaa=args.ssaa, shadows=args.shadows,
                       pose_noise_rot_deg=args.pose_noise_rot, pose_noise_pos_mm=args.pose_noise_pos,
                       pose_noise=args.pose_noise, seed=args.seed, image_format=args.format,
                       progress=not args.quiet, meta={"source": source, "gt_surfaces": gt_surfaces},
                       overwrite=args.overwrite, hair=hair, gt_outer_only=gt_surfaces == "outer",
                       crop_bottom=args.crop_bottom)
    print(f"wrote {len(scene)} views to {args.out} in {time.time() - t0:.1f} s "
          f"(unit sphere radius {scene.scale_mat[0, 0]:.1f} mm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
