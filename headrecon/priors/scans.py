"""Raw scans for training the prior: simulated incomplete ICT-FaceKit scans and a user's own scan folder.

A raw scan is what a structured-light / photogrammetry rig gives: surface points with (noisy) normals, no
connectivity, no inside/outside, with holes. The prior is trained on such scans only (surface + eikonal
losses), so the pipeline is the same for simulated ICT heads and for real data.

* :func:`simulate_raw_scan` — turn a mesh (mm) into a raw scan: area-uniform surface samples with normals, a
  missing back of the head (a randomly tilted plane cuts away a random fraction of the points seen from behind),
  random round holes, Gaussian sensor noise along the normal (``noise_mm``) and perturbed normals. Every random
  choice comes from ``seed``; what was drawn is recorded in ``scan.meta``.
* :func:`ict_raw_scan` — an ICT head (:func:`headrecon.data.ict.sample_ict_head`) as a raw scan, without the
  neck cap (real scans end at an open neck).
* :func:`load_scan_file` / :func:`load_scan_folder` — ``.ply`` / ``.obj`` / ``.stl`` / ``.off`` / ``.glb``
  point clouds or meshes in a folder (meshes are sampled area-uniformly; PLY ``nx ny nz`` and OBJ ``vn`` normals
  are kept when present).
* :func:`bust_raw_scan` / :func:`bust_scanset` — busts (head, neck, shoulders; :mod:`headrecon.data.bust`: Anny
  bodies, or ICT heads joined to them) as raw scans, in the bust frame
  (:func:`headrecon.priors.normalization.bust_normalization`).
* :class:`ScanSet` — scans mapped into the prior's unit frame (torch tensors) with a description of the data
  (stored in checkpoints instead of the data itself); :func:`ict_scanset`, :func:`folder_scanset`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import trimesh

from ..data.errors import SceneError
from .normalization import Normalization, bust_normalization, prior_normalization

__all__ = ["RawScan", "SCAN_EXTENSIONS", "DEFAULT_SIMULATION", "make_simulation", "simulation_record",
           "simulate_raw_scan", "closed_bottom_options", "closed_bottom_simulation",
           "plane_cap_samples", "ict_raw_scan", "bust_raw_scan",
           "bust_scanset", "SHAPE_SOURCES", "parse_sources", "is_shape_source", "source_model",
           "load_scan_file", "load_scan_folder", "ScanSet", "ict_scanset", "folder_scanset"]

SCAN_EXTENSIONS = (".ply", ".obj", ".stl", ".off", ".glb", ".gltf")
MIN_SCAN_POINTS = 100

# Default scan simulation (mm / degrees). See simulate_raw_scan.
DEFAULT_SIMULATION = dict(back_cut=(0.0, 0.35), back_tilt_deg=35.0, n_holes=(0, 4), hole_radius_mm=(8.0, 25.0),
                          noise_mm=0.3, normal_noise_deg=3.0)


def make_simulation(overrides: dict | None = None) -> dict:
    """:data:`DEFAULT_SIMULATION` updated with ``overrides``."""
    sim = dict(DEFAULT_SIMULATION)
    sim.update(overrides or {})
    return sim


def simulation_record(sim: dict) -> dict:
    """A simulation dict as JSON-friendly data (tuples as lists), for a prior's data description."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sim.items()}


@dataclass
class RawScan:
    """Surface points [N, 3] (float64, the scan's units), unit normals [N, 3] or None, a name and metadata."""

    points: np.ndarray
    normals: Optional[np.ndarray] = None
    name: str = "scan"
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)


def _unit(v):
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def _random_direction_near(axis, max_angle_deg, rng) -> np.ndarray:
    """A unit vector within ``max_angle_deg`` of ``axis`` (uniform angle, uniform azimuth)."""
    axis = _unit(np.asarray(axis, dtype=np.float64))
    tmp = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = _unit(np.cross(axis, tmp))
    w = np.cross(axis, u)
    ang = np.deg2rad(rng.uniform(0.0, max_angle_deg))
    phi = rng.uniform(0.0, 2 * np.pi)
    return np.cos(ang) * axis + np.sin(ang) * (np.cos(phi) * u + np.sin(phi) * w)


