"""SDFCache: the dynamic 64^3 SDF voxel cache used by the tracer to skip network evaluations far from the surface.

Cached values only decide signs and steps inside the tracer; everything the losses use is re-evaluated by the
network. A cached value v >= eps answers a query with v - diag (the voxel diagonal), a lower bound of the SDF
anywhere in the voxel because an SDF is 1-Lipschitz. A share ``p_force`` of lookups is forced back to the
network (counter-based RNG, so CPU and CUDA choose the same points for the same seed) so that values follow a
network that is being trained.
"""
from __future__ import annotations

import math

import torch

from .. import ops


class SDFCache:
    """Voxel cache of SDF values over the cube [-radius, radius]^3.

    Args:
        resolution: voxels per axis (64 as in SIRA++).
        eps: smallest cached value that may answer a query (0.1). Must exceed the voxel diagonal
            2*radius*sqrt(3)/resolution, so that a cached value proves the sign everywhere in its voxel.
        p_force: probability that a lookup is re-evaluated by the network anyway (0.2).
        seed: seed of the counter-based RNG that draws the forced re-evaluations.
        radius: half size of the cube; the tracer sets it to its bounding-sphere radius when None.
    Statistics: ``queries`` (points looked up), ``hits`` (points answered from the cache), ``hit_rate``.
    """

    def __init__(self, resolution: int = 64, eps: float = 0.1, p_force: float = 0.2, seed: int = 0,
                 radius: float | None = None):
        if int(resolution) < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        if not 0.0 <= p_force <= 1.0:
            raise ValueError(f"p_force must be in [0, 1], got {p_force}")
        self.resolution = int(resolution)
        self.eps = float(eps)
        self.p_force = float(p_force)
        self.seed = int(seed)
        self.radius = None
        self.grid: torch.Tensor | None = None
        self.counter = 0
        self.queries = 0
        self.hits = 0
        if radius is not None:
            self.bind(radius)

    @property
    def diag(self) -> float:
        return 2.0 * self.radius * math.sqrt(3.0) / self.resolution

    def bind(self, radius: float) -> "SDFCache":
        """Set the cube half-size (done by the tracer); clears the cache if it changes."""
        radius = float(radius)
        if radius != self.radius:
            diag = 2.0 * radius * math.sqrt(3.0) / self.resolution
            if not self.eps > diag:
                raise ValueError(
                    f"SDFCache eps={self.eps} must exceed the voxel diagonal {diag:.4f} "
                    f"(= 2*radius*sqrt(3)/resolution with radius={radius}, resolution={self.resolution}) so that "
                    "a cached value proves the sign in its whole voxel; raise eps or the resolution")
            self.radius = radius
            self.grid = None
        return self

    def reset(self) -> None:
        """Forget every cached value and the statistics (the RNG counter restarts too)."""
        self.grid = None
        self.counter = 0
        self.queries = 0
        self.hits = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0

    def stats(self) -> dict:
        return {"queries": self.queries, "hits": self.hits, "hit_rate": self.hit_rate}

    def _grid_for(self, points: torch.Tensor) -> torch.Tensor:
        if self.radius is None:
            raise RuntimeError("SDFCache.bind(radius) must be called first (RayTracer does it)")
        g = self.grid
        if g is None or g.device != points.device or g.dtype != points.dtype:
            r = self.resolution
            self.grid = torch.full((r, r, r), float("nan"), device=points.device, dtype=points.dtype)
        return self.grid

    def query(self, points: torch.Tensor, backend: str = "auto"):
        """values [N] (lower bounds where answered, NaN elsewhere), need [N] bool (evaluate the network there)."""
        grid = self._grid_for(points)
        values, need = ops.cache_query(grid, points, self.radius, self.eps, self.p_force, self.seed, self.counter,
                                       backend=backend)
        self.counter += 1
        return values, need

    def update(self, points: torch.Tensor, values: torch.Tensor, backend: str = "auto") -> None:
        """Write freshly evaluated network values."""
        ops.cache_update(self._grid_for(points), points, values, self.radius, backend=backend)
