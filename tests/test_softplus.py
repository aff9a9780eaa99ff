"""The softplus op (csrc/softplus, headrecon.ops.softplus) and the module the networks use: bit for bit its
pure-PyTorch reference on every shape and awkward value, within 3 float32 epsilons of the exact softplus
(torch's own is within 1.4), torch's rule at the threshold, torch's first and second derivatives exactly,
torch itself for float64, the same result on one thread and two, and clear errors."""
import copy

import pytest
import torch
import torch.nn.functional as F

from headrecon import ops
from headrecon.ops import reference
from headrecon.ops.activation import Softplus

pytestmark = pytest.mark.skipif(not __import__("headrecon")._backend.has_ext(), reason="headrecon._C is not built")


def _awkward(beta: float) -> torch.Tensor:
    """Zeros, infinities, NaN, the threshold (20 / beta) and the exp cut (-87 / beta) with their neighbours,
    denormals, huge values, and a spread of ordinary ones."""
    edges = torch.tensor([20.0 / beta, -87.0 / beta, 5.0 / beta, 0.0], dtype=torch.float32)
    near = torch.cat([torch.nextafter(edges, torch.full_like(edges, s)) for s in (-1e30, 1e30)] + [edges])
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-40, -1e-40, 3e38, -3e38,
                            1e-7, -1e-7], dtype=torch.float32)
    g = torch.Generator().manual_seed(int(beta * 10))
    spread = torch.cat([torch.randn(4000, generator=g) * s for s in (1e-3, 1e-2, 0.1, 1.0, 30.0)]) / beta * 100
    return torch.cat([near, special, spread.float()])


@pytest.mark.parametrize("beta,threshold", [(100.0, 20.0), (1.0, 20.0), (0.5, 5.0), (37.5, 20.0)])
def test_kernel_matches_its_reference_bit_for_bit(beta, threshold):
    x = _awkward(beta)
    got = ops.softplus(x, beta, threshold)
    want = reference.softplus(x, beta, threshold)
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(torch.isnan(got), torch.isnan(x))
    big = x * beta > threshold  # torch's rule: the input itself above the threshold
    assert torch.equal(got[big], x[big])
    assert torch.equal(got[big], F.softplus(x, beta, threshold)[big])
    assert (got[~torch.isnan(x)] >= 0).all()


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5, 7), (33, 129), (70000,)])
def test_shapes_layouts_and_threads(shape):
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=g) * 0.05
    got = ops.softplus(x, 100.0)
    assert got.shape == x.shape
    torch.testing.assert_close(got, reference.softplus(x, 100.0, 20.0), rtol=0, atol=0)
    if x.dim() >= 2:  # a transposed (non-contiguous) input: the same values per element
        xt = x.transpose(0, -1)
        torch.testing.assert_close(ops.softplus(xt, 100.0), got.transpose(0, -1), rtol=0, atol=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.softplus(x, 100.0)
        torch.set_num_threads(2)
        two = ops.softplus(x, 100.0)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_accuracy_against_the_exact_softplus():
    """Relative error against float64 on the float32 product beta * x (what both kernels compute first)."""
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.randn(1 << 18, generator=g) * s for s in (1e-3, 0.05, 1.0)])
    z = (x * torch.tensor(100.0)).double()
    exact = torch.where(z > 20, x.double(), torch.log1p(torch.exp(z)) / 100.0)
    ok = exact > 1e-30
    eps = torch.finfo(torch.float32).eps

    def err(y):
        return float(((y.double() - exact).abs() / exact.abs())[ok].max() / eps)

    ours, theirs = err(ops.softplus(x, 100.0)), err(F.softplus(x, 100.0))
    assert ours < 3.0 and theirs < 1.5, (ours, theirs)


def test_derivatives_are_torchs():
    """First and second derivatives through the module equal nn.Softplus's exactly on the same input (the
    backward is torch's softplus_backward of the input), and training a small network for a few steps with an
    Eikonal term stays within float32 noise of torch's."""
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(300, 16, generator=g) * 0.05
    v = torch.randn(300, 16, generator=g)
    grads = []
    for act in (torch.nn.Softplus(beta=100), Softplus(beta=100)):
        x = x0.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad((act(x) * v).sum(), x, create_graph=True)
        (ggx,) = torch.autograd.grad((gx ** 2).sum(), x)
        grads.append((gx.detach(), ggx))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])

    from headrecon.models.geometry import GeometryNetwork

    torch.manual_seed(0)
    net = GeometryNetwork(d_hidden=64, n_layers=4, d_feature=8, skip_in=(2,))
    assert isinstance(net.activation, Softplus) and isinstance(net.activation, torch.nn.Softplus)
    ref = copy.deepcopy(net)
    ref.activation = torch.nn.Softplus(beta=100)
    pts = torch.rand(512, 3, generator=g) - 0.5
    losses = []
    for model in (net, ref):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(5):
            p = pts.clone().requires_grad_(True)
            sdf = model.sdf(p).reshape(-1)
            (n,) = torch.autograd.grad(sdf.sum(), p, create_graph=True)
            loss = sdf.abs().mean() + ((n.norm(dim=-1) - 1) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(float(loss.detach()))
    assert abs(losses[0] - losses[1]) < 1e-5 * max(1.0, abs(losses[1])), losses
    assert set(net.state_dict()) == set(ref.state_dict())  # checkpoints load either way


def test_other_dtypes_are_torchs_and_bad_input_is_refused():
    x = torch.randn(50, dtype=torch.float64) * 0.05
    assert torch.equal(ops.softplus(x, 100.0), F.softplus(x, 100.0))
    with pytest.raises(ValueError, match="beta"):
        ops.softplus(torch.zeros(3), 0.0)
    with pytest.raises(TypeError, match="tensor"):
        ops.softplus([1.0, 2.0], 100.0)
    from headrecon import _backend

    ext = _backend.get_ext()
    with pytest.raises(TypeError, match="float32"):
        ext.softplus_forward(x, 100.0, 20.0)
    with pytest.raises(ValueError, match="contiguous"):
        ext.softplus_forward(torch.zeros(4, 6).t(), 100.0, 20.0)


@pytest.mark.skipif(not torch.cuda.is_available() or not __import__("headrecon").build_info().get("cuda"),
                    reason="needs a CUDA device and headrecon built with CUDA")
def test_cuda_kernel_gives_the_cpus_values():
    """backend="cpp" on CUDA runs the engine's kernel (the CPU's values, bit for bit); "auto" runs torch's."""
    x = _awkward(100.0)
    got = ops.softplus(x.cuda(), 100.0, backend="cpp").cpu()
    torch.testing.assert_close(got, ops.softplus(x, 100.0), rtol=0, atol=0, equal_nan=True)
    xc = x.cuda()
    assert torch.equal(ops.softplus(xc, 100.0).nan_to_num(), F.softplus(xc, 100.0).nan_to_num())
