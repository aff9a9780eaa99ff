"""The semantic network of ``--method wang`` (Wang et al., "Prior-Guided Multi-View 3D Head Reconstruction"):
``s(x) -> class logits`` at a surface point, a ReLU MLP over the positional encoding of ``x`` (paper: 4 x 512).

Its classes are the head classes of :data:`headrecon.data.semantics.SEMANTIC_CLASSES` without the background (the
loss is taken on head pixels only): logit ``k`` is class ``k + 1``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.semantics import SEMANTIC_CLASSES
from .encoding import PositionalEncoding

__all__ = ["SemanticNetwork", "N_HEAD_CLASSES"]

N_HEAD_CLASSES = len(SEMANTIC_CLASSES) - 1


class SemanticNetwork(nn.Module):
    """``forward(x [N, 3]) -> logits [N, N_HEAD_CLASSES]``."""

    def __init__(self, d_hidden: int = 512, n_layers: int = 4, n_freqs: int = 6, n_classes: int = N_HEAD_CLASSES):
        super().__init__()
        self.encoding = PositionalEncoding(n_freqs=n_freqs)
        dims = [self.encoding.out_dim] + [int(d_hidden)] * int(n_layers)
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], int(n_classes)))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encoding(x))
