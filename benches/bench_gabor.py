"""Angular error of the Gabor hair orientation (``--method wang``'s 2D orientation prior) against the true strand
direction of rendered heads with hair (``headrecon-make-scene --hair``, ``orientation_gt/``).

For each scene and view: the bank of 32 even-symmetric Gabor kernels on the full-resolution photo
(:func:`headrecon.photos.orientation.gabor_orientation`), then, as the method uses it, reduced to each training
size (:func:`headrecon.photos.orientation.reduce_orientation`; the true orientation is reduced the same way with unit
confidence); the error (degrees, undirected) over the hair pixels, all of them and those the method keeps
(confidence >= ``--min-confidence``).

Usage (docs/results/wang.md)::

    python benches/bench_gabor.py --scenes S/ict100000_short S/ict100001_medium S/lps_bob --sizes 512 256 128 \
        --out gabor.json
    # pytest smoke (a striped synthetic image): pytest benches/bench_gabor.py
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def view_errors(image, gt_angle, hair, sizes, wavelength=4.0, min_confidence=0.2) -> dict:
    """Per training size: median / mean / 90th-percentile error (deg) over hair pixels, all and confident."""
    from headrecon.data.semantics import reduce_labels
    from headrecon.photos.orientation import (angular_error_deg, gabor_orientation, orientation_vectors,
                                              reduce_orientation)

    theta, conf = gabor_orientation(image, wavelength_px=wavelength)
    # the true strand angle a (direction (cos a, sin a)) as a wave angle theta = a - pi/2 (d = (-sin t, cos t))
    gt_theta = np.where(hair, np.nan_to_num(gt_angle) - np.pi / 2, 0.0) % np.pi
    h, w = hair.shape
    out = {}
    for s in sizes:
        f = min(1.0, s / float(max(h, w)))
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        t, c = reduce_orientation(theta, conf, nw, nh)
        gt_t, _ = reduce_orientation(gt_theta, hair.astype(np.float64), nw, nh)
        sh = reduce_labels(hair.astype(np.uint8), nw, nh).astype(bool)
        err = angular_error_deg(orientation_vectors(t[sh]), orientation_vectors(gt_t[sh]))
        keep = c[sh] >= min_confidence
        row = {"size": int(max(nw, nh)), "hair_pixels": int(sh.sum()), "kept_fraction": float(keep.mean()) if len(keep) else 0.0}
        for name, e in (("all", err), ("kept", err[keep])):
            if len(e):
                row[f"{name}_median_deg"] = float(np.median(e))
                row[f"{name}_mean_deg"] = float(np.mean(e))
                row[f"{name}_p90_deg"] = float(np.percentile(e, 90))
        out[int(s)] = row
    return out


def main(argv=None) -> int:
    from headrecon.data import load_scene
    from headrecon.data.semantics import SEMANTIC_CLASSES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", required=True)
    ap.add_argument("--sizes", nargs="+", type=int, default=[512, 256, 128])
    ap.add_argument("--views", default="8", help="views of each scene (as --views of headrecon-reconstruct)")
    ap.add_argument("--min-confidence", type=float, default=0.2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    rows = []
    for sd in a.scenes:
        s = load_scene(sd, views=a.views, load_gt_mesh=False)
        yaws = s.yaws_deg()
        for v, yaw in zip(s.views, yaws):
            gt_path = Path(sd) / "orientation_gt" / f"orient_{v.index:04d}.npy"
            gt = np.load(gt_path, allow_pickle=False)
            hair = v.semantic == SEMANTIC_CLASSES.index("hair")
            if hair.sum() < 50:
                continue
            for size, r in view_errors(v.image, gt, hair, a.sizes, min_confidence=a.min_confidence).items():
                rows.append({"scene": Path(sd).name, "view": int(v.index), "yaw_deg": round(float(yaw), 1),
                             "requested_size": int(size), **r})
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for size in a.sizes:
        sel = [r for r in rows if r["requested_size"] == size]
        for key in ("all_median_deg", "kept_median_deg", "kept_fraction"):
            vals = [r[key] for r in sel if key in r]
            summary.setdefault(str(size), {})[key] = float(np.median(vals)) if vals else None
    print(json.dumps({"summary_median_over_views": summary}, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows, "summary": summary},
                                          indent=1) + "\n")
    return 0


def test_bench_gabor_smoke():
    h = w = 96
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    a = np.deg2rad(30.0)  # strands along (cos a, sin a): stripes across them
    img = 0.5 + 0.4 * np.sin(2 * np.pi * (-np.sin(a) * jj + np.cos(a) * ii) / 4.0)
    hair = np.ones((h, w), bool)
    r = view_errors(np.repeat(img[..., None], 3, -1), np.full((h, w), a), hair, [96, 48])
    assert r[96]["all_median_deg"] < 3.0 and r[48]["all_median_deg"] < 3.0 and r[48]["kept_fraction"] > 0.9


if __name__ == "__main__":
    sys.exit(main())
