"""Heads with shoulders ("busts"): Anny bodies cut like an H3DS scan, and ICT-FaceKit heads joined to them.

ICT-FaceKit heads end at the neck; real scans (H3DS, the Lee Perry-Smith scan) go on to the shoulders and the
upper chest. Two sources of busts, both in **mm in the ICT frame** (+Y up, +Z out of the face, +X = the subject's
left), with vertex colours and ``mesh.metadata["landmarks"]`` (the six H3DS landmarks as vertex indices):

* :func:`anny_bust` — an adult body of **Anny** (NAVER; PyPI ``anny``, Apache-2.0 code, MakeHuman-derived model
  data CC0 inside the wheel), phenotype drawn from ``seed`` (:func:`anny_phenotype`), arms lowered from the rest
  A-pose, turned and scaled into the ICT frame (Anny: metres, +Z up, -Y front), placed by its six landmarks
  (:data:`ANNY_LANDMARKS`, vertex indices on Anny's default topology, found by ``tools/make_anny_landmarks.py``)
  rigidly onto the mean ICT head's, and cut by a horizontal plane below the shoulders (:data:`BUST_DEPTH_MM` below
  the mouth corners; ``depth_mm`` sets another depth, e.g. 340 mm for a photo down to below the armpits).
  Procedural skin albedo (:func:`headrecon.data.ict.procedural_albedo`) on the head, a garment below a random
  neckline. Anny's mesh has open eye sockets (MakeHuman's eyes are separate meshes): two
  eyeballs, spheres at Anny's ``eye.R`` / ``eye.L`` bones just inside the socket walls, fill them (their vertices
  after the body's, ``metadata["n_body_vertices"]``). What no camera can see (the eyeballs' backs, the socket
  walls behind them, Anny's mouth and nasal cavities, bits of them seen only through a crevice) is removed: a
  scan has no such surfaces.
* :func:`composite_bust` — ICT head ``seed`` on Anny bust ``seed``: the Anny body is scaled and placed by a
  similarity of its landmarks onto the ICT head's, its neck is reshaped over 60 mm so that its cross-section
  matches the ICT neck's at the junction (:data:`JUNCTION_BELOW_MOUTH_MM` below the mouth corners), the ICT head is
  cut there and the Anny bust 10 mm lower, and a band of triangles joins the two cut loops. The face, scalp and
  ears are ICT-FaceKit's; neck base, shoulders and chest are Anny's.

Seeds follow the ICT convention (:mod:`headrecon.priors`): ``0 .. 99,999`` for training, ``100,000 ..`` held out.
Anny's first use builds its model (Warp kernels are compiled and cached in the user's cache folder: minutes
once). The bust frame for priors is :data:`headrecon.priors.normalization.BUST_NORMALIZATION`.
"""
from __future__ import annotations

import functools

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from .errors import SceneError
from .geometry import apply_transform, keep_faces, outer_faces, umeyama

__all__ = ["ANNY_LANDMARKS", "ANNY_TO_ICT", "BUST_DEPTH_MM", "EYEBALL_GAP_MM", "JUNCTION_BELOW_MOUTH_MM",
           "anny_available", "anny_model", "anny_phenotype", "anny_body", "anny_bust", "composite_bust", "bust_mesh",
           "BUST_SOURCES"]

# Anny (metres, +Z up, -Y front, +X = the subject's left) -> ICT axes (mm): x' = x, y' = z, z' = -y.
ANNY_TO_ICT = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]) * 1000.0
# The six H3DS landmarks on Anny's default topology (vertex indices), from MediaPipe on frontal renders of
# adult bodies (tools/make_anny_landmarks.py prints them): inner eye corners, nose tip, subnasale, mouth corners.
ANNY_LANDMARKS = {"right_eye": 4853, "left_eye": 6836, "nose_tip": 302, "nose_base": 312, "right_lips": 3719,
                  "left_lips": 10372}
