"""Tests of headrecon.render.mesh: marching-cubes extraction from analytic SDFs and from the geometry network."""
import math

import numpy as np
import pytest
import torch
import trimesh

from headrecon.models import GeometryNetwork
from headrecon.render.mesh import EmptyLevelSetError, evaluate_grid, extract_mesh
from headrecon.render.mesh import _orient_outward


def sphere(center=(0.0, 0.0, 0.0), r=0.5):
    c = torch.tensor(center)

    def fn(p):
        return (p - c.to(p)).norm(dim=-1) - r

    return fn


def ellipsoid(axes):
    a = torch.tensor(axes)

    def fn(p):  # not an exact SDF, but its zero level set is the ellipsoid and it is negative inside
        return ((p / a.to(p)).norm(dim=-1) - 1.0) * float(min(axes))

    return fn


def assert_outward(mesh, center=(0.0, 0.0, 0.0)):
    assert mesh.volume > 0
    radial = mesh.triangles_center - np.asarray(center)
    assert np.all(np.einsum("ij,ij->i", radial, mesh.face_normals) > 0)


def test_grid_order_and_chunking():
    fn = lambda p: p[:, 0] + 2 * p[:, 1] + 3 * p[:, 2]  # noqa: E731
    v = evaluate_grid(fn, resolution=9, radius=2.0, chunk=65536)
    axis = np.linspace(-2.0, 2.0, 9)
    expected = axis[:, None, None] + 2 * axis[None, :, None] + 3 * axis[None, None, :]
    np.testing.assert_allclose(v, expected, atol=1e-5)
    v_small = evaluate_grid(fn, resolution=9, radius=2.0, chunk=50, progress=True)
    np.testing.assert_array_equal(v, v_small)
    assert v.dtype == np.float32
    assert evaluate_grid(fn, resolution=5, dtype=torch.float64).dtype == np.float64


def test_sphere_radius_volume_orientation():
    r, res = 0.5, 64
    mesh = extract_mesh(sphere(r=r), resolution=res)
    h = 2.0 / (res - 1)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - r).max() < 0.1 * h  # linear interpolation of an exact SDF: far below a voxel
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.01)
    assert mesh.is_watertight
    assert_outward(mesh)


def test_off_centre_ellipsoid_axes_and_volume():
    axes, center = (0.7, 0.4, 0.25), np.array([0.1, -0.2, 0.3])
    fn_e = ellipsoid(axes)
    c = torch.tensor(center, dtype=torch.float32)
    mesh = extract_mesh(lambda p: fn_e(p - c), resolution=80, radius=1.2)
    h = 2.4 / 79
    lo, hi = mesh.bounds
    np.testing.assert_allclose((hi - lo) / 2, axes, atol=h)  # catches swapped axes
    np.testing.assert_allclose((hi + lo) / 2, center, atol=h / 2)  # catches a wrong world offset
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * np.prod(axes), rel=0.02)
    assert_outward(mesh, center)


def test_scale_mat_is_applied():
    base = extract_mesh(sphere(r=0.5), resolution=40)
    m = np.diag([150.0, 150.0, 150.0, 1.0])
    m[:3, 3] = [10.0, -20.0, 1500.0]  # unit sphere -> scene millimetres
    mesh = extract_mesh(sphere(r=0.5), resolution=40, scale_mat=m)
    np.testing.assert_allclose(mesh.vertices, base.vertices * 150.0 + m[:3, 3], rtol=1e-9, atol=1e-9)
    assert mesh.volume == pytest.approx(base.volume * 150.0**3, rel=1e-9)
    assert_outward(mesh, m[:3, 3])
    mirror = extract_mesh(sphere(r=0.5), resolution=40, scale_mat=np.diag([-1.0, 1.0, 1.0, 1.0]))
    assert_outward(mirror)  # a reflection must not turn the normals inward
    with pytest.raises(ValueError):
        extract_mesh(sphere(r=0.5), resolution=16, scale_mat=np.eye(3))


def test_largest_component_filtering():
    big, small = sphere((-0.45, 0.0, 0.0), 0.4), sphere((0.55, 0.0, 0.0), 0.2)

    def two_spheres(p):
        return torch.minimum(big(p), small(p))

    both = extract_mesh(two_spheres, resolution=64, largest_component=False)
    assert both.body_count == 2
    kept = extract_mesh(two_spheres, resolution=64)
    assert kept.body_count == 1
    assert kept.volume == pytest.approx(4 / 3 * math.pi * 0.4**3, rel=0.02)
    assert kept.vertices[:, 0].max() < 0.0  # it is the big sphere on the -x side
    assert len(kept.faces) < len(both.faces)


