"""Exception raised for unreadable or inconsistent scenes, meshes and camera files.

Every message names the offending file (or array key) and says what is wrong with it, so that a bad scene can
be fixed without reading code.
"""
from __future__ import annotations

from pathlib import Path


class SceneError(ValueError):
    """A scene (IDR/H3DS folder, nerfstudio ``transforms.json``, mesh, camera) is missing or inconsistent."""

    def __init__(self, path, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)
