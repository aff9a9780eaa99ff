"""``--method sira``: SIRA++ reconstruction (Caselles et al.) with the shape-and-appearance model of
:mod:`headrecon.priors.sira.model`.

The fitted networks are the model's (seen from the scene's unit frame through a fixed similarity, obtained as for
``--method h3dnet``: :func:`headrecon.photos.frame.scene_prior_frame`):

* geometry :class:`headrecon.priors.sira.model.SiraGeometry`: ``f(x) = R(x + delta(x, z_sdf))`` with the deformation
  network ``delta`` and the **frozen** reference SDF ``R``;
* rendering :class:`headrecon.priors.sira.model.SiraRendering`: ``r(x_ref, n, v, gamma; z_r)``.

Two phases (the latents start at the training mean):

1. ``latent``: only ``z_sdf`` and ``z_r`` train (lr ``sira_latent_lr``, default 2e-3), until epoch
   ``sira_unfreeze_epoch`` (default 100) of the nominal ``epochs`` (2000), i.e. the first 5 % of the run;
2. ``all``: the latents, the deformation network (lr ``finetune_lr``, default ``lr / 10``, as for H3D-Net's
   decoder) and the rendering network (lr ``cfg.lr``); the reference SDF stays frozen throughout.

Regularisers (:meth:`SiraMethod.extra_losses`, logged as ``latent_loss`` / ``anchor_loss``):

* the code prior ``w ||z - z_mean||^2`` on both latents in both phases (``sira_latent_reg``; default the weight
  the model was trained with; ``sira_latent_prior covariance``: ``w (z - z_mean)^T P (z - z_mean)``, ``P`` from the
  training codes' covariance, :mod:`headrecon.priors.codes`);
* the **deformation anchor** in phase 2: ``w_a * mean ||delta(x, z) - delta_0(x, z)||^2``
  over fixed points of the bounding sphere (2048 drawn, see below), ``delta_0`` the pretrained deformation network (a frozen copy)
  at the current ``z_sdf`` (with a model's correction field, plus ``(c - c_0)^2``, its pretrained copy ``c_0``:
  the field trains with the deformation). Fine-tuning still adds detail where the views constrain it, but cannot move the head
  as a whole or reshape what no view sees: without it, a single frontal view let phase 2 push the face 57 mm back in
  depth (the deformation field can express a translation, the silhouette barely changes), and with 3-4 views the
  unseen back of the head drifted after its best fit at about a quarter of the run (README, SIRA++ section).
  ``w_a`` is ``sira_anchor_weight`` up to ``sira_anchor_views`` input views (default 3) and
  ``sira_anchor_weight * sira_anchor_views / views`` beyond: more views constrain more of the head themselves
  (at 8 views the full weight cost head accuracy, README). The anchor holds only the points within
  ``sira_anchor_radius`` of the prior frame (default: the inner radius of the model's outside shell): beyond it
  the reference SDF was trained to be empty, so the pretrained deformation there describes no head, and a scan's
  shoulders (Lee Perry-Smith's bust reaches 1.16 prior units) may be built freely. Each iteration uses
  ``sira_anchor_batch`` of the points (512), cycling through them in a fixed order by iteration number: a quarter
  of the term's cost, accuracy unchanged within run noise (README), and a resumed run sees the same points.
  With ``--detail hashgrid`` (the ``fast`` and ``instant`` presets) phase 2 trains the detail field and leaves the
  deformation frozen, so there is no anchor (its weight is 0 in the run's info).
* the **facial proxy** (off by default, ``sira_proxy_weight``): ``w_p * mean |f|`` over points drawn on the
  morphable-model face fitted to the photos (the fit that places the prior; as ``--method wang`` uses it), in both
  phases. Measured at one view of a held-out bust: no better (docs/results/priors-busts.md); on the demo photos the
  prior's mean face already lies 1.3 mm from it.

Acceleration (on by default for this method, SIRA++ Sec. 4): the coarse/fine search tracer (when ``--strategy`` is
``default``) with the 64^3 SDF cache (``eps`` 0.1, ``p`` = ``cache_p_force``: SIRA++'s 0.2 in the ``paper`` preset,
0.05 in ``fast`` / ``instant``; resolution ``cache_resolution``), selective background sampling (the config's
``ss_*`` fields, on in both presets, as for every method) and float16 autocast of the tracer's network evaluations
on CUDA. ``--sira-accel false`` (config ``sira_accel``) turns the cache / search / mixed precision off;
``--ss-fraction 0`` turns selective sampling off (``benches/bench_sira.py accel`` measures each). By default the
dropped background rays are replaced by rays of the remaining pool, so selective sampling saves no time;
``--ss-shrink true`` removes them from the batch instead (SIRA++'s saving: 18-25 % of a 3-view run's time), at a
measured accuracy cost from 4 views on (README).

Options (:class:`SiraOptions`): ``sira_prior`` (model path; default
the shipped ``headrecon/assets/prior_sira_bust.pt``), ``sira_unfreeze_epoch``, ``sira_latent_lr``,
``sira_latent_reg``, ``sira_anchor_weight``, ``sira_anchor_views``, ``sira_anchor_radius``, ``sira_anchor_batch``,
``sira_accel``, ``sira_proxy_weight``, ``sira_proxy_radius``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from ..priors.codes import code_precision
from ..priors.sampling import uniform_ball
from .base import (MethodOptions, Phase, ReconMethod, ReconModel, detail_loss, detail_parameters, hashgrid_field,
                   hold_unseen, option, prior_hold, proxy_loss, register_method, restrict_head_rays,
                   scene_face_proxy, set_detail_trainable, split_detail, uses_detail_loss)

__all__ = ["SiraMethod", "SiraOptions"]


@dataclass
class SiraOptions(MethodOptions):
    """``--method sira``: the model, the schedule, the code prior, the deformation anchor and the acceleration."""

    # fast / instant: phase 2 trains a hash-grid detail field over the frozen prior (``--detail hashgrid``) instead
    # of fine-tuning it, measured better on the whole head of held-out scenes (docs/results/priors-busts.md);
    # paper: the paper's fine-tuning (``--detail none`` restores it in any preset)
    _DETAIL = dict(detail="hashgrid", hash_levels=8, hash_log2_size=15)
    PRESETS = {"fast": _DETAIL, "instant": _DETAIL}

    sira_prior: Optional[str] = option(None, "shape-and-appearance model (default: the shipped "
                                             "headrecon/assets/prior_sira_bust.pt, see headrecon-train-prior --model "
                                             "sira)")
    sira_unfreeze_epoch: int = option(100, "epoch (of the nominal `epochs`) at which the deformation and rendering "
                                           "networks are unfrozen; before it only the latents train")
    sira_latent_lr: float = option(2e-3, "Adam learning rate of z_sdf and z_r")
    sira_latent_reg: Optional[float] = option(None, "weight of the code prior ||z - z_mean||^2 on z_sdf and z_r in "
                                                    "both phases (default: the model's training latent_reg; 0 = off)")
    sira_latent_prior: str = option("isotropic", "shape of the code prior: isotropic (||z - z_mean||^2, DeepSDF's) "
                                                 "or covariance (the Mahalanobis distance under the model's training "
                                                 "codes' covariance, scaled to the same mean weight: directions the "
                                                 "training heads never used are held, headrecon/priors/codes.py)")
    sira_anchor_weight: float = option(30.0, "weight of the phase-2 deformation anchor, the mean squared distance "
                                             "(prior units) between the fine-tuned and the pretrained deformation at "
                                             "the current z_sdf over fixed points of the bounding sphere (and of a "
                                             "correction model's field; 0 = off: "
                                             "phase 2 then moved a one-view head 57 mm in depth, "
                                             "docs/methods/sira.md); only with --detail none: a detail field "
                                             "leaves the deformation frozen")
    sira_anchor_views: int = option(3, "the anchor weight applies as given up to this many input views and is scaled "
                                       "by sira_anchor_views / views beyond (0 = never scaled)")
    sira_anchor_radius: Optional[float] = option(None, "the anchor holds only the fixed points within this radius of "
                                                       "the prior frame (default: the inner radius of the model's "
                                                       "outside shell, 0.9 for the shipped model; 0 = the whole "
                                                       "bounding sphere)")
    sira_anchor_batch: int = option(512, "anchor points per iteration, cycling through the fixed points in a fixed "
                                         "order (deterministic per iteration: resume stays exact; 0 = all of them "
                                         "every iteration)")
    sira_accel: bool = option(True, "SIRA++'s acceleration (coarse/fine search tracer with a 64^3 SDF cache, eps 0.1, "
                                    "p cache_p_force, and float16 tracing on CUDA); selective sampling is "
                                    "ss_fraction")
    sira_proxy_weight: float = option(0.0, "weight of mean |f| on the facial proxy (the morphable-model face fitted "
                                           "to the photos, as --method wang uses it) in both phases (0 = off)")
    sira_proxy_radius: Optional[float] = option(70.0, "keep the proxy face within this many mm of the fitted nose "
                                                      "tip (none: the whole face mesh)")
    finetune_lr: Optional[float] = option(None, "phase 2 Adam learning rate of the deformation network (default "
                                                "lr / 10)")

    def validate(self, cfg) -> List[str]:
        errs = []
        if self.sira_latent_prior not in ("isotropic", "covariance"):
            errs.append(f"sira_latent_prior must be 'isotropic' or 'covariance', got {self.sira_latent_prior!r}")
        if not 0 < self.sira_unfreeze_epoch < cfg.epochs:
            errs.append(f"sira_unfreeze_epoch must be in (0, epochs={cfg.epochs}), got {self.sira_unfreeze_epoch}")
        return errs + self.check(positive=("sira_latent_lr", "finetune_lr"),
                                 non_negative=("sira_latent_reg", "sira_anchor_radius", "sira_anchor_views",
                                               "sira_proxy_weight", "sira_proxy_radius",
                                               "sira_anchor_weight", "sira_anchor_batch"))


@register_method("sira")
class SiraMethod(ReconMethod):
    """SIRA++: fit both latents, then the deformation and rendering networks (reference SDF frozen)."""

    Options = SiraOptions
    use_cache = True           # per-component switches under cfg.sira_accel (benches/bench_sira.py ablation)
    use_search = True
    use_amp = True
    ANCHOR_POINTS = 2048       # fixed points of the deformation anchor (sira_anchor_weight)
    PROXY_POINTS = 1024        # points drawn on the facial proxy per iteration (sira_proxy_weight)

    def build(self, scene, device: torch.device) -> nn.Module:
        from ..priors.sira.model import load_sira
        from ..photos.frame import scene_prior_frame

        model = load_sira(self.cfg.options.sira_prior, device="cpu")
        frame, how = scene_prior_frame(scene, model, self.cfg.frame, self.cfg.frame_depth)
        geo, ren = model.geometry_network(frame=frame)
        prior_geo = geo
        self.frame_source = how
        self.prior_landmarks = model.norm.landmarks_unit  # placed in the scene: landmarks.json
        self.prior_mm_per_unit = model.norm.mm_per_unit
        self.model_meta = {k: model.meta.get(k) for k in ("epochs_done", "command")}
        c, o = self.cfg, self.cfg.options
        self.latent_reg = float(model.config.latent_reg if o.sira_latent_reg is None else o.sira_latent_reg)
        geo.latent_reg = ren.latent_reg = self.latent_reg  # the code prior of both latents (extra_losses)
        if o.sira_latent_prior == "covariance":
            geo.latent_precision = code_precision(model.z_sdf.weight)
            ren.latent_precision = code_precision(model.z_r.weight)
        self.deform0 = self.correct0 = None
        n, nv = max(1, len(scene)), int(o.sira_anchor_views)
        detail = c.detail == "hashgrid"  # phase 2 trains a detail field over the prior instead of the deformation
        # the anchor holds the deformation network, which phase 2 trains only without a detail field
        self.anchor_weight = 0.0 if detail else \
            float(o.sira_anchor_weight) * (nv / n if 0 < nv < n else 1.0)
        self.anchor_radius = float(model.config.outside_radius[0] if o.sira_anchor_radius is None
                                   else o.sira_anchor_radius)
        self.anchor_points = torch.zeros(0, 3, device=device)
        if self.anchor_weight > 0:
            # the pretrained deformation network (phase 1 never changes it) and fixed points that fill the bounding
            # sphere: a deterministic, state-free anchor (a resumed run rebuilds exactly the same)
            g = torch.Generator().manual_seed(int(c.seed) + 7919)
            pts = uniform_ball(self.ANCHOR_POINTS, c.scene_radius, g)
            if self.anchor_radius > 0:  # only where the model has head shapes
                with torch.no_grad():
                    pts = pts[geo.to_prior(pts).norm(dim=-1) < self.anchor_radius]
            self.anchor_points = pts.to(device)
            if len(pts):
                self.deform0 = copy.deepcopy(geo.deform).requires_grad_(False).to(device)
                if geo.correct is not None:  # a correction model's field trains with the deformation: hold it too
                    self.correct0 = copy.deepcopy(geo.correct).requires_grad_(False).to(device)
        self.proxy, self.proxy_report = None, None
        if o.sira_proxy_weight > 0:
            self.proxy, self.proxy_report = scene_face_proxy(scene, o.sira_proxy_radius)
        if detail:
            geo = hashgrid_field(c, prior_geo, d_feature=0)
        self.hold = prior_hold(c, scene, geo)  # the placed prior's unseen shell (prior_hold_weight)
        return ReconModel(geo, ren).to(device)

    def info(self) -> dict:
        return {"prior_frame": self.frame_source, "model": self.model_meta, "latent_reg": self.latent_reg,
                "anchor_weight": self.anchor_weight, "anchor_radius": self.anchor_radius,
                "anchor_points": len(self.anchor_points), "proxy": self.proxy_report}

    def phases(self) -> List[Phase]:
        # sira_unfreeze_epoch is in (0, epochs): ReconConfig.validate
        return [Phase("latent", self.cfg.options.sira_unfreeze_epoch / float(self.cfg.epochs)), Phase("all", 1.0)]

    def param_groups(self, model: nn.Module, phase: Phase) -> List[dict]:
        (geo, detail), ren = split_detail(model.geometry), model.rendering
        groups = [{"params": [geo.latent, ren.latent], "lr": float(self.cfg.options.sira_latent_lr),
                   "name": "latents"}]
        if phase.name == "all" and detail is not None:
            groups.append({"params": detail_parameters(detail), "lr": self.cfg.hash_lr, "name": "detail",
                           "eps": 1e-15})
        elif phase.name == "all":
            groups.append({"params": geo.shape_parameters(), "lr": self.finetune_lr(), "name": "deformation"})
        if phase.name == "all":
            groups.append({"params": list(ren.net.parameters()), "lr": self.cfg.lr, "name": "rendering"})
        return groups

    def code_parameters(self, model: nn.Module) -> list:
        return [split_detail(model.geometry)[0].latent, model.rendering.latent]

    def anchor_batch(self, iteration: Optional[int]) -> torch.Tensor:
        """The anchor points of ``iteration``: ``sira_anchor_batch`` of them, consecutive in the fixed order,
        cycling (all of them when the batch is 0, covers them all, or ``iteration`` is None)."""
        pts, k = self.anchor_points, int(self.cfg.options.sira_anchor_batch)
        n = pts.shape[0]
        if iteration is None or k <= 0 or k >= n:
            return pts
        if getattr(self, "_anchor_offsets", None) is None:  # built once, not per iteration
            self._anchor_offsets = torch.arange(k, device=pts.device)
        return pts[(self._anchor_offsets + int(iteration) * k) % n]

    def extra_losses(self, model: nn.Module, iteration: Optional[int] = None) -> dict:
        """``latent_loss``: the code prior ``w ||z - z_mean||^2`` on ``z_sdf`` and ``z_r`` (both phases; ``w`` =
        ``sira_latent_reg``, default the model's training weight). ``anchor_loss`` (phase 2, when
        ``sira_anchor_weight > 0``): ``w_a * mean ||delta(x, z) - delta_0(x, z)||^2`` over fixed points of the
        bounding sphere within ``sira_anchor_radius`` of the prior frame (:meth:`anchor_batch` of ``iteration``;
        all of them when None), ``delta_0`` the pretrained deformation network — fine-tuning may add detail but is
        kept near the prior's deformation at the current code where the few views say nothing. A model with a
        correction field adds ``(c(x, z) - c_0(x, z))^2`` at the same points (``c_0`` its pretrained copy)."""
        (geo, detail), ren = split_detail(model.geometry), model.rendering
        out = {}
        if self.latent_reg > 0:
            out["latent_loss"] = geo.latent_loss() + ren.latent_loss()
        if uses_detail_loss(self.cfg, detail):
            out["detail_loss"] = detail_loss(self.cfg, detail, iteration)
        if self.proxy is not None and iteration is not None:
            o = self.cfg.options
            out["proxy_loss"] = o.sira_proxy_weight * proxy_loss(model.geometry, self.proxy, self.PROXY_POINTS,
                                                                 self.cfg.seed, iteration)
        if self.deform0 is not None and geo.phase == "all":
            xp = geo.to_prior(self.anchor_batch(iteration))
            delta, _ = geo.deform(xp, geo.latent)
            with torch.no_grad():
                delta0, _ = self.deform0(xp, geo.latent.detach())
            held = (delta - delta0).pow(2).sum(-1)
            if self.correct0 is not None:
                c = geo.correct(xp, geo.latent)
                with torch.no_grad():
                    c0 = self.correct0(xp, geo.latent.detach())
                held = held + (c - c0).pow(2)
            out["anchor_loss"] = self.anchor_weight * held.mean()
        if self.hold is not None:
            out["hold_loss"] = self.cfg.prior_hold_weight * self.hold.loss(model.geometry, iteration)
        return out

    def on_phase_start(self, trainer, phase: Phase, resumed: bool = False) -> None:
        name = "latent" if phase.name == "latent" else "all"
        geo, detail = split_detail(trainer.model.geometry)
        geo.set_phase("latent" if detail is not None else name)  # a detail field replaces the deformation's tuning
        set_detail_trainable(detail, name == "all")
        restrict_head_rays(self, trainer, geo, name == "latent")
        if name == "all":
            hold_unseen(trainer, detail, resumed)
        trainer.model.rendering.set_phase(name)
        self.setup_acceleration(trainer)

    def setup_acceleration(self, trainer) -> None:
        """Cache + coarse/fine search + mixed precision on the trainer's tracer (idempotent)."""
        if not self.cfg.options.sira_accel:
            return
        tr, c = trainer.tracer, self.cfg
        if self.use_cache and tr.cache is None:
            tr.cache = trainer.make_cache().bind(tr.radius)  # eps 0.1, the cache's default
        if self.use_search and c.strategy == "default":
            tr.strategy = "search"
        if self.use_amp:
            tr.amp = True  # the tracer only uses it on CUDA
