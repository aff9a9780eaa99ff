"""IDR's ray tracer (Yariv et al., NeurIPS 2020), re-implemented here as a baseline for benches/bench_tracer_idr.py.

Written from the paper's description and the parameters of its public configuration (``ray_tracer`` block:
bounding sphere 1, sdf_threshold 5e-5, line_search_step 0.5, line_step_iters 3, sphere_tracing_iters 10,
n_steps 100, n_secant_steps 8), in training mode (the mode a reconstruction spends its time in):

1. sphere tracing from both ends of each ray's chord of the bounding sphere, at most 10 steps; a step that lands
   inside (SDF < 0) is pulled back by a shrinking fraction of the step, up to 3 times; the network only sees the
   rays still marching (boolean-mask compaction, as the original);
2. rays that did not converge: 100 uniform samples between the two walkers, first sign change, 8 secant steps;
3. rays outside the object mask (and object rays without a hit): the minimal SDF over 100 random samples of the
   ray's chord (the silhouette loss's point).

Only what the timing and the hit comparison need is kept (no batching over cameras, no CUDA-only calls).
"""
from __future__ import annotations

import torch


class IDRTracer:
    def __init__(self, radius=1.0, sdf_threshold=5e-5, line_search_step=0.5, line_step_iters=3,
                 sphere_tracing_iters=10, n_steps=100, n_secant_steps=8, chunk=100000):
        self.radius, self.thr = radius, sdf_threshold
        self.lss, self.lsi, self.iters = line_search_step, line_step_iters, sphere_tracing_iters
        self.n_steps, self.n_secant, self.chunk = n_steps, n_secant_steps, chunk
        self.evals = 0
        self.batch_sizes: list[int] = []

    def _sdf(self, fn, pts):
        self.evals += pts.shape[0]
        if pts.shape[0] == 0:
            return pts.new_zeros(0)
        out = []
        for p in torch.split(pts, self.chunk):
            self.batch_sizes.append(p.shape[0])
            out.append(fn(p).reshape(-1))
        return torch.cat(out)

    @torch.no_grad()
    def __call__(self, fn, o, d, object_mask):
        """o, d [R,3] (d unit), object_mask [R] bool -> (hit [R], t [R], evaluations)."""
        self.evals = 0
        self.batch_sizes = []
        r = o.shape[0]
        od = (o * d).sum(-1)
        disc = od ** 2 - ((o * o).sum(-1) - self.radius ** 2)
        inter = disc > 0
        sq = disc.clamp(min=0).sqrt()
        near, far = (-od - sq).clamp(min=0), -od + sq
        start, end = near.clone(), far.clone()
        run_s, run_e = inter.clone(), inter.clone()
        pt = lambda t: o + t[:, None] * d  # noqa: E731
        s_next = torch.zeros(r)
        e_next = torch.zeros(r)
        s_next[run_s] = self._sdf(fn, pt(start)[run_s])
        e_next[run_e] = self._sdf(fn, pt(end)[run_e])
        it = 0
        while True:
            s_cur = torch.where(run_s, s_next, torch.zeros_like(s_next))
            e_cur = torch.where(run_e, e_next, torch.zeros_like(e_next))
            run_s = run_s & (s_cur > self.thr) & (start < end)
            run_e = run_e & (e_cur > self.thr) & (start < end)
            if (not run_s.any() and not run_e.any()) or it == self.iters:
                break
            it += 1
            start = start + torch.where(s_cur > self.thr, s_cur, torch.zeros_like(s_cur))
            end = end - torch.where(e_cur > self.thr, e_cur, torch.zeros_like(e_cur))
            s_next = torch.zeros(r)
            e_next = torch.zeros(r)
            s_next[run_s] = self._sdf(fn, pt(start)[run_s])
            e_next[run_e] = self._sdf(fn, pt(end)[run_e])
            back_s, back_e = s_next < 0, e_next < 0
            k = 0
            while (back_s.any() or back_e.any()) and k < self.lsi:
                f = (1 - self.lss) / 2 ** k
                start = torch.where(back_s, start - f * s_cur, start)
                end = torch.where(back_e, end + f * e_cur, end)
                s_next[back_s] = self._sdf(fn, pt(start)[back_s])
                e_next[back_e] = self._sdf(fn, pt(end)[back_e])
                back_s, back_e = s_next < 0, e_next < 0
                k += 1
        hit = inter & (s_next >= 0) & (s_next <= self.thr) & (start < end)
        t = start.clone()
        sampled = run_s
        if sampled.any():
            idx = sampled.nonzero().flatten()
            steps = torch.linspace(0, 1, self.n_steps)
            z = start[idx, None] + steps * (end[idx] - start[idx])[:, None]
            p = o[idx, None] + z[..., None] * d[idx, None]
            v = self._sdf(fn, p.reshape(-1, 3)).view(-1, self.n_steps)
            rank = torch.sign(v) * torch.arange(self.n_steps, 0, -1, dtype=v.dtype)
            j = rank.argmin(-1)
            rows = torch.arange(idx.shape[0])
            crossed = (v[rows, j] <= 0) & (j > 0)
            hit[idx] = crossed
            t[idx] = torch.where(crossed, z[rows, j], z[rows, v.argmin(-1)])
            sec = crossed & object_mask[idx]
            if sec.any():
                si, js = idx[sec], j[sec]
                zl, zh = z[sec, js - 1], z[sec, js]
                fl, fh = v[sec, js - 1], v[sec, js]
                for _ in range(self.n_secant):
                    zm = zl - fl * (zh - zl) / torch.where((fh - fl).abs() > 1e-10, fh - fl, torch.ones_like(fh))
                    fm = self._sdf(fn, o[si] + zm[:, None] * d[si])
                    pos = fm > 0
                    zl, fl = torch.where(pos, zm, zl), torch.where(pos, fm, fl)
                    zh, fh = torch.where(pos, zh, zm), torch.where(pos, fh, fm)
                t[si] = zl
        # silhouette points: minimal SDF over random samples of the chord for rays outside the mask (and mask
        # rays without a hit) that the sampler did not already handle
        need = inter & ~sampled & (~object_mask | ~hit)
        if need.any():
            idx = need.nonzero().flatten()
            lo = torch.where(hit[idx] & ~object_mask[idx], t[idx], near[idx])
            z = lo[:, None] + torch.rand(self.n_steps) * (far[idx] - lo)[:, None]
            v = self._sdf(fn, (o[idx, None] + z[..., None] * d[idx, None]).reshape(-1, 3)).view(-1, self.n_steps)
            t[idx] = z[torch.arange(idx.shape[0]), v.argmin(-1)]
        return hit, t, self.evals
