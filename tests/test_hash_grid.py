"""The multiresolution hash encoding op (csrc/hash_grid, headrecon.ops.hash_encode) against its pure-PyTorch
reference: values and gradients over many shapes (dense and hashed levels, empty batches, points outside the cube,
NaN), float64 gradcheck and gradgradcheck (the Eikonal path), determinism of the CPU table gradient, argument
errors. CUDA variants run where a GPU exists."""
import pytest
import torch
from conftest import HAS_CUDA

from headrecon import ops
from headrecon.ops import reference as R

DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
SHAPES = [  # (N, L, S, F)
    (0, 2, 64, 2), (1, 1, 8, 1), (7, 3, 64, 2), (300, 4, 256, 3), (1000, 8, 1024, 2), (513, 16, 4096, 2),
]


def _case(n, L, S, F, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed + n + L)
    pts = (2.4 * torch.rand(n, 3, generator=g, dtype=torch.float64) - 1.2)  # about 40 % outside the cube
    if n >= 4:
        pts[0] = torch.tensor([1.0, -1.0, 1.0])      # cube corner: last cell, frac = 1
        pts[1] = torch.tensor([0.0, 0.0, 0.0])
        pts[2, 1] = float("nan")
        pts[3] = torch.tensor([1.0 + 1e-6, 0.0, 0.0])  # just outside
    table = torch.randn(L, S, F, generator=g, dtype=torch.float64)
    res = ops.hash_resolutions(L, 2, 64) if L > 1 else [5]
    return pts.to(dtype).to(device), table.to(dtype).to(device), res


def _tol(dtype, scale=1.0):
    t = 2e-5 if dtype == torch.float32 else 1e-11
    return dict(rtol=t, atol=t * scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"n{s[0]}-L{s[1]}-S{s[2]}-F{s[3]}" for s in SHAPES])
def test_values_and_gradients_match_reference(shape, dtype, device):
    n, L, S, F = shape
    pts, table, res = _case(n, L, S, F, dtype, device)
    p1, t1 = pts.clone().requires_grad_(), table.clone().requires_grad_()
    out = ops.hash_encode(p1, t1, res, 1.0, backend="cpp")
    assert out.shape == (n, L * F)
    p2, t2 = pts.cpu().double().requires_grad_(), table.cpu().double().requires_grad_()
    ref = R.hash_encode(p2, t2, torch.tensor(res), 1.0)
    torch.testing.assert_close(out.detach().cpu().double(), ref.detach(), **_tol(dtype))
    if n:
        outside = ~(((pts.cpu() >= -1) & (pts.cpu() <= 1)).all(1))
        assert outside.any() and (out.detach().cpu()[outside] == 0).all()
    g = torch.randn(n, L * F, dtype=torch.float64)
    (out * g.to(dtype).to(device)).sum().backward()
    (ref * g).sum().backward()
    gp_scale = max(res) * 4.0
    torch.testing.assert_close(p1.grad.cpu().double().nan_to_num(0), p2.grad.nan_to_num(0), **_tol(dtype, gp_scale))
    torch.testing.assert_close(t1.grad.cpu().double(), t2.grad, **_tol(dtype, 10.0))
    if n >= 4:
        assert (p1.grad.cpu()[3] == 0).all()  # outside: no gradient


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_gradcheck_float64(backend):
    pts, table, res = _case(24, 3, 64, 2, torch.float64, "cpu", seed=3)
    # finite differences must not cross a cell face (the encoding is only C0 there): no point on a face
    pts = pts.clamp(-0.99, 0.99) + 1e-3
    p, t = pts.clone().requires_grad_(), table.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: ops.hash_encode(x, y, res, 1.0, backend=backend), (p, t))
    # second order in the table and in the incoming gradient (gradgradcheck checks both)
    assert torch.autograd.gradgradcheck(lambda y: ops.hash_encode(pts, y, res, 1.0, backend=backend), (t,))


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_eikonal_path_matches_autograd_of_reference(backend):
    """A loss on the points gradient (the Eikonal term): its table gradient equals double backward through
    the fully differentiable reference."""
    pts, table, res = _case(200, 4, 256, 2, torch.float64, "cpu", seed=5)
    w = torch.randn(4 * 2, dtype=torch.float64)

    def eik(fn, t):
        x = pts.clone().requires_grad_()
        y = (fn(x, t) @ w).sum()
        (gx,) = torch.autograd.grad(y, x, create_graph=True)
        return ((gx.norm(dim=1) - 1) ** 2).mean()

    t1, t2 = table.clone().requires_grad_(), table.clone().requires_grad_()
    eik(lambda x, t: ops.hash_encode(x, t, res, 1.0, backend=backend), t1).backward()
    eik(lambda x, t: R.hash_encode(x, t, torch.tensor(res), 1.0), t2).backward()
    torch.testing.assert_close(t1.grad, t2.grad, rtol=1e-10, atol=1e-10)
    assert t1.grad.abs().sum() > 0