def simulate_raw_scan(mesh: trimesh.Trimesh, n_points: int = 30000, seed: int = 0, back_cut=(0.0, 0.35),
                      back_tilt_deg: float = 35.0, n_holes=(0, 4), hole_radius_mm=(8.0, 25.0),
                      noise_mm: float = 0.3, normal_noise_deg: float = 3.0, keep_faces=None,
                      back_axis=(0.0, 0.0, -1.0), name: str | None = None,
                      bottom_cap_y: float | None = None) -> RawScan:
    """A raw, incomplete, noisy scan of ``mesh`` (lengths in the mesh's units, mm for heads).

    Args:
        n_points: area-uniform samples drawn before anything is removed.
        back_cut: (min, max) fraction of the samples removed from the back: the points farthest along a
            direction within ``back_tilt_deg`` of ``back_axis`` (-Z: behind an ICT head). ``(0, 0)`` disables it.
        n_holes: (min, max) number of round holes (inclusive); each removes the samples within a radius drawn
            from ``hole_radius_mm`` of a random surviving sample.
        noise_mm: standard deviation of the Gaussian displacement along the normal (sensor depth noise).
        normal_noise_deg: about the angular standard deviation of the normal noise.
        keep_faces: optional bool mask [F] of faces that a scanner can see (e.g. not the neck cap).
        bottom_cap_y: close the mesh's open bottom: the boundary edges on the plane ``Y = bottom_cap_y`` (a bust's
            cut) bound a flat cap, sampled at the surface's density with normal -Y before the back and the holes
            are removed (:func:`closed_bottom_options`).
    """
    rng = np.random.default_rng([int(seed), 7])
    if len(mesh.faces) == 0:
        raise ValueError("simulate_raw_scan needs a triangle mesh")
    pts, fi = trimesh.sample.sample_surface(mesh, int(n_points), seed=int(rng.integers(2 ** 31)))
    nrm = np.asarray(mesh.face_normals)[fi]
    keep = np.ones(len(pts), dtype=bool)
    if keep_faces is not None:
        keep &= np.asarray(keep_faces, dtype=bool)[fi]
    meta = {"n_sampled": int(n_points), "seed": int(seed)}
    if bottom_cap_y is not None:
        cap = plane_cap_samples(mesh, float(bottom_cap_y), int(n_points), rng)
        pts = np.concatenate([pts, cap])
        nrm = np.concatenate([nrm, np.tile([0.0, -1.0, 0.0], (len(cap), 1))])
        keep = np.concatenate([keep, np.ones(len(cap), dtype=bool)])
        meta["n_cap"] = int(len(cap))
    # missing back of the head
    lo, hi = back_cut
    frac = float(rng.uniform(lo, hi)) if hi > 0 else 0.0
    d = _random_direction_near(back_axis, back_tilt_deg, rng)
    if frac > 0 and keep.any():
        proj = pts @ d
        thr = np.quantile(proj[keep], 1.0 - frac)
        keep &= proj < thr
    meta.update(back_fraction=frac, back_direction=d.tolist())
    # random holes
    k = int(rng.integers(n_holes[0], n_holes[1] + 1))
    holes = []
    for _ in range(k):
        alive = np.nonzero(keep)[0]
        if len(alive) == 0:
            break
        c = pts[alive[rng.integers(len(alive))]]
        r = float(rng.uniform(*hole_radius_mm))
        keep &= np.linalg.norm(pts - c, axis=1) > r
        holes.append({"center": c.tolist(), "radius": r})
    meta["holes"] = holes
    pts, nrm = pts[keep], nrm[keep]
    # sensor noise
    if noise_mm > 0:
        pts = pts + nrm * rng.normal(0.0, noise_mm, size=(len(pts), 1))
    if normal_noise_deg > 0:
        nrm = _unit(nrm + rng.normal(0.0, np.deg2rad(normal_noise_deg), size=nrm.shape))
    meta.update(noise_mm=float(noise_mm), normal_noise_deg=float(normal_noise_deg),
                kept_fraction=float(keep.mean()))
    return RawScan(points=pts, normals=nrm, name=name or f"scan{seed}", meta=meta)


