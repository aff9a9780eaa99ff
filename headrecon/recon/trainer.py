"""The fitting loop of a reconstruction run (IDR-style implicit differentiable rendering).

Per iteration (:meth:`Trainer.step`):

1. sample ``batch_rays`` pixels over the chosen views (:class:`headrecon.recon.sampling.PixelSampler`, with
   selective sampling of background rays; with ``ss_shrink`` the batch shrinks as the pool does);
2. trace them with :class:`headrecon.render.RayTracer` (no autograd, ``compute_min_sdf=True``);
3. make the hits inside the object mask differentiable with :func:`headrecon.render.surface_points` and render
   their colour with the rendering network (point, SDF gradient as normal, view direction ``-d``, feature);
4. re-evaluate the SDF with autograd at the minimum-SDF point of every other ray (silhouette loss);
5. sample eikonal points (uniform in the bounding cube plus the hits) and take SDF gradients with a graph;
6. :class:`headrecon.recon.losses.IDRLoss` (L1 colour on ``hit & mask``, silhouette BCE with the alpha
   schedule, eikonal), Adam step with step-decayed learning rate.

Schedules (alpha, learning rate, selective sampling, phases) are functions of the iteration only, through the
schedule epoch ``i * epochs / total_iterations`` (see :mod:`headrecon.recon.config`). A checkpoint holds the model,
the optimizer, the phase, the sampler (drop steps and generator), the eikonal generator, the global torch RNG, the
SDF cache (when used), the iteration, the loss history and the elapsed time, so :meth:`Trainer.load_checkpoint`
followed by :meth:`Trainer.train` continues exactly where the run stopped.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch.nn.utils import parametrize

from .. import _sync
from ..methods import Phase, get_method
from ..methods.base import SurfaceBatch, split_detail
from ..models.pose import FramedPrior
from ..render import RayTracer, SDFCache, surface_points
from ..weights import load_weights, save_weights
from .cameras import CameraRefinement
from .config import ReconConfig
from .losses import IDRLoss
from .sampling import PixelSampler, RayBank, ss_steps

__all__ = ["Trainer", "resolve_device", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU raises a clear error."""
    spec = str(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec} requested but torch sees no CUDA device (torch {torch.__version__}, "
                           f"CUDA build: {torch.version.cuda}); use --device cpu or auto")
    return dev


def resolve_strategy(strategy: str, device) -> str:
    """The tracer strategy of a run: ``"default"`` is a fixed choice per device type, so the same command and
    seed give the same mesh whatever the machine's load: ``sphere`` on CPU (the faster one there, docs/engine.md),
    ``search`` on CUDA (SIRA++'s parallel sampling). A method may override the default (SIRA++ uses ``search``
    everywhere). ``"auto"`` (opt-in) measures both on the first batch and keeps the faster: it can differ between
    runs."""
    if strategy == "default":
        return "search" if torch.device(device).type == "cuda" else "sphere"
    return strategy


