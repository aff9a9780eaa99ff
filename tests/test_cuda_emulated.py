"""Every CUDA kernel of csrc/, executed on the CPU with ROCm's HIP-CPU (tools/hipcpu/build.py), against the C++
CPU backend: many sizes (0, 1, block size +- 1, several grid-stride rounds, also with a library built with
``hr_blocks`` capped at 3 blocks), float32 and float64, NaN / +-inf / +-0 inputs, rays that miss, tangent rays,
full multi-step sphere traces, cache grids of several resolutions and p_force values.

Every output buffer is filled with a marker before the launch, and every launch runs twice with two different
markers: an element a kernel does not write keeps one of them and fails the comparison. The kernels and the CPU
loops share one per-element source, so the results must agree exactly (floats compared with NaN == NaN). The
cache's atomic minimum may keep either -0 or +0 when both land in one voxel (CUDA's order of arrival decides): the
grids are compared by value (``torch.equal``, -0 == +0), not by bits.

Needs g++, TBB (``apt-get install -y libtbb-dev``) and ``../shared/third_party/hip-cpu``; skips with the reason when
one is absent, and fails instead when ``HEADRECON_REQUIRE_EMULATION=1`` (``.ci/run`` sets it).
"""
import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from headrecon import ops, shared_dir

REPO = Path(__file__).resolve().parents[1]
THREADS = 256  # csrc/common/cuda_utils.cuh kThreads
SIZES = [0, 1, 2, THREADS - 1, THREADS, THREADS + 1, 3 * THREADS + 7]
DTYPES = [torch.float32, torch.float64]


def _missing() -> str | None:
    if shutil.which("g++") is None:
        return "g++ not found"
    hip = shared_dir()
    if hip is None or not (hip / "third_party" / "hip-cpu" / "include" / "hip" / "hip_runtime.h").is_file():
        return "HIP-CPU not found (../shared/third_party/hip-cpu)"
    if not any(Path(p).exists() for p in ("/usr/include/tbb/tbb.h", "/usr/include/oneapi/tbb.h")):
        return "TBB headers not found (apt-get install -y libtbb-dev)"
    return None


@pytest.fixture(scope="session", params=[None, 3], ids=["blocks-full", "blocks-capped-3"])
def emu(request, tmp_path_factory):
    why = _missing()
    if why:
        if os.environ.get("HEADRECON_REQUIRE_EMULATION") == "1":
            pytest.fail(f"HEADRECON_REQUIRE_EMULATION=1 but {why}")
        pytest.skip(f"CUDA emulation unavailable: {why}")
    out = tmp_path_factory.mktemp("emu") / f"hr_emu_{request.param or 'full'}.so"
    cmd = [sys.executable, str(REPO / "tools" / "hipcpu" / "build.py"), str(out),
           "--hip-cpu", str(shared_dir() / "third_party" / "hip-cpu")]
    if request.param:
        cmd += ["--max-blocks", str(request.param)]
    subprocess.run(cmd, check=True, capture_output=True)
    lib = ctypes.CDLL(str(out))
    assert lib.hr_max_blocks() == (request.param or 65535 * 32)
    return lib


def _c(x):
    """ctypes argument for a tensor (pointer), bool, int (int64) or float/double scalar (set by the caller)."""
    if isinstance(x, torch.Tensor):
        assert x.is_contiguous()
        return ctypes.c_void_p(x.data_ptr())
    if isinstance(x, bool):
        return ctypes.c_bool(x)
    if isinstance(x, int):
        return ctypes.c_int64(x)
    return x


def _call(lib, name, dtype, *args):
    suffix = "f32" if dtype == torch.float32 else "f64"
    real = ctypes.c_float if dtype == torch.float32 else ctypes.c_double
    conv = [real(a) if isinstance(a, float) else _c(a) for a in args]
    assert getattr(lib, f"hr_{name}_{suffix}")(*conv) == 0


