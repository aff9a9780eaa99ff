"""``--method wang``: prior-guided implicit rendering (Wang et al., "Prior-Guided Multi-View 3D Head
Reconstruction", IEEE TMM): IDR (no learned shape prior) guided by three priors taken from the photos.

* **Facial proxy** (``proxy_weight`` w_p = 1): the morphable-model face fitted to the photos
  (:func:`headrecon.photos.proxy.face_proxy`); ``L_proxy = mean |f(v)|`` over points drawn on it each iteration.
* **Head semantics** (``semantic_weight`` w_s = 0.05): a semantic network ``s(x)``
  (:class:`headrecon.models.semantic.SemanticNetwork`, paper 4 x 512) at each hit pixel's differentiable surface
  point; ``L_se = CE(s(x_p), L_p)`` over head pixels with a known label. Label maps ``L_p``: the scene's
  ``semantic/`` when it has one (rendered scenes), else made from the face-mesh landmarks and the mask
  (:mod:`headrecon.photos.semantics`). ``semantic_hair false`` (an ablation) merges hair into skin.
* **Hair orientation** (``orientation_weight`` w_d = 1): the 2D orientation ``d_p`` of a bank of 32 Gabor kernels
  (:func:`headrecon.photos.orientation.gabor_orientation`, on the full-resolution photo, then reduced to the
  training size by averaging doubled angles); the 3D orientation at the surface point is the SDF's principal
  direction of least curvature (:func:`headrecon.models.differential.principal_direction`, Hessian by double
  backward), projected into the view; ``L_dir = mean(w_a (1 - |d_p . d_xp|))`` over hair pixels whose Gabor
  confidence is at least ``orient_min_confidence`` (at most ``orient_points`` per iteration, drawn with a generator
  seeded by the iteration). ``w_a``, the anisotropy weight of the principal direction, is 0 where the two
  curvatures are equal (the direction is undefined there) and keeps the gradients bounded.
* IDR's photometric, mask and Eikonal terms with the config's weights (IDR's 1 : 100 : 0.1 balance); once the
  orientation term is on, the photometric and Eikonal weights are multiplied by ``orient_rgb_factor`` and
  ``orient_eikonal_factor`` (paper: w_rgb 100, w_e 10).

Schedule: the priors are introduced one after the other (paper: 3000 epochs, one prior added every 1000): the
proxy from the start, the semantics from ``semantic_from`` (1/3 of the run) and the orientation from
``orientation_from`` (2/3). Cameras are refined jointly (``--refine-cameras``, on by default for this method in
every preset). Ablations switch a prior off with ``use_proxy``, ``use_semantics``, ``semantic_hair`` and
``use_orientation``. Where we differ from the paper: docs/methods/wang.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from .. import _sync
from .base import ReconModel, SurfaceBatch, option, proxy_loss, register_method, scene_face_proxy
from .idr import IDRMethod, IDROptions

__all__ = ["WangMethod", "WangOptions", "WangModel", "project_directions"]


@dataclass
class WangOptions(IDROptions):
    """``--method wang``: the IDR networks plus the semantic network, the three priors and their schedule."""

    _CAMS = dict(refine_cameras=True)
    PRESETS = {"paper": _CAMS, "fast": dict(IDROptions._FAST, sem_hidden=128, sem_layers=3, **_CAMS),
               "instant": dict(IDROptions._FAST, sem_hidden=128, sem_layers=3, **_CAMS)}

    sem_hidden: int = option(512, "semantic network width")
    sem_layers: int = option(4, "semantic network hidden layers")
    sem_freqs: int = option(6, "positional-encoding frequencies of the semantic network's input")
    use_proxy: bool = option(True, "the facial-proxy prior (the morphable-model face fitted to the photos)")
    use_semantics: bool = option(True, "the semantic prior (label maps of the views)")
    semantic_hair: bool = option(True, "keep the hair label (false: hair pixels count as skin; an ablation)")
    use_orientation: bool = option(True, "the hair-orientation prior (Gabor orientation of hair pixels)")
    proxy_weight: float = option(1.0, "w_p: weight of mean |f| on the proxy face")
    semantic_weight: float = option(0.05, "w_s: weight of the semantic cross-entropy")
    orientation_weight: float = option(1.0, "w_d: weight of the orientation loss")
    orient_rgb_factor: float = option(100.0, "photometric weight factor once the orientation term is on (paper: "
                                             "w_rgb 1 -> 100)")
    orient_eikonal_factor: float = option(100.0, "Eikonal weight factor once the orientation term is on (paper: "
                                                 "w_e 0.1 -> 10)")
    semantic_from: float = option(1 / 3, "share of the run after which the semantic term is on")
    orientation_from: float = option(2 / 3, "share of the run after which the orientation term is on")
    proxy_points: int = option(1024, "points drawn on the proxy face per iteration")
    proxy_radius: Optional[float] = option(70.0, "keep the proxy face within this many mm of the fitted nose tip "
                                                 "(none: the whole face mesh, forehead and face outline included)")
    orient_points: int = option(512, "at most this many hair pixels per iteration for the orientation term")
    orient_min_confidence: float = option(0.2, "hair pixels whose Gabor confidence is lower are left out")
    gabor_wavelength: float = option(4.0, "strand period (pixels of the full-resolution photo) the Gabor bank "
                                          "is tuned to")
    semantics_source: str = option("auto", "label maps: auto (the scene's semantic/ if present, else from the "
                                           "photos), scene, or photos (face-mesh landmarks and the mask)")

    def validate(self, cfg) -> List[str]:
        errs = super().validate(cfg)
        errs += self.check(positive=("sem_hidden", "sem_layers", "proxy_points", "orient_points",
                                     "gabor_wavelength", "proxy_radius"),
                           non_negative=("proxy_weight", "semantic_weight", "orientation_weight", "sem_freqs",
                                         "orient_rgb_factor", "orient_eikonal_factor", "orient_min_confidence"))
        if not 0 <= self.semantic_from <= 1 or not 0 <= self.orientation_from <= 1:
            errs.append("semantic_from and orientation_from must be shares of the run in [0, 1]")
        if self.semantics_source not in ("auto", "scene", "photos"):
            errs.append(f"semantics_source must be auto, scene or photos, got {self.semantics_source!r}")
        return errs


def project_directions(R: torch.Tensor, t: torch.Tensor, f: torch.Tensor, x: torch.Tensor,
                       d: torch.Tensor) -> torch.Tensor:
    """Unit image-plane directions [N, 2] (x right, y down) of 3D directions ``d`` [N, 3] at points ``x`` [N, 3]
    seen by pinhole cameras ``x_cam = R x + t`` [N,3,3], [N,3] with focal lengths ``f`` [N, 2] (OpenCV: z forward):
    the derivative of the projection along ``d``, ``f (dX z - X dz) / z^2``, normalised (differentiable)."""
    Xc = (R @ x[..., None])[..., 0] + t
    dXc = (R @ d[..., None])[..., 0]
    d2 = f * (dXc[:, :2] * Xc[:, 2:3] - Xc[:, :2] * dXc[:, 2:3])   # z^2 > 0 dropped: the direction is unchanged
    return nn.functional.normalize(d2, dim=-1)


class WangModel(ReconModel):
    """IDR's geometry and rendering networks plus the semantic network."""

    def __init__(self, geometry: nn.Module, rendering: nn.Module, semantic: nn.Module):
        super().__init__(geometry, rendering)
        self.semantic = semantic


