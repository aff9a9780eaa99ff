"""Training rays of a scene and the pixel sampler with SIRA++ selective sampling.

:class:`RayBank` holds every pixel of the chosen views as a training ray in the unit-sphere frame (origin,
unit direction, colour, object mask, view id), optionally after reducing the images to ``image_size`` pixels per
side (box filter; the mask is the >= 50 % coverage of the reduced pixel, and the coverage itself is kept for
``--soft-masks``; the camera intrinsics are scaled).

:class:`PixelSampler` draws ``batch_rays`` rays per iteration uniformly (with replacement) from its pool. The pool
starts as every pixel; selective sampling (SIRA++) progressively removes background rays: by drop step ``k`` up
to ``k * ss_fraction`` of the original background pixels have left the pool, farthest from the silhouette first,
ties broken by a fixed seeded permutation -- but only pixels whose ray was *satisfied* when last sampled (it
missed the surface: the silhouette loss is met there). A background pixel that the current surface still covers
(or that was never sampled) stays, so geometry that starts outside the silhouettes (a prior's neck or shoulders)
keeps receiving the silhouette loss until it is carved away; pixels selected by distance alone left such
geometry in place (README, H3D-Net ablation). The trainer reports each batch's outcome with
:meth:`PixelSampler.observe`. The sampler's state (pool, last outcomes, drop steps, ``torch.Generator``) is
checkpointed by the trainer.

What a dropped ray's place in the batch becomes (``shrink``): by default the batch keeps ``batch_rays`` rays, all
drawn from the remaining pool, so dropping background shifts the batch towards the foreground and saves no time.
With ``shrink=True`` (config ``ss_shrink``, SIRA++'s acceleration) the batch is ``batch_rays * |pool| / P``
(rounded): each pixel left in the pool is drawn as often per iteration as without selective sampling, and the
dropped rays' tracing and losses are saved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt

from ..data.camera import reduced_size

__all__ = ["RayBank", "PixelSampler", "ss_steps", "resize_view"]


def resize_view(image: np.ndarray, mask: np.ndarray, camera, max_size: int):
    """``(image, mask, camera, coverage)`` reduced so that the larger side is at most ``max_size`` (unchanged if
    already small enough or ``max_size`` <= 0). ``coverage`` is the share of each reduced pixel that the full-size
    mask covers (float32 in [0, 1]); ``mask`` is ``coverage >= 0.5``."""
    h, w = mask.shape
    if max_size <= 0 or max(h, w) <= max_size:
        return image, mask, camera, np.asarray(mask, dtype=np.float32)
    nw, nh = reduced_size(h, w, max_size)
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), mode="F")
                        .resize((nw, nh), Image.BOX)) for c in range(3)]
    img = np.clip(np.stack(chans, -1), 0.0, 1.0).astype(np.float32)
    cov = np.clip(np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize((nw, nh), Image.BOX)), 0, 1)
    return img, cov >= 0.5, camera.resized(nw, nh), cov.astype(np.float32)


@dataclass
class RayBank:
    """All training rays (``P`` pixels over the views), on one device."""

    origins: torch.Tensor      # [P, 3]
    dirs: torch.Tensor         # [P, 3] unit
    rgb: torch.Tensor          # [P, 3] in [0, 1]
    mask: torch.Tensor         # [P] bool
    view: torch.Tensor         # [P] long, position of the view in the scene
    bg_dist: np.ndarray        # [P] float, distance (pixels / image size) to the silhouette, 0 for foreground
    sizes: List[tuple]         # (height, width) per view
    cameras: list              # unit-frame cameras at training resolution
    coverage: Optional[torch.Tensor] = None  # [P] float: the share of each pixel the full-size mask covers

    @classmethod
    def from_scene(cls, scene, image_size: int = 0, device="cpu") -> "RayBank":
        cams = scene.cameras_normalized()
        o_l, d_l, c_l, m_l, v_l, dist_l, sizes, cams_out, cov_l = [], [], [], [], [], [], [], [], []
        for k, (view, cam) in enumerate(zip(scene.views, cams)):
            if view.image is None or view.mask is None:
                raise ValueError(f"view {k} has no image/mask loaded")
            img, m, cam, cov = resize_view(view.image, view.mask, cam, image_size)
            cov_l.append(torch.from_numpy(np.ascontiguousarray(cov.reshape(-1))))
            o, d = cam.rays()
            o_l.append(o)
            d_l.append(d)
            c_l.append(torch.from_numpy(np.ascontiguousarray(img.reshape(-1, 3), dtype=np.float32)))
            m_l.append(torch.from_numpy(m.reshape(-1)))
            v_l.append(torch.full((m.size,), k, dtype=torch.long))
            dist = distance_transform_edt(~m) / float(max(m.shape)) if m.any() else np.ones(m.shape)
            dist_l.append(dist.reshape(-1))
            sizes.append(m.shape)
            cams_out.append(cam)
        dev = torch.device(device)
        return cls(origins=torch.cat(o_l).to(dev), dirs=torch.cat(d_l).to(dev), rgb=torch.cat(c_l).to(dev),
                   mask=torch.cat(m_l).to(dev), view=torch.cat(v_l).to(dev), bg_dist=np.concatenate(dist_l),
                   sizes=sizes, cameras=cams_out, coverage=torch.cat(cov_l).to(dev))

    def __len__(self) -> int:
        return self.origins.shape[0]

    @property
    def n_foreground(self) -> int:
        return int(self.mask.sum())


def ss_steps(epoch: float, fraction: float, every: int, until: int) -> int:
    """Number of selective-sampling drop steps taken by schedule epoch ``epoch`` (steps at every, 2 every, ...
    <= until)."""
    if fraction <= 0 or every <= 0:
        return 0
    last = int(until) // int(every)
    return max(0, min(last, int(math.floor(float(epoch) / every + 1e-9))))


class PixelSampler:
    """Uniform ray batches from the pool of active pixels; see the module docstring."""

    def __init__(self, bank: RayBank, batch_rays: int, fraction: float = 0.0, seed: int = 0, shrink: bool = False):
        self.bank = bank
        self.batch_rays = int(batch_rays)
        self.fraction = float(fraction)
        self.shrink = bool(shrink)
        dev = bank.origins.device
        mask = bank.mask.cpu().numpy()
        self.fg = np.nonzero(mask)[0]
        bg = np.nonzero(~mask)[0]
        tie = np.random.default_rng(seed).permutation(len(bg))
        # background ordered by drop priority: farthest from the silhouette first
        self.bg_order = bg[np.lexsort((tie, -bank.bg_dist[bg]))]
        # last outcome per pixel (background ray missed), on the rays' device: observe() never syncs the host
        self.satisfied = torch.zeros(len(bank), dtype=torch.bool, device=dev)
        self.active = np.ones(len(bank), dtype=bool)
        self.dropped = 0  # number of inactive (dropped) background pixels
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(int(seed))
        self.steps = 0
        self.last_idx = None
        self.keep = None  # restrict(): a fixed subset of the pixels, or None (all)
        self._set_pool()

    @property
    def n_background(self) -> int:
        return len(self.bg_order)

    def n_dropped(self, steps: int) -> int:
        """Target number of dropped background pixels after ``steps`` drop steps."""
        return min(self.n_background, int(round(steps * self.fraction * self.n_background)))

    def _set_pool(self) -> None:
        on = self.active if self.keep is None else self.active & self.keep
        self.pool = torch.from_numpy(np.nonzero(on)[0]).to(self.bank.origins.device)

    def restrict(self, keep) -> None:
        """Draw only from the pixels where ``keep`` [P] (bool) is true (and still active), or from all of them
        again with None (a prior method's ``--head-rays``). Not part of :meth:`state_dict`: the method
        sets it again when its phase starts, also on resume."""
        if keep is not None:
            keep = np.asarray(keep, dtype=bool).reshape(-1)
            if keep.shape[0] != len(self.bank):
                raise ValueError(f"restrict: {keep.shape[0]} flags for {len(self.bank)} pixels")
            if not keep.any():
                raise ValueError("restrict: no pixel left to draw from")
        self.keep = keep
        self._set_pool()

    def set_steps(self, steps: int) -> None:
        """Advance to drop step ``steps``: drop satisfied background pixels, farthest first, until
        :meth:`n_dropped` are gone. When too few are satisfied, the shortfall is retried at every later call
        (the trainer calls this every iteration) as more background rays are observed to miss."""
        steps = int(steps)
        if steps < self.steps:
            return
        self.steps = steps
        need = self.n_dropped(self.steps) - self.dropped
        if need <= 0:
            return
        satisfied = self.satisfied.cpu().numpy()  # host copy only while pixels are still to be dropped
        cand = self.bg_order[self.active[self.bg_order] & satisfied[self.bg_order]][:need]
        if len(cand):
            self.active[cand] = False
            self.dropped += len(cand)
            self._set_pool()

    @property
    def batch_size(self) -> int:
        """Rays of the next batch: ``batch_rays``, or with ``shrink`` ``batch_rays * |pool| / P`` (at least 1)."""
        if not self.shrink:
            return self.batch_rays
        return max(1, int(round(self.batch_rays * self.pool.shape[0] / float(len(self.bank)))))

    def sample(self):
        """``(origins, dirs, rgb, mask)`` of one batch of :attr:`batch_size` rays (their pixel indices in
        ``last_idx``)."""
        j = torch.randint(0, self.pool.shape[0], (self.batch_size,), generator=self.generator,
                          device=self.pool.device)
        idx = self.pool[j]
        self.last_idx = idx
        b = self.bank
        return b.origins[idx], b.dirs[idx], b.rgb[idx], b.mask[idx]

    def observe(self, satisfied: torch.Tensor) -> None:
        """Record the last batch's outcome: ``satisfied [batch size]`` bool, a background ray that missed the
        surface (ignored for foreground pixels)."""
        if self.last_idx is None or self.fraction <= 0:
            return
        self.satisfied[self.last_idx] = satisfied.detach().reshape(-1).to(self.satisfied.device)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "generator": self.generator.get_state(),
                "active": torch.from_numpy(self.active.copy()), "satisfied": self.satisfied.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        if "active" in state:
            self.active = state["active"].cpu().numpy().astype(bool).copy()
            self.dropped = int((~self.active).sum())
            self.satisfied = state["satisfied"].to(device=self.satisfied.device, dtype=torch.bool).clone()
        self._set_pool()
        self.generator.set_state(state["generator"])