# Where the bust ends: a horizontal plane this far below the mouth corners (uniform range, mm). H3DS scans and
# the Lee Perry-Smith scan end about 190-260 mm below the mouth, below the shoulders, above mid-chest.
BUST_DEPTH_MM = (190.0, 250.0)
# Where an ICT head meets an Anny bust: below the chin and above the ICT neck's own (slanted) cut.
JUNCTION_BELOW_MOUTH_MM = 80.0
BUST_SOURCES = ("anny", "composite")
# Anny's mesh has open eye sockets; an eyeball (a sphere at the eye bone) fills each, this far from the lids.
EYEBALL_GAP_MM = 0.5
_IRISES = np.array([[0.30, 0.18, 0.10], [0.18, 0.10, 0.06], [0.25, 0.35, 0.50], [0.30, 0.38, 0.25]])
_ARM_DROP_DEG = (35.0, 50.0)  # arms lowered from Anny's rest A-pose (about 45 deg from the body)
_GARMENTS = np.array([[0.12, 0.12, 0.14], [0.85, 0.85, 0.83], [0.20, 0.28, 0.45], [0.45, 0.12, 0.12],
                      [0.30, 0.35, 0.25], [0.55, 0.55, 0.58], [0.65, 0.55, 0.40]])


def anny_available() -> bool:
    """Whether the ``anny`` package can be imported."""
    try:
        import anny  # noqa: F401
    except Exception:
        return False
    return True


@functools.lru_cache(maxsize=1)
def anny_model():
    """The Anny body model (built once per process; the first build on a machine compiles Warp kernels)."""
    try:
        import anny
    except Exception as exc:  # ImportError, or warp failing to initialise
        raise SceneError(None, f"the Anny body model is not available ({type(exc).__name__}: {exc}); "
                               "install it with `pip install anny`") from exc
    return anny.Anny()


def anny_phenotype(seed: int) -> dict:
    """Adult phenotype of Anny body ``seed`` (Anny's [0, 1] parameters): gender uniform over [0, 1] (0 female,
    1 male), age 0.4-1.0 (about 21 to 90 years; MakeHuman's scale: 0.5 = 25 years, 1 = 90), muscle and weight
    0.1-0.9, height 0.2-0.9, proportions 0.2-0.8 (extremes left out)."""
    rng = np.random.default_rng([int(seed), 31])
    return {"gender": float(rng.uniform(0.0, 1.0)), "age": float(rng.uniform(0.4, 1.0)),
            "muscle": float(rng.uniform(0.1, 0.9)), "weight": float(rng.uniform(0.1, 0.9)),
            "height": float(rng.uniform(0.2, 0.9)), "proportions": float(rng.uniform(0.2, 0.8))}


def anny_body(phenotype: dict, arm_drop_deg: float = 40.0, return_eyes: bool = False):
    """(vertices [V, 3] in mm, ICT axes, not yet placed; faces [F, 3]) of an Anny body with the arms lowered by
    ``arm_drop_deg`` from the rest A-pose; with ``return_eyes`` also the eyeball centres [2, 3] (right, left: the
    heads of Anny's ``eye.R`` / ``eye.L`` bones, same frame)."""
    import roma
    import torch

    m = anny_model()
    dt = m.dtype if isinstance(getattr(m, "dtype", None), torch.dtype) else torch.float64

    def rot_z(deg):
        T = torch.eye(4, dtype=dt)[None].clone()
        T[:, :3, :3] = roma.rotvec_to_rotmat(torch.tensor([[0.0, 0.0, np.deg2rad(deg)]], dtype=dt))
        return T

    pose = {"upperarm01.L": rot_z(-arm_drop_deg), "upperarm01.R": rot_z(arm_drop_deg)}
    ph = {k: torch.tensor([float(phenotype[k])], dtype=dt) for k in m.phenotype_labels}
    with torch.no_grad():
        out = m(pose_parameters=pose, phenotype_kwargs=ph)
    V = out["vertices"][0].double().numpy()
    F = m.get_triangular_faces().numpy().astype(np.int64)
    if not return_eyes:
        return V @ ANNY_TO_ICT.T, F
    B = out["bone_poses"][0].double().numpy()
    eyes = np.stack([B[list(m.bone_labels).index(b), :3, 3] for b in ("eye.R", "eye.L")])
    return V @ ANNY_TO_ICT.T, F, eyes @ ANNY_TO_ICT.T


def _ict_mean_landmarks() -> dict:
    from .ict import load_ict_basis

    b = load_ict_basis()
    return {k: b.mean_cm[i].astype(np.float64) * 10.0 for k, i in b.landmarks.items()}


