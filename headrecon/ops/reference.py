"""Pure-PyTorch reference implementations of every headrecon kernel (``backend="torch"``).

They follow the per-element code of ``csrc/*/*.h`` step by step and are the oracle the C++/CUDA backends are
tested against (outputs, over many shapes). They work on any device and dtype torch supports.
"""
from __future__ import annotations

import math

import torch

# Status codes: keep in sync with csrc/common/hd.h (TraceStatus).
IDLE, ACTIVE, CONVERGED, MET, INSIDE = 0, 1, 2, 3, 4


def ray_sphere_intersect(origins, dirs, radius):
    a = (dirs * dirs).sum(-1)
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - radius * radius
    disc = b * b - a * c
    ok = (a > 0) & (disc > 0)
    s = torch.sqrt(torch.where(ok, disc, torch.zeros_like(disc)))
    a_safe = torch.where(ok, a, torch.ones_like(a))
    t0 = (-b - s) / a_safe
    t1 = (-b + s) / a_safe
    mask = ok & (t1 > 0)
    zero = torch.zeros_like(t0)
    near = torch.where(mask, torch.clamp(t0, min=0), zero)
    far = torch.where(mask, t1, zero)
    return near, far, mask


def sphere_trace_step(t, dt, cap, status, wmin, wmin_t, walkers, sdf, threshold, step_scale):
    """In place, like the kernel: walker pass, then per-ray pass."""
    if walkers.numel():
        w = walkers
        tw, dtw, capw = t[w], dt[w], cap[w]
        lower = sdf < wmin[w]
        wmin_t[w] = torch.where(lower, tw, wmin_t[w])
        wmin[w] = torch.where(lower, sdf, wmin[w])
        direction = torch.where((w % 2) == 1, -1.0, 1.0).to(t.dtype)
        st = status[w].clone()
        nan = torch.isnan(sdf)
        conv = ~nan & (sdf.abs() < threshold)
        neg = ~nan & ~conv & (sdf < 0)
        inside = neg & (dtw == 0)
        over = neg & (dtw != 0)
        pos = ~nan & ~conv & ~neg
        st[nan] = MET
        st[conv] = CONVERGED
        st[inside] = INSIDE
        half = dtw * 0.5
        step = torch.minimum(sdf * step_scale, capw)
        new_t = torch.where(over, tw - direction * half, torch.where(pos, tw + direction * step, tw))
        new_dt = torch.where(over, half, torch.where(pos, step, dtw))
        new_cap = torch.where(over, half, capw)
        t[w], dt[w], cap[w], status[w] = new_t, new_dt, new_cap, st
    s = status.view(-1, 2)
    tt = t.view(-1, 2)
    sf, sb = s[:, 0].clone(), s[:, 1].clone()
    met = (sf == ACTIVE) & (tt[:, 0] >= tt[:, 1])
    sf = torch.where(met, torch.full_like(sf, MET), sf)
    sb = torch.where(met & (sb == ACTIVE), torch.full_like(sb, MET), sb)
    sb = torch.where((sf != ACTIVE) & (sb == ACTIVE), torch.full_like(sb, IDLE), sb)
    s[:, 0], s[:, 1] = sf, sb


def ray_points(origins, dirs, ray_idx, t):
    return origins[ray_idx][:, None, :] + t[..., None] * dirs[ray_idx][:, None, :]


def search_samples(origins, dirs, ray_idx, lo, hi, n, interior):
    j = torch.arange(n, device=lo.device, dtype=lo.dtype)
    if interior:
        t = lo[:, None] + (hi - lo)[:, None] * ((j + 1) / (n + 1))[None, :]
    elif n <= 1:
        t = lo[:, None].expand(-1, n).clone()
    else:
        f = (j / (n - 1))[None, :]
        t = lo[:, None] * (1 - f) + hi[:, None] * f
    return t, ray_points(origins, dirs, ray_idx, t)


