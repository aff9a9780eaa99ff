"""Mesh loading and saving that keeps vertex order (landmarks and regions are vertex indices).

trimesh's OBJ loader splits vertices at texture seams (different ``v/vt`` pairs), which changes the vertex
order and breaks the H3DS ``landmarks.txt`` / ``regions/*.txt`` indices. :func:`read_obj` therefore reads only
the ``v`` and ``f`` records of an OBJ in file order (polygons fan-triangulated). Other formats go through
trimesh (``process=False``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from .errors import SceneError

__all__ = ["read_obj", "load_mesh", "save_mesh", "geometry_only"]


def read_obj(path, return_polygons: bool = False):
    """Vertices (float64 [N, 3], ``v`` lines in order) and triangles (int64 [F, 3]) of an OBJ file.

    Polygons are split as fans ``(a, b, c), (a, c, d), ...``; negative (relative) indices are resolved.
    With ``return_polygons`` also returns the list of polygons (vertex index lists) before triangulation.
    Raises SceneError when the file is missing, has no vertices, or a face uses an index out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise SceneError(path, "OBJ file not found")
    verts, polys = [], []
    with open(path, "r", errors="replace") as fh:
        for ln, line in enumerate(fh, 1):
            if line.startswith("v "):
                parts = line.split()
                try:
                    verts.append((float(parts[1]), float(parts[2]), float(parts[3])))
                except (IndexError, ValueError):
                    raise SceneError(path, f"line {ln}: malformed vertex record {line.strip()!r}") from None
            elif line.startswith("f "):
                try:
                    idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
                except ValueError:
                    raise SceneError(path, f"line {ln}: malformed face record {line.strip()!r}") from None
                n = len(verts)
                polys.append([i - 1 if i > 0 else n + i for i in idx])
    if not verts:
        raise SceneError(path, "OBJ file has no vertices")
    V = np.asarray(verts, dtype=np.float64)
    tris = [(p[0], p[k], p[k + 1]) for p in polys for k in range(1, len(p) - 1)]
    F = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    if len(F) and (F.min() < 0 or F.max() >= len(V)):
        raise SceneError(path, f"face index out of range (file has {len(V)} vertices)")
    return (V, F, polys) if return_polygons else (V, F)


def load_mesh(path) -> trimesh.Trimesh:
    """A single mesh from OBJ (vertex order kept, geometry only), PLY, GLB/GLTF, STL, OFF... in file units.

    Multi-geometry files (glb scenes) are concatenated with their node transforms applied.
    """
    path = Path(path)
    if not path.is_file():
        raise SceneError(path, "mesh file not found")
    if path.suffix.lower() == ".obj":
        V, F = read_obj(path)
        return trimesh.Trimesh(V, F, process=False)
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # trimesh raises many kinds
        raise SceneError(path, f"cannot read mesh ({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, trimesh.Scene):
        if not loaded.geometry:
            raise SceneError(path, "file contains no geometry")
        loaded = loaded.to_geometry()
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise SceneError(path, "file does not contain a triangle mesh")
    return loaded


def geometry_only(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Vertices and faces only (no visuals), order kept."""
    return trimesh.Trimesh(np.asarray(mesh.vertices, dtype=np.float64).copy(),
                           np.asarray(mesh.faces).copy(), process=False)


def save_mesh(mesh: trimesh.Trimesh, path, colors: bool = True) -> Path:
    """Write a mesh; OBJ is written geometry-only so that the vertex order survives any reader, PLY keeps
    vertex colours when ``colors``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".obj" or not colors:
        out = geometry_only(mesh)
    else:
        out = mesh
    out.export(str(path))
    return path