def _landmark_array(V, lm: dict, names) -> np.ndarray:
    return np.stack([V[int(lm[k])] for k in names])


def _check_landmarks():
    if any(int(v) < 0 for v in ANNY_LANDMARKS.values()):
        raise SceneError(None, "ANNY_LANDMARKS are not set (run tools/make_anny_landmarks.py)")


def _slice(mesh: trimesh.Trimesh, y: float, keep_above: bool) -> trimesh.Trimesh:
    """The part of ``mesh`` above (or below) the plane ``Y = y``, triangles cut exactly at the plane, no cap;
    vertex colours carried from the nearest original vertex."""
    normal = np.array([0.0, 1.0, 0.0]) * (1.0 if keep_above else -1.0)
    V, F = trimesh.intersections.slice_faces_plane(np.asarray(mesh.vertices), np.asarray(mesh.faces), normal,
                                                   np.array([0.0, y, 0.0]))[:2]
    out = trimesh.Trimesh(V, F, process=False)
    out.merge_vertices(merge_tex=True, merge_norm=True)  # the cut makes one new vertex per cut edge and face
    out.remove_unreferenced_vertices()
    return _carry_colors(mesh, out)


def _carry_colors(src: trimesh.Trimesh, dst: trimesh.Trimesh) -> trimesh.Trimesh:
    """``dst`` with the vertex colours of the nearest ``src`` vertex (when ``src`` has vertex colours)."""
    cols = getattr(src.visual, "vertex_colors", None)
    if cols is not None and len(cols) == len(src.vertices):
        _, j = cKDTree(src.vertices).query(dst.vertices)
        dst.visual = trimesh.visual.ColorVisuals(dst, vertex_colors=np.asarray(cols)[j])
    return dst


def _loop_on_plane(mesh: trimesh.Trimesh, y: float, tol: float = 1e-6) -> np.ndarray:
    """Vertex indices of the boundary loop(s) lying on ``Y = y`` (the largest one)."""
    from .ict import boundary_loops

    loops = [lp for lp in boundary_loops(mesh.faces) if np.all(np.abs(mesh.vertices[lp, 1] - y) < tol)]
    if not loops:
        raise SceneError(None, f"no cut loop at y = {y:.1f} mm")
    return max(loops, key=len)


def _section(V, y: float, band: float = 4.0):
    """Centre (x, z) and half extents (x, z) of the vertices within ``band`` mm of ``Y = y``."""
    P = V[np.abs(V[:, 1] - y) < band]
    if len(P) < 8:
        raise SceneError(None, f"no cross-section at y = {y:.1f} mm")
    lo, hi = P[:, [0, 2]].min(0), P[:, [0, 2]].max(0)
    return (lo + hi) / 2, (hi - lo) / 2


def _stitch(Va, loop_a, Vb, loop_b, center) -> np.ndarray:
    """Triangles [T, 3] joining loop ``a`` (indices into Va) and loop ``b`` (into Vb, offset by len(Va)) by
    walking both in angle around ``center`` (x, z); oriented outwards (away from the axis)."""
    off = len(Va)

    def ordered(V, loop):
        a = np.arctan2(V[loop, 2] - center[1], V[loop, 0] - center[0])
        o = np.argsort(a)
        return np.asarray(loop)[o], a[o]

    A, aa = ordered(Va, loop_a)
    B, ab = ordered(Vb, loop_b)
    tris = []
    i = j = 0
    na, nb = len(A), len(B)
    while i < na or j < nb:
        a0, a1 = A[i % na], A[(i + 1) % na]
        b0, b1 = B[j % nb], B[(j + 1) % nb]
        next_a = aa[(i + 1) % na] + (2 * np.pi if i + 1 >= na else 0.0)
        next_b = ab[(j + 1) % nb] + (2 * np.pi if j + 1 >= nb else 0.0)
        if j >= nb or (i < na and next_a <= next_b):
            tris.append((a0, a1, b0 + off))
            i += 1
        else:
            tris.append((a0, b1 + off, b0 + off))
            j += 1
    T = np.asarray(tris, dtype=np.int64)
    P = np.concatenate([Va, Vb])
    tri = P[T]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    radial = tri.mean(1) - np.array([center[0], 0.0, center[1]])
    radial[:, 1] = 0.0
    flip = (n * radial).sum(1) < 0
    T[flip] = T[flip][:, ::-1]
    return T


