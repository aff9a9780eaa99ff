"""ICT-FaceKit heads: sample identities, cap the open loops, convert to mm, paint a procedural skin albedo.

The linear model lives in ``<shared>/data/ict_facekit/ict_head_basis.npz`` (centimetres, +Y up, +Z out of the
face, +X = the subject's left; modes already scaled by their standard deviation; see its README). A head is
``mean + sum_k w_k modes[k]`` with ``w ~ N(0, 1)`` clipped to ``[-clip, clip]``. The skin surface has four open
loops (two eyes, mouth, neck); :func:`cap_loops` closes each with concentric rings around its centroid so that
the head is watertight with consistent outward winding. :func:`procedural_albedo` gives every vertex a skin
colour (tone, low-frequency variation, cheeks, lips, brows, eyes, mouth interior) so that heads render
plausibly.

The seed fully determines the head (identity weights and albedo), so seed ranges can separate prior-training
identities from held-out test heads. :func:`convert_ict_facekit` rebuilds the basis from a full ICT-FaceKit
checkout (``FaceXModel/generic_neutral_mesh.obj`` + ``identityXXX.obj``); run it as
``python -m headrecon.data.ict SRC_DIR OUT.npz``.
"""
from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from ..paths import shared_dir
from .errors import SceneError
from .meshio import read_obj

__all__ = [
    "N_SKIN_VERTICES", "ICTBasis", "ict_dir", "load_ict_basis", "ict_weights", "ict_vertices_cm", "boundary_loops",
    "cap_loops", "procedural_albedo", "sample_ict_head", "convert_ict_facekit", "main",
]

N_SKIN_VERTICES = 11248  # face, scalp, ears and neck of the full ICT-FaceKit model


@dataclass
class ICTBasis:
    mean_cm: np.ndarray      # [V, 3]
    modes_cm: np.ndarray     # [K, V, 3]
    faces: np.ndarray        # [F, 3]
    landmarks: dict          # name -> vertex index


def ict_dir(required: bool = True) -> Path | None:
    """``<shared>/data/ict_facekit`` (FileNotFoundError when ``required`` and absent)."""
    root = shared_dir(required=required)
    if root is None:
        return None
    d = root / "data" / "ict_facekit"
    if not d.is_dir():
        if required:
            raise FileNotFoundError(f"{d}: ICT-FaceKit folder not found")
        return None
    return d


@functools.lru_cache(maxsize=4)
def _load_basis_cached(path: str) -> ICTBasis:
    p = Path(path)
    if not p.is_file():
        raise SceneError(p, "ICT basis file not found")
    with np.load(p) as d:
        for key in ("mean_cm", "modes_cm", "faces"):
            if key not in d.files:
                raise SceneError(p, f"missing array '{key}'")
        mean, modes, faces = d["mean_cm"].astype(np.float64), d["modes_cm"].astype(np.float32), d["faces"].astype(np.int64)
    lm_path = p.parent / "landmarks.json"
    landmarks = {k: int(v) for k, v in json.loads(lm_path.read_text()).items()} if lm_path.is_file() else {}
    return ICTBasis(mean, modes, faces, landmarks)


def load_ict_basis(path=None) -> ICTBasis:
    """The ICT basis (cached). ``path``: an ``.npz`` or a folder holding ``ict_head_basis.npz``; default shared."""
    p = Path(path) if path is not None else ict_dir() / "ict_head_basis.npz"
    if p.is_dir():
        p = p / "ict_head_basis.npz"
    return _load_basis_cached(str(p.resolve()))


def ict_weights(seed: int, n_modes: int = 100, clip: float = 2.5) -> np.ndarray:
    """Identity weights for ``seed``: N(0, 1) clipped to [-clip, clip] (the first ``n_modes`` of the stream)."""
    rng = np.random.default_rng([int(seed), 0])
    return np.clip(rng.standard_normal(n_modes), -clip, clip)


def ict_vertices_cm(weights, basis: ICTBasis | None = None) -> np.ndarray:
    """Skin vertices [V, 3] in cm for identity ``weights`` (shorter vectors use the first modes)."""
    basis = basis or load_ict_basis()
    w = np.asarray(weights, dtype=np.float64)
    k = min(len(w), len(basis.modes_cm))
    return basis.mean_cm + np.tensordot(w[:k], basis.modes_cm[:k].astype(np.float64), axes=1)


# ---------------------------------------------------------------------------------------------- capping
def boundary_edges(faces) -> np.ndarray:
    """Directed edges [E, 2] used by one face only, in their faces' direction (any mesh, manifold or not)."""
    faces = np.asarray(faces)
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    return edges[trimesh.grouping.group_rows(np.sort(edges, axis=1), require_count=1)]