def _cut_edges(mesh: trimesh.Trimesh, y: float, tol: float = 1e-4) -> np.ndarray:
    """Boundary edges [E, 2, 2] (x, z of both ends) of ``mesh`` that lie on the plane ``Y = y``. An edge soup, not
    loops: a cut through a body can leave vertices on two boundary edges going out (a non-manifold boundary), and
    the even-odd rule of :func:`_inside` needs no order."""
    from ..data.ict import boundary_edges

    V = np.asarray(mesh.vertices)
    E = boundary_edges(mesh.faces)
    E = E[np.all(np.abs(V[E, 1] - y) < tol, axis=1)]
    return V[E][:, :, [0, 2]]


def _inside(points_xz, edges) -> np.ndarray:
    """Even-odd rule: which 2D points lie inside the closed loops made of ``edges`` [E, 2, 2]."""
    x, z = points_xz[:, :1], points_xz[:, 1:]
    (x0, z0), (x1, z1) = edges[:, 0].T, edges[:, 1].T
    crosses = (z0 > z) != (z1 > z)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (z - z0) * (x1 - x0) / (z1 - z0)
    return (crosses & (x < xc)).sum(axis=1) % 2 == 1


def plane_cap_samples(mesh: trimesh.Trimesh, y: float, n_points: int, rng) -> np.ndarray:
    """Points [K, 3] uniform on the flat cap that closes ``mesh``'s boundary loops on ``Y = y`` (even-odd rule),
    at the density of ``n_points`` area-uniform samples of the surface: ``K = n_points * cap area / mesh area``."""
    edges = _cut_edges(mesh, y)
    if len(edges) < 3:
        raise ValueError(f"{mesh.metadata.get('source', 'mesh')}: no open boundary on the plane Y = {y:.2f} to cap")
    lo, hi = edges.reshape(-1, 2).min(0), edges.reshape(-1, 2).max(0)
    probe = rng.uniform(lo, hi, size=(20000, 2))
    area = float(np.prod(hi - lo)) * float(_inside(probe, edges).mean())
    k = int(round(n_points * area / float(mesh.area)))
    out = []
    while sum(len(o) for o in out) < k:
        c = rng.uniform(lo, hi, size=(max(2 * k, 256), 2))
        out.append(c[_inside(c, edges)])
    xz = np.concatenate(out)[:k] if out else np.zeros((0, 2))
    return np.stack([xz[:, 0], np.full(len(xz), y), xz[:, 1]], axis=1)


def closed_bottom_simulation(mode) -> dict | None:
    """The simulation overrides of ``headrecon-train-prior --closed-bottom [all|busts]`` (None: open scans)."""
    if mode in (None, False):
        return None
    if mode not in (True, "all", "busts"):
        raise ValueError(f"closed_bottom={mode!r}: expected 'all' or 'busts'")
    return {"closed_bottom": "all" if mode is True else mode}


def closed_bottom_options(mesh: trimesh.Trimesh, simulation: dict, keep_faces=None):
    """``(simulation, keep_faces)`` for :func:`simulate_raw_scan` from a simulation dict that may say
    ``closed_bottom``: then a bust (``metadata["cut_y"]``) gets a flat cap at its cut, so the prior learns where the
    shape ends instead of closing the open bottom anywhere inside its frame (measured:
    docs/results/priors-busts.md); with ``"all"`` (or True) a capped ICT head keeps its neck cap too
    (``keep_faces`` None), with ``"busts"`` it stays open at the neck like a scan of a head."""
    sim = dict(simulation)
    mode = sim.pop("closed_bottom", False)
    if not mode:
        return sim, keep_faces
    cut = (mesh.metadata or {}).get("cut_y")
    if cut is not None:
        sim["bottom_cap_y"] = float(cut)
        return sim, None
    return sim, (keep_faces if mode == "busts" else None)


def ict_visible_faces(mesh: trimesh.Trimesh, n_skin_faces: int | None = None) -> np.ndarray:
    """Faces of a capped ICT head except the neck cap (cap faces more than 80 mm below the mouth corners)."""
    from ..data.ict import load_ict_basis

    if n_skin_faces is None:
        n_skin_faces = len(load_ict_basis().faces)
    lm = mesh.metadata.get("landmarks", {})
    V = np.asarray(mesh.vertices)
    mouth_y = (V[lm["right_lips"], 1] + V[lm["left_lips"], 1]) / 2 if lm else V[:, 1].min() + 150.0
    cy = V[mesh.faces].mean(axis=1)[:, 1]
    keep = np.ones(len(mesh.faces), dtype=bool)
    keep[n_skin_faces:] = cy[n_skin_faces:] > mouth_y - 80.0
    return keep


