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
    is_nerfstudio_scene,
    load_gt,
    select_views,
    view_targets,
    write_scene,
)
from .scene import load_scene as load_idr_scene

__all__ = ["Camera", "SceneError", "FaceSphere", "Scene", "View", "load_gt", "load_scene", "load_idr_scene",
           "select_views", "view_targets", "write_scene"]


def load_scene(path, views=None, load_images: bool = True, load_gt_mesh: bool = True,
               allow_missing_masks: bool = True) -> Scene:
    """Read a scene: an IDR/H3DS folder (:func:`headrecon.data.scene.load_scene`) or a nerfstudio
    ``transforms.json`` / a folder holding one (:func:`headrecon.data.nerfstudio.load_transforms_json`).

    ``views``: None/"all", "3", "4", "8", "16", "32" (any N), or a list of indices (see :func:`select_views`).
    A view without a mask file has ``mask`` None (``allow_missing_masks``; see
    :func:`headrecon.photos.masks.fill_missing_masks`). Raises :class:`SceneError` naming the file and the
    problem."""
    if is_nerfstudio_scene(path):
        from .nerfstudio import load_transforms_json

        return load_transforms_json(path, views=views, load_images=load_images)
    return load_idr_scene(path, views=views, load_images=load_images, load_gt_mesh=load_gt_mesh,
                          allow_missing_masks=allow_missing_masks)
