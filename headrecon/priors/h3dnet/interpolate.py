"""Render shapes of a prior along a latent interpolation (H3D-Net Figure 4-style strip) to a PNG.

:func:`render_sdf` ray-traces the zero level set of any SDF in the unit sphere with
:class:`headrecon.render.RayTracer` from a pinhole camera orbiting the origin (yaw / pitch in degrees, +Y up,
yaw 0 = looking at the face along -Z), and shades the hits with their normals (autograd gradient of the SDF):
ambient + two directional lights + a little Blinn-Phong specular, on a white background.
:func:`render_interpolation` renders ``steps`` shapes ``z_t = (1 - t) z_a + t z_b`` side by side.

CLI: ``python -m headrecon.priors.h3dnet.interpolate [--prior PRIOR.pt] --a 0 --b 1 --steps 6 --out strip.png``
(``--a`` / ``--b``: training-latent indices or ``mean``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ...cli import add_debug_flag, run_command
from .model import ShapePrior, load_prior

__all__ = ["orbit_rays", "render_sdf", "interpolate_latents", "render_interpolation", "main"]


def orbit_rays(size: int, yaw_deg: float = 30.0, pitch_deg: float = 10.0, distance: float = 3.0,
               fill: float = 0.95, device="cpu"):
    """Rays [size*size, 3] (origins, unit directions) of a square pinhole camera looking at the origin."""
    yaw, pitch = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    eye = distance * np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    fwd = -eye / np.linalg.norm(eye)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    half = np.arcsin(min(1.0 / distance, 0.999)) / fill  # unit sphere spans `fill` of the image
    f = (size / 2.0) / np.tan(half)
    jj, ii = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    x = (jj - size / 2.0) / f
    y = -(ii - size / 2.0) / f
    d = fwd[None] + x.reshape(-1, 1) * right[None] + y.reshape(-1, 1) * up[None]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(eye, d.shape)
    kw = dict(dtype=torch.float32, device=device)
    return torch.as_tensor(o.copy(), **kw), torch.as_tensor(d, **kw), (right, up, fwd)


def render_sdf(sdf_fn, size: int = 192, yaw_deg: float = 30.0, pitch_deg: float = 10.0, distance: float = 3.0,
               color=(0.75, 0.78, 0.85), device="cpu") -> np.ndarray:
    """Shaded-normal image uint8 [size, size, 3] of ``{x : sdf_fn(x) = 0}`` inside the unit sphere."""
    from ...render import RayTracer, sdf_gradient

    o, d, (right, up, fwd) = orbit_rays(size, yaw_deg, pitch_deg, distance, device=device)
    tracer = RayTracer(radius=1.0, compute_min_sdf=False)
    with torch.no_grad():
        res = tracer(sdf_fn, o, d)
    img = np.ones((size * size, 3))
    hit = res.hit.cpu().numpy()
    if hit.any():
        n = sdf_gradient(sdf_fn, res.points[res.hit]).cpu().numpy()
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        v = -d[res.hit].cpu().numpy()
        lights = [(0.65, _unit(-fwd + 0.6 * up - 0.5 * right)), (0.25, _unit(-fwd + 0.3 * right - 0.2 * up))]
        shade = np.full(len(n), 0.22)
        spec = np.zeros(len(n))
        for w, L in lights:
            shade += w * np.clip(n @ L, 0.0, None)
            h = _unit(L[None] + v)
            spec += 0.15 * w * np.clip(np.sum(n * h, axis=1), 0.0, None) ** 40
        img[hit] = np.clip(shade[:, None] * np.asarray(color)[None] + spec[:, None], 0.0, 1.0)
    return (img.reshape(size, size, 3) * 255 + 0.5).astype(np.uint8)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def interpolate_latents(z_a: torch.Tensor, z_b: torch.Tensor, steps: int) -> torch.Tensor:
    """[steps, D]: ``(1 - t) z_a + t z_b`` for ``t`` evenly spaced in [0, 1]."""
    if steps < 2:
        raise ValueError("steps must be >= 2")
    t = torch.linspace(0.0, 1.0, int(steps), device=z_a.device)[:, None]
    return (1 - t) * z_a[None] + t * z_b[None]


def _pick(prior: ShapePrior, key) -> torch.Tensor:
    if isinstance(key, str) and key.lower() == "mean":
        return prior.mean_latent()
    i = int(key)
    if not 0 <= i < prior.num_latents:
        raise ValueError(f"latent index {i} out of range (the prior has {prior.num_latents} training latents)")
    return prior.latent(i)


def render_interpolation(prior: ShapePrior, a=0, b=1, steps: int = 6, size: int = 192, yaw_deg: float = 30.0,
                         pitch_deg: float = 10.0, out=None, progress: bool = False) -> np.ndarray:
    """Strip uint8 [size, steps * size, 3] of the shapes between latents ``a`` and ``b`` (index or 'mean', or
    latent tensors); written to ``out`` (PNG) when given."""
    za = a if isinstance(a, torch.Tensor) else _pick(prior, a)
    zb = b if isinstance(b, torch.Tensor) else _pick(prior, b)
    Z = interpolate_latents(za.to(prior.device), zb.to(prior.device), steps)
    it = range(len(Z))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="rendering", unit="shape")
    tiles = [render_sdf(prior.sdf_fn(Z[k]), size=size, yaw_deg=yaw_deg, pitch_deg=pitch_deg,
                        device=prior.device) for k in it]
    strip = np.concatenate(tiles, axis=1)
    if out is not None:
        from PIL import Image

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(strip).save(out)
    return strip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m headrecon.priors.h3dnet.interpolate", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--prior", default=None, help="prior checkpoint (default: the shipped prior)")
    ap.add_argument("--a", default="0", help="first latent: training index or 'mean'")
    ap.add_argument("--b", default="1", help="last latent: training index or 'mean'")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--size", type=int, default=192, help="pixels per shape (square)")
    ap.add_argument("--yaw", type=float, default=30.0)
    ap.add_argument("--pitch", type=float, default=10.0)
    ap.add_argument("--out", required=True, help="output PNG")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_debug_flag(ap)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_command("python -m headrecon.priors.h3dnet.interpolate", lambda: _run(args), argv)


def _run(args) -> int:
    prior = load_prior(args.prior)
    render_interpolation(prior, args.a, args.b, args.steps, args.size, args.yaw, args.pitch, out=args.out,
                         progress=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