def ict_raw_scan(seed: int, n_points: int = 30000, clip: float = 2.5, simulation: dict | None = None,
                 return_mesh: bool = False):
    """ICT head ``seed`` (mm) as a simulated raw scan (no neck cap, missing back, holes, noise).

    The scan's randomness is seeded by ``seed`` too, so (seed, parameters) determine the scan. With
    ``return_mesh`` also returns the watertight ground-truth mesh.
    """
    from ..data.ict import sample_ict_head

    mesh = sample_ict_head(int(seed), clip=clip, albedo=False)
    sim = make_simulation(simulation)
    sim, keep = closed_bottom_options(mesh, sim, ict_visible_faces(mesh))
    scan = simulate_raw_scan(mesh, n_points=n_points, seed=seed, keep_faces=keep, name=f"ict{seed}", **sim)
    scan.meta["landmarks_mm"] = {k: mesh.vertices[i].tolist() for k, i in mesh.metadata["landmarks"].items()}
    return (scan, mesh) if return_mesh else scan


SHAPE_SOURCES = ("ict", "anny", "composite")  # what headrecon-train-prior can simulate (besides a scan folder)


def parse_sources(spec: str) -> tuple:
    """``"composite"`` -> ("composite",); ``"composite+ict"`` -> ("composite", "ict"): a mix in which shape
    ``k`` comes from source ``k mod len(sources)`` with seed ``k`` (so the sources' identities never repeat)."""
    parts = tuple(p.strip().lower() for p in str(spec).split("+"))
    bad = [p for p in parts if p not in SHAPE_SOURCES]
    if not parts or bad or len(set(parts)) != len(parts):
        raise ValueError(f"unknown or repeated shape source(s) {bad or list(parts)} in {spec!r}: use one of "
                         f"{list(SHAPE_SOURCES)} or several joined by '+' (e.g. 'composite+ict')")
    return parts


def is_shape_source(spec: str) -> bool:
    """Whether ``spec`` names simulated shapes (``ict``, ``composite``, ``composite+ict``, ...) and not a folder."""
    try:
        parse_sources(spec)
    except ValueError:
        return False
    return True
BUST_MAX_RADIUS = 0.98  # bust scan points beyond this radius of the bust frame are dropped (the widest busts)


def bust_raw_scan(source: str, seed: int, n_points: int = 30000, simulation: dict | None = None,
                  return_mesh: bool = False):
    """Bust ``seed`` of ``source`` (``anny`` or ``composite``, :func:`headrecon.data.bust.bust_mesh`) as a
    simulated raw scan (missing back, holes, noise; the bottom is open like a real bust scan unless the simulation
    says ``closed_bottom``, :func:`closed_bottom_options`), mm, ICT frame.
    ``source="ict"`` gives :func:`ict_raw_scan` (a head ending at the neck), for mixes of heads and busts."""
    from ..data.bust import bust_mesh

    if source == "ict":
        return ict_raw_scan(seed, n_points=n_points, simulation=simulation, return_mesh=return_mesh)

    mesh = bust_mesh(source, int(seed))
    sim = make_simulation(simulation)
    sim, keep = closed_bottom_options(mesh, sim)
    scan = simulate_raw_scan(mesh, n_points=n_points, seed=seed, keep_faces=keep, name=f"{source}{seed}", **sim)
    scan.meta["landmarks_mm"] = {k: mesh.vertices[i].tolist() for k, i in mesh.metadata["landmarks"].items()}
    return (scan, mesh) if return_mesh else scan


# ---------------------------------------------------------------------------------------------- user scans
def _ply_normals(loaded) -> Optional[np.ndarray]:
    raw = getattr(loaded, "metadata", {}).get("_ply_raw", {})
    try:
        data = raw["vertex"]["data"]
        return np.stack([data["nx"], data["ny"], data["nz"]], axis=1).astype(np.float64)
    except (KeyError, ValueError, TypeError, IndexError):
        return None


