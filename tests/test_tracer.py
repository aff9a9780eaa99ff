"""RayTracer against exact intersections of analytic SDFs (sphere, torus, box, union of two spheres), against
the dense reference tracer and across backends; the SDF cache; determinism; bad input; surface_points."""
import math

import pytest
import torch
from conftest import requires_cuda

from headrecon.render import RayTracer, SDFCache, reference_trace, surface_points
from headrecon.render.analytic import Box, Sphere, Torus, Union


class _Cached:
    """Memoise exact intersections of a shape for the same rays (the dense torus oracle is costly)."""

    def __init__(self, shape):
        self.shape, self.memo = shape, {}

    def __call__(self, x):
        return self.shape(x)

    def intersect(self, o, d):
        key = (o.data_ptr(), d.data_ptr(), o.shape[0], float(o.sum()), float(d.sum()))
        if key not in self.memo:
            self.memo[key] = self.shape.intersect(o, d)
        return self.memo[key]


SHAPES = {
    "sphere": Sphere(0.6, (0.05, -0.02, 0.03)),
    "torus": _Cached(Torus(0.5, 0.2)),
    "box": Box((0.4, 0.3, 0.5)),
    "union": Union(Sphere(0.4, (0.3, 0.0, 0.0)), Sphere(0.35, (-0.3, 0.1, 0.0))),
}
STRATEGIES = ["sphere", "search"]


def camera_rays(n, seed=0, dist=2.5, fov=0.5):
    """Rays of pinhole cameras on a sphere of radius ``dist`` looking at the origin."""
    g = torch.Generator().manual_seed(seed)
    k = 4
    theta = torch.rand(k, generator=g) * 2 * math.pi
    phi = (torch.rand(k, generator=g) - 0.5) * 1.2
    c = torch.stack([torch.cos(phi) * torch.sin(theta), torch.sin(phi), torch.cos(phi) * torch.cos(theta)], -1) * dist
    fwd = -c / c.norm(dim=-1, keepdim=True)
    right = torch.nn.functional.normalize(torch.cross(fwd, torch.tensor([[0.0, 1, 0]]).expand(k, 3), dim=-1), dim=-1)
    up = torch.cross(right, fwd, dim=-1)
    cam = torch.randint(0, k, (n,), generator=g)
    uv = (torch.rand(n, 2, generator=g) * 2 - 1) * fov
    d = fwd[cam] + uv[:, :1] * right[cam] + uv[:, 1:] * up[cam]
    return c[cam].contiguous(), torch.nn.functional.normalize(d, dim=-1).contiguous()


def grazing_sphere_rays(sphere, n, offset):
    """Rays passing at distance radius + offset from the centre of ``sphere`` (offset < 0: they just hit)."""
    g = torch.Generator().manual_seed(7)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    perp = torch.nn.functional.normalize(torch.cross(d, torch.randn(n, 3, generator=g), dim=-1), dim=-1)
    c = sphere.center.float()
    o = c + perp * (sphere.radius + offset) - 2.0 * d
    return o.contiguous(), d.contiguous()


def min_chord_ok(shape, o, d, h_exact, min_chord):
    """Rays whose classification the N_c-sample search can resolve: the ray's chord through the solid is longer
    than ``min_chord`` (the exact first-hit point moved by min_chord along the ray is still inside)."""
    t_ex = shape.intersect(o, d)[1]
    p_in = o.double() + (t_ex + min_chord)[:, None] * d.double()
    return ~h_exact | (shape(p_in) < 0)