def _bust_albedo(V, skin, seed: int, neckline_y: float, front_z: float) -> np.ndarray:
    """Colours [V, 3]: ``skin`` above a neckline (deeper at the front), a random garment below it."""
    rng = np.random.default_rng([int(seed), 41])
    garment = _GARMENTS[rng.integers(len(_GARMENTS))] * rng.uniform(0.85, 1.1)
    dip = rng.uniform(0.0, 60.0)
    front = np.clip((V[:, 2] - front_z) / 80.0, 0.0, 1.0)
    line = neckline_y - dip * front
    col = np.tile(np.asarray(skin, dtype=np.float64), (len(V), 1))
    col[V[:, 1] < line] = garment
    return col


def _rgba(col) -> np.ndarray:
    return np.concatenate([np.round(np.clip(col, 0, 1) * 255), np.full((len(col), 1), 255)], 1).astype(np.uint8)


def _placed_anny(seed: int, target_landmarks: dict, scale: bool):
    """Anny body ``seed`` (vertices mm, faces) placed by its landmarks onto ``target_landmarks`` (similarity with
    ``scale``, the scale limited to 0.85-1.15), and what was drawn."""
    _check_landmarks()
    rng = np.random.default_rng([int(seed), 37])
    ph = anny_phenotype(seed)
    drop = float(rng.uniform(*_ARM_DROP_DEG))
    V, F, eyes = anny_body(ph, drop, return_eyes=True)
    names = list(ANNY_LANDMARKS)
    T = umeyama(_landmark_array(V, ANNY_LANDMARKS, names), np.stack([target_landmarks[k] for k in names]),
                scale=scale)
    s = float(np.cbrt(np.linalg.det(T[:3, :3])))
    if scale and not 0.85 <= s <= 1.15:
        T[:3, :3] *= np.clip(s, 0.85, 1.15) / s
        c_src = _landmark_array(V, ANNY_LANDMARKS, names).mean(0)
        T[:3, 3] = np.mean([target_landmarks[k] for k in names], 0) - T[:3, :3] @ c_src
    drawn = {"phenotype": ph, "arm_drop_deg": drop, "scale": float(np.cbrt(np.linalg.det(T[:3, :3])))}
    return apply_transform(T, V), F, apply_transform(T, eyes), drawn


def _mouth_y(V, lm) -> float:
    return float((V[int(lm["right_lips"]), 1] + V[int(lm["left_lips"]), 1]) / 2)


def _cut_depth(seed: int, depth_mm) -> float:
    """How far below the mouth corners bust ``seed`` ends: ``depth_mm``, or the seed's draw in
    :data:`BUST_DEPTH_MM` (the training busts' range)."""
    if depth_mm is None:
        return float(np.random.default_rng([int(seed), 43]).uniform(*BUST_DEPTH_MM))
    if not 100.0 <= float(depth_mm) <= 700.0:
        raise ValueError(f"bust depth must be 100-700 mm below the mouth, got {depth_mm}")
    return float(depth_mm)


