"""Tests of headrecon.models (positional encoding, geometry and rendering networks) and headrecon.recon.losses."""
import math

import pytest
import torch
from torch.nn import functional as F

from headrecon.models import (
    FeatureNetwork,
    GeometryNetwork,
    PositionalEncoding,
    RenderingNetwork,
)
from headrecon.recon.losses import (
    IDRLoss,
    alpha_schedule,
    eikonal_loss,
    mask_loss,
    rgb_loss,
)


def shell_points(n, r_lo, r_hi, seed=123, dtype=torch.float32):
    """Points with directions uniform on the sphere and radii uniform in [r_lo, r_hi]."""
    g = torch.Generator().manual_seed(seed)
    d = F.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    r = r_lo + (r_hi - r_lo) * torch.rand(n, 1, generator=g, dtype=torch.float64)
    return (d * r).to(dtype)


@pytest.fixture(scope="module")
def paper_net():
    torch.manual_seed(0)
    return GeometryNetwork.paper()


# ---------------------------------------------------------------------------------------------------- encoding
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_positional_encoding_matches_naive_loop(dtype):
    enc = PositionalEncoding(n_freqs=6)
    x = torch.randn(50, 3, dtype=dtype) * 2
    out = enc(x)
    expected = [x]
    for k in range(6):
        expected += [torch.sin(x * 2.0**k), torch.cos(x * 2.0**k)]
    expected = torch.cat(expected, dim=-1)
    assert enc.out_dim == 3 + 3 * 2 * 6 == out.shape[-1]
    assert out.dtype == dtype
    tol = 2e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, expected, atol=tol, rtol=0)


def test_positional_encoding_options_and_shapes():
    x = torch.randn(2, 5, 3)
    assert PositionalEncoding(4)(x).shape == (2, 5, 27)
    no_in = PositionalEncoding(2, include_input=False)
    assert no_in.out_dim == 12
    torch.testing.assert_close(no_in(x)[..., :3], torch.sin(x))
    ident = PositionalEncoding(0)
    assert ident.out_dim == 3 and torch.equal(ident(x), x)
    with pytest.raises(ValueError):
        PositionalEncoding(0, include_input=False)
    with pytest.raises(ValueError):
        PositionalEncoding(4)(torch.randn(5, 2))