def check_hits(res, shape, o, d, tol=1e-4, subset=None):
    h_ex, t_ex = shape.intersect(o, d)
    keep = torch.ones_like(h_ex) if subset is None else subset
    assert torch.equal(res.hit[keep], h_ex[keep]), f"{int((res.hit != h_ex)[keep].sum())} rays classified wrongly"
    both = res.hit & h_ex & keep
    err = (res.t[both].double() - t_ex[both]).abs().max().item() if both.any() else 0.0
    assert err <= tol, f"max |t - t*| = {err:.3g}"
    return h_ex


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_analytic_hits_exact(name, strategy, backend):
    shape = SHAPES[name]
    o, d = camera_rays(3000, seed=1)
    res = RayTracer(strategy=strategy, backend=backend)(shape, o, d)
    subset = None
    if strategy == "search":  # features thinner than ~2 coarse steps can fall between samples
        subset = min_chord_ok(shape, o, d, shape.intersect(o, d)[0], 2 * 2.0 / 74)
        assert subset.float().mean() > 0.97
    h = check_hits(res, shape, o, d, subset=subset)
    assert 0.1 < h.float().mean() < 0.9  # the scene has both hits and misses
    assert torch.allclose(res.points, o + res.t[:, None] * d)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("offset", [-2e-3, 2e-3, -0.02, 0.02])
