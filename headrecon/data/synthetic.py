"""Synthetic posed scenes: CPU ray-cast rendering of a (textured) mesh and writing it as an IDR/H3DS scene.

The renderer casts one ray per pixel centre (or ``ssaa**2`` per pixel) with trimesh + embree, shades the first
hit with a Lambertian model ``albedo * (ambient + sum_i I_i max(0, n . l_i) [* shadow_i])`` using smooth vertex
normals, and takes the albedo from the mesh's texture (UV, bilinear), its vertex or face colours, or a constant
grey. Lights are directions in the world frame (fixed to the head, as in a real capture) or ``headlight``
(from the camera).

:func:`make_scene` places cameras on an orbit around the head (yaw about +Y, pitch up/down; yaw 0 looks at the
face along -Z, positive yaw moves the camera towards +X), renders them, optionally perturbs the *written* cameras
with Gaussian pose noise (SIRA++'s robustness protocol; the images stay clean), and writes the scene with the
ground-truth mesh in millimetres, the six landmarks and the 95 mm face-sphere region.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import trimesh
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from PIL import Image
from tqdm import tqdm

from .camera import Camera
from .scene import Scene, write_scene

__all__ = [
    "Light", "parse_lights", "MeshRenderer", "RenderResult", "orbit_cameras", "orbit_yaws", "perturb_cameras",
    "fit_scale_mat", "default_distance_focal", "make_scene", "merge_by_position",
]


# ---------------------------------------------------------------------------------------------- lights
@dataclass
class Light:
    """A directional light: ``direction`` points from the surface towards the light (world frame, or camera
    frame with x right, y up, z towards the viewer when ``headlight``), ``intensity`` scales its colour."""

    direction: np.ndarray
    intensity: float = 1.0
    color: tuple = (1.0, 1.0, 1.0)
    headlight: bool = False

    def __post_init__(self):
        d = np.asarray(self.direction, dtype=np.float64)
        self.direction = d / np.linalg.norm(d)


LIGHT_PRESETS = {
    # key light front-left-above, fill front-right, rim light from behind so that the back of the head shows
    "studio": "0.5,0.6,1@0.6;-0.8,0.1,0.5@0.3;0,0.4,-1@0.35",
    "front": "0,0.3,1@0.7",
    "headlight": "headlight@0.7",
    "none": "",
}


def parse_lights(spec) -> list[Light]:
    """Lights from a spec string: a preset name (``studio``, ``front``, ``headlight``, ``none``) or
    ``;``-separated entries ``x,y,z[@intensity]`` (world direction towards the light) or ``headlight[@i]``.
    A list of :class:`Light` is returned unchanged."""
    if isinstance(spec, (list, tuple)):
        return list(spec)
    spec = LIGHT_PRESETS.get(str(spec).strip(), str(spec).strip())
    lights = []
    for entry in filter(None, (e.strip() for e in spec.split(";"))):
        body, _, inten = entry.partition("@")
        intensity = float(inten) if inten else 1.0
        if body.strip().lower() == "headlight":
            lights.append(Light(direction=[0.0, 0.0, 1.0], intensity=intensity, headlight=True))
            continue
        try:
            xyz = [float(x) for x in body.split(",")]
        except ValueError:
            raise ValueError(f"bad light {entry!r}: expected 'x,y,z[@intensity]' or 'headlight[@intensity]'") from None
        if len(xyz) != 3 or np.linalg.norm(xyz) == 0:
            raise ValueError(f"bad light {entry!r}: direction needs 3 numbers, not all zero")
        lights.append(Light(direction=xyz, intensity=intensity))
    return lights


# ---------------------------------------------------------------------------------------------- renderer
@dataclass
class RenderResult:
    """``image`` float32 [H, W, 3] in [0, 1] (background where the mask is off), ``mask`` bool [H, W],
    ``depth`` float32 [H, W] camera-frame z (inf on background) of the central sample; ``points`` float64
    [H, W, 3] its hit point (inf on background), ``normals`` [H, W, 3] its shading normal (towards the camera)
    and ``vertex`` int64 [H, W] the hit triangle's corner nearest to it (-1 on background)."""

    image: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    points: np.ndarray | None = None
    normals: np.ndarray | None = None
    vertex: np.ndarray | None = None