def _read_obj_points(path: Path):
    V, N = [], []
    with open(path, "r", errors="replace") as fh:
        for ln, line in enumerate(fh, 1):
            if line.startswith("v ") or line.startswith("vn "):
                parts = line.split()
                try:
                    xyz = (float(parts[1]), float(parts[2]), float(parts[3]))
                except (IndexError, ValueError):
                    raise SceneError(path, f"line {ln}: malformed record {line.strip()!r}") from None
                (V if parts[0] == "v" else N).append(xyz)
    V = np.asarray(V, dtype=np.float64).reshape(-1, 3)
    N = np.asarray(N, dtype=np.float64).reshape(-1, 3) if len(N) == len(V) and len(N) else None
    return V, N


def load_scan_file(path, n_points: int = 30000, seed: int = 0, units_to_mm: float = 1.0) -> RawScan:
    """A raw scan from a file: a point cloud (PLY/OBJ vertices, normals kept when present) or a mesh (sampled
    area-uniformly, ``n_points``, with face normals). ``units_to_mm`` converts the file's units to mm.

    Raises SceneError naming the file when it is missing, unreadable, or has fewer than 100 finite points.
    """
    from ..data.meshio import read_obj

    path = Path(path)
    if not path.is_file():
        raise SceneError(path, "scan file not found")
    if path.suffix.lower() not in SCAN_EXTENSIONS:
        raise SceneError(path, f"unsupported scan format (use one of {', '.join(SCAN_EXTENSIONS)})")
    normals = None
    mesh = None
    try:
        if path.suffix.lower() == ".obj":
            V, F = read_obj(path)
            if len(F):
                mesh = trimesh.Trimesh(V, F, process=False)
            else:
                V, normals = _read_obj_points(path)
        else:
            loaded = trimesh.load(str(path), process=False)
            if isinstance(loaded, trimesh.Scene):
                if not loaded.geometry:
                    raise SceneError(path, "file contains no geometry")
                loaded = loaded.to_geometry()
            if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces):
                mesh = loaded
            elif hasattr(loaded, "vertices"):
                V = np.asarray(loaded.vertices, dtype=np.float64)
                normals = _ply_normals(loaded)
            else:
                raise SceneError(path, f"not a point cloud or mesh ({type(loaded).__name__})")
    except SceneError:
        raise
    except Exception as exc:  # trimesh / parsers raise many kinds
        raise SceneError(path, f"cannot read scan ({type(exc).__name__}: {exc})") from exc
    if mesh is not None:
        if len(mesh.vertices) < 3 or not np.isfinite(mesh.vertices).all():
            raise SceneError(path, "mesh has too few or non-finite vertices")
        V, fi = trimesh.sample.sample_surface(mesh, int(n_points), seed=int(seed))
        normals = np.asarray(mesh.face_normals)[fi]
        kind = "mesh"
    else:
        kind = "points"
    V = np.asarray(V, dtype=np.float64).reshape(-1, 3)
    ok = np.isfinite(V).all(axis=1)
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float64)
        nn_ = np.linalg.norm(normals, axis=1)
        if (nn_[ok] > 1e-8).mean() < 0.99:
            normals = None  # missing / zero normals: treat the file as having none
        else:
            ok &= nn_ > 1e-8
            normals = _unit(normals)
    V = V[ok]
    normals = normals[ok] if normals is not None else None
    if len(V) < MIN_SCAN_POINTS:
        raise SceneError(path, f"scan has {len(V)} finite points; at least {MIN_SCAN_POINTS} are needed")
    V = V * float(units_to_mm)
    return RawScan(points=V, normals=normals, name=path.stem,
                   meta={"file": path.name, "kind": kind, "has_normals": normals is not None})


def _sidecar_landmarks(path: Path) -> Optional[dict]:
    import json

    for cand in (path.with_suffix(".landmarks.json"), path.parent / (path.stem + "_landmarks.json")):
        if cand.is_file():
            try:
                d = json.loads(cand.read_text())
                return {k: np.asarray(v, dtype=np.float64).reshape(3) for k, v in d.items()}
            except Exception as exc:
                raise SceneError(cand, f"cannot read landmarks ({type(exc).__name__}: {exc}); expected "
                                       "{name: [x, y, z]} in mm") from exc
    return None


