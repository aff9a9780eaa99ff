"""Multi-view head scenes: read and write the IDR/H3DS layout, select views by yaw, move between frames.

Layout of a scene folder (as in H3DS and IDR)::

    image/img_0000.png|jpg ...     RGB photos (any other sorted names are accepted too)
    mask/mask_0000.png ...         foreground masks (white = head)
    cameras.npz                    world_mat_i: 4x4 K[R|t] (world = scene units, mm for H3DS)
                                   scale_mat_i: 4x4 similarity mapping the unit sphere to the scene
    full_head.obj                  optional ground-truth mesh, millimetres
    landmarks.txt                  optional "name vertex_index" lines (right_eye, left_eye, nose_tip, nose_base,
                                   right_lips, left_lips), indices into full_head.obj
    regions/face_sphere.txt        optional vertex indices of full_head.obj within 95 mm of the nose tip
    regions/face.txt               optional vertex indices of the face, ears and neck (the H3DS protocol aligns
                                   the head on it; without it, on the face sphere)
    semantic/sem_0000.png ...      optional per-pixel head semantics (uint8 class index into
                                   headrecon.data.semantics.SEMANTIC_CLASSES, 255 = unknown), used by --method wang

A nerfstudio ``transforms.json`` scene is read too (see :mod:`headrecon.data.nerfstudio`).

Head frame used for yaw: up axis = the mean image-up direction of the cameras (or +Y), front = from the scene
centre towards the ground-truth nose tip (or +Z); yaw 0 = the camera in front of the face looking at it, positive
yaw = the camera moved towards +X (the head's left for ICT/H3DS-style heads: x = subject's left).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import trimesh
from PIL import Image
from scipy.optimize import linear_sum_assignment

from .camera import Camera, similarity_parts
from .errors import SceneError
from .meshio import load_mesh, save_mesh
from .regions import h3ds_face_region
from .semantics import check_labels

__all__ = [
    "LANDMARK_NAMES", "FACE_SPHERE_RADIUS_MM", "FaceSphere", "View", "Scene", "load_scene", "write_scene",
    "is_nerfstudio_scene",
    "load_gt", "select_views", "view_targets", "camera_yaw_pitch", "read_landmarks", "write_landmarks",
    "load_image", "load_mask", "load_labels", "load_region", "parse_views",
]

LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "nose_base", "right_lips", "left_lips")
FACE_SPHERE_RADIUS_MM = 95.0
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


# ---------------------------------------------------------------------------------------------- small containers
@dataclass
class FaceSphere:
    """The evaluation face region: ground-truth vertices within ``radius_mm`` of the nose tip ``center_mm``."""

    center_mm: np.ndarray
    radius_mm: float = FACE_SPHERE_RADIUS_MM
    vertex_indices: np.ndarray | None = None

    @classmethod
    def from_mesh(cls, vertices, center_mm, radius_mm: float = FACE_SPHERE_RADIUS_MM) -> "FaceSphere":
        vertices = np.asarray(vertices)
        center_mm = np.asarray(center_mm, dtype=np.float64)
        idx = np.nonzero(np.linalg.norm(vertices - center_mm, axis=1) <= radius_mm)[0]
        return cls(center_mm=center_mm, radius_mm=float(radius_mm), vertex_indices=idx)


@dataclass
class View:
    """One posed photo: ``image`` float32 [H, W, 3] in [0, 1] (None when not loaded), ``mask`` bool [H, W],
    ``camera`` in scene units, ``scale_mat`` (unit sphere -> scene), ``index`` in the source scene and the
    image/mask file names."""

    image: np.ndarray | None
    mask: np.ndarray | None
    camera: Camera
    scale_mat: np.ndarray
    index: int = 0
    image_path: Path | None = None
    mask_path: Path | None = None
    semantic: np.ndarray | None = None   # uint8 [H, W] label map (headrecon.data.semantics), when the scene has one
    semantic_path: Path | None = None


# ---------------------------------------------------------------------------------------------- view selection
def view_targets(spec) -> list[float]:
    """Target yaws (degrees, in (-180, 180]) for a view spec: "3" = {0, -45, 45} (V3), "4" = {-90, -45, 45, 90}
    (V4), any other N = N steps of 360/N starting at 0."""
    n = int(spec)
    if n <= 0:
        raise ValueError(f"number of views must be positive, got {spec!r}")
    if n == 3:
        return [0.0, -45.0, 45.0]
    if n == 4:
        return [-90.0, -45.0, 45.0, 90.0]
    return [float(_wrap(k * 360.0 / n)) for k in range(n)]


def _wrap(a):
    """Angle(s) in degrees wrapped to (-180, 180]."""
    return 180.0 - ((180.0 - np.asarray(a, dtype=np.float64)) % 360.0)


VIEWS_HELP = "use all, a number of views (3, 4, 8, 16, 32, ...) or distinct comma-separated view indices (0,2,5)"


def parse_views(spec):
    """The one reading of a views option (``--views``, ``ReconConfig.views``, benches): ``"all"``/None -> "all";
    a positive whole number N -> ``"N"`` (the paper's V3/V4 sets or 360/N steps, :func:`view_targets`); a list of
    indices or ``"0,4,7"`` -> ``[0, 4, 7]`` (non-negative, distinct). ValueError naming the problem otherwise."""
    if spec is None:
        return "all"
    if isinstance(spec, (list, tuple, np.ndarray)):
        items = list(spec)
    else:
        s = str(spec).strip().lower()
        if s == "all":
            return "all"
        if "," not in s:
            if not s.isdigit() or int(s) < 1:
                raise ValueError(f"bad views {spec!r}: {VIEWS_HELP}")
            return str(int(s))
        items = [x.strip() for x in s.split(",")]
    try:
        idx = [int(x) for x in items]
    except (TypeError, ValueError):
        raise ValueError(f"bad views {spec!r}: {VIEWS_HELP}") from None
    if not idx:
        raise ValueError(f"bad views {spec!r}: no view index given")
    neg = [i for i in idx if i < 0]
    if neg:
        raise ValueError(f"bad views {spec!r}: negative view indices {neg}; {VIEWS_HELP}")
    dup = sorted({i for i in idx if idx.count(i) > 1})
    if dup:
        raise ValueError(f"bad views {spec!r}: view indices {dup} given more than once")
    return idx


def select_views(yaws_deg: Sequence[float], spec, pitches_deg: Sequence[float] | None = None) -> list[int]:
    """Positions of the views to use for ``spec`` given every available view's yaw (degrees).

    ``spec``: "all"/None (every view, in order), a number or numeric string N (see :func:`view_targets`: the
    paper's V3/V4 sets or 360/N steps), or an explicit list of indices. Each target yaw gets the closest available
    view (optimal one-to-one assignment on angular distance; ties go to the smallest |pitch|). Returned in target
    order. Raises ValueError when there are fewer views than targets or an index is out of range.
    """
    yaws = np.asarray(yaws_deg, dtype=np.float64).reshape(-1)
    n = len(yaws)
    spec = parse_views(int(spec) if isinstance(spec, (int, np.integer)) else spec)
    if spec == "all":
        return list(range(n))
    if isinstance(spec, list):
        bad = [i for i in spec if i >= n]
        if bad:
            raise ValueError(f"view indices {bad} out of range for a scene with {n} views")
        return spec
    targets = np.asarray(view_targets(spec))
    if len(targets) > n:
        raise ValueError(f"view spec {spec!r} needs {len(targets)} views but the scene has only {n}")
    diff = np.abs(_wrap(yaws[None, :] - targets[:, None]))
    pitch = np.zeros(n) if pitches_deg is None else np.abs(np.asarray(pitches_deg, dtype=np.float64))
    cost = diff + 1e-3 * pitch[None, :]
    rows, cols = linear_sum_assignment(cost)
    order = np.argsort(rows)
    return [int(c) for c in cols[order]]


def camera_yaw_pitch(cameras: Sequence[Camera], center, up=(0.0, 1.0, 0.0), front=(0.0, 0.0, 1.0)):
    """Yaw and pitch (degrees) of each camera's position around ``center`` in the head frame (``up``,
    ``front``): yaw 0 = in front of the face, positive towards ``cross(up, front)`` (= +X for +Y up, +Z front),
    pitch positive = above."""
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    front = np.asarray(front, dtype=np.float64)
    front = front - up * (front @ up)
    front /= np.linalg.norm(front)
    side = np.cross(up, front)
    yaws, pitches = [], []
    for cam in cameras:
        d = cam.center - np.asarray(center, dtype=np.float64)
        yaws.append(np.degrees(np.arctan2(d @ side, d @ front)))
        pitches.append(np.degrees(np.arctan2(d @ up, np.hypot(d @ side, d @ front))))
    return np.asarray(yaws), np.asarray(pitches)


# ---------------------------------------------------------------------------------------------- the scene
@dataclass
class Scene:
    """Posed views of a head plus optional ground truth. Cameras are in scene units (mm for H3DS and for
    synthetic scenes); ``scale_mat`` maps the unit sphere (the reconstruction frame) into the scene."""

    views: list[View]
    scale_mat: np.ndarray
    gt_mesh: trimesh.Trimesh | None = None
    landmarks: dict | None = None
    face_sphere: FaceSphere | None = None
    path: Path | None = None
    units: str = "mm"
    meta: dict = field(default_factory=dict)
    face_region: np.ndarray | None = None  # H3DS regions/face.txt: face, ears, neck (vertex indices)
    regions: dict = field(default_factory=dict)  # other regions/NAME.txt of the ground truth (e.g. hair), reported

    # -------------------------------------------------------------- construction
    @classmethod
    def from_arrays(cls, images, masks, cameras, scale_mat, gt_mesh=None, landmarks=None, face_sphere=None,
                    units: str = "mm", meta=None) -> "Scene":
        """Build a scene in memory (e.g. from a renderer). ``images`` float [H, W, 3] in [0, 1] or uint8."""
        if not (len(images) == len(masks) == len(cameras)):
            raise ValueError(f"{len(images)} images, {len(masks)} masks and {len(cameras)} cameras: counts differ")
        S = np.asarray(scale_mat, dtype=np.float64)
        views = []
        for i, (img, m, cam) in enumerate(zip(images, masks, cameras)):
            img = np.asarray(img)
            img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
            views.append(View(image=img, mask=np.asarray(m, dtype=bool), camera=cam, scale_mat=S.copy(), index=i))
        scene = cls(views=views, scale_mat=S, gt_mesh=gt_mesh, landmarks=landmarks, face_sphere=face_sphere,
                    units=units, meta=dict(meta or {}))
        if scene.face_sphere is None and gt_mesh is not None and landmarks and "nose_tip" in landmarks:
            scene.face_sphere = FaceSphere.from_mesh(gt_mesh.vertices, gt_mesh.vertices[landmarks["nose_tip"]])
        if gt_mesh is not None and landmarks:
            try:
                scene.face_region = h3ds_face_region(gt_mesh.vertices, landmarks)
            except ValueError:  # fewer landmarks: the protocol then aligns the head on the face sphere
                scene.face_region = None
        return scene

    # -------------------------------------------------------------- per-view access
    def __len__(self) -> int:
        return len(self.views)

    @property
    def cameras(self) -> list[Camera]:
        return [v.camera for v in self.views]

    @property
    def images(self) -> list[np.ndarray]:
        return [v.image for v in self.views]

    @property
    def masks(self) -> list[np.ndarray]:
        return [v.mask for v in self.views]

    @property
    def indices(self) -> list[int]:
        """Index of each view in the source scene."""
        return [v.index for v in self.views]

    # -------------------------------------------------------------- frames
    def cameras_normalized(self) -> list[Camera]:
        """Cameras in the unit-sphere frame (``x_scene = scale_mat @ x_unit``), what the reconstruction uses."""
        return [v.camera.transformed(v.scale_mat) for v in self.views]

    def to_mm(self, points_unit) -> np.ndarray:
        """Unit-sphere points [N, 3] to scene units (mm)."""
        p = np.asarray(points_unit, dtype=np.float64).reshape(-1, 3)
        return p @ self.scale_mat[:3, :3].T + self.scale_mat[:3, 3]

    def to_unit(self, points_mm) -> np.ndarray:
        """Scene points [N, 3] (mm) to the unit-sphere frame."""
        p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        return np.linalg.solve(self.scale_mat[:3, :3], (p - self.scale_mat[:3, 3]).T).T

    def gt_mesh_normalized(self) -> trimesh.Trimesh | None:
        """The ground-truth mesh in the unit-sphere frame (or None)."""
        if self.gt_mesh is None:
            return None
        m = self.gt_mesh.copy()
        m.vertices = self.to_unit(self.gt_mesh.vertices)
        return m

    def head_frame(self):
        """``(center, up, front)`` used for yaw/pitch. The centre is the unit sphere's. The axes are the
        convention's +Y up / +Z out of the face unless the scene clearly uses another frame (more than 30 deg
        off): then up = the cameras' mean image-up direction and front = (right eye -> left eye) x up from the
        ground-truth landmarks (else towards the nose tip)."""
        center = self.scale_mat[:3, 3].copy()
        up = np.array([0.0, 1.0, 0.0])
        front = np.array([0.0, 0.0, 1.0])
        cos30 = np.cos(np.radians(30.0))
        if len(self.views):
            u = np.mean([c.up for c in self.cameras], axis=0)
            if np.linalg.norm(u) > 0.5 and (u / np.linalg.norm(u)) @ up < cos30:
                up = u / np.linalg.norm(u)
        lm = self.landmarks or {}
        f = None
        if self.gt_mesh is not None and "right_eye" in lm and "left_eye" in lm:
            f = np.cross(self.gt_mesh.vertices[lm["left_eye"]] - self.gt_mesh.vertices[lm["right_eye"]], up)
        elif self.gt_mesh is not None and "nose_tip" in lm:
            f = self.gt_mesh.vertices[lm["nose_tip"]] - center
        if f is not None:
            f = f - up * (f @ up)
            if np.linalg.norm(f) > 1e-6:
                f = f / np.linalg.norm(f)
                if f @ front < cos30 or abs(up[1]) < 1.0:
                    front = f
        front = front - up * (front @ up)
        if np.linalg.norm(front) < 1e-6:
            front = np.array([1.0, 0.0, 0.0]) - up * up[0]
        return center, up, front / np.linalg.norm(front)

    def yaws_deg(self) -> np.ndarray:
        center, up, front = self.head_frame()
        return camera_yaw_pitch(self.cameras, center, up, front)[0]

    def pitches_deg(self) -> np.ndarray:
        center, up, front = self.head_frame()
        return camera_yaw_pitch(self.cameras, center, up, front)[1]

    def subset(self, spec) -> "Scene":
        """A scene with only the views picked by :func:`select_views` (same ground truth)."""
        center, up, front = self.head_frame()
        yaws, pitches = camera_yaw_pitch(self.cameras, center, up, front)
        pos = select_views(yaws, spec, pitches)
        return Scene(views=[self.views[i] for i in pos], scale_mat=self.scale_mat, gt_mesh=self.gt_mesh,
                     landmarks=self.landmarks, face_sphere=self.face_sphere, path=self.path, units=self.units,
                     meta=dict(self.meta), face_region=self.face_region, regions=dict(self.regions))

    def fraction_in_masks(self, points, tolerance_px: float = 0.5) -> np.ndarray:
        """Per view, the fraction of scene points [N, 3] that project inside the mask (a point counts when a
        mask pixel lies within ``tolerance_px`` of its projection in x and y; 0 = its own pixel only). Points
        on the silhouette contour fall either side of a pixel centre, hence the default half-pixel tolerance."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = []
        offsets = [(0.0, 0.0)] if tolerance_px <= 0 else [(dx, dy) for dx in (-tolerance_px, tolerance_px)
                                                           for dy in (-tolerance_px, tolerance_px)]
        for v in self.views:
            if v.mask is None:
                raise ValueError("masks not loaded")
            uv = v.camera.project(pts)
            h, w = v.mask.shape
            hit = np.zeros(len(pts), dtype=bool)
            for dx, dy in offsets:
                q = np.floor(uv + [dx, dy]).astype(np.int64)
                ok = (q[:, 0] >= 0) & (q[:, 0] < w) & (q[:, 1] >= 0) & (q[:, 1] < h)
                hit[ok] |= v.mask[q[ok, 1], q[ok, 0]]
            out.append(hit.mean())
        return np.asarray(out)

    def write(self, path, image_format: str = "png") -> Path:
        return write_scene(path, self, image_format=image_format)

    def moved(self, M, keep_gt: bool = True) -> "Scene":
        """The same scene in another world frame: ``M`` (4x4 similarity) maps this scene's world points to the
        new frame. Cameras, ``scale_mat`` (per view and of the scene) and the ground truth move with it; with
        ``keep_gt=False`` the ground truth (mesh, landmarks, regions) is left out, as for a user's capture."""
        M = np.asarray(M, dtype=np.float64)
        similarity_parts(M)
        Minv = np.linalg.inv(M)
        views = [View(image=v.image, mask=v.mask, camera=v.camera.transformed(Minv), scale_mat=M @ v.scale_mat,
                      index=v.index, image_path=v.image_path, mask_path=v.mask_path, semantic=v.semantic,
                      semantic_path=v.semantic_path) for v in self.views]
        gt = fs = None
        if keep_gt and self.gt_mesh is not None:
            gt = self.gt_mesh.copy()
            gt.apply_transform(M)
        if keep_gt and self.face_sphere is not None:
            s = similarity_parts(M)[0]
            fs = FaceSphere(center_mm=(M @ np.append(self.face_sphere.center_mm, 1.0))[:3],
                            radius_mm=self.face_sphere.radius_mm * s, vertex_indices=self.face_sphere.vertex_indices)
        meta = {k: v for k, v in self.meta.items() if k != "prior_scale_mat"}
        return Scene(views=views, scale_mat=M @ self.scale_mat, gt_mesh=gt,
                     landmarks=self.landmarks if keep_gt else None, face_sphere=fs, path=self.path,
                     units=self.units, meta=meta, face_region=self.face_region if keep_gt else None,
                     regions=dict(self.regions) if keep_gt else {})