def test_positional_encoding_coarse_to_fine_weights():
    enc = PositionalEncoding(n_freqs=6)
    x = torch.randn(20, 3)
    plain = enc(x)
    assert torch.equal(enc.freq_weights, torch.ones(6))
    enc.set_progress(0.0)  # only the raw input passes
    out = enc(x)
    assert torch.equal(out[:, :3], x) and torch.count_nonzero(out[:, 3:]) == 0
    enc.set_progress(2.5 / 6)  # alpha = 2.5: bands 0, 1 on, band 2 half (cosine ramp), 3.. off
    torch.testing.assert_close(enc.freq_weights, torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    out = enc(x)
    torch.testing.assert_close(out[:, 3 + 12: 3 + 18], 0.5 * plain[:, 3 + 12: 3 + 18])
    assert torch.count_nonzero(out[:, 3 + 18:]) == 0
    enc.set_progress(1.0)
    torch.testing.assert_close(enc(x), plain)
    enc.set_freq_weights([0, 1, 0, 0, 0, 0])
    assert torch.count_nonzero(enc(x)[:, 3:9]) == 0
    with pytest.raises(ValueError):
        enc.set_freq_weights([1, 1])


# ---------------------------------------------------------------------------------------------------- geometry
def test_geometric_init_is_a_sphere(paper_net):
    """Tolerances from 10 seeds of the 8x512 preset (worst case in brackets): the SDF error in the shell
    0.3 <= |x| <= 1 has mean < 0.10 (0.07) and max < 0.35 (0.25); |sdf| on the sphere |x| = 0.6 has mean < 0.06
    (0.042) and max < 0.18 (0.12); near the surface the gradient is radial (cos > 0.85, worst 0.93) and its norm
    has mean | |g| - 1 | < 0.45 (0.36): Softplus(100) makes IDR's init flatter than a true SDF."""
    net = paper_net
    r = net.sphere_radius
    assert r == 0.6
    x = shell_points(3000, 0.3, 1.0)
    with torch.no_grad():
        err = (net.sdf(x) - (x.norm(dim=-1) - r)).abs()
        on_sphere = net.sdf(shell_points(2000, r, r, seed=7)).abs()
        centre, far = net.sdf(torch.zeros(1, 3)), net.sdf(shell_points(200, 1.0, 1.0))
    assert err.mean() < 0.10 and err.max() < 0.35
    assert on_sphere.mean() < 0.06 and on_sphere.max() < 0.18
    assert centre.item() < -0.15 and bool((far > 0.2).all())
    xs = shell_points(2000, 0.45, 0.75, seed=5)
    g = net.gradient(xs)
    assert F.cosine_similarity(g, xs, dim=-1).min() > 0.85
    assert (g.norm(dim=-1) - 1).abs().mean() < 0.45


def test_sphere_checks_fail_without_geometric_init():
    torch.manual_seed(0)
    net = GeometryNetwork.small(geometric_init=False)
    xs = shell_points(500, 0.45, 0.75)
    g = net.gradient(xs)
    assert (g.norm(dim=-1) - 1).abs().mean() > 0.45  # the init test above would catch a broken init


def test_small_preset_init_sphere():
    torch.manual_seed(0)
    net = GeometryNetwork.small()
    x = shell_points(2000, 0.3, 1.0)
    with torch.no_grad():
        err = (net.sdf(x) - (x.norm(dim=-1) - 0.6)).abs()
        on_sphere = net.sdf(shell_points(1000, 0.6, 0.6)).abs()
    assert err.mean() < 0.2 and on_sphere.mean() < 0.15  # worst over 10 seeds: 0.12, 0.11
    g = net.gradient(shell_points(1000, 0.45, 0.75))
    assert (g.norm(dim=-1) - 1).abs().mean() < 0.35  # worst over 10 seeds: 0.20


def test_uncalibrated_init_is_idr_exact():
    torch.manual_seed(0)
    net = GeometryNetwork.small(calibrate_init=False)
    assert net.layers[-1].bias[0].item() == pytest.approx(-0.6)
    torch.manual_seed(0)
    cal = GeometryNetwork.small()
    x = shell_points(1000, 0.6, 0.6)
    with torch.no_grad():
        s_raw, s_cal = net.sdf(x), cal.sdf(x)
    shift = (cal.layers[-1].bias[0] - net.layers[-1].bias[0]).item()
    assert shift != 0.0
    torch.testing.assert_close(s_cal - s_raw, torch.full_like(s_raw, shift), atol=1e-5, rtol=0)  # only the bias
    assert abs(s_cal.mean().item()) < 0.01 < abs(s_raw.mean().item())


def test_geometric_init_zeroes_encoding_and_latent_weights():
    torch.manual_seed(0)
    net = GeometryNetwork(d_hidden=64, n_layers=4, skip_in=(2,), n_freqs=4, d_feature=8, d_latent=5)
    d0 = 3 + 3 * 2 * 4 + 5
    assert net.d_input == d0
    w0 = net.layers[0].weight
    assert w0.shape == (64, d0)
    assert torch.count_nonzero(w0[:, 3:]) == 0 and torch.count_nonzero(w0[:, :3]) > 0
    assert net.layers[1].weight.shape[0] == 64 - d0  # the layer before the skip makes room for the input
    w2 = net.layers[2].weight
    assert w2.shape == (64, 64)
    assert torch.count_nonzero(w2[:, -(d0 - 3):]) == 0 and torch.count_nonzero(w2[:, :-(d0 - 3)]) > 0
    # hence at init the output ignores the encoding weights and the latent
    x = torch.randn(30, 3)
    with torch.no_grad():
        a = net.sdf(x, torch.zeros(5))
        b = net.sdf(x, torch.randn(5))
        net.set_progress(0.3)
        c = net.sdf(x, torch.zeros(5))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_geometry_shapes_skip_and_latent():
    torch.manual_seed(0)
    net = GeometryNetwork(d_hidden=64, n_layers=4, skip_in=(2,), d_feature=16, d_latent=8)
    with torch.no_grad():
        for p in net.parameters():  # leave the init so that encoding and latent matter
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(40, 3)
    z = torch.randn(8)
    sdf, feat = net(x, z)
    assert sdf.shape == (40,) and feat.shape == (40, 16)
    sdf_b, _ = net(x, z.expand(40, 8))
    torch.testing.assert_close(sdf, sdf_b)
    sdf_z2, _ = net(x, torch.randn(8))
    assert (sdf - sdf_z2).abs().max() > 1e-4  # the latent reaches the output
    torch.testing.assert_close(net.sdf(x, z), sdf, atol=1e-6, rtol=1e-5)
    s3, f3 = net(x.reshape(2, 20, 3), z)
    assert s3.shape == (2, 20) and f3.shape == (2, 20, 16)
    torch.testing.assert_close(s3.reshape(-1), sdf, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        net(x)  # latent required
    with pytest.raises(ValueError):
        GeometryNetwork.small()(x, z)  # no latent expected
    with pytest.raises(ValueError):
        GeometryNetwork(d_hidden=32, n_freqs=6, d_latent=0)  # skip cannot fit 39 input channels into 32


def test_skip_connection_is_used():
    """Zeroing the re-injected part of the skip layer changes the output once the init is perturbed."""
    torch.manual_seed(0)
    net = GeometryNetwork(d_hidden=64, n_layers=4, skip_in=(2,), d_feature=4, weight_norm=False)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(20, 3)
    with torch.no_grad():
        before = net.sdf(x)
        net.layers[2].weight[:, -net.d_input:] = 0.0
        after = net.sdf(x)
    assert (before - after).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_matches_finite_differences(dtype):
    torch.manual_seed(0)
    net = GeometryNetwork.small().to(dtype)
    x = shell_points(16, 0.2, 0.9, dtype=dtype)
    g = net.gradient(x)
    assert g.dtype == dtype and g.shape == (16, 3)
    eps = 1e-3 if dtype == torch.float32 else 1e-6
    fd = torch.stack(
        [(net.sdf(x + eps * e) - net.sdf(x - eps * e)) / (2 * eps) for e in torch.eye(3, dtype=dtype)], dim=-1
    ).detach()
    tol = 2e-2 if dtype == torch.float32 else 1e-6
    torch.testing.assert_close(g, fd, atol=tol, rtol=tol)
    s, f, g2 = net.forward_with_gradient(x)
    torch.testing.assert_close(g2, g)
    torch.testing.assert_close(s, net.sdf(x).detach())


def test_gradient_graph_in_training_and_detached_in_eval():
    torch.manual_seed(0)
    net = GeometryNetwork.small()
    x = torch.randn(64, 3) * 0.5
    net.train()
    g = net.gradient(x)
    assert g.requires_grad
    eikonal_loss(g).backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and sum(float(gr.abs().sum()) for gr in grads) > 0
    net.eval()
    with torch.no_grad():  # works under no_grad (sphere tracing / normals for rendering)
        g_eval = net.gradient(x)
    assert not g_eval.requires_grad
    torch.testing.assert_close(g_eval, g.detach())


def test_gradient_keeps_graph_through_differentiable_points():
    """IDR's differentiable surface points: the normal at x(t) must back-propagate to t."""
    torch.manual_seed(0)
    net = GeometryNetwork.small().train()
    t = torch.tensor([0.3, 0.5], requires_grad=True)
    d = F.normalize(torch.tensor([[1.0, 0.2, 0.1], [0.0, 1.0, 0.3]]), dim=-1)
    x = t[:, None] * d
    g = net.gradient(x)
    g.sum().backward()
    assert t.grad is not None and bool(torch.isfinite(t.grad).all()) and t.grad.abs().sum() > 0


def test_float64_and_device_follow_parameters():
    torch.manual_seed(0)
    net = GeometryNetwork.small().double()
    s, f = net(torch.randn(5, 3, dtype=torch.float64))
    assert s.dtype == torch.float64 and f.dtype == torch.float64
    assert net.encoding.freq_bands.dtype == torch.float64


# ---------------------------------------------------------------------------------------------------- rendering
def test_rendering_network_modes_and_range():
    torch.manual_seed(0)
    x, n, v = torch.randn(10, 3), torch.randn(10, 3), F.normalize(torch.randn(10, 3), dim=-1)
    z = torch.randn(10, 64)
    for mode, d_in in [("idr", 3 + 27 + 3 + 64), ("no_view_dir", 3 + 3 + 64), ("no_normal", 3 + 27 + 64)]:
        net = RenderingNetwork.small(mode=mode)
        assert net.d_input == d_in
        rgb = net(x, n if mode != "no_normal" else None, v if mode != "no_view_dir" else None, z * 50)
        assert rgb.shape == (10, 3)
        assert bool(((rgb >= 0) & (rgb <= 1)).all())
    with pytest.raises(ValueError):
        RenderingNetwork.small()(x, None, v, z)
    with pytest.raises(ValueError):
        RenderingNetwork.small()(x, n, v, z[:, :10])
    with pytest.raises(ValueError):
        RenderingNetwork(mode="phong")


def test_rendering_tanh01_is_sigmoid_of_doubled_logits():
    torch.manual_seed(0)
    a = RenderingNetwork(d_feature=8, d_hidden=32, n_layers=2, weight_norm=False, output_activation="tanh01")
    b = RenderingNetwork(d_feature=8, d_hidden=32, n_layers=2, weight_norm=False, output_activation="sigmoid")
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.layers[-1].weight.mul_(2)
        b.layers[-1].bias.mul_(2)
    args = (torch.randn(7, 3), torch.randn(7, 3), torch.randn(7, 3), torch.randn(7, 8))
    torch.testing.assert_close(a(*args), b(*args), atol=1e-6, rtol=1e-5)


def test_rendering_gradients_reach_normals_features_and_feature_network():
    torch.manual_seed(0)
    geo, feat_net, head = GeometryNetwork.small(d_feature=0), FeatureNetwork(d_feature=16, d_hidden=32, n_layers=2), \
        RenderingNetwork(d_feature=16, d_hidden=32, n_layers=2)
    x = torch.randn(12, 3) * 0.5
    sdf, feature, normals = geo.train().forward_with_gradient(x)
    assert feature.shape == (12, 0)
    z = feat_net(x)
    assert z.shape == (12, 16)
    rgb = head(x, normals, -x, z)
    rgb.mean().backward()
    assert feat_net.layers[0].parametrizations.weight.original1.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in geo.parameters())  # through the normals


# ---------------------------------------------------------------------------------------------------- losses
def _bce_logits(z, y):
    return -(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z))))


