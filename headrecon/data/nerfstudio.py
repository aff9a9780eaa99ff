"""Read nerfstudio / instant-ngp / Blender ``transforms.json`` scenes into a :class:`~headrecon.data.scene.Scene`.

Those files store camera-to-world matrices in the **OpenGL** convention (camera x right, y up, z backward);
they are converted explicitly to headrecon's OpenCV cameras (:meth:`Camera.from_c2w_opengl`). Intrinsics come
from ``fl_x/fl_y/cx/cy/w/h`` (global or per frame) or from ``camera_angle_x`` (Blender). Distortion
coefficients are not modelled: non-zero ones are recorded in ``scene.meta["distortion"]`` and otherwise ignored.
Masks come from each frame's ``mask_path`` or else from the image's alpha channel; a scene without either is an
error. The unit sphere (``scale_mat``) is taken from a top-level ``"scale_mat"`` (4x4) when present, else
estimated: centre = the point nearest to all optical axes, radius = 1.1 x the largest radius that the mask
silhouettes subtend around it. Units are whatever the file uses (``scene.units == "scene"``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .camera import Camera, similarity_parts
from .errors import SceneError
from .scene import Scene, View, load_image

__all__ = ["load_transforms_json", "estimate_scale_mat"]


def _frame_intrinsics(meta: dict, frame: dict, w: int, h: int, path: Path, i: int) -> np.ndarray:
    def get(key):
        return frame.get(key, meta.get(key))

    fx, fy = get("fl_x"), get("fl_y")
    if fx is None and get("camera_angle_x") is not None:
        fx = 0.5 * w / np.tan(0.5 * float(get("camera_angle_x")))
    if fy is None and get("camera_angle_y") is not None:
        fy = 0.5 * h / np.tan(0.5 * float(get("camera_angle_y")))
    if fx is None and fy is None:
        raise SceneError(path, f"frame {i}: no focal length (fl_x/fl_y or camera_angle_x)")
    fx = float(fx if fx is not None else fy)
    fy = float(fy if fy is not None else fx)
    cx = float(get("cx")) if get("cx") is not None else w / 2.0
    cy = float(get("cy")) if get("cy") is not None else h / 2.0
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def estimate_scale_mat(cameras, masks, margin: float = 1.1) -> np.ndarray:
    """Similarity mapping the unit sphere onto a sphere that holds the masked object seen by ``cameras``."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for cam in cameras:
        d = cam.forward
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ cam.center
    center = np.linalg.lstsq(A, b, rcond=None)[0]
    radius = 0.0
    for cam, m in zip(cameras, masks):
        uv_c = cam.project(center[None])[0]
        vs, us = np.nonzero(m)
        if len(us) == 0:
            continue
        pix = np.stack([us, vs], axis=1).astype(np.float64) + 0.5
        far = pix[np.argmax(np.sum((pix - uv_c) ** 2, axis=1))]
        _, dirs = cam.rays_np((far - 0.5)[None])
        to_c = center - cam.center
        dist = np.linalg.norm(to_c)
        cosang = np.clip(dirs[0] @ to_c / dist, -1, 1)
        radius = max(radius, dist * np.sin(np.arccos(cosang)))
    radius = radius * margin if radius > 0 else 1.0
    S = np.eye(4)
    S[:3, :3] *= radius
    S[:3, 3] = center
    return S


def load_transforms_json(path, views=None, load_images: bool = True, scale_mat=None) -> Scene:
    """Read a ``transforms.json`` (or a folder containing one). See the module docstring for conventions."""
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    if not path.is_file():
        raise SceneError(path, "transforms.json not found")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SceneError(path, f"invalid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise SceneError(path, f"the top level must be a JSON object, not {type(meta).__name__}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise SceneError(path, "'frames' must be a non-empty list of frames"
                         + ("" if frames is None else f" (it is a {type(frames).__name__})"))
    root = path.parent
    all_views = []
    distortion = {k: meta[k] for k in ("k1", "k2", "k3", "k4", "p1", "p2") if meta.get(k)}
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise SceneError(path, f"frame {i}: needs 'file_path' and 'transform_matrix'")
        img_path = root / fr["file_path"]
        if not img_path.suffix and not img_path.exists():  # Blender files omit the extension
            for ext in (".png", ".jpg", ".jpeg"):
                if img_path.with_suffix(ext).exists():
                    img_path = img_path.with_suffix(ext)
                    break
        if not img_path.is_file():
            raise SceneError(img_path, f"image of frame {i} not found (listed in {path.name})")
        with Image.open(img_path) as im:
            w, h = im.size
            has_alpha = im.mode in ("RGBA", "LA") or "transparency" in im.info
        for key, val in (("w", w), ("h", h)):
            want = fr.get(key, meta.get(key))
            if want is not None and int(want) != val:
                raise SceneError(img_path, f"image is {w}x{h} but {path.name} says {key}={want}")
        try:
            c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise SceneError(path, f"frame {i}: transform_matrix must be a finite 4x4 matrix of numbers") from None
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0, 0, 0, 1]])
        if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
            raise SceneError(path, f"frame {i}: transform_matrix must be a finite 4x4 matrix")
        rot = c2w[:3, :3]
        if abs(np.linalg.det(rot)) < 1e-9:
            raise SceneError(path, f"frame {i}: transform_matrix rotation is singular")
        u, _, vt = np.linalg.svd(rot)  # tolerate slightly non-orthonormal rotations (and scaled poses)
        c2w[:3, :3] = u @ vt
        K = _frame_intrinsics(meta, fr, w, h, path, i)
        cam = Camera.from_c2w_opengl(c2w, K, w, h)
        mask_path = root / fr["mask_path"] if fr.get("mask_path") else None
        if mask_path is not None and not mask_path.is_file():
            raise SceneError(mask_path, f"mask of frame {i} not found (listed in {path.name})")
        if mask_path is None and not has_alpha:
            raise SceneError(img_path, "no mask: frame has no 'mask_path' and the image has no alpha channel")
        all_views.append(View(image=None, mask=None, camera=cam, scale_mat=np.eye(4), index=i,
                              image_path=img_path, mask_path=mask_path))

    def read_mask(v: View) -> np.ndarray:
        if v.mask_path is not None:
            with Image.open(v.mask_path) as im:
                m = np.asarray(im.convert("L")) > 127
            src = v.mask_path
        else:
            with Image.open(v.image_path) as im:
                m = np.asarray(im.convert("RGBA"))[..., 3] > 127
            src = v.image_path
        if m.shape != (v.camera.height, v.camera.width):
            raise SceneError(src, f"mask is {m.shape[1]}x{m.shape[0]}, image is {v.camera.width}x{v.camera.height}")
        if not m.any():
            raise SceneError(src, "mask is empty (no foreground pixel)")
        return m

    S = scale_mat if scale_mat is not None else meta.get("scale_mat")
    if S is None:
        masks = [read_mask(v) for v in all_views]
        S = estimate_scale_mat([v.camera for v in all_views], masks)
    S = np.asarray(S, dtype=np.float64)
    try:
        similarity_parts(S)
    except ValueError as exc:
        raise SceneError(path, f"scale_mat: {exc}") from None
    for v in all_views:
        v.scale_mat = S
    scene = Scene(views=all_views, scale_mat=S, path=path, units="scene",
                  meta={"source": "transforms.json", "distortion": distortion} if distortion else
                  {"source": "transforms.json"})
    if views is not None:
        scene = scene.subset(views)
    if load_images:
        for v in scene.views:
            v.image = load_image(v.image_path)
            v.mask = read_mask(v)
    return scene
