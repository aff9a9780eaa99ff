"""The volume-rendering compositing op (csrc/composite, headrecon.ops.composite) against its references (the
vectorised one and a per-ray Python loop): values and gradients over many shapes, empty rays, one-sample rays,
samples of no ray, float64 gradcheck, and argument errors. CUDA variants run where a GPU exists."""
import pytest
import torch
from conftest import HAS_CUDA

from headrecon import ops
from headrecon.ops import reference as R

DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])


def _case(counts, C, dtype, device="cpu", gap=1, seed=0, dense=5.0):
    """Rays with the given sample counts, ``gap`` unused samples between rays (samples of no ray)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.as_tensor(counts, dtype=torch.int64)
    starts = torch.cumsum(counts + gap, 0) - counts
    S = int(starts[-1] + counts[-1] + gap) if len(counts) else gap
    packed = torch.stack([starts, counts], 1) if len(counts) else torch.zeros(0, 2, dtype=torch.int64)
    sig = (torch.rand(S, generator=g, dtype=torch.float64) * dense).to(dtype)
    dl = (torch.rand(S, generator=g, dtype=torch.float64) * 0.4).to(dtype)
    val = torch.randn(S, C, generator=g, dtype=torch.float64).to(dtype)
    return packed.to(device), sig.to(device), dl.to(device), val.to(device)


CASES = {
    "no rays": ([], 3),
    "one empty ray": ([0], 3),
    "one one-sample ray": ([1], 3),
    "mixed": ([0, 1, 5, 3, 0, 7, 1], 4),
    "many": ([int(x) for x in torch.randint(0, 40, (300,), generator=torch.Generator().manual_seed(1))], 7),
    "one channel": ([4, 9, 2], 1),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_references(name, dtype, device):
    counts, C = CASES[name]
    packed, sig, dl, val = _case(counts, C, dtype, device)
    out = ops.composite(packed, sig, dl, val, backend="cpp")
    ref = R.composite(packed.cpu(), sig.cpu().double(), dl.cpu().double(), val.cpu().double())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.cpu().double(), b, **tol)
    if len(counts) <= 10:  # the per-ray loop: the kernel's order of operations, exactly in float64
        loop = R.composite_loop(packed.cpu(), sig.cpu(), dl.cpu(), val.cpu())
        for a, b in zip(out, loop):
            torch.testing.assert_close(a.cpu(), b, **tol)
    assert (out[1] <= 1 + 1e-6).all() and (out[1] >= 0).all()
    # gradients against autograd through the reference
    s1, v1 = sig.clone().requires_grad_(), val.clone().requires_grad_()
    o, op, _ = ops.composite(packed, s1, dl, v1, backend="cpp")
    go = torch.randn(o.shape, dtype=torch.float64)
    gop = torch.randn(op.shape, dtype=torch.float64)
    ((o * go.to(o)).sum() + (op * gop.to(op)).sum()).backward()
    s2, v2 = sig.cpu().double().requires_grad_(), val.cpu().double().requires_grad_()
    o2, op2, _ = R.composite(packed.cpu(), s2, dl.cpu().double(), v2)
    ((o2 * go).sum() + (op2 * gop).sum()).backward()
    if s2.grad is None:  # no samples in any ray
        assert (s1.grad == 0).all() and (v1.grad == 0).all()
        return
    torch.testing.assert_close(s1.grad.cpu().double(), s2.grad, **tol)
    torch.testing.assert_close(v1.grad.cpu().double(), v2.grad, **tol)


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_gradcheck_float64(backend):
    packed, sig, dl, val = _case([0, 1, 4, 6], 3, torch.float64, seed=4)
    s, v = sig.clone().requires_grad_(), val.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ops.composite(packed, a, dl, b, backend=backend)[:2], (s, v))


def test_samples_of_no_ray_get_zero_weight_and_gradient():
    packed, sig, dl, val = _case([3, 2], 2, torch.float64, gap=2)
    s = sig.clone().requires_grad_()
    out, opacity, w = ops.composite(packed, s, dl, val)
    used = torch.zeros(len(sig), dtype=torch.bool)
    for a, n in packed.tolist():
        used[a:a + n] = True
    (out.sum() + opacity.sum()).backward()
    assert (w[~used] == 0).all() and (s.grad[~used] == 0).all() and (w[used] > 0).all()


def test_opaque_first_sample_takes_all_weight():
    packed = torch.tensor([[0, 3]])
    sig = torch.tensor([1e4, 1.0, 1.0], dtype=torch.float64)
    dl = torch.full((3,), 0.1, dtype=torch.float64)
    val = torch.tensor([[1.0], [5.0], [7.0]], dtype=torch.float64)
    out, opacity, w = ops.composite(packed, sig, dl, val)
    assert float(opacity[0]) == pytest.approx(1.0) and float(out[0, 0]) == pytest.approx(1.0)
    assert float(w[1]) < 1e-12


def test_bad_arguments():
    packed, sig, dl, val = _case([2, 3], 2, torch.float64, gap=0)
    with pytest.raises(ValueError, match="outside"):
        ops.composite(torch.tensor([[0, 2], [2, 9]]), sig, dl, val)
    with pytest.raises(ValueError, match="share samples"):
        ops.composite(torch.tensor([[0, 3], [2, 3]]), sig, dl, val)
    with pytest.raises(ValueError, match="packed"):
        ops.composite(packed.int(), sig, dl, val)
    with pytest.raises(TypeError):
        ops.composite(packed, sig, dl.float(), val)