def test_rgb_loss_hand_computed_and_gradient():
    pred = torch.tensor([[0.1, 0.2, 0.3], [float("nan")] * 3, [0.9, 0.5, 0.0], [0.4, 0.4, 0.4]], requires_grad=True)
    gt = torch.tensor([[0.0, 0.4, 0.3], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([True, False, True, False])
    loss = rgb_loss(pred, gt, mask)
    expected = ((0.1 + 0.2 + 0.0) + (0.1 + 0.5 + 1.0)) / 4  # sum over hit rays and channels / all rays
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    exp_grad = torch.tensor([[1, -1, 0], [0, 0, 0], [-1, -1, -1], [0, 0, 0]], dtype=torch.float32) / 4
    torch.testing.assert_close(pred.grad, exp_grad)  # also: no NaN leaks from the unused ray
    assert rgb_loss(pred, gt, mask, n_rays=2).item() == pytest.approx(2 * expected, rel=1e-6)


def test_losses_empty_selection_return_zero_without_nan():
    pred = torch.rand(5, 3, requires_grad=True)
    empty = torch.zeros(5, dtype=torch.bool)
    l_rgb = rgb_loss(pred, torch.rand(5, 3), empty)
    assert l_rgb.item() == 0.0 and l_rgb.dtype == pred.dtype
    sdf = torch.randn(5, requires_grad=True)
    full = torch.ones(5, dtype=torch.bool)
    l_mask = mask_loss(sdf, full, full, alpha=50.0)  # every ray hit inside the mask: nothing to supervise
    assert l_mask.item() == 0.0
    l_eik = eikonal_loss(torch.zeros(0, 3))
    assert l_eik.item() == 0.0
    total = IDRLoss()(pred, torch.rand(5, 3), empty, empty, sdf, torch.zeros(0, 3))
    assert all(torch.isfinite(v) for v in total.values())
    (total["loss"] + (pred.sum() + sdf.sum()) * 0).backward()
    assert torch.isfinite(pred.grad).all() and torch.isfinite(sdf.grad).all()


def test_mask_loss_hand_computed_and_gradient():
    alpha = 10.0
    min_sdf = torch.tensor([0.05, -0.02, 0.3, -0.1, 0.0], dtype=torch.float64, requires_grad=True)
    obj = torch.tensor([True, True, False, False, True])
    hit = torch.tensor([False, True, False, True, True])
    # selected rays: not (hit & obj) -> 0, 2, 3 with targets 1, 0, 0
    sel = [(0, 1.0), (2, 0.0), (3, 0.0)]
    expected = sum(_bce_logits(-alpha * min_sdf[i].item(), y) for i, y in sel) / (alpha * 5)
    loss = mask_loss(min_sdf, obj, hit, alpha)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    exp_grad = torch.zeros(5, dtype=torch.float64)
    for i, y in sel:  # d/ds (1/(alpha R)) BCE(-alpha s, y) = -(sigmoid(-alpha s) - y) / R
        exp_grad[i] = -(torch.sigmoid(torch.tensor(-alpha * min_sdf[i].item())) - y) / 5
    torch.testing.assert_close(min_sdf.grad, exp_grad)
    # a missed in-mask ray with a positive min SDF is pushed down, an outside ray with a negative one up
    assert min_sdf.grad[0] > 0 and min_sdf.grad[3] < 0


def test_mask_loss_soft_target():
    """``target`` (a pixel's mask coverage) replaces the mask as the BCE target on the same rays; its optimum is the
    minimum SDF where sigmoid(-alpha s) equals the coverage, on either side of the outline."""
    alpha = 10.0
    min_sdf = torch.tensor([0.05, -0.02, 0.3, -0.1, 0.0], dtype=torch.float64, requires_grad=True)
    obj = torch.tensor([True, True, False, False, True])
    hit = torch.tensor([False, True, False, True, True])
    cov = torch.tensor([0.75, 1.0, 0.25, 0.0, 0.5], dtype=torch.float64)
    sel = [(0, 0.75), (2, 0.25), (3, 0.0)]
    expected = sum(_bce_logits(-alpha * min_sdf[i].item(), y) for i, y in sel) / (alpha * 5)
    assert mask_loss(min_sdf, obj, hit, alpha, target=cov).item() == pytest.approx(expected, rel=1e-12)
    # a 0/1 target is the mask itself
    assert mask_loss(min_sdf, obj, hit, alpha, target=obj.double()).item() == \
        pytest.approx(mask_loss(min_sdf, obj, hit, alpha).item(), rel=1e-12)
    # at s = -log(c / (1 - c)) / alpha the gradient vanishes
    c = torch.tensor([0.25, 0.75], dtype=torch.float64)
    s = (-torch.log(c / (1 - c)) / alpha).requires_grad_(True)
    mask_loss(s, torch.tensor([False, True]), torch.tensor([False, False]), alpha, target=c).backward()
    assert s.grad.abs().max() < 1e-12 and s[0] > 0 > s[1]
    with pytest.raises(ValueError, match="target"):
        mask_loss(min_sdf, obj, hit, alpha, target=cov[:3])


def test_mask_loss_skips_rays_missing_the_bounding_sphere():
    sdf = torch.tensor([0.2, float("nan"), -0.1, 0.05], requires_grad=True)
    obj = torch.tensor([False, False, True, True])
    hit = torch.tensor([False, False, False, True])
    loss = mask_loss(sdf, obj, hit, alpha=50.0)
    ref = mask_loss(torch.tensor([0.2, -0.1]), torch.tensor([False, True]), torch.tensor([False, False]), 50.0, n_rays=4)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(sdf.grad).all() and sdf.grad[1] == 0


def test_eikonal_loss_hand_computed():
    g = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    loss = eikonal_loss(g)
    assert loss.item() == pytest.approx((16 + 0 + 1) / 3)
    loss.backward()
    torch.testing.assert_close(g.grad[0], torch.tensor([2 * 4 * 0.6, 2 * 4 * 0.8, 0.0]) / 3)
    assert torch.isfinite(g.grad).all()


def test_alpha_schedule_and_idr_loss_total():
    assert alpha_schedule(0) == 50.0
    assert alpha_schedule(249) == 50.0
    assert alpha_schedule(250) == 100.0
    assert alpha_schedule(1000) == 800.0
    assert alpha_schedule(10_000) == 1600.0
    assert alpha_schedule(5, alpha_init=1.0, milestones=(2, 4), factor=3.0) == 9.0

    crit = IDRLoss()
    assert (crit.rgb_weight, crit.eikonal_weight, crit.mask_weight, crit.alpha) == (1.0, 0.1, 100.0, 50.0)
    assert crit.set_epoch(600) == 200.0 and crit.alpha == 200.0
    torch.manual_seed(0)
    r = 8
    rgb_pred, rgb_gt = torch.rand(r, 3), torch.rand(r, 3)
    obj = torch.tensor([1, 1, 1, 0, 0, 1, 0, 1], dtype=torch.bool)
    hit = torch.tensor([1, 0, 1, 1, 0, 1, 0, 0], dtype=torch.bool)
    sdf, grads = torch.randn(r) * 0.01, torch.randn(20, 3)
    out = crit(rgb_pred, rgb_gt, obj, hit, sdf, grads)
    torch.testing.assert_close(out["rgb_loss"], rgb_loss(rgb_pred, rgb_gt, hit & obj))
    torch.testing.assert_close(out["mask_loss"], mask_loss(sdf, obj, hit, 200.0))
    torch.testing.assert_close(out["eikonal_loss"], eikonal_loss(grads))
    torch.testing.assert_close(out["loss"], out["rgb_loss"] + 0.1 * out["eikonal_loss"] + 100 * out["mask_loss"])
    assert out["mask_loss"] != mask_loss(sdf, obj, hit, 50.0)  # alpha is actually used


def test_forward_timing_paper_network(paper_net):
    """Smoke test that the 8x512 network evaluates a modest batch (timing is reported, not asserted)."""
    with torch.no_grad():
        s, f = paper_net(torch.rand(4096, 3) * 2 - 1)
    assert s.shape == (4096,) and f.shape == (4096, 256) and bool(torch.isfinite(s).all())