def boundary_loops(faces) -> list[np.ndarray]:
    """Ordered boundary loops; each loop follows the direction of its edges in ``faces``. Raises ValueError where
    the boundary is not made of simple loops (a vertex on two boundary edges going out); :func:`boundary_edges`
    takes any mesh."""
    nxt = {int(a): int(b) for a, b in boundary_edges(faces)}
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt.get(v)
            if v is None:
                raise ValueError("boundary is not a closed loop (non-manifold mesh)")
        loops.append(np.asarray(loop))
    return loops


def cap_loops(vertices, faces, rings: int = 4, loops=None):
    """Close every boundary loop with ``rings`` concentric rings shrinking to the loop centroid.

    Returns ``(vertices, faces, caps)`` where ``caps`` is a list of dicts ``{"loop", "vertices", "centroid",
    "ring_of"}``: the loop's vertex indices, the new vertex indices, the centroid and each new vertex's ring
    fraction (1 = boundary, 0 = centre). The cap triangles reverse the boundary edges, so winding stays
    consistent.
    """
    V = [np.asarray(vertices, dtype=np.float64)]
    F = [np.asarray(faces, dtype=np.int64)]
    n = len(V[0])
    caps = []
    for loop in (boundary_loops(faces) if loops is None else loops):
        P = V[0][loop]
        c = P.mean(axis=0)
        m = len(loop)
        prev = loop
        new_idx, fracs = [], []
        tris = []
        for k in range(1, rings):
            f = 1.0 - k / rings
            ring = np.arange(n, n + m)
            V.append(c + f * (P - c))
            n += m
            new_idx.append(ring)
            fracs.append(np.full(m, f))
            a, b = prev, np.roll(prev, -1)
            ia, ib = ring, np.roll(ring, -1)
            tris += [np.stack([b, a, ia], 1), np.stack([b, ia, ib], 1)]
            prev = ring
        center = n
        V.append(c[None])
        n += 1
        new_idx.append(np.array([center]))
        fracs.append(np.zeros(1))
        tris.append(np.stack([np.roll(prev, -1), prev, np.full(m, center)], 1))
        F.append(np.concatenate(tris))
        caps.append({"loop": np.asarray(loop), "vertices": np.concatenate(new_idx), "centroid": c,
                     "ring_of": np.concatenate(fracs)})
    return np.concatenate(V), np.concatenate(F), caps


def _classify_caps(caps, V, landmarks) -> dict:
    """Name the caps 'right_eye', 'left_eye', 'mouth', 'neck' by proximity to landmarks (neck = lowest)."""
    names = {}
    cents = np.array([c["centroid"] for c in caps])
    neck = int(np.argmin(cents[:, 1]))
    names[neck] = "neck"
    targets = {"right_eye": V[landmarks["right_eye"]], "left_eye": V[landmarks["left_eye"]],
               "mouth": (V[landmarks["right_lips"]] + V[landmarks["left_lips"]]) / 2}
    for name, p in targets.items():
        free = [i for i in range(len(caps)) if i not in names]
        if not free:
            break
        i = min(free, key=lambda j: np.linalg.norm(cents[j] - p))
        names[i] = name
    return {v: caps[k] for k, v in names.items()}


# ---------------------------------------------------------------------------------------------- albedo
_SKIN_TONES = np.array([  # sRGB, light to dark
    [0.95, 0.80, 0.70], [0.89, 0.71, 0.59], [0.80, 0.60, 0.46], [0.66, 0.46, 0.33], [0.49, 0.33, 0.23],
    [0.34, 0.23, 0.16]])
