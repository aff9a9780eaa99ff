"""Procedural hair and semantic labels for test heads (``headrecon-make-scene --hair STYLE``).

All our test heads are bald; Wang et al.'s method (and every method's hair error) needs heads with hair. This
module adds a **closed hair volume over the scalp** to a head mesh in mm (+Y up, +Z out of the face) that has the
six H3DS landmarks:

* The hair's outer surface is the level set ``d(x) = t(x)`` of the head's signed distance ``d`` (from dense
  surface samples and their face normals) and a thickness field ``t`` that is zero below a hairline and grows
  smoothly above it (:class:`HairStyle`: crown and lowest thickness, hairline heights at the forehead, in front of
  the ears and at the nape, an optional fringe). It is extracted with marching cubes
  (:func:`skimage.measure.marching_cubes`) where ``t`` exceeds half a millimetre, so it meets the scalp along the
  hairline; the scalp stays beneath it in the rendered mesh (no gap can show through), and the ground truth keeps
  the head only where at most 1 mm of hair covers it.
* Strands flow along the meridians from a crown point above and behind the skull's centre (:func:`strand_directions`):
  the albedo has thin dark / light stripes along them (level lines of the azimuth around the crown axis), so a
  Gabor filter bank has a true orientation to find, and the true 2D orientation of every hair pixel can be rendered
  (:func:`orientation_map`).
* Every vertex carries a semantic label (:data:`SEMANTIC_CLASSES`): hair, and on the head skin, brows, eyes, lips,
  ears and neck from landmark-relative rules (:func:`head_labels`; approximate outlines, meant for label maps such
  as a face parser would give).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from .regions import landmark_frame
from .semantics import SEMANTIC_CLASSES

__all__ = ["SEMANTIC_CLASSES", "HairStyle", "HAIR_STYLES", "HairedHead", "add_hair", "head_labels",
           "strand_directions", "orientation_map", "label_map"]

_L = {name: i for i, name in enumerate(SEMANTIC_CLASSES)}


@dataclass(frozen=True)
class HairStyle:
    """Hair outline and thickness, heights in mm above the eye line (negative: below), thickness in mm."""

    crown_mm: float      # thickness over the crown
    bottom_mm: float     # thickness at the lowest hairline (hair hangs fuller)
    front_mm: float      # hairline on the forehead
    side_mm: float       # hairline in front of / over the ears
    back_mm: float       # hairline at the nape
    fringe_mm: float = 30.0  # forehead hairline with --fringe (just above the brows), over |x| < 50 mm


HAIR_STYLES = {
    "short": HairStyle(crown_mm=6.0, bottom_mm=5.0, front_mm=68.0, side_mm=32.0, back_mm=-62.0),
    "medium": HairStyle(crown_mm=14.0, bottom_mm=24.0, front_mm=64.0, side_mm=-28.0, back_mm=-92.0),
    "bob": HairStyle(crown_mm=20.0, bottom_mm=38.0, front_mm=62.0, side_mm=-80.0, back_mm=-112.0),
}

# stripes around the crown axis (about 12 mm apart at the skull's equator)
_STRIPES = 48


def _smoothstep(e0, e1, x):
    t = np.clip((np.asarray(x, dtype=np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


@dataclass
class _Frame:
    eyes: np.ndarray
    x: np.ndarray
    up: np.ndarray
    front: np.ndarray
    centre: np.ndarray  # skull centre (mm)
    axis: np.ndarray    # crown axis (unit)
    iod: float
    mouth_h: float
    mouth_f: float

    def coords(self, P):
        d = np.asarray(P, dtype=np.float64) - self.eyes
        return d @ self.x, d @ self.up, d @ self.front


def _frame(V, landmarks) -> _Frame:
    V = np.asarray(V, dtype=np.float64)
    eyes, x, up, front = landmark_frame(V, landmarks)
    pt = {k: V[int(i)] if np.ndim(i) == 0 else np.asarray(i, dtype=np.float64) for k, i in landmarks.items()}
    iod = float(np.linalg.norm(pt["left_eye"] - pt["right_eye"]))
    d = V - eyes
    xs, hs, fs = d @ x, d @ up, d @ front
    top = hs > 20.0  # the skull above the brows: its front-back and left-right middle
    fc = 0.5 * (fs[top].max() + fs[top].min()) if top.any() else -85.0
    xc = 0.5 * (xs[top].max() + xs[top].min()) if top.any() else 0.0
    centre = eyes + x * xc + up * 25.0 + front * fc
    axis = up - 0.4 * front
    mouth = 0.5 * (pt["right_lips"] + pt["left_lips"]) - eyes
    return _Frame(eyes, x, up, front, centre, axis / np.linalg.norm(axis), iod, float(mouth @ up),
                  float(mouth @ front))


def _hair_weight(fr: _Frame, P, style: HairStyle, fringe: bool):
    """(weight in [0, 1], hairline height) of points: 1 well above the hairline, 0 below it."""
    xs, hs, fs = fr.coords(P)
    cx, _, cf = (c[0] for c in fr.coords(fr.centre[None]))
    psi = np.arctan2(xs - cx, fs - cf)
    c = np.cos(psi)  # 1 in front of the skull's centre, -1 behind it
    front_h = np.full_like(c, style.front_mm)
    if fringe:
        front_h = style.front_mm + (style.fringe_mm - style.front_mm) * (1 - _smoothstep(38.0, 58.0, np.abs(xs - cx)))
    h_line = np.where(c >= 0, style.side_mm + (front_h - style.side_mm) * _smoothstep(0.1, 0.35, c),
                      style.side_mm + (style.back_mm - style.side_mm) * _smoothstep(0.0, 0.7, -c))
    return _smoothstep(h_line - 2.0, h_line + 10.0, hs), h_line


def _thickness(fr: _Frame, P, style: HairStyle, fringe: bool):
    w, h_line = _hair_weight(fr, P, style, fringe)
    hs = fr.coords(P)[1]
    low = min(style.side_mm, style.back_mm)
    s = np.clip((40.0 - hs) / (40.0 - low), 0.0, 1.0)
    return w * (style.crown_mm + (style.bottom_mm - style.crown_mm) * s)


def strand_directions(fr: _Frame, P, normals=None):
    """Unit strand directions [N, 3] at points: down the meridians from the crown axis (tangent to the surface
    when ``normals`` are given)."""
    u = np.asarray(P, dtype=np.float64) - fr.centre
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
    d = -fr.axis[None] + u * (u @ fr.axis)[:, None]  # increasing polar angle: away from the crown
    if normals is not None:
        n = np.asarray(normals, dtype=np.float64)
        d = d - n * np.sum(d * n, axis=1, keepdims=True)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)


def _stripes(fr: _Frame, P, rng):
    """Stripe pattern in [0, 1] along the strands (level lines of the azimuth around the crown axis), faded near
    the crown where the lines converge."""
    u = np.asarray(P, dtype=np.float64) - fr.centre
    a = fr.axis
    e1 = np.cross(a, fr.x)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(a, e1)
    phi = np.arctan2(u @ e2, u @ e1)
    polar = np.arccos(np.clip((u @ a) / np.maximum(np.linalg.norm(u, axis=1), 1e-9), -1, 1))
    ph = rng.uniform(0, 2 * np.pi, 2)
    s = 0.5 + 0.35 * np.cos(_STRIPES * phi + ph[0]) + 0.15 * np.cos(2 * _STRIPES * phi + ph[1])
    fade = _smoothstep(np.radians(12.0), np.radians(35.0), polar)
    return 0.5 + (s - 0.5) * fade


def head_labels(vertices, landmarks) -> np.ndarray:
    """Per-vertex semantic labels (indices into :data:`SEMANTIC_CLASSES`) of a bald head in mm, from the H3DS
    landmarks (``right_eye`` / ``left_eye`` are the inner eye corners): eyes over 30 mm outwards from each inner
    corner, brows in an arc 15-30 mm above them, lips around the mouth corners, ears at the head's widest part
    80-140 mm behind the eyes, neck below the jaw (and the bust below it), skin elsewhere. Approximate outlines,
    like a face parser's."""
    V = np.asarray(vertices, dtype=np.float64)
    fr = _frame(V, landmarks)
    xs, hs, fs = fr.coords(V)
    pt = {k: V[int(i)] for k, i in landmarks.items()}
    lab = np.full(len(V), _L["skin"], dtype=np.uint8)
    # neck: below the jaw (the chin ~ 45 mm below the mouth; behind it the jaw line rises towards the ears)
    chin_h = fr.mouth_h - 45.0
    jaw_h = chin_h + 25.0 * _smoothstep(fr.mouth_f - 20.0, fr.mouth_f - 90.0, fs)
    lab[hs < jaw_h - 8.0] = _L["neck"]
    # ears: the widest part of the head 80-140 mm behind the eyes, between the mouth and 25 mm above the eyes
    band = (hs > fr.mouth_h - 5.0) & (hs < 25.0) & (fs < -80.0) & (fs > -140.0)
    for side in (-1, 1):
        sel = band & (np.sign(xs) == side)
        if sel.any():
            ext = np.abs(xs[sel]).max()
            lab[sel & (np.abs(xs) > ext - 14.0)] = _L["ears"]
    for side in ("right", "left"):
        e = pt[f"{side}_eye"] - fr.eyes
        ex, eh, ef = e @ fr.x, e @ fr.up, e @ fr.front
        out = (xs - ex) * np.sign(ex)  # mm outwards from the inner corner
        arc = eh + 20.0 + 5.0 * np.sin(np.pi * np.clip(out / 45.0, 0.0, 1.0))
        lab[(out > -5.0) & (out < 45.0) & (np.abs(hs - arc) < 4.5) & (fs > ef - 25.0)] = _L["brows"]
        lab[(out > -2.0) & (out < 30.0) & (np.abs(hs - eh) < 7.0) & (fs > ef - 15.0)] = _L["eyes"]
    m = 0.5 * (pt["right_lips"] + pt["left_lips"]) - fr.eyes
    half_w = 0.5 * np.linalg.norm(pt["left_lips"] - pt["right_lips"])
    dh = hs - m @ fr.up
    lips = (np.abs(xs - m @ fr.x) < half_w + 2.0) & (dh < 8.0) & (dh > -10.0) & (fs > m @ fr.front - 18.0)
    lab[lips] = _L["lips"]
    return lab


