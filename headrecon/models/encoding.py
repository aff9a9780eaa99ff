"""Positional (Fourier-feature) encoding of 3D points and view directions, as used by NeRF / IDR / H3D-Net.

``PositionalEncoding(n_freqs=L)`` maps ``x [..., d]`` to

    [x, sin(2^0 x), cos(2^0 x), sin(2^1 x), cos(2^1 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)]

i.e. the same layout as IDR's ``Embedder`` (``log_sampling=True``, ``include_input=True``), so that an IDR
checkpoint's first-layer weights line up column by column. Sine and cosine are evaluated in a single
``torch.sin`` call on ``[x*f, x*f + pi/2]``.

Coarse-to-fine frequency masking (BARF, Lin et al. 2021; used by SIRA++): every frequency band ``k`` is
multiplied by ``freq_weights[k]`` (a buffer, ones by default, so the encoding is the plain one).
:meth:`PositionalEncoding.set_progress` sets the weights from a training progress ``p`` in [0, 1] with BARF's
cosine ramp ``w_k = (1 - cos(pi * clamp(p * L - k, 0, 1))) / 2``: at ``p = 0`` only the raw input passes, at
``p = 1`` all bands are fully on.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PositionalEncoding"]


class PositionalEncoding(nn.Module):
    """Log-spaced sin/cos encoding with optional per-frequency (coarse-to-fine) weights.

    Args:
        n_freqs: number of frequency bands L (frequencies 2^0 .. 2^(L-1)); 0 gives the identity (if
            ``include_input``).
        include_input: prepend the raw input.
        d_in: input dimension (3 for points and directions).

    Attributes:
        out_dim: output dimension ``d_in * (include_input + 2 * n_freqs)``.
        freq_bands: buffer [L] with the frequencies.
        freq_weights: buffer [L] multiplying each band (ones by default).
    """

    def __init__(self, n_freqs: int = 6, include_input: bool = True, d_in: int = 3):
        super().__init__()
        if n_freqs < 0:
            raise ValueError(f"n_freqs must be >= 0, got {n_freqs}")
        if n_freqs == 0 and not include_input:
            raise ValueError("PositionalEncoding with n_freqs=0 and include_input=False has no output")
        self.n_freqs = int(n_freqs)
        self.include_input = bool(include_input)
        self.d_in = int(d_in)
        self.out_dim = self.d_in * (int(self.include_input) + 2 * self.n_freqs)
        self.register_buffer("freq_bands", 2.0 ** torch.arange(self.n_freqs, dtype=torch.float32))
        self.register_buffer("freq_weights", torch.ones(self.n_freqs, dtype=torch.float32))

    def set_progress(self, progress: float) -> None:
        """BARF-style coarse-to-fine mask from training progress in [0, 1] (1 = all frequencies on)."""
        alpha = float(progress) * self.n_freqs
        k = torch.arange(self.n_freqs, dtype=torch.float64)
        w = (1.0 - torch.cos(math.pi * (alpha - k).clamp(0.0, 1.0))) / 2.0
        self.freq_weights.copy_(w.to(self.freq_weights))

    def set_freq_weights(self, weights) -> None:
        """Set the per-frequency weights directly (sequence or tensor of length ``n_freqs``)."""
        w = torch.as_tensor(weights, dtype=self.freq_weights.dtype, device=self.freq_weights.device)
        if w.shape != self.freq_weights.shape:
            raise ValueError(f"expected {self.n_freqs} weights, got shape {tuple(w.shape)}")
        self.freq_weights.copy_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise ValueError(f"PositionalEncoding expects last dim {self.d_in}, got {tuple(x.shape)}")
        if self.n_freqs == 0:
            return x
        freqs = self.freq_bands.to(x.dtype)
        xb = x[..., None, :] * freqs[:, None]  # [..., L, d]
        enc = torch.sin(torch.stack([xb, xb + 0.5 * math.pi], dim=-2))  # [..., L, 2, d]: sin, cos
        enc = enc * self.freq_weights.to(x.dtype)[:, None, None]
        enc = enc.reshape(*x.shape[:-1], 2 * self.n_freqs * self.d_in)
        if self.include_input:
            return torch.cat([x, enc], dim=-1)
        return enc

    def extra_repr(self) -> str:
        return f"n_freqs={self.n_freqs}, include_input={self.include_input}, d_in={self.d_in}, out_dim={self.out_dim}"
