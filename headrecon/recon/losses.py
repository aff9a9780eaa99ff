"""Training losses of IDR-style implicit differentiable rendering (Yariv et al. 2020, Sec. 3.3; IDR ``IDRLoss``).

For a batch of ``R`` camera rays with ground-truth colours ``rgb_gt [R, 3]``, object (silhouette) mask
``object_mask [R]`` and the ray tracer's ``hit_mask [R]`` (the ray found the zero level set):

* ``rgb_loss``     = sum over rays in ``hit & object`` of ``|rgb_pred - rgb_gt|_1`` (summed over channels) / R;
* ``mask_loss``    = (1 / alpha) * sum over rays NOT in ``hit & object`` of
                     BCE(sigmoid(-alpha * min_sdf), object_mask) / R,
  where ``min_sdf`` is the minimum SDF along the ray (the ray tracer's output; for hits the SDF at the hit);
* ``eikonal_loss`` = mean over sample points of ``(||grad f|| - 1)^2``;
* total            = rgb_weight * rgb + eikonal_weight * eikonal + mask_weight * mask (IDR: 1, 0.1, 100).

The mask sharpness ``alpha`` follows IDR's schedule: 50 at the start, multiplied by 2 at each milestone epoch
(IDR's DTU configuration: 250, 500, 750, 1000, 1250); see :func:`alpha_schedule`.

Normalisation is by the number of rays ``R`` (not by the number of selected rays), exactly as IDR. An empty
selection gives a 0 of the right dtype/device, never NaN. Colours are compared in whatever range they come in:
``headrecon.models.RenderingNetwork`` outputs [0, 1] while IDR compares [-1, 1] images, so for IDR's balance of
terms use ``rgb_weight=2`` (see the note in ``headrecon/models/rendering.py``).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["rgb_loss", "mask_loss", "eikonal_loss", "alpha_schedule", "IDRLoss", "IDR_ALPHA_MILESTONES"]

IDR_ALPHA_MILESTONES = (250, 500, 750, 1000, 1250)


def _bool_mask(mask: torch.Tensor, n: int, name: str) -> torch.Tensor:
    mask = mask.reshape(-1)
    if mask.numel() != n:
        raise ValueError(f"{name} has {mask.numel()} entries, expected {n} (one per ray)")
    return mask.bool() if mask.dtype != torch.bool else mask


def rgb_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, n_rays: Optional[int] = None) -> torch.Tensor:
    """IDR colour loss: L1 over the rays in ``mask`` (``hit & object_mask``), divided by the number of rays.

    Args:
        pred: predicted colours ``[R, 3]`` for all rays (values at rays outside ``mask`` are ignored, may be
            anything finite or not).
        gt: ground-truth colours ``[R, 3]`` (or any shape reshaping to it).
        mask: ``[R]`` bool, the rays that hit the surface inside the object mask.
        n_rays: normaliser; defaults to ``R``.
    """
    pred = pred.reshape(-1, pred.shape[-1])
    r = pred.shape[0]
    gt = gt.reshape(r, -1).to(pred.dtype)
    mask = _bool_mask(mask, r, "mask")
    n = r if n_rays is None else int(n_rays)
    if n <= 0:
        return pred.new_zeros(())
    # masked sum without boolean indexing (no host sync); unselected rays take the target's value, so neither their
    # value nor its gradient (even NaN) reaches the loss
    sel = torch.where(mask[:, None], pred, gt)
    return (sel - gt).abs().sum() / float(n)


def mask_loss(
    min_sdf: torch.Tensor,
    object_mask: torch.Tensor,
    hit_mask: torch.Tensor,
    alpha: float,
    n_rays: Optional[int] = None,
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """IDR silhouette loss on the rays that are not ``hit & object_mask``.

    ``(1/alpha) * sum BCE_with_logits(-alpha * min_sdf, object_mask) / R`` over those rays: rays inside the
    object mask that missed the surface are pushed to have a negative minimum SDF (so the surface grows to
    meet them), rays outside the mask to have a positive one. ``target`` ``[R]`` (float in [0, 1], e.g. each
    pixel's mask coverage) replaces ``object_mask`` as the BCE's target; the rays the loss covers stay those not
    in ``hit & object_mask``.

    Rays whose ``min_sdf`` is not finite are skipped (no loss, no gradient, still counted in ``R``):
    ``headrecon.render`` reports NaN for rays that miss the bounding sphere, which lie outside the object.
    """
    min_sdf = min_sdf.reshape(-1)
    r = min_sdf.shape[0]
    object_mask = _bool_mask(object_mask, r, "object_mask")
    hit_mask = _bool_mask(hit_mask, r, "hit_mask")
    sel = ~(hit_mask & object_mask) & torch.isfinite(min_sdf.detach())
    n = r if n_rays is None else int(n_rays)
    if n <= 0:
        return min_sdf.new_zeros(())
    # masked sum without boolean indexing (no host sync); unselected rays enter as 0 and are zeroed after the BCE
    logits = -float(alpha) * torch.where(sel, min_sdf, torch.zeros_like(min_sdf))
    goal = object_mask.to(min_sdf.dtype) if target is None else target.reshape(-1).to(min_sdf.dtype)
    if goal.shape[0] != r:
        raise ValueError(f"target has {goal.shape[0]} entries, expected {r} (one per ray)")
    bce = F.binary_cross_entropy_with_logits(logits, goal, reduction="none")
    return torch.where(sel, bce, torch.zeros_like(bce)).sum() / (float(alpha) * float(n))


def eikonal_loss(gradients: torch.Tensor) -> torch.Tensor:
    """Mean of ``(||g|| - 1)^2`` over the points; ``gradients [..., 3]``. Empty input gives 0."""
    g = gradients.reshape(-1, gradients.shape[-1])
    if g.shape[0] == 0:
        return gradients.new_zeros(())
    return ((g.norm(dim=-1) - 1.0) ** 2).mean()


def alpha_schedule(
    epoch: int,
    alpha_init: float = 50.0,
    milestones: Sequence[int] = IDR_ALPHA_MILESTONES,
    factor: float = 2.0,
) -> float:
    """IDR's mask-loss sharpness at ``epoch``: ``alpha_init * factor ** #{m in milestones : m <= epoch}``.

    Matches IDR's training loop, which multiplies alpha by ``factor`` at the start of each milestone epoch.
    """
    return float(alpha_init) * float(factor) ** sum(1 for m in milestones if int(m) <= int(epoch))


class IDRLoss(nn.Module):
    """Weighted sum of the IDR losses; ``alpha`` is updated with :meth:`set_epoch` (or set directly).

    Args:
        rgb_weight, eikonal_weight, mask_weight: IDR defaults 1, 0.1, 100.
        alpha_init, alpha_milestones, alpha_factor: the mask-sharpness schedule (IDR: 50, (250..1250), 2).
    """

    def __init__(
        self,
        rgb_weight: float = 1.0,
        eikonal_weight: float = 0.1,
        mask_weight: float = 100.0,
        alpha_init: float = 50.0,
        alpha_milestones: Sequence[int] = IDR_ALPHA_MILESTONES,
        alpha_factor: float = 2.0,
    ):
        super().__init__()
        self.rgb_weight = float(rgb_weight)
        self.eikonal_weight = float(eikonal_weight)
        self.mask_weight = float(mask_weight)
        self.alpha_init = float(alpha_init)
        self.alpha_milestones = tuple(int(m) for m in alpha_milestones)
        self.alpha_factor = float(alpha_factor)
        self.alpha = self.alpha_init

    def set_epoch(self, epoch: int) -> float:
        """Set ``alpha`` for ``epoch`` from the schedule and return it."""
        self.alpha = alpha_schedule(epoch, self.alpha_init, self.alpha_milestones, self.alpha_factor)
        return self.alpha

    def forward(
        self,
        rgb_pred: torch.Tensor,
        rgb_gt: torch.Tensor,
        object_mask: torch.Tensor,
        hit_mask: torch.Tensor,
        min_sdf: torch.Tensor,
        gradients: torch.Tensor,
        mask_target: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """All per-ray inputs have ``R`` rays; ``gradients [M, 3]`` are SDF gradients at the eikonal samples;
        ``mask_target`` (optional, ``[R]`` in [0, 1]): the silhouette loss's target (:func:`mask_loss`).

        Returns a dict with ``loss`` (the weighted total) and the unweighted ``rgb_loss``, ``mask_loss``,
        ``eikonal_loss``.
        """
        obj = object_mask.reshape(-1).bool()
        hit = hit_mask.reshape(-1).bool()
        l_rgb = rgb_loss(rgb_pred, rgb_gt, hit & obj)
        l_mask = mask_loss(min_sdf, obj, hit, self.alpha, target=mask_target)
        l_eik = eikonal_loss(gradients)
        total = self.rgb_weight * l_rgb + self.eikonal_weight * l_eik + self.mask_weight * l_mask
        return {"loss": total, "rgb_loss": l_rgb, "mask_loss": l_mask, "eikonal_loss": l_eik}

    def extra_repr(self) -> str:
        return (
            f"rgb_weight={self.rgb_weight}, eikonal_weight={self.eikonal_weight}, mask_weight={self.mask_weight}, "
            f"alpha={self.alpha}, milestones={self.alpha_milestones}, factor={self.alpha_factor}"
        )
