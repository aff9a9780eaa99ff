"""Autograd of the multiresolution hash encoding (csrc/hash_grid/hash_grid.h); the public function is
:func:`headrecon.ops.hash_encode`.

Two Functions, so that the op is twice differentiable where training needs it:

* ``_HashEncode``: points [N,3], table [L,S,F] -> features [N, L*F]; its backward is ``_HashEncodeBackward``.
* ``_HashEncodeBackward``: (points, table, grad) -> (grad_table, grad_points). Its own backward (used when a loss
  depends on gradients of the encoding, e.g. an Eikonal term or normals fed to a colour network, with
  ``create_graph=True``) returns exact gradients to ``grad`` and to ``table``: the table gradient is linear in
  ``grad``, and the points gradient is the directional derivative of the encoding, both computed by the same
  kernels with a per-point direction. The second derivative with respect to the **positions** is not
  propagated (a trilinear cell's mixed second derivatives): the points the Eikonal term is evaluated at are
  samples, not parameters. A third derivative raises an error.

Both backends run through these Functions (``backend="torch"`` with the reference kernels), so they have the same
autograd behaviour; the fully differentiable :func:`headrecon.ops.reference.hash_encode` is the oracle.
"""
from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .. import _backend
from . import reference

__all__ = ["hash_resolutions"]


def hash_resolutions(levels: int, base: int = 16, finest: int = 2048) -> list[int]:
    """Cells per axis of each level: geometric growth from ``base`` to ``finest`` (Instant-NGP's
    ``floor(base * b^l)`` with ``b = exp((ln finest - ln base) / (levels - 1))``), strictly increasing."""
    if levels < 1 or base < 1 or finest < base:
        raise ValueError(f"need levels >= 1 and 1 <= base <= finest, got levels={levels}, base={base}, "
                         f"finest={finest}")
    if levels == 1:
        return [int(base)]
    b = math.exp((math.log(finest) - math.log(base)) / (levels - 1))
    out = []
    for lvl in range(levels):
        r = int(math.floor(base * b ** lvl + 1e-9))
        out.append(max(r, out[-1] + 1) if out else r)
    out[-1] = int(finest)
    return out


class _Kernels:
    """The three kernels of one backend: the compiled extension or the pure-PyTorch reference."""

    def __init__(self, use_cpp: bool):
        self.use_cpp = use_cpp

    def fwd(self, points, table, res, dirs, radius):
        if self.use_cpp:
            return _backend.get_ext().hash_encode_fwd(points, table, res, dirs, float(radius))
        with torch.no_grad():
            return reference.hash_encode(points, table, res, radius, dirs)

    def bwd_table(self, grad, points, res, dirs, S, F, radius):
        if self.use_cpp:
            return _backend.get_ext().hash_encode_bwd_table(grad.contiguous(), points, res, dirs, int(S), int(F),
                                                            float(radius))
        with torch.no_grad():
            return reference.hash_encode_bwd_table(grad, points, res, dirs, S, F, radius)

    def bwd_points(self, grad, points, table, res, radius):
        if self.use_cpp:
            return _backend.get_ext().hash_encode_bwd_points(grad.contiguous(), points, table, res, float(radius))
        with torch.no_grad():
            return reference.hash_encode_bwd_points(grad, points, table, res, radius)


_KERNELS = {True: _Kernels(True), False: _Kernels(False)}  # stateless: one per backend


class _HashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, table, res, radius, kernels):
        ctx.save_for_backward(points, table, res)
        ctx.radius, ctx.kernels = radius, kernels
        return kernels.fwd(points, table, res, None, radius)

    @staticmethod
    def backward(ctx, grad):
        points, table, res = ctx.saved_tensors
        need_p, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gt, gp = _HashEncodeBackward.apply(points, table, res, grad.contiguous(), ctx.radius, ctx.kernels,
                                           need_p, need_t)
        return (gp if need_p else None), (gt if need_t else None), None, None, None


class _HashEncodeBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, table, res, grad, radius, kernels, need_p, need_t):
        ctx.save_for_backward(points, table, res, grad)
        ctx.radius, ctx.kernels = radius, kernels
        L, S, F = table.shape
        gt = kernels.bwd_table(grad, points, res, None, S, F, radius) if need_t else table.new_zeros(0)
        gp = kernels.bwd_points(grad, points, table, res, radius) if need_p else points.new_zeros(0)
        return gt, gp

    @staticmethod
    @once_differentiable
    def backward(ctx, h_table, h_points):
        points, table, res, grad = ctx.saved_tensors
        k, radius = ctx.kernels, ctx.radius
        L, S, F = table.shape
        d_grad = d_table = None
        has_t = h_table is not None and h_table.numel() > 0
        has_p = h_points is not None and h_points.numel() > 0
        if ctx.needs_input_grad[3]:
            d_grad = torch.zeros_like(grad)
            if has_t:  # grad_table = sum coef * grad  ->  d/d grad = the encoding of h_table
                d_grad = d_grad + k.fwd(points, h_table.contiguous(), res, None, radius)
            if has_p:  # grad_points = J^T grad  ->  d/d grad = J h_points (directional derivative)
                d_grad = d_grad + k.fwd(points, table, res, h_points.contiguous(), radius)
        if ctx.needs_input_grad[1] and has_p:  # grad_points is linear in the table too
            d_table = k.bwd_table(grad, points, res, h_points.contiguous(), S, F, radius)
        return None, d_table, None, d_grad, None, None, None, None
