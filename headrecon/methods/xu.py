"""``--method xu``: Xu et al., "Deformable Model Driven Neural Rendering for High-fidelity 3D Reconstruction of
Human Heads Under Low-View Settings": VolSDF **volume rendering** of a template SDF deformed by a code-conditioned
deformation field, plus a per-subject displacement field for detail.

The prior (:mod:`headrecon.priors.xu`) was learnt from rendered images of many heads (``headrecon-train-prior
SOURCE --model xu``); it is placed in the scene like the other priors (:func:`headrecon.photos.frame.scene_prior_frame`).
The fitted networks:

* geometry ``f(x) = T(x + D(x, z)) + Delta(x)``: the template ``T`` frozen, the deformation ``D`` and the shape code
  ``z`` fitted (:class:`headrecon.priors.sira.model.SiraGeometry`, the same structure), and the displacement
  ``Delta`` a hash-grid field (:class:`headrecon.models.hashgrid.HashGridSDF`; the paper's is a positional-encoding
  MLP: docs/methods/xu.md says why we differ);
* colour ``c(x_ref, n, v, gamma; z_c)`` with its colour code (:class:`headrecon.priors.sira.model.SiraRendering`);
* VolSDF's density scale ``beta`` (learnable, starting from the prior's, converted to scene units).

Two stages, as in the paper: ``deform`` (the first ``xu_stage1_fraction`` of the run, 0.3: codes, deformation network,
colour network and beta) and ``detail`` (the same plus the displacement field). ``--detail none`` keeps stage 1 for
the whole run; ``--xu-finetune-deform false`` fits only the codes (the "template only" row of the stage ablation).

Rendering and losses (the trainer's volume step, :meth:`headrecon.recon.trainer.Trainer.step`, with
:meth:`XuMethod.volume_settings`): hierarchical samples along each ray (``xu_samples`` uniform ones place
``xu_fine`` more), empty space skipped with a 64^3 SDF grid refreshed every ``xu_grid_every`` iterations, the
colour composited over ``xu_background``; L1 colour, Eikonal (``eikonal_weight``) and, with masks
(``xu_masks``, default on when the scene has them), the binary cross-entropy of the opacity against the mask
(``xu_mask_weight``). Regularisers (:meth:`XuMethod.extra_losses`, the public code's weights): codes ``1e-3
||z - z_mean||^2``; deformation magnitude ``1e-3 mean ||delta||``; displacement ``1e-3 mean |Delta|`` and its
gradient ``1e-3 mean |grad Delta|``, at points drawn in the bounding sphere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..priors.sampling import uniform_ball
from .base import (MethodOptions, Phase, ReconMethod, ReconModel, detail_parameters, hashgrid_field, option,
                   register_method, set_detail_trainable, split_detail)

__all__ = ["XuMethod", "XuOptions", "VolumeSettings", "LearnableBeta"]


@dataclass(frozen=True)
class VolumeSettings:
    """What the trainer's volume-rendering step needs from a method."""

    n_samples: int
    n_fine: int
    grid_every: int
    background: Tuple[float, float, float]
    use_masks: bool
    mask_weight: float


class LearnableBeta(nn.Module):
    """VolSDF's density scale ``beta = beta_min + exp(log_beta)``."""

    def __init__(self, beta: float, beta_min: float = 1e-5):
        super().__init__()
        if not beta > beta_min:
            raise ValueError(f"beta must be > beta_min={beta_min}, got {beta}")
        self.beta_min = float(beta_min)
        self.log_beta = nn.Parameter(torch.tensor(float(beta - beta_min)).log())

    def forward(self) -> torch.Tensor:
        return self.beta_min + self.log_beta.exp()


@dataclass
class XuOptions(MethodOptions):
    """``--method xu``: the prior, the two stages, the volume rendering and the regularisers."""

    # every preset: stage 2 trains a displacement field (the hash grid; fast / instant sized for a CPU); on a CPU
    # half the rays of the other methods' batch (a volume-rendered ray costs about as much as 50 traced points)
    _CPU = dict(detail="hashgrid", hash_levels=8, hash_log2_size=15, batch_rays=512)
    PRESETS = {"fast": _CPU, "instant": _CPU, "paper": dict(detail="hashgrid")}

    xu_prior: Optional[str] = option(None, "Xu et al. prior (default: the shipped headrecon/assets/prior_xu.pt, see "
                                           "headrecon-train-prior --model xu)")
    xu_stage1_fraction: float = option(0.3, "stage 1 (codes + deformation, template frozen) as a share of the run; "
                                            "stage 2 adds the displacement field (--detail hashgrid)")
    xu_finetune_deform: bool = option(True, "fine-tune the deformation network (false: only the codes move, the "
                                            "'template only' ablation)")
    xu_latent_lr: float = option(2e-3, "Adam learning rate of the shape and colour codes")
    finetune_lr: Optional[float] = option(None, "Adam learning rate of the deformation network (default lr / 10)")
    xu_beta_lr: float = option(2e-2, "Adam learning rate of log(beta) (relative steps of the density scale)")
    xu_masks: bool = option(True, "use the scene's masks (opacity cross-entropy); false: colour only, the head on a "
                                  "plain xu_background")
    xu_mask_weight: float = option(2.0, "weight of the opacity-vs-mask cross-entropy")
    xu_background: Tuple[float, ...] = option((0.0, 0.0, 0.0), "background colour the rendering is composited over "
                                                              "(RGB in [0, 1])")
    xu_samples: int = option(32, "uniform samples per ray (they place the fine samples)")
    xu_fine: int = option(16, "fine samples per ray (hierarchical sampling; 0 = the uniform samples only)")
    xu_grid_every: int = option(25, "iterations between refreshes of the 64^3 SDF grid that skips empty space "
                                    "(0 = no skipping)")
    xu_reg_weight: float = option(1e-3, "weight of the deformation-magnitude, displacement and "
                                        "displacement-gradient regularisers (public code: 1e-3 each)")

    def validate(self, cfg) -> List[str]:
        errs = []
        if not 0.0 < self.xu_stage1_fraction <= 1.0:
            errs.append(f"xu_stage1_fraction must be in (0, 1], got {self.xu_stage1_fraction}")
        if len(self.xu_background) != 3 or not all(0.0 <= float(c) <= 1.0 for c in self.xu_background):
            errs.append(f"xu_background must be three numbers in [0, 1], got {self.xu_background}")
        if self.xu_samples < 2:
            errs.append(f"xu_samples must be >= 2, got {self.xu_samples}")
        if cfg.soft_masks and not self.xu_masks:
            errs.append("soft_masks sets the target of the masks' loss, which xu_masks=false turns off: drop one")
        return errs + self.check(positive=("xu_latent_lr", "finetune_lr", "xu_beta_lr"),
                                 non_negative=("xu_fine", "xu_grid_every", "xu_mask_weight", "xu_reg_weight"))


