"""``headrecon-prepare PHOTOS_DIR --out SCENE``: a reconstruction scene from photographs alone (no cameras).

Steps: read the photos (EXIF orientation applied), detect the face-mesh landmarks (MediaPipe), pick a focal length
(``--focal-px``; else the photo's EXIF 35 mm-equivalent focal length; else a 50 mm equivalent), fit the sparse
ICT-FaceKit morphable model to the landmarks (identity shared by all views, one pose per view, perspective
projection: :func:`headrecon.photos.fit.fit_cameras`), and write the IDR/H3DS layout:

* ``image/``, ``mask/`` (the user's masks from ``--masks`` win; else estimated: :mod:`headrecon.photos.masks`);
* ``cameras.npz``: ``world_mat_i = K [R | t]`` in the fitted head's frame (the ICT frame: millimetres, +Y up, +Z
  out of the face) and ``scale_mat_i``: a sphere of ``--radius-mm`` (default 400) around the bust frame's centre
  (65 mm below the ICT origin: head, neck and shoulders fit in it);
* ``proxy.ply``: the fitted ICT face (the vertices within 95 mm of its nose tip) as a facial proxy (needs the
  ICT-FaceKit basis in ``<shared>/data/ict_facekit``; without it, ``proxy_landmarks.ply``: the fitted landmark
  points);
* ``scene_info.json``: how it was made (focal source, per-view reprojection error, views left out) and
  ``head_transform`` (the ICT model frame in the scene, the identity here: the prior methods place their prior
  with it, whatever their own frame).

Photos without a face cannot be posed and are left out (named on the console and in ``scene_info.json``).
This is the "initial camera parameters from an optimisation-based 3DMM fit" step of Wang et al.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..cli import add_debug_flag, run_command

__all__ = ["main", "build_parser", "prepare", "read_photos"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
MM35_DIAGONAL = 43.2666  # diagonal of a 36 x 24 mm frame


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="headrecon-prepare",
        description="Make a reconstruction scene (IDR/H3DS layout) from photos of a head without cameras: face "
                    "landmarks (MediaPipe), a morphable-model fit (ICT-FaceKit identity shared by the views, one "
                    "pose per view) gives the cameras; masks are estimated unless given. Then run "
                    "headrecon-reconstruct SCENE.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("photos", type=Path, help="folder of photos (.png/.jpg), sorted by name = view order")
    ap.add_argument("--out", type=Path, required=True, help="scene folder to write (new or empty)")
    ap.add_argument("--overwrite", action="store_true", help="replace the scene in --out whole")
    ap.add_argument("--masks", type=Path, default=None,
                    help="folder of the user's masks (white = head), matched to the photos by file stem")
    ap.add_argument("--focal-px", type=float, default=None,
                    help="focal length in pixels of every photo (default: EXIF, else --focal-mm35)")
    ap.add_argument("--focal-mm35", type=float, default=50.0,
                    help="35 mm-equivalent focal length when neither --focal-px nor EXIF gives one")
    ap.add_argument("--radius-mm", type=float, default=400.0,
                    help="radius of the scene's bounding sphere (scale_mat) around the bust's centre (65 mm below "
                         "the ICT origin)")
    ap.add_argument("--modes", type=int, default=40, help="identity modes fitted (of 100)")
    ap.add_argument("--max-size", type=int, default=0,
                    help="reduce photos so that their larger side is at most this (0 = keep)")
    add_debug_flag(ap)
    return ap


def read_photos(folder: Path, max_size: int = 0):
    """``(names, images float32 [H, W, 3], exif 35 mm focal or None per photo, skipped files)``. A file with an
    image extension that cannot be decoded is an error naming it; other files are skipped."""
    from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

    from ..data.errors import SceneError

    if not folder.is_dir():
        raise SceneError(folder, "photo folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    photos = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    skipped = [p.name for p in files if p.suffix.lower() not in IMAGE_EXTS]
    if not photos:
        raise SceneError(folder, "no photos (.png/.jpg) found" + (f"; other files: {skipped[:5]}" if skipped else ""))
    names, images, f35 = [], [], []
    for p in photos:
        try:
            with Image.open(p) as im:
                exif = im.getexif()
                im = ImageOps.exif_transpose(im).convert("RGB")
                if max_size and max(im.size) > max_size:
                    s = max_size / float(max(im.size))
                    im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
                a = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise SceneError(p, f"cannot be read as an image ({type(exc).__name__}: {exc})") from None
        sub = exif.get_ifd(ExifTags.IFD.Exif) if exif else {}
        f = sub.get(ExifTags.Base.FocalLengthIn35mmFilm) or exif.get(ExifTags.Base.FocalLengthIn35mmFilm)
        names.append(p.name)
        images.append(a)
        f35.append(float(f) if f else None)
    return names, images, f35, skipped


def _intrinsics(w: int, h: int, focal_px: float) -> np.ndarray:
    return np.array([[focal_px, 0.0, w / 2.0], [0.0, focal_px, h / 2.0], [0.0, 0.0, 1.0]])


def prepare(photos: Path, out: Path, masks_dir: Path | None = None, focal_px: float | None = None,
            focal_mm35: float = 50.0, radius_mm: float = 400.0, n_modes: int = 40, max_size: int = 0,
            overwrite: bool = False, log=print) -> dict:
    """The work of ``headrecon-prepare`` (see the module docstring); returns the report written to
    ``scene_info.json``."""
    from ..data.camera import Camera
    from ..data.errors import SceneError
    from ..data.scene import Scene, load_mask, write_scene
    from ..priors.normalization import BUST_CENTER_MM
    from .detect import detect_landmarks
    from .fit import fit_cameras
    from .masks import fill_missing_masks
    from .model import load_landmark_model

    names, images, f35, skipped = read_photos(Path(photos), max_size)
    if skipped:
        log(f"skipped (not .png/.jpg): {', '.join(skipped[:10])}")
    dets = detect_landmarks(images)
    for n, d in zip(names, dets):
        if d is None:
            log(f"{Path(photos) / n}: no face found; this photo cannot be posed and is left out")
    if not any(d is not None for d in dets):
        raise SceneError(photos, "no face was found in any photo: the cameras cannot be fitted")
    Ks, focal_src = [], []
    for img, f in zip(images, f35):
        h, w = img.shape[:2]
        if focal_px is not None:
            fp, src = float(focal_px), "--focal-px"
        elif f:
            fp, src = f / MM35_DIAGONAL * np.hypot(w, h), f"EXIF 35 mm equivalent {f:g} mm"
        else:
            fp, src = focal_mm35 / MM35_DIAGONAL * np.hypot(w, h), f"default {focal_mm35:g} mm equivalent"
        Ks.append(_intrinsics(w, h, fp))
        focal_src.append(src)
    model = load_landmark_model()
    fit = fit_cameras(dets, Ks, model=model, n_modes=n_modes, names=names)
    keep = fit.posed
    S = np.eye(4)
    S[:3, :3] *= float(radius_mm)
    S[:3, 3] = BUST_CENTER_MM
    cams, imgs, msks = [], [], []
    for k in keep:
        h, w = images[k].shape[:2]
        T = fit.w2c[k]
        cams.append(Camera(K=Ks[k], R=T[:3, :3], t=T[:3, 3], width=w, height=h))
        imgs.append(images[k])
        m = None
        if masks_dir is not None:
            cand = [p for p in Path(masks_dir).glob(Path(names[k]).stem + ".*") if p.suffix.lower() in IMAGE_EXTS]
            if cand:
                m = load_mask(cand[0])
                if m.shape != (h, w):
                    raise SceneError(cand[0], f"mask is {m.shape[1]}x{m.shape[0]} but {names[k]} is {w}x{h}")
        msks.append(m)
    report = {"generator": "headrecon-prepare", "photos": str(Path(photos).resolve()),
              "views": [names[k] for k in keep], "left_out_no_face": [n for n, d in zip(names, dets) if d is None],
              "skipped_files": skipped, "focal_px": [float(Ks[k][0, 0]) for k in keep],
              "focal_source": [focal_src[k] for k in keep], "radius_mm": float(radius_mm),
              "identity_weights": [round(float(x), 4) for x in fit.weights], **fit.report,
              "head_transform": np.eye(4).tolist(), "units": "mm",
              "frame": "ICT-FaceKit model frame of the fitted head (mm, +Y up, +Z out of the face)"}
    scene = Scene.from_arrays(imgs, [m if m is not None else np.ones(i.shape[:2], bool) for m, i in zip(msks, imgs)],
                              cams, S, meta=report)
    todo = [v for v, m in zip(scene.views, msks) if m is None]
    for v in todo:
        v.mask = None
    for v, k in zip(scene.views, keep):
        v.image_path = Path(photos) / names[k]
    est = fill_missing_masks(scene)
    report["masks"] = {"given": [names[k] for k, m in zip(keep, msks) if m is not None], "estimated": est}
    scene.meta = report
    write_scene(out, scene, overwrite=overwrite)
    _write_proxy(Path(out), fit.weights, model, log)
    log(f"wrote {len(keep)} views to {out}: reprojection {fit.report['reprojection_mm_median']:.2f} mm (median), "
        f"focal {focal_src[keep[0]]}")
    return report


def _write_proxy(out: Path, w, model, log) -> None:
    import trimesh

    from ..data.ict import load_ict_basis

    try:
        basis = load_ict_basis()
    except (FileNotFoundError, OSError) as exc:
        pts = model.points(w)[model.triangle >= 0]
        trimesh.PointCloud(pts).export(out / "proxy_landmarks.ply")
        log(f"no ICT-FaceKit basis ({exc}): wrote proxy_landmarks.ply (the fitted landmark points) instead of "
            "proxy.ply")
        return
    k = min(len(w), len(basis.modes_cm))
    V = (basis.mean_cm + np.tensordot(np.asarray(w[:k]), basis.modes_cm[:k].astype(np.float64), axes=1)) * 10.0
    nose = V[basis.landmarks["nose_tip"]] if "nose_tip" in basis.landmarks else V[np.argmax(V[:, 2])]
    inside = np.linalg.norm(V - nose, axis=1) <= 95.0
    F = basis.faces[inside[basis.faces].all(1)]
    mesh = trimesh.Trimesh(V, F, process=False)
    mesh.remove_unreferenced_vertices()
    mesh.export(out / "proxy.ply")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("headrecon-prepare", lambda: _main(args), argv)


def _main(args) -> int:
    t0 = time.time()
    prepare(args.photos, args.out, masks_dir=args.masks, focal_px=args.focal_px, focal_mm35=args.focal_mm35,
            radius_mm=args.radius_mm, n_modes=args.modes, max_size=args.max_size, overwrite=args.overwrite)
    print(f"done in {time.time() - t0:.1f} s; next: headrecon-reconstruct {args.out} --out RUN")
    return 0


if __name__ == "__main__":
    sys.exit(main())
