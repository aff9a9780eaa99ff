"""Pictures of evaluation errors: error-coloured PLY meshes and a PNG heat map a person can look at.

Colours come from trimesh's bundled ``viridis`` colour map over ``[0, vmax]`` mm (dark purple = 0, yellow =
``vmax`` or more). The PNG shows the ground truth coloured by its distance to the prediction (top row) and the
aligned prediction coloured by its distance to the ground truth (bottom row) from the front, both sides and
behind, with a colour bar and the four headline metrics.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image, ImageDraw, ImageFont

from ..data.synthetic import (
    MeshRenderer,
    default_distance_focal,
    fit_scale_mat,
    orbit_cameras,
)

__all__ = ["error_colors", "colored_mesh", "save_error_ply", "render_heatmap"]


def error_colors(errors, vmax: float = 5.0, cmap: str = "viridis") -> np.ndarray:
    """uint8 RGBA [N, 4] for errors in mm, clipped to ``[0, vmax]``."""
    e = np.clip(np.nan_to_num(np.asarray(errors, dtype=np.float64), nan=vmax), 0.0, vmax)
    cols = trimesh.visual.color.interpolate(np.concatenate([[0.0, vmax], e]), color_map=cmap)
    return np.asarray(cols[2:], dtype=np.uint8)


def colored_mesh(mesh: trimesh.Trimesh, errors, vmax: float = 5.0) -> trimesh.Trimesh:
    """Geometry of ``mesh`` with vertex colours from ``errors`` (one per vertex)."""
    m = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=False)
    m.visual = trimesh.visual.ColorVisuals(m, vertex_colors=error_colors(errors, vmax))
    return m


def save_error_ply(mesh: trimesh.Trimesh, errors, path, vmax: float = 5.0) -> Path:
    """Write ``mesh`` as a binary PLY with error vertex colours (and the raw error as a vertex property
    ``quality`` is not portable, so the colours are the record; the errors go to metrics/npz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    colored_mesh(mesh, errors, vmax).export(str(path))
    return path


def _colorbar(height: int, vmax: float, width: int = 90) -> Image.Image:
    bar_h = height - 40
    vals = np.linspace(vmax, 0.0, bar_h)
    cols = error_colors(vals, vmax)[:, :3]
    img = Image.new("RGB", (width, height), (255, 255, 255))
    strip = np.repeat(cols[:, None, :], 22, axis=1)
    img.paste(Image.fromarray(strip), (8, 20))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = 20 + int(round(frac * (bar_h - 1)))
        draw.line([(30, y), (35, y)], fill=(0, 0, 0))
        label = f"{vmax * (1 - frac):.1f}" + ("+" if frac == 0.0 else "")
        draw.text((38, y - 6), label, fill=(0, 0, 0), font=font)
    draw.text((6, 4), "mm", fill=(0, 0, 0), font=font)
    return img


def _render_row(mesh: trimesh.Trimesh, yaws, size: int, center, radius) -> list[np.ndarray]:
    distance, focal = default_distance_focal(radius, size, fill=0.95)
    cams = orbit_cameras(center, distance, yaws, [0.0], focal, size, size)
    r = MeshRenderer(mesh, lights="headlight@0.55", ambient=0.5, background=(1.0, 1.0, 1.0))
    return [r.render(c, ssaa=2).image for c in cams]


def render_heatmap(gt_mesh: trimesh.Trimesh, gt_errors, pred_mesh: trimesh.Trimesh | None = None,
                   pred_errors=None, path=None, vmax: float = 5.0, size: int = 320, yaws=(0.0, 90.0, -90.0, 180.0),
                   title: str | None = None) -> Image.Image:
    """Heat-map PNG (see module docstring); returns the PIL image and saves it when ``path`` is given."""
    S = fit_scale_mat(gt_mesh.vertices, margin=1.02)
    center, radius = S[:3, 3], S[0, 0]
    rows = [_render_row(colored_mesh(gt_mesh, gt_errors, vmax), yaws, size, center, radius)]
    labels = ["ground truth: distance to prediction"]
    if pred_mesh is not None and pred_errors is not None:
        rows.append(_render_row(colored_mesh(pred_mesh, pred_errors, vmax), yaws, size, center, radius))
        labels.append("prediction (aligned): distance to ground truth")
    header = 22
    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    body = Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8))
    bar = _colorbar(body.height, vmax)
    top = 24 if title else 0
    canvas = Image.new("RGB", (body.width + bar.width, body.height + top + header * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    if title:
        draw.text((8, 6), title, fill=(0, 0, 0), font=font)
    y = top
    for i, label in enumerate(labels):
        draw.text((8, y + 5), label + "  (views: yaw " + ", ".join(f"{v:g}" for v in yaws) + ")", fill=(0, 0, 0),
                  font=font)
        canvas.paste(body.crop((0, i * size, body.width, (i + 1) * size)), (0, y + header))
        y += header + size
    canvas.paste(bar.resize((bar.width, y - top)), (body.width, top))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path)
    return canvas