def test_empty_level_set_and_bad_values_raise():
    with pytest.raises(EmptyLevelSetError, match="empty level set"):
        extract_mesh(lambda p: p.norm(dim=-1) + 1.0, resolution=16)
    with pytest.raises(ValueError, match="empty level set"):  # everything inside is empty too
        extract_mesh(lambda p: p.norm(dim=-1) - 5.0, resolution=16)
    with pytest.raises(EmptyLevelSetError):  # sphere entirely outside the sampled cube
        extract_mesh(sphere((3.0, 0.0, 0.0), 0.5), resolution=16)
    with pytest.raises(ValueError, match="non-finite"):
        extract_mesh(lambda p: torch.full_like(p[:, 0], float("nan")), resolution=8)
    with pytest.raises(ValueError):
        extract_mesh(lambda p: p[:5, 0], resolution=8)


def test_level_and_output_formats():
    # level shifts the surface; [N, 1] and (sdf, feature) outputs are accepted
    m = extract_mesh(lambda p: (p.norm(dim=-1) - 0.3)[:, None], resolution=48, level=0.2)
    assert np.linalg.norm(m.vertices, axis=1).mean() == pytest.approx(0.5, abs=0.005)
    m2 = extract_mesh(lambda p: (p.norm(dim=-1) - 0.5, p), resolution=48)
    assert np.linalg.norm(m2.vertices, axis=1).mean() == pytest.approx(0.5, abs=0.005)


def test_orientation_fix_flips_inverted_mesh():
    values = evaluate_grid(sphere(r=0.5), resolution=32)
    good = extract_mesh(sphere(r=0.5), resolution=32)
    mesh = trimesh.Trimesh(good.vertices, good.faces[:, ::-1], process=False)
    assert mesh.volume < 0 and np.einsum("ij,ij->i", mesh.triangles_center, mesh.face_normals).max() < 0
    _orient_outward(mesh, values, 1.0)
    assert_outward(mesh)


def test_geometry_network_init_mesh():
    """The geometric init of the network meshes to a closed, outward-facing blob around radius 0.6."""
    torch.manual_seed(0)
    net = GeometryNetwork.small().double()  # dtype of the queries follows the network's parameters
    mesh = extract_mesh(net.sdf, resolution=40)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert mesh.is_watertight and mesh.volume > 0
    assert 0.5 < radii.mean() < 0.7
    net_f = GeometryNetwork.small()
    mesh_f = extract_mesh(net_f, resolution=24)  # the module itself: forward returns (sdf, feature)
    assert mesh_f.volume > 0


def test_clip_to_ball_is_the_dense_max_in_place():
    """``clip_to_ball`` (what ``extract_mesh(clip_sphere=True)`` and benches/bench_mesh.py mesh): ``max(v, |x| - r)``
    on the grid ``linspace(-r, r, res)^3``, in place, for float32 and float64 grids."""
    from headrecon.render.mesh import clip_to_ball

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        v = rng.normal(scale=0.5, size=(17, 17, 17)).astype(dtype)
        g = np.linspace(-0.8, 0.8, 17)
        dense = np.maximum(v, (np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) - 0.8)
                           .astype(dtype))
        out = clip_to_ball(v, 0.8)
        assert out is v and out.dtype == dtype
        np.testing.assert_allclose(out, dense, rtol=0, atol=1e-6)


def test_clip_sphere_keeps_the_domain():
    """A half-space ``x < 0.2`` fills the cube's corners; clipped to the unit ball it is a closed ball segment
    whose vertices lie within the ball (plus a grid cell) and on both surfaces (plane and sphere)."""
    from headrecon.render.mesh import extract_mesh

    f = lambda p: p[:, 0] - 0.2
    m = extract_mesh(f, resolution=48, radius=1.0, clip_sphere=True, progress=False)
    r = np.linalg.norm(m.vertices, axis=1)
    assert r.max() <= 1.0 + 2.0 / 47 and m.is_watertight
    on_plane = np.abs(m.vertices[:, 0] - 0.2) < 0.03
    on_sphere = np.abs(r - 1.0) < 0.03
    assert on_plane.any() and on_sphere.any() and (on_plane | on_sphere).mean() > 0.99
    assert m.vertices[:, 0].max() <= 0.2 + 2.0 / 47