def search_select(t, sdf):
    m, n = t.shape
    neg = sdf < 0
    has = neg.any(1)
    first = torch.where(has, neg.to(torch.int32).argmax(1), torch.full((m,), -1, device=t.device)).long()
    if n:  # smallest sample, first on ties, NaN samples skipped (sample 0 when all are NaN), as the kernel
        nan = torch.isnan(sdf)
        key = torch.where(nan, torch.full_like(sdf, float("inf")), sdf)
        cand = key == key.min(1, keepdim=True).values
        num = cand & ~nan
        kmin = torch.where(num.any(1), num.to(torch.int32).argmax(1), cand.to(torch.int32).argmax(1))
    else:
        kmin = torch.zeros(m, dtype=torch.long, device=t.device)
    a = torch.where(first > 0, first - 1, torch.where(first == 0, torch.zeros_like(first), kmin))
    b = torch.where(first >= 0, first, kmin)

    def g(x, i):
        return x.gather(1, i[:, None]).squeeze(1)

    return [first, g(t, a), g(t, b), g(sdf, a), g(sdf, b), g(sdf, kmin), g(t, kmin)]


def _secant_propose(t_lo, t_hi, s_lo, s_hi):
    den = s_hi - s_lo
    safe = torch.where(den != 0, den, torch.ones_like(den))
    tm = torch.where(den != 0, t_lo - s_lo * (t_hi - t_lo) / safe, 0.5 * (t_lo + t_hi))
    ok = (tm >= torch.minimum(t_lo, t_hi)) & (tm <= torch.maximum(t_lo, t_hi))
    return torch.where(ok, tm, 0.5 * (t_lo + t_hi))


def secant_step(t_lo, t_hi, s_lo, s_hi, side, t_mid, s_mid, update):
    if update:
        up = s_mid >= 0
        new_s_hi = torch.where(up, torch.where(side == 1, s_hi * 0.5, s_hi), s_mid)
        new_s_lo = torch.where(up, s_mid, torch.where(side == 2, s_lo * 0.5, s_lo))
        t_lo.copy_(torch.where(up, t_mid, t_lo))
        t_hi.copy_(torch.where(up, t_hi, t_mid))
        s_lo.copy_(new_s_lo)
        s_hi.copy_(new_s_hi)
        side.copy_(torch.where(up, torch.ones_like(side), torch.full_like(side, 2)))
    return _secant_propose(t_lo, t_hi, s_lo, s_hi)


# ---- counter-based RNG, bit-exact with csrc/common/rng.h (int64 arithmetic wraps like uint64) ----
def _i64(c: int) -> int:
    c &= (1 << 64) - 1
    return c - (1 << 64) if c >= (1 << 63) else c


_GOLD, _C1, _C2 = _i64(0x9E3779B97F4A7C15), _i64(0xBF58476D1CE4E5B9), _i64(0x94D049BB133111EB)


def _srl(x, k):  # logical right shift of int64 bit patterns
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix64(z):
    z = z + _GOLD
    z = (z ^ _srl(z, 30)) * _C1
    z = (z ^ _srl(z, 27)) * _C2
    return z ^ _srl(z, 31)


def uniform(seed: int, stream: int, index: torch.Tensor) -> torch.Tensor:
    """Counter-based uniform in [0,1) (float64), identical to hr_uniform(seed, stream, index) in C++/CUDA."""
    h = _mix64(_i64(seed) ^ _mix64(_i64(stream) ^ _mix64(index.long())))
    return _srl(h, 11).double() * (1.0 / 9007199254740992.0)


def cache_voxel(points, radius, res):
    u = (points + radius) / (2 * radius) * res
    inside = ((u >= 0) & (u < res)).all(-1)
    i = torch.clamp(u.floor().long(), 0, res - 1)
    idx = (i[:, 0] * res + i[:, 1]) * res + i[:, 2]
    return torch.where(inside, idx, torch.full_like(idx, -1))


