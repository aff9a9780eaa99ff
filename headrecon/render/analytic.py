"""Analytic SDFs with exact ray intersections: the ground truth the tracer is tested against, and cheap
stand-ins for a network in examples and benchmarks.

Each shape is callable (points [N,3] -> sdf [N], differentiable) and has ``intersect(origins, dirs)`` giving
the exact first hit (hit [R] bool, t [R]) for t >= 0 (closed form for spheres and boxes; a dense float64 scan
plus bisection for the torus).
"""
from __future__ import annotations

import torch


class Sphere:
    def __init__(self, radius=0.5, center=(0.0, 0.0, 0.0)):
        self.radius = radius
        self.center = torch.as_tensor(center, dtype=torch.float64)

    def __call__(self, x):
        return (x - self.center.to(x)).norm(dim=-1) - self.radius

    def intersect(self, o, d):
        o64, d64 = o.double() - self.center.to(o.device), d.double()
        a = (d64 * d64).sum(-1)
        b = (o64 * d64).sum(-1)
        c = (o64 * o64).sum(-1) - self.radius ** 2
        disc = b * b - a * c
        s = disc.clamp(min=0).sqrt()
        t0 = (-b - s) / a
        inside = c < 0
        hit = (disc >= 0) & ((t0 >= 0) | inside)
        t = torch.where(inside, torch.zeros_like(t0), t0)
        return hit, torch.where(hit, t, torch.zeros_like(t))


class Box:
    """Axis-aligned box with half extents ``half`` (exact SDF, exact slab intersection)."""

    def __init__(self, half=(0.4, 0.3, 0.5)):
        self.half = torch.as_tensor(half, dtype=torch.float64)

    def __call__(self, x):
        q = x.abs() - self.half.to(x)
        return q.clamp(min=0).norm(dim=-1) + q.max(-1).values.clamp(max=0)

    def intersect(self, o, d):
        o64, d64, h = o.double(), d.double(), self.half.to(o.device)
        with torch.no_grad():
            inv = 1.0 / torch.where(d64 == 0, torch.full_like(d64, 1e-300), d64)
            ta, tb = (-h - o64) * inv, (h - o64) * inv
            tmin = torch.minimum(ta, tb).max(-1).values
            tmax = torch.maximum(ta, tb).min(-1).values
        inside = (o64.abs() < h).all(-1)
        hit = (tmax >= torch.clamp(tmin, min=0)) & (tmax >= 0)
        t = torch.where(inside, torch.zeros_like(tmin), tmin.clamp(min=0))
        return hit, torch.where(hit, t, torch.zeros_like(t))


class Union:
    """Union (min) of shapes; the first hit is the nearest of the parts' first hits."""

    def __init__(self, *parts):
        self.parts = parts

    def __call__(self, x):
        return torch.stack([p(x) for p in self.parts], 0).min(0).values

    def intersect(self, o, d):
        hs, ts = zip(*(p.intersect(o, d) for p in self.parts))
        t = torch.stack([torch.where(h, t, torch.full_like(t, float("inf"))) for h, t in zip(hs, ts)]).min(0).values
        hit = torch.isfinite(t)
        return hit, torch.where(hit, t, torch.zeros_like(t))


class Torus:
    """Torus around the y axis: major radius R, minor radius r (exact SDF)."""

    def __init__(self, major=0.5, minor=0.2):
        self.major, self.minor = major, minor

    def __call__(self, x):
        q = torch.stack([torch.sqrt(x[..., 0] ** 2 + x[..., 2] ** 2) - self.major, x[..., 1]], -1)
        return q.norm(dim=-1) - self.minor

    def intersect(self, o, d, t_max=6.0, n=6001, iters=60):
        return dense_first_hit(self, o, d, t_max=t_max, n=n, iters=iters)


@torch.no_grad()
def dense_first_hit(sdf, o, d, t_max=6.0, n=6001, iters=60):
    """First sign change of sdf along each ray on a dense float64 grid of [0, t_max], refined by bisection.
    Exact up to features thinner than t_max/(n-1)."""
    o64, d64 = o.double(), d.double()
    ts = torch.linspace(0, t_max, n, dtype=torch.float64, device=o.device)
    hit = torch.zeros(o.shape[0], dtype=torch.bool, device=o.device)
    t_out = torch.zeros(o.shape[0], dtype=torch.float64, device=o.device)
    for s in range(0, o.shape[0], 256):
        oo, dd = o64[s:s + 256], d64[s:s + 256]
        vals = sdf((oo[:, None, :] + ts[None, :, None] * dd[:, None, :]).reshape(-1, 3)).view(oo.shape[0], n)
        neg = vals < 0
        has = neg.any(1)
        k = neg.to(torch.int32).argmax(1)
        lo = ts[(k - 1).clamp(min=0)]
        hi = ts[k]
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            fm = sdf(oo + mid[:, None] * dd)
            lo = torch.where(fm >= 0, mid, lo)
            hi = torch.where(fm >= 0, hi, mid)
        hit[s:s + 256] = has
        t_out[s:s + 256] = torch.where(k == 0, torch.zeros_like(lo), 0.5 * (lo + hi))
    return hit, torch.where(hit, t_out, torch.zeros_like(t_out))