@pytest.mark.parametrize("res", [33, 64, 97, 130])
def test_narrow_band_gives_the_full_grids_mesh(res):
    """Evaluating only near the level set (found on coarser lattices, refined where a cell may hold it) gives the
    same marching-cubes mesh as the full grid, on analytic SDFs with thin parts, several components and a gradient
    norm of 1.9 (below the band's bound of 2), for a fraction of the evaluations; the default lattices (16, 8, 4, 2)
    evaluate fewer points than one lattice 4x coarser."""
    from skimage import measure

    from headrecon.render.analytic import Box, Sphere, Torus, Union
    from headrecon.render.mesh import evaluate_grid

    shapes = ((Sphere(0.6, (0.05, -0.02, 0.03)), 1.0), (Torus(0.5, 0.1), 1.0), (Box((0.4, 0.3, 0.5)), 1.0),
              (Union(Sphere(0.4, (0.3, 0.0, 0.0)), Sphere(0.35, (-0.3, 0.1, 0.0))), 1.0),
              (Sphere(0.45, (0.1, 0.0, -0.05)), 1.9))
    for shape, scale in shapes:
        calls = []

        def fn(x):
            calls.append(x.shape[0])
            return (scale * shape(x)).float()

        full = extract_mesh(fn, res, narrow_band=None, largest_component=False)
        calls.clear()
        band = extract_mesh(fn, res, largest_component=False)
        assert np.array_equal(full.vertices, band.vertices) and np.array_equal(full.faces, band.faces)
        grid = evaluate_grid(fn, res, narrow_band=None)
        n_full = res ** 3
        want = measure.marching_cubes(grid, level=0.0)[:2]
        near = np.abs(grid) < 2.0 / (res - 1)
        counts = {}
        for strides in ((4,), (16, 8, 4, 2), (8, 2)):
            calls.clear()
            values = evaluate_grid(fn, res, narrow_band=2.0, strides=strides)
            counts[strides] = sum(calls)
            got = measure.marching_cubes(values, level=0.0)[:2]
            assert all(np.array_equal(w, g) for w, g in zip(want, got)), strides
            assert np.array_equal(grid > 0, values > 0)  # the filled values keep the sign
            assert np.array_equal(grid[near], values[near])  # and the SDF itself near the level set
        if res >= 64:  # small grids are evaluated whole
            assert counts[(4,)] < 0.8 * n_full and counts[(16, 8, 4, 2)] < 0.8 * counts[(4,)], (n_full, counts)
        else:
            assert counts[(4,)] == n_full


def test_narrow_band_checks_its_arguments():
    from headrecon.render.mesh import evaluate_grid

    with pytest.raises(ValueError, match="narrow_band"):
        evaluate_grid(lambda x: x.norm(dim=-1) - 0.5, 64, narrow_band=-1.0)
    for strides in ((), (4, 8), (8, 3), (4, 4), (1,)):
        with pytest.raises(ValueError, match="strides"):
            evaluate_grid(lambda x: x.norm(dim=-1) - 0.5, 64, narrow_band=2.0, strides=strides)


def test_refine_puts_four_times_the_faces_on_the_surface():
    """refine=1: every triangle split in four and every vertex moved onto the level set (an ellipsoid, whose
    zero set the coarse grid cuts off between vertices); closed, outward, and nearer every surface point."""
    axes = (0.7, 0.5, 0.4)
    fn = ellipsoid(axes)
    coarse = extract_mesh(fn, resolution=24, progress=False)
    fine = extract_mesh(fn, resolution=24, progress=False, refine=1)
    assert len(fine.faces) == 4 * len(coarse.faces) and fine.is_watertight
    assert_outward(fine)
    level = lambda m: np.abs(fn(torch.as_tensor(m.vertices, dtype=torch.float64)).numpy())  # noqa: E731
    assert level(fine).max() < 1e-4 < level(coarse).max()  # on the surface; the coarse mesh's vertices are not
    # the chords of the coarse mesh cut inside the ellipsoid: the refined volume is nearer the true one
    true_volume = 4 / 3 * math.pi * np.prod(axes)
    assert abs(fine.volume - true_volume) < 0.5 * abs(coarse.volume - true_volume)
    # what nearest-vertex metrics read: surface points to the nearest vertex, about half as far
    from scipy.spatial import cKDTree

    u = np.random.default_rng(0).normal(size=(4000, 3))
    pts = u / np.linalg.norm(u / np.asarray(axes), axis=1, keepdims=True)
    d_coarse = cKDTree(coarse.vertices).query(pts)[0].mean()
    d_fine = cKDTree(fine.vertices).query(pts)[0].mean()
    assert d_fine < 0.6 * d_coarse