_IRIS = np.array([[0.30, 0.18, 0.10], [0.20, 0.12, 0.07], [0.30, 0.42, 0.55], [0.33, 0.40, 0.25]])


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def procedural_albedo(vertices_mm, landmarks: dict, caps: dict | None = None, seed: int = 0) -> np.ndarray:
    """Per-vertex albedo [N, 3] in [0, 1] for an ICT head in mm (+Y up, +Z front, +X = subject's left).

    Skin tone drawn from a light-to-dark palette, smooth low-frequency tone variation, redder cheeks, nose and
    ears, red lips around the mouth opening, dark brows above the eyes, eyes (sclera, iris, pupil) and a dark
    mouth interior on the caps. Deterministic in ``seed``.
    """
    rng = np.random.default_rng([int(seed), 1])
    V = np.asarray(vertices_mm, dtype=np.float64)
    n = len(V)
    t = rng.uniform(0, len(_SKIN_TONES) - 1)
    i0 = int(np.floor(t))
    i1 = min(i0 + 1, len(_SKIN_TONES) - 1)
    base = _SKIN_TONES[i0] * (1 - (t - i0)) + _SKIN_TONES[i1] * (t - i0)
    base = base * rng.uniform(0.95, 1.05, 3) ** 0.5
    col = np.tile(base, (n, 1))
    # low-frequency variation: a few random plane waves (40-120 mm wavelength), +-5 % brightness
    var = np.zeros(n)
    for _ in range(6):
        k = rng.standard_normal(3)
        k *= 2 * np.pi / (np.linalg.norm(k) * rng.uniform(40, 120))
        var += np.sin(V @ k + rng.uniform(0, 2 * np.pi))
    col *= (1 + 0.05 * var / 6 * 2.0)[:, None]
    red = np.array([1.0, 0.78, 0.78])  # multiplicative redness tint

    L = {k: V[i] for k, i in landmarks.items()}
    eye_c = (L["right_eye"] + L["left_eye"]) / 2
    mouth_c = (L["right_lips"] + L["left_lips"]) / 2
    def blob(center, sigma, strength, tint):
        w = strength * np.exp(-np.sum((V - center) ** 2, axis=1) / (2 * sigma ** 2))
        return w[:, None] * (np.asarray(tint) - 1.0)

    tint = np.zeros((n, 3))
    blush = rng.uniform(0.15, 0.45)
    for side in ("right", "left"):
        cheek = (L[f"{side}_eye"] + L[f"{side}_lips"]) / 2 + np.array([np.sign(L[f"{side}_eye"][0]) * 22, 0, -8])
        tint += blob(cheek, 20.0, blush, red)
    tint += blob(L["nose_tip"], 12.0, 0.4 * blush, red)
    ear_x = np.abs(V[:, 0]) > 0.85 * np.abs(V[:, 0]).max()
    tint[ear_x] += 0.3 * (red - 1.0)
    col *= 1 + tint

    # lips: band around the mouth opening, within the mouth corners
    half_w = np.linalg.norm(L["left_lips"] - L["right_lips"]) / 2
    if caps and "mouth" in caps:
        loop_pts = V[caps["mouth"]["loop"]]
        d_loop = cKDTree(loop_pts).query(V)[0]
    else:
        d_loop = np.linalg.norm(V - mouth_c, axis=1)
    rel = V - mouth_c
    lat = np.abs(rel[:, 0]) / (half_w + 1.0)
    thick = np.where(rel[:, 1] < 0, 10.0, 7.5)  # lower lip fuller
    w_lip = (1 - _smoothstep(0.6, 1.0, d_loop / thick)) * (1 - _smoothstep(0.85, 1.05, lat))
    w_lip *= (rel[:, 2] > -15).astype(float)
    lip_col = base * np.array([0.88, 0.6, 0.58]) * rng.uniform(0.9, 1.05)
    col = col * (1 - w_lip[:, None]) + lip_col * w_lip[:, None]

    # brows: an arc above each eye, in frontal projection, on front-facing skin
    hair_l = rng.uniform(0.05, 0.35) * (0.5 + 0.5 * base.mean())
    hair = np.array([hair_l * 1.15, hair_l * 0.9, hair_l * 0.7])
    iod = np.linalg.norm(L["left_eye"] - L["right_eye"])
    for side in ("right", "left"):
        e = L[f"{side}_eye"]
        sgn = np.sign(e[0] - eye_c[0]) or 1.0
        s = np.linspace(0, 1, 40)
        x = e[0] + sgn * (-0.12 + 1.45 * s) * iod
        y = e[1] + (0.52 + 0.20 * np.sin(np.pi * np.clip(s * 1.3, 0, 1)) - 0.15 * s) * iod
        curve = np.stack([x, y], 1)
        dist, j = cKDTree(curve).query(V[:, :2])
        half = (0.16 - 0.09 * s[j]) * iod  # thicker near the nose
        front = (V[:, 2] > e[2] - 0.8 * iod) & (np.abs(V[:, 0] - e[0]) < 1.8 * iod)
        w_b = (1 - _smoothstep(0.55, 1.0, dist / half)) * front * rng.uniform(0.75, 0.95)
        col = col * (1 - w_b[:, None]) + hair * w_b[:, None]

    # caps: eyes (sclera / iris / pupil by distance from the centroid), mouth interior, neck
    if caps:
        iris = _IRIS[rng.integers(len(_IRIS))]
        for name, cap in caps.items():
            idx = cap["vertices"]
            if name.endswith("eye"):
                d = np.linalg.norm(V[idx] - cap["centroid"], axis=1)
                c = np.tile([0.86, 0.82, 0.78], (len(idx), 1))
                c[d < 5.5] = iris
                c[d < 2.2] = [0.03, 0.03, 0.03]
                col[idx] = c
            elif name == "mouth":
                col[idx] = [0.25, 0.07, 0.07]
            else:
                col[idx] = base * 0.8
    return np.clip(col, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- sampler
def sample_ict_head(seed: int, clip: float = 2.5, n_modes: int = 100, rings: int = 5, albedo: bool = True,
                    basis: ICTBasis | None = None) -> trimesh.Trimesh:
    """A random ICT-FaceKit head, watertight, in **mm**, with procedural vertex colours.

    ``seed`` determines everything (identity weights ~ N(0, 1) clipped to ``clip``, albedo); ``n_modes`` keeps
    the first modes. ``mesh.metadata`` holds ``landmarks`` (name -> vertex index; the first 11,248 vertices are
    the ICT skin vertices, cap vertices follow), ``weights``, ``seed`` and ``source``.
    """
    basis = basis or load_ict_basis()
    w = ict_weights(seed, n_modes=min(n_modes, len(basis.modes_cm)), clip=clip)
    V_mm = ict_vertices_cm(w, basis) * 10.0
    V, F, caps = cap_loops(V_mm, basis.faces, rings=rings)
    mesh = trimesh.Trimesh(V, F, process=False)
    named = _classify_caps(caps, V, basis.landmarks) if basis.landmarks else {}
    if albedo:
        if not basis.landmarks:
            raise SceneError(None, "ICT landmarks.json is needed for the procedural albedo")
        cols = procedural_albedo(V, basis.landmarks, named, seed=seed)
        rgba = np.concatenate([np.round(cols * 255), np.full((len(V), 1), 255)], axis=1).astype(np.uint8)
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    mesh.metadata.update(landmarks=dict(basis.landmarks), weights=w.tolist(), seed=int(seed),
                         source=f"ICT-FaceKit identity seed={seed} clip={clip}")
    return mesh


# ---------------------------------------------------------------------------------------------- converter
def convert_ict_facekit(src_dir, out_path=None, n_skin: int = N_SKIN_VERTICES) -> dict:
    """Rebuild ``ict_head_basis.npz`` from an ICT-FaceKit ``FaceXModel`` folder.

    Reads ``generic_neutral_mesh.obj`` and every ``identity*.obj`` (sorted) by their ``v`` records in file
    order, keeps the first ``n_skin`` vertices, takes ``modes_cm[k] = identity_k - neutral`` and the polygons
    whose vertices are all skin vertices (quads split as (a, b, c), (a, c, d)). Writes ``out_path`` when given
    and returns the arrays.
    """
    src = Path(src_dir)
    neutral_path = src / "generic_neutral_mesh.obj"
    if not neutral_path.is_file():
        raise SceneError(neutral_path, "generic_neutral_mesh.obj not found in the ICT-FaceKit folder")
    id_paths = sorted(src.glob("identity*.obj"))
    if not id_paths:
        raise SceneError(src, "no identity*.obj files found")
    Vn, _, polys = read_obj(neutral_path, return_polygons=True)
    if len(Vn) < n_skin:
        raise SceneError(neutral_path, f"has {len(Vn)} vertices, fewer than the {n_skin} skin vertices")
    skin = [p for p in polys if max(p) < n_skin]
    tris = np.array([(p[0], p[k], p[k + 1]) for p in skin for k in range(1, len(p) - 1)], dtype=np.int32)
    modes = []
    for p in id_paths:
        Vi, _ = read_obj(p)
        if len(Vi) != len(Vn):
            raise SceneError(p, f"has {len(Vi)} vertices but the neutral mesh has {len(Vn)}")
        modes.append((Vi[:n_skin] - Vn[:n_skin]).astype(np.float32))
    out = {"mean_cm": Vn[:n_skin].astype(np.float32), "modes_cm": np.stack(modes), "faces": tris}
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out_path, **out)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m headrecon.data.ict",
        description="Rebuild ict_head_basis.npz (mean_cm, modes_cm, faces) from an ICT-FaceKit FaceXModel folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("src", help="folder with generic_neutral_mesh.obj and identity*.obj")
    ap.add_argument("out", help="output .npz")
    ap.add_argument("--n-skin", type=int, default=N_SKIN_VERTICES, help="number of leading skin vertices to keep")
    args = ap.parse_args(argv)
    out = convert_ict_facekit(args.src, args.out, n_skin=args.n_skin)
    print(f"wrote {args.out}: {out['modes_cm'].shape[0]} modes, {len(out['mean_cm'])} vertices, "
          f"{len(out['faces'])} triangles")


if __name__ == "__main__":
    main()
