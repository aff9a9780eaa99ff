"""Real head scans kept in the shared data folder (not redistributed): the Lee Perry-Smith textured scan.

``LeePerrySmith.glb`` (CC BY 3.0, attribution required wherever it is shown) is about 48 mm per unit, +Y up,
+Z out of the face. Its UVs follow the glTF/three.js convention in which V points *down* the texture image:
``Map-COL.jpg`` is sampled at row ``v * (H - 1)``. :func:`load_lee_perry_smith` converts the UVs to the usual
convention (``v' = 1 - v``) and attaches the texture, so any standard renderer (and ours) shows it correctly.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from ..paths import shared_dir
from .errors import SceneError

__all__ = ["LPS_MM_PER_UNIT", "lps_dir", "load_lee_perry_smith"]

LPS_MM_PER_UNIT = 48.0


def lps_dir(required: bool = True) -> Path | None:
    root = shared_dir(required=required)
    if root is None:
        return None
    d = root / "data" / "scans" / "lee_perry_smith"
    if not d.is_dir():
        if required:
            raise FileNotFoundError(f"{d}: Lee Perry-Smith scan folder not found")
        return None
    return d


def load_lee_perry_smith(folder=None, mm: bool = True, outer_only: bool = True) -> trimesh.Trimesh:
    """The Lee Perry-Smith scan with its colour texture (standard UV convention after the V flip).

    ``mm=True`` scales it to millimetres (48 mm per unit). ``outer_only`` (default) drops the faces no outside
    viewpoint sees (:func:`headrecon.data.geometry.outer_faces`: 3,320 of its 17,684 triangles, the inside of the
    mouth and of the eye sockets; a scene's face region shrinks from 4,152 to 2,777 vertices): they appear in no
    photograph, and as ground truth they dominated every face error (docs/results/priors-busts.md). Otherwise the mesh keeps the file's vertex order (vertices are split at UV seams; merge them by
    position for a watertight surface). ``mesh.metadata["landmarks"]`` holds the six H3DS landmarks (vertex
    indices).
    """
    folder = Path(folder) if folder is not None else lps_dir()
    glb, tex = folder / "LeePerrySmith.glb", folder / "Map-COL.jpg"
    for p in (glb, tex):
        if not p.is_file():
            raise SceneError(p, "file of the Lee Perry-Smith scan not found")
    loaded = trimesh.load(str(glb), process=False)
    mesh = loaded.to_geometry() if isinstance(loaded, trimesh.Scene) else loaded
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        raise SceneError(glb, "expected per-vertex UV coordinates")
    uv = np.asarray(uv, dtype=np.float64).copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    with Image.open(tex) as im:
        image = im.convert("RGB")
        image.load()
    material = trimesh.visual.material.SimpleMaterial(image=image)
    mesh = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
    if mm:
        mesh.apply_scale(LPS_MM_PER_UNIT)
    lm = folder / "landmarks.json"
    landmarks = {k: int(v) for k, v in json.loads(lm.read_text()).items()} if lm.is_file() else None
    if outer_only:
        from .geometry import keep_faces, outer_faces

        F, used, kept = keep_faces(mesh.faces, outer_faces(mesh), landmarks)
        mesh = trimesh.Trimesh(np.asarray(mesh.vertices)[used], F, process=False,
                               visual=trimesh.visual.TextureVisuals(uv=uv[used], material=material))
        if landmarks is not None and kept is None:
            raise SceneError(lm, "a landmark lies on a hidden (interior) part of the scan")
        landmarks = kept
    if landmarks is not None:
        mesh.metadata["landmarks"] = landmarks
    mesh.metadata["source"] = "Lee Perry-Smith head scan (CC BY 3.0)"
    mesh.metadata["mm_per_unit"] = LPS_MM_PER_UNIT if mm else 1.0
    mesh.metadata["outer_only"] = bool(outer_only)
    return mesh