@dataclass
class HairedHead:
    """The head with hair: ``parts`` to render (the head with its own texture or colours, the scalp under the
    hair kept; the hair shell with vertex colours), ``gt`` (the ground truth: the head where at most 1 mm of hair
    covers it, plus the hair surface), per-vertex labels of the parts (concatenated in order) and of ``gt``, the
    landmarks on ``gt`` and the frame strand directions are computed in."""

    parts: list
    gt: trimesh.Trimesh
    render_labels: np.ndarray
    gt_labels: np.ndarray
    gt_landmarks: dict
    frame: _Frame
    style: str
    fringe: bool

    def strand_directions(self, points, normals=None):
        return strand_directions(self.frame, points, normals)


def _head_samples(mesh: trimesh.Trimesh, spacing_mm: float, rng):
    """Points on the surface about ``spacing_mm`` apart (area-weighted per face) and their face normals."""
    area = mesh.area_faces
    n = int(np.ceil(area.sum() / spacing_mm ** 2))
    face = rng.choice(len(area), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
    tri = mesh.triangles[face]
    return np.einsum("nk,nkj->nj", bary, tri), mesh.face_normals[face]


def _hair_field(mesh, fr: _Frame, st: HairStyle, fringe: bool, t_v, voxel_mm: float, rng):
    """``(d(x) - t(x) on a grid of step voxel_mm, grid origin)`` around the hair region. ``d``: the distance to
    surface samples 1 mm apart, signed by the sample's face normal, where the sample is the one in the nearest
    occupied voxel (an exact Euclidean distance transform, :func:`scipy.ndimage.distance_transform_edt`, finds
    that voxel; the distance is then measured to the sample itself, so the field is smooth)."""
    from scipy.ndimage import distance_transform_edt

    V = np.asarray(mesh.vertices, dtype=np.float64)
    pts, nrm = _head_samples(mesh, min(1.0, 0.7 * voxel_mm), rng)
    pad = max(st.crown_mm, st.bottom_mm) + 4 * voxel_mm
    lo = V[t_v > 0].min(axis=0) - pad
    n = np.ceil((V[t_v > 0].max(axis=0) + pad - lo) / voxel_mm).astype(int) + 1
    ijk = np.round((pts - lo) / voxel_mm).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < n), axis=1)
    flat = np.ravel_multi_index(tuple(ijk[inside].T), tuple(n))
    owner = np.full(int(np.prod(n)), -1, dtype=np.int64)
    owner[flat] = np.nonzero(inside)[0]
    free = (owner < 0).reshape(*n)
    ind = distance_transform_edt(free, return_distances=False, return_indices=True)
    near = owner[np.ravel_multi_index(tuple(ind.reshape(3, -1)), tuple(n))]
    del ind
    field = np.empty(int(np.prod(n)))
    chunk = 1 << 20
    for s0 in range(0, len(field), chunk):
        q = np.arange(s0, min(s0 + chunk, len(field)))
        P = lo + np.stack(np.unravel_index(q, tuple(n)), axis=1) * voxel_mm
        k = near[q]
        diff = P - pts[k]
        sign = np.where(np.sum(diff * nrm[k], axis=1) < 0, -1.0, 1.0)
        field[q] = sign * np.linalg.norm(diff, axis=1) - _thickness(fr, P, st, fringe)
    return field.reshape(*n), lo


