"""A procedural, head-like test subject that needs no external data (``headrecon-reconstruct --demo``, tests).

:func:`demo_head_sdf` is an analytic signed distance (in millimetres, +Y up, +Z out of the face, +X = the
subject's left) built as a smooth union of ellipsoids: cranium, face/jaw, chin, brow, nose, cheeks, ears and a neck
cut flat at the bottom; eye sockets and the mouth line are carved in with smooth subtraction. :func:`demo_head_mesh`
meshes it with marching cubes and paints procedural vertex colours (skin with low-frequency variation, hair, brows,
eyes, lips) and the six H3DS landmarks, so that :func:`make_demo_scene` can render it with
:func:`headrecon.data.synthetic.make_scene` into a complete IDR/H3DS scene (ground truth, landmarks, face region).

Everything is generated at run time (no shipped asset); the result depends only on the arguments.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["demo_head_sdf", "demo_head_mesh", "make_demo_scene", "DEMO_LANDMARKS_XY"]

# (x, y) in mm of the six landmarks on the frontal projection; z is found on the surface.
DEMO_LANDMARKS_XY = {
    "right_eye": (-31.0, 8.0), "left_eye": (31.0, 8.0), "nose_tip": (0.0, -18.0), "nose_base": (0.0, -36.0),
    "right_lips": (-22.0, -58.0), "left_lips": (22.0, -58.0),
}


def _ellipsoid(p, c, r):
    """Approximate SDF of an axis-aligned ellipsoid (exact on the surface, scaled by the smallest radius)."""
    q = (p - np.asarray(c, dtype=np.float64)) / np.asarray(r, dtype=np.float64)
    return (np.linalg.norm(q, axis=-1) - 1.0) * float(np.min(r))


def _smin(a, b, k):
    """Polynomial smooth minimum (smooth union) with blend width ``k``."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def _smax(a, b, k):
    return -_smin(-a, -b, k)


