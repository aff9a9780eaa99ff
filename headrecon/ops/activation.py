"""Autograd and module of the softplus activation (csrc/softplus/softplus.h); the public function is
:func:`headrecon.ops.softplus`, the drop-in module :class:`Softplus` (what the SDF networks use).

The forward is the engine's float32 CPU kernel (about 0.45x the time of torch's, which made ``sira``'s training
0.88x as long: docs/results/engine-benchmarks.md); the backward is torch's own ``softplus_backward`` of the input,
which is itself differentiable, so the first and second derivatives (normals, the Eikonal term) are exactly
torch's. On CUDA and for other dtypes (float64) the module uses ``torch.nn.functional.softplus`` itself (the
engine's CUDA kernel, the CPU's values bit for bit, is there for ``headrecon.ops.softplus(..., backend="cpp")``).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import _backend
from . import reference
from . import softplus as _softplus  # the package is initialised before its submodules; it imports this one lazily

__all__ = ["Softplus"]


def _softplus_cpp(x: torch.Tensor, beta: float, threshold: float) -> torch.Tensor:
    return _backend.get_ext().softplus_forward(x.contiguous(), beta, threshold)


def _softplus_ref(x: torch.Tensor, beta: float, threshold: float) -> torch.Tensor:
    return reference.softplus(x, beta, threshold)


class _Softplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta: float, threshold: float, forward):
        ctx.save_for_backward(x)
        ctx.beta, ctx.threshold = beta, threshold
        return forward(x, beta, threshold)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.ops.aten.softplus_backward(grad, x, ctx.beta, ctx.threshold), None, None, None


class Softplus(nn.Softplus):
    """``nn.Softplus(beta, threshold)`` whose float32 CPU forward runs :func:`headrecon.ops.softplus` (torch's
    rule, values within 3 float32 epsilons of the exact ones, torch's gradients). State dicts and ``repr`` are
    those of ``nn.Softplus``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _softplus(x, self.beta, self.threshold)
