"""Find the six H3DS landmarks on Anny's default topology (``headrecon.data.bust.ANNY_LANDMARKS``).

Adult Anny bodies (phenotypes of :func:`headrecon.data.bust.anny_phenotype`, seeds 0..N-1) are turned into the ICT
frame, their heads rendered at 512 px from three yaws with a plain skin colour, and MediaPipe Face Mesh detects the
face; the six H3DS points (``headrecon.photos.detect.H3DS_MEDIAPIPE``) are cast onto the mesh, carried to the
reference body (every phenotype 0.5) through their triangle and barycentric coordinates, and the vertex nearest to
the median is the landmark. Prints the indices (paste them into ``headrecon/data/bust.py``) and how far the
carried hits spread (mm).

Run (about a minute after Anny's first build): ``python tools/make_anny_landmarks.py --bodies 8``
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import trimesh

from headrecon.data.bust import anny_body, anny_phenotype
from headrecon.data.synthetic import MeshRenderer, default_distance_focal, orbit_cameras
from headrecon.photos.detect import H3DS_MEDIAPIPE, detect_landmarks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bodies", type=int, default=8)
    ap.add_argument("--yaws", default="-15,0,15")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    ref_V, F = anny_body({k: 0.5 for k in ("gender", "age", "muscle", "weight", "height", "proportions")})
    names = list(H3DS_MEDIAPIPE)
    carried = {k: [] for k in names}
    yaws = [float(y) for y in args.yaws.split(",")]
    for seed in range(args.bodies):
        V, _ = anny_body(anny_phenotype(seed))
        top = V[:, 1].max()
        head = V[:, 1] > top - 260.0
        center = (V[head].min(0) + V[head].max(0)) / 2
        mesh = trimesh.Trimesh(V, F, process=False)
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.tile([224, 180, 150, 255], (len(V), 1)))
        dist, focal = default_distance_focal(130.0, args.size)
        cams = orbit_cameras(center, dist, yaws, [0.0], focal, args.size, args.size)
        r = MeshRenderer(mesh)
        dets = detect_landmarks([r.render(c).image for c in cams])
        inter = trimesh.ray.ray_pyembree.RayMeshIntersector(mesh) if hasattr(trimesh.ray, "ray_pyembree") else mesh.ray
        for cam, det in zip(cams, dets):
            if det is None:
                continue
            uv = np.stack([det.points[H3DS_MEDIAPIPE[k]] for k in names])
            d = np.linalg.solve(cam.K, np.concatenate([uv, np.ones((len(uv), 1))], 1).T).T @ cam.R
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            locs, ray_idx, tri = inter.intersects_location(np.broadcast_to(cam.center, d.shape).copy(), d,
                                                           multiple_hits=False)
            for loc, i, f in zip(locs, ray_idx, tri):
                b = trimesh.triangles.points_to_barycentric(V[F[f]][None], loc[None])[0]
                carried[names[i]].append(b @ ref_V[F[f]])
        print(f"body {seed}: faces found in {sum(d is not None for d in dets)}/{len(dets)} views", flush=True)
    out, spread = {}, {}
    for k in names:
        if len(carried[k]) < 3:
            print(f"{k}: too few detections", file=sys.stderr)
            return 1
        P = np.array(carried[k])
        med = np.median(P, axis=0)
        out[k] = int(np.argmin(np.linalg.norm(ref_V - med, axis=1)))
        spread[k] = round(float(np.median(np.linalg.norm(P - med, axis=1))), 2)
    print("ANNY_LANDMARKS =", json.dumps(out))
    print("median spread of the carried hits (mm):", json.dumps(spread))
    return 0


if __name__ == "__main__":
    sys.exit(main())
