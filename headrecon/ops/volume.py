"""Autograd of the volume-rendering compositing (csrc/composite/composite.h); the public function is
:func:`headrecon.ops.composite`.

``_Composite``: (sigmas [S], values [S,C]) -> (out [R,C], opacity [R], weights [S]) for packed rays; its backward
is the kernel ``composite_bwd`` (gradients to the densities and to the values; the segment lengths and the
packing are not differentiated; ``weights`` is returned without a gradient). ``backend="torch"`` runs the
vectorised reference through the same Function.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import reference


def _ext():
    from .. import _backend

    return _backend.get_ext()


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, packed, sigmas, deltas, values, use_cpp: bool):
        if use_cpp:
            out, opacity, weights = _ext().composite_fwd(packed, sigmas, deltas, values)
        else:
            with torch.no_grad():
                out, opacity, weights = reference.composite(packed, sigmas, deltas, values)
        ctx.save_for_backward(packed, sigmas, deltas, values)
        ctx.use_cpp = use_cpp
        ctx.mark_non_differentiable(weights)
        return out, opacity, weights

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_opacity, _g_weights):
        packed, sigmas, deltas, values = ctx.saved_tensors
        g_out = values.new_zeros(packed.shape[0], values.shape[1]) if g_out is None else g_out.contiguous()
        g_opacity = values.new_zeros(packed.shape[0]) if g_opacity is None else g_opacity.contiguous()
        if ctx.use_cpp:
            gs, gv = _ext().composite_bwd(packed, sigmas, deltas, values, g_out, g_opacity)
        else:
            with torch.enable_grad():
                s = sigmas.detach().requires_grad_()
                v = values.detach().requires_grad_()
                out, opacity, _ = reference.composite(packed, s, deltas, v)
                gs, gv = torch.autograd.grad((out * g_out).sum() + (opacity * g_opacity).sum(), (s, v),
                                             allow_unused=True)
            gs = torch.zeros_like(sigmas) if gs is None else gs
            gv = torch.zeros_like(values) if gv is None else gv
        return None, gs, None, gv, None