def merge_by_position(vertices, decimals: int = 9):
    """``(unique_vertices, inverse)`` merging vertices at identical positions (e.g. split at UV seams).

    Kept vertices stay in their original order (first occurrence), so a mesh without duplicates maps to itself.
    """
    v = np.asarray(vertices, dtype=np.float64)
    _, first, inverse = np.unique(np.round(v, decimals), axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return v[first[order]], rank[inverse.reshape(-1)]


class MeshRenderer:
    """Ray-cast renderer for one mesh (see module docstring). ``flip_v``: the texture's V axis points down the
    image (glTF/three.js files such as the Lee Perry-Smith scan), i.e. sample row ``v * (H-1)`` not
    ``(1-v) * (H-1)``."""

    def __init__(self, mesh: trimesh.Trimesh, lights="studio", ambient: float = 0.35, background=(0.0, 0.0, 0.0),
                 flip_v: bool = False, smooth: bool = True, default_albedo=(0.7, 0.7, 0.7)):
        self.mesh = mesh
        self.lights = parse_lights(lights)
        self.ambient = float(ambient)
        self.background = np.asarray(background, dtype=np.float32).reshape(3)
        self.flip_v = flip_v
        self.default_albedo = np.asarray(default_albedo, dtype=np.float64)
        self.triangles = np.asarray(mesh.triangles, dtype=np.float64)
        faces = np.asarray(mesh.faces)
        self.face_normals = np.asarray(mesh.face_normals, dtype=np.float64)
        if smooth:
            uv, inverse = merge_by_position(mesh.vertices)
            merged_faces = inverse[faces]
            vn = trimesh.geometry.mean_vertex_normals(len(uv), merged_faces, self.face_normals)
            self.corner_normals = vn[merged_faces]  # [F, 3, 3]
        else:
            self.corner_normals = None
        self._setup_albedo()
        try:
            from trimesh.ray.ray_pyembree import RayMeshIntersector
            self.intersector = RayMeshIntersector(mesh)
        except Exception:  # embree missing: trimesh's (slow) pure-python intersector
            self.intersector = trimesh.ray.ray_triangle.RayMeshIntersector(mesh)

    def _setup_albedo(self):
        vis = self.mesh.visual
        self.texture = None
        self.corner_uv = None
        self.corner_colors = None
        self.face_colors = None
        faces = np.asarray(self.mesh.faces)
        if isinstance(vis, trimesh.visual.texture.TextureVisuals):
            mat = vis.material
            img = getattr(mat, "baseColorTexture", None)
            if img is None:
                img = getattr(mat, "image", None)
            factor = getattr(mat, "baseColorFactor", None)  # PBR: multiplies the texture
            if factor is None and img is None:
                factor = getattr(mat, "main_color", None)  # simple material without image: its diffuse colour
            factor = np.ones(3) if factor is None else np.asarray(factor, dtype=np.float64)[:3]
            if factor.max() > 1.0:
                factor = factor / 255.0
            if img is not None and vis.uv is not None and len(vis.uv) == len(self.mesh.vertices):
                self.texture = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0 * factor.astype(np.float32)
                self.corner_uv = np.asarray(vis.uv, dtype=np.float64)[faces]
            else:
                self.face_colors = np.broadcast_to(factor, (len(faces), 3))
        elif isinstance(vis, trimesh.visual.color.ColorVisuals) and vis.defined:
            if vis.kind == "vertex":
                self.corner_colors = (np.asarray(vis.vertex_colors, dtype=np.float64)[:, :3] / 255.0)[faces]
            elif vis.kind == "face":
                self.face_colors = np.asarray(vis.face_colors, dtype=np.float64)[:, :3] / 255.0

    def albedo(self, face_idx, bary) -> np.ndarray:
        """Albedo [N, 3] at hits given triangle indices and barycentric coordinates [N, 3]."""
        if self.texture is not None:
            uv = np.einsum("nk,nkj->nj", bary, self.corner_uv[face_idx])
            uv = uv - np.floor(uv)  # repeat wrapping
            h, w = self.texture.shape[:2]
            rows = (uv[:, 1] if self.flip_v else 1.0 - uv[:, 1]) * (h - 1)
            cols = uv[:, 0] * (w - 1)
            return np.stack([map_coordinates(self.texture[..., c], [rows, cols], order=1, mode="nearest")
                             for c in range(3)], axis=1).astype(np.float64)
        if self.corner_colors is not None:
            return np.einsum("nk,nkj->nj", bary, self.corner_colors[face_idx])
        if self.face_colors is not None:
            return np.asarray(self.face_colors)[face_idx]
        return np.broadcast_to(self.default_albedo, (len(face_idx), 3))

    def _shade_rays(self, origins, dirs, camera: Camera, shadows: bool):
        """Colour [N, 3], hit bool [N], hit points [N, 3], shading normals [N, 3] and nearest corner vertex [N]
        (-1: no hit) for a batch of rays."""
        n = len(origins)
        color = np.broadcast_to(self.background.astype(np.float64), (n, 3)).copy()
        hit = np.zeros(n, dtype=bool)
        points = np.full((n, 3), np.inf)
        normals = np.zeros((n, 3))
        vertex = np.full(n, -1, dtype=np.int64)
        locs, ray_idx, tri_idx = self.intersector.intersects_location(origins, dirs, multiple_hits=False)
        if len(ray_idx) == 0:
            return color, hit, points, normals, vertex
        bary = trimesh.triangles.points_to_barycentric(self.triangles[tri_idx], locs)
        bary = np.clip(bary, 0.0, 1.0)
        bary /= bary.sum(axis=1, keepdims=True)
        if self.corner_normals is not None:
            nrm = np.einsum("nk,nkj->nj", bary, self.corner_normals[tri_idx])
            nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        else:
            nrm = self.face_normals[tri_idx].copy()
        d = dirs[ray_idx]
        flip = np.einsum("nj,nj->n", nrm, d) > 0  # back face (open meshes): shade the side we see
        nrm[flip] *= -1
        alb = self.albedo(tri_idx, bary)
        light = np.full((len(ray_idx), 3), self.ambient)
        cam2world = camera.R.T @ np.diag([1.0, -1.0, -1.0])  # headlight frame: x right, y up, z to viewer
        for L in self.lights:
            ldir = cam2world @ L.direction if L.headlight else L.direction
            lam = np.clip(nrm @ ldir, 0.0, None)
            if shadows and not L.headlight:
                lit = lam > 0
                if lit.any():
                    eps = 1e-4 * float(np.ptp(self.mesh.bounds, axis=0).max())
                    o = locs[lit] + nrm[lit] * eps
                    blocked = self.intersector.intersects_any(o, np.broadcast_to(ldir, o.shape).copy())
                    lam[np.nonzero(lit)[0][blocked]] = 0.0
            light += lam[:, None] * L.intensity * np.asarray(L.color)[None]
        color[ray_idx] = np.clip(alb * light, 0.0, 1.0)
        hit[ray_idx] = True
        points[ray_idx] = locs
        normals[ray_idx] = nrm
        vertex[ray_idx] = np.asarray(self.mesh.faces)[tri_idx, np.argmax(bary, axis=1)]
        return color, hit, points, normals, vertex

    def render(self, camera: Camera, ssaa: int = 1, shadows: bool = False, chunk: int = 1 << 18) -> RenderResult:
        """Render one view. ``ssaa`` > 1 supersamples ``ssaa x ssaa`` rays per pixel (anti-aliased edges; the
        mask is then coverage >= 50 %)."""
        ssaa = max(1, int(ssaa))
        cam = camera.resized(camera.width * ssaa, camera.height * ssaa) if ssaa > 1 else camera
        origins, dirs = cam.rays_np()
        n = len(origins)
        color = np.empty((n, 3))
        hit = np.empty(n, dtype=bool)
        pts = np.empty((n, 3))
        nrm = np.empty((n, 3))
        vert = np.empty(n, dtype=np.int64)
        for s in range(0, n, chunk):
            color[s:s + chunk], hit[s:s + chunk], pts[s:s + chunk], nrm[s:s + chunk], vert[s:s + chunk] = \
                self._shade_rays(origins[s:s + chunk], dirs[s:s + chunk], camera, shadows)
        H, W = camera.height, camera.width
        color = color.reshape(H, ssaa, W, ssaa, 3).mean(axis=(1, 3))
        cover = hit.reshape(H, ssaa, W, ssaa).mean(axis=(1, 3))
        mask = cover >= 0.5
        # depth of the central sample (ssaa odd) or the first sample
        c = ssaa // 2
        pts_c = pts.reshape(H, ssaa, W, ssaa, 3)[:, c, :, c]
        nrm_c = nrm.reshape(H, ssaa, W, ssaa, 3)[:, c, :, c]
        vert_c = vert.reshape(H, ssaa, W, ssaa)[:, c, :, c]
        depth = np.full((H, W), np.inf, dtype=np.float32)
        ok = np.isfinite(pts_c[..., 0])
        if ok.any():
            depth[ok] = (pts_c[ok] @ camera.R.T + camera.t)[:, 2]
        return RenderResult(image=color.astype(np.float32), mask=mask, depth=depth, points=pts_c, normals=nrm_c,
                            vertex=vert_c)



class MultiMeshRenderer(MeshRenderer):
    """Several meshes rendered together (the nearest hit per ray), e.g. a head and its hair shell; each keeps its
    own texture or colours. :attr:`RenderResult.vertex` counts vertices through the parts in order. A part casts
    shadows (``shadows=True``) on itself only."""

    def __init__(self, meshes, **kw):
        meshes = list(meshes)
        self.parts = [MeshRenderer(m, **kw) for m in meshes]
        self.offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
        self.background = self.parts[0].background

    def _shade_rays(self, origins, dirs, camera: Camera, shadows: bool):
        best = None
        for part, off in zip(self.parts, self.offsets):
            col, hit, pts, nrm, vert = part._shade_rays(origins, dirs, camera, shadows)
            dist = np.where(hit, np.linalg.norm(np.where(hit[:, None], pts, 0.0) - origins, axis=1), np.inf)
            out = [col, hit, pts, nrm, np.where(hit, vert + off, -1), dist]
            if best is None:
                best = out
                continue
            closer = dist < best[5]
            for k in range(6):
                best[k][closer] = out[k][closer]
        return tuple(best[:5])

# ---------------------------------------------------------------------------------------------- camera rigs
def orbit_yaws(views) -> list[float]:
    """Yaws (degrees) for ``views``: an int N = N steps of 360/N from 0, or an explicit list of yaws."""
    if isinstance(views, (int, np.integer)):
        if views <= 0:
            raise ValueError("number of views must be positive")
        return [float(k * 360.0 / views) if k * 360.0 / views <= 180 else float(k * 360.0 / views - 360)
                for k in range(int(views))]
    return [float(y) for y in views]


def orbit_cameras(center, distance: float, yaws_deg: Sequence[float], pitches_deg: Sequence[float] = (0.0,),
                  focal: float = 500.0, width: int = 512, height: int | None = None) -> list[Camera]:
    """Cameras at ``distance`` from ``center`` looking at it, one per (pitch, yaw) pair (pitch outer loop).

    Camera position = ``center + distance * (sin(yaw) cos(pitch), sin(pitch), cos(yaw) cos(pitch))``: yaw 0 is
    in front of the face (+Z) looking along -Z, +90 is at +X; image up is +Y.
    """
    height = width if height is None else height
    center = np.asarray(center, dtype=np.float64)
    cams = []
    for p in pitches_deg:
        for y in yaws_deg:
            yr, pr = np.radians(y), np.radians(p)
            eye = center + distance * np.array([np.sin(yr) * np.cos(pr), np.sin(pr), np.cos(yr) * np.cos(pr)])
            cam = Camera.look_at(eye, center, focal, width, height, up=(0.0, 1.0, 0.0))
            cam.meta.update(yaw_deg=float(y), pitch_deg=float(p))
            cams.append(cam)
    return cams


def perturb_cameras(cameras: Sequence[Camera], sigma_rot_deg: float = 0.0, sigma_pos: float = 0.0,
                    seed: int = 0) -> list[Camera]:
    """Gaussian pose noise: each camera is rotated about its centre by a rotation vector ~ N(0, sigma_rot_deg^2)
    per axis and its centre moved by N(0, sigma_pos^2) per axis (scene units). Intrinsics unchanged."""
    rng = np.random.default_rng(seed)
    out = []
    for cam in cameras:
        dR = Rotation.from_rotvec(np.radians(sigma_rot_deg) * rng.standard_normal(3)).as_matrix()
        c = cam.center + sigma_pos * rng.standard_normal(3)
        R = dR @ cam.R
        out.append(Camera(K=cam.K.copy(), R=R, t=-R @ c, width=cam.width, height=cam.height, meta=dict(cam.meta)))
    return out


def fit_scale_mat(vertices, margin: float = 1.1, center=None) -> np.ndarray:
    """H3DS-like ``scale_mat``: uniform scale + translation mapping the unit sphere onto a sphere around the
    bounding-box centre (or ``center``) that encloses every vertex with ``margin``."""
    v = np.asarray(vertices, dtype=np.float64)
    c = (v.min(axis=0) + v.max(axis=0)) / 2.0 if center is None else np.asarray(center, dtype=np.float64)
    r = float(np.linalg.norm(v - c, axis=1).max()) * margin
    S = np.eye(4)
    S[:3, :3] *= r
    S[:3, 3] = c
    return S


def default_distance_focal(radius: float, size: int, distance: float | None = None, focal: float | None = None,
                           fill: float = 0.9):
    """Distance and focal length (pixels) such that a sphere of ``radius`` spans ``fill`` of the image's
    smaller side. Defaults: distance = 3 radii."""
    half = fill * size / 2.0
    if distance is None and focal is None:
        distance = 3.0 * radius
    if focal is None:
        a = np.arcsin(min(radius / distance, 0.999))
        focal = half / np.tan(a)
    elif distance is None:
        a = np.arctan(half / focal)
        distance = radius / np.sin(a)
    return float(distance), float(focal)


# ---------------------------------------------------------------------------------------------- make_scene
def make_scene(mesh: trimesh.Trimesh, out_dir=None, *, views=32, pitch: Sequence[float] = (0.0,), size=512,
               focal: float | None = None, distance: float | None = None, mm_per_unit: float = 1.0,
               landmarks: dict | None = None, lights="studio", ambient: float = 0.35, background=(0.0, 0.0, 0.0),
               flip_v: bool = False, ssaa: int = 1, shadows: bool = False, pose_noise_rot_deg: float = 0.0,
               pose_noise_pos_mm: float = 0.0, pose_noise: float | None = None, seed: int = 0,
               margin: float = 1.1, image_format: str = "png", progress: bool = True, meta: dict | None = None,
               overwrite: bool = False, hair=None, gt_outer_only: bool = False, crop_bottom: float = 0.0) -> Scene:
    """Render ``mesh`` from an orbit of cameras and (when ``out_dir`` is given) write an IDR/H3DS scene.

    * ``mesh`` in its own units, +Y up, +Z out of the face; ``mm_per_unit`` converts to mm (ICT: 10, Lee
      Perry-Smith: 48). Texture/vertex colours are used when present (``flip_v`` for glTF-style V).
    * ``views``: number of yaw steps around 360 deg, or an explicit list of yaws (deg); ``pitch``: list of pitches
      (deg); every (pitch, yaw) pair is one view. ``size``: int or (width, height).
    * ``focal`` (pixels) / ``distance`` (mm): default so that the unit sphere (head + ``margin``) nearly fills the
      image (see :func:`default_distance_focal`).
    * ``landmarks``: name -> vertex index of ``mesh`` (default ``mesh.metadata["landmarks"]``); with a
      ``nose_tip`` the 95 mm face-sphere region is written too.
    * Pose noise (written cameras only, rendering stays exact): ``pose_noise_rot_deg`` and ``pose_noise_pos_mm``,
      or ``pose_noise`` = one sigma in the unit-sphere frame (radians for rotation, unit-sphere radii for
      position). The clean cameras go to ``cameras_clean.npz``.
    * ``hair``: a :class:`~headrecon.data.hair.HairedHead` made from ``mesh`` (mm, ``mm_per_unit`` 1): its parts
      are rendered, its ``gt`` is the ground truth, and the scene gets ``semantic/sem_XXXX.png`` (class per pixel,
      :data:`~headrecon.data.hair.SEMANTIC_CLASSES`, listed in ``scene_info.json``) and, for evaluation only,
      ``orientation_gt/orient_XXXX.npy`` (the true 2D strand angle of every hair pixel, NaN elsewhere); the
      hair is left out of ``regions/face.txt``.

    * ``gt_outer_only``: the ground truth keeps only the faces a camera can see from outside
      (:func:`~headrecon.data.geometry.outer_faces`); the images are rendered from the whole mesh either way. A
      scan has no surfaces no camera sees (an ICT head's inner lips and mouth and eye caps: 7-14 % of its face
      region's vertices, 1-3 cm behind the nose tip), and the nearest-vertex distances from the ground truth
      would count them.
    * ``crop_bottom``: the fraction of image rows cut off at the bottom of every view after rendering (the
      cameras keep their intrinsics, the images get shorter), so that the frame cuts the body like a portrait
      photo's; the ground truth stays whole.

    Returns the :class:`Scene` (in memory, cameras as written). The ground-truth mesh is the geometry merged at
    seams, in mm, with landmarks re-indexed onto it.
    """
    width, height = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if not 0.0 <= float(crop_bottom) < 0.5:  # from 0.5 the principal point leaves the image (the loader refuses it)
        raise ValueError(f"crop_bottom={crop_bottom}: expected a fraction of the image rows in [0, 0.5)")
    if landmarks is None:
        landmarks = mesh.metadata.get("landmarks") if isinstance(mesh.metadata, dict) else None
    # render mesh in mm (visuals kept)
    render_mesh = mesh.copy()
    render_mesh.apply_scale(mm_per_unit)
    gt_src = render_mesh
    if hair is not None:
        if mm_per_unit != 1.0:
            raise ValueError("make_scene(hair=...): the head must be in mm (mm_per_unit 1)")
        gt_src, landmarks = hair.gt, hair.gt_landmarks
    hair_labels = None if hair is None else np.asarray(hair.gt_labels)
    # the unit sphere encloses the whole source, so the cameras do not depend on gt_outer_only
    S = fit_scale_mat(gt_src.vertices, margin=margin)
    if gt_outer_only:
        from .geometry import keep_faces, outer_faces

        F, used, kept = keep_faces(gt_src.faces, outer_faces(gt_src), landmarks or None)
        if landmarks and kept is None:
            raise ValueError("make_scene(gt_outer_only=True): a landmark lies on a surface no camera sees")
        gt_src = trimesh.Trimesh(np.asarray(gt_src.vertices)[used], F, process=False)
        landmarks = kept
        if hair_labels is not None:
            hair_labels = hair_labels[used]
    # ground truth: geometry only, merged at seams so that it is watertight where the source is
    gt_v, inverse = merge_by_position(gt_src.vertices)
    gt_faces = inverse[np.asarray(gt_src.faces)]
    gt = trimesh.Trimesh(gt_v, gt_faces, process=False)
    if len(np.unique(gt_faces)) < len(gt_v):
        gt.remove_unreferenced_vertices()
    gt_landmarks = None
    if landmarks:
        tree = cKDTree(gt.vertices)
        gt_landmarks = {k: int(tree.query(gt_src.vertices[int(i)])[1]) for k, i in landmarks.items()}

    radius_unit = S[0, 0]
    distance, focal = default_distance_focal(radius_unit, min(width, height), distance, focal)
    yaws = orbit_yaws(views)
    pitches = [float(p) for p in (pitch if not np.isscalar(pitch) else [pitch])]
    cams = orbit_cameras(S[:3, 3], distance, yaws, pitches, focal, width, height)

    kw = dict(lights=lights, ambient=ambient, background=background, flip_v=flip_v)
    renderer = MeshRenderer(render_mesh, **kw) if hair is None else MultiMeshRenderer(hair.parts, **kw)
    if hair is not None:
        from .hair import label_map, orientation_map
    images, masks, semantic, orientation = [], [], [], []
    for cam in tqdm(cams, desc="rendering views", disable=not progress, leave=False):
        res = renderer.render(cam, ssaa=ssaa, shadows=shadows)
        if not res.mask.any():
            raise ValueError(f"view yaw={cam.meta['yaw_deg']} pitch={cam.meta['pitch_deg']}: the mesh is not "
                               "visible (check --distance/--focal and the mesh units)")
        images.append(res.image)
        masks.append(res.mask)
        if hair is not None:
            semantic.append(label_map(res, hair.render_labels))
            orientation.append(orientation_map(res, cam, hair, hair.render_labels))
    if crop_bottom > 0:
        # the top rows keep their pixel coordinates, so K is unchanged; only the height shrinks
        rows = height - int(round(crop_bottom * height))
        images, masks = [im[:rows] for im in images], [m[:rows] for m in masks]
        semantic, orientation = [x[:rows] for x in semantic], [x[:rows] for x in orientation]
        cams = [c.cropped(0, 0, c.width, rows) for c in cams]
        if not all(m.any() for m in masks):
            raise ValueError(f"crop_bottom={crop_bottom}: a view keeps no pixel of the mesh")

    if pose_noise is not None:
        pose_noise_rot_deg = float(np.degrees(pose_noise))
        pose_noise_pos_mm = float(pose_noise * radius_unit)
    noisy = pose_noise_rot_deg > 0 or pose_noise_pos_mm > 0
    written = perturb_cameras(cams, pose_noise_rot_deg, pose_noise_pos_mm, seed=seed) if noisy else cams

    info = {
        "generator": "headrecon.data.synthetic.make_scene",
        "yaws_deg": [c.meta["yaw_deg"] for c in cams], "pitches_deg": [c.meta["pitch_deg"] for c in cams],
        "width": width, "height": height, "focal_px": focal, "distance_mm": distance, "mm_per_unit": mm_per_unit,
        "lights": lights if isinstance(lights, str) else "custom", "ambient": ambient, "ssaa": ssaa,
        "shadows": shadows, "seed": seed, "crop_bottom": float(crop_bottom),
        "pose_noise": {"rot_deg": pose_noise_rot_deg, "pos_mm": pose_noise_pos_mm, "clean": "cameras_clean.npz"}
        if noisy else None,
    }
    if hair is not None:
        from .hair import SEMANTIC_CLASSES
        info["hair"] = {"style": hair.style, "fringe": hair.fringe}
        info["semantic_classes"] = list(SEMANTIC_CLASSES)
    info.update(meta or {})
    scene = Scene.from_arrays(images, masks, written, S, gt_mesh=gt, landmarks=gt_landmarks, meta=info)
    if hair is not None:
        gt_labels = np.zeros(len(gt.vertices), dtype=np.uint8)
        gt_labels[inverse] = hair_labels
        scene.meta["gt_hair_vertices"] = int((gt_labels == SEMANTIC_CLASSES.index("hair")).sum())
        if scene.face_region is not None:
            scene.face_region = scene.face_region[gt_labels[scene.face_region] != SEMANTIC_CLASSES.index("hair")]
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_scene(out_dir, scene, image_format=image_format, overwrite=overwrite)
        if noisy:
            np.savez(out_dir / "cameras_clean.npz", **{f"world_mat_{i}": c.world_mat() for i, c in enumerate(cams)})
        if hair is not None:
            (out_dir / "semantic").mkdir()
            (out_dir / "orientation_gt").mkdir()
            for k, (sem, ori) in enumerate(zip(semantic, orientation)):
                Image.fromarray(sem).save(out_dir / "semantic" / f"sem_{k:04d}.png")
                np.save(out_dir / "orientation_gt" / f"orient_{k:04d}.npy", ori)
            (out_dir / "regions").mkdir(exist_ok=True)
            (out_dir / "regions" / "hair.txt").write_text(
                "".join(f"{int(i)}\n" for i in np.nonzero(gt_labels == SEMANTIC_CLASSES.index("hair"))[0]))
        scene.path = out_dir
    return scene
