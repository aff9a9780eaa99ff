"""``--method h3dnet`` for the reconstruction loop: the prior-aided fit of H3D-Net (Ramon et al. 2021).

Registered in :mod:`headrecon.methods` (its plugin loader imports this module). The geometry is the prior's
decoder with a trainable latent (:class:`headrecon.priors.h3dnet.LatentGeometry`), initialised to the mean latent, seen
from the scene's unit frame through a fixed similarity; the rendering network is built to match the prior's
feature size. Two phases:

1. ``latent`` (the first ``prior_latent_fraction`` of the run, default 0.25): only the latent code (lr
   ``prior_latent_lr``, default 1e-3) and the rendering network train — the shape stays on the prior's manifold;
2. ``all``: latent, decoder weights (lr ``finetune_lr``, default ``lr / 10``: a pretrained decoder is
   fine-tuned, and at the full rate the first phase-2 steps undid phase 1's fit) and rendering network fine-tune
   together.

``prior_latent_fraction = 0`` drops phase 1 (the "no schedule" rows of H3D-Net's ablation).

Options (:class:`H3DNetOptions`): ``prior`` (checkpoint path; default the shipped prior),
``prior_latent_fraction``, ``prior_latent_lr``, ``prior_latent_reg`` (the code prior's weight; default the prior's
own training weight), ``finetune_lr`` and ``finetune_decoder`` (with the ``fast`` / ``instant`` presets' detail
field: fine-tune the decoder under it too).

Frame: scene unit -> prior unit is ``inv(S) @ scene.scale_mat`` where ``S`` (prior unit -> scene units) comes
from the photos by default (face landmarks detected, triangulated and fitted with the ICT morphable model), or
as ``--frame`` says: :func:`headrecon.photos.frame.scene_prior_frame`. ``run.json`` records how (``prior_frame``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from ..priors.h3dnet.model import load_prior
from ..photos.frame import scene_prior_frame
from .base import (MethodOptions, Phase, ReconMethod, ReconModel, detail_loss, detail_parameters, hashgrid_field,
                   hold_unseen, option, prior_hold, register_method, restrict_head_rays, set_detail_trainable,
                   split_detail, uses_detail_loss)


@dataclass
class H3DNetOptions(MethodOptions):
    """``--method h3dnet``: the prior and the two-phase schedule."""

    # fast / instant: phase 2 trains a hash-grid detail field over the frozen prior (``--detail hashgrid``) instead
    # of fine-tuning it, measured better on the whole head of held-out scenes (docs/results/priors-busts.md);
    # paper: the paper's fine-tuning (``--detail none`` restores it in any preset)
    _DETAIL = dict(detail="hashgrid", hash_levels=8, hash_log2_size=15)
    PRESETS = {"fast": _DETAIL, "instant": _DETAIL}

    prior: Optional[str] = option(None, "prior checkpoint (default: the shipped headrecon/assets/prior_h3dnet_bust.pt, "
                                        "see headrecon-train-prior)")
    prior_latent_fraction: float = option(0.25, "phase 1 (only the latent code and the rendering network train) as a "
                                                "share of the run; then the decoder is unfrozen (0 = no schedule: "
                                                "everything trains from the start)")
    prior_latent_lr: float = option(1e-3, "Adam learning rate of the latent code")
    prior_latent_reg: Optional[float] = option(None, "weight of the code prior ||z - z_mean||^2 in both phases "
                                                     "(default: the prior's training latent_reg; 0 = off)")
    finetune_lr: Optional[float] = option(None, "phase 2 Adam learning rate of the prior's decoder (default lr / 10: "
                                                "at the full lr the first phase-2 steps undid phase 1's fit)")
    finetune_decoder: bool = option(False, "with --detail hashgrid: phase 2 also fine-tunes the prior's decoder (lr "
                                           "finetune_lr) under the detail field (without a detail field the decoder "
                                           "is always fine-tuned)")

    def validate(self, cfg) -> List[str]:
        errs = []
        if not 0.0 <= self.prior_latent_fraction < 1.0:
            errs.append(f"prior_latent_fraction must be in [0, 1), got {self.prior_latent_fraction}")
        if self.finetune_decoder and cfg.detail != "hashgrid":
            errs.append("finetune_decoder needs --detail hashgrid (without a detail field phase 2 fine-tunes the "
                        "decoder anyway)")
        return errs + self.check(positive=("prior_latent_lr", "finetune_lr"), non_negative=("prior_latent_reg",))


__all__ = ["H3DNetMethod", "H3DNetOptions"]


@register_method("h3dnet")
class H3DNetMethod(ReconMethod):
    """H3D-Net: fit the prior's latent, then fine-tune the prior's decoder (see the module docstring)."""

    Options = H3DNetOptions

    def build(self, scene, device: torch.device) -> nn.Module:
        from ..models import RenderingNetwork

        prior = load_prior(self.cfg.options.prior, device="cpu")
        frame, how = scene_prior_frame(scene, prior, self.cfg.frame, self.cfg.frame_depth)
        geo = prior.geometry_network(z=None, frame=frame)
        c = self.cfg
        if c.options.prior_latent_reg is not None:
            geo.latent_reg = float(c.options.prior_latent_reg)
        self.latent_reg = geo.latent_reg
        ren = RenderingNetwork(d_feature=prior.d_feature, d_hidden=c.render_hidden, n_layers=c.render_layers,
                               mode=c.render_mode, n_freqs_view=c.view_freqs)
        self.frame_source = how
        self.prior_landmarks = prior.norm.landmarks_unit  # placed in the scene: landmarks.json
        self.prior_mm_per_unit = prior.norm.mm_per_unit
        if c.detail == "hashgrid":  # phase 2 trains a detail field over the prior instead of its decoder
            geo = hashgrid_field(c, geo, d_feature=0)
        self.hold = prior_hold(c, scene, geo)  # the placed prior's unseen shell (prior_hold_weight)
        return ReconModel(geo, ren).to(device)

    def info(self) -> dict:
        return {"prior_frame": self.frame_source, "latent_reg": self.latent_reg}

    def phases(self) -> List[Phase]:
        f = float(self.cfg.options.prior_latent_fraction)  # in [0, 1): H3DNetOptions.validate
        if f == 0.0:  # no schedule (H3D-Net ablation): latent, decoder and rendering train from the start
            return [Phase("all", 1.0)]
        return [Phase("latent", f), Phase("all", 1.0)]

    def param_groups(self, model: nn.Module, phase: Phase) -> List[dict]:
        geo, detail = split_detail(model.geometry)
        groups = [{"params": geo.latent_parameters(), "lr": float(self.cfg.options.prior_latent_lr),
                   "name": "latent"}]
        if phase.name == "all" and detail is not None:
            groups.append({"params": detail_parameters(detail), "lr": self.cfg.hash_lr, "name": "detail",
                           "eps": 1e-15})
        if phase.name == "all" and (detail is None or self.cfg.options.finetune_decoder):
            groups.append({"params": geo.decoder_parameters(), "lr": self.finetune_lr(), "name": "geometry"})
        groups.append({"params": list(model.rendering.parameters()), "lr": self.cfg.lr, "name": "rendering"})
        return groups

    def code_parameters(self, model: nn.Module) -> list:
        return split_detail(model.geometry)[0].latent_parameters()

    def extra_losses(self, model: nn.Module, iteration=None) -> dict:
        """The auto-decoder's code prior ``latent_reg * ||z - z_mean||^2`` keeps the latent near the prior's
        distribution, in both phases (H3D-Net's latent regulariser)."""
        geo, detail = split_detail(model.geometry)
        out = {"latent_loss": geo.latent_loss()}
        if uses_detail_loss(self.cfg, detail):
            out["detail_loss"] = detail_loss(self.cfg, detail, iteration)
        if self.hold is not None:
            out["hold_loss"] = self.cfg.prior_hold_weight * self.hold.loss(model.geometry, iteration)
        return out

    def on_phase_start(self, trainer, phase: Phase, resumed: bool = False) -> None:
        geo, detail = split_detail(trainer.model.geometry)
        # with a detail field the decoder stays frozen (unless finetune_decoder): phase 2 trains the latent and the
        # detail field
        frozen = detail is not None and not self.cfg.options.finetune_decoder
        geo.set_phase("latent" if phase.name == "latent" or frozen else "all")
        set_detail_trainable(detail, phase.name == "all")
        restrict_head_rays(self, trainer, geo, phase.name == "latent")
        if phase.name == "all":
            hold_unseen(trainer, detail, resumed)