def demo_head_sdf(points) -> np.ndarray:
    """Signed distance (mm, negative inside, approximately Lipschitz 1) of the demo head at ``points [N, 3]`` (mm)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    d = _ellipsoid(p, (0, 22, -12), (76, 86, 96))                       # cranium
    d = _smin(d, _ellipsoid(p, (0, -28, 12), (62, 62, 72)), 14.0)       # face / jaw
    d = _smin(d, _ellipsoid(p, (0, -62, 38), (30, 22, 34)), 10.0)       # chin
    d = _smin(d, _ellipsoid(p, (0, 20, 52), (58, 14, 30)), 8.0)         # brow ridge
    d = _smin(d, _ellipsoid(p, (0, -12, 78), (11, 27, 16)), 6.0)        # nose bridge and tip
    d = _smin(d, _ellipsoid(p, (0, -30, 80), (16, 9, 12)), 5.0)         # nose wings
    for s in (-1.0, 1.0):
        d = _smin(d, _ellipsoid(p, (s * 38, -22, 52), (22, 20, 22)), 10.0)   # cheeks
        d = _smin(d, _ellipsoid(p, (s * 76, -2, -14), (9, 30, 17)), 5.0)     # ears
        d = _smax(d, -_ellipsoid(p, (s * 31, 8, 82), (15, 9, 18)), 5.0)      # eye sockets
    d = _smax(d, -_ellipsoid(p, (0, -58, 80), (26, 2.5, 22)), 3.0)      # mouth line
    d = _smin(d, _ellipsoid(p, (0, -112, -14), (46, 75, 46)), 16.0)     # neck
    d = _smax(d, -(p[:, 1] + 150.0), 4.0)                               # flat cut below the neck
    for s in (-1.0, 1.0):
        d = _smin(d, _ellipsoid(p, (s * 31, 8, 71), (13, 8, 10)), 2.0)       # eyeballs
    return d


def _landmark_vertices(mesh) -> dict:
    """Vertex index of each landmark: the first surface point hit by a ray along -Z through its (x, y)."""
    out = {}
    for name, (x, y) in DEMO_LANDMARKS_XY.items():
        origin = np.array([[x, y, 400.0]])
        locs, _, _ = mesh.ray.intersects_location(origin, np.array([[0.0, 0.0, -1.0]]), multiple_hits=False)
        target = locs[0] if len(locs) else np.array([x, y, 100.0])
        out[name] = int(np.argmin(np.linalg.norm(mesh.vertices - target, axis=1)))
    return out


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def demo_albedo(vertices, seed: int = 0) -> np.ndarray:
    """Procedural per-vertex albedo ``[N, 3]`` in [0, 1] of the demo head (``vertices`` in mm)."""
    v = np.asarray(vertices, dtype=np.float64)
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    rng = np.random.default_rng(seed)
    skin = np.array([0.86, 0.64, 0.52])
    # low-frequency skin variation from a few random sinusoids
    var = np.zeros(len(v))
    for _ in range(6):
        k = rng.normal(size=3) * 0.04
        var += 0.03 * np.sin(v @ k + rng.uniform(0, 2 * np.pi))
    col = skin[None] * (1.0 + var[:, None])
    # cheeks: a little redder
    for s in (-1.0, 1.0):
        w = np.exp(-(((x - s * 40) / 20) ** 2 + ((y + 25) / 16) ** 2)) * (z > 30)
        col = col * (1 - 0.25 * w[:, None]) + 0.25 * w[:, None] * np.array([0.9, 0.5, 0.45])
    # hair: top and back of the cranium, hairline above the brow
    hair_line = 38.0 + 10.0 * np.cos(np.clip(x / 60.0, -1, 1) * np.pi / 2)
    top = _smoothstep(hair_line - 4, hair_line + 4, y)
    back = _smoothstep(-25.0, -5.0, y) * _smoothstep(20.0, 40.0, -z)
    side = _smoothstep(25.0, 35.0, y) * _smoothstep(55.0, 65.0, np.abs(x))
    h = np.clip(np.maximum(np.maximum(top, back), side), 0.0, 1.0)
    hair_col = np.array([0.22, 0.14, 0.09]) * (1.0 + 0.15 * np.sin(0.3 * x + 0.1 * y))[:, None]
    col = col * (1 - h[:, None]) + hair_col * h[:, None]
    # eyebrows
    for s in (-1.0, 1.0):
        w = np.exp(-(((x - s * 31) / 14) ** 4 + ((y - 22) / 3.5) ** 2)) * (z > 50)
        col = col * (1 - 0.85 * w[:, None]) + 0.85 * w[:, None] * np.array([0.2, 0.13, 0.08])
    # eyes: white sclera, dark iris facing forward
    for s in (-1.0, 1.0):
        r = np.sqrt(((x - s * 31) / 12) ** 2 + ((y - 8) / 7) ** 2)
        eye = (r < 1.0) & (z > 66)
        col[eye] = [0.93, 0.92, 0.9]
        iris = eye & (np.hypot(x - s * 31, y - 8) < 5.0)
        col[iris] = [0.25, 0.18, 0.12]
        pupil = eye & (np.hypot(x - s * 31, y - 8) < 2.0)
        col[pupil] = [0.03, 0.03, 0.03]
    # lips
    w = np.exp(-(((x) / 24) ** 4 + ((y + 58) / 6) ** 2)) * (z > 55)
    col = col * (1 - 0.8 * w[:, None]) + 0.8 * w[:, None] * np.array([0.72, 0.3, 0.3])
    # nostrils
    for s in (-1.0, 1.0):
        w = np.exp(-(((x - s * 7) / 4) ** 2 + ((y + 36) / 3) ** 2)) * (z > 70)
        col = col * (1 - 0.7 * w[:, None]) + 0.7 * w[:, None] * np.array([0.35, 0.2, 0.18])
    return np.clip(col, 0.0, 1.0)


def demo_head_mesh(resolution: int = 160, seed: int = 0):
    """The demo head as a watertight ``trimesh.Trimesh`` in mm with vertex colours and
    ``metadata["landmarks"]`` (H3DS names -> vertex index). ``resolution``: marching-cubes grid per axis."""
    import trimesh
    from skimage import measure

    res = int(resolution)
    if res < 32:
        raise ValueError(f"resolution must be >= 32, got {resolution}")
    lo = np.array([-110.0, -160.0, -130.0])
    hi = np.array([110.0, 130.0, 120.0])
    axes = [np.linspace(lo[i], hi[i], res) for i in range(3)]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij")
    vals = demo_head_sdf(np.stack([gx, gy, gz], -1).reshape(-1, 3)).reshape(res, res, res)
    spacing = tuple((hi - lo) / (res - 1))
    verts, faces, _, _ = measure.marching_cubes(vals, level=0.0, spacing=spacing)
    verts = verts + lo
    mesh = trimesh.Trimesh(verts, faces[:, ::-1], process=True)  # skimage winding -> outward normals
    if mesh.volume < 0:
        mesh.invert()
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        mesh = max(parts, key=lambda m: len(m.faces))
    cols = demo_albedo(mesh.vertices, seed=seed)
    rgba = np.concatenate([np.round(cols * 255), np.full((len(cols), 1), 255)], axis=1).astype(np.uint8)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    mesh.metadata["landmarks"] = _landmark_vertices(mesh)
    mesh.metadata["source"] = f"headrecon demo head (procedural, resolution={res}, seed={seed})"
    return mesh


def make_demo_scene(out_dir=None, views=8, size: int = 256, resolution: int = 160, seed: int = 0,
                    progress: bool = False):
    """Render the demo head into an IDR/H3DS scene (see :func:`headrecon.data.synthetic.make_scene`).

    ``views``: number of yaw steps around the head (8 = every 45 deg, which contains the paper's 3-view set
    0/-45/+45 and 4-view set -90/-45/45/90) or a list of yaws in degrees. Returns the in-memory scene; with
    ``out_dir`` the scene is also written there.
    """
    from ..data.synthetic import make_scene

    mesh = demo_head_mesh(resolution=resolution, seed=seed)
    return make_scene(mesh, None if out_dir is None else Path(out_dir), views=views, size=size, mm_per_unit=1.0,
                      ssaa=2, progress=progress, seed=seed, meta={"source": mesh.metadata["source"]})
