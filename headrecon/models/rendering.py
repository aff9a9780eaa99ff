"""Appearance networks: IDR's rendering network and the H3D-Net-style geometry-free feature network.

``RenderingNetwork`` is IDR's ``RenderingNetwork`` (Yariv et al. 2020, Sec. 3.2): an MLP that maps a surface
point ``x``, its normal ``n`` (the SDF gradient), the viewing direction ``v`` (positionally encoded, 4 frequencies)
and the geometry feature vector ``z`` to an RGB colour. Modes as in IDR:

  * ``"idr"``:          input ``[x, v, n, z]``;
  * ``"no_view_dir"``:  input ``[x, n, z]`` (Lambertian-like, no view dependence);
  * ``"no_normal"``:    input ``[x, v, z]``.

Output range: colours are in **[0, 1]** via a sigmoid on the last layer. IDR instead applies ``tanh`` and
normalises its images to [-1, 1]; since ``(tanh(y) + 1) / 2 = sigmoid(2 y)`` the two are the same model up to a
factor 2 on the last layer's logits. ``output_activation="tanh01"`` gives IDR's exact parameterisation mapped to
[0, 1]. Note that an L1 loss on [0, 1] colours is half of IDR's L1 on [-1, 1] colours; the loss weights in
``headrecon.recon.losses`` keep IDR's numbers and therefore weigh the RGB term half as much relative to the
eikonal and mask terms as IDR does unless ``rgb_weight`` is doubled.

View direction: IDR passes ``v = -ray_direction`` (from the point towards the camera); callers should do the same.
Normals are passed as given (IDR feeds the unnormalised SDF gradient); ``normalize_normals=True`` normalises them.

The split used by H3D-Net: there the geometry is a DeepSDF prior that outputs only an SDF, so the feature vector
cannot come from the geometry network. ``FeatureNetwork`` is a separate, geometry-free MLP ``x -> z``; combine it
with a small ``RenderingNetwork`` head (e.g. ``n_layers=2, d_hidden=256``). With ``GeometryNetwork(d_feature=0)``
the geometry network then carries no appearance at all.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .encoding import PositionalEncoding

__all__ = ["RenderingNetwork", "FeatureNetwork"]

_MODES = ("idr", "no_view_dir", "no_normal")


def _maybe_wn(lin: nn.Linear, weight_norm: bool) -> nn.Module:
    return nn.utils.parametrizations.weight_norm(lin, name="weight", dim=0) if weight_norm else lin


class RenderingNetwork(nn.Module):
    """IDR rendering MLP ``(point, normal, view direction, feature) -> RGB in [0, 1]``.

    Args:
        d_feature: size of the feature vector (the geometry network's ``d_feature``).
        d_hidden: hidden width (IDR: 512).
        n_layers: number of hidden layers (IDR: 4), so ``n_layers + 1`` linear layers.
        mode: ``"idr"``, ``"no_view_dir"`` or ``"no_normal"``.
        n_freqs_view: positional-encoding frequencies for the view direction (IDR ``multires_view=4``).
        weight_norm: weight normalisation on every linear layer.
        output_activation: ``"sigmoid"`` (default) or ``"tanh01"`` (``(tanh + 1) / 2``, IDR's tanh in [0, 1]).
        normalize_normals: normalise the normals before use (IDR: no).
        d_out: number of output channels (3).
    """

    def __init__(
        self,
        d_feature: int = 256,
        d_hidden: int = 512,
        n_layers: int = 4,
        mode: str = "idr",
        n_freqs_view: int = 4,
        weight_norm: bool = True,
        output_activation: str = "sigmoid",
        normalize_normals: bool = False,
        d_out: int = 3,
    ):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if output_activation not in ("sigmoid", "tanh01"):
            raise ValueError(f"output_activation must be 'sigmoid' or 'tanh01', got {output_activation!r}")
        self.mode = mode
        self.d_feature = int(d_feature)
        self.output_activation = output_activation
        self.normalize_normals = bool(normalize_normals)
        self.view_encoding = PositionalEncoding(n_freqs_view, include_input=True, d_in=3)
        d_in = 3 + self.d_feature
        if mode != "no_normal":
            d_in += 3
        if mode != "no_view_dir":
            d_in += self.view_encoding.out_dim
        self.d_input = d_in
        dims = [d_in] + [int(d_hidden)] * int(n_layers) + [int(d_out)]
        self.layers = nn.ModuleList(
            [_maybe_wn(nn.Linear(dims[l], dims[l + 1]), weight_norm) for l in range(len(dims) - 1)]
        )
        self.activation = nn.ReLU()

    @classmethod
    def paper(cls, **kwargs) -> "RenderingNetwork":
        """IDR configuration: 4 x 512, mode ``idr``, 4 view frequencies, 256 features."""
        cfg = dict(d_feature=256, d_hidden=512, n_layers=4, mode="idr", n_freqs_view=4)
        cfg.update(kwargs)
        return cls(**cfg)

    @classmethod
    def small(cls, **kwargs) -> "RenderingNetwork":
        """CPU-friendly configuration matching ``GeometryNetwork.small()``: 2 x 128, 64 features."""
        cfg = dict(d_feature=64, d_hidden=128, n_layers=2, mode="idr", n_freqs_view=4)
        cfg.update(kwargs)
        return cls(**cfg)

    def forward(
        self,
        points: torch.Tensor,
        normals: Optional[torch.Tensor],
        view_dirs: Optional[torch.Tensor],
        features: torch.Tensor,
    ) -> torch.Tensor:
        """``points, normals, view_dirs [..., 3]``, ``features [..., d_feature]`` -> ``rgb [..., 3]`` in [0, 1].

        ``normals`` may be None in mode ``no_normal``, ``view_dirs`` may be None in mode ``no_view_dir``.
        """
        if features.shape[-1] != self.d_feature:
            raise ValueError(f"expected features [..., {self.d_feature}], got {tuple(features.shape)}")
        parts = [points]
        if self.mode != "no_view_dir":
            if view_dirs is None:
                raise ValueError(f"mode {self.mode!r} needs view_dirs")
            parts.append(self.view_encoding(view_dirs))
        if self.mode != "no_normal":
            if normals is None:
                raise ValueError(f"mode {self.mode!r} needs normals")
            if self.normalize_normals:
                normals = nn.functional.normalize(normals, dim=-1)
            parts.append(normals)
        parts.append(features)
        h = torch.cat(parts, dim=-1)
        for l, layer in enumerate(self.layers):
            h = layer(h)
            if l < len(self.layers) - 1:
                h = self.activation(h)
        if self.output_activation == "sigmoid":
            return torch.sigmoid(h)
        return (torch.tanh(h) + 1.0) * 0.5


class FeatureNetwork(nn.Module):
    """Geometry-free appearance feature MLP ``x [..., 3] -> z [..., d_feature]`` (H3D-Net-style split).

    Positional encoding of the point, ``n_layers`` ReLU hidden layers of width ``d_hidden``, linear output.

    Args:
        d_feature: output feature size.
        d_hidden: hidden width.
        n_layers: number of hidden layers.
        n_freqs: positional-encoding frequencies of the point.
        weight_norm: weight normalisation on every linear layer.
    """

    def __init__(
        self,
        d_feature: int = 256,
        d_hidden: int = 256,
        n_layers: int = 4,
        n_freqs: int = 6,
        weight_norm: bool = True,
    ):
        super().__init__()
        self.d_feature = int(d_feature)
        self.encoding = PositionalEncoding(n_freqs, include_input=True, d_in=3)
        dims = [self.encoding.out_dim] + [int(d_hidden)] * int(n_layers) + [self.d_feature]
        self.layers = nn.ModuleList(
            [_maybe_wn(nn.Linear(dims[l], dims[l + 1]), weight_norm) for l in range(len(dims) - 1)]
        )
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoding(x)
        for l, layer in enumerate(self.layers):
            h = layer(h)
            if l < len(self.layers) - 1:
                h = self.activation(h)
        return h
