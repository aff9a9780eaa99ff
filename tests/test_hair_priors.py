"""Hair-orientation building blocks of Wang et al.: the Gabor filter bank's 2D orientation on synthetic strand
images, and the least-curvature principal direction of an SDF by its Hessian (double backward)."""
import numpy as np
import pytest
import torch

from headrecon.models.differential import principal_direction, sdf_hessian
from headrecon.photos.orientation import angular_error_deg, gabor_orientation, orientation_vectors


def stripes(angle_deg: float, size: int = 96, period: float = 4.0) -> np.ndarray:
    """Thin dark/light stripes running along ``angle_deg`` (x right, y down)."""
    a = np.radians(angle_deg)
    d = np.array([np.cos(a), np.sin(a)])       # strand direction
    nrm = np.array([-d[1], d[0]])               # across the strands
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return 0.5 + 0.4 * np.cos(2 * np.pi * (x * nrm[0] + y * nrm[1]) / period)


@pytest.mark.parametrize("angle", [0.0, 13.0, 45.0, 72.0, 90.0, 118.0, 151.0, 177.0])
def test_gabor_recovers_stripe_direction_within_3_degrees(angle):
    img = stripes(angle)
    theta, conf = gabor_orientation(img, n_orientations=32, wavelength_px=4.0)
    inner = (slice(16, -16), slice(16, -16))
    d = orientation_vectors(theta[inner])
    true = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    err = angular_error_deg(d, true)
    assert np.median(err) <= 3.0, (angle, np.median(err))
    assert np.median(conf[inner]) > 0.3


def test_gabor_flat_image_has_no_confidence_and_rgb_works():
    theta, conf = gabor_orientation(np.full((40, 40, 3), 128, dtype=np.uint8))
    assert theta.shape == (40, 40) and np.allclose(conf, 0.0)
    with pytest.raises(ValueError):
        gabor_orientation(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize("axis", [(0.0, 0.0, 1.0), (1.0, 2.0, 0.5)])
def test_principal_direction_of_a_cylinder_is_its_axis(axis):
    a = torch.tensor(axis, dtype=torch.float64)
    a = a / a.norm()
    r = 0.3

    def cylinder(x):
        radial = x - (x @ a)[:, None] * a
        return radial.norm(dim=-1) - r

    g = torch.Generator().manual_seed(0)
    p = torch.randn(200, 3, generator=g, dtype=torch.float64)
    radial = p - (p @ a)[:, None] * a
    x = (p @ a)[:, None] * a + r * radial / radial.norm(dim=-1, keepdim=True)   # points on the surface
    d = principal_direction(cylinder, x)
    assert torch.allclose((d @ a).abs(), torch.ones(200, dtype=torch.float64), atol=1e-6)
    grad, H = sdf_hessian(cylinder, x)
    assert torch.allclose(grad.norm(dim=-1), torch.ones(200, dtype=torch.float64), atol=1e-9)
    # the Hessian of a distance field annihilates its gradient
    assert (H @ grad[..., None]).abs().max() < 1e-9


def test_principal_direction_on_a_network_is_differentiable():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Softplus(beta=10), torch.nn.Linear(32, 1))
    x = torch.randn(16, 3)
    d = principal_direction(lambda p: net(p)[:, 0], x, create_graph=True)
    assert d.shape == (16, 3) and torch.allclose(d.norm(dim=-1), torch.ones(16), atol=1e-5)
    (d[:, 0] ** 2).sum().backward()
    assert net[0].weight.grad is not None and torch.isfinite(net[0].weight.grad).all()


def test_principal_direction_closed_form_matches_eigh_and_weights_umbilic_points_out():
    # an ellipsoid-like SDF: the closed-form tangent eigenvector equals the one torch.linalg.eigh picks
    torch.manual_seed(1)
    from headrecon.models.differential import _tangent_hessian

    scale = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)

    def ellipsoid(x):
        return ((x / scale).norm(dim=-1) - 1.0) * scale.min()

    x = torch.randn(300, 3, dtype=torch.float64) * 0.3
    d, w = principal_direction(ellipsoid, x, return_weight=True)
    T, a, b, c = _tangent_hessian(ellipsoid, x, False)
    B = torch.stack([torch.stack([a, b], -1), torch.stack([b, c], -1)], -2)
    evals, evecs = torch.linalg.eigh(B)
    k = evals.abs().argmin(-1)
    v = torch.gather(evecs, 2, k[:, None, None].expand(-1, 2, 1))[..., 0]
    ref = torch.nn.functional.normalize((T @ v[..., None])[..., 0], dim=-1)
    gap = (evals[:, 0] - evals[:, 1]).abs() > 1e-3 * evals.abs().amax(-1)   # where the direction is defined
    assert gap.sum() > 250
    assert torch.allclose((d * ref).sum(-1).abs()[gap], torch.ones(int(gap.sum()), dtype=torch.float64), atol=1e-6)
    # on a sphere every point is umbilic: the weight vanishes and the gradients stay finite
    p = torch.randn(50, 3, dtype=torch.float64)
    p = 0.4 * p / p.norm(dim=-1, keepdim=True)
    d, w = principal_direction(lambda y: y.norm(dim=-1) - 0.4, p, return_weight=True)
    assert w.max() < 1e-6
    # nearly umbilic (an ellipsoid 0.001 % off a sphere): the weight is small, it has no gradient (a loss cannot
    # be lowered by making the curvature isotropic) and the weighted loss's gradient stays finite
    s = torch.tensor(1.0 + 1e-5, dtype=torch.float64, requires_grad=True)
    axes = torch.stack([torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64), s])
    d, w = principal_direction(lambda y: ((y / axes).norm(dim=-1) - 0.4), p, create_graph=True, return_weight=True)
    assert w.max() < 1e-2 and not w.requires_grad
    (w * d[:, 0] ** 2).sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad)
