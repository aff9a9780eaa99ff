"""Public torch ops of the ray-marching engine: one documented function per kernel.

Every function validates its arguments (dtype float32/float64, device, shape, contiguity) and dispatches by
``backend``:

* ``"auto"`` (default): the compiled extension ``headrecon._C`` (CPU or CUDA backend by tensor device); when
  the extension is not built at all, the pure-PyTorch reference with a one-time warning;
* ``"cpp"``: the extension, or a clear error saying how to build it;
* ``"torch"``: the pure-PyTorch reference in :mod:`headrecon.ops.reference` (the test oracle).

A CUDA tensor reaching an extension built without CUDA raises an error that names the fix.
The tracer that strings these together is :class:`headrecon.render.RayTracer`.
"""
from __future__ import annotations

import warnings

import torch

from .. import _backend
from . import _checks, reference
from .hash_grid import hash_resolutions

__all__ = [
    "ray_sphere_intersect",
    "sphere_trace_step",
    "ray_points",
    "search_samples",
    "search_select",
    "secant_step",
    "cache_query",
    "cache_update",
    "composite",
    "hash_encode",
    "hash_resolutions",
    "softplus",
    "resolve_backend",
]

BACKENDS = ("auto", "cpp", "torch")
_warned = False


def resolve_backend(backend: str, ref: torch.Tensor | None = None) -> str:
    """Return "cpp" or "torch" for a requested backend (and the device of ``ref``)."""
    global _warned
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend == "auto" and not _backend.has_ext():
        if not _warned:
            warnings.warn(
                "headrecon._C is not built; using the slow pure-PyTorch reference kernels. "
                f"{_backend._FIX}  (build_info: {_backend.build_info()['error']})",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned = True
        return "torch"
    _backend.get_ext()  # raises a clear ImportError for backend="cpp" without a build
    if ref is not None:
        _backend.check_device(ref, "input")
    return "cpp"


def _c():
    return _backend.get_ext()


def ray_sphere_intersect(origins, dirs, radius: float = 1.0, *, backend: str = "auto"):
    """Intersect rays with the sphere of ``radius`` centred at the origin.

    Args:
        origins: [R,3] ray origins. dirs: [R,3] directions (need not be unit length).
    Returns:
        near [R], far [R] ray parameters (point = o + t d; near = 0 for origins inside the sphere) and
        mask [R] bool (False for rays that miss, for spheres behind the origin and for non-finite rays;
        then near = far = 0).
    """
    _checks.rays(origins, dirs)
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    if resolve_backend(backend, origins) == "cpp":
        return tuple(_c().ray_sphere_intersect(origins, dirs, float(radius)))
    return reference.ray_sphere_intersect(origins, dirs, radius)


def sphere_trace_step(t, dt, cap, status, wmin, wmin_t, walkers, sdf, threshold: float = 1e-5,
                      step_scale: float = 1.0, *, backend: str = "auto") -> None:
    """Advance the sphere-tracing walkers ``walkers`` by one step, in place (see csrc/sphere_trace/sphere_trace.h).

    Args:
        t, dt, cap: [2R] walker state (walker 2r starts at near and marches forward, 2r+1 starts at far and
            marches backward); status: [2R] int32 (0 idle, 1 active, 2 converged, 3 met, 4 inside);
            wmin, wmin_t: [2R] smallest SDF each walker sampled and where (start at +inf and 0).
        walkers: [M] int64 indices of the active walkers that were evaluated, each once (duplicates raise on
            CPU; on CUDA they are unchecked); sdf: [M] their SDF values.
        threshold: convergence on |sdf|; step_scale: fraction of the SDF taken as step.
    """
    _checks.floating(t, "t", shape=(-1,))
    if t.shape[0] % 2:
        raise ValueError(f"t must have an even length [2R], got {t.shape[0]}")
    n2 = t.shape[0]
    _checks.floating(dt, "dt", t, shape=(n2,))
    _checks.floating(cap, "cap", t, shape=(n2,))
    _checks.int32(status, "status", t, n2)
    _checks.floating(wmin, "wmin", t, shape=(n2,))
    _checks.floating(wmin_t, "wmin_t", t, shape=(n2,))
    use_cpp = resolve_backend(backend, t) == "cpp"
    _checks.index(walkers, "walkers", t, n2, check_bounds=not use_cpp)
    _checks.floating(sdf, "sdf", t, shape=(walkers.shape[0],))
    if not use_cpp and walkers.numel() and torch.unique(walkers).numel() != walkers.numel():
        raise ValueError("walkers has duplicate indices (each active walker once)")
    if not (threshold > 0 and step_scale > 0):
        raise ValueError("threshold and step_scale must be positive")
    if use_cpp:
        _c().sphere_trace_step(t, dt, cap, status, wmin, wmin_t, walkers, sdf, float(threshold), float(step_scale))
    else:
        reference.sphere_trace_step(t, dt, cap, status, wmin, wmin_t, walkers, sdf, threshold, step_scale)


def ray_points(origins, dirs, ray_idx, t, *, backend: str = "auto"):
    """Points along rays: ``origins[ray_idx] + t * dirs[ray_idx]``.

    Args: origins, dirs [R,3]; ray_idx [M] int64; t [M,K]. Returns: [M,K,3].
    """
    _checks.rays(origins, dirs)
    use_cpp = resolve_backend(backend, origins) == "cpp"
    _checks.index(ray_idx, "ray_idx", origins, origins.shape[0], check_bounds=not use_cpp)
    _checks.floating(t, "t", origins, shape=(ray_idx.shape[0], -1))
    if use_cpp:
        return _c().ray_points(origins, dirs, ray_idx, t)
    return reference.ray_points(origins, dirs, ray_idx, t)


def search_samples(origins, dirs, ray_idx, lo, hi, n: int, interior: bool = False, *, backend: str = "auto"):
    """Uniform samples between ``lo`` and ``hi`` on the rays ``ray_idx``.

    ``interior=False``: n samples from lo to hi inclusive (coarse stage); ``interior=True``: n samples strictly
    inside, at lo + (j+1)/(n+1) (hi - lo) (fine stage).
    Args: origins, dirs [R,3]; ray_idx [M] int64; lo, hi [M]. Returns: t [M,n], points [M,n,3].
    """
    _checks.rays(origins, dirs)
    use_cpp = resolve_backend(backend, origins) == "cpp"
    _checks.index(ray_idx, "ray_idx", origins, origins.shape[0], check_bounds=not use_cpp)
    m = ray_idx.shape[0]
    _checks.floating(lo, "lo", origins, shape=(m,))
    _checks.floating(hi, "hi", origins, shape=(m,))
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if use_cpp:
        return tuple(_c().search_samples(origins, dirs, ray_idx, lo, hi, int(n), bool(interior)))
    return reference.search_samples(origins, dirs, ray_idx, lo, hi, int(n), bool(interior))


def search_select(t, sdf, *, check_finite: bool = True, backend: str = "auto"):
    """First sign change (first sample with sdf < 0) and minimum-SDF sample per ray.

    Args: t [M,n] sample positions (increasing), sdf [M,n].
    Returns: first [M] int64 (-1 if no sample is negative), t_lo, t_hi, s_lo, s_hi [M] (the bracket
    (t[first-1], t[first]); both ends sample 0 when first == 0; the minimum sample when first == -1),
    min_sdf, min_t [M].
    """
    _checks.floating(t, "t", shape=(-1, -1))
    _checks.floating(sdf, "sdf", t, shape=tuple(t.shape))
    if t.shape[1] < 1 and t.shape[0] > 0:
        raise ValueError("search_select needs at least one sample per ray")
    if check_finite:
        _checks.finite(sdf, "sdf")
    if resolve_backend(backend, t) == "cpp":
        return list(_c().search_select(t, sdf))
    return reference.search_select(t, sdf)


def secant_step(t_lo, t_hi, s_lo, s_hi, side, t_mid=None, s_mid=None, update: bool = True, *,
                backend: str = "auto"):
    """One regula-falsi (Illinois) refinement step of brackets, in place; returns the next proposal [M].

    Args: t_lo, t_hi, s_lo (>= 0), s_hi (< 0) [M]; side [M] int32 (0 initially); t_mid, s_mid [M] the previous
    proposal and its SDF (needed when ``update``). With ``update=False`` only proposes (the first step).
    """
    _checks.floating(t_lo, "t_lo", shape=(-1,))
    m = t_lo.shape[0]
    for x, name in ((t_hi, "t_hi"), (s_lo, "s_lo"), (s_hi, "s_hi")):
        _checks.floating(x, name, t_lo, shape=(m,))
    _checks.int32(side, "side", t_lo, m)
    if update:
        if t_mid is None or s_mid is None:
            raise ValueError("update=True needs t_mid and s_mid")
        _checks.floating(t_mid, "t_mid", t_lo, shape=(m,))
        _checks.floating(s_mid, "s_mid", t_lo, shape=(m,))
    if resolve_backend(backend, t_lo) == "cpp":
        return _c().secant_step(t_lo, t_hi, s_lo, s_hi, side, t_mid, s_mid, bool(update))
    return reference.secant_step(t_lo, t_hi, s_lo, s_hi, side, t_mid, s_mid, bool(update))


def _check_cache(grid, points, radius):
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    _checks.floating(points, "points", shape=(-1, 3))
    _checks.floating(grid, "grid", points, shape=(-1, -1, -1))
    d = grid.shape
    if not (d[0] == d[1] == d[2] and d[0] > 0):
        raise ValueError(f"grid must be [D,D,D], got {list(d)}")


def cache_query(grid, points, radius: float, eps: float = 0.1, p_force: float = 0.2, seed: int = 0,
                counter: int = 0, *, backend: str = "auto"):
    """Look points up in the SDF voxel cache (see csrc/sdf_cache/sdf_cache.h).

    Args: grid [D,D,D] over [-radius, radius]^3 (NaN = empty); points [N,3]; eps: smallest cached value that
    may answer; p_force: probability of a forced re-evaluation, drawn from the counter-based RNG at
    (seed, counter, point index).
    Returns: values [N] (cached value minus the voxel diagonal, a lower bound of the SDF; NaN where not
    answered) and need [N] bool (True = evaluate the network there).
    """
    _check_cache(grid, points, radius)
    if not 0.0 <= p_force <= 1.0:
        raise ValueError(f"p_force must be in [0, 1], got {p_force}")
    seed, counter = reference._i64(int(seed)), reference._i64(int(counter))
    if resolve_backend(backend, points) == "cpp":
        return tuple(_c().cache_query(grid, points, float(radius), float(eps), float(p_force), seed, counter))
    return reference.cache_query(grid, points, radius, eps, p_force, seed, counter)


def cache_update(grid, points, values, radius: float, *, backend: str = "auto") -> None:
    """Write fresh SDF values into the cache, in place: each touched voxel gets the minimum of the batch's values
    inside it (order independent). Args: grid [D,D,D]; points [N,3]; values [N]."""
    _check_cache(grid, points, radius)
    _checks.floating(values, "values", points, shape=(points.shape[0],))
    if resolve_backend(backend, points) == "cpp":
        _c().cache_update(grid, points, values, float(radius))
    else:
        reference.cache_update(grid, points, values, radius)


def hash_encode(points, table, resolutions, radius: float = 1.0, *, backend: str = "auto"):
    """Multiresolution hash encoding (Instant-NGP) of ``points`` over the cube [-radius, radius]^3 (see
    csrc/hash_grid/hash_grid.h), differentiable in ``points`` and ``table`` (twice in ``table``; see
    :mod:`headrecon.ops.hash_grid`).

    Args:
        points: [N,3]. table: [L,S,F] float32/float64 (same dtype and device; S a power of two).
        resolutions: L cells-per-axis values (a list, or an int64 tensor on the points' device, which is used
            as is: on CUDA unchecked, so no host sync; :func:`hash_resolutions` makes the geometric series). Levels whose (R+1)^3 grid vertices fit in S are indexed densely, the others hashed.
    Returns:
        features [N, L*F] (level-major); zero for points outside the cube (their gradients are zero too).
    """
    from .hash_grid import _KERNELS, _HashEncode

    _checks.floating(points, "points", shape=(-1, 3))
    _checks.floating(table, "table", points, shape=(-1, -1, -1))
    L, S, F = table.shape
    if L < 1 or F < 1 or S < 1 or (S & (S - 1)):
        raise ValueError(f"table must be [L,S,F] with L, F >= 1 and S a power of two, got {list(table.shape)}")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    use_cpp = resolve_backend(backend, points) == "cpp"
    if isinstance(resolutions, torch.Tensor) and resolutions.device == points.device \
            and resolutions.dtype == torch.int64 and resolutions.dim() == 1:
        res = resolutions  # e.g. a module's buffer: no host copy, no host sync per call on CUDA
        if res.numel() != L:
            raise ValueError(f"resolutions has {res.numel()} values but table has {L} levels")
        # the compiled CPU path checks the range itself (csrc/ext.cpp, check_hash); the reference needs it here
        if not use_cpp and not res.is_cuda and res.numel() and (int(res.min()) < 1 or int(res.max()) > 1 << 20):
            raise ValueError(f"resolutions must be in [1, 2^20], got {res.tolist()}")
    else:
        values = [int(r) for r in (resolutions.tolist() if isinstance(resolutions, torch.Tensor) else resolutions)]
        if len(values) != L:
            raise ValueError(f"resolutions has {len(values)} values but table has {L} levels")
        if any(r < 1 or r > 1 << 20 for r in values):
            raise ValueError(f"resolutions must be in [1, 2^20], got {values}")
        res = torch.tensor(values, dtype=torch.int64, device=points.device)
    kernels = _KERNELS[use_cpp]
    if not (torch.is_grad_enabled() and (points.requires_grad or table.requires_grad)):
        return kernels.fwd(points, table, res, None, float(radius))  # what _HashEncode.forward returns
    return _HashEncode.apply(points, table, res, float(radius), kernels)


def softplus(x, beta: float = 1.0, threshold: float = 20.0, *, backend: str = "auto"):
    """Softplus activation, ``torch.nn.functional.softplus``'s rule (``x`` where ``beta * x > threshold``, else
    ``log(1 + exp(beta x)) / beta``), differentiable twice with torch's derivatives (csrc/softplus/softplus.h;
    :mod:`headrecon.ops.activation`).

    Args:
        x: any shape. float32 CPU tensors run the engine's kernel (``backend`` "auto"/"cpp") or its reference
            (``"torch"``: :func:`headrecon.ops.reference.softplus`, the same operations, bit for bit). float32
            CUDA tensors run ``torch.nn.functional.softplus`` with ``"auto"`` (no GPU has measured whether the
            engine's kernel is faster there) and the engine's CUDA kernel with ``"cpp"`` (the CPU's values, bit
            for bit). Other dtypes run ``torch.nn.functional.softplus``.
    Returns:
        a tensor of ``x``'s shape and dtype.
    """
    from .activation import _Softplus, _softplus_cpp, _softplus_ref

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if x.dtype != torch.float32 or x.device.type not in ("cpu", "cuda") or (x.is_cuda and backend == "auto"):
        return torch.nn.functional.softplus(x, beta, threshold)
    forward = _softplus_cpp if resolve_backend(backend, x) == "cpp" else _softplus_ref
    beta, threshold = float(beta), float(threshold)
    if not (x.requires_grad and torch.is_grad_enabled()):
        return forward(x, beta, threshold)
    return _Softplus.apply(x, beta, threshold, forward)


def composite(packed, sigmas, deltas, values, *, backend: str = "auto"):
    """Volume-rendering compositing of packed rays (VolSDF / NeRF alpha compositing; csrc/composite/composite.h).

    Args:
        packed: [R,2] int64: each ray's first sample and sample count (a ray's samples consecutive, front to back;
            rays do not share samples; count 0 = an empty ray).
        sigmas: [S] densities; deltas: [S] segment lengths (sample i's optical thickness is sigmas_i * deltas_i).
        values: [S,C] what to composite (colours, normals, depths, ... stacked).
    Returns:
        out [R,C] = sum_i w_i values_i, opacity [R] = sum_i w_i and weights [S] (w_i = T_i (1 - exp(-tau_i)),
        zero for samples of no ray), differentiable in ``sigmas`` and ``values`` (``weights`` carries no
        gradient).
    """
    from .volume import _Composite

    _checks.floating(sigmas, "sigmas", shape=(-1,))
    n = sigmas.shape[0]
    _checks.floating(deltas, "deltas", sigmas, shape=(n,))
    _checks.floating(values, "values", sigmas, shape=(n, -1))
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.int64 or packed.dim() != 2 \
            or packed.shape[1] != 2:
        raise ValueError(f"packed must be an int64 tensor [R,2], got "
                         f"{getattr(packed, 'dtype', type(packed).__name__)} {list(getattr(packed, 'shape', []))}")
    if packed.device != sigmas.device or not packed.is_contiguous():
        raise ValueError(f"packed must be a contiguous tensor on {sigmas.device}")
    use_cpp = resolve_backend(backend, sigmas) == "cpp"
    if packed.numel() and (not packed.is_cuda or not use_cpp):  # bounds and no shared samples (host checks)
        start, count = packed[:, 0], packed[:, 1]
        if bool((start < 0).any()) or bool((count < 0).any()) or bool((start + count > n).any()):
            raise ValueError(f"packed has rays outside the {n} samples (need 0 <= start, 0 <= count, "
                             f"start + count <= {n})")
        nz = count > 0
        s_, c_ = start[nz], count[nz]
        order = torch.argsort(s_)
        s_, c_ = s_[order], c_[order]
        if s_.numel() > 1 and bool((s_[1:] < s_[:-1] + c_[:-1]).any()):
            raise ValueError("packed has rays that share samples (each sample belongs to at most one ray)")
    return _Composite.apply(packed, sigmas, deltas, values, use_cpp)