def anny_bust(seed: int, depth_mm: float | None = None) -> trimesh.Trimesh:
    """Anny bust ``seed`` (see the module docstring): mm, ICT frame, vertex colours, six landmarks; cut
    ``depth_mm`` below the mouth corners (default: the seed's draw in :data:`BUST_DEPTH_MM`)."""
    from .ict import procedural_albedo

    V, F, eye_centres, drawn = _placed_anny(seed, _ict_mean_landmarks(), scale=False)
    depth = _cut_depth(seed, depth_mm)
    y_cut = _mouth_y(V, ANNY_LANDMARKS) - depth
    mesh = trimesh.Trimesh(V, F, process=False)
    keep_v = V[:, 1] > y_cut - 40.0  # drop the legs before slicing (faster, and no stray parts)
    mesh.update_faces(keep_v[F].all(1))
    mesh.remove_unreferenced_vertices()
    lm_pos = {k: V[i] for k, i in ANNY_LANDMARKS.items()}
    mesh = _slice(mesh, y_cut, keep_above=True)
    mesh = _largest_component(mesh)
    Vb = np.asarray(mesh.vertices)
    lm = {k: int(cKDTree(Vb).query(p)[1]) for k, p in lm_pos.items()}
    mouth_y = _mouth_y(Vb, lm)
    head = Vb[:, 1] > mouth_y - 60.0
    face_albedo = procedural_albedo(Vb[head], {k: int(np.nonzero(head)[0].searchsorted(i)) for k, i in lm.items()},
                                    None, seed=seed)
    skin = np.median(face_albedo[Vb[head][:, 1] < mouth_y - 20.0], axis=0) if (Vb[head][:, 1] < mouth_y - 20).any() \
        else np.median(face_albedo, 0)
    col = _bust_albedo(Vb, skin, seed, neckline_y=mouth_y - 110.0, front_z=float(Vb[lm["nose_tip"], 2]) - 150.0)
    col[head] = face_albedo
    Ve, Fe, col_e, radius = _eyeballs(mesh, eye_centres, seed)
    mesh = trimesh.Trimesh(np.concatenate([Vb, Ve]), np.concatenate([np.asarray(mesh.faces), Fe + len(Vb)]),
                           process=False)
    # what no camera can see (the eyeballs' backs, the socket walls behind them, Anny's mouth and nasal cavities:
    # a third of the face region's area) is not part of the bust: a scan has no such surfaces, and the ground
    # truth's nearest-vertex distances would count them
    mesh.update_faces(outer_faces(mesh))
    # and the bits of wall seen only through a crevice (islands): the largest part of the body and the two
    # eyeballs stay
    label = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    is_eye = (mesh.faces >= len(Vb)).all(1)
    F, used, lm = keep_faces(mesh.faces, is_eye | (label == np.bincount(label[~is_eye]).argmax()), lm)
    if lm is None:
        raise SceneError(None, f"Anny bust {seed}: a landmark lies on a hidden surface")
    n_body = int(np.searchsorted(used, len(Vb)))
    mesh = trimesh.Trimesh(mesh.vertices[used], F, process=False)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=_rgba(np.concatenate([col, col_e])[used]))
    mesh.metadata.update(landmarks=lm, seed=int(seed), source=f"Anny bust seed={seed}", cut_y=y_cut,
                         eye_centres=eye_centres.tolist(), eyeball_radius_mm=radius, n_body_vertices=n_body, **drawn)
    return mesh


def _eyeballs(body: trimesh.Trimesh, centres, seed: int):
    """Two eyeballs for an Anny body (whose mesh has open eye sockets; MakeHuman's eyes are separate meshes):
    spheres at ``centres`` [2, 3], of the radius that leaves :data:`EYEBALL_GAP_MM` to the nearest point of the
    body's surface (the socket wall and the lids; 11-15 mm on adult bodies), white with an iris and a pupil
    facing +Z. Returns (vertices, faces, colours [V, 3], radius)."""
    tri = np.asarray(body.triangles)
    dist = []
    for c in centres:  # nearest point of the faces around each centre
        t = tri[np.linalg.norm(tri.mean(1) - c, axis=1) < 40.0]
        q = trimesh.triangles.closest_point(t, np.broadcast_to(c, (len(t), 3)))
        dist.append(np.linalg.norm(q - c, axis=1).min())
    radius = float(min(dist)) - EYEBALL_GAP_MM
    if not 8.0 < radius < 20.0:
        raise SceneError(None, f"Anny bust {seed}: eye socket radius {radius + EYEBALL_GAP_MM:.1f} mm is implausible")
    rng = np.random.default_rng([int(seed), 47])
    iris = _IRISES[rng.integers(len(_IRISES))] * rng.uniform(0.8, 1.15)
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=radius)  # about 3.5 mm edges, like the face's
    S = np.asarray(sphere.vertices)
    front = S[:, 2] / radius  # cosine of the angle to +Z
    col = np.tile(np.array([0.86, 0.83, 0.78]), (len(S), 1))
    col[front > np.cos(np.arcsin(min(1.0, 6.0 / radius)))] = iris           # iris: about 12 mm across
    col[front > np.cos(np.arcsin(min(1.0, 2.0 / radius)))] = (0.03, 0.03, 0.03)  # pupil: about 4 mm
    F = np.asarray(sphere.faces)
    V = np.concatenate([S + c for c in centres])
    return V, np.concatenate([F, F + len(S)]), np.concatenate([col, col]), radius