# ---------------------------------------------------------------------------------------------- reading helpers
def _pixels(im) -> np.ndarray:
    """float32 [H, W] or [H, W, 3] in [0, 1] of an open PIL image: 8-bit modes through RGB, 16/32-bit integer
    greyscale (PNG ``I;16``, ``I``) scaled by its bit depth (PIL's own conversion to 8 bits saturates them)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.float32)
        return arr / (65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0)
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path) -> np.ndarray:
    """RGB float32 [H, W, 3] in [0, 1] (alpha dropped, grey expanded; 16-bit greyscale scaled by 65535)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = _pixels(im)
            if arr.ndim == 2:
                arr = np.repeat(arr[:, :, None], 3, axis=2)
    except FileNotFoundError:
        raise SceneError(path, "image file not found") from None
    except Exception as exc:
        raise SceneError(path, f"cannot read image ({type(exc).__name__}: {exc})") from exc
    return arr


def load_mask(path, allow_empty: bool = False) -> np.ndarray:
    """Bool [H, W]: pixels brighter than half of the format's range (any channel mode, 16-bit too; alpha
    ignored). Empty masks raise SceneError."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = _pixels(im)
            arr = (arr.max(axis=2) if arr.ndim == 3 else arr) > 0.5
    except FileNotFoundError:
        raise SceneError(path, "mask file not found") from None
    except Exception as exc:
        raise SceneError(path, f"cannot read mask ({type(exc).__name__}: {exc})") from exc
    if not allow_empty and not arr.any():
        raise SceneError(path, "mask is empty (no foreground pixel)")
    return arr


# the principal point of a real camera lies near the image centre; a uniform resize of the image without its camera
# moves it off-centre by the same fraction on both axes (2x smaller: to the far corner; 2x larger: to the near quarter)
PRINCIPAL_POINT_BAND = (0.3, 0.7)


def _check_principal_point(cam: Camera, image_path, where: str) -> None:
    """SceneError when the camera's principal point says that the image (and mask) were resized without scaling the
    camera: the point lies outside the image, or outside :data:`PRINCIPAL_POINT_BAND` on both axes towards the same
    corner, as a uniform resize puts it. A crop moves it on one axis only (a portrait whose bottom rows were cut off:
    the point moves towards the bottom edge) and is accepted."""
    lo, hi = PRINCIPAL_POINT_BAND
    cx, cy = float(cam.K[0, 2]), float(cam.K[1, 2])
    u, v = cx / cam.width, cy / cam.height
    outside = not (0.0 < u < 1.0 and 0.0 < v < 1.0)
    resized = (u < lo and v < lo) or (u > hi and v > hi)
    if outside or resized:
        raise SceneError(image_path, f"the principal point ({cx:.1f}, {cy:.1f}) px of {where} lies "
                                     f"{'outside' if outside else 'far from the centre of'} this "
                                     f"{cam.width}x{cam.height} image: were the image and mask resized without "
                                     "scaling the camera?")


def _image_size(path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size  # (width, height), header only
    except Exception as exc:
        raise SceneError(path, f"cannot read image ({type(exc).__name__}: {exc})") from exc


def read_landmarks(path, n_vertices: int | None = None) -> dict:
    """``name vertex_index`` lines -> dict; checks the indices against ``n_vertices`` when given."""
    path = Path(path)
    out = {}
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 2:
            raise SceneError(path, f"line {ln}: expected 'name vertex_index', got {line!r}")
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            raise SceneError(path, f"line {ln}: vertex index {parts[1]!r} is not an integer") from None
        if n_vertices is not None and not 0 <= out[parts[0]] < n_vertices:
            raise SceneError(path, f"line {ln}: vertex index {out[parts[0]]} out of range (mesh has {n_vertices})")
    return out


def write_landmarks(path, landmarks: dict) -> None:
    Path(path).write_text("".join(f"{k} {int(v)}\n" for k, v in landmarks.items()))


def _read_region(path, n_vertices: int | None) -> np.ndarray:
    """Vertex indices of a region file (one integer a line). A 0/1 list as long as the mesh is read as a mask."""
    path = Path(path)
    try:
        vals = np.array([int(float(t)) for t in path.read_text().split()], dtype=np.int64)
    except ValueError:
        raise SceneError(path, "region file must contain one integer per line") from None
    if n_vertices is not None and len(vals) == n_vertices and set(np.unique(vals)) <= {0, 1} and n_vertices > 2:
        return np.nonzero(vals)[0]
    if n_vertices is not None and len(vals) and (vals.min() < 0 or vals.max() >= n_vertices):
        raise SceneError(path, f"vertex index out of range (mesh has {n_vertices} vertices)")
    return vals


def load_region(scene_dir, name: str, n_vertices: int | None = None) -> np.ndarray | None:
    """Vertex indices of ``scene_dir/regions/<name>.txt`` (None when the file does not exist)."""
    p = Path(scene_dir) / "regions" / f"{name}.txt"
    return _read_region(p, n_vertices) if p.is_file() else None


def _list_files(folder: Path, prefix: str, exts) -> dict:
    """Map view index -> file. Names ``<prefix>_<digits>`` give the index; otherwise the sorted position."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts and p.is_file())
    pat = re.compile(rf"^{prefix}_?(\d+)$")
    matches = [pat.match(p.stem) for p in files]
    if files and all(matches):
        out = {}
        for p, m in zip(files, matches):
            i = int(m.group(1))
            if i in out:
                raise SceneError(folder, f"two files for view {i}: {out[i].name} and {p.name}")
            out[i] = p
        return out
    return dict(enumerate(files))


