"""Typed configuration of a reconstruction run (:class:`ReconConfig`), its presets and its JSON form.

A run's config is the settings every method shares (the fields of :class:`ReconConfig`) plus the chosen method's
own (``cfg.options``, the method's :class:`~headrecon.methods.base.MethodOptions` subclass, e.g.
:class:`~headrecon.methods.sira.SiraOptions`; ``cfg.<option>`` reads them too). ``config.json`` holds both, flat.
Every field carries ``metadata["help"]``; :func:`add_config_arguments` turns the shared fields and one method's
options into command-line options (``batch_rays`` -> ``--batch-rays``), so ``headrecon-reconstruct --method NAME
--help`` is generated from here. The command line is plain argparse driven by the fields' type hints
(``typing.get_type_hints``): ``--method NAME`` stays one flag (tyro would make each method a sub-command), and the
two-stage parse (method first, then its options) keeps one parser per method.

Schedules are written in IDR epochs for a nominal run of ``epochs`` epochs and scaled to the actual run length:
at iteration ``i`` of ``N`` the schedule epoch is ``floor(i * epochs / N)`` (alpha milestones, learning-rate
decays and selective sampling all use it). ``N`` is ``iterations`` when given, else ``epochs`` times the
iterations per epoch (see ``epoch_mode``).

Presets (:data:`PRESETS`):

* ``paper`` follows IDR / H3D-Net / SIRA++: (for IDR, :class:`~headrecon.methods.idr.IDROptions`) 8 x 512
  geometry network (skip at 4, 6 frequencies, 256 features), 4 x 512 rendering network, 2048 rays per batch, 2000 epochs, Adam 1e-4 halved at epochs 1000 and 1500, mask
  alpha 50 doubled at 250/500/750/1000/1250, selective sampling dropping 12 % of the background rays every 250
  epochs during the first 1000, full image resolution, 512^3 marching cubes.
* ``fast`` is what a CPU user runs (chosen by measurement on a 2-core machine, see docs/methods/idr.md): smaller
  networks, images reduced to at most 128 px, fewer rays and a fixed iteration count with the same schedule
  shape, a 160^3 mesh refined once (``mesh_refine``: subdivided and moved onto the surface), an SDF cache that
  re-evaluates 5 % of the lookups it could answer (``cache_p_force``; SIRA++ 20 %); for H3D-Net /
  SIRA++ phase 2 trains a hash-grid detail field over the frozen prior instead of fine-tuning it (the methods'
  ``Options.PRESETS``; measured in docs/results/priors-busts.md).
* ``instant`` is ``fast`` with the hash-grid detail field (``--detail hashgrid``): for IDR the initial sphere plus
  a multiresolution hash encoding and a tiny MLP instead of the 4 x 128 network; for H3D-Net / SIRA++ phase 2
  trains a detail field over the frozen prior instead of fine-tuning it; larger images (the field resolves them);
  a CPU-sized table (8 levels of 2^15 rows: the dense Adam update of a larger table costs more than it gives on a
  CPU, measured in docs/results/hash-grid.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..data.scene import parse_views
from ..methods import METHODS, MethodOptions
from ..methods.base import option as _f

__all__ = ["ReconConfig", "PRESETS", "make_config", "add_config_arguments", "config_from_args", "RUNTIME_FIELDS",
           "config_diff", "options_class"]

PRIOR_METHODS = ("h3dnet", "sira")  # the methods with a learned prior (latent phase, codes, placement)


def options_class(method: str):
    """The :class:`MethodOptions` subclass of a registered method (ValueError naming the available ones)."""
    if method not in METHODS:
        raise ValueError(f"unknown reconstruction method {method!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[method].Options


@dataclass
class ReconConfig:
    """All settings of one reconstruction run (stored as ``config.json`` in the run folder)."""

    # ---- what to run
    method: str = _f("idr", "reconstruction method (a key of headrecon.methods.METHODS)", group="run")
    preset: str = _f("paper", "preset the other fields started from: fast (CPU) or paper (the dataclass defaults)",
                     group="run")
    views: str = _f("3", "views to use: 3, 4, 8, 16, 32, all, or comma-separated view indices", group="run")
    device: str = _f("auto", "auto (CUDA when available), cpu, cuda or cuda:N", group="run")
    seed: int = _f(0, "random seed (network initialisation, ray sampling, eikonal points)", group="run")
    iterations: Optional[int] = _f(None, "total iterations; default: epochs x iterations per epoch", group="run")
    threads: int = _f(0, "CPU threads for torch (0 = torch's default); 1 is fastest for the small fast-preset "
                         "networks on a busy machine (measured), see README", group="run")

    # ---- schedule (in epochs of a nominal run of `epochs` epochs, scaled to the run length)
    epochs: int = _f(2000, "nominal schedule length in IDR epochs", group="schedule")
    epoch_mode: str = _f("views", "what one epoch is: 'views' = one batch per input view (IDR's training loop: "
                                  "batch size 1 image, num_pixels rays each) or 'pixels' = one pass over all "
                                  "pixels of the views in batches", group="schedule")
    batch_rays: int = _f(2048, "rays per iteration (sampled over all chosen views; with ss_shrink, the batch of the "
                               "full pool, shrinking as selective sampling drops rays)", group="schedule")
    lr: float = _f(1e-4, "Adam learning rate", group="schedule")
    lr_milestones: Tuple[int, ...] = _f((1000, 1500), "epochs at which the learning rate is multiplied by lr_gamma",
                                        group="schedule")
    lr_gamma: float = _f(0.5, "learning-rate step decay factor", group="schedule")
    ss_fraction: float = _f(0.12, "selective sampling: fraction of the background rays dropped at each step, "
                                  "farthest from the silhouette first, among those whose ray last missed the surface "
                                  "(0 disables)", group="schedule")
    ss_shrink: bool = _f(False, "selective sampling: dropped rays leave the batch, which shrinks with the pool (each "
                                "remaining pixel is drawn as often as without selective sampling, and the dropped "
                                "rays' cost is saved, as in SIRA++; measured: 18-25 %% of a 3-view SIRA++ run's "
                                "time, same accuracy up to 3 views, worse from 4 views on, see README) instead of the "
                                "whole batch_rays being drawn from the remaining pool (more foreground rays per "
                                "iteration, no time saved)", group="schedule")
    ss_every: int = _f(250, "selective sampling: epochs between drop steps", group="schedule")
    ss_until: int = _f(1000, "selective sampling: last epoch with a drop step", group="schedule")

    # ---- loss
    rgb_weight: float = _f(2.0, "weight of the L1 colour loss (2 = IDR's balance for [0,1] colours)", group="loss")
    mask_weight: float = _f(100.0, "weight of the silhouette loss", group="loss")
    soft_masks: bool = _f(False, "silhouette loss target: each training pixel's mask coverage after the reduction to "
                                 "image_size (where the outline crosses the pixel) instead of the >= 50 %% mask",
                          group="loss")
    eikonal_weight: float = _f(0.1, "weight of the eikonal loss", group="loss")
    alpha_init: float = _f(50.0, "initial mask-loss sharpness alpha", group="loss")
    alpha_milestones: Tuple[int, ...] = _f((250, 500, 750, 1000, 1250), "epochs at which alpha is multiplied by "
                                           "alpha_factor", group="loss")
    alpha_factor: float = _f(2.0, "alpha growth factor", group="loss")
    eikonal_points: int = _f(0, "uniform eikonal samples per iteration in the bounding cube (0 = batch_rays/2); "
                                "the surface hits are added", group="loss")

    # ---- networks
    render_hidden: int = _f(512, "rendering network width", group="model")
    render_layers: int = _f(4, "rendering network hidden layers", group="model")
    view_freqs: int = _f(4, "positional-encoding frequencies of the view direction", group="model")
    render_mode: str = _f("idr", "rendering network inputs: idr, no_view_dir or no_normal", group="model")

    # ---- detail field (headrecon.models.hashgrid): SDF = base + tiny MLP(hash grid)
    detail: str = _f("none", "geometry detail field: none (the method's own network) or hashgrid (multiresolution "
                             "hash encoding + tiny MLP over a base: the initial sphere for idr; for h3dnet/sira "
                             "the prior's decoder, whose phase 2 then trains the detail field instead of the decoder)",
                     group="detail")
    hash_levels: int = _f(12, "hash grid: levels", group="detail")
    hash_log2_size: int = _f(17, "hash grid: log2 of the table rows per level", group="detail")
    hash_feats: int = _f(2, "hash grid: features per row", group="detail")
    hash_base_res: int = _f(16, "hash grid: cells per axis of the coarsest level (over the bounding cube)",
                            group="detail")
    hash_finest_res: int = _f(512, "hash grid: cells per axis of the finest level", group="detail")
    hash_hidden: int = _f(64, "hash grid: width of the tiny MLP (2 hidden layers)", group="detail")
    hash_start_levels: int = _f(4, "hash grid: levels active at the start (coarse to fine)", group="detail")
    hash_full_at: float = _f(0.5, "hash grid: share of the run after which every level is active", group="detail")
    hash_normals: str = _f("analytic", "hash grid: normals and the Eikonal term's gradient: analytic (double "
                                       "backward through the op) or fd (central differences of the detail field, "
                                       "step one cell of the finest active level, as Neuralangelo)",
                           group="detail")
    hash_lr: float = _f(1e-2, "hash grid: Adam learning rate of the table and its MLP", group="detail")
    detail_weight: float = _f(0.0, "weight of the detail field's mean squared SDF correction (keeps a prior's "
                                   "detail small; 0 = off)", group="detail")
    detail_unseen_weight: float = _f(0.0, "h3dnet / sira: weight of the detail field's mean squared SDF correction "
                                          "at surface points no training camera sees (found on the prior's "
                                          "fitted surface when phase 2 starts): what no photo shows stays the "
                                          "prior's (0 = off)", group="detail")
    prior_hold_weight: float = _f(0.0, "h3dnet / sira: weight of the mean squared change of the whole SDF from the "
                                       "placed prior's (before any fitting) at fixed points around the part of "
                                       "its surface no training camera sees, in both phases (0 = off)",
                                  group="detail")
    freeze_codes: bool = _f(False, "h3dnet / sira: phase 2 keeps the prior's latent codes where the latent phase "
                                   "left them (only the detail field or decoder and the rendering network train)",
                            group="detail")

    # ---- data and tracer
    image_size: int = _f(0, "train on images reduced to at most this many pixels per side (0 = full size)",
                         group="data")
    scene_radius: float = _f(1.0, "bounding-sphere radius of the tracer in the unit-sphere frame", group="data")
    strategy: str = _f("default", "ray tracer strategy: default (fixed per device: sphere on CPU, search on CUDA; "
                                  "SIRA++ uses search), sphere, search, or auto (times both on the first batch and "
                                  "keeps the faster: not reproducible across machines or loads)", group="data")
    n_coarse: int = _f(75, "tracer: coarse samples per ray (search and minimum SDF)", group="data")
    n_fine: int = _f(25, "tracer: fine samples in the sign-change bracket", group="data")
    n_secant: int = _f(8, "tracer: secant steps", group="data")
    secant_tol: float = _f(0.0, "tracer: a ray leaves the secant refinement once |sdf| at its proposal is within "
                                "this (0 = every ray takes all n_secant steps; 1e-5: fewer network calls, off by "
                                "default: docs/results/engine-benchmarks.md)", group="data")
    max_steps: int = _f(30, "tracer: sphere-tracing steps (IDR: 10; the engine's default 30 sends fewer rays "
                                  "to the costlier search)", group="data")
    sdf_cache: bool = _f(False, "answer far-from-surface tracer lookups from an SDF voxel cache", group="data")
    tracer_single_thread_below: int = _f(1024, "CPU: the tracer's network calls of fewer points run on one torch "
                                               "thread (0 = always torch's thread count): small multi-threaded "
                                               "calls stall on a busy machine "
                                               "(docs/results/engine-benchmarks.md)", group="data")
    frame: str = _f("auto", "where a prior method places its prior in the scene: auto (the scene's "
                            "scene_info.json prior_scale_mat if given, else from the images: face landmarks "
                            "detected and triangulated, morphable-model fit; else the scene centre in the ICT "
                            "orientation), images, gt (the ground-truth landmarks: ablations only) or centre",
                    group="data")
    frame_depth: str = _f("model", "one view only, --frame images: the head's depth from the morphable model's "
                                   "average size (model) or from the scene's unit-sphere centre (sphere: the "
                                   "scale_mat given with the cameras), the prior scaled to keep its image",
                          group="data")
    frame_refine: str = _f("off", "prior methods: refine the prior's placement (one rigid correction after --frame, "
                                  "trained by the images' losses): off, latent (during the latent phase) or all "
                                  "(the whole run)", group="data")
    head_rays: str = _f("off", "prior methods: draw only the placed prior's head rays (those whose closest approach "
                               "to its vertical axis lies above head_rays_floor_mm below its mouth corners: not the "
                               "chest's or the shoulders') during the latent phase (latent) or the whole run (all), "
                               "so that the body's outline and colours do not reshape the head; off: every ray",
                        group="data")
    head_rays_floor_mm: float = _f(60.0, "--head-rays: how far below the prior's mouth corners (mm, prior frame) the "
                                         "head's rays end", group="data")
    frame_refine_lr: float = _f(1e-3, "Adam learning rate of --frame-refine (radians and unit-sphere radii of the "
                                      "prior frame)", group="data")
    refine_cameras: bool = _f(False, "refine each view's camera pose during the fit (a rigid correction per view, "
                                     "applied to the rays; written to the run folder's cameras_refined.npz)",
                              group="data")
    camera_lr: float = _f(1e-3, "Adam learning rate of the camera corrections (radians and unit-sphere radii)",
                          group="data")
    camera_start: float = _f(0.1, "share of the run during which the camera corrections stay frozen", group="data")
    cache_resolution: int = _f(64, "SDF cache resolution per axis", group="data")
    cache_p_force: float = _f(0.2, "SDF cache: probability that a lookup the cache could answer goes to the network "
                                   "anyway, which keeps the cached values fresh (SIRA++: 0.2)", group="data")

    # ---- outputs
    checkpoint_every: int = _f(500, "save a checkpoint every N iterations (and at the end)", group="output")
    log_every: int = _f(10, "iterations per point of the loss curve", group="output")
    mesh_resolution: int = _f(512, "marching-cubes grid points per axis", group="output")
    mesh_refine: int = _f(0, "midpoint subdivisions of the marching-cubes mesh, each followed by moving the vertices "
                             "onto the surface: the vertex density of a 2^N times finer grid at a fraction of its "
                             "cost (nearest-vertex metrics such as the official H3DS protocol read the vertices)",
                          group="output")
    render_size: int = _f(256, "largest side of the result renders (pixels)", group="output")
    novel_yaws: Tuple[float, ...] = _f((90.0, 180.0, -90.0), "yaws (deg, 0 = face) of the novel-view renders",
                                       group="output")
    evaluate: bool = _f(True, "compute the H3DS metrics when the scene has a ground-truth mesh", group="output")

    # ---- the method's own settings (a MethodOptions subclass; None = the method's defaults)
    options: Optional[MethodOptions] = dataclasses.field(default=None, metadata={"help": "", "group": "method"})

    def __post_init__(self):
        if self.options is None and self.method in METHODS:
            self.options = METHODS[self.method].Options()

    def __getattr__(self, name):
        """The method's options read as ``cfg.<option>`` too."""
        opts = self.__dict__.get("options")
        if opts is not None and name in {f.name for f in fields(opts)}:
            return getattr(opts, name)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}"
                             + (f" (not an option of --method {self.__dict__.get('method')})" if opts is not None
                                else ""))

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> Dict[str, Any]:
        """Shared fields and the method's options, flat (the form of ``config.json``)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        if self.options is not None:
            d.update(dataclasses.asdict(self.options))
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ReconConfig":
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        method = kw.get("method", "idr")
        shared = {k: kw.pop(k) for k in list(kw) if k in _SHARED}
        opts_cls = options_class(method)
        own = set(opts_cls.field_names())
        unknown = sorted(set(kw) - own)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown} for method {method!r}" + _owners(unknown))
        cfg = cls(**shared, options=opts_cls(**kw))
        cfg.validate()
        return cfg

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path) -> "ReconConfig":
        """Read ``config.json``. Files written before each method had its own options held every method's
        fields: those of other methods are dropped."""
        try:
            d = json.loads(Path(path).read_text())
            own = set(options_class(d.get("method", "idr")).field_names())
            others = {n for m in METHODS.values() for n in m.Options.field_names()} - own
            return cls.from_dict({k: v for k, v in d.items() if k not in others})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid headrecon config ({exc})") from None

    def replace(self, **changes) -> "ReconConfig":
        """A copy with ``changes`` (shared fields or the method's options) applied and validated."""
        d = self.to_dict()
        unknown = sorted(set(changes) - set(d) - {"method"})
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown} for method {self.method!r}" + _owners(unknown))
        d.update(changes)
        return ReconConfig.from_dict(d)

    def validate(self) -> None:
        """Raise ValueError with a clear message for out-of-range settings."""
        errs = []
        if self.preset not in PRESETS:
            errs.append(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.iterations is not None and self.iterations < 1:
            errs.append(f"iterations must be >= 1, got {self.iterations}")
        for name in ("epochs", "batch_rays", "render_hidden", "mesh_resolution",
                     "render_size", "checkpoint_every", "log_every", "ss_every"):
            if getattr(self, name) < 1:
                errs.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.mesh_refine <= 3:
            errs.append(f"mesh_refine must be 0-3 (each step has four times the faces), got {self.mesh_refine}")
        if self.epoch_mode not in ("views", "pixels"):
            errs.append(f"epoch_mode must be 'views' or 'pixels', got {self.epoch_mode!r}")
        if self.strategy not in ("default", "auto", "sphere", "search"):
            errs.append(f"strategy must be default, auto, sphere or search, got {self.strategy!r}")
        if self.tracer_single_thread_below < 0:
            errs.append(f"tracer_single_thread_below must be >= 0, got {self.tracer_single_thread_below}")
        if self.frame not in ("auto", "images", "gt", "centre"):
            errs.append(f"frame must be auto, images, gt or centre, got {self.frame!r}")
        if self.frame_refine not in ("off", "latent", "all"):
            errs.append(f"frame_refine must be off, latent or all, got {self.frame_refine!r}")
        if self.head_rays not in ("off", "latent", "all") or (self.head_rays != "off"
                                                               and self.method not in PRIOR_METHODS):
            errs.append(f"head_rays must be off, latent or all (latent and all need --method h3dnet or sira), got "
                        f"{self.head_rays!r} with {self.method}")
        if self.freeze_codes and self.method not in PRIOR_METHODS:
            errs.append(f"freeze_codes keeps a prior's latent codes in phase 2: it needs --method h3dnet or sira, "
                        f"got {self.method}")
        if not self.head_rays_floor_mm >= 0:
            errs.append(f"head_rays_floor_mm must be >= 0, got {self.head_rays_floor_mm}")
        if not self.frame_refine_lr > 0:
            errs.append(f"frame_refine_lr must be positive, got {self.frame_refine_lr}")
        if self.frame_depth not in ("model", "sphere"):
            errs.append(f"frame_depth must be model or sphere, got {self.frame_depth!r}")
        if not self.camera_lr > 0 or not 0.0 <= self.camera_start < 1.0:
            errs.append(f"camera_lr must be positive and camera_start in [0, 1), got {self.camera_lr}, "
                        f"{self.camera_start}")
        if self.detail not in ("none", "hashgrid"):
            errs.append(f"detail must be none or hashgrid, got {self.detail!r}")
        if self.hash_normals not in ("analytic", "fd"):
            errs.append(f"hash_normals must be analytic or fd, got {self.hash_normals!r}")
        if min(self.hash_levels, self.hash_feats, self.hash_base_res, self.hash_hidden, self.hash_start_levels) < 1 \
                or not 1 <= self.hash_log2_size <= 24 or self.hash_finest_res < self.hash_base_res \
                or self.hash_start_levels > self.hash_levels or not 0 < self.hash_full_at <= 1 \
                or not self.hash_lr > 0 or self.detail_weight < 0 or self.detail_unseen_weight < 0:
            errs.append("hash grid settings out of range: levels, feats, base_res, hidden, start_levels >= 1, "
                        "start_levels <= levels, 1 <= log2_size <= 24, finest_res >= base_res, 0 < full_at <= 1, "
                        "hash_lr > 0, detail_weight >= 0, detail_unseen_weight >= 0")
        if self.detail_unseen_weight > 0 and (self.detail != "hashgrid" or self.method not in PRIOR_METHODS):
            errs.append("detail_unseen_weight holds a prior's shape where no camera looks: it needs --method h3dnet "
                        "or sira with --detail hashgrid")
        if self.prior_hold_weight < 0 or (self.prior_hold_weight > 0 and self.method not in PRIOR_METHODS):
            errs.append(f"prior_hold_weight holds a prior's shape where no camera looks: it must be >= 0 and needs "
                        f"--method h3dnet or sira, got {self.prior_hold_weight} with {self.method}")
        if self.render_mode not in ("idr", "no_view_dir", "no_normal"):
            errs.append(f"render_mode must be idr, no_view_dir or no_normal, got {self.render_mode!r}")
        if not 0.0 <= self.cache_p_force <= 1.0:
            errs.append(f"cache_p_force must be in [0, 1], got {self.cache_p_force}")
        if not 0.0 <= self.ss_fraction < 1.0:
            errs.append(f"ss_fraction must be in [0, 1), got {self.ss_fraction}")
        if not self.lr > 0:
            errs.append(f"lr must be positive, got {self.lr}")
        if self.image_size < 0 or self.eikonal_points < 0 or self.threads < 0:
            errs.append("image_size, eikonal_points and threads must be >= 0")
        try:
            parse_views(self.views)
        except ValueError as exc:
            errs.append(str(exc))
        if self.method not in METHODS:
            errs.append(f"method must be one of {sorted(METHODS)}, got {self.method!r}")
        elif not isinstance(self.options, METHODS[self.method].Options):
            errs.append(f"options of method {self.method!r} must be {METHODS[self.method].Options.__name__}, "
                        f"got {type(self.options).__name__}")
        else:
            errs += self.options.validate(self)
        dev = str(self.device)
        if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
            errs.append(f"device must be auto, cpu, cuda or cuda:N, got {dev!r}")
        if errs:
            raise ValueError("invalid reconstruction config: " + "; ".join(errs))


_PAPER: Dict[str, Any] = {}  # the dataclass defaults are the paper settings

_FAST: Dict[str, Any] = dict(
    iterations=1500,
    threads=1,
    batch_rays=1024,
    lr=5e-4,
    render_hidden=128, render_layers=2,
    image_size=128,
    n_coarse=48, n_fine=16, n_secant=6,
    checkpoint_every=250,
    mesh_resolution=160,
    mesh_refine=1,
    render_size=160,
    # sira's SDF cache re-evaluates 5 % of the lookups it could answer, not SIRA++'s 20 %: 0.8x the time, level
    # accuracy at 1, 3 and 8 views over seeds (docs/results/engine-benchmarks.md)
    cache_p_force=0.05,
)

# instant: the fast preset with the hash-grid detail field (headrecon.models.hashgrid) and what its speed buys
_INSTANT: Dict[str, Any] = dict(_FAST, detail="hashgrid", image_size=256, hash_levels=8, hash_log2_size=15)

PRESETS: Dict[str, Dict[str, Any]] = {"paper": _PAPER, "fast": _FAST, "instant": _INSTANT}

# fields that may differ between a run and its resumption (they do not change the result)
RUNTIME_FIELDS = ("device", "threads")


_SHARED = {f.name for f in fields(ReconConfig)} - {"options"}


def _owners(names) -> str:
    """' (x is an option of --method sira)' hints for fields of other methods."""
    hints = [f"{n} is an option of --method {m}" for n in names for m, cls in sorted(METHODS.items())
             if n in cls.Options.field_names()]
    return f" ({'; '.join(hints)})" if hints else ""


def make_config(preset: str = "fast", **overrides) -> ReconConfig:
    """The preset's config with ``overrides`` applied: shared fields and options of ``overrides["method"]``
    (default idr). Unknown names, and options of another method, raise ValueError."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    opts_presets = options_class(overrides.get("method", "idr")).PRESETS.get(preset, {})
    return ReconConfig.from_dict({**PRESETS[preset], **opts_presets, **overrides, "preset": preset})


def config_diff(a: ReconConfig, b: ReconConfig, ignore=RUNTIME_FIELDS) -> Dict[str, Tuple[Any, Any]]:
    """Fields whose values differ: ``name -> (a value, b value)`` (None for a field only one side has)."""
    da, db = a.to_dict(), b.to_dict()
    return {k: (da.get(k), db.get(k)) for k in {**da, **db} if k not in ignore and da.get(k) != db.get(k)}


# ------------------------------------------------------------------ argparse bridge
def _bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _tuple_of(kind):
    def parse(text: str):
        try:
            return tuple(kind(x) for x in str(text).replace(" ", "").split(",") if x)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
    parse.__name__ = f"{kind.__name__}_list"
    return parse


def _optional(kind):
    def parse(text: str):
        return None if str(text).strip().lower() in ("none", "") else kind(text)
    parse.__name__ = f"optional_{getattr(kind, '__name__', 'value').lstrip('_')}"
    return parse


_SCALARS = {bool: _bool, int: int, float: float, str: str}


def _field_kind(cls, f) -> Tuple[str, Any]:
    """``(wrapper, scalar type)`` of a dataclass field from its type hint: wrapper "", "Tuple" (``Tuple[X,
    ...]``) or "Optional" (``Optional[X]``)."""
    tp = typing.get_type_hints(cls)[f.name]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        return "Tuple", args[0]
    if origin is typing.Union and type(None) in args:
        return "Optional", next(a for a in args if a is not type(None))
    return "", tp


def _arg_type(cls, f):
    """The argparse type of a config field: ``Tuple[X, ...]`` takes comma-separated values, ``Optional[X]`` also
    ``none``."""
    wrapper, scalar = _field_kind(cls, f)
    parse = _SCALARS.get(scalar, str)
    return {"Tuple": _tuple_of, "Optional": _optional}[wrapper](parse) if wrapper else parse


# options that the command line defines itself (fixed choices)
_CLI_CHOICES = {"method": None, "preset": sorted(PRESETS), "device": None,
                "frame": ["auto", "images", "gt", "centre"], "frame_depth": ["model", "sphere"],
                "frame_refine": ["off", "latent", "all"], "head_rays": ["off", "latent", "all"],
                "detail": ["none", "hashgrid"], "hash_normals": ["analytic", "fd"]}


def add_config_arguments(parser: argparse.ArgumentParser, method: str = "idr", skip=()) -> None:
    """Add one ``--option`` per shared config field and per option of ``method`` (default: not given, so presets
    and stored configs apply). Grouped as in the dataclasses; the help text is the field's ``metadata["help"]``
    with the defaults of both presets."""
    opts_cls = options_class(method)
    groups: Dict[str, Any] = {}
    items = [(ReconConfig, f, PRESETS) for f in fields(ReconConfig) if f.name not in ("options",)]
    items += [(opts_cls, f, None) for f in fields(opts_cls)]
    for cls, f, presets in items:
        if f.name in skip:
            continue
        g = f.metadata.get("group", f"--method {method}")
        if g not in groups:
            title = {"run": "run", "schedule": "schedule (epochs scaled to the run length)", "loss": "loss",
                     "model": "networks", "data": "data and ray tracer", "output": "outputs",
                     "detail": "detail field (--detail hashgrid)"}.get(g, g)
            groups[g] = parser.add_argument_group(title)
        p = {k: {**(presets or {}).get(k, {}), **opts_cls.PRESETS.get(k, {})} for k in PRESETS}
        vals = {k: p[k].get(f.name, _default(f)) for k in ("fast", "paper", *sorted(set(PRESETS) - {"fast", "paper"}))}
        first = next(iter(vals.values()))
        dflt = (", ".join(f"{k}: {_show(v)}" for k, v in vals.items()) if any(v != first for v in vals.values())
                else f"default: {_show(first)}")
        kw = dict(type=_arg_type(cls, f), default=argparse.SUPPRESS, help=f"{f.metadata['help']} ({dflt})",
                  dest=f.name)
        if f.name in _CLI_CHOICES and _CLI_CHOICES[f.name]:
            kw["choices"] = _CLI_CHOICES[f.name]
        wrapper, scalar = _field_kind(cls, f)
        if wrapper == "Tuple":
            kw["metavar"] = "A,B,..."
        elif scalar is bool:  # "--flag" alone means true; "--flag false" still works
            kw.update(metavar="BOOL", nargs="?", const=True)
        groups[g].add_argument("--" + f.name.replace("_", "-"), **kw)


def _default(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()


def _show(v):
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return str(v)


def explicit_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The config fields and method options given on the command line (options default to 'not given')."""
    names = _SHARED | {n for m in METHODS.values() for n in m.Options.field_names()}
    return {k: v for k, v in vars(args).items() if k in names}


def config_from_args(args: argparse.Namespace) -> ReconConfig:
    """Preset (``--preset``, default fast) + the explicitly given options."""
    over = explicit_overrides(args)
    preset = over.pop("preset", "fast")
    return make_config(preset, **over)