def test_refine_keeps_the_clip_and_the_scale():
    """The refined vertices land on what marching cubes saw (the SDF clipped to the ball), and scale_mat is applied
    after the refinement."""
    f = lambda p: p[:, 0] - 0.2  # noqa: E731
    m = extract_mesh(f, resolution=32, radius=1.0, clip_sphere=True, progress=False, refine=1)
    r = np.linalg.norm(m.vertices, axis=1)
    assert r.max() < 1.0 + 1e-4 and m.vertices[:, 0].max() < 0.2 + 1e-4 and m.is_watertight
    S = np.diag([10.0, 10.0, 10.0, 1.0])
    S[:3, 3] = (1.0, 2.0, 3.0)
    ms = extract_mesh(f, resolution=32, radius=1.0, clip_sphere=True, progress=False, refine=1, scale_mat=S)
    np.testing.assert_allclose(ms.vertices, m.vertices * 10.0 + (1.0, 2.0, 3.0), atol=1e-9)


def test_keep_unfolded_puts_back_turned_triangles():
    """A fan of four triangles around a centre vertex: moving the centre out of the square turns two of them
    over, so it is put back; a small lift of the centre (each face turned by 16 degrees) is kept."""
    from headrecon.render.mesh import keep_unfolded

    before = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
    after = before.copy()
    after[0] = (2.0, 0.0, 0.0)  # past the rim: [0, 2, 3] and [0, 3, 4] face down now
    after[2] = (0.0, 1.0, 0.1)  # a vertex of a turned face: put back with it
    np.testing.assert_array_equal(keep_unfolded(before, after, faces), before)
    lifted = before.copy()
    lifted[0, 2] = 0.2
    np.testing.assert_array_equal(keep_unfolded(before, lifted, faces), lifted)
    assert np.array_equal(keep_unfolded(before, lifted, faces, max_turn_deg=5.0), before)


def test_refine_does_not_fold_a_plate_thinner_than_a_cell():
    """An ellipsoid 0.1 thick meshed with cells of 0.087: the projection pulls both sides of the plate's rim onto
    one small triangle; refined, the mesh keeps the plain mesh's sharpest crease (below 90 degrees) instead of
    folding (without :func:`keep_unfolded`: 56 edges above 90 degrees, up to 127)."""
    axes = (0.7, 0.5, 0.05)
    fn = ellipsoid(axes)
    coarse = extract_mesh(fn, resolution=24, progress=False)
    fine = extract_mesh(fn, resolution=24, progress=False, refine=1)
    assert fine.is_watertight and len(fine.faces) == 4 * len(coarse.faces)
    assert np.degrees(fine.face_adjacency_angles).max() < 90.0
    on_level = np.abs(fn(torch.as_tensor(fine.vertices)).numpy()) < 1e-4
    assert on_level.mean() > 0.7  # the rest stay where the subdivision put them


def test_project_to_level_limits_its_steps():
    from headrecon.render.mesh import project_to_level

    fn = sphere(r=0.5)
    p = np.array([[0.9, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.3, 0.0]])  # outside, at the (gradient-free) centre, inside
    q = project_to_level(fn, p, max_step=0.1, steps=2)
    np.testing.assert_allclose(q[0], [0.7, 0.0, 0.0], atol=1e-6)  # two steps of at most 0.1 towards the surface
    assert np.isfinite(q).all()
    np.testing.assert_allclose(q[2], [0.0, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(project_to_level(fn, p[[0, 2]])[:, :2], [[0.5, 0.0], [0.0, 0.5]], atol=1e-6)


def test_parse_mesh_spec():
    from headrecon.render.mesh import parse_mesh_spec

    assert parse_mesh_spec("160r1") == (160, 1) and parse_mesh_spec("512") == (512, 0)
    for bad in ("160x", "4", "r1", "160r12"):
        with pytest.raises(ValueError, match="expected a resolution"):
            parse_mesh_spec(bad)