def test_third_derivative_raises():
    pts, table, res = _case(10, 2, 64, 1, torch.float64, "cpu")
    t = table.clone().requires_grad_()
    x = pts.clamp(-0.9, 0.9).requires_grad_()
    (gx,) = torch.autograd.grad(ops.hash_encode(x, t, res).sum(), x, create_graph=True)
    (gt,) = torch.autograd.grad(gx.sum(), t, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(gt.sum(), t)


def test_table_gradient_is_deterministic_across_thread_counts():
    pts, table, res = _case(5000, 6, 512, 2, torch.float32, "cpu", seed=9)
    g = torch.randn(5000, 12)
    outs = []
    for threads in (1, 2):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            t = table.clone().requires_grad_()
            (ops.hash_encode(pts, t, res) * g).sum().backward()
            outs.append(t.grad)
        finally:
            torch.set_num_threads(old)
    assert torch.equal(outs[0], outs[1])


def test_dense_levels_use_distinct_rows_and_hashed_levels_wrap():
    """A level whose (R+1)^3 vertices fit the table indexes densely: the 8 corners of a cell are 8 distinct
    rows; a finer level hashes into the same S rows."""
    pts = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64)
    rows, _, inside = R._hash_level(pts, 3, 64, 1.0)
    assert inside.all() and len(set(rows[0].tolist())) == 8 and rows.max() < 64
    rows, _, _ = R._hash_level(pts, 100, 64, 1.0)
    assert rows.max() < 64 and rows.min() >= 0


def test_radius_scales_the_domain():
    pts, table, res = _case(100, 3, 64, 2, torch.float64, "cpu", seed=1)
    a = ops.hash_encode(pts * 2.5, table, res, 2.5)
    b = ops.hash_encode(pts, table, res, 1.0)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_resolutions_are_geometric():
    r = ops.hash_resolutions(16, 16, 2048)
    assert r[0] == 16 and r[-1] == 2048 and all(b > a for a, b in zip(r, r[1:]))
    ratios = [b / a for a, b in zip(r, r[1:])]
    assert max(ratios) / min(ratios) < 1.1
    assert ops.hash_resolutions(1, 7, 7) == [7]
    with pytest.raises(ValueError):
        ops.hash_resolutions(0)


@pytest.mark.parametrize("bad,match", [
    (lambda p, t: (p[:, :2].contiguous(), t, [2, 4]), "points"),
    (lambda p, t: (p, t[:, :60].contiguous(), [2, 4]), "power of two"),
    (lambda p, t: (p, t.float(), [2, 4]), "dtype"),
    (lambda p, t: (p, t, [2]), "levels"),
    (lambda p, t: (p, t, [0, 4]), "resolutions"),
])
def test_bad_arguments(bad, match):
    p = torch.zeros(5, 3, dtype=torch.float64)
    t = torch.zeros(2, 64, 2, dtype=torch.float64)
    with pytest.raises((ValueError, TypeError), match=match):
        ops.hash_encode(*bad(p, t))
    with pytest.raises(ValueError, match="radius"):
        ops.hash_encode(p, t, [2, 4], radius=0.0)


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_no_grad_path_equals_the_differentiable_one(backend):
    """Without a gradient to record the op calls its kernel directly (no autograd node): the same values, bit
    for bit, as the recorded path, and no graph."""
    pts, table, res = _case(300, 4, 256, 3, torch.float32, "cpu")
    res_t = torch.tensor(res, dtype=torch.int64)
    with torch.no_grad():
        a = ops.hash_encode(pts, table, res_t, backend=backend)
    b = ops.hash_encode(pts, table.requires_grad_(), res_t, backend=backend)
    c = ops.hash_encode(pts, table.detach(), res_t, backend=backend)  # nothing requires grad
    assert a.grad_fn is None and c.grad_fn is None and b.grad_fn is not None
    assert torch.equal(a, b.detach()) and torch.equal(a, c)


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_resolution_tensor_out_of_range_raises(backend):
    """A resolutions tensor (the path a module's buffer takes) is range-checked by either backend."""
    pts, table, _ = _case(5, 2, 64, 2, torch.float64, "cpu")
    for bad in ([0, 4], [2, (1 << 20) + 1]):
        with pytest.raises(ValueError, match="must be in"):
            ops.hash_encode(pts, table, torch.tensor(bad, dtype=torch.int64), backend=backend)