def cache_query(grid, points, radius, eps, p_force, seed, counter):
    res = grid.shape[0]
    diag = 2.0 * radius / res * math.sqrt(3.0)
    n = points.shape[0]
    u = uniform(seed, counter, torch.arange(n, device=points.device))
    v = cache_voxel(points, radius, res)
    c = torch.where(v >= 0, grid.reshape(-1)[v.clamp(min=0)], torch.full_like(points[:, 0], float("nan")))
    ok = (c >= eps) & ~(u < p_force)
    values = torch.where(ok, c - diag, torch.full_like(c, float("nan")))
    return values, ~ok


def cache_update(grid, points, values, radius):
    res = grid.shape[0]
    v = cache_voxel(points, radius, res)
    keep = (v >= 0) & ~torch.isnan(values)
    flat = grid.view(-1)
    flat.scatter_reduce_(0, v[keep], values[keep], reduce="amin", include_self=False)


# ---------------------------------------------------------------- multiresolution hash encoding (hash_grid.h)
HASH_PRIMES = (1, 2654435761, 805459861)


def _hash_level(points, R: int, S: int, radius, dirs=None):
    """Rows [N,8] and coefficients [N,8] of the 8 corners at resolution R (weights, or directional derivatives
    along ``dirs``), and the inside mask [N], as in ``hash_corners``."""
    u = (points + radius) / (2 * radius)
    inside = ((u >= 0) & (u <= 1)).all(dim=-1)
    u = torch.where(inside[:, None], u, torch.zeros_like(u))
    x = u * R
    c0 = torch.floor(x).clamp(max=R - 1)
    fr = x - c0
    c0 = c0.long()
    n1 = R + 1
    dense = n1 ** 3 <= S
    scale = R / (2 * radius)
    rows, coefs = [], []
    for c in range(8):
        b = ((c >> 2) & 1, (c >> 1) & 1, c & 1)
        cx, cy, cz = (c0[:, a] + b[a] for a in range(3))
        if dense:
            row = (cx * n1 + cy) * n1 + cz
        else:
            row = (cx * HASH_PRIMES[0]) ^ (cy * HASH_PRIMES[1]) ^ (cz * HASH_PRIMES[2])
            row = row & (S - 1)
        f = [fr[:, a] if b[a] else 1 - fr[:, a] for a in range(3)]
        if dirs is None:
            coef = f[0] * f[1] * f[2]
        else:
            s = [1.0 if b[a] else -1.0 for a in range(3)]
            coef = (dirs[:, 0] * s[0] * f[1] * f[2] + dirs[:, 1] * s[1] * f[0] * f[2]
                    + dirs[:, 2] * s[2] * f[0] * f[1]) * scale
        rows.append(row)
        coefs.append(coef)
    return torch.stack(rows, 1), torch.stack(coefs, 1), inside


def hash_encode(points, table, res, radius, dirs=None):
    """Features [N, L*F] (differentiable with torch autograd in points and table: the test oracle)."""
    L, S, F = table.shape
    outs = []
    for lvl in range(L):
        rows, coef, inside = _hash_level(points, int(res[lvl]), S, radius, dirs)
        val = (coef[:, :, None] * table[lvl][rows]).sum(1)  # [N, F]
        outs.append(torch.where(inside[:, None], val, torch.zeros_like(val)))
    return torch.cat(outs, 1) if outs else points.new_zeros(points.shape[0], 0)


def hash_encode_bwd_table(grad, points, res, dirs, S: int, F: int, radius):
    L = len(res)
    out = points.new_zeros(L, S, F)
    for lvl in range(L):
        rows, coef, inside = _hash_level(points, int(res[lvl]), S, radius, dirs)
        coef = coef * inside[:, None].to(coef.dtype)
        g = grad[:, lvl * F:(lvl + 1) * F]
        contrib = coef[:, :, None] * g[:, None, :]  # [N, 8, F]
        out[lvl].index_add_(0, rows.reshape(-1), contrib.reshape(-1, F))
    return out


def hash_encode_bwd_points(grad, points, table, res, radius):
    cols = []
    for a in range(3):
        e = torch.zeros_like(points)
        e[:, a] = 1
        cols.append((hash_encode(points, table, res, radius, dirs=e) * grad).sum(1))
    return torch.stack(cols, 1)


