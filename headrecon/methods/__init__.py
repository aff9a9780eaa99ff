"""Reconstruction methods, one module each (``--method NAME``): :mod:`.idr` (model-free baseline), :mod:`.h3dnet`
(H3D-Net, learned SDF prior), :mod:`.sira` (SIRA++, shape-and-appearance prior), :mod:`.xu` (Xu et al., volume
rendering of a deformed template learnt from images), :mod:`.wang` (Wang et al., IDR guided by a facial proxy, head
semantics and hair orientation). :mod:`.base` defines the
interface the trainer drives and the registry; importing this package registers every method."""
from . import h3dnet, idr, sira, wang, xu  # noqa: E402,F401,I001  (registration, after the registry exists)
from .base import (
                   METHODS,
                   MethodOptions,
                   Phase,
                   ReconMethod,
                   ReconModel,
                   available_methods,
                   get_method,
                   option,
                   register_method,
)

__all__ = ["METHODS", "MethodOptions", "Phase", "ReconMethod", "ReconModel", "available_methods", "get_method", "option",
           "register_method"]
