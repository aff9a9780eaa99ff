"""``--method sira``: SIRA++ reconstruction (Caselles et al.) with the shape-and-appearance model of
:mod:`headrecon.prior.sira`.

The fitted networks are the model's (seen from the scene's unit frame through a fixed similarity, obtained as for
``--method h3dnet``: :func:`headrecon.prior.methods.scene_prior_frame`):

* geometry :class:`headrecon.prior.sira.SiraGeometry`: ``f(x) = R(x + delta(x, z_sdf))`` with the deformation
  network ``delta`` and the **frozen** reference SDF ``R``;
* rendering :class:`headrecon.prior.sira.SiraRendering`: ``r(x_ref, n, v, gamma; z_r)``.

Two phases (the latents start at the training mean):

1. ``latent``: only ``z_sdf`` and ``z_r`` train (lr ``sira_latent_lr``, default 2e-3), until epoch
   ``sira_unfreeze_epoch`` (default 100) of the nominal ``epochs`` (2000), i.e. the first 5 % of the run;
2. ``all``: the latents, the deformation network (lr ``finetune_lr``, default ``lr / 10``, as for H3D-Net's
   decoder) and the rendering network (lr ``cfg.lr``); the reference SDF stays frozen throughout.

Acceleration (on by default for this method, SIRA++ Sec. 4): the coarse/fine search tracer (when ``--strategy``
is ``auto``) with the 64^3 SDF cache (``eps`` 0.1, ``p`` 0.2; resolution ``cache_resolution``), selective
background sampling (the config's ``ss_*`` fields, on in both presets) and float16 autocast of the tracer's network
evaluations on CUDA. ``--sira-accel false`` (config ``sira_accel``) turns the cache / search / mixed precision
off; ``--ss-fraction 0`` turns selective sampling off (``benches/bench_sira.py accel`` measures each).

Config fields (:class:`~headrecon.recon.config.ReconConfig`, group "sira"): ``sira_prior`` (model path; default
the shipped ``headrecon/assets/prior_sira_fast.pt``), ``sira_unfreeze_epoch``, ``sira_latent_lr``,
``sira_accel``.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from .methods import Phase, ReconMethod, ReconModel, register_method

__all__ = ["SiraMethod"]


@register_method("sira")
class SiraMethod(ReconMethod):
    """SIRA++: fit both latents, then the deformation and rendering networks (reference SDF frozen)."""

    use_cache = True           # per-component switches under cfg.sira_accel (benches/bench_sira.py ablation)
    use_search = True
    use_amp = True

    def build(self, scene, device: torch.device) -> nn.Module:
        from ..prior.methods import scene_prior_frame
        from ..prior.sira import load_sira

        model = load_sira(self.cfg.sira_prior, device="cpu")
        frame, how = scene_prior_frame(scene, model)
        geo, ren = model.geometry_network(frame=frame)
        self.frame_source = how
        self.model_meta = {k: model.meta.get(k) for k in ("epochs_done", "command")}
        return ReconModel(geo, ren).to(device)

    def phases(self) -> List[Phase]:
        # sira_unfreeze_epoch is in (0, epochs): ReconConfig.validate
        return [Phase("latent", self.cfg.sira_unfreeze_epoch / float(self.cfg.epochs)), Phase("all", 1.0)]

    def param_groups(self, model: nn.Module, phase: Phase) -> List[dict]:
        geo, ren = model.geometry, model.rendering
        groups = [{"params": [geo.latent, ren.latent], "lr": float(self.cfg.sira_latent_lr),
                   "name": "latents"}]
        if phase.name == "all":
            groups.append({"params": list(geo.deform.parameters()), "lr": self.finetune_lr(), "name": "deformation"})
            groups.append({"params": list(ren.net.parameters()), "lr": self.cfg.lr, "name": "rendering"})
        return groups

    def on_phase_start(self, trainer, phase: Phase, resumed: bool = False) -> None:
        name = "latent" if phase.name == "latent" else "all"
        trainer.model.geometry.set_phase(name)
        trainer.model.rendering.set_phase(name)
        self.setup_acceleration(trainer)

    def setup_acceleration(self, trainer) -> None:
        """Cache + coarse/fine search + mixed precision on the trainer's tracer (idempotent)."""
        if not self.cfg.sira_accel:
            return
        from ..render import SDFCache

        tr, c = trainer.tracer, self.cfg
        if self.use_cache and tr.cache is None:
            tr.cache = SDFCache(resolution=c.cache_resolution, eps=0.1, p_force=0.2, seed=c.seed).bind(tr.radius)
        if self.use_search and c.strategy == "auto":
            tr.strategy = "search"
        if self.use_amp:
            tr.amp = True  # the tracer only uses it on CUDA