def _read_npz_matrix(npz, key, cam_path) -> np.ndarray:
    try:
        M = np.asarray(npz[key], dtype=np.float64)
    except ValueError as exc:  # an object array (pickled Python objects: never loaded), or not numbers
        why = ("holds Python objects, refused without running any of it" if "allow_pickle" in str(exc)
               else f"is not a numeric matrix ({exc})")
        raise SceneError(cam_path, f"{key} {why}") from None
    if M.shape not in ((4, 4), (3, 4)):
        raise SceneError(cam_path, f"{key} has shape {M.shape}, expected 4x4 (or 3x4)")
    if not np.all(np.isfinite(M)):
        raise SceneError(cam_path, f"{key} contains NaN or inf")
    return M


def load_gt(path, gt_name: str = "full_head.obj"):
    """Ground truth of a scene folder without its images: ``(mesh or None, landmarks or None, FaceSphere or
    None)``. ``mesh`` keeps the file's vertex order and units (mm for H3DS)."""
    path = Path(path)
    mesh_path = path / gt_name
    if not mesh_path.is_file():
        return None, None, None
    mesh = load_mesh(mesh_path)
    n = len(mesh.vertices)
    lm_path = path / "landmarks.txt"
    landmarks = read_landmarks(lm_path, n) if lm_path.is_file() else None
    region_path = path / "regions" / "face_sphere.txt"
    face_sphere = None
    if landmarks and "nose_tip" in landmarks:
        center = mesh.vertices[landmarks["nose_tip"]]
        if region_path.is_file():
            face_sphere = FaceSphere(center_mm=center, vertex_indices=_read_region(region_path, n))
        else:
            face_sphere = FaceSphere.from_mesh(mesh.vertices, center)
    elif region_path.is_file():
        idx = _read_region(region_path, n)
        face_sphere = FaceSphere(center_mm=mesh.vertices[idx].mean(axis=0) if len(idx) else np.zeros(3),
                                 vertex_indices=idx)
    return mesh, landmarks, face_sphere


