"""The reconstruction-method interface and the ``--method`` registry: what the trainer fits and how.

A method object supplies what differs between IDR, H3D-Net and SIRA++; the trainer
(:class:`headrecon.recon.trainer.Trainer`) supplies everything else (ray sampling, tracing, losses, schedules,
checkpoints). A method provides:

* :meth:`ReconMethod.build` -> an ``nn.Module`` with two attributes: ``geometry`` (``forward(x) -> (sdf,
  feature)``, ``sdf(x)``, ``forward_with_gradient(x, create_graph=...)``, like
  :class:`headrecon.models.GeometryNetwork`; a prior-based method wraps its latent-conditioned network to match)
  and ``rendering`` (``forward(points, normals, view_dirs, features) -> rgb``);
* :meth:`ReconMethod.phases` -> the training phases as :class:`Phase` (name, end as a fraction of the run); IDR
  has one, H3D-Net / SIRA++ have two (fit the prior's latent, then fine-tune the network);
* :meth:`ReconMethod.param_groups` -> Adam parameter groups for a phase (the optimizer is rebuilt at each phase
  change; each group's ``lr`` is its base rate, the trainer applies the step decay);
* :meth:`ReconMethod.on_phase_start` -> a hook called when a phase starts (and again, with ``resumed=True``,
  before a checkpoint of that phase is loaded), e.g. to freeze modules or reset a latent code;
* :meth:`ReconMethod.lr_factor` -> the decay factor at a schedule epoch (default: ``lr_gamma`` per passed
  ``lr_milestones``);
* :meth:`ReconMethod.extra_losses` -> weighted loss terms that need no ray (a code prior, a proxy surface);
* :meth:`ReconMethod.surface_losses` -> weighted loss terms at the batch's traced surface points (a
  :class:`SurfaceBatch`: per-pixel supervision such as semantics or hair orientation);
* :meth:`ReconMethod.loss_weights` -> changes of the IDR loss weights along the run (default: none).

Register a new method with ``@register_method("name")`` in its own module of :mod:`headrecon.methods` and import
that module in ``headrecon/methods/__init__.py``; ``get_method(name, cfg)`` instantiates it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Callable, ClassVar, Dict, List, Optional, Type

import torch
from torch import nn

if TYPE_CHECKING:  # the shared config imports this registry; the annotation only names it
    from ..recon.config import ReconConfig

__all__ = ["Phase", "SurfaceBatch", "ReconModel", "ReconMethod", "MethodOptions", "option", "METHODS", "register_method",
           "get_method", "available_methods", "hashgrid_field", "split_detail", "detail_parameters", "detail_loss",
           "set_detail_trainable", "scene_face_proxy", "proxy_loss", "PriorHold", "prior_hold"]


def option(default, help: str, **kw):
    """A config field with its ``--help`` text (tuples become immutable defaults)."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class MethodOptions:
    """A method's own settings (``ReconConfig.options``); subclass per method, one :func:`option` per field.
    The dataclass defaults are the paper's settings; :attr:`PRESETS` holds per-preset changes."""

    PRESETS: ClassVar[Dict[str, dict]] = {}

    def validate(self, cfg) -> List[str]:
        """Problems of these settings within the run's config ``cfg`` (empty when fine)."""
        return []

    def check(self, positive=(), non_negative=()) -> List[str]:
        """Range problems of the named fields (None, an Optional field's default, is always fine)."""
        errs = [f"{n} must be positive, got {getattr(self, n)}" for n in positive
                if getattr(self, n) is not None and not getattr(self, n) > 0]
        return errs + [f"{n} must be >= 0, got {getattr(self, n)}" for n in non_negative
                       if getattr(self, n) is not None and not getattr(self, n) >= 0]

    @classmethod
    def field_names(cls) -> List[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class Phase:
    """A training phase that runs until ``end`` (fraction of the run in (0, 1]; the last phase ends at 1)."""

    name: str
    end: float = 1.0


# surface points no camera sees, stored with a prior method's detail field (detail_unseen_weight)
UNSEEN_POINTS = 4096


def hashgrid_field(cfg, base, d_feature: int) -> nn.Module:
    """The ``--detail hashgrid`` geometry over ``base`` (``x -> sdf``) with the run's ``hash_*`` settings
    (:class:`headrecon.models.hashgrid.HashGridSDF`)."""
    from ..models.hashgrid import HashGridSDF

    return HashGridSDF(base, levels=cfg.hash_levels, log2_size=cfg.hash_log2_size, feats=cfg.hash_feats,
                       base_res=cfg.hash_base_res, finest_res=cfg.hash_finest_res, hidden=cfg.hash_hidden,
                       d_feature=d_feature, radius=cfg.scene_radius, start_levels=cfg.hash_start_levels,
                       full_at=cfg.hash_full_at, seed=cfg.seed, normals=cfg.hash_normals,
                       unseen=UNSEEN_POINTS if cfg.detail_unseen_weight > 0 else 0)


def split_detail(geometry: nn.Module):
    """``(base geometry, detail field or None)`` of a model's geometry: a prior method with ``--detail hashgrid``
    wraps its prior geometry in a :class:`headrecon.models.hashgrid.HashGridSDF` (``.base``)."""
    from ..models.hashgrid import HashGridSDF

    if isinstance(geometry, HashGridSDF) and isinstance(geometry.base, nn.Module):
        return geometry.base, geometry
    return geometry, None


def detail_parameters(detail: nn.Module) -> list:
    """The detail field's own parameters (its table and MLP, not its base's)."""
    return [detail.table] + list(detail.mlp.parameters())


def uses_detail_loss(cfg, detail) -> bool:
    """Whether a prior method's detail field has a magnitude term to train (phase 2)."""
    return detail is not None and (cfg.detail_weight > 0 or cfg.detail_unseen_weight > 0) \
        and detail.table.requires_grad


def detail_loss(cfg, detail: nn.Module, iteration) -> torch.Tensor:
    """``detail_weight * mean(correction^2)`` over 1024 points drawn uniformly in the bounding ball, plus
    ``detail_unseen_weight * mean(correction^2)`` over 1024 of the stored unseen surface points
    (:func:`hold_unseen`), each moved by N(0, 0.01) units so that a shell around that surface is held (a
    generator seeded by the run's seed and ``iteration``: a resumed run draws the same)."""
    g = torch.Generator().manual_seed(int(cfg.seed) * 1000003 + int(iteration or 0))
    dev = detail.table.device
    out = detail.table.new_zeros(())
    if cfg.detail_weight > 0:
        x = torch.randn(1024, 3, generator=g)
        x = x / x.norm(dim=1, keepdim=True) * torch.rand(1024, 1, generator=g) ** (1 / 3) * cfg.scene_radius
        out = out + cfg.detail_weight * detail.detail_magnitude(x.to(dev))
    if cfg.detail_unseen_weight > 0 and detail.n_unseen > 0:
        idx = torch.randint(detail.n_unseen, (1024,), generator=g)
        x = detail.unseen_points[idx.to(dev)] + (0.01 * torch.randn(1024, 3, generator=g)).to(dev)
        out = out + cfg.detail_unseen_weight * detail.detail_magnitude(x)
    return out


def hold_unseen(trainer, detail, resumed: bool) -> None:
    """At the start of a prior method's phase 2 (``detail_unseen_weight > 0``): mesh the fitted prior surface
    (64^3 marching cubes of the current SDF, unit frame), find where no training camera sees it
    (:func:`headrecon.data.geometry.unseen_surface_points`) and store those points in the detail field, whose
    magnitude term then holds them (:func:`detail_loss`). A resumed run has them in its checkpoint."""
    if resumed or detail is None or trainer.cfg.detail_unseen_weight <= 0:
        return
    pts = unseen_points_of(trainer.sdf_fn, trainer.cfg, trainer.training_cameras(), UNSEEN_POINTS, trainer.device)
    detail.set_unseen(torch.as_tensor(pts, dtype=torch.float32))


def unseen_points_of(sdf_fn, cfg, cameras, n: int, device):
    """``n`` points [n, 3] (unit frame) of the surface of ``sdf_fn`` (64^3 marching cubes, largest component,
    inside the bounding sphere) that none of ``cameras`` sees
    (:func:`headrecon.data.geometry.unseen_surface_points`, seeded by the run's seed): what :func:`hold_unseen`
    and :func:`prior_hold` hold."""
    from ..data.geometry import unseen_surface_points
    from ..render.mesh import extract_mesh

    mesh = extract_mesh(sdf_fn, resolution=64, radius=cfg.scene_radius, device=device, largest_component=True,
                        progress=False, clip_sphere=True)
    return unseen_surface_points(mesh, cameras, n=n, seed=cfg.seed)


# fixed points of the placed prior's unseen shell (ReconConfig.prior_hold_weight) and how many each step uses
HOLD_POINTS = 4096
HOLD_BATCH = 1024


class PriorHold:
    """The placed prior's SDF at fixed points around the part of its surface that no training camera sees
    (``prior_hold_weight``): :meth:`loss` is ``mean (f(x) - f_0(x))^2`` over :data:`HOLD_BATCH` of them per step,
    consecutive in their (random) order, cycling by iteration.

    Unlike ``detail_unseen_weight``, which holds only the detail field from phase 2 on, this holds the whole SDF
    (latent, decoder or deformation, and detail) in both phases: at one view the latent fit itself reshapes the
    unseen head (docs/results/priors-busts.md). ``points`` [M, 3] (unit frame), ``values`` [M]; M = 0 when every
    sampled surface point is seen (the loss is then 0)."""

    def __init__(self, points: torch.Tensor, values: torch.Tensor):
        self.points, self.values = points, values
        self._offsets = torch.arange(min(HOLD_BATCH, len(self)), device=points.device)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def loss(self, geometry: nn.Module, iteration: int) -> torch.Tensor:
        dev = next(geometry.parameters()).device
        if len(self) == 0:
            return torch.zeros((), device=dev)
        if self.points.device != dev:
            self.points, self.values = self.points.to(dev), self.values.to(dev)
            self._offsets = torch.arange(min(HOLD_BATCH, len(self)), device=dev)
        # consecutive blocks of the (randomly drawn) points, cycling by iteration: no host draw per step, and a
        # resumed run sees the same points
        idx = (self._offsets + int(iteration or 0) * len(self._offsets)) % len(self)
        return (geometry.sdf(self.points[idx]).reshape(-1) - self.values[idx]).pow(2).mean()


def prior_hold(cfg, scene, geometry: nn.Module) -> Optional[PriorHold]:
    """The :class:`PriorHold` of a prior method's freshly built ``geometry`` (the placed prior, before any
    fitting; on the CPU) when ``cfg.prior_hold_weight > 0``, else None: a 64^3 marching-cubes mesh of its SDF,
    :data:`HOLD_POINTS` points of it that no training camera sees
    (:func:`headrecon.data.geometry.unseen_surface_points`), each moved by a fixed N(0, 0.01) offset (a shell
    around that surface), and the SDF there. Deterministic given the config: a resumed run rebuilds the same."""
    if cfg.prior_hold_weight <= 0:
        return None
    pts = unseen_points_of(geometry.sdf, cfg, scene.cameras_normalized(), HOLD_POINTS, "cpu")
    g = torch.Generator().manual_seed(int(cfg.seed) + 104729)
    x = torch.as_tensor(pts, dtype=torch.float32)
    x = x + 0.01 * torch.randn(x.shape, generator=g)
    with torch.no_grad():
        values = geometry.sdf(x).reshape(-1) if len(x) else torch.zeros(0)
    return PriorHold(x, values.float())


@torch.no_grad()
def head_rays(origins: torch.Tensor, dirs: torch.Tensor, to_prior: Callable, floor: float) -> torch.Tensor:
    """[P] bool: the rays (scene unit frame, ``origins`` / ``dirs`` [P, 3]) whose closest approach to the prior
    frame's vertical axis (``x = z = 0``, through the head) lies above the prior height ``floor``, in front of the
    camera; a ray along the axis counts as the head's. What the head's rays are for ``--head-rays``
    (:func:`restrict_head_rays`): a ray through the face, the skull or the air beside them passes the axis at the
    head's height, a ray onto the chest or the shoulders below it."""
    op = to_prior(origins)
    dp = to_prior(origins + dirs) - op
    a = dp[:, 0] ** 2 + dp[:, 2] ** 2
    t = -(op[:, 0] * dp[:, 0] + op[:, 2] * dp[:, 2]) / a.clamp(min=1e-12)
    y = op[:, 1] + t.clamp(min=0) * dp[:, 1]
    return (y > floor) | (a < 1e-12)


def restrict_head_rays(method, trainer, geometry: nn.Module, latent: bool) -> None:
    """``--head-rays``: when a prior method's phase starts, the sampler draws only the :func:`head_rays` of the
    placed prior ``geometry`` (a :class:`headrecon.models.pose.FramedPrior`) in the latent phase (``latent``) or
    in every phase (``all``), every ray otherwise. The floor is ``head_rays_floor_mm`` below the mean height of the
    prior's mouth corners (``method.prior_landmarks``, ``method.prior_mm_per_unit``). Records the share of pixels
    kept in ``method.head_ray_share``."""
    cfg = method.cfg
    if cfg.head_rays == "off":
        return
    if not (latent or cfg.head_rays == "all"):
        trainer.sampler.restrict(None)
        return
    lm = method.prior_landmarks
    floor = 0.5 * (float(lm["left_lips"][1]) + float(lm["right_lips"][1])) \
        - float(cfg.head_rays_floor_mm) / float(method.prior_mm_per_unit)
    keep = head_rays(trainer.bank.origins, trainer.bank.dirs, geometry.to_prior, floor).cpu().numpy()
    if not keep.any():
        raise ValueError(f"--head-rays: no training ray passes the placed prior's head above "
                         f"{cfg.head_rays_floor_mm} mm below its mouth (is the prior placed in the views?)")
    method.head_ray_share = float(keep.mean())
    trainer.sampler.restrict(keep)


def scene_face_proxy(scene, radius_mm: Optional[float]):
    """``(proxy, report)``: the facial proxy of ``scene`` (:func:`headrecon.photos.proxy.face_proxy`, the
    morphable-model face fitted to the photos) in the scene's unit frame, and its report for ``run.json``;
    ``(None, {"source": None, "why_not": ...})`` when no face can be fitted (the run goes on without the term)."""
    import numpy as np

    from ..photos.proxy import FaceProxy, face_proxy

    try:
        p = face_proxy(scene, radius_mm=radius_mm)
    except (ValueError, ImportError) as exc:
        return None, {"source": None, "why_not": str(exc)}
    S_inv = np.linalg.inv(np.asarray(scene.scale_mat, dtype=np.float64))
    V = p.vertices @ S_inv[:3, :3].T + S_inv[:3, 3]   # scene mm -> unit frame
    return FaceProxy(V, p.triangles, p.report), dict(p.report)


def proxy_loss(geometry: nn.Module, proxy, points: int, seed: int, iteration: int) -> torch.Tensor:
    """``mean |f(v)|`` over ``points`` points drawn on ``proxy`` (unit frame) with a generator seeded by the run's
    ``seed`` and ``iteration`` (a resumed run draws the same points)."""
    g = torch.Generator().manual_seed(int(seed) * 1000003 + 7919 + int(iteration))
    p = torch.from_numpy(proxy.sample(points, g)).float()
    dev = next(geometry.parameters()).device
    return geometry.sdf(p.to(dev)).abs().mean()


def set_detail_trainable(detail, on: bool) -> None:
    if detail is not None:
        for p in detail_parameters(detail):
            p.requires_grad_(on)


@dataclass
class SurfaceBatch:
    """What one surface-rendering step traced, for :meth:`ReconMethod.surface_losses`: ``pixels`` [S] the ray
    bank indices (:class:`headrecon.recon.sampling.RayBank`) of the rays that hit the surface inside the mask,
    ``points`` [S, 3] their differentiable surface points (unit frame), ``gradients`` [S, 3] the SDF gradients
    there (with graph), ``features`` [S, F] the geometry features, ``dirs`` [S, 3] the ray directions."""

    pixels: torch.Tensor
    points: torch.Tensor
    gradients: torch.Tensor
    features: torch.Tensor
    dirs: torch.Tensor


class ReconModel(nn.Module):
    """Container of the fitted networks: ``geometry`` (SDF + feature) and ``rendering`` (colour)."""

    def __init__(self, geometry: nn.Module, rendering: nn.Module):
        super().__init__()
        self.geometry = geometry
        self.rendering = rendering


class ReconMethod:
    """Base class of reconstruction methods (see the module docstring for the interface)."""

    name = "base"
    Options: Type[MethodOptions] = MethodOptions  # the method's settings (a MethodOptions subclass)
    # "surface": IDR's differentiable surface rendering; "volume": VolSDF volume rendering (the method then
    # provides volume_settings() and its model a ``density`` module returning beta)
    renderer = "surface"
    # a prior method's six H3DS landmarks in its prior's unit frame (name -> [3]), set by build(): the trainer maps
    # them through the placement into the scene (Trainer.predicted_landmarks, the run folder's landmarks.json)
    prior_landmarks: Optional[dict] = None
    prior_mm_per_unit: Optional[float] = None  # a prior method's frame scale, set by build() (--head-rays' floor)
    head_ray_share: Optional[float] = None     # --head-rays: the share of pixels drawn from (restrict_head_rays)

    def __init__(self, cfg: ReconConfig):
        self.cfg = cfg

    def build(self, scene, device: torch.device) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def phases(self) -> List[Phase]:
        return [Phase("fit", 1.0)]

    def param_groups(self, model: nn.Module, phase: Phase) -> List[dict]:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": self.cfg.lr, "name": "all"}]

    def code_parameters(self, model: nn.Module) -> list:
        """A prior method's latent codes (``--freeze-codes`` keeps them after the latent phase). Default: none."""
        return []

    def on_phase_start(self, trainer, phase: Phase, resumed: bool = False) -> None:
        """Called when ``phase`` starts (``resumed``: a checkpoint of this phase is about to be loaded)."""

    def extra_losses(self, model: nn.Module, iteration: Optional[int] = None) -> Dict[str, torch.Tensor]:
        """Method-specific loss terms added to the IDR loss each iteration (e.g. a latent-code prior), already
        weighted; logged under their names. ``iteration``: the trainer's iteration (None outside training).
        Default: none."""
        return {}

    def surface_losses(self, trainer, batch: SurfaceBatch) -> Dict[str, torch.Tensor]:
        """Method-specific loss terms at the traced surface points of a surface-rendering step (``trainer`` gives
        the iteration, the ray bank, the cameras), already weighted; logged under their names. Default: none."""
        return {}

    def loss_weights(self, progress: float) -> Dict[str, float]:
        """IDR loss weights at ``progress`` (iteration / total iterations) that differ from the config's:
        any of ``rgb``, ``mask``, ``eikonal``. Default: none (the config's weights throughout)."""
        return {}

    def info(self) -> dict:
        """Facts about the built method worth recording in the run folder's ``run.json`` (``method_info``), e.g.
        where a prior's frame came from or an effective loss weight. Default: none."""
        return {}

    def finetune_lr(self) -> float:
        """Learning rate of pretrained networks fine-tuned in a later phase: the option ``finetune_lr``, default
        lr/10."""
        ft = getattr(self.cfg.options, "finetune_lr", None)
        return float(ft if ft is not None else 0.1 * self.cfg.lr)

    def lr_factor(self, epoch: float, phase: Phase) -> float:
        return float(self.cfg.lr_gamma) ** sum(1 for m in self.cfg.lr_milestones if epoch >= m)


METHODS: Dict[str, Type[ReconMethod]] = {}


def register_method(name: str) -> Callable[[Type[ReconMethod]], Type[ReconMethod]]:
    """Class decorator adding a method to :data:`METHODS` under ``name``."""

    def deco(cls):
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"reconstruction method {name!r} is already registered ({METHODS[name].__name__})")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def get_method(name: str, cfg) -> ReconMethod:
    """Instantiate the registered method ``name``; ValueError listing the available ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown reconstruction method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg)


def available_methods() -> List[str]:
    return sorted(METHODS)
