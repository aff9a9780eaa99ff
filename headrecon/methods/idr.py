"""``--method idr``: IDR (Yariv et al., NeurIPS 2020) without camera refinement, the model-free baseline: a
geometry network with geometric (sphere) initialisation and an IDR rendering network, fitted jointly from
scratch in one phase."""
from __future__ import annotations

import torch
from torch import nn

from .base import ReconMethod, ReconModel, register_method

__all__ = ["IDRMethod"]


@register_method("idr")
class IDRMethod(ReconMethod):
    """IDR (Yariv et al. 2020) without camera refinement: a geometry network with geometric (sphere)
    initialisation and an IDR rendering network, fitted jointly from scratch in one phase."""

    def build(self, scene, device: torch.device) -> nn.Module:
        from ..models import GeometryNetwork, RenderingNetwork

        c = self.cfg
        geo = GeometryNetwork(d_hidden=c.geo_hidden, n_layers=c.geo_layers, skip_in=c.geo_skip, n_freqs=c.geo_freqs,
                              d_feature=c.feature_size, sphere_radius=c.sphere_radius)
        ren = RenderingNetwork(d_feature=c.feature_size, d_hidden=c.render_hidden, n_layers=c.render_layers,
                               mode=c.render_mode, n_freqs_view=c.view_freqs)
        return ReconModel(geo, ren).to(device)