def test_grazing_rays(strategy, offset):
    s = SHAPES["sphere"]
    o, d = grazing_sphere_rays(s, 500, offset)
    res = RayTracer(strategy=strategy)(s, o, d)
    h = check_hits(res, s, o, d)
    assert bool(h.all()) == (offset < 0) and bool((~h).all()) == (offset > 0)
    if offset > 0:  # the minimum SDF along a grazing miss is the offset itself
        torch.testing.assert_close(res.min_sdf, torch.full_like(res.min_sdf, offset), atol=3e-3, rtol=0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_rays_starting_inside_bounding_sphere_and_inside_object(strategy):
    s = Sphere(0.4)
    o = torch.tensor([[0.0, 0, 0.9], [0, 0, 0.9], [0.1, 0, 0], [0.95, 0.0, 0.0]])
    d = torch.tensor([[0.0, 0, -1], [0, 0, 1], [0, 1, 0], [0.0, 0.0, 1.0]])
    res = RayTracer(strategy=strategy)(s, o, d)
    assert res.near[:3].tolist() == [0.0, 0.0, 0.0]
    assert res.hit.tolist() == [True, False, True, False]
    assert res.t[0].item() == pytest.approx(0.5, abs=1e-4)
    assert res.t[2].item() == 0.0  # starts inside the object: hit at the origin


def test_rays_missing_bounding_sphere():
    s = Sphere(0.5)
    o = torch.tensor([[0.0, 3.0, -3.0], [0.0, 0.0, 3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    res = RayTracer()(s, o, d)
    assert res.ray_mask.tolist() == [False, False] and res.hit.tolist() == [False, False]
    assert res.t.tolist() == [3.0, 0.0]  # closest approach to the centre
    torch.testing.assert_close(res.min_sdf, s(res.points).float())


def test_empty_batch():
    res = RayTracer(cache=SDFCache())(Sphere(), torch.zeros(0, 3), torch.zeros(0, 3))
    assert res.t.shape == (0,) and res.points.shape == (0, 3) and res.num_sdf_evals == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cache_same_hits_fewer_evals(strategy):
    shape = SHAPES["union"]
    plain = RayTracer(strategy=strategy)
    cached = RayTracer(strategy=strategy, cache=SDFCache(resolution=64, eps=0.1, p_force=0.2, seed=0))
    ev_plain = ev_cached = 0
    for it in range(6):  # the cache is dynamic: it fills over iterations, as during training
        o, d = camera_rays(2000, seed=10 + it)
        a, b = plain(shape, o, d), cached(shape, o, d)
        assert torch.equal(a.hit, b.hit)
        assert (a.t - b.t)[a.hit].abs().max().item() <= 1e-4
        miss = ~a.hit & a.ray_mask
        torch.testing.assert_close(b.min_sdf[miss], shape(b.points[miss]).float())  # real values, not cached
        if it >= 3:
            ev_plain += a.num_sdf_evals
            ev_cached += b.num_sdf_evals
    if strategy == "search":  # the coarse samples far from the surface are what the cache answers
        assert ev_cached < 0.6 * ev_plain, (ev_cached, ev_plain)
        assert cached.cache.hit_rate > 0.3
    else:  # sphere tracing already needs few evaluations; the cache must not cost many more
        assert ev_cached < 1.15 * ev_plain, (ev_cached, ev_plain)


def test_same_seed_same_result():
    shape = SHAPES["torus"]
    outs = []
    for seed in (0, 0, 1):
        tr = RayTracer(strategy="search", cache=SDFCache(seed=seed))
        res = [tr(shape, *camera_rays(1000, seed=s)) for s in range(3)]
        outs.append((torch.stack([r.t for r in res]), [r.num_sdf_evals for r in res]))
    assert torch.equal(outs[0][0], outs[1][0]) and outs[0][1] == outs[1][1]
    assert outs[0][1] != outs[2][1]  # another seed forces other points


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("use_cache", [False, True])
def test_cpp_and_torch_backends_agree(strategy, use_cache):
    shape = SHAPES["box"]
    res = {}
    for backend in ("cpp", "torch"):
        tr = RayTracer(strategy=strategy, backend=backend, cache=SDFCache() if use_cache else None)
        for it in range(2):
            res[backend] = tr(shape, *camera_rays(1500, seed=it))
    a, b = res["cpp"], res["torch"]
    assert torch.equal(a.hit, b.hit)
    torch.testing.assert_close(a.t, b.t, atol=1e-6, rtol=0)
    assert a.num_sdf_evals == b.num_sdf_evals


def test_matches_dense_reference_tracer():
    shape = SHAPES["union"]
    o, d = camera_rays(2000, seed=3)
    a = RayTracer(strategy="search")(shape, o, d)
    ref = reference_trace(shape, o, d)
    assert torch.equal(a.hit, ref["hit"])
    torch.testing.assert_close(a.t, ref["t"], atol=1e-6, rtol=0)
    miss = ~a.hit & a.ray_mask
    torch.testing.assert_close(a.min_sdf[miss], ref["min_sdf"][miss], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_secant_leaves_converged_rays_like_the_reference(name, backend):
    """``secant_tol``: wide brackets (8 coarse samples, no fine ones) make rays converge at different secant steps:
    the engine, which drops converged rays from its calls, gives the dense reference's hits and t."""
    shape = SHAPES[name]
    o, d = camera_rays(2000, seed=3)
    a = RayTracer(strategy="search", n_coarse=8, n_fine=0, backend=backend, secant_tol=1e-5)(shape, o, d)
    ref = reference_trace(shape, o, d, n_coarse=8, n_fine=0, secant_tol=1e-5)
    assert a.stats["secant_steps"] >= 3 and a.stats["evals_secant"] < a.stats["secant_steps"] * int(a.hit.sum())
    assert torch.equal(a.hit, ref["hit"])
    torch.testing.assert_close(a.t, ref["t"], atol=2e-6, rtol=0)


def test_secant_stops_at_the_tolerance():
    """With ``secant_tol`` the secant refinement leaves a ray once |sdf| <= secant_tol at its proposal: the same
    hits as running all n_secant steps (the default), within the tolerance of the surface, with fewer evaluations
    and network calls."""
    shape = SHAPES["union"]
    o, d = camera_rays(2000, seed=3)
    a = RayTracer(strategy="search", secant_tol=1e-5)(shape, o, d)
    full = RayTracer(strategy="search")(shape, o, d)
    with pytest.raises(ValueError, match="secant_tol"):
        RayTracer(secant_tol=-1.0)
    assert full.stats["secant_steps"] == 8 and a.stats["secant_steps"] < 8
    assert a.stats["evals_secant"] < 0.5 * full.stats["evals_secant"]
    assert a.stats["network_calls"] < full.stats["network_calls"]
    assert torch.equal(a.hit, full.hit) and a.hit.any()
    torch.testing.assert_close(a.t[a.hit], full.t[a.hit], atol=1e-4, rtol=0)
    assert shape(a.points[a.hit].double()).abs().max() <= 2e-5


@pytest.mark.parametrize("use_cache", [False, True])
def test_chunked_coarse_search_equals_parallel_search(use_cache):
    """Coarse and fine samples evaluated front to back in chunks (the defaults: 4 and 5 chunks) give the parallel
    search's result (SIRA++: all samples at once) with fewer network evaluations."""
    shape = SHAPES["union"]
    res = {}
    for chunks in (1, 5):
        tr = RayTracer(strategy="search", coarse_chunks=chunks, fine_chunks=chunks,
                       cache=SDFCache() if use_cache else None)
        out = [tr(shape, *camera_rays(1500, seed=s)) for s in range(2)]
        res[chunks] = out
    assert all(r.stats["evals_fine"] > 0 for r in res[1])
    assert sum(r.stats["evals_fine"] for r in res[5]) < 0.8 * sum(r.stats["evals_fine"] for r in res[1])
    for a, b in zip(res[1], res[5]):
        assert torch.equal(a.hit, b.hit) and torch.equal(a.t[a.hit], b.t[b.hit])
        if not use_cache:  # with a cache, far samples (all >= eps) are lower bounds whose order may differ
            assert torch.equal(a.min_sdf_t, b.min_sdf_t)
            torch.testing.assert_close(a.min_sdf, b.min_sdf)
    if not use_cache:
        assert sum(r.num_sdf_evals for r in res[5]) < 0.95 * sum(r.num_sdf_evals for r in res[1])
    # the tracer's running totals are the sums of its traces' stats
    assert tr.totals["num_sdf_evals"] == sum(r.num_sdf_evals for r in res[5])
    assert tr.totals["evals_coarse"] == sum(r.stats["evals_coarse"] for r in res[5]) and tr.totals["rays"] == 3000


def test_sphere_strategy_without_steps_equals_search():
    shape = SHAPES["torus"]
    o, d = camera_rays(1000, seed=4)
    a = RayTracer(strategy="sphere", max_steps=0)(shape, o, d)
    b = RayTracer(strategy="search")(shape, o, d)
    assert torch.equal(a.hit, b.hit) and torch.allclose(a.t[a.hit], b.t[b.hit], atol=1e-6)


def test_auto_strategy_measures_and_keeps_the_faster():
    s = SHAPES["union"]
    tr = RayTracer()
    o, d = camera_rays(1000, seed=11)
    first = tr(s, o, d)
    choice = tr.auto_choice["cpu"]
    assert set(choice["seconds"]) == {"sphere", "search"}
    assert choice["strategy"] == min(choice["seconds"], key=choice["seconds"].get)
    assert first.stats["strategy"] == choice["strategy"]
    second = tr(s, o, d)  # no second measurement
    assert second.stats["strategy"] == choice["strategy"] and tr.auto_choice["cpu"] is choice
    check_hits(second, s, o, d)


def test_float64_rays():
    s = SHAPES["sphere"]
    o, d = camera_rays(500, seed=5)
    res = RayTracer(strategy="search")(s, o.double(), d.double())
    assert res.t.dtype == torch.float64
    check_hits(res, s, o, d, tol=1e-8)


def test_bad_input_raises():
    s = Sphere()
    o, d = camera_rays(10)
    tr = RayTracer()
    with pytest.raises(ValueError, match="non-finite"):
        tr(lambda x: s(x) * float("nan"), o, d)
    with pytest.raises(ValueError, match="sdf_fn must map"):
        tr(lambda x: s(x)[:, None].expand(-1, 2), o, d)
    with pytest.raises(TypeError, match="torch.Tensor"):
        tr(lambda x: s(x).tolist(), o, d)
    with pytest.raises(TypeError, match="float32 or float64"):
        tr(s, o.half(), d.half())
    with pytest.raises(ValueError, match="shape"):
        tr(s, o[:, :2], d[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        tr(s, o * float("nan"), d)
    with pytest.raises(ValueError, match="zero"):
        tr(s, o, d * 0)
    with pytest.raises(ValueError, match="strategy"):
        RayTracer(strategy="fast")
    with pytest.raises(ValueError, match="voxel diagonal"):
        RayTracer(cache=SDFCache(resolution=16, eps=0.1))
    # non-contiguous input is accepted by the tracer (copied), unlike the raw ops
    res = tr(s, torch.cat([o, o], 1)[:, :3], d)
    assert res.t.shape == (10,)


def test_surface_points_gradcheck_float64():
    o = torch.tensor([[0.1, 0.05, 2.0], [-0.2, 0.1, 2.0], [0.0, 0.3, -2.0]], dtype=torch.float64)
    d = torch.nn.functional.normalize(-o + torch.tensor([0.02, -0.01, 0.0], dtype=torch.float64), dim=-1)

    def fn(radius, center):
        s = lambda x: (x - center).norm(dim=-1) - radius
        with torch.no_grad():
            sph = Sphere(float(radius), center.detach())
            hit, t = sph.intersect(o, d)
        return surface_points(s, o, d, t.to(torch.float64))

    radius = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    center = torch.tensor([0.01, 0.02, -0.03], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (radius, center), eps=1e-6, atol=1e-5)
    # and the gradient is the true sensitivity of the exact intersection: d x*/d radius
    x = fn(radius, center)
    (g,) = torch.autograd.grad(x[0, 2], radius)
    h = 1e-6
    with torch.no_grad():
        sp = Sphere(0.6 + h, center.detach()).intersect(o, d)[1][0]
        sm = Sphere(0.6 - h, center.detach()).intersect(o, d)[1][0]
    fd = ((sp - sm) / (2 * h) * d[0, 2]).item()
    assert g.item() == pytest.approx(fd, rel=1e-5)


def test_surface_points_gradient_reaches_network_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Softplus(beta=10), torch.nn.Linear(16, 1))
    fn = lambda x: x.norm(dim=-1) - 0.6 + 0.05 * torch.tanh(net(x).squeeze(-1))  # a closed, bumpy surface
    o, d = camera_rays(200, seed=6, dist=2.0)
    res = RayTracer(strategy="search")(fn, o, d)
    assert res.hit.any()
    x = surface_points(fn, o[res.hit], d[res.hit], res.t[res.hit])
    torch.testing.assert_close(x, res.points[res.hit], atol=1e-4, rtol=0)
    x.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("cache", [False, True])
def test_back_after_changes_only_misses(cache):
    """When the back walkers start (CUDA's default 0, the CPU's ``max_steps // 2``, never) changes the work, not the
    hits: same hit mask and the same t on hits; only the closest approach of missing rays may differ."""
    shape = SHAPES["union"]
    o, d = camera_rays(3000, seed=8)
    runs = [RayTracer(strategy="sphere", cache=SDFCache() if cache else None, back_after=b)(shape, o, d)
            for b in (0, 15, 30)]
    for r in runs[1:]:
        assert torch.equal(r.hit, runs[0].hit)
        torch.testing.assert_close(r.t[r.hit], runs[0].t[r.hit], atol=1e-5, rtol=0)
    assert runs[0].num_sdf_evals != runs[1].num_sdf_evals  # the setting is live


@requires_cuda
@pytest.mark.parametrize("back_after", [0, 15])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cuda_matches_cpu(strategy, back_after):
    """Same rays, same settings: the same hits, t and cache decisions on both devices. ``back_after`` is set on both:
    its default differs per device (0 on CUDA, ``max_steps // 2`` on the CPU), which changes the walkers' paths and
    so the closest approach reported for rays that miss (the hits themselves do not change)."""
    shape = SHAPES["union"]
    a = RayTracer(strategy=strategy, cache=SDFCache(), back_after=back_after)
    b = RayTracer(strategy=strategy, cache=SDFCache(), back_after=back_after)
    for it in range(3):
        o, d = camera_rays(3000, seed=8 + it)
        ra, rb = a(shape, o, d), b(shape, o.cuda(), d.cuda())
        assert torch.equal(ra.hit, rb.hit.cpu())
        torch.testing.assert_close(ra.t, rb.t.cpu(), atol=1e-5, rtol=0)
    assert a.cache.hits == b.cache.hits  # same forced re-evaluations for the same seed


@requires_cuda
def test_cuda_amp_network():
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Softplus(beta=10), torch.nn.Linear(64, 1)).cuda()
    o, d = camera_rays(1000, seed=9)
    res = RayTracer(amp=True)(lambda x: net(x).squeeze(-1), o.cuda(), d.cuda())
    assert res.t.dtype == torch.float32


@pytest.mark.parametrize("name", list(SHAPES))
def test_late_back_walkers_agree_with_two_sided_tracing(name):
    """Back walkers from the start (IDR, back_after=0), after half the steps (the CPU default) or never: the same
    exact hits; starting them late saves the back walkers of the rays that converge early."""
    shape = SHAPES[name]
    o, d = camera_rays(2000, seed=3)
    res = {ba: RayTracer(strategy="sphere", back_after=ba)(shape, o, d) for ba in (0, 15, 30)}
    for r in res.values():
        check_hits(r, shape, o, d)
    assert res[15].stats["evals_sphere"] < res[0].stats["evals_sphere"]
    assert res[30].stats["evals_sphere"] <= res[15].stats["evals_sphere"]
    if name == "sphere":  # the walk's minimum SDF of a miss (silhouette loss) against the exact closest approach
        miss = res[0].ray_mask & ~res[0].hit
        c = shape.center.float()
        true_min = torch.linalg.cross(c - o[miss], d[miss], dim=-1).norm(dim=-1) - shape.radius
        err = {ba: r.min_sdf[miss] - true_min for ba, r in res.items()}
        assert all(e.min() > -1e-5 for e in err.values())  # samples of the SDF: never below the minimum
        assert err[15].mean() <= err[0].mean() + 1e-4


def test_back_walkers_default_per_device():
    tr = RayTracer(strategy="sphere", max_steps=20)
    assert tr.resolved_back_after(torch.device("cpu")) == 10
    assert tr.resolved_back_after(torch.device("cuda")) == 0
    assert RayTracer(back_after=3).resolved_back_after(torch.device("cpu")) == 3
    with pytest.raises(ValueError, match="back_after"):
        RayTracer(back_after=-1)


def test_small_network_calls_run_on_one_thread_and_threads_are_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    def shape(x):
        seen.append((x.shape[0], torch.get_num_threads()))
        return SHAPES["sphere"](x)

    try:
        o, d = camera_rays(500, seed=5)
        RayTracer(strategy="sphere", single_thread_below=300)(shape, o, d)
        assert torch.get_num_threads() == 2
        assert all(th == (1 if n < 300 else 2) for n, th in seen)
        assert {th for _, th in seen} == {1, 2}

        def bad(x):
            raise RuntimeError("network failed")

        with pytest.raises(RuntimeError, match="network failed"):
            RayTracer(strategy="sphere", single_thread_below=10 ** 6)(bad, o, d)
        assert torch.get_num_threads() == 2
        seen.clear()
        RayTracer(strategy="sphere", single_thread_below=0)(shape, o, d)  # 0: torch's setting for every call
        assert {th for _, th in seen} == {2}
        seen.clear()
        o2, d2 = camera_rays(2000, seed=5)
        ref = RayTracer(strategy="sphere", single_thread_below=0)(SHAPES["sphere"], o2, d2)
        res = RayTracer(strategy="sphere")(shape, o2, d2)  # default: one thread below 1024 points
        assert all(th == (1 if n < 1024 else 2) for n, th in seen) and {th for _, th in seen} == {1, 2}
        assert torch.equal(res.hit, ref.hit)  # the thread rule changes the time, not the hits
        torch.testing.assert_close(res.t, ref.t, rtol=0, atol=1e-5)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("use_cache", [False, True])
def test_chunked_and_column_network_outputs_trace_the_same(strategy, use_cache):
    """A network call split into chunks, and a network that returns a non-contiguous column [N,1], give the
    trace of one call per step returning [N], bit for bit (a single call's values are used without a copy)."""
    shape = SHAPES["union"]

    def column(x):  # the SDF as column 0 of a wider output, as a network with features would return it
        return torch.cat([shape(x)[:, None], x], 1)[:, :1]

    o, d = camera_rays(700, seed=3)
    res = [RayTracer(strategy=strategy, cache=SDFCache() if use_cache else None, chunk_size=cs)(f, o, d)
           for f, cs in ((shape, 65536), (shape, 37), (column, 65536))]
    for r in res[1:]:
        assert torch.equal(r.hit, res[0].hit) and torch.equal(r.t, res[0].t)
        assert torch.equal(r.min_sdf, res[0].min_sdf) and r.num_sdf_evals == res[0].num_sdf_evals