def _largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    return _carry_colors(mesh, max(parts, key=lambda p: len(p.faces)))


def composite_bust(seed: int, clip: float = 2.5, depth_mm: float | None = None) -> trimesh.Trimesh:
    """ICT-FaceKit head ``seed`` on Anny bust ``seed`` (see the module docstring): mm, ICT frame, vertex colours,
    the ICT head's six landmarks (vertex indices into this mesh); cut ``depth_mm`` below the mouth corners
    (default: the seed's draw in :data:`BUST_DEPTH_MM`)."""
    from .ict import sample_ict_head

    head = sample_ict_head(int(seed), clip=clip, albedo=True)
    H = np.asarray(head.vertices)
    lm_ict = {k: H[int(i)] for k, i in head.metadata["landmarks"].items()}
    y_j = _mouth_y(H, head.metadata["landmarks"]) - JUNCTION_BELOW_MOUTH_MM
    y_b = y_j - 10.0  # the Anny side of the joining band
    V, F, _, drawn = _placed_anny(seed, lm_ict, scale=True)
    c_h, r_h = _section(H, y_j)
    c_a, r_a = _section(V[V[:, 1] < y_j], y_b)
    # reshape the Anny neck (60 mm below the band) towards the ICT neck's cross-section
    w = np.clip((V[:, 1] - (y_b - 60.0)) / 60.0, 0.0, 1.0)
    w = w * w * (3 - 2 * w)
    xz = V[:, [0, 2]]
    target = c_h + (xz - c_a) * (r_h / r_a)
    V = V.copy()
    V[:, [0, 2]] = xz + w[:, None] * (target - xz)
    depth = _cut_depth(seed, depth_mm)
    y_cut = _mouth_y(H, head.metadata["landmarks"]) - depth
    body = trimesh.Trimesh(V, F, process=False)
    keep_v = (V[:, 1] > y_cut - 40.0) & (V[:, 1] < y_b + 40.0)
    body.update_faces(keep_v[F].all(1))
    body.remove_unreferenced_vertices()
    body = _slice(_slice(body, y_b, keep_above=False), y_cut, keep_above=True)
    body = _largest_component(body)
    top = _slice(head, y_j, keep_above=True)
    Vt, Vb = np.asarray(top.vertices), np.asarray(body.vertices)
    band = _stitch(Vt, _loop_on_plane(top, y_j), Vb, _loop_on_plane(body, y_b), c_h)
    Vall = np.concatenate([Vt, Vb])
    Fall = np.concatenate([np.asarray(top.faces), np.asarray(body.faces) + len(Vt), band])
    mesh = trimesh.Trimesh(Vall, Fall, process=False)
    lm = {k: int(cKDTree(Vt).query(p)[1]) for k, p in lm_ict.items()}
    col_top = np.asarray(top.visual.vertex_colors)[:, :3] / 255.0
    skin = np.median(col_top[Vt[:, 1] < y_j + 20.0], axis=0)
    col_b = _bust_albedo(Vb, skin, seed, neckline_y=y_j - 30.0,
                         front_z=float(Vt[lm["nose_tip"], 2]) - 150.0)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=_rgba(np.concatenate([col_top, col_b])))
    mesh.metadata.update(landmarks=lm, seed=int(seed), source=f"ICT-FaceKit head seed={seed} clip={clip} on Anny "
                         f"bust seed={seed}", weights=head.metadata.get("weights"), junction_y=y_j, cut_y=y_cut,
                         n_head_vertices=len(Vt), **drawn)
    return mesh


def bust_mesh(source: str, seed: int, depth_mm: float | None = None) -> trimesh.Trimesh:
    """``anny_bust(seed)`` or ``composite_bust(seed)`` by name (:data:`BUST_SOURCES`), cut ``depth_mm`` below the
    mouth corners (default: the seed's draw, as the training busts)."""
    if source == "anny":
        return anny_bust(seed, depth_mm=depth_mm)
    if source == "composite":
        return composite_bust(seed, depth_mm=depth_mm)
    raise ValueError(f"unknown bust source {source!r} (one of {BUST_SOURCES})")
