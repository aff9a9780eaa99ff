"""Dense pure-PyTorch reference tracer: the readable oracle of the engine and its benchmark baseline.

Same algorithm as ``RayTracer(strategy="search")`` (N_c coarse samples, first sign change, N_f samples in the
bracket, N_s steps of regula-falsi refinement with the Illinois rule, with ``secant_tol > 0`` ending a ray's
refinement once |sdf| <= secant_tol, minimum-SDF sample for rays without a sign change) but written directly in
tensor code, independently of ``headrecon.ops``: every ray inside the bounding sphere is sampled densely (no
compaction, no cache, no sphere tracing), the way a plain PyTorch implementation does it.
"""
from __future__ import annotations

import torch


@torch.no_grad()
def reference_trace(sdf_fn, origins, dirs, radius=1.0, n_coarse=75, n_fine=25, n_secant=8, chunk_size=65536,
                    secant_tol=0.0):
    """Returns dict(t [R], hit [R] bool, min_sdf [R], min_sdf_t [R], ray_mask [R], num_sdf_evals int)."""
    o, d = origins, dirs
    r = o.shape[0]
    evals = [0]

    def f(p):
        out = torch.cat([sdf_fn(c).reshape(-1).to(p.dtype) for c in p.split(chunk_size)]) if p.shape[0] else \
            p.new_empty(0)
        evals[0] += p.shape[0]
        return out

    a = (d * d).sum(-1)
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - radius ** 2
    disc = b * b - a * c
    sq = disc.clamp(min=0).sqrt()
    near = ((-b - sq) / a).clamp(min=0)
    far = (-b + sq) / a
    mask = (disc > 0) & (far > 0)
    t_out = torch.clamp(-b / a, min=0)
    hit = torch.zeros(r, dtype=torch.bool, device=o.device)
    min_sdf = torch.full((r,), float("nan"), dtype=o.dtype, device=o.device)
    idx = mask.nonzero().squeeze(1)
    if idx.numel():
        oi, di, lo, hi = o[idx], d[idx], near[idx], far[idx]
        frac = torch.linspace(0, 1, n_coarse, dtype=o.dtype, device=o.device)
        ts = lo[:, None] * (1 - frac) + hi[:, None] * frac
        sd = f((oi[:, None] + ts[..., None] * di[:, None]).reshape(-1, 3)).view(-1, n_coarse)
        neg = sd < 0
        found = neg.any(1)
        k = neg.to(torch.int32).argmax(1)
        kmin = sd.argmin(1)
        rows = torch.arange(idx.numel(), device=o.device)
        ms, mt = sd[rows, kmin], ts[rows, kmin]
        t_hit = torch.where(found & (k == 0), ts[:, 0], mt)
        bi = (found & (k > 0)).nonzero().squeeze(1)
        if bi.numel():
            kb = k[bi]
            tl, th = ts[bi, kb - 1], ts[bi, kb]
            sl, sh = sd[bi, kb - 1], sd[bi, kb]
            ob, db = oi[bi], di[bi]
            if n_fine > 0:
                j = torch.arange(1, n_fine + 1, dtype=o.dtype, device=o.device) / (n_fine + 1)
                tf = tl[:, None] + (th - tl)[:, None] * j
                sf = f((ob[:, None] + tf[..., None] * db[:, None]).reshape(-1, 3)).view(-1, n_fine)
                tall = torch.cat([tl[:, None], tf, th[:, None]], 1)
                sall = torch.cat([sl[:, None], sf, sh[:, None]], 1)
                k2 = (sall < 0).to(torch.int32).argmax(1)
                rr = torch.arange(bi.numel(), device=o.device)
                tl, th, sl, sh = tall[rr, k2 - 1], tall[rr, k2], sall[rr, k2 - 1], sall[rr, k2]
            side = torch.zeros_like(tl, dtype=torch.int32)

            def propose(tl, th, sl, sh):
                den = sh - sl
                tm = torch.where(den != 0, tl - sl * (th - tl) / torch.where(den != 0, den, torch.ones_like(den)),
                                 0.5 * (tl + th))
                ok = (tm >= torch.minimum(tl, th)) & (tm <= torch.maximum(tl, th))
                return torch.where(ok, tm, 0.5 * (tl + th))

            tm = propose(tl, th, sl, sh)
            res, live = tm.clone(), torch.ones_like(tm, dtype=torch.bool)
            for _ in range(n_secant):
                sm = f(ob + tm[:, None] * db)
                up = sm >= 0
                sh2 = torch.where(up, torch.where(side == 1, sh * 0.5, sh), sm)
                sl2 = torch.where(up, sm, torch.where(side == 2, sl * 0.5, sl))
                tl, th = torch.where(up, tm, tl), torch.where(up, th, tm)
                sl, sh = sl2, sh2
                side = torch.where(up, torch.ones_like(side), torch.full_like(side, 2))
                nxt = propose(tl, th, sl, sh)
                if secant_tol > 0:  # a ray whose proposal has |sdf| <= secant_tol keeps it; the others go on
                    done = live & (sm.abs() <= secant_tol)
                    res = torch.where(live, torch.where(done, tm, nxt), res)
                    live = live & ~done
                    if not bool(live.any()):
                        break
                else:
                    res = nxt
                tm = nxt
            t_hit[bi] = res
        hit[idx] = found
        t_out[idx] = t_hit
        min_sdf[idx] = torch.where(found, torch.zeros_like(ms), ms)
    return dict(t=t_out, hit=hit, min_sdf=min_sdf, min_sdf_t=t_out.clone(), ray_mask=mask, num_sdf_evals=evals[0])