# ---------------------------------------------------------------------------------------------- load / write
def is_nerfstudio_scene(path) -> bool:
    """Whether ``path`` is a nerfstudio ``transforms.json`` (or an IDR-less folder holding one)."""
    path = Path(path)
    return path.suffix.lower() == ".json" or (path.is_dir() and not (path / "cameras.npz").exists()
                                              and (path / "transforms.json").exists())


def load_scene(path, views=None, load_images: bool = True, load_gt_mesh: bool = True,
               allow_missing_masks: bool = True) -> Scene:
    """Read an IDR/H3DS scene folder (a nerfstudio ``transforms.json`` goes to
    :func:`headrecon.data.nerfstudio.load_transforms_json`; :func:`headrecon.data.load_scene` reads either).

    ``views``: None/"all", "3", "4", "8", "16", "32" (any N), or a list of indices (see :func:`select_views`).
    Only the selected images are decoded, but every file is checked (existence, counts, sizes, matrices).
    ``load_images=False`` skips decoding (``image``/``mask`` are None). A view without a file in ``mask/`` (or a
    scene without ``mask/``) has ``mask`` None, to be estimated from its photo
    (:func:`headrecon.photos.masks.fill_missing_masks`), unless ``allow_missing_masks=False`` (then an error).
    Raises :class:`SceneError` naming the file and the problem for missing files, mismatched counts or sizes,
    singular matrices and empty masks.
    """
    path = Path(path)
    if not path.is_dir():
        raise SceneError(path, "scene folder not found")
    cam_path = path / "cameras.npz"
    if not cam_path.is_file():
        raise SceneError(cam_path, "cameras.npz not found (IDR/H3DS scenes need world_mat_i and scale_mat_i)")
    if not (path / "image").is_dir():
        raise SceneError(path / "image", "folder 'image/' not found")
    images = _list_files(path / "image", "img", IMAGE_EXTS)
    # masks are optional: a view without one has mask None (headrecon.photos.masks.fill_missing_masks makes one)
    masks = _list_files(path / "mask", "mask", IMAGE_EXTS) if (path / "mask").is_dir() else {}
    if not images:
        raise SceneError(path / "image", "no images (.png/.jpg) found")
    semantic = _list_files(path / "semantic", "sem", (".png",)) if (path / "semantic").is_dir() else {}
    if semantic and sorted(semantic) != sorted(images):
        raise SceneError(path / "semantic", f"label maps for views {sorted(semantic)[:10]} but images for views "
                                            f"{sorted(images)[:10]}: one sem_XXXX.png per image is needed")
    missing_i = sorted(set(masks) - set(images))
    if missing_i:
        raise SceneError(path / "mask", f"masks without an image in image/ for views {missing_i[:10]}")
    missing_m = sorted(set(images) - set(masks))
    if missing_m and not allow_missing_masks:
        raise SceneError(path / "mask", f"masks missing for views {missing_m[:10]}")
    order = sorted(images)
    if order != list(range(len(order))):
        raise SceneError(path / "image", f"view numbers must run 0..{len(order) - 1}, found {order[:10]}...")

    try:
        npz = np.load(cam_path)
    except Exception as exc:
        raise SceneError(cam_path, f"cannot read ({type(exc).__name__}: {exc})") from exc
    with npz:
        keys = set(npz.files)
        n_world = len([k for k in keys if re.fullmatch(r"world_mat_\d+", k)])
        if n_world != len(order):
            raise SceneError(cam_path, f"{n_world} world_mat_i matrices but {len(order)} images")
        has_scale = [f"scale_mat_{i}" in keys for i in order]
        if any(has_scale) and not all(has_scale):
            raise SceneError(cam_path, f"scale_mat_i missing for views {[i for i, h in zip(order, has_scale) if not h][:10]}")
        world = {}
        scale = {}
        for i in order:
            if f"world_mat_{i}" not in keys:
                raise SceneError(cam_path, f"world_mat_{i} missing")
            world[i] = _read_npz_matrix(npz, f"world_mat_{i}", cam_path)
            if all(has_scale):
                S = _read_npz_matrix(npz, f"scale_mat_{i}", cam_path)
                if S.shape != (4, 4):
                    raise SceneError(cam_path, f"scale_mat_{i} must be 4x4, got {S.shape}")
                try:
                    similarity_parts(S)
                except ValueError as exc:
                    raise SceneError(cam_path, f"scale_mat_{i}: {exc}") from None
                scale[i] = S
            else:
                scale[i] = np.eye(4)

    cameras = {}
    sizes = {}
    for i in order:
        w, h = _image_size(images[i])
        mw, mh = _image_size(masks[i]) if i in masks else (w, h)
        if (mw, mh) != (w, h):
            raise SceneError(masks[i], f"mask is {mw}x{mh} but image {images[i].name} is {w}x{h}")
        if i in semantic and _image_size(semantic[i]) != (w, h):
            sw, sh = _image_size(semantic[i])
            raise SceneError(semantic[i], f"label map is {sw}x{sh} but image {images[i].name} is {w}x{h}")
        sizes[i] = (w, h)
        cameras[i] = Camera.from_projection(world[i], w, h, source=f"{cam_path} (world_mat_{i})")
        _check_principal_point(cameras[i], images[i], f"world_mat_{i} of {cam_path}")

    gt_mesh = landmarks = face_sphere = None
    if load_gt_mesh:
        gt_mesh, landmarks, face_sphere = load_gt(path)
    S0 = scale[order[0]]
    meta = {}
    info = path / "scene_info.json"
    if info.is_file():
        try:
            meta = json.loads(info.read_text())
        except json.JSONDecodeError as exc:
            raise SceneError(info, f"invalid JSON ({exc})") from None
    all_views = [View(image=None, mask=None, camera=cameras[i], scale_mat=scale[i], index=i,
                      image_path=images[i], mask_path=masks.get(i), semantic_path=semantic.get(i)) for i in order]
    face_region = load_region(path, "face", len(gt_mesh.vertices)) if gt_mesh is not None else None
    regions = {}
    if gt_mesh is not None and (path / "regions").is_dir():
        for f in sorted((path / "regions").glob("*.txt")):
            if f.stem not in ("face", "face_sphere"):
                regions[f.stem] = _read_region(f, len(gt_mesh.vertices))
    scene = Scene(views=all_views, scale_mat=S0, gt_mesh=gt_mesh, landmarks=landmarks, face_sphere=face_sphere,
                  path=path, units="mm", meta=meta, face_region=face_region, regions=regions)
    if views is not None:
        scene = scene.subset(views)
    if load_images:
        for v in scene.views:
            v.image = load_image(v.image_path)
            v.mask = load_mask(v.mask_path) if v.mask_path is not None else None
            v.semantic = load_labels(v.semantic_path) if v.semantic_path is not None else None
    return scene