def add_hair(mesh: trimesh.Trimesh, style: str = "medium", fringe: bool = False, landmarks: dict | None = None,
             seed: int = 0, voxel_mm: float = 1.5, colour=None) -> HairedHead:
    """Add hair of ``style`` (:data:`HAIR_STYLES`) to a head ``mesh`` in mm with outward normals and the six
    landmarks (``landmarks`` or ``mesh.metadata["landmarks"]``: name -> vertex index). ``seed`` draws the hair
    colour and stripe phases; ``voxel_mm``: the marching-cubes grid step of the hair surface."""
    from skimage.measure import marching_cubes

    if style not in HAIR_STYLES:
        raise ValueError(f"hair style {style!r}: expected one of {sorted(HAIR_STYLES)}")
    st = HAIR_STYLES[style]
    if landmarks is None:
        landmarks = mesh.metadata.get("landmarks") if isinstance(mesh.metadata, dict) else None
    if not landmarks:
        raise ValueError("hair needs the head's landmarks (right_eye, left_eye, nose_tip, right_lips, left_lips)")
    rng = np.random.default_rng([int(seed), 7])
    V = np.asarray(mesh.vertices, dtype=np.float64)
    F = np.asarray(mesh.faces)
    fr = _frame(V, landmarks)

    # signed distance to the head near the hair region, thickness, marching cubes
    t_v = _thickness(fr, V, st, fringe)
    if not (t_v > 0.5).any():
        raise ValueError("no part of the head lies above the hairline: are the mesh's units mm and +Y up?")
    field, lo = _hair_field(mesh, fr, st, fringe, t_v, voxel_mm, rng)
    mv, mf, _, _ = marching_cubes(field, level=0.0, spacing=(voxel_mm,) * 3)
    mv = mv + lo
    # skimage's own winding gives outward normals here (the field d - t grows outwards); reversing it, as before
    # 46f196c, turned 96 % of the hair's normals inwards (tests/test_hair.py checks the orientation)
    shell = trimesh.Trimesh(mv, mf, process=False)
    keep = _thickness(fr, shell.triangles_center, st, fringe) > 0.5
    shell.update_faces(keep)
    shell.remove_unreferenced_vertices()
    parts = shell.split(only_watertight=False)
    if len(parts) > 1:  # stray bits at the grid's edge: keep the hair, drop specks
        big = max(len(p.faces) for p in parts)
        shell = trimesh.util.concatenate([p for p in parts if len(p.faces) >= 0.02 * big])

    # colours: the head's own, the scalp under the hair and the shell in the hair colour with stripes
    base = np.array([0.06, 0.045, 0.035]) + rng.uniform(0.0, 0.32) * np.array([1.0, 0.78, 0.52])
    if colour is not None:
        base = np.asarray(colour, dtype=np.float64)
    covered = t_v > 0.5
    head = mesh.copy()
    if head.visual.kind == "vertex":  # vertex colours: the scalp under the hair in the hair colour
        vc = np.array(head.visual.vertex_colors)
        vc[covered, :3] = np.round(base * 255)
        head.visual = trimesh.visual.ColorVisuals(head, vertex_colors=vc)
    s = _stripes(fr, shell.vertices, rng)
    hair_rgb = np.clip(base[None] * (0.45 + 1.1 * s[:, None]) + 0.02 * s[:, None], 0, 1)
    shell.visual = trimesh.visual.ColorVisuals(
        shell, vertex_colors=np.concatenate([np.round(hair_rgb * 255), np.full((len(hair_rgb), 1), 255)],
                                            1).astype(np.uint8))

    labels = head_labels(V, landmarks)
    labels[covered] = _L["hair"]
    render_labels = np.concatenate([labels, np.full(len(shell.vertices), _L["hair"], dtype=np.uint8)])

    # ground truth: the head where at most 1 mm of hair covers it, plus the hair surface
    head_keep = (t_v[F] <= 1.0).all(axis=1)
    used = np.unique(F[head_keep])
    remap = np.full(len(V), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    gt = trimesh.Trimesh(np.concatenate([V[used], shell.vertices]),
                         np.concatenate([remap[F[head_keep]], shell.faces + len(used)]), process=False)
    gt_labels = np.concatenate([labels[used], np.full(len(shell.vertices), _L["hair"], dtype=np.uint8)])
    gt_tree = cKDTree(gt.vertices)
    gt_landmarks = {k: int(gt_tree.query(V[int(i)])[1]) for k, i in landmarks.items()}
    return HairedHead([head, shell], gt, render_labels, gt_labels, gt_landmarks, fr, style, fringe)


def label_map(result, labels) -> np.ndarray:
    """uint8 [H, W] class map of a :class:`~headrecon.data.synthetic.RenderResult` from per-vertex ``labels`` of
    the rendered mesh (0 = background)."""
    out = np.zeros(result.vertex.shape, dtype=np.uint8)
    hit = result.vertex >= 0
    out[hit] = np.asarray(labels)[result.vertex[hit]]
    return out


def orientation_map(result, camera, hair: HairedHead, labels) -> np.ndarray:
    """The true 2D strand orientation of every hair pixel: angle in [0, pi) of the projected strand direction
    (image x right, y down; ``(cos a, sin a)``), NaN elsewhere."""
    sem = label_map(result, labels)
    out = np.full(sem.shape, np.nan, dtype=np.float32)
    sel = sem == _L["hair"]
    if not sel.any():
        return out
    p = result.points[sel]
    d = hair.strand_directions(p, result.normals[sel])
    a = camera.project(p)
    b = camera.project(p + 0.5 * d)
    v = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    out[sel] = np.mod(np.arctan2(v[:, 1], v[:, 0]), np.pi)
    return out