class Trainer:
    """Fits a method's networks to a scene (``scene`` already restricted to the chosen views).

    Args:
        cfg: the run's :class:`ReconConfig`.
        scene: :class:`headrecon.data.Scene` with images and masks of the training views.
        device: torch device (default: ``resolve_device(cfg.device)``).
        progress: show a tqdm bar (loss, hit ratio, rays/s, ETA).
    """

    def __init__(self, cfg: ReconConfig, scene, device=None, progress: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.scene = scene
        self.device = torch.device(device) if device is not None else resolve_device(cfg.device)
        self.progress = progress
        self.method = get_method(cfg.method, cfg)
        torch.manual_seed(cfg.seed)
        self.model = self.method.build(scene, self.device)
        self.prior_pose = self._enable_frame_refinement() if cfg.frame_refine != "off" else None
        self.bank = RayBank.from_scene(scene, cfg.image_size, self.device)
        if self.bank.n_foreground == 0:
            raise ValueError("the masks of the chosen views contain no foreground pixel")
        self.sampler = PixelSampler(self.bank, cfg.batch_rays, cfg.ss_fraction, seed=cfg.seed,
                                    shrink=cfg.ss_shrink)
        self.cameras = CameraRefinement(len(self.bank.sizes)).to(self.device) if cfg.refine_cameras else None
        self.eik_generator = torch.Generator(device=self.device)
        self.eik_generator.manual_seed(cfg.seed + 1)
        self.tracer = self._make_tracer(resolve_strategy(cfg.strategy, self.device), compute_min_sdf=True,
                                        cache=self.make_cache() if cfg.sdf_cache else None)
        self.loss_fn = IDRLoss(rgb_weight=cfg.rgb_weight, eikonal_weight=cfg.eikonal_weight,
                               mask_weight=cfg.mask_weight, alpha_init=cfg.alpha_init,
                               alpha_milestones=cfg.alpha_milestones, alpha_factor=cfg.alpha_factor)
        self.phases: List[Phase] = list(self.method.phases())
        if not self.phases or abs(self.phases[-1].end - 1.0) > 1e-9:
            raise ValueError(f"method {cfg.method!r}: the last phase must end at 1.0")
        n_views = len(self.bank.sizes)
        if cfg.epoch_mode == "views":
            self.iters_per_epoch = n_views
        else:
            self.iters_per_epoch = max(1, math.ceil(len(self.bank) / cfg.batch_rays))
        self.total_iterations = int(cfg.iterations) if cfg.iterations else cfg.epochs * self.iters_per_epoch
        self.iteration = 0
        self.phase_index = -1
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.history: List[Dict[str, float]] = []
        self.elapsed = 0.0
        self.cpu_elapsed = 0.0  # process CPU seconds (all threads) of the training steps
        self._acc: Dict[str, float] = {}
        self._acc_n = 0
        self.occupancy: Optional[torch.Tensor] = None  # the volume step's empty-space grid (volume methods)

    def _mask_target(self) -> Optional[torch.Tensor]:
        """``--soft-masks``: the last batch's mask coverage (the silhouette loss's target), else None (the mask)."""
        return self.bank.coverage[self.sampler.last_idx] if self.cfg.soft_masks else None

    # ------------------------------------------------------------------ schedules
    def epoch_at(self, iteration: int) -> float:
        """Schedule epoch of ``iteration`` (the nominal schedule scaled to the run length)."""
        return iteration * self.cfg.epochs / float(self.total_iterations)

    def phase_at(self, iteration: int) -> int:
        frac = iteration / float(self.total_iterations)
        for k, ph in enumerate(self.phases):
            if frac < ph.end - 1e-12:
                return k
        return len(self.phases) - 1

    def _enter_phase(self, k: int, resumed: bool = False) -> None:
        phase = self.phases[k]
        self.method.on_phase_start(self, phase, resumed=resumed)
        groups = self.method.param_groups(self.model, phase)
        if self.cfg.freeze_codes and k > 0 and phase.name != "latent":  # the codes stay where phase 1 left them
            codes = self.method.code_parameters(self.model)
            for p in codes:
                p.requires_grad_(False)
            groups = [g for g in ({**g, "params": [p for p in g["params"] if all(p is not c for c in codes)]}
                                  for g in groups) if g["params"]]
        if self.cameras is not None:
            groups.append({"params": list(self.cameras.parameters()), "lr": float(self.cfg.camera_lr),
                           "name": "cameras"})
        if self.prior_pose is not None:  # --frame-refine: in the latent phase, or the whole run with "all"
            on = phase.name == "latent" or self.cfg.frame_refine == "all"
            self.prior_pose.requires_grad_(on)
            if on:
                groups.append({"params": list(self.prior_pose.parameters()), "lr": float(self.cfg.frame_refine_lr),
                               "name": "prior_pose"})
        for g in groups:
            g.setdefault("base_lr", g["lr"])
        self.optimizer = make_adam(groups, self.device)
        self.phase_index = k

    def _apply_schedules(self, iteration: int) -> float:
        epoch = self.epoch_at(iteration)
        k = self.phase_at(iteration)
        if k != self.phase_index:
            self._enter_phase(k)
        factor = self.method.lr_factor(epoch, self.phases[k])
        frozen = iteration < self.cfg.camera_start * self.total_iterations
        for g in self.optimizer.param_groups:
            g["lr"] = 0.0 if (g.get("name") == "cameras" and frozen) else g["base_lr"] * factor
        self.loss_fn.alpha = self.loss_fn.alpha_init * self.loss_fn.alpha_factor ** sum(
            1 for m in self.loss_fn.alpha_milestones if epoch >= m)
        w = self.method.loss_weights(iteration / float(self.total_iterations))
        self.loss_fn.rgb_weight = float(w.get("rgb", self.cfg.rgb_weight))
        self.loss_fn.mask_weight = float(w.get("mask", self.cfg.mask_weight))
        self.loss_fn.eikonal_weight = float(w.get("eikonal", self.cfg.eikonal_weight))
        self.sampler.set_steps(ss_steps(epoch, self.cfg.ss_fraction, self.cfg.ss_every, self.cfg.ss_until))
        return epoch

    # ------------------------------------------------------------------ one iteration
    def sdf_fn(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.geometry.sdf(x)

    def step(self) -> Dict[str, object]:
        """One optimisation step at ``self.iteration``; returns the logs: detached 0-dim loss tensors and numbers."""
        if self.method.renderer == "volume":
            return self._step_volume()
        cfg = self.cfg
        self._apply_schedules(self.iteration)
        self.model.train()
        geo, ren = self.model.geometry, self.model.rendering
        if hasattr(geo, "set_training_progress"):  # coarse-to-fine detail levels (headrecon.models.hashgrid)
            geo.set_training_progress(self.iteration / max(1, self.total_iterations))
        o, d, rgb_gt, obj = self.sampler.sample()
        if self.cameras is not None:  # refined cameras: corrected rays (traced without, used with gradients)
            o, d = self.cameras(o, d, self.bank.view[self.sampler.last_idx])
        with parametrize.cached():  # weight-norm weights computed once per trace, not once per network call
            tr = self.tracer(self.sdf_fn, o.detach(), d.detach())
        hit = tr.hit
        sel = hit & obj
        # integer indices, each one host sync (boolean-mask indexing would sync at every use)
        i_sel, i_other, i_hit = _sync.nonzero(sel), _sync.nonzero(~sel), _sync.nonzero(hit)
        n_sel = i_sel.numel()
        xs = surface_points(self.sdf_fn, o[i_sel], d[i_sel], tr.t[i_sel])
        p_min = o[i_other] + tr.min_sdf_t[i_other, None] * d[i_other]
        n_eik = cfg.eikonal_points or max(1, cfg.batch_rays // 2)
        r = cfg.scene_radius
        p_eik = torch.rand(n_eik, 3, generator=self.eik_generator, device=self.device) * (2 * r) - r
        p_eik = torch.cat([p_eik, tr.points[i_hit].detach()], 0)
        pts = torch.cat([xs, p_min, p_eik], 0)
        sdf, feat, grad = geo.forward_with_gradient(pts, create_graph=True)
        n_min = p_min.shape[0]
        rgb_pred = torch.zeros_like(rgb_gt)
        if n_sel:
            rgb_pred = rgb_pred.index_put((i_sel,), ren(xs, grad[:n_sel], -d[i_sel], feat[:n_sel]))
        min_sdf = torch.zeros(o.shape[0], dtype=sdf.dtype, device=sdf.device)
        min_sdf = min_sdf.index_put((i_other,), sdf[n_sel:n_sel + n_min])
        losses = self.loss_fn(rgb_pred, rgb_gt, obj, hit, min_sdf, grad[n_sel + n_min:],
                              mask_target=self._mask_target())
        self.sampler.observe(~obj & ~hit & (min_sdf.detach() > 0))  # selective sampling drops only these
        extra = self.method.extra_losses(self.model, iteration=self.iteration)
        extra.update(self.method.surface_losses(self, SurfaceBatch(
            pixels=self.sampler.last_idx[i_sel], points=xs, gradients=grad[:n_sel], features=feat[:n_sel],
            dirs=d[i_sel])))
        for v in extra.values():
            losses["loss"] = losses["loss"] + v
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        # losses and the hit ratio stay detached 0-dim tensors: converting them here would cost a host sync per
        # step on GPU; _accumulate sums them on the device and converts once per logged point (log_every)
        return {**{k: v.detach() for k, v in extra.items()},
                **{k: losses[k].detach() for k in ("loss", "rgb_loss", "mask_loss", "eikonal_loss")},
                "hit_ratio": sel.sum() / obj.sum().clamp(min=1), "alpha": self.loss_fn.alpha,
                "lr": self.optimizer.param_groups[0]["lr"]}

    def refresh_occupancy(self) -> None:
        """The volume step's empty-space grid: the current SDF at the centres of a ``cache_resolution``^3 grid."""
        from ..render.volume import fill_occupancy

        with torch.no_grad(), parametrize.cached():
            self.occupancy = fill_occupancy(self.sdf_fn, self.cfg.cache_resolution, self.cfg.scene_radius,
                                            device=self.device)

    def _step_volume(self) -> Dict[str, object]:
        """One step of a volume-rendering method (VolSDF): rays rendered by
        :func:`headrecon.render.volume.render_volume` with the model's ``density`` (beta), composited over the
        method's background; L1 colour (object rays with masks, all rays without), the opacity's binary
        cross-entropy against the mask (with masks), Eikonal at uniform points and at the rendered samples."""
        from ..render.volume import render_volume

        cfg, vol = self.cfg, self.method.volume_settings()
        self._apply_schedules(self.iteration)
        self.model.train()
        geo, ren = self.model.geometry, self.model.rendering
        if hasattr(geo, "set_training_progress"):
            geo.set_training_progress(self.iteration / max(1, self.total_iterations))
        if vol.grid_every and (self.occupancy is None or self.iteration % vol.grid_every == 0):
            self.refresh_occupancy()
        o, d, rgb_gt, obj = self.sampler.sample()
        if self.cameras is not None:
            o, d = self.cameras(o, d, self.bank.view[self.sampler.last_idx])
        beta = self.model.density()
        bg = torch.tensor(vol.background, dtype=rgb_gt.dtype, device=rgb_gt.device)
        # rays that see the head: the mask, or without masks every pixel unlike the background
        seen = obj if vol.use_masks else ((rgb_gt - bg).abs().amax(-1) > 2.0 / 255)
        # the grid is up to grid_every steps old: skip only what lies a margin of 0.05 units (or 12 beta) outside;
        # never on rays that see the head (a missing part of the surface must keep the density to grow from)
        margin = max(12.0, 0.05 / float(beta.detach()))
        res = render_volume(geo, lambda x, n, v, f: ren(x, n, -v, f), o, d, n_samples=vol.n_samples,
                            n_fine=vol.n_fine, beta=beta, radius=cfg.scene_radius,
                            grid=self.occupancy if vol.grid_every else None, margin_betas=margin,
                            no_skip=seen)
        rgb = res.rgb + (1 - res.opacity)[:, None] * bg
        objf = obj.to(rgb.dtype)
        if vol.use_masks:
            rgb_l = ((rgb - rgb_gt).abs().sum(-1) * objf).sum() / objf.sum().clamp_min(1)
            op = res.opacity.clamp(1e-4, 1 - 1e-4)
            target = self._mask_target()
            mask_l = torch.nn.functional.binary_cross_entropy(op, objf if target is None else target.to(op.dtype))
        else:
            rgb_l = (rgb - rgb_gt).abs().sum(-1).mean()
            mask_l = rgb.new_zeros(())
        n_eik = cfg.eikonal_points or max(1, cfg.batch_rays // 2)
        r = cfg.scene_radius
        p_eik = torch.rand(n_eik, 3, generator=self.eik_generator, device=self.device) * (2 * r) - r
        _, _, g_eik = geo.forward_with_gradient(p_eik, create_graph=True)
        grads = g_eik if res.sample_gradients is None else torch.cat([g_eik, res.sample_gradients])
        eik_l = ((grads.norm(dim=-1) - 1) ** 2).mean()
        loss = cfg.rgb_weight * rgb_l + vol.mask_weight * mask_l + cfg.eikonal_weight * eik_l
        extra = self.method.extra_losses(self.model, iteration=self.iteration)
        for v in extra.values():
            loss = loss + v
        self.sampler.observe(~obj & (res.opacity.detach() < 1e-3))  # selective sampling drops only these
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {**{k: v.detach() for k, v in extra.items()}, "loss": loss.detach(), "rgb_loss": rgb_l.detach(),
                "mask_loss": mask_l.detach(), "eikonal_loss": eik_l.detach(), "beta": beta.detach(),
                "samples_per_ray": res.samples / max(1, o.shape[0]),
                "hit_ratio": ((res.opacity > 0.5) & obj).sum() / obj.sum().clamp(min=1), "alpha": self.loss_fn.alpha,
                "lr": self.optimizer.param_groups[0]["lr"]}

    # ------------------------------------------------------------------ loop
    def train(self, checkpoint_path=None, stop_after: Optional[int] = None,
              callback: Optional[Callable[["Trainer", Dict[str, float]], None]] = None) -> Dict[str, float]:
        """Run until ``total_iterations`` (or until iteration ``stop_after``), checkpointing every
        ``checkpoint_every`` iterations, at the end and on KeyboardInterrupt (which is re-raised).
        Returns a summary (iterations, seconds)."""
        cfg = self.cfg
        end = self.total_iterations if stop_after is None else min(int(stop_after), self.total_iterations)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.total_iterations, initial=self.iteration, desc=f"{cfg.method} fit",
                       unit="it", dynamic_ncols=True, smoothing=0.05)
        t_last = time.perf_counter()
        rays_window, t_window = 0, 0.0
        try:
            while self.iteration < end:
                t0, c0 = time.perf_counter(), time.process_time()
                logs = self.step()
                self.iteration += 1
                dt = time.perf_counter() - t0
                self.elapsed += dt
                self.cpu_elapsed += time.process_time() - c0
                rays_window += self.sampler.last_idx.shape[0]
                t_window += dt
                self._accumulate(logs)
                if callback is not None:
                    callback(self, logs)
                if bar is not None:
                    bar.update(1)
                    if time.perf_counter() - t_last > 0.5 or self.iteration == end:
                        bar.set_postfix(loss=f"{float(logs['loss']):.4f}", hits=f"{float(logs['hit_ratio']):.2f}",
                                        rays_s=f"{rays_window / max(t_window, 1e-9):.0f}", refresh=False)
                        t_last = time.perf_counter()
                        rays_window, t_window = 0, 0.0
                if checkpoint_path is not None and (self.iteration % cfg.checkpoint_every == 0):
                    self.save_checkpoint(checkpoint_path)
        except KeyboardInterrupt:
            if checkpoint_path is not None:
                self.save_checkpoint(checkpoint_path)
            raise
        finally:
            if bar is not None:
                bar.close()
        if checkpoint_path is not None:
            self.save_checkpoint(checkpoint_path)
        return {"iterations": self.iteration, "train_seconds": self.elapsed, "train_cpu_seconds": self.cpu_elapsed,
                "seconds_per_iteration": self.elapsed / max(1, self.iteration)}

    def _accumulate(self, logs: Dict[str, float]) -> None:
        for k, v in logs.items():  # tensors are summed on their device: no host sync until a point is logged
            self._acc[k] = self._acc.get(k, 0.0) + (v.detach() if isinstance(v, torch.Tensor) else v)
        self._acc_n += 1
        if self._acc_n >= self.cfg.log_every or self.iteration == self.total_iterations:
            rec = {k: float(v) / self._acc_n for k, v in self._acc.items()}
            rec["iteration"] = self.iteration
            rec["epoch"] = self.epoch_at(self.iteration)
            rec["seconds"] = self.elapsed
            self.history.append(rec)
            self._acc, self._acc_n = {}, 0

    @property
    def finished(self) -> bool:
        return self.iteration >= self.total_iterations

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        cache = self.tracer.cache
        return {
            "format": 1, "config": self.cfg.to_dict(), "iteration": self.iteration, "phase": self.phase_index,
            "model": self.model.state_dict(),
            "cameras": None if self.cameras is None else self.cameras.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(), "eik_generator": self.eik_generator.get_state(), "rng": rng,
            "loss_alpha": self.loss_fn.alpha, "history": self.history, "elapsed": self.elapsed,
            "cpu_elapsed": self.cpu_elapsed,
            "acc": (self._acc, self._acc_n),
            "cache": None if cache is None else {"grid": cache.grid, "counter": cache.counter,
                                                 "queries": cache.queries, "hits": cache.hits},
            "total_iterations": self.total_iterations,
            "tracer_auto_choice": dict(self.tracer.auto_choice),
            "occupancy": self.occupancy,
        }

    def save_checkpoint(self, path) -> Path:
        """Write the checkpoint atomically (temporary file + rename)."""
        return save_weights(self.state_dict(), path)

    def load_checkpoint(self, path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` for the same config."""
        st = load_weights(path, "run checkpoint", map_location=self.device)
        need = ("total_iterations", "phase", "optimizer", "model", "iteration", "sampler", "eik_generator", "rng",
                "loss_alpha", "history", "elapsed", "acc")
        missing = [k for k in need if not isinstance(st, dict) or k not in st]
        if missing:
            raise ValueError(f"{path}: the run checkpoint lacks {missing} (damaged, or not a headrecon run "
                             "checkpoint)")
        if st.get("total_iterations") != self.total_iterations:
            raise ValueError(f"{path}: checkpoint of a run with {st.get('total_iterations')} iterations, this run "
                             f"has {self.total_iterations}")
        if st["phase"] >= 0:
            self._enter_phase(st["phase"], resumed=True)
            if st["optimizer"] is not None:
                self.optimizer.load_state_dict(st["optimizer"])
        self.model.load_state_dict(st["model"])
        if self.cameras is not None:
            if st.get("cameras") is None:
                raise ValueError(f"{path}: the checkpoint has no camera corrections but this run refines cameras")
            self.cameras.load_state_dict(st["cameras"])
        self.iteration = int(st["iteration"])
        self.sampler.load_state_dict(st["sampler"])
        self.eik_generator.set_state(st["eik_generator"].cpu() if hasattr(st["eik_generator"], "cpu")
                                     else st["eik_generator"])
        torch.set_rng_state(st["rng"]["torch"].cpu())
        if "cuda" in st["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(st["rng"]["cuda"].cpu(), self.device)
        self.loss_fn.alpha = st["loss_alpha"]
        self.history = list(st["history"])
        self.elapsed = float(st["elapsed"])
        self.cpu_elapsed = float(st.get("cpu_elapsed", 0.0))
        self._acc, self._acc_n = dict(st["acc"][0]), int(st["acc"][1])
        # strategy="auto" measured its choice when the run started; keep it so the run continues identically
        self.tracer.auto_choice = dict(st.get("tracer_auto_choice") or {})
        occ = st.get("occupancy")
        self.occupancy = None if occ is None else occ.to(self.device)
        cache = self.tracer.cache
        if cache is not None and st.get("cache") is not None:
            c = st["cache"]
            cache.grid = None if c["grid"] is None else c["grid"].to(self.device)
            cache.counter, cache.queries, cache.hits = c["counter"], c["queries"], c["hits"]

    def make_cache(self) -> SDFCache:
        """An empty SDF cache with the config's settings (``--sdf-cache``, and ``sira``'s acceleration)."""
        c = self.cfg
        return SDFCache(resolution=c.cache_resolution, p_force=c.cache_p_force, seed=c.seed)

    def _make_tracer(self, strategy: str, compute_min_sdf: bool, cache=None) -> RayTracer:
        """A :class:`RayTracer` with the config's tracer fields."""
        c = self.cfg
        return RayTracer(radius=c.scene_radius, n_coarse=c.n_coarse, n_fine=c.n_fine, n_secant=c.n_secant,
                         secant_tol=c.secant_tol, max_steps=c.max_steps, cache=cache, strategy=strategy,
                         compute_min_sdf=compute_min_sdf, single_thread_below=c.tracer_single_thread_below)

    def render_tracer(self) -> RayTracer:
        """A tracer with the run's settings for rendering images (no minimum-SDF search on missed rays)."""
        return self._make_tracer(self.tracer.resolved_strategy(self.device) or self.tracer.strategy,
                                 compute_min_sdf=False)

    def _enable_frame_refinement(self):
        """``--frame-refine``: the prior geometry's rigid correction (:mod:`headrecon.models.pose`)."""
        geo = split_detail(self.model.geometry)[0]
        if not isinstance(geo, FramedPrior):
            raise ValueError(f"--frame-refine {self.cfg.frame_refine}: method {self.cfg.method!r} places no prior "
                             "(only the prior methods, h3dnet and sira, have a placement to refine)")
        geo.enable_pose_refinement()
        return geo.pose

    def predicted_landmarks(self) -> Optional[Dict[str, List[float]]]:
        """The six H3DS landmarks of the placed prior, in the scene's frame and units (mm for a metric scene): the
        prior's mean-head landmarks through its placement (``--frame``) and ``--frame-refine``'s correction. They
        come from the photos (or whatever placed the prior), never from the ground truth unless ``--frame gt``
        placed it; the official H3DS evaluation uses them for its coarse alignment (``landmarks_pred``). ``None``
        for a method without a placed prior (``idr``, ``wang``)."""
        lm = getattr(self.method, "prior_landmarks", None)
        geo = split_detail(self.model.geometry)[0]
        if not lm or not isinstance(geo, FramedPrior):
            return None
        names = list(lm)
        P = torch.as_tensor(np.stack([np.asarray(lm[n], dtype=np.float64) for n in names]),
                            dtype=geo.frame_A.dtype, device=geo.frame_A.device)
        X = geo.from_prior(P).double().cpu().numpy()
        S = np.asarray(self.scene.scale_mat, dtype=np.float64)
        X = X @ S[:3, :3].T + S[:3, 3]
        return {n: [round(float(c), 4) for c in x] for n, x in zip(names, X)}

    def prior_pose_summary(self) -> dict | None:
        """The ``--frame-refine`` correction's size (rotation degrees; translation in scene units, mm for a metric
        scene)."""
        if self.prior_pose is None:
            return None
        geo = split_detail(self.model.geometry)[0]
        S = self.scene.scale_mat
        # prior units -> scene units (1 / frame scale) -> mm (the scene's scale_mat)
        mm = float(np.cbrt(np.linalg.det(np.asarray(S, dtype=np.float64)[:3, :3]))) / float(geo.frame_scale)
        return self.prior_pose.summary(mm_per_unit=mm)

    def training_cameras(self) -> list:
        """Unit-frame cameras of the training views at full resolution: as refined when ``refine_cameras``."""
        cams = self.scene.cameras_normalized()
        return cams if self.cameras is None else self.cameras.corrected(cams)

    def save_cameras(self, path) -> dict:
        """Write the refined cameras of the training views (scene units, IDR layout ``world_mat_i`` /
        ``scale_mat_i``, i = position in the run's views) to ``path``; returns the corrections' sizes."""
        S = np.asarray(self.scene.scale_mat, dtype=np.float64)
        arrays = {}
        for k, cam in enumerate(self.training_cameras()):
            arrays[f"world_mat_{k}"] = cam.transformed(np.linalg.inv(S)).world_mat()
            arrays[f"scale_mat_{k}"] = S
        np.savez(path, **arrays)
        return self.cameras.summary(mm_per_unit=float(np.cbrt(np.linalg.det(S[:3, :3]))))

    def save_history(self, path) -> None:
        Path(path).write_text(json.dumps(self.history, indent=0) + "\n")

    # ------------------------------------------------------------------ results
    def extract_mesh(self, resolution: Optional[int] = None, to_scene_units: bool = True,
                     refine: Optional[int] = None):
        """Marching-cubes mesh of the fitted SDF within the bounding sphere (the domain the tracer sees; largest
        component; refined ``cfg.mesh_refine`` times unless ``refine`` says), in scene millimetres by default."""
        from ..render.mesh import extract_mesh

        self.model.eval()
        res = int(resolution or self.cfg.mesh_resolution)
        with parametrize.cached():
            return extract_mesh(self.sdf_fn, resolution=res, radius=self.cfg.scene_radius, device=self.device,
                                scale_mat=self.scene.scale_mat if to_scene_units else None,
                                largest_component=True, chunk=65536 if self.device.type == "cpu" else 1 << 20,
                                progress=self.progress, clip_sphere=True,
                                refine=self.cfg.mesh_refine if refine is None else int(refine))


def make_adam(groups, device) -> torch.optim.Adam:
    """Adam over ``groups``, with torch's fused kernel on the CPU and CUDA (one pass over each parameter instead of
    one per elementwise operation; 0.88x the CPU time of an ``instant`` ``idr`` run, whose hash-grid tables are
    large: docs/results/engine-benchmarks.md)."""
    fused = torch.device(device).type in ("cpu", "cuda") and all(
        p.is_floating_point() for g in groups for p in g["params"])
    return torch.optim.Adam(groups, fused=fused or None)


def count_parameters(model) -> int:
    """Number of parameters of ``model``."""
    return int(sum(p.numel() for p in model.parameters()))