def load_labels(path) -> np.ndarray:
    """A label map ``semantic/sem_XXXX.png`` as uint8 [H, W] (see :mod:`headrecon.data.semantics`); SceneError
    naming the file for an unreadable image, colour or 16-bit images and out-of-range values."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise SceneError(path, f"a label map must be an 8-bit single-channel PNG (class indices), got mode "
                                       f"{im.mode}")
            a = np.asarray(im, dtype=np.uint8)  # a palette image's pixels are its indices
    except SceneError:
        raise
    except Exception as exc:
        raise SceneError(path, f"cannot read ({type(exc).__name__}: {exc})") from exc
    problem = check_labels(a)
    if problem:
        raise SceneError(path, problem)
    return a.copy()


def write_scene(path, scene: Scene, image_format: str = "png", jpeg_quality: int = 95,
                overwrite: bool = False) -> Path:
    """Write ``scene`` in the IDR/H3DS layout (views renumbered 0..N-1 in the scene's order).

    Writes image/img_XXXX.<png|jpg>, mask/mask_XXXX.png, cameras.npz (world_mat_i, scale_mat_i), and when
    present full_head.obj (geometry only, vertex order kept), landmarks.txt, regions/face_sphere.txt,
    regions/face.txt and scene_info.json (``scene.meta``). Returns the folder.

    The scene is written into a temporary sibling folder and renamed into place, so a stopped write leaves no
    half scene. An existing non-empty ``path`` is refused (SceneError) unless ``overwrite``; then a folder holding
    a scene (``cameras.npz``) is replaced whole (no stale view of the old scene survives), anything else refused.
    """
    import shutil

    path = Path(path)
    fmt = image_format.lower().lstrip(".")
    if fmt not in ("png", "jpg", "jpeg"):
        raise ValueError(f"image_format must be png or jpg, got {image_format!r}")
    if path.exists() and not path.is_dir():
        raise SceneError(path, "exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise SceneError(path, "exists and is not empty: choose a new folder, or replace the scene in it whole "
                                   "(headrecon-make-scene --overwrite)")
        if not (path / "cameras.npz").is_file():
            raise SceneError(path, "is not empty and holds no scene (no cameras.npz): not replaced")
    final, path = path, path.with_name(f".{path.name}.writing")
    if path.exists():
        shutil.rmtree(path)
    _write_scene_files(path, scene, fmt, jpeg_quality)
    if final.exists():
        shutil.rmtree(final)
    path.rename(final)
    return final


def _write_scene_files(path: Path, scene: Scene, fmt: str, jpeg_quality: int) -> None:
    (path / "image").mkdir(parents=True, exist_ok=True)
    (path / "mask").mkdir(parents=True, exist_ok=True)
    arrays = {}
    for k, v in enumerate(scene.views):
        if v.image is None or v.mask is None:
            raise ValueError(f"view {k} has no image/mask loaded; load the scene with load_images=True")
        img = np.clip(np.asarray(v.image, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if img.shape[:2] != (v.camera.height, v.camera.width) or v.mask.shape != img.shape[:2]:
            raise ValueError(f"view {k}: image {img.shape[:2]}, mask {v.mask.shape} and camera "
                             f"{v.camera.height}x{v.camera.width} sizes differ")
        name = path / "image" / f"img_{k:04d}.{'jpg' if fmt != 'png' else 'png'}"
        if fmt == "png":
            Image.fromarray(img).save(name)
        else:
            Image.fromarray(img).save(name, quality=jpeg_quality)
        Image.fromarray((np.asarray(v.mask, dtype=bool) * 255).astype(np.uint8)).save(path / "mask" / f"mask_{k:04d}.png")
        if v.semantic is not None:
            (path / "semantic").mkdir(exist_ok=True)
            Image.fromarray(np.asarray(v.semantic, dtype=np.uint8)).save(path / "semantic" / f"sem_{k:04d}.png")
        arrays[f"world_mat_{k}"] = v.camera.world_mat()
        arrays[f"scale_mat_{k}"] = np.asarray(v.scale_mat, dtype=np.float64)
    np.savez(path / "cameras.npz", **arrays)
    if scene.gt_mesh is not None:
        save_mesh(scene.gt_mesh, path / "full_head.obj")
    if scene.landmarks:
        write_landmarks(path / "landmarks.txt", scene.landmarks)
    if scene.face_sphere is not None and scene.face_sphere.vertex_indices is not None:
        (path / "regions").mkdir(exist_ok=True)
        (path / "regions" / "face_sphere.txt").write_text(
            "".join(f"{int(i)}\n" for i in scene.face_sphere.vertex_indices))
    if scene.face_region is not None:
        (path / "regions").mkdir(exist_ok=True)
        (path / "regions" / "face.txt").write_text("".join(f"{int(i)}\n" for i in scene.face_region))
    if scene.meta:
        (path / "scene_info.json").write_text(json.dumps(scene.meta, indent=1, default=_json_default))


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
