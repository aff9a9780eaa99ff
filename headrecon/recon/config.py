"""Typed configuration of a reconstruction run (:class:`ReconConfig`), its presets and its JSON form.

Every field carries ``metadata["help"]``; :func:`add_config_arguments` turns the fields into command-line options
(``batch_rays`` -> ``--batch-rays``), so the ``--help`` of ``headrecon-reconstruct`` is generated from here.

Schedules are written in IDR epochs for a nominal run of ``epochs`` epochs and scaled to the actual run length:
at iteration ``i`` of ``N`` the schedule epoch is ``floor(i * epochs / N)`` (alpha milestones, learning-rate
decays and selective sampling all use it). ``N`` is ``iterations`` when given, else ``epochs`` times the
iterations per epoch (see ``epoch_mode``).

Presets (:data:`PRESETS`):

* ``paper`` follows IDR / H3D-Net / SIRA++: 8 x 512 geometry network (skip at 4, 6 frequencies, 256 features),
  4 x 512 rendering network, 2048 rays per batch, 2000 epochs, Adam 1e-4 halved at epochs 1000 and 1500, mask
  alpha 50 doubled at 250/500/750/1000/1250, selective sampling dropping 12 % of the background rays every 250
  epochs during the first 1000, full image resolution, 512^3 marching cubes.
* ``fast`` is what a CPU user runs (chosen by measurement on a 2-core machine, see README/report): smaller
  networks, images reduced to at most 128 px, fewer rays and a fixed iteration count with the same schedule
  shape, a 128^3 mesh.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

__all__ = ["ReconConfig", "PRESETS", "make_config", "add_config_arguments", "config_from_args", "RUNTIME_FIELDS",
           "config_diff"]


def _f(default, help: str, **kw):
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ReconConfig:
    """All settings of one reconstruction run (stored as ``config.json`` in the run folder)."""

    # ---- what to run
    method: str = _f("idr", "reconstruction method (a key of headrecon.methods.METHODS)", group="run")
    preset: str = _f("fast", "preset the other fields started from: fast (CPU) or paper", group="run")
    views: str = _f("3", "views to use: 3, 4, 8, 16, 32, all, or comma-separated view indices", group="run")
    device: str = _f("auto", "auto (CUDA when available), cpu, cuda or cuda:N", group="run")
    seed: int = _f(0, "random seed (network initialisation, ray sampling, eikonal points)", group="run")
    iterations: Optional[int] = _f(None, "total iterations; default: epochs x iterations per epoch", group="run")
    threads: int = _f(0, "CPU threads for torch (0 = torch's default); 1 is fastest for the small fast-preset "
                         "networks on a busy machine (measured), see README", group="run")

    # ---- learned prior (--method h3dnet)
    prior: Optional[str] = _f(None, "prior checkpoint for --method h3dnet (default: the shipped "
                                    "headrecon/assets/prior_h3dnet_fast.pt, see headrecon-train-prior)", group="prior")
    prior_latent_fraction: float = _f(0.25, "h3dnet phase 1 (only the latent code and the rendering network train) "
                                            "as a share of the run; then the decoder is unfrozen (0 = no "
                                            "schedule: everything trains from the start)", group="prior")
    prior_latent_lr: float = _f(1e-3, "h3dnet: Adam learning rate of the latent code", group="prior")
    finetune_lr: Optional[float] = _f(None, "phase 2 Adam learning rate of the pretrained geometry networks "
                                            "(h3dnet: the prior's decoder; sira: the deformation network); "
                                            "default lr / 10: at the full lr the first phase-2 steps undid "
                                            "phase 1's fit (see README)", group="prior")

    # ---- SIRA++ (--method sira)
    sira_prior: Optional[str] = _f(None, "shape-and-appearance model for --method sira (default: the shipped "
                                         "headrecon/assets/prior_sira_fast.pt, see headrecon-train-prior --model "
                                         "sira)", group="sira")
    sira_unfreeze_epoch: int = _f(100, "sira: epoch (of the nominal `epochs`) at which the deformation and "
                                       "rendering networks are unfrozen; before it only the latents train",
                                  group="sira")
    sira_latent_lr: float = _f(2e-3, "sira: Adam learning rate of z_sdf and z_r", group="sira")
    sira_latent_reg: Optional[float] = _f(None, "sira: weight of the code prior ||z - z_mean||^2 on z_sdf and z_r "
                                                "in both phases (default: the model's training latent_reg; 0 = off)",
                                          group="sira")
    sira_anchor_weight: float = _f(30.0, "sira: weight of the phase-2 deformation anchor, the mean squared distance "
                                         "(prior units) between the fine-tuned and the pretrained deformation at the "
                                         "current z_sdf over fixed points of the bounding sphere (0 = off: phase 2 "
                                         "then moved a one-view head 57 mm in depth, see README)",
                                    group="sira")
    sira_anchor_views: int = _f(3, "sira: the anchor weight applies as given up to this many input views and is "
                                   "scaled by sira_anchor_views / views beyond, where the views constrain more of "
                                   "the head (0 = never scaled)", group="sira")
    sira_anchor_radius: Optional[float] = _f(None, "sira: the anchor holds only the fixed points within this radius "
                                                   "of the prior frame, where the model has head shapes (default: the "
                                                   "inner radius of the model's outside shell, 0.9 for the shipped "
                                                   "model; beyond it the reference SDF was trained empty, so a bust's "
                                                   "shoulders may deform freely; 0 = the whole bounding sphere)",
                                             group="sira")
    sira_anchor_batch: int = _f(512, "sira: anchor points per iteration, cycling through the fixed points in a "
                                     "fixed order (deterministic per iteration: resume stays exact; 0 = all of them "
                                     "every iteration)", group="sira")
    sira_accel: bool = _f(True, "sira: SIRA++'s acceleration (coarse/fine search tracer with a 64^3 SDF cache, "
                                "eps 0.1, p 0.2, and float16 tracing on CUDA); selective sampling is ss_fraction",
                          group="sira")
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
    eikonal_weight: float = _f(0.1, "weight of the eikonal loss", group="loss")
    alpha_init: float = _f(50.0, "initial mask-loss sharpness alpha", group="loss")
    alpha_milestones: Tuple[int, ...] = _f((250, 500, 750, 1000, 1250), "epochs at which alpha is multiplied by "
                                           "alpha_factor", group="loss")
    alpha_factor: float = _f(2.0, "alpha growth factor", group="loss")
    eikonal_points: int = _f(0, "uniform eikonal samples per iteration in the bounding cube (0 = batch_rays/2); "
                                "the surface hits are added", group="loss")

    # ---- networks
    geo_hidden: int = _f(512, "geometry network width", group="model")
    geo_layers: int = _f(8, "geometry network hidden layers", group="model")
    geo_skip: Tuple[int, ...] = _f((4,), "geometry layers that re-inject the encoded input", group="model")
    geo_freqs: int = _f(6, "positional-encoding frequencies of the points", group="model")
    feature_size: int = _f(256, "geometry feature vector size", group="model")
    sphere_radius: float = _f(0.6, "radius of the initial sphere (unit-sphere frame)", group="model")
    render_hidden: int = _f(512, "rendering network width", group="model")
    render_layers: int = _f(4, "rendering network hidden layers", group="model")
    view_freqs: int = _f(4, "positional-encoding frequencies of the view direction", group="model")
    render_mode: str = _f("idr", "rendering network inputs: idr, no_view_dir or no_normal", group="model")

    # ---- data and tracer
    image_size: int = _f(0, "train on images reduced to at most this many pixels per side (0 = full size)",
                         group="data")
    scene_radius: float = _f(1.0, "bounding-sphere radius of the tracer in the unit-sphere frame", group="data")
    strategy: str = _f("auto", "ray tracer strategy: auto, sphere or search", group="data")
    n_coarse: int = _f(75, "tracer: coarse samples per ray (search and minimum SDF)", group="data")
    n_fine: int = _f(25, "tracer: fine samples in the sign-change bracket", group="data")
    n_secant: int = _f(8, "tracer: secant steps", group="data")
    max_steps: int = _f(30, "tracer: sphere-tracing steps (IDR: 10; the engine's default 30 sends fewer rays "
                                  "to the costlier search)", group="data")
    sdf_cache: bool = _f(False, "answer far-from-surface tracer lookups from an SDF voxel cache", group="data")
    cache_resolution: int = _f(64, "SDF cache resolution per axis", group="data")

    # ---- outputs
    checkpoint_every: int = _f(500, "save a checkpoint every N iterations (and at the end)", group="output")
    log_every: int = _f(10, "iterations per point of the loss curve", group="output")
    mesh_resolution: int = _f(512, "marching-cubes grid points per axis", group="output")
    render_size: int = _f(256, "largest side of the result renders (pixels)", group="output")
    novel_yaws: Tuple[float, ...] = _f((90.0, 180.0, -90.0), "yaws (deg, 0 = face) of the novel-view renders",
                                       group="output")
    evaluate: bool = _f(True, "compute the H3DS metrics when the scene has a ground-truth mesh", group="output")

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ReconConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path) -> "ReconConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid headrecon config ({exc})") from exc

    def replace(self, **changes) -> "ReconConfig":
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError with a clear message for out-of-range settings."""
        errs = []
        if self.preset not in PRESETS:
            errs.append(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.iterations is not None and self.iterations < 1:
            errs.append(f"iterations must be >= 1, got {self.iterations}")
        for name in ("epochs", "batch_rays", "geo_hidden", "geo_layers", "render_hidden", "mesh_resolution",
                     "render_size", "checkpoint_every", "log_every", "ss_every"):
            if getattr(self, name) < 1:
                errs.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epoch_mode not in ("views", "pixels"):
            errs.append(f"epoch_mode must be 'views' or 'pixels', got {self.epoch_mode!r}")
        if self.strategy not in ("auto", "sphere", "search"):
            errs.append(f"strategy must be auto, sphere or search, got {self.strategy!r}")
        if self.render_mode not in ("idr", "no_view_dir", "no_normal"):
            errs.append(f"render_mode must be idr, no_view_dir or no_normal, got {self.render_mode!r}")
        if not 0.0 <= self.ss_fraction < 1.0:
            errs.append(f"ss_fraction must be in [0, 1), got {self.ss_fraction}")
        if not 0.0 <= self.prior_latent_fraction < 1.0:
            errs.append(f"prior_latent_fraction must be in [0, 1), got {self.prior_latent_fraction}")
        if not 0 < self.sira_unfreeze_epoch < self.epochs:
            errs.append(f"sira_unfreeze_epoch must be in (0, epochs={self.epochs}), got {self.sira_unfreeze_epoch}")
        if self.sira_latent_reg is not None and not self.sira_latent_reg >= 0:
            errs.append(f"sira_latent_reg must be >= 0, got {self.sira_latent_reg}")
        if self.sira_anchor_views < 0:
            errs.append(f"sira_anchor_views must be >= 0, got {self.sira_anchor_views}")
        if not self.sira_anchor_weight >= 0:
            errs.append(f"sira_anchor_weight must be >= 0, got {self.sira_anchor_weight}")
        if self.sira_anchor_radius is not None and not self.sira_anchor_radius >= 0:
            errs.append(f"sira_anchor_radius must be >= 0, got {self.sira_anchor_radius}")
        if self.sira_anchor_batch < 0:
            errs.append(f"sira_anchor_batch must be >= 0, got {self.sira_anchor_batch}")
        for name in ("lr", "prior_latent_lr", "sira_latent_lr", "finetune_lr"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                errs.append(f"{name} must be positive, got {v}")
        if self.image_size < 0 or self.eikonal_points < 0 or self.threads < 0:
            errs.append("image_size, eikonal_points and threads must be >= 0")
        if not 0 < self.sphere_radius < self.scene_radius:
            errs.append(f"sphere_radius must be in (0, scene_radius={self.scene_radius}), got {self.sphere_radius}")
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
    geo_hidden=128, geo_layers=4, geo_skip=(2,), feature_size=64,
    render_hidden=128, render_layers=2,
    image_size=128,
    n_coarse=48, n_fine=16, n_secant=6,
    checkpoint_every=250,
    mesh_resolution=160,
    render_size=160,
)

PRESETS: Dict[str, Dict[str, Any]] = {"paper": _PAPER, "fast": _FAST}

# fields that may differ between a run and its resumption (they do not change the result)
RUNTIME_FIELDS = ("device", "threads")


def make_config(preset: str = "fast", **overrides) -> ReconConfig:
    """The preset's config with ``overrides`` applied (unknown names raise ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    known = {f.name for f in fields(ReconConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"unknown config field(s) {bad}")
    kw = dict(PRESETS[preset])
    kw.update(overrides)
    kw["preset"] = preset
    cfg = ReconConfig(**kw)
    cfg.validate()
    return cfg


def config_diff(a: ReconConfig, b: ReconConfig, ignore=RUNTIME_FIELDS) -> Dict[str, Tuple[Any, Any]]:
    """Fields whose values differ: ``name -> (a value, b value)``."""
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if k not in ignore and da[k] != db[k]}


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


_SCALARS = {"bool": _bool, "int": int, "float": float, "str": str}


def _field_kind(f) -> Tuple[str, str]:
    """``(wrapper, scalar)`` of a config field's type: wrapper "", "Tuple" or "Optional"; scalar a key of
    :data:`_SCALARS` ("str" when unknown)."""
    t = str(f.type).replace("<class '", "").replace("'>", "")
    for wrapper in ("Tuple", "Optional"):
        if t.startswith(wrapper + "["):
            return wrapper, t[len(wrapper) + 1:].split(",")[0].rstrip("]").strip()
    return "", t if t in _SCALARS else "str"


def _arg_type(f):
    """The argparse type of a config field: ``Tuple[X, ...]`` takes comma-separated values, ``Optional[X]`` also
    ``none``."""
    wrapper, scalar = _field_kind(f)
    parse = _SCALARS[scalar]
    return {"Tuple": _tuple_of, "Optional": _optional}[wrapper](parse) if wrapper else parse


# options that the command line defines itself (positional scene, fixed choices)
_CLI_CHOICES = {"method": None, "preset": sorted(PRESETS), "device": None}


def add_config_arguments(parser: argparse.ArgumentParser, skip=()) -> None:
    """Add one ``--option`` per config field (default: not given, so presets and stored configs apply).

    Fields are grouped as in the dataclass; the help text is the field's ``metadata["help"]`` with the defaults
    of both presets.
    """
    groups: Dict[str, Any] = {}
    for f in fields(ReconConfig):
        if f.name in skip:
            continue
        g = f.metadata.get("group", "other")
        if g not in groups:
            title = {"run": "run", "schedule": "schedule (epochs scaled to the run length)", "loss": "loss",
                     "model": "networks", "data": "data and ray tracer", "output": "outputs"}.get(g, g)
            groups[g] = parser.add_argument_group(title)
        fast = PRESETS["fast"].get(f.name, _default(f))
        paper = PRESETS["paper"].get(f.name, _default(f))
        dflt = f"fast: {_show(fast)}, paper: {_show(paper)}" if fast != paper else f"default: {_show(fast)}"
        kw = dict(type=_arg_type(f), default=argparse.SUPPRESS, help=f"{f.metadata['help']} ({dflt})",
                  dest=f.name)
        if f.name in _CLI_CHOICES and _CLI_CHOICES[f.name]:
            kw["choices"] = _CLI_CHOICES[f.name]
        wrapper, scalar = _field_kind(f)
        if wrapper == "Tuple":
            kw["metavar"] = "A,B,..."
        elif scalar == "bool":
            kw["metavar"] = "BOOL"
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
    """The config fields given on the command line (options default to 'not given')."""
    names = {f.name for f in fields(ReconConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def config_from_args(args: argparse.Namespace) -> ReconConfig:
    """Preset (``--preset``, default fast) + the explicitly given options."""
    over = explicit_overrides(args)
    preset = over.pop("preset", "fast")
    return make_config(preset, **over)
