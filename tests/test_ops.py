"""Every kernel of headrecon.ops against its pure-PyTorch reference, over many shapes (including empty batches
and single rays), in float32 and float64, plus argument validation. CUDA variants run where a GPU exists."""
import pytest
import torch
from conftest import HAS_CUDA, requires_cuda

from headrecon import ops
from headrecon.ops import reference as R

BACKENDS = ["cpp"] + (["cuda"] if HAS_CUDA else [])
SIZES = [0, 1, 7, 1000]
DTYPES = [torch.float32, torch.float64]


def dev(backend):
    return "cuda" if backend == "cuda" else "cpu"


def rand_rays(n, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 6 - 3).to(dtype)
    d = (torch.randn(n, 3, generator=g, dtype=torch.float64)).to(dtype)
    return o.to(device), d.to(device)


def close(a, b, dtype):
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(a.cpu(), b.cpu(), rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ray_sphere(backend, n, dtype):
    o, d = rand_rays(n, dtype, dev(backend))
    out = ops.ray_sphere_intersect(o, d, 1.3, backend="cpp")
    ref = R.ray_sphere_intersect(o.cpu(), d.cpu(), 1.3)
    assert torch.equal(out[2].cpu(), ref[2])
    close(out[0], ref[0], dtype)
    close(out[1], ref[1], dtype)
    if n:
        inside = o.norm(dim=-1) < 1.3
        assert bool(out[2][inside].all()) and bool((out[0][inside] == 0).all())


def test_ray_sphere_known_values():
    o = torch.tensor([[0.0, 0, -3], [0, 0, 0], [0, 5, -3], [0, 0, 3]])
    d = torch.tensor([[0.0, 0, 2], [1, 0, 0], [0, 0, 1], [0, 0, 1]])
    near, far, mask = ops.ray_sphere_intersect(o, d, 1.0)
    assert mask.tolist() == [True, True, False, False]
    torch.testing.assert_close(near[:2], torch.tensor([1.0, 0.0]))  # t in units of |d| = 2
    torch.testing.assert_close(far[:2], torch.tensor([2.0, 1.0]))


def random_trace_state(n_rays, m_frac, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(2 * n_rays, generator=g, dtype=torch.float64) * 2).to(dtype)
    dt = torch.where(torch.rand(2 * n_rays, generator=g) < 0.3, 0.0,
                     torch.rand(2 * n_rays, generator=g, dtype=torch.float64)).to(dtype)
    cap = torch.where(torch.rand(2 * n_rays, generator=g) < 0.5, float("inf"),
                      torch.rand(2 * n_rays, generator=g, dtype=torch.float64)).to(dtype)
    status = torch.randint(0, 5, (2 * n_rays,), generator=g, dtype=torch.int32)
    status[torch.rand(2 * n_rays, generator=g) < 0.6] = R.ACTIVE
    wmin = torch.where(torch.rand(2 * n_rays, generator=g) < 0.5, float("inf"),
                       torch.rand(2 * n_rays, generator=g, dtype=torch.float64) * 0.3).to(dtype)
    wmin_t = torch.rand(2 * n_rays, generator=g, dtype=torch.float64).to(dtype)
    active = (status == R.ACTIVE).nonzero().squeeze(1)
    keep = torch.rand(active.numel(), generator=g) < m_frac
    walkers = active[keep].contiguous()
    sdf = (torch.randn(walkers.numel(), generator=g, dtype=torch.float64) * 0.3).to(dtype)
    sdf[torch.rand(walkers.numel(), generator=g) < 0.1] = 1e-7  # some converge
    return [x.to(device) for x in (t, dt, cap, status, wmin, wmin_t, walkers, sdf)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sphere_trace_step(backend, n, dtype):
    state = random_trace_state(n, 0.8, dtype, dev(backend), seed=n)
    ref = [x.clone().cpu() for x in state]
    ops.sphere_trace_step(*state, threshold=1e-5, step_scale=0.9, backend="cpp")
    R.sphere_trace_step(*ref, threshold=1e-5, step_scale=0.9)
    for i in (0, 1, 2, 4, 5):
        close(state[i], ref[i], dtype)
    assert torch.equal(state[3].cpu(), ref[3])


def test_sphere_trace_step_semantics():
    # ray 0: front converges, back should then stop; ray 1: front overshoots; ray 2: walkers cross
    t = torch.tensor([0.0, 2.0, 0.5, 2.0, 1.0, 1.1])
    dt = torch.tensor([0.0, 0.0, 0.4, 0.0, 0.3, 0.3])
    cap = torch.full((6,), float("inf"))
    status = torch.ones(6, dtype=torch.int32)
    walkers = torch.arange(6)
    sdf = torch.tensor([1e-7, 0.5, -0.2, 0.5, 0.2, 0.2])
    wmin, wmin_t = torch.full((6,), float("inf")), torch.zeros(6)
    wmin[5] = 0.1
    ops.sphere_trace_step(t, dt, cap, status, wmin, wmin_t, walkers, sdf, threshold=1e-5)
    assert status.tolist() == [R.CONVERGED, R.IDLE, R.ACTIVE, R.ACTIVE, R.MET, R.MET]
    torch.testing.assert_close(wmin, torch.tensor([1e-7, 0.5, -0.2, 0.5, 0.2, 0.1]))  # keeps the smaller one
    torch.testing.assert_close(wmin_t, torch.tensor([0.0, 2.0, 0.5, 2.0, 1.0, 0.0]))  # t where it was sampled
    assert t[2].item() == pytest.approx(0.3) and cap[2].item() == pytest.approx(0.2)  # stepped back half of 0.4
    assert t[3].item() == pytest.approx(1.5)  # back walker marches backward


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m", SIZES)
@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ray_points(backend, m, k, dtype):
    o, d = rand_rays(11, dtype, dev(backend))
    idx = torch.randint(0, 11, (m,), device=dev(backend))
    t = torch.rand(m, k, dtype=dtype, device=dev(backend))
    close(ops.ray_points(o, d, idx, t, backend="cpp"), R.ray_points(o.cpu(), d.cpu(), idx.cpu(), t.cpu()), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m", SIZES)
@pytest.mark.parametrize("n,interior", [(1, False), (2, False), (75, False), (1, True), (25, True)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_search_samples(backend, m, n, interior, dtype):
    o, d = rand_rays(13, dtype, dev(backend))
    idx = torch.randint(0, 13, (m,), device=dev(backend))
    lo = torch.rand(m, dtype=dtype, device=dev(backend))
    hi = lo + torch.rand(m, dtype=dtype, device=dev(backend))
    t, p = ops.search_samples(o, d, idx, lo, hi, n, interior, backend="cpp")
    tr, pr = R.search_samples(o.cpu(), d.cpu(), idx.cpu(), lo.cpu(), hi.cpu(), n, interior)
    close(t, tr, dtype)
    close(p, pr, dtype)
    if m and not interior and n > 1:
        assert torch.equal(t[:, 0], lo) and torch.equal(t[:, -1], hi)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m", SIZES)
@pytest.mark.parametrize("n", [1, 3, 75])
@pytest.mark.parametrize("dtype", DTYPES)
def test_search_select(backend, m, n, dtype):
    g = torch.Generator().manual_seed(m * 100 + n)
    t = torch.sort(torch.rand(m, n, generator=g, dtype=torch.float64), 1).values.to(dtype)
    sdf = (torch.rand(m, n, generator=g, dtype=torch.float64) - 0.3).to(dtype)
    sdf[: m // 3] = sdf[: m // 3].abs() + 0.01  # rays without any sign change
    t, sdf = t.to(dev(backend)), sdf.to(dev(backend))
    out = ops.search_select(t, sdf, backend="cpp")
    ref = R.search_select(t.cpu(), sdf.cpu())
    assert torch.equal(out[0].cpu(), ref[0])
    for a, b in zip(out[1:], ref[1:]):
        close(a, b, dtype)


def test_search_select_semantics():
    t = torch.tensor([[0.0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]])
    sdf = torch.tensor([[0.5, 0.2, -0.1, 0.3], [-0.5, 0.2, 0.1, 0.3], [0.5, 0.2, 0.1, 0.3]])
    first, t_lo, t_hi, s_lo, s_hi, min_sdf, min_t = ops.search_select(t, sdf)
    assert first.tolist() == [2, 0, -1]
    assert t_lo.tolist() == [1, 0, 2] and t_hi.tolist() == [2, 0, 2]
    torch.testing.assert_close(min_sdf, torch.tensor([-0.1, -0.5, 0.1]))
    assert min_t.tolist() == [2, 0, 2]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_secant_step(backend, m, dtype):
    g = torch.Generator().manual_seed(m)
    t_lo = torch.rand(m, generator=g, dtype=torch.float64).to(dtype)
    t_hi = t_lo + 0.1
    s_lo = torch.rand(m, generator=g, dtype=torch.float64).to(dtype)
    s_hi = -torch.rand(m, generator=g, dtype=torch.float64).to(dtype)
    s_hi[: m // 4] = s_lo[: m // 4]  # equal values: falls back to the midpoint
    side = torch.randint(0, 3, (m,), generator=g, dtype=torch.int32)
    s_mid = torch.randn(m, generator=g, dtype=torch.float64).to(dtype)
    state = [x.to(dev(backend)) for x in (t_lo, t_hi, s_lo, s_hi, side)]
    ref = [x.clone() for x in (t_lo, t_hi, s_lo, s_hi, side)]
    tm = ops.secant_step(*state, update=False, backend="cpp")
    tmr = R.secant_step(*ref, None, None, False)
    close(tm, tmr, dtype)
    nxt = ops.secant_step(*state, tm, s_mid.to(dev(backend)), update=True, backend="cpp")
    nxtr = R.secant_step(*ref, tmr, s_mid, True)
    close(nxt, nxtr, dtype)
    for a, b in zip(state, ref):
        if a.dtype == torch.int32:
            assert torch.equal(a.cpu(), b)
        else:
            close(a, b, dtype)


def test_secant_converges_on_cubic():
    f = lambda x: 0.3 - x ** 3  # root at 0.3 ** (1/3)
    t_lo, t_hi = torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    s_lo, s_hi, side = f(t_lo), f(t_hi), torch.zeros(1, dtype=torch.int32)
    tm = ops.secant_step(t_lo, t_hi, s_lo, s_hi, side, update=False)
    for _ in range(12):
        tm = ops.secant_step(t_lo, t_hi, s_lo, s_hi, side, tm, f(tm), update=True)
    assert abs(tm.item() - 0.3 ** (1 / 3)) < 1e-10


def test_rng_matches_reference_bitwise():
    idx = torch.arange(5000)
    for seed, stream in [(0, 0), (12345, 7), (2 ** 63 + 5, 2 ** 40)]:
        u = R.uniform(R._i64(seed), R._i64(stream), idx)
        assert 0 <= u.min() and u.max() < 1
        assert abs(u.mean().item() - 0.5) < 0.02
        grid = torch.full((4, 4, 4), 1.0, dtype=torch.float64)
        pts = torch.zeros(5000, 3, dtype=torch.float64)
        _, need = ops.cache_query(grid, pts, 1.0, 0.1, 0.37, seed, stream, backend="cpp")
        assert torch.equal(need, u < 0.37)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("res", [1, 8, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cache_query_update(backend, n, res, dtype):
    g = torch.Generator().manual_seed(n + res)
    pts = ((torch.rand(n, 3, generator=g, dtype=torch.float64) * 2.4 - 1.2)).to(dtype).to(dev(backend))
    vals = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 0.5).to(dtype).to(dev(backend))
    if n > 3:
        vals[3] = float("nan")  # skipped by update
    grid = torch.full((res, res, res), float("nan"), dtype=dtype, device=dev(backend))
    grid_ref = grid.clone().cpu()
    ops.cache_update(grid, pts, vals, 1.1, backend="cpp")
    R.cache_update(grid_ref, pts.cpu(), vals.cpu(), 1.1)
    close(grid, grid_ref, dtype)
    q = ((torch.rand(n, 3, generator=g, dtype=torch.float64) * 2.4 - 1.2)).to(dtype).to(dev(backend))
    v, need = ops.cache_query(grid, q, 1.1, 0.1, 0.2, seed=3, counter=9, backend="cpp")
    vr, needr = R.cache_query(grid_ref, q.cpu(), 1.1, 0.1, 0.2, 3, 9)
    assert torch.equal(need.cpu(), needr)
    close(v, vr, dtype)


def test_cache_update_keeps_minimum_and_replaces_stale():
    grid = torch.full((2, 2, 2), float("nan"))
    pts = torch.tensor([[0.5, 0.5, 0.5], [0.6, 0.6, 0.6], [-0.5, -0.5, -0.5]])
    ops.cache_update(grid, pts, torch.tensor([0.7, 0.4, 0.9]), 1.0)
    assert grid[1, 1, 1].item() == pytest.approx(0.4) and grid[0, 0, 0].item() == pytest.approx(0.9)
    ops.cache_update(grid, pts[:1], torch.tensor([0.8]), 1.0)  # fresh value replaces the stale one
    assert grid[1, 1, 1].item() == pytest.approx(0.8) and grid[0, 0, 0].item() == pytest.approx(0.9)
    v, need = ops.cache_query(grid, torch.tensor([[0.9, 0.9, 0.9], [-0.5, 0.9, 0.9], [2.0, 0, 0]]), 1.0, 0.1, 0.0)
    assert need.tolist() == [False, True, True]  # empty voxel and outside the cube are not answered
    assert v[0].item() == pytest.approx(0.8 - 3 ** 0.5)  # lower bound: value minus the voxel diagonal


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_bad_input_raises(backend):
    o = torch.zeros(4, 3)
    d = torch.ones(4, 3)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.ray_sphere_intersect(o.int(), d, backend=backend)
    with pytest.raises(TypeError, match="dtype"):
        ops.ray_sphere_intersect(o, d.double(), backend=backend)
    with pytest.raises(ValueError, match="shape"):
        ops.ray_sphere_intersect(o[:, :2].contiguous(), d[:, :2].contiguous(), backend=backend)
    with pytest.raises(ValueError, match="contiguous"):
        ops.ray_sphere_intersect(torch.zeros(3, 4).t(), d, backend=backend)
    with pytest.raises(ValueError, match="outside"):
        ops.ray_points(o, d, torch.tensor([4]), torch.zeros(1, 1), backend=backend)
    with pytest.raises(TypeError, match="int64"):
        ops.ray_points(o, d, torch.tensor([1], dtype=torch.int32), torch.zeros(1, 1), backend=backend)
    with pytest.raises(ValueError, match="non-finite"):
        ops.search_select(torch.zeros(2, 3), torch.tensor([[0.0, float("nan"), 1], [1, 1, 1]]), backend=backend)
    with pytest.raises(ValueError, match="D,D,D"):
        ops.cache_query(torch.zeros(2, 3, 4), o, 1.0, backend=backend)
    with pytest.raises(ValueError, match="backend"):
        ops.ray_sphere_intersect(o, d, backend="gpu")


def test_extension_rejects_bad_input_directly():
    """The C++ glue checks too: a direct call with bad input raises, it never crashes the process."""
    from headrecon._backend import get_ext

    C = get_ext()
    o = torch.zeros(4, 3)
    with pytest.raises(TypeError):
        C.ray_sphere_intersect(o.int(), o, 1.0)
    with pytest.raises(ValueError):
        C.ray_sphere_intersect(torch.zeros(3, 4).t(), o, 1.0)
    with pytest.raises(ValueError):
        C.ray_points(o, o, torch.tensor([9]), torch.zeros(1, 1))
    with pytest.raises(ValueError):
        C.sphere_trace_step(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.int32),
                            torch.zeros(3), torch.zeros(3), torch.tensor([0]), torch.zeros(1), 1e-5, 1.0)
    # each value check that reads an index tensor on the host: out of range, negative, duplicate, packed rows
    with pytest.raises(ValueError, match="outside"):
        C.ray_points(o, o, torch.tensor([0, -1]), torch.zeros(2, 1))
    z4 = torch.zeros(4)
    with pytest.raises(ValueError, match="duplicate index 1"):
        C.sphere_trace_step(z4, z4, z4, torch.zeros(4, dtype=torch.int32), z4, z4, torch.tensor([1, 0, 1]),
                            torch.zeros(3), 1e-5, 1.0)
    with pytest.raises(ValueError, match="outside the 4 samples"):
        C.composite_fwd(torch.tensor([[0, 2], [2, 3]]), z4, z4, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="res values"):
        C.hash_encode_fwd(torch.zeros(2, 3), torch.zeros(2, 8, 2), torch.tensor([4, 2 ** 21]), None, 1.0)


def test_cuda_tensor_on_cpu_build_names_the_fix(monkeypatch):
    from headrecon import _backend

    class FakeCuda:
        device = torch.device("cuda", 0)

    monkeypatch.setattr(_backend, "has_cuda_backend", lambda: False)
    with pytest.raises(RuntimeError, match="pip install --no-build-isolation -e"):
        _backend.check_device(FakeCuda(), "origins")


@requires_cuda
def test_cuda_marker_is_live():
    assert torch.cuda.is_available()


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_kernels_equal_cpu_exactly(dtype):
    """Built with --fmad=false, every CUDA kernel rounds as the CPU loop sharing its per-element code: equal bits
    (NaN == NaN), including near-tangent rays."""
    g = torch.Generator().manual_seed(3)
    n = 5000
    o = torch.randn(n, 3, generator=g, dtype=dtype) * 2
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=1)
    o[0], d[0] = torch.tensor([0.0, 1.0, -3.0]), torch.tensor([0.0, 0.0, 1.0])  # tangent

    def both(fn, *args, **kw):
        cpu = fn(*args, backend="cpp", **kw)
        gpu = fn(*[a.cuda() if isinstance(a, torch.Tensor) else a for a in args], backend="cpp", **kw)
        cpu, gpu = (cpu, gpu) if isinstance(cpu, (tuple, list)) else ((cpu,), (gpu,))
        for a, b in zip(cpu, gpu):
            torch.testing.assert_close(a, b.cpu(), rtol=0, atol=0, equal_nan=True)
        return cpu

    near, far, _ = both(ops.ray_sphere_intersect, o, d, 1.0)
    idx = torch.arange(0, n, 3)
    lo, hi = near[idx].nan_to_num(0.0), far[idx].nan_to_num(1.0)
    t, _ = both(ops.search_samples, o, d, idx, lo, hi, 33, False)
    s = torch.sin(5 * t) - 0.2
    both(ops.search_select, t, s)
    both(ops.ray_points, o, d, idx, t[:, :4].contiguous())
    pts = (torch.rand(n, 3, generator=g, dtype=dtype) * 2.2 - 1.1)
    grid = torch.full((16, 16, 16), float("nan"), dtype=dtype)
    grid_gpu = grid.cuda()
    vals = torch.rand(n, generator=g, dtype=dtype)
    ops.cache_update(grid, pts, vals, 1.0, backend="cpp")
    ops.cache_update(grid_gpu, pts.cuda(), vals.cuda(), 1.0, backend="cpp")
    assert torch.equal(grid.nan_to_num(9.0), grid_gpu.cpu().nan_to_num(9.0))
    both(ops.cache_query, grid, pts, 1.0, 0.1, 0.2, 7, 3)