@register_method("wang")
class WangMethod(IDRMethod):
    """Wang et al.: IDR guided by a facial proxy, head semantics and hair orientation (module docstring)."""

    Options = WangOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        self.proxy = None
        self._info: Dict[str, object] = {}
        self.sem_target: Optional[torch.Tensor] = None     # [P] long: class index - 1, -1 = no loss
        self.hair_pixel: Optional[torch.Tensor] = None     # [P] bool: hair label and a confident orientation
        self.orient_dir: Optional[torch.Tensor] = None     # [P, 2] unit 2D strand direction (x right, y down)

    # ------------------------------------------------------------------ build: networks and per-pixel priors
    def build(self, scene, device: torch.device) -> nn.Module:
        from ..models.semantic import SemanticNetwork

        base = super().build(scene, device)
        o = self.cfg.options
        sem = SemanticNetwork(d_hidden=o.sem_hidden, n_layers=o.sem_layers, n_freqs=o.sem_freqs)
        model = WangModel(base.geometry, base.rendering, sem).to(device)
        if o.use_proxy:
            self._build_proxy(scene)
        if o.use_semantics or o.use_orientation:
            self._build_pixels(scene, device)
        self._info["stages"] = {"proxy": 0.0 if o.use_proxy else None,
                                "semantics": o.semantic_from if o.use_semantics else None,
                                "orientation": o.orientation_from if o.use_orientation else None}
        return model

    def param_groups(self, model: nn.Module, phase) -> List[dict]:
        groups = super().param_groups(model, phase)
        if self.cfg.detail == "hashgrid":  # IDR's groups name the geometry and rendering networks only
            groups.append({"params": list(model.semantic.parameters()), "lr": self.cfg.lr, "name": "semantic"})
        return groups

    def _build_proxy(self, scene) -> None:
        self.proxy, self._info["proxy"] = scene_face_proxy(scene, self.cfg.options.proxy_radius)

    def _build_pixels(self, scene, device) -> None:
        from ..data.semantics import IGNORE_LABEL, SEMANTIC_CLASSES, reduce_labels
        from ..photos.orientation import gabor_orientation, orientation_vectors, reduce_orientation
        from ..data.camera import reduced_size

        o = self.cfg.options
        views = scene.views
        have = all(v.semantic is not None for v in views)
        source = o.semantics_source
        if source == "scene" and not have:
            raise ValueError("semantics_source scene: the scene has no semantic/ label maps for every view")
        if source == "auto":
            source = "scene" if have else "photos"
        if source == "scene":
            maps = [v.semantic for v in views]
            faces = None
        else:
            try:
                from ..photos.semantics import photo_label_maps

                maps, faces = photo_label_maps([v.image for v in views], [v.mask for v in views])
            except ImportError as exc:
                maps, faces = [np.where(v.mask, IGNORE_LABEL, 0).astype(np.uint8) for v in views], None
                self._info["semantics_why_not"] = str(exc)
        hair, skin = SEMANTIC_CLASSES.index("hair"), SEMANTIC_CLASSES.index("skin")
        tgt_l, hair_l, dir_l = [], [], []
        n_hair = n_conf = 0
        for v, lab in zip(views, maps):
            h, w = v.mask.shape
            nw, nh = reduced_size(h, w, self.cfg.image_size)
            small = reduce_labels(lab, nw, nh).reshape(-1).astype(np.int64)
            is_hair = small == hair
            t = small.copy()
            if not o.semantic_hair:
                t[is_hair] = skin
            t = np.where((t == 0) | (t == IGNORE_LABEL), -1, t - 1)
            tgt_l.append(t)
            if o.use_orientation:
                theta, conf = gabor_orientation(v.image, wavelength_px=o.gabor_wavelength)
                theta, conf = reduce_orientation(theta, conf, nw, nh)
                ok = is_hair & (conf.reshape(-1) >= o.orient_min_confidence)
                dir_l.append(orientation_vectors(theta.reshape(-1)))
                hair_l.append(ok)
                n_hair += int(is_hair.sum())
                n_conf += int(ok.sum())
        self.sem_target = torch.from_numpy(np.concatenate(tgt_l)).to(device)
        if o.use_orientation:
            self.hair_pixel = torch.from_numpy(np.concatenate(hair_l)).to(device)
            self.orient_dir = torch.from_numpy(np.concatenate(dir_l)).float().to(device)
        labelled = self.sem_target >= 0
        self._info["semantics"] = {"source": source, "labelled_pixels": int(labelled.sum()),
                                   "faces_found": None if faces is None else [bool(f) for f in faces]}
        if o.use_orientation:
            self._info["orientation"] = {"hair_pixels": n_hair, "confident_hair_pixels": n_conf}

    # ------------------------------------------------------------------ losses
    def _stage(self, trainer, name) -> bool:
        """Whether the prior ``name`` is on at the trainer's iteration."""
        o = self.cfg.options
        at = {"semantics": o.semantic_from, "orientation": o.orientation_from}[name]
        return trainer.iteration / float(max(1, trainer.total_iterations)) >= at - 1e-12

    def loss_weights(self, progress: float) -> Dict[str, float]:
        o = self.cfg.options
        if o.use_orientation and self.hair_pixel is not None and progress >= o.orientation_from - 1e-12:
            return {"rgb": self.cfg.rgb_weight * o.orient_rgb_factor,
                    "eikonal": self.cfg.eikonal_weight * o.orient_eikonal_factor}
        return {}

    def extra_losses(self, model: nn.Module, iteration: Optional[int] = None) -> Dict[str, torch.Tensor]:
        o = self.cfg.options
        if not o.use_proxy or self.proxy is None or iteration is None:
            return {}
        return {"proxy_loss": o.proxy_weight * proxy_loss(model.geometry, self.proxy, o.proxy_points, self.cfg.seed,
                                                          iteration)}

    def surface_losses(self, trainer, batch: SurfaceBatch) -> Dict[str, torch.Tensor]:
        o = self.cfg.options
        out: Dict[str, torch.Tensor] = {}
        it = trainer.iteration
        if batch.pixels.numel() == 0:
            return out
        if o.use_semantics and self.sem_target is not None and self._stage(trainer, "semantics"):
            t = self.sem_target[batch.pixels]
            keep = _sync.nonzero(t >= 0)
            if keep.numel():
                logits = trainer.model.semantic(batch.points[keep])
                ce = nn.functional.cross_entropy(logits, t[keep])
                out["semantic_loss"] = o.semantic_weight * ce
        if o.use_orientation and self.hair_pixel is not None and self._stage(trainer, "orientation"):
            sel = _sync.nonzero(self.hair_pixel[batch.pixels])
            if sel.numel() > o.orient_points:
                g = torch.Generator().manual_seed(int(self.cfg.seed) * 1000003 + 104729 + int(it))
                sel = sel[torch.randperm(sel.numel(), generator=g)[:o.orient_points].to(sel.device)]
            if sel.numel():
                out["orientation_loss"] = o.orientation_weight * self._orientation_loss(trainer, batch, sel)
        return out

    def _orientation_loss(self, trainer, batch: SurfaceBatch, sel: torch.Tensor) -> torch.Tensor:
        from ..models.differential import principal_direction

        x = batch.points[sel]
        d3, aw = principal_direction(trainer.model.geometry.sdf, x, create_graph=True, return_weight=True)
        pix = batch.pixels[sel]
        view = trainer.bank.view[pix]
        R, t, f = self._view_cameras(trainer, x)
        d2 = project_directions(R[view], t[view], f[view], x, d3)
        cos = (d2 * self.orient_dir[pix]).sum(-1).abs()
        return (aw * (1.0 - cos)).mean()

    def _view_cameras(self, trainer, like: torch.Tensor):
        """Per view: world->camera rotation [V,3,3], translation [V,3] and focal lengths [V,2] of the unit-frame
        training cameras (as refined so far when ``refine_cameras``; no gradient to the corrections here). Fixed
        cameras are converted once."""
        if trainer.cameras is None and getattr(self, "_fixed_cams", None) is not None:
            return self._fixed_cams
        cams = trainer.bank.cameras if trainer.cameras is None else trainer.cameras.corrected(trainer.bank.cameras)
        R = torch.tensor(np.stack([c.R for c in cams]), dtype=like.dtype, device=like.device)
        t = torch.tensor(np.stack([c.t for c in cams]), dtype=like.dtype, device=like.device)
        f = torch.tensor([[c.K[0, 0], c.K[1, 1]] for c in cams], dtype=like.dtype, device=like.device)
        if trainer.cameras is None:
            self._fixed_cams = (R, t, f)
        return R, t, f

    def info(self) -> dict:
        return dict(self._info)