def scan_files(folder) -> list[Path]:
    """Sorted scan files in ``folder`` (SceneError when the folder is missing or holds none)."""
    folder = Path(folder)
    if not folder.exists():
        raise SceneError(folder, "scan folder not found")
    if not folder.is_dir():
        raise SceneError(folder, "expected a folder of scans (or 'ict' for simulated ICT-FaceKit scans)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SCAN_EXTENSIONS
                   and not p.name.endswith(".landmarks.json"))
    if not files:
        raise SceneError(folder, f"no scan files ({', '.join(SCAN_EXTENSIONS)}) in the folder")
    return files


def load_scan_folder(folder, n_shapes: int | None = None, n_points: int = 30000, units_to_mm: float = 1.0,
                     progress: bool = False) -> list[RawScan]:
    """Every scan in ``folder`` (sorted by name; the first ``n_shapes``). A sidecar ``NAME.landmarks.json``
    (``{"nose_tip": [x, y, z], ...}`` in the scan's units) is attached as ``scan.meta['landmarks_mm']``."""
    files = scan_files(folder)
    if n_shapes is not None:
        files = files[: int(n_shapes)]
    it = files
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(files, desc="loading scans", unit="scan")
    scans = []
    for i, f in enumerate(it):
        s = load_scan_file(f, n_points=n_points, seed=i, units_to_mm=units_to_mm)
        lm = _sidecar_landmarks(f)
        if lm is not None:
            s.meta["landmarks_mm"] = {k: (v * units_to_mm).tolist() for k, v in lm.items()}
        scans.append(s)
    return scans