def _marked(shape, dtype, marker):
    if dtype == torch.bool:
        return torch.full(shape, bool(marker), dtype=dtype)
    return torch.full(shape, marker, dtype=dtype)


def _run_twice(launch, outputs):
    """``launch(bufs)`` with output buffers [(shape, dtype)] filled with two different markers; both runs must
    write every element (same results); returns the buffers of the first run."""
    results = []
    for marker in (-12345.0, 54321.0):
        bufs = [_marked(s, d, marker if d.is_floating_point else (1 if marker > 0 else 0) if d == torch.bool
                        else int(marker)) for s, d in outputs]
        launch(bufs)
        results.append(bufs)
    for a, b in zip(*results):
        assert torch.equal(a, b) or torch.allclose(a, b, equal_nan=True, rtol=0, atol=0), "unwritten elements"
    return results[0]


def _same(a, b):
    if a.dtype.is_floating_point:
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    else:
        assert torch.equal(a, b)


def _rays(n, dtype, seed=0):
    """Rays from outside the unit sphere: hits, misses, tangents, and awkward values."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g, dtype=torch.float64)
    o = 3.0 * o / o.norm(dim=1, keepdim=True).clamp_min(1e-9)
    target = 1.4 * (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5)
    d = target - o
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-9)
    if n >= 8:
        o[0], d[0] = torch.tensor([0.0, 1.0, -3.0]), torch.tensor([0.0, 0.0, 1.0])     # tangent
        o[1], d[1] = torch.tensor([0.0, 2.0, -3.0]), torch.tensor([0.0, 0.0, 1.0])     # miss
        o[2], d[2] = torch.tensor([-0.0, 0.0, -3.0]), torch.tensor([0.0, -0.0, 1.0])   # signed zeros
        o[3] = torch.tensor([float("nan"), 0.0, 0.0])                                  # NaN
        d[4] = torch.tensor([float("inf"), 0.0, 0.0])                                  # inf
        o[5], d[5] = torch.tensor([0.1, 0.2, 0.1]), torch.tensor([1.0, 0.0, 0.0])      # inside
    return o.to(dtype).contiguous(), d.to(dtype).contiguous()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("n", SIZES)
def test_ray_sphere(emu, n, dtype):
    o, d = _rays(n, dtype)
    near, far, mask = ops.ray_sphere_intersect(o, d, 1.0, backend="cpp")
    got = _run_twice(lambda b: _call(emu, "ray_sphere", dtype, o, d, 1.0, n, *b),
                     [((n,), dtype), ((n,), dtype), ((n,), torch.bool)])
    for a, b in zip((near, far, mask), got):
        _same(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("m,k", [(0, 3), (1, 1), (THREADS - 1, 2), (THREADS + 1, 5), (300, 7)])
def test_ray_points_and_search_samples(emu, m, k, dtype):
    o, d = _rays(max(m, 1) + 3, dtype, seed=1)
    idx = torch.randperm(o.shape[0])[:m].contiguous()
    t = torch.rand(m, k, dtype=dtype)
    ref = ops.ray_points(o, d, idx, t, backend="cpp")
    (got,) = _run_twice(lambda b: _call(emu, "ray_points", dtype, o, d, idx, t, m, k, *b), [((m, k, 3), dtype)])
    _same(ref, got)
    lo, hi = torch.rand(m, dtype=dtype), 1.0 + torch.rand(m, dtype=dtype)
    for interior in (False, True):
        rt, rp = ops.search_samples(o, d, idx, lo, hi, k, interior, backend="cpp")
        gt, gp = _run_twice(lambda b: _call(emu, "search_samples", dtype, o, d, idx, lo, hi, m, k, interior, *b),
                            [((m, k), dtype), ((m, k, 3), dtype)])
        _same(rt, gt)
        _same(rp, gp)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("m,n", [(0, 4), (1, 1), (THREADS, 5), (THREADS + 1, 9), (3 * THREADS + 7, 3)])
def test_search_select_and_secant(emu, m, n, dtype):
    g = torch.Generator().manual_seed(m * 31 + n)
    t = torch.sort(torch.rand(m, n, generator=g, dtype=dtype), dim=1).values.contiguous()
    s = (torch.rand(m, n, generator=g, dtype=dtype) - 0.4).contiguous()
    if m * n > 10:
        flat = s.view(-1)
        flat[::7] = float("nan")
        flat[3] = float("inf")
        flat[5] = -0.0
    ref = ops.search_select(t, s, check_finite=False, backend="cpp")
    got = _run_twice(lambda b: _call(emu, "search_select", dtype, t, s, m, n, *b),
                     [((m,), torch.int64)] + [((m,), dtype)] * 6)
    for a, b in zip(ref, got):
        _same(a, b)
    # secant: a propose step, then update steps, on copies of the same brackets
    t_lo, t_hi = torch.rand(m, dtype=dtype), 1.0 + torch.rand(m, dtype=dtype)
    s_lo, s_hi = torch.rand(m, dtype=dtype), -torch.rand(m, dtype=dtype)
    cpu = [x.clone() for x in (t_lo, t_hi, s_lo, s_hi)] + [torch.zeros(m, dtype=torch.int32)]
    emu_state = [x.clone() for x in cpu]
    mid_c = ops.secant_step(*cpu, update=False, backend="cpp")
    mid_e = torch.empty(m, dtype=dtype)
    _call(emu, "secant_step", dtype, *emu_state, torch.empty(0, dtype=dtype), torch.empty(0, dtype=dtype), m, False,
          mid_e)
    _same(mid_c, mid_e)
    for _ in range(4):
        s_mid = torch.sin(7.0 * mid_c) * 0.3
        nxt_c = ops.secant_step(*cpu, t_mid=mid_c, s_mid=s_mid, update=True, backend="cpp")
        nxt_e = torch.empty(m, dtype=dtype)
        _call(emu, "secant_step", dtype, *emu_state, mid_e, s_mid, m, True, nxt_e)
        for a, b in zip(cpu, emu_state):
            _same(a, b)
        _same(nxt_c, nxt_e)
        mid_c, mid_e = nxt_c, nxt_e


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("n_rays", [1, THREADS // 2 + 1, 2 * THREADS + 3])
def test_full_sphere_traces(emu, n_rays, dtype):
    """Multi-step sphere traces of an analytic SDF (two spheres) driven step by step on both backends: the walker
    state after every step is identical."""
    o, d = _rays(n_rays, dtype, seed=5)
    o, d = o.nan_to_num(0.0, 0.0, 0.0), d.nan_to_num(0.0, 0.0, 0.0)
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-6)
    o[-1], d[-1] = torch.tensor([0.3, 0.0, -3.0], dtype=dtype), torch.tensor([0.0, 0.0, 1.0], dtype=dtype)  # a hit
    near, far, mask = ops.ray_sphere_intersect(o, d, 1.0, backend="cpp")

    def sdf(p):
        return torch.minimum((p - torch.tensor([0.3, 0, 0], dtype=dtype)).norm(dim=-1) - 0.35,
                             (p + torch.tensor([0.3, 0.1, 0], dtype=dtype)).norm(dim=-1) - 0.3)

    def init():
        t = torch.stack([near, far], 1).reshape(-1).contiguous()
        status = torch.where(mask.repeat_interleave(2), 1, 0).to(torch.int32)
        return [t, torch.zeros_like(t), torch.full_like(t, float("inf")), status, torch.full_like(t, float("inf")),
                torch.zeros_like(t)]  # as RayTracer._sphere_trace starts them

    cpu, em = init(), init()
    for _ in range(40):
        walkers = (cpu[3] == 1).nonzero().squeeze(1).contiguous()
        if walkers.numel() == 0:
            break
        r = walkers // 2
        p = o[r] + cpu[0][walkers][:, None] * d[r]
        s = sdf(p).contiguous()
        ops.sphere_trace_step(*cpu, walkers, s, 1e-5, 1.0, backend="cpp")
        _call(emu, "sphere_trace_step", dtype, walkers, s, walkers.numel(), n_rays, 1e-5, 1.0, *em)
        for a, b in zip(cpu, em):
            _same(a, b)
    assert cpu[3][-2] == 2  # the last ray's front walker converged: the traces did something


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("res", [1, 4, 17, 64])
@pytest.mark.parametrize("p_force", [0.0, 0.2, 1.0])
def test_cache_query_and_update(emu, res, p_force, dtype):
    g = torch.Generator().manual_seed(res)
    n = 3 * THREADS + 5
    pts = (2.4 * torch.rand(n, 3, generator=g, dtype=dtype) - 1.2).contiguous()  # some outside the grid
    pts[:20] = pts[20:40]                                                           # shared voxels
    vals = (torch.rand(n, generator=g, dtype=dtype) - 0.3).contiguous()
    vals[::11] = float("nan")
    vals[1], vals[2] = 0.0, -0.0
    grid_c = torch.full((res, res, res), float("nan"), dtype=dtype)
    grid_e = grid_c.clone()
    ops.cache_update(grid_c, pts, vals, 1.0, backend="cpp")
    _call(emu, "cache_update", dtype, grid_e, pts, vals, n, 1.0, res)
    assert torch.equal(grid_c.nan_to_num(7.0), grid_e.nan_to_num(7.0))  # by value: -0 == +0
    for counter in (0, 5):
        ref = ops.cache_query(grid_c, pts, 1.0, 0.1, p_force, 3, counter, backend="cpp")
        diag = 2.0 * 1.0 / res * 3.0 ** 0.5
        got = _run_twice(lambda b: _call(emu, "cache_query", dtype, grid_c, pts, n, 1.0, res, 0.1, diag,
                                         ctypes.c_double(p_force), ctypes.c_uint64(3), ctypes.c_uint64(counter), *b),
                         [((n,), dtype), ((n,), torch.bool)])
        for a, b in zip(ref, got):
            _same(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("n", [0, 1, THREADS + 1, 2 * THREADS + 3])
@pytest.mark.parametrize("levels,size,feats", [(1, 8, 1), (3, 64, 2), (5, 512, 4)])
def test_hash_encode(emu, n, levels, size, feats, dtype):
    """Forward (with and without a direction), table gradient (atomics: equal up to summation order) and
    points gradient of the hash encoding, dense and hashed levels, points outside the cube and NaN."""
    g = torch.Generator().manual_seed(n + 7 * levels)
    pts = (2.4 * torch.rand(n, 3, generator=g, dtype=dtype) - 1.2).contiguous()
    if n > 3:
        pts[0] = torch.tensor([1.0, -1.0, 1.0])   # on the cube's corner
        pts[1, 0] = float("nan")
    dirs = torch.randn(n, 3, generator=g, dtype=dtype).contiguous()
    table = torch.randn(levels, size, feats, generator=g, dtype=dtype).contiguous()
    res = torch.tensor(ops.hash_resolutions(levels, 2, 30) if levels > 1 else [3], dtype=torch.int64)
    grad = torch.randn(n, levels * feats, generator=g, dtype=dtype).contiguous()
    C = headrecon_ext()
    null = ctypes.c_void_p(None)
    for d in (None, dirs):
        ref = C.hash_encode_fwd(pts, table, res, d, 1.0)
        got = _run_twice(lambda b: _call(emu, "hash_fwd", dtype, table, pts, d if d is not None else null, res, n,
                                         levels, size, feats, 1.0, *b), [((n, levels * feats), dtype)])
        _same(ref, got[0])
        ref_t = C.hash_encode_bwd_table(grad, pts, res, d, size, feats, 1.0)
        got_t = torch.zeros_like(ref_t)
        _call(emu, "hash_bwd_table", dtype, grad, pts, d if d is not None else null, res, n, levels, size, feats, 1.0,
              got_t)
        tol = 1e-5 if dtype == torch.float32 else 1e-12  # relative to the largest entry: sums in another order
        scale = float(ref_t.abs().max()) if ref_t.numel() else 1.0
        torch.testing.assert_close(got_t, ref_t, rtol=10 * tol, atol=10 * tol * max(scale, 1.0))
    ref_p = C.hash_encode_bwd_points(grad, pts, table, res, 1.0)
    got_p = _run_twice(lambda b: _call(emu, "hash_bwd_points", dtype, table, pts, grad, res, n, levels, size, feats,
                                       1.0, *b), [((n, 3), dtype)])
    _same(ref_p, got_p[0])


def headrecon_ext():
    from headrecon import _backend

    return _backend.get_ext()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("n_rays", [0, 1, THREADS + 1, 2 * THREADS + 3])
def test_composite(emu, n_rays, dtype):
    """Forward and backward of the compositing, rays of 0, 1 and many samples (the per-ray loops are the CPU's:
    exact agreement). The weights of samples outside every ray are zero-initialised by the caller, as the glue
    does."""
    g = torch.Generator().manual_seed(n_rays)
    counts = torch.randint(0, 12, (n_rays,), generator=g)
    if n_rays > 2:
        counts[0], counts[1] = 0, 1
    starts = torch.cumsum(counts + 1, 0) - counts
    S = int(starts[-1] + counts[-1] + 1) if n_rays else 1
    packed = torch.stack([starts, counts], 1).contiguous() if n_rays else torch.zeros(0, 2, dtype=torch.int64)
    sig = (5 * torch.rand(S, generator=g, dtype=dtype)).contiguous()
    dl = (0.4 * torch.rand(S, generator=g, dtype=dtype)).contiguous()
    C = 3
    val = torch.randn(S, C, generator=g, dtype=dtype).contiguous()
    ext = headrecon_ext()
    ref = ext.composite_fwd(packed, sig, dl, val)
    scratch = torch.zeros(S, dtype=dtype)
    got = _run_twice(lambda b: _call(emu, "composite_fwd", dtype, packed, sig, dl, val, n_rays, C, *b, scratch),
                     [((n_rays, C), dtype), ((n_rays,), dtype)])
    _same(ref[0], got[0])
    _same(ref[1], got[1])
    w = torch.zeros(S, dtype=dtype)
    _call(emu, "composite_fwd", dtype, packed, sig, dl, val, n_rays, C, got[0], got[1], w)
    _same(ref[2], w)
    go = torch.randn(n_rays, C, generator=g, dtype=dtype).contiguous()
    gop = torch.randn(n_rays, generator=g, dtype=dtype).contiguous()
    rs, rv = ext.composite_bwd(packed, sig, dl, val, go, gop)
    gs, gv = torch.zeros(S, dtype=dtype), torch.zeros(S, C, dtype=dtype)
    _call(emu, "composite_bwd", dtype, packed, sig, dl, val, go, gop, n_rays, C, gs, gv)
    _same(rs, gs)
    _same(rv, gv)


@pytest.mark.parametrize("n", SIZES + [5 * THREADS * 3 + 11])
def test_softplus(emu, n):
    """The activation's kernel (float32 only) against the CPU backend, bit for bit, on awkward values (zeros,
    infinities, NaN, the threshold and the exp cut with their neighbours, denormals) and ordinary ones."""
    g = torch.Generator().manual_seed(n)
    awkward = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 0.2, -0.87, 1e-40, -1e-40, 3e38,
                            -3e38, 0.05, -0.05])
    x = torch.cat([awkward, torch.randn(n, generator=g) * 0.1])[:n].contiguous()
    ref = headrecon_ext().softplus_forward(x, 100.0, 20.0)
    (got,) = _run_twice(lambda b: _call(emu, "softplus", torch.float32, x, *b, n, 100.0, 20.0),
                        [((n,), torch.float32)])
    _same(ref, got)