@register_method("xu")
class XuMethod(ReconMethod):
    """Xu et al.: volume rendering of a deformed template, then a displacement field (module docstring)."""

    Options = XuOptions
    renderer = "volume"
    REG_POINTS = 512

    def build(self, scene, device: torch.device) -> nn.Module:
        from ..photos.frame import scene_prior_frame
        from ..priors.xu.model import load_xu

        c, o = self.cfg, self.cfg.options
        prior = load_xu(o.xu_prior, device="cpu")
        frame, how = scene_prior_frame(scene, prior, c.frame, c.frame_depth)
        geo, ren = prior.geometry_network(frame=frame)
        self.frame_source = how
        self.prior_landmarks = prior.norm.landmarks_unit  # placed in the scene: landmarks.json
        self.prior_meta = {k: prior.meta.get(k) for k in ("iterations_done", "command")}
        self.has_masks = all(getattr(v, "mask", None) is not None for v in scene.views)
        self.latent_reg = float(prior.config.latent_reg)
        geo.latent_reg = ren.latent_reg = self.latent_reg
        if c.detail == "hashgrid":
            geo = hashgrid_field(c, geo, d_feature=0)
        model = ReconModel(geo, ren)
        # the prior's beta is in prior units; SDF values here are divided by the frame's scale
        model.density = LearnableBeta(float(prior.beta().detach()) / split_detail(geo)[0].frame_scale)
        return model.to(device)

    def volume_settings(self) -> VolumeSettings:
        o = self.cfg.options
        return VolumeSettings(n_samples=int(o.xu_samples), n_fine=int(o.xu_fine), grid_every=int(o.xu_grid_every),
                              background=tuple(float(v) for v in o.xu_background),
                              use_masks=bool(o.xu_masks and self.has_masks), mask_weight=float(o.xu_mask_weight))

    def info(self) -> dict:
        return {"prior_frame": self.frame_source, "prior": self.prior_meta, "masks_used": self.volume_settings().use_masks}

    def phases(self) -> List[Phase]:
        f = float(self.cfg.options.xu_stage1_fraction)
        if self.cfg.detail != "hashgrid" or f >= 1.0:
            return [Phase("deform", 1.0)]
        return [Phase("deform", f), Phase("detail", 1.0)]

    def param_groups(self, model: nn.Module, phase: Phase) -> List[dict]:
        (geo, detail), ren = split_detail(model.geometry), model.rendering
        o = self.cfg.options
        groups = [{"params": [geo.latent, ren.latent], "lr": float(o.xu_latent_lr), "name": "latents"},
                  {"params": list(ren.net.parameters()), "lr": self.cfg.lr, "name": "rendering"},
                  {"params": list(model.density.parameters()), "lr": float(o.xu_beta_lr), "name": "beta"}]
        if o.xu_finetune_deform:
            groups.append({"params": list(geo.deform.parameters()), "lr": self.finetune_lr(), "name": "deformation"})
        if phase.name == "detail" and detail is not None:
            groups.append({"params": detail_parameters(detail), "lr": self.cfg.hash_lr, "name": "detail",
                           "eps": 1e-15})
        return groups

    def on_phase_start(self, trainer, phase: Phase, resumed: bool = False) -> None:
        geo, detail = split_detail(trainer.model.geometry)
        geo.set_phase("all" if self.cfg.options.xu_finetune_deform else "latent")
        set_detail_trainable(detail, phase.name == "detail")
        trainer.model.rendering.set_phase("all")

    def _reg_points(self, iteration, device) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(self.cfg.seed) * 1000003 + 17 + int(iteration or 0))
        return uniform_ball(self.REG_POINTS, self.cfg.scene_radius, g).to(device)

    def extra_losses(self, model: nn.Module, iteration: Optional[int] = None) -> dict:
        (geo, detail), ren = split_detail(model.geometry), model.rendering
        w = float(self.cfg.options.xu_reg_weight)
        out = {}
        if self.latent_reg > 0:
            out["latent_loss"] = geo.latent_loss() + ren.latent_loss()
        if w <= 0:
            return out
        x = self._reg_points(iteration, geo.frame_A.device)
        if self.cfg.options.xu_finetune_deform:
            delta, _ = geo.deform(geo.to_prior(x), geo.latent)
            out["deform_loss"] = w * delta.norm(dim=-1).mean()
        if detail is not None and detail.table.requires_grad:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                disp = detail.detail(xg)[..., 0]
                (g,) = torch.autograd.grad(disp.sum(), xg, create_graph=True)
            out["displacement_loss"] = w * (disp.abs().mean() + g.abs().sum(-1).mean())
        return out
