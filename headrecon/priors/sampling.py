"""Point sampling shared by the priors' training (H3D-Net, SIRA++) and the methods that use them: per-shape
generators that make every sample depend only on (seed, epoch, shape), eikonal samples near a surface and in a
ball, uniform points in a ball."""
from __future__ import annotations

import torch

__all__ = ["shape_generator", "sample_volume", "uniform_ball"]


def shape_generator(seed: int, epoch: int, shape: int) -> torch.Generator:
    """CPU generator for the samples of ``shape`` in ``epoch`` (independent of rank and batch composition)."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 * 104_729 + int(shape) * 2_654_435_761) % (2 ** 62))
    return g


def sample_volume(surface: torch.Tensor, n: int, sigmas, uniform_fraction: float, generator: torch.Generator,
                  radius: float = 1.0) -> torch.Tensor:
    """``n`` eikonal samples [n, 3]: uniform in the ball of ``radius`` (a fraction ``uniform_fraction``) and
    surface points [M, 3] plus Gaussian offsets, the scales ``sigmas`` used in equal shares."""
    n = int(n)
    n_uni = int(round(n * uniform_fraction)) if n else 0
    n_near = n - n_uni
    parts = []
    if n_near:
        idx = torch.randint(len(surface), (n_near,), generator=generator)
        sig = torch.as_tensor(list(sigmas), dtype=surface.dtype)
        which = torch.arange(n_near) % len(sig)
        off = torch.randn(n_near, 3, generator=generator, dtype=surface.dtype) * sig[which][:, None]
        parts.append(surface[idx.to(surface.device)] + off.to(surface.device))
    if n_uni:
        parts.append(uniform_ball(n_uni, radius, generator, dtype=surface.dtype).to(surface.device))
    return torch.cat(parts, 0) if parts else surface.new_zeros(0, 3)


def uniform_ball(n: int, radius: float, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """``n`` points [n, 3] uniform in the ball of ``radius`` (CPU; a direction, then a radius ``~ u^(1/3)``)."""
    d = torch.randn(n, 3, generator=generator, dtype=dtype)
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return d * (torch.rand(n, 1, generator=generator, dtype=dtype) ** (1.0 / 3.0) * radius)