# ---------------------------------------------------------------- volume-rendering compositing (composite.h)
def composite(packed, sigmas, deltas, values):
    """(out [R,C], opacity [R], weights [S]) of packed rays, differentiable by torch autograd (the oracle).
    Vectorised over samples: exclusive per-ray sums of tau from one cumulative sum."""
    R, C = packed.shape[0], values.shape[1]
    start, count = packed[:, 0], packed[:, 1]
    ray_of = torch.repeat_interleave(torch.arange(R, device=packed.device), count)
    offsets = torch.cumsum(count, 0) - count
    idx = start[ray_of] + (torch.arange(ray_of.numel(), device=packed.device) - offsets[ray_of])
    tau = sigmas[idx] * deltas[idx]
    cs = torch.cumsum(tau, 0)
    excl = cs - tau
    first = torch.zeros(R, dtype=tau.dtype, device=tau.device)
    has = count > 0
    first[has] = excl[offsets[has]]
    excl = excl - first[ray_of]
    w = torch.exp(-excl) * (1 - torch.exp(-tau))
    out = values.new_zeros(R, C).index_add(0, ray_of, w[:, None] * values[idx])
    opacity = values.new_zeros(R).index_add(0, ray_of, w)
    weights = values.new_zeros(sigmas.shape[0]).index_put((idx,), w)
    return out, opacity, weights


def composite_loop(packed, sigmas, deltas, values):
    """The same, one ray at a time in plain Python (a second oracle, for the tests)."""
    R, C = packed.shape[0], values.shape[1]
    out, opacity = values.new_zeros(R, C), values.new_zeros(R)
    weights = values.new_zeros(sigmas.shape[0])
    outs, ops_, ws = [], [], {}
    for r in range(R):
        s0, n = int(packed[r, 0]), int(packed[r, 1])
        acc_o, acc_w, tau_sum = values.new_zeros(C), values.new_zeros(()), values.new_zeros(())
        for i in range(s0, s0 + n):
            tau = sigmas[i] * deltas[i]
            w = torch.exp(-tau_sum) * (1 - torch.exp(-tau))
            tau_sum = tau_sum + tau
            acc_o = acc_o + w * values[i]
            acc_w = acc_w + w
            ws[i] = w
        outs.append(acc_o)
        ops_.append(acc_w)
    if R:
        out, opacity = torch.stack(outs), torch.stack(ops_)
    if ws:
        weights = weights.index_put((torch.tensor(list(ws)),), torch.stack(list(ws.values())))
    return out, opacity, weights


def softplus(x, beta: float, threshold: float):
    """csrc/softplus/softplus.h's float32 softplus, operation for operation (bit for bit on float32 input)."""
    f = lambda c: torch.tensor(c, dtype=torch.float32, device=x.device)  # noqa: E731 - float32 constants
    x = x.to(torch.float32)
    beta32 = f(beta)
    z = beta32 * x
    m = -torch.abs(z)
    a = torch.where(m < -87.0, f(-87.0), m)
    n = (a * f(1.44269504088896341) + f(12582912.0)) - f(12582912.0)
    r = a - n * f(0.693145751953125)
    r = r - n * f(1.42860682030941723212e-6)
    r2 = r * r
    p = f(1.393364393e-3)
    for c in (8.363175206e-3, 4.166646674e-2, 1.666657627e-1, 0.5):
        p = p * r + f(c)
    p = (r2 * p + r) + f(1.0)
    scale = ((n.to(torch.int32) + 127) << 23).view(torch.float32)
    u = p * scale
    u = torch.where(m < -87.0, f(0.0), u)
    s = u / (f(2.0) + u)
    t = s * s
    q = f(1.343378723e-1)
    for c in (1.411697567e-1, 2.000383586e-1, 3.333331943e-1):
        q = q * t + f(c)
    s2 = s + s
    y = (torch.where(z > 0, z, f(0.0)) + (s2 + s2 * (t * q))) * (f(1.0) / beta32)
    return torch.where(z > f(threshold), x, y)
