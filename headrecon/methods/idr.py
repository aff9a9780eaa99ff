"""``--method idr``: IDR (Yariv et al., NeurIPS 2020) without camera refinement, the model-free baseline: a
geometry network with geometric (sphere) initialisation and an IDR rendering network, fitted jointly from
scratch in one phase."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch import nn

from .base import MethodOptions, ReconMethod, ReconModel, hashgrid_field, option, register_method

__all__ = ["IDRMethod", "IDROptions"]


@dataclass
class IDROptions(MethodOptions):
    """``--method idr``: the geometry network fitted from scratch (paper: IDR's 8 x 512)."""

    _FAST = dict(geo_hidden=128, geo_layers=4, geo_skip=(2,), feature_size=64)
    PRESETS = {"fast": _FAST, "instant": _FAST}

    geo_hidden: int = option(512, "geometry network width")
    geo_layers: int = option(8, "geometry network hidden layers")
    geo_skip: Tuple[int, ...] = option((4,), "geometry layers that re-inject the encoded input")
    geo_freqs: int = option(6, "positional-encoding frequencies of the points")
    feature_size: int = option(256, "geometry feature vector size (input of the rendering network)")
    sphere_radius: float = option(0.6, "radius of the initial sphere (geometric initialisation, unit-sphere frame)")

    def validate(self, cfg) -> List[str]:
        errs = [f"{n} must be >= 1, got {getattr(self, n)}" for n in ("geo_hidden", "geo_layers", "feature_size")
                if getattr(self, n) < 1]
        if not 0 < self.sphere_radius < cfg.scene_radius:
            errs.append(f"sphere_radius must be in (0, scene_radius={cfg.scene_radius}), got {self.sphere_radius}")
        return errs


@register_method("idr")
class IDRMethod(ReconMethod):
    Options = IDROptions

    """IDR (Yariv et al. 2020) without camera refinement: a geometry network with geometric (sphere)
    initialisation and an IDR rendering network, fitted jointly from scratch in one phase."""

    def build(self, scene, device: torch.device) -> nn.Module:
        from ..models import GeometryNetwork, RenderingNetwork

        c, o = self.cfg, self.cfg.options
        if c.detail == "hashgrid":  # the initial sphere plus a hash-grid detail field
            from ..models.hashgrid import sphere_sdf

            geo = hashgrid_field(c, sphere_sdf(o.sphere_radius), o.feature_size)
        else:
            geo = GeometryNetwork(d_hidden=o.geo_hidden, n_layers=o.geo_layers, skip_in=o.geo_skip,
                                  n_freqs=o.geo_freqs, d_feature=o.feature_size, sphere_radius=o.sphere_radius)
        ren = RenderingNetwork(d_feature=o.feature_size, d_hidden=c.render_hidden, n_layers=c.render_layers,
                               mode=c.render_mode, n_freqs_view=c.view_freqs)
        return ReconModel(geo, ren).to(device)

    def param_groups(self, model: nn.Module, phase) -> List[dict]:
        if self.cfg.detail != "hashgrid":
            return super().param_groups(model, phase)
        return [{"params": list(model.geometry.parameters()), "lr": self.cfg.hash_lr, "name": "detail", "eps": 1e-15},
                {"params": list(model.rendering.parameters()), "lr": self.cfg.lr, "name": "rendering"}]
