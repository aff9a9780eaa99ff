"""Pictures of a reconstruction: colour and shaded-normal images, comparison sheets and the loss curve.

* :func:`render_view` finds where every pixel's ray of a camera (unit-sphere frame) meets the surface, either by
  ray-casting the run's mesh (Embree through trimesh: what the run exports; the run folder's renders) or by tracing
  the fitted SDF with a :class:`headrecon.render.RayTracer`, and returns the rendering network's colour there, a
  grey Lambertian shading of the SDF's normals (headlight from the camera) and the hit mask.
* :func:`vertex_colors` evaluates the rendering network at mesh vertices, each seen along its normal, for
  coloured mesh exports.
* :func:`novel_cameras` places cameras at given yaws around the scene's head frame, at the distance and focal
  length of the first input view; when the full scene holds a view within 5 degrees of a yaw, that view (and
  its photo) is used instead so the render can be compared with a real image.
* :func:`comparison_sheet` lays out rows ``[input | colour | normals]`` and writes a PNG;
  :func:`loss_curve` draws the loss history (log scale) with Pillow only.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.nn.utils import parametrize

__all__ = ["render_view", "vertex_colors", "novel_cameras", "comparison_sheet", "loss_curve", "to_uint8", "fit_camera"]


def to_uint8(img) -> np.ndarray:
    return np.clip(np.asarray(img, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _mesh_hits(mesh, o: torch.Tensor, d: torch.Tensor):
    """``(hit [N] bool, points [N, 3])`` of rays ``o + t d`` against ``mesh`` (first hits; trimesh's ray casting,
    Embree when installed); points of missed rays are zero."""
    o64, d64 = o.detach().cpu().double().numpy(), d.detach().cpu().double().numpy()
    locs, idx, _ = mesh.ray.intersects_location(o64, d64, multiple_hits=False)
    hit = torch.zeros(o.shape[0], dtype=torch.bool)
    pts = torch.zeros(o.shape[0], 3, dtype=o.dtype)
    idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
    hit[idx] = True
    pts[idx] = torch.as_tensor(np.asarray(locs), dtype=o.dtype)
    return hit.to(o.device), pts.to(o.device)


def render_view(model, tracer, camera, chunk: int = 8192, device=None, mesh=None):
    """``(rgb [H,W,3], shaded [H,W,3], hit [H,W])`` float/bool numpy for ``camera`` (unit-sphere frame).

    ``mesh``: a ``trimesh.Trimesh`` in the same frame (the run's mesh): the hits are ray-cast against it instead of
    traced through the SDF (``tracer`` is then unused and may be None). The colour and normals still come from the
    networks at the hit points. The run's (refined) mesh lies on the fitted surface, so the picture is the traced one
    but at silhouette pixels (a test bounds both), shows what the run exports, and takes one network evaluation per
    hit pixel instead of the tracer's tens per ray."""
    device = device or next(model.parameters()).device
    geo, ren = model.geometry, model.rendering
    was_training = model.training
    model.eval()
    o_all, d_all = camera.rays()
    n = o_all.shape[0]
    rgb = np.zeros((n, 3), np.float32)
    shade = np.zeros((n, 3), np.float32)
    hit_all = np.zeros(n, bool)
    light = -torch.as_tensor(camera.forward, dtype=torch.float32, device=device)
    try:
        for s in range(0, n, chunk):
            o = o_all[s:s + chunk].to(device)
            d = d_all[s:s + chunk].to(device)
            if mesh is not None:
                h, pts = _mesh_hits(mesh, o, d)
            else:
                with parametrize.cached():
                    res = tracer(geo.sdf, o, d)
                h, pts = res.hit, res.points
            if not bool(h.any()):
                continue
            x = pts[h]
            _, feat, g = geo.forward_with_gradient(x, create_graph=False)
            with torch.no_grad():
                c = ren(x, g, -d[h], feat)
                nrm = torch.nn.functional.normalize(g, dim=-1)
                lam = (nrm @ light).clamp(min=0.0)
                sh = (0.15 + 0.85 * lam)[:, None].expand(-1, 3)
            idx = np.arange(s, s + o.shape[0])[h.cpu().numpy()]
            rgb[idx] = c.float().cpu().numpy()
            shade[idx] = sh.float().cpu().numpy()
            hit_all[idx] = True
    finally:
        model.train(was_training)
    H, W = camera.height, camera.width
    return rgb.reshape(H, W, 3), shade.reshape(H, W, 3), hit_all.reshape(H, W)


def vertex_colors(model, vertices_unit, chunk: int = 16384, device=None) -> np.ndarray:
    """Colour [N, 3] in [0, 1] of the rendering network at ``vertices_unit`` [N, 3] (the fitted unit frame), each
    seen from along the SDF's normal there (the view direction of a camera facing that bit of surface)."""
    device = device or next(model.parameters()).device
    geo, ren = model.geometry, model.rendering
    was_training = model.training
    model.eval()
    V = torch.as_tensor(np.asarray(vertices_unit), dtype=torch.float32)
    out = np.zeros((len(V), 3), np.float32)
    try:
        for s in range(0, len(V), chunk):
            x = V[s:s + chunk].to(device)
            with parametrize.cached():
                _, feat, g = geo.forward_with_gradient(x, create_graph=False)
                with torch.no_grad():
                    c = ren(x, g, torch.nn.functional.normalize(g, dim=-1), feat)
            out[s:s + len(x)] = c.float().clamp(0.0, 1.0).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def _rotate_about(axis, deg):
    a = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    t = np.radians(deg)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * K @ K


def novel_cameras(full_scene, train_scene, yaws_deg: Sequence[float], max_size: int):
    """``[(label, camera_unit_frame, reference_image_or_None)]`` for each yaw (see module docstring)."""
    from ..data.camera import Camera
    from ..data.scene import camera_yaw_pitch

    center, up, front = full_scene.head_frame()
    out = []
    yaws_all, _ = camera_yaw_pitch(full_scene.cameras, center, up, front)
    used = set(train_scene.indices)
    ref_cam = train_scene.views[0].camera
    S = full_scene.scale_mat
    for yaw in yaws_deg:
        diff = np.abs((yaws_all - yaw + 180.0) % 360.0 - 180.0)
        cand = [k for k in np.argsort(diff) if diff[k] <= 5.0 and full_scene.views[k].index not in used]
        if cand:
            v = full_scene.views[cand[0]]
            cam, img = v.camera.transformed(v.scale_mat), v.image
            label = f"view {v.index} (yaw {yaws_all[cand[0]]:.0f})"
        else:
            # rotate the front-facing direction to `yaw` about up, at the first input view's distance
            dist = float(np.linalg.norm(ref_cam.center - center))
            eye = center + dist * (_rotate_about(up, yaw) @ front)
            mm_cam = Camera.look_at(eye, center, ref_cam.fx, ref_cam.width, ref_cam.height, up=up)
            cam, img = mm_cam.transformed(S), None
            label = f"novel yaw {yaw:.0f}"
        out.append((label, fit_camera(cam, max_size), img))
    return out


def fit_camera(cam, max_size):
    """The camera reduced so that its larger side is at most ``max_size`` pixels."""
    s = max_size / float(max(cam.width, cam.height))
    if s >= 1.0:
        return cam
    return cam.resized(max(1, int(round(cam.width * s))), max(1, int(round(cam.height * s))))


def _resize_to(img, h, w):
    if img is None:
        return np.zeros((h, w, 3), np.uint8) + 40
    im = Image.fromarray(to_uint8(img))
    if im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    return np.asarray(im)


def comparison_sheet(rows: List[tuple], path, header=("input", "colour", "normals")) -> Path:
    """``rows`` = ``[(label, reference_or_None, rgb, shaded)]`` -> PNG with one row per view."""
    pad, top = 4, 16
    tiles = []
    for label, ref, rgb, shade in rows:
        h, w = rgb.shape[:2]
        tiles.append((label, [_resize_to(ref, h, w), to_uint8(rgb), to_uint8(shade)]))
    W = max(sum(t.shape[1] for t in ims) + pad * (len(ims) + 1) for _, ims in tiles)
    H = sum(ims[0].shape[0] + top + pad for _, ims in tiles) + top
    sheet = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = pad
    for k, name in enumerate(header):
        w = tiles[0][1][k].shape[1]
        draw.text((x + 2, 2), name, fill=(0, 0, 0))
        x += w + pad
    y = top
    for label, ims in tiles:
        draw.text((pad + 2, y + 2), label, fill=(0, 0, 0))
        y += top
        x = pad
        for im in ims:
            sheet.paste(Image.fromarray(im), (x, y))
            x += im.shape[1] + pad
        y += ims[0].shape[0] + pad
    path = Path(path)
    sheet.save(path)
    return path


def loss_curve(history: List[dict], path, keys=("loss", "rgb_loss", "mask_loss", "eikonal_loss"),
               size=(720, 420)) -> Optional[Path]:
    """Log-scale loss curves over iterations (Pillow only). Returns None without history."""
    if not history:
        return None
    colors = [(0, 0, 0), (200, 40, 40), (40, 90, 200), (40, 160, 60), (150, 60, 160)]
    W, H = size
    ml, mr, mt, mb = 60, 120, 20, 36
    it = np.array([h["iteration"] for h in history], dtype=np.float64)
    series = {}
    for k in keys:
        v = np.array([h.get(k, np.nan) for h in history], dtype=np.float64)
        v = np.where(v > 0, v, np.nan)
        if np.isfinite(v).any():
            series[k] = np.log10(v)
    img = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if not series:
        img.save(path)
        return Path(path)
    lo = np.floor(min(np.nanmin(v) for v in series.values()))
    hi = np.ceil(max(np.nanmax(v) for v in series.values()))
    hi = max(hi, lo + 1)
    x0, x1 = it.min(), max(it.max(), it.min() + 1)

    def px(x, y):
        return (ml + (x - x0) / (x1 - x0) * (W - ml - mr), mt + (hi - y) / (hi - lo) * (H - mt - mb))

    draw.rectangle([ml, mt, W - mr, H - mb], outline=(0, 0, 0))
    for e in range(int(lo), int(hi) + 1):
        _, y = px(x0, e)
        draw.line([ml, y, W - mr, y], fill=(225, 225, 225))
        draw.text((6, y - 6), f"1e{e}", fill=(0, 0, 0))
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        xv = x0 + frac * (x1 - x0)
        x, _ = px(xv, lo)
        draw.text((x - 10, H - mb + 6), f"{int(round(xv))}", fill=(0, 0, 0))
    draw.text(((W - mr + ml) // 2 - 20, H - 16), "iteration", fill=(0, 0, 0))
    for (k, v), c in zip(series.items(), colors):
        pts = [px(a, b) for a, b in zip(it, v) if np.isfinite(b)]
        if len(pts) > 1:
            draw.line(pts, fill=c, width=2)
        ly = mt + 18 * list(series).index(k)
        draw.line([W - mr + 8, ly + 6, W - mr + 28, ly + 6], fill=c, width=3)
        draw.text((W - mr + 32, ly), k, fill=(0, 0, 0))
    img.save(path)
    return Path(path)