# ---------------------------------------------------------------------------------------------- dataset
def _sha256(path: Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


class ScanSet:
    """Training scans in the prior's unit frame.

    Attributes:
        points: list of float32 tensors [N_i, 3]; normals: list of [N_i, 3] tensors or None; names: list[str];
        description: dict describing the data (source, seeds / files, simulation parameters, alignment) —
        what a checkpoint stores instead of the data; norm: the :class:`Normalization` used.
    """

    def __init__(self, scans: Sequence[RawScan], norm: Normalization | None = None, align: str = "fixed",
                 description: dict | None = None):
        if not scans:
            raise ValueError("ScanSet needs at least one scan")
        if align not in ("fixed", "bbox", "landmarks", "auto"):
            raise ValueError(f"align must be 'fixed', 'bbox', 'landmarks' or 'auto', got {align!r}")
        self.norm = norm or Normalization()
        self.points, self.normals, self.names, used = [], [], [], []
        for s in scans:
            M = self.norm.scale_mat
            how = "fixed"
            lm = s.meta.get("landmarks_mm")
            if align in ("landmarks", "auto") and lm:
                M = prior_normalization(landmarks=lm, norm=self.norm)
                how = "landmarks"
            elif align == "landmarks":
                raise SceneError(None, f"scan {s.name!r} has no landmarks (NAME.landmarks.json) for align='landmarks'")
            elif align in ("bbox", "auto"):
                M = prior_normalization(s.points, norm=self.norm)
                how = "bbox"
            Minv = np.linalg.inv(M)
            p = s.points @ Minv[:3, :3].T + Minv[:3, 3]
            self.points.append(torch.as_tensor(p, dtype=torch.float32))
            if s.normals is not None:
                self.normals.append(torch.as_tensor(_unit(s.normals @ M[:3, :3]), dtype=torch.float32))
            else:
                self.normals.append(None)
            self.names.append(s.name)
            used.append(how)
        self.description = dict(description or {})
        self.description.setdefault("n_shapes", len(scans))
        self.description["alignment"] = sorted(set(used))
        self.description["points_per_shape"] = [int(len(p)) for p in self.points]
        self.description["with_normals"] = int(sum(n is not None for n in self.normals))

    def __len__(self) -> int:
        return len(self.points)


def ict_scanset(n_shapes: int, seed_start: int = 0, n_points: int = 30000, simulation: dict | None = None,
                clip: float = 2.5, progress: bool = False) -> ScanSet:
    """``n_shapes`` simulated raw scans of ICT heads with seeds ``seed_start .. seed_start + n_shapes - 1``."""
    from .. import shared_dir

    if n_shapes < 1:
        raise ValueError("n_shapes must be >= 1")
    seeds = range(int(seed_start), int(seed_start) + int(n_shapes))
    it = seeds
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(seeds, desc="simulating ICT scans", unit="scan")
    sim = make_simulation(simulation)
    scans = [ict_raw_scan(s, n_points=n_points, clip=clip, simulation=sim) for s in it]
    desc = {"source": "ict", "model": "ICT-FaceKit head basis (MIT licence), 100 identity modes",
            "basis_dir": str(shared_dir() / "data" / "ict_facekit") if shared_dir() else None,
            "seeds": [seeds.start, seeds.stop - 1], "clip": float(clip), "n_points": int(n_points),
            "simulation": simulation_record(sim),
            "n_shapes": int(n_shapes)}
    return ScanSet(scans, align="fixed", description=desc)


def bust_scanset(source: str, n_shapes: int, seed_start: int = 0, n_points: int = 30000,
                 simulation: dict | None = None, progress: bool = False, max_radius: float = BUST_MAX_RADIUS) -> ScanSet:
    """``n_shapes`` simulated raw scans of busts of ``source`` (``anny`` / ``composite``, or a mix such as
    ``composite+ict``: :func:`parse_sources`) with seeds ``seed_start ..``, in the bust frame; points beyond
    ``max_radius`` (unit frame) are dropped."""
    parts = parse_sources(source)
    if set(parts) - {"ict"}:
        from ..data.bust import anny_phenotype  # noqa: F401  (fails early with a clear message without anny)

    if n_shapes < 1:
        raise ValueError("n_shapes must be >= 1")
    seeds = range(int(seed_start), int(seed_start) + int(n_shapes))
    it = seeds
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(seeds, desc=f"simulating {source} bust scans", unit="scan")
    sim = make_simulation(simulation)
    norm = bust_normalization()
    scans = []
    for s in it:
        scan = bust_raw_scan(parts[s % len(parts)], s, n_points=n_points, simulation=sim)
        r = np.linalg.norm(norm.to_unit(scan.points), axis=1)
        keep = r <= max_radius
        scan.points, scan.normals = scan.points[keep], scan.normals[keep]
        scan.meta["dropped_outside"] = int((~keep).sum())
        scans.append(scan)
    desc = {"source": "+".join(parts), "model": source_model(parts), "seeds": [seeds.start, seeds.stop - 1],
            "n_points": int(n_points), "max_radius": float(max_radius),
            "simulation": simulation_record(sim),
            "n_shapes": int(n_shapes)}
    return ScanSet(scans, norm=norm, align="fixed", description=desc)


_SOURCE_MODEL = {
    "ict": "ICT-FaceKit head basis (MIT licence), 100 identity modes, ending at the neck",
    "anny": "Anny body model (NAVER; Apache-2.0 code, CC0 MakeHuman-derived data): adult busts, arms lowered, cut "
            "below the shoulders (headrecon.data.bust.anny_bust)",
    "composite": "ICT-FaceKit head (MIT) joined at the neck to an Anny bust (headrecon.data.bust.composite_bust)",
}


def source_model(parts) -> str:
    """What the shapes of ``parts`` (:func:`parse_sources`) are, for checkpoints and model cards."""
    if len(parts) == 1:
        return _SOURCE_MODEL[parts[0]]
    return (f"shape k from source k mod {len(parts)} of " + "; ".join(f"[{i}] {p}: {_SOURCE_MODEL[p]}"
                                                                     for i, p in enumerate(parts)))


def folder_scanset(folder, n_shapes: int | None = None, n_points: int = 30000, units_to_mm: float = 1.0,
                   align: str = "auto", progress: bool = False) -> ScanSet:
    """The user's scans in ``folder`` (see :func:`load_scan_folder`), aligned with the prior frame by
    ``align``: ``fixed`` (already in the ICT frame, mm), ``bbox`` (ICT orientation; bounding-box centre moved to
    the prior's centre), ``landmarks`` (rigid fit of sidecar landmarks) or ``auto`` (landmarks when present,
    else bbox)."""
    folder = Path(folder)
    scans = load_scan_folder(folder, n_shapes=n_shapes, n_points=n_points, units_to_mm=units_to_mm,
                             progress=progress)
    files = scan_files(folder)[: len(scans)]
    desc = {"source": "folder", "path": str(folder.resolve()), "n_shapes": len(scans),
            "files": [{"name": f.name, "bytes": f.stat().st_size, "sha256_16": _sha256(f)} for f in files],
            "units_to_mm": float(units_to_mm), "n_points": int(n_points), "align": align}
    return ScanSet(scans, align=align, description=desc)
