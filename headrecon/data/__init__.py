"""Scenes for headrecon: cameras (OpenCV convention), IDR/H3DS and nerfstudio scene IO, view selection by yaw,
synthetic scenes rendered on the CPU from meshes, ICT-FaceKit heads and the Lee Perry-Smith scan.

Heavier submodules (``synthetic``, ``ict``, ``scans``, ``nerfstudio``) are imported on demand.
"""
from .camera import Camera
from .errors import SceneError
from .scene import (
           FaceSphere,
           Scene,
           View,
           load_gt,
           load_scene,
           select_views,
           view_targets,
           write_scene,
)

__all__ = ["Camera", "SceneError", "FaceSphere", "Scene", "View", "load_gt", "load_scene", "select_views",
           "view_targets", "write_scene"]
