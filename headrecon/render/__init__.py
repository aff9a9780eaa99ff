"""Rendering engine: the ray tracer (sphere tracing / coarse-fine search over the C++/CUDA kernels), the SDF
voxel cache, differentiable surface points, analytic test shapes and the dense reference tracer."""
from .cache import SDFCache
from .reference import reference_trace
from .surface import sdf_gradient, surface_points
from .tracer import RayTracer, TraceResult

__all__ = ["RayTracer", "TraceResult", "SDFCache", "surface_points", "sdf_gradient", "reference_trace"]
