"""RayTracer: batched ray/surface intersection of a neural SDF with the headrecon kernels.

Two strategies, both returning the first surface crossing of each ray inside the bounding sphere:

* ``"sphere"`` (IDR): sphere tracing from the near end of each ray segment and, for rays still marching after
  ``back_after`` steps (IDR: from the start), from its far end too, compacting the live walkers each step so the
  network only sees them; rays that did not converge within ``max_steps`` go to the coarse/fine search inside the
  bracket the walkers left; rays whose walkers met are misses.
* ``"search"`` (SIRA++): on every ray, N_c uniform samples from near to far, the first sign change, N_f
  samples in that bracket, then N_s steps of secant (regula falsi, Illinois) refinement.
* ``"auto"``: picked per device by measurement: the first batch a tracer sees on a device is traced with both
  strategies (same hits), both are timed, and the faster one is kept for that device (``tracer.auto_choice``).

An optional :class:`SDFCache` answers lookups far from the surface without the network. Everything runs
without autograd; :func:`headrecon.render.surface_points` then makes the hits differentiable.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable

import torch
from torch.nn.utils import parametrize

from .. import _backend, _sync, ops
from ..ops import _checks
from ..ops.reference import ACTIVE, CONVERGED, IDLE, INSIDE, MET
from .cache import SDFCache

SdfFn = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class TraceResult:
    """Per-ray output of :class:`RayTracer` (R rays).

    t [R]: ray parameter of the hit (hit rays) or of the minimum-SDF sample (other rays that cross the bounding
    sphere; for rays that miss it, the point of closest approach to the centre).
    hit [R] bool; points [R,3] = o + t d; min_sdf [R]: network SDF at min_sdf_t (0 for hits, where
    min_sdf_t = t; NaN when ``compute_min_sdf=False`` for non-hit rays); min_sdf_t [R];
    ray_mask [R] bool: the ray crosses the bounding sphere; near/far [R]: its segment;
    num_sdf_evals: points sent to ``sdf_fn``; stats: timings (network seconds, total seconds), network calls,
    counts per phase.
    ``RayTracer.totals`` sums the numeric stats over the tracer's traces. (Hit counts are ``hit.sum()``: the stats
    hold host counters only, so that a trace costs no extra device sync for them.)
    """

    t: torch.Tensor
    hit: torch.Tensor
    points: torch.Tensor
    min_sdf: torch.Tensor
    min_sdf_t: torch.Tensor
    ray_mask: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    num_sdf_evals: int
    stats: dict


class RayTracer:
    """Trace rays against the zero level set of ``sdf_fn(points[N,3]) -> sdf[N]``.

    Args:
        radius: bounding sphere (centred at the origin) that contains the surface.
        n_coarse, n_fine, n_secant: samples of the coarse/fine sign-flip search and secant steps (75, 25, 8).
        cache: an :class:`SDFCache`, or None to always call the network.
        backend: "auto", "cpp" or "torch" (the pure-PyTorch reference kernels), see :mod:`headrecon.ops`.
        strategy: "sphere", "search" or "auto" (measured per device on the first batch, see module docstring).
        sdf_threshold, max_steps, step_scale: sphere tracing convergence on |sdf| (1e-5; IDR uses 5e-5, which
            leaves t errors near 1e-4 at oblique incidence), step limit (30: IDR uses 10, which sends ~40% of the
            rays of a geometric-init network to the far costlier search, see README), step fraction.
        chunk_size: largest number of points sent to ``sdf_fn`` in one call.
        amp: run ``sdf_fn`` under float16 autocast on CUDA (t, positions and secant math stay float32).
        compute_min_sdf: also find the minimum-SDF point of rays without a hit (silhouette loss).
        min_sdf_mode: for the sphere strategy, how misses get it: "walk" (default: the smallest SDF the walkers
            sampled, no extra network evaluations; sphere tracing takes its smallest steps where the ray passes
            closest to the surface) or "scan" (IDR: N_c uniform samples over the segment). The search strategy
            always uses its coarse samples.
        coarse_chunks: evaluate the N_c coarse samples front to back in this many chunks, dropping rays that found
            their first sign change (same result as all at once, fewer evaluations; 1 = fully parallel, SIRA++).
        fine_chunks: the same for the N_f fine samples of each bracket (5: about 40 % fewer fine evaluations).
        cache_step_factor: with a cache, sphere tracing may run up to this many times ``max_steps`` iterations,
            since ``max_steps`` counts network evaluations per walker and cached steps are free.
        back_after: the sphere-tracing step after which the rays still marching also start a walker back from the
            far end. 0: from the start, as IDR; None (default): per device, 0 on CUDA, where network calls
            (rounds) cost, and ``max_steps // 2`` on the CPU, where evaluations do (a hit ray's back walker marches
            for nothing while its front walker converges; started late, back walkers still narrow the search
            bracket of the slow, grazing rays); ``>= max_steps``: never.
        single_thread_below: on the CPU, network calls of fewer points than this run on one torch thread (torch's
            setting is restored after each call; 0 = always torch's setting). Sphere tracing sends many calls of a
            few hundred to a few thousand points; on a busy machine a multi-threaded GEMM that small stalls
            waiting for its other threads, on a quiet one the threads still shorten it. The default, 1024, keeps
            the engine within a third of IDR's time in both conditions (docs/results/engine-benchmarks.md). A
            fixed rule, never a measured choice: one thread and several can round differently, and the same
            command must give the same mesh.
        secant_tol: 0 (default): every bracketed ray takes all ``n_secant`` secant steps; > 0: a ray leaves the
            refinement once the SDF at its proposal is within ``secant_tol`` (e.g. ``sdf_threshold``), and the
            network sees only the rays left (about 20 % fewer network calls per iteration for ``sira``; over three
            seeds it ended worse on one of two scenes, so it is off: docs/results/engine-benchmarks.md).
        profile: synchronise CUDA around network calls so that ``stats["network_s"]`` is exact.
    """

    def __init__(self, radius: float = 1.0, n_coarse: int = 75, n_fine: int = 25, n_secant: int = 8,
                 cache: SDFCache | None = None, backend: str = "auto", strategy: str = "auto",
                 sdf_threshold: float = 1e-5, max_steps: int = 30, step_scale: float = 1.0,
                 chunk_size: int = 65536, amp: bool = False, compute_min_sdf: bool = True,
                 min_sdf_mode: str = "walk", coarse_chunks: int = 4, fine_chunks: int = 5,
                 cache_step_factor: int = 4, back_after: int | None = None, single_thread_below: int = 1024,
                 secant_tol: float = 0.0, profile: bool = False):
        if strategy not in ("auto", "sphere", "search"):
            raise ValueError(f"strategy must be 'auto', 'sphere' or 'search', got {strategy!r}")
        if min_sdf_mode not in ("walk", "scan"):
            raise ValueError(f"min_sdf_mode must be 'walk' or 'scan', got {min_sdf_mode!r}")
        if backend not in ops.BACKENDS:
            raise ValueError(f"backend must be one of {ops.BACKENDS}, got {backend!r}")
        if not radius > 0:
            raise ValueError(f"radius must be positive, got {radius}")
        if n_coarse < 2 or n_fine < 0 or n_secant < 0 or max_steps < 0 or chunk_size < 1:
            raise ValueError("need n_coarse >= 2, n_fine >= 0, n_secant >= 0, max_steps >= 0, chunk_size >= 1")
        self.radius = float(radius)
        self.n_coarse, self.n_fine, self.n_secant = int(n_coarse), int(n_fine), int(n_secant)
        self.cache = cache.bind(self.radius) if cache is not None else None
        self.backend = backend
        self.strategy = strategy
        self.sdf_threshold = float(sdf_threshold)
        self.max_steps = int(max_steps)
        self.step_scale = float(step_scale)
        self.chunk_size = int(chunk_size)
        self.amp = bool(amp)
        self.compute_min_sdf = bool(compute_min_sdf)
        self.min_sdf_mode = min_sdf_mode
        self.coarse_chunks = int(coarse_chunks)
        self.fine_chunks = int(fine_chunks)
        self.cache_step_factor = int(cache_step_factor)
        self.back_after = None if back_after is None else int(back_after)
        if self.back_after is not None and self.back_after < 0:
            raise ValueError(f"back_after must be >= 0 or None, got {back_after}")
        self.single_thread_below = int(single_thread_below)
        self.secant_tol = float(secant_tol)
        if not self.secant_tol >= 0:
            raise ValueError(f"secant_tol must be >= 0, got {secant_tol}")
        if self.coarse_chunks < 1 or self.fine_chunks < 1 or self.cache_step_factor < 1:
            raise ValueError("coarse_chunks, fine_chunks and cache_step_factor must be >= 1")
        self.profile = bool(profile)
        self.auto_choice: dict[str, dict] = {}  # device -> {"strategy", "seconds": {strategy: s}}
        self.totals: dict[str, float] = {}  # running sums of the numeric per-trace stats (host counters, no sync)

    # ------------------------------------------------------------------ network evaluation
    def _call(self, sdf_fn: SdfFn, pts: torch.Tensor, st: dict) -> torch.Tensor:
        """Evaluate the network in chunks, validate its output, count and time it."""
        n = pts.shape[0]
        if n == 0:
            return torch.empty(0, device=pts.device, dtype=pts.dtype)
        # one chunk: its values are returned without a copy; several: written into one tensor
        out = None if n <= self.chunk_size else torch.empty(n, device=pts.device, dtype=pts.dtype)
        use_amp = self.amp and pts.device.type == "cuda"
        ctx = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
        sync = self.profile and pts.device.type == "cuda"
        max_threads = torch.get_num_threads() if pts.device.type == "cpu" else 1
        for s in range(0, n, self.chunk_size):
            chunk = pts[s:s + self.chunk_size]
            if sync:
                torch.cuda.synchronize(pts.device)
            one = max_threads > 1 and chunk.shape[0] < self.single_thread_below
            if one:
                torch.set_num_threads(1)
            t0 = time.perf_counter()
            try:
                with ctx:
                    v = sdf_fn(chunk)
            finally:
                if one:
                    torch.set_num_threads(max_threads)
            if sync:
                torch.cuda.synchronize(pts.device)
            st["network_s"] += time.perf_counter() - t0
            st["network_calls"] += 1
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"sdf_fn must return a torch.Tensor, got {type(v).__name__}")
            if v.numel() != chunk.shape[0] or (v.dim() == 2 and v.shape[1] != 1) or v.dim() > 2:
                raise ValueError(f"sdf_fn must map points [N,3] to sdf [N] (or [N,1]); got {list(v.shape)} "
                                 f"for N={chunk.shape[0]}")
            if not v.is_floating_point():
                raise TypeError(f"sdf_fn must return floating-point values, got {v.dtype}")
            v = v.reshape(-1).to(device=pts.device, dtype=pts.dtype)
            if out is None:
                out = v.contiguous()
            else:
                out[s:s + chunk.shape[0]] = v
        # checked for non-finite values once per trace (_trace): no host sync and no reduction per call (callers
        # read the values, never write them)
        st["outputs"].append(out)
        st["num_sdf_evals"] += n
        return out

    def _eval(self, sdf_fn: SdfFn, pts: torch.Tensor, st: dict, return_need: bool = False):
        """SDF (or, where the cache answers, a lower bound of it) at pts [N,3]; with ``return_need`` also the mask
        of the points the network evaluated (None = all of them)."""
        if self.cache is None or pts.shape[0] == 0:
            vals = self._call(sdf_fn, pts, st)
            return (vals, None) if return_need else vals
        vals, need = self.cache.query(pts, backend=self.backend)
        idx = _sync.nonzero(need)
        self.cache.queries += pts.shape[0]
        self.cache.hits += pts.shape[0] - idx.shape[0]
        if idx.numel():
            p = pts[idx]
            v = self._call(sdf_fn, p, st)
            vals[idx] = v
            self.cache.update(p, v, backend=self.backend)
        return (vals, need) if return_need else vals

    # ------------------------------------------------------------------ coarse/fine search
    def _front_to_back(self, sdf_fn, pts, chunks: int, st: dict, counter: str) -> torch.Tensor:
        """SDF at the samples ``pts [M, n, 3]`` of M rays, evaluated front to back in ``chunks`` chunks: a ray stops
        once it has a negative sample, and its later samples stay +inf. Its first sign change is then known and
        its later samples cannot change the search's result (hit rays do not use the minimum), so the outcome
        equals evaluating all n samples at once (chunks = 1, as SIRA++ does), with fewer evaluations."""
        m, n = pts.shape[0], pts.shape[1]
        out = torch.full((m, n), float("inf"), dtype=pts.dtype, device=pts.device)
        rows = torch.arange(m, device=pts.device)
        k = max(1, min(int(chunks), n))
        edges = [round(i * n / k) for i in range(k + 1)]
        for a, e in zip(edges[:-1], edges[1:]):
            if rows.numel() == 0:
                break
            vals = self._eval(sdf_fn, pts[rows, a:e].reshape(-1, 3), st).view(-1, e - a)
            st[counter] += vals.numel()
            out[rows, a:e] = vals
            rows = rows[_sync.nonzero(~(vals < 0).any(1))]
        return out

    def _search(self, sdf_fn, o, d, ray_idx, lo, hi, st):
        """Coarse/fine sign-flip search + secant on rays ray_idx over [lo, hi].

        Returns hit [M] bool, t [M] (hit or minimum-SDF sample), min_sdf [M], min_t [M]."""
        b = self.backend
        n = self.n_coarse
        t_c, p_c = ops.search_samples(o, d, ray_idx, lo, hi, n, False, backend=b)
        s_c = self._front_to_back(sdf_fn, p_c, self.coarse_chunks, st, "evals_coarse")
        first, t_lo, t_hi, s_lo, s_hi, min_sdf, min_t = ops.search_select(t_c, s_c, check_finite=False, backend=b)
        hit = first >= 0
        t = torch.where(first == 0, t_c[:, 0], min_t)
        br = _sync.nonzero(first > 0)
        if br.numel():
            rb = ray_idx[br]
            tl, th, sl, sh = t_lo[br], t_hi[br], s_lo[br], s_hi[br]
            if self.n_fine > 0:
                t_f, p_f = ops.search_samples(o, d, rb, tl, th, self.n_fine, True, backend=b)
                # the bracket ends with the negative s_hi, so unevaluated (+inf) fine samples never matter either
                s_f = self._front_to_back(sdf_fn, p_f, self.fine_chunks, st, "evals_fine")
                t_all = torch.cat([tl[:, None], t_f, th[:, None]], 1)
                s_all = torch.cat([sl[:, None], s_f, sh[:, None]], 1)
                _, tl, th, sl, sh, _, _ = ops.search_select(t_all, s_all, check_finite=False, backend=b)
            t[br] = self._secant(sdf_fn, o, d, rb, tl, th, sl, sh, st)
        return hit, t, min_sdf, min_t

    def _secant(self, sdf_fn, o, d, rb, tl, th, sl, sh, st):
        """Regula falsi (Illinois) on the brackets [tl, th] of rays rb (SDF sl >= 0 > sh); returns t [M]: the
        proposal after ``n_secant`` steps.

        With ``secant_tol > 0`` a ray whose evaluated proposal has |sdf| <= secant_tol keeps that proposal and
        leaves the refinement; rays leave as they converge, so the network sees only the unconverged ones and the
        loop ends once none is left."""
        b = self.backend
        side = torch.zeros(rb.shape[0], dtype=torch.int32, device=o.device)
        tm = ops.secant_step(tl, th, sl, sh, side, update=False, backend=b)
        tol = self.secant_tol
        out, live = None, None  # with a tolerance: the result, and the indices into it of the rays left (None: all)
        for _ in range(self.n_secant):
            pm = ops.ray_points(o, d, rb, tm[:, None], backend=b).view(-1, 3)
            sm = self._eval(sdf_fn, pm, st)
            st["evals_secant"] += pm.shape[0]
            st["secant_steps"] += 1
            nxt = ops.secant_step(tl, th, sl, sh, side, tm, sm, update=True, backend=b)
            if tol <= 0:
                tm = nxt
                continue
            done = sm.abs() <= tol
            res = torch.where(done, tm, nxt)
            if live is None:
                out = res
            else:
                out[live] = res
            keep = _sync.nonzero(~done)
            if keep.numel() == 0:
                break
            if keep.numel() < done.numel():
                live = keep if live is None else live[keep]
                rb, tl, th, sl, sh, side = rb[keep], tl[keep], th[keep], sl[keep], sh[keep], side[keep]
                nxt = nxt[keep]
            tm = nxt
        return tm if out is None else out

    # ------------------------------------------------------------------ sphere tracing
    def _sphere_trace(self, sdf_fn, o, d, near, far, mask, st):
        """Per-ray status [R,2] and t [R,2] of the front/back walkers after max_steps, and the smallest SDF any
        walker of the ray sampled (min_sdf [R], at min_t [R]; +inf when none was sampled)."""
        b = self.backend
        # the compiled kernels without the public ops' Python checks (the extension makes the same checks; these
        # tensors are the tracer's own), or None for the reference kernels
        ext = _backend.get_ext() if ops.resolve_backend(b, o) == "cpp" else None
        r = o.shape[0]
        t = torch.stack([near, far], 1).reshape(-1).contiguous()
        dt = torch.zeros_like(t)
        cap = torch.full_like(t, float("inf"))
        wmin = torch.full_like(t, float("inf"))
        wmin_t = torch.zeros_like(t)
        status = (mask.to(torch.int32) * ACTIVE).repeat_interleave(2).contiguous()
        back_after = self.resolved_back_after(o.device)
        if back_after > 0:  # the back walkers wait at far (idle) until then: a front walker meets them on a miss
            status[1::2] = IDLE
        # max_steps bounds the network evaluations of each walker; steps the cache answers are free, so with a
        # cache the loop may run longer (at most cache_step_factor * max_steps iterations).
        n_net = torch.zeros_like(status) if self.cache is not None else None
        iters = self.max_steps * (self.cache_step_factor if self.cache is not None else 1)
        for it in range(iters):
            if it == back_after and it > 0:  # rays still marching get their back walker (from far)
                front = status[0::2]
                status[1::2] = torch.where(front == ACTIVE, front, status[1::2])
            # without a cache every step evaluates every walker, so none has reached max_steps inside the loop
            alive = status == ACTIVE
            walkers = _sync.nonzero(alive if n_net is None else alive & (n_net < self.max_steps))
            if walkers.numel() == 0:
                break
            tw = t[walkers][:, None]
            pts = (ext.ray_points(o, d, walkers // 2, tw) if ext is not None else
                   ops.ray_points(o, d, walkers // 2, tw, backend=b)).view(-1, 3)
            sdf, need = self._eval(sdf_fn, pts, st, return_need=True)
            if n_net is not None:
                n_net.index_add_(0, walkers, torch.ones_like(walkers, dtype=n_net.dtype) if need is None
                                 else need.to(n_net.dtype))
            st["evals_sphere"] += pts.shape[0]
            st["sphere_steps"] += 1
            if ext is not None:
                ext.sphere_trace_step(t, dt, cap, status, wmin, wmin_t, walkers, sdf, self.sdf_threshold,
                                      self.step_scale)
            else:
                ops.sphere_trace_step(t, dt, cap, status, wmin, wmin_t, walkers, sdf, self.sdf_threshold,
                                      self.step_scale, backend=b)
        wmin, wmin_t = wmin.view(r, 2), wmin_t.view(r, 2)
        back = wmin[:, 1] < wmin[:, 0]
        return (status.view(r, 2), t.view(r, 2), torch.where(back, wmin[:, 1], wmin[:, 0]),
                torch.where(back, wmin_t[:, 1], wmin_t[:, 0]))

    # ------------------------------------------------------------------ main entry
    def resolved_back_after(self, device: torch.device) -> int:
        """The step at which back walkers start on ``device`` (see ``back_after``)."""
        if self.back_after is not None:
            return self.back_after
        return 0 if torch.device(device).type == "cuda" else self.max_steps // 2

    def resolved_strategy(self, device: torch.device) -> str | None:
        """The strategy used on ``device`` (None while "auto" has not measured that device yet)."""
        if self.strategy != "auto":
            return self.strategy
        choice = self.auto_choice.get(str(device))
        return choice["strategy"] if choice else None

    @torch.no_grad()
    def __call__(self, sdf_fn: SdfFn, origins: torch.Tensor, dirs: torch.Tensor) -> TraceResult:
        """Trace rays ``origins [R,3] + t dirs [R,3]`` (dirs need not be unit; t is in units of |dir|).

        The trace runs under ``torch.nn.utils.parametrize.cached()``: parametrized weights (e.g. the weight norm
        of IDR networks) are computed once per trace instead of once per network call; without autograd they
        cannot change during a trace.
        """
        with parametrize.cached():
            if isinstance(origins, torch.Tensor) and self.resolved_strategy(origins.device) is None:
                return self._measure_auto(sdf_fn, origins, dirs)
            return self._trace(sdf_fn, origins, dirs, self.resolved_strategy(origins.device))

    def _measure_auto(self, sdf_fn, origins, dirs):
        results, seconds = {}, {}
        for strategy in ("sphere", "search"):
            if origins.device.type == "cuda":
                torch.cuda.synchronize(origins.device)
            t0 = time.perf_counter()
            results[strategy] = self._trace(sdf_fn, origins, dirs, strategy)
            if origins.device.type == "cuda":
                torch.cuda.synchronize(origins.device)
            seconds[strategy] = time.perf_counter() - t0
        best = min(seconds, key=seconds.get)
        if origins.shape[0] >= 256:  # too small a batch says nothing about the speed: measure again next time
            self.auto_choice[str(origins.device)] = {"strategy": best, "seconds": seconds}
        return results[best]

    def _trace(self, sdf_fn: SdfFn, origins: torch.Tensor, dirs: torch.Tensor, strategy: str) -> TraceResult:
        if isinstance(origins, torch.Tensor) and isinstance(dirs, torch.Tensor):
            origins, dirs = origins.contiguous(), dirs.contiguous()
        _checks.floating(origins, "origins", shape=(-1, 3))
        _checks.floating(dirs, "dirs", origins, shape=(origins.shape[0], 3))
        if origins.shape[0]:  # one host sync for both checks
            bad = torch.stack([(~torch.isfinite(origins)).any() | (~torch.isfinite(dirs)).any(),
                               ((dirs * dirs).sum(-1) == 0).any()])
            if _sync.item(bad.any()):
                raise ValueError("origins/dirs contain NaN or inf" if bool(bad[0]) else "dirs contain zero vectors")
        st = dict(num_sdf_evals=0, network_s=0.0, network_calls=0, evals_sphere=0, evals_coarse=0, evals_fine=0,
                  evals_secant=0, evals_min=0, sphere_steps=0, secant_steps=0, outputs=[])
        t_start = time.perf_counter()
        # trace along unit directions (sphere tracing steps by the SDF value, a distance) and report t in units of
        # |dir|; unit directions are used as given, bit for bit
        length = dirs.norm(dim=-1)
        length = torch.where((length - 1.0).abs() <= 1e-6, torch.ones_like(length), length)
        o, d, b = origins, dirs / length[:, None], self.backend
        r = o.shape[0]
        st["strategy"] = strategy
        near, far, mask = ops.ray_sphere_intersect(o, d, self.radius, backend=b)
        hit = torch.zeros(r, dtype=torch.bool, device=o.device)
        # rays that miss the sphere: closest approach to the centre
        t = torch.clamp(-(o * d).sum(-1) / (d * d).sum(-1).clamp(min=1e-30), min=0)
        min_sdf = torch.full_like(t, float("nan"))
        min_t = t.clone()
        needs_min = torch.zeros_like(hit)  # non-hit rays whose min_sdf must come from the network

        if strategy == "search":
            idx = _sync.nonzero(mask)
            if idx.numel():
                h, ts, ms, mt = self._search(sdf_fn, o, d, idx, near[idx], far[idx], st)
                hit[idx], t[idx], min_sdf[idx], min_t[idx] = h, ts, ms, mt
        else:
            status, tw, wmin, wmin_t = self._sphere_trace(sdf_fn, o, d, near, far, mask, st)
            min_sdf = torch.where(mask, wmin, min_sdf)
            min_t = torch.where(mask, wmin_t, min_t)
            front, back = status[:, 0], status[:, 1]
            conv = (front == CONVERGED) | (front == INSIDE)
            hit |= conv
            t = torch.where(conv, tw[:, 0], t)
            unresolved = (front == ACTIVE) | ((front == MET) & (back == CONVERGED))
            idx = _sync.nonzero(unresolved)
            if idx.numel():
                f = front[idx]
                lo = torch.where(f == ACTIVE, tw[idx, 0], near[idx])
                hi = torch.where(back[idx] == ACTIVE, tw[idx, 1], far[idx])
                h, ts, ms, mt = self._search(sdf_fn, o, d, idx, lo, hi, st)
                lower = ms < min_sdf[idx]  # the search covered [lo, hi]; the walkers the rest of the segment
                hit[idx], t[idx] = h, ts
                min_sdf[idx] = torch.where(lower, ms, min_sdf[idx])
                min_t[idx] = torch.where(lower, mt, min_t[idx])
            if self.compute_min_sdf and self.min_sdf_mode == "scan":
                miss = _sync.nonzero(mask & ~hit & ~unresolved)
                if miss.numel():  # walkers met: the minimum along the whole segment (as IDR does)
                    n = self.n_coarse
                    t_c, p_c = ops.search_samples(o, d, miss, near[miss], far[miss], n, False, backend=b)
                    s_c = self._eval(sdf_fn, p_c.view(-1, 3), st).view(-1, n)
                    st["evals_min"] += miss.numel() * n
                    sel = ops.search_select(t_c, s_c, check_finite=False, backend=b)
                    min_sdf[miss], min_t[miss] = sel[5], sel[6]

        nohit = ~hit
        if self.compute_min_sdf:
            t = torch.where(nohit, min_t, t)
            # min_sdf must be a network value: re-evaluate where it is missing or came from the cache
            needs_min = nohit & (~mask | (self.cache is not None))
            idx = _sync.nonzero(needs_min)
            if idx.numel():
                p = ops.ray_points(o, d, idx, t[idx][:, None], backend=b).view(-1, 3)
                min_sdf[idx] = self._call(sdf_fn, p, st)
                st["evals_min"] += idx.numel()
        min_sdf = torch.where(hit, torch.zeros_like(min_sdf), min_sdf)
        min_t = torch.where(hit, t, min_t)
        points = o + t[:, None] * d
        t, min_t, near, far = t / length, min_t / length, near / length, far / length
        outputs = st.pop("outputs")
        nonfinite = (~torch.isfinite(torch.cat(outputs))).sum() if outputs else None
        if nonfinite is not None and _sync.item(nonfinite):
            raise ValueError(f"sdf_fn returned {int(nonfinite)} non-finite value(s) (NaN/inf) during this trace; "
                             "check the network (e.g. diverged training) before tracing")
        st["total_s"] = time.perf_counter() - t_start
        st["rays"] = r
        for k, v in st.items():
            if isinstance(v, (int, float)):
                self.totals[k] = self.totals.get(k, 0) + v
        return TraceResult(t=t, hit=hit, points=points, min_sdf=min_sdf, min_sdf_t=min_t, ray_mask=mask,
                           near=near, far=far, num_sdf_evals=st["num_sdf_evals"], stats=st)

    trace = __call__
