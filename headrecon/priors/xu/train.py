"""Training of the Xu et al. prior from images (``headrecon-train-prior SOURCE --model xu``): template,
deformation, colour network, codes and density scale learnt by volume rendering posed images of many heads,
without 3D supervision.

Data (:func:`xu_image_data`): for every training identity (``ict`` seeds ``0 .. N-1``, or busts / mixes as for the
other priors, :func:`headrecon.priors.scans.parse_sources`) ``views`` images of ``size`` px rendered with
:class:`headrecon.data.synthetic.MeshRenderer` under lighting drawn per head, cameras on a jittered orbit around the
prior frame's centre (every yaw, pitches -20..25 degrees), black background, and their masks. Only pixels and
cameras are kept (rays in the prior's unit frame): nothing of the mesh reaches the training.

Training (:func:`train_xu`): per iteration ``batch_shapes`` heads, ``rays_per_shape`` pixels each (drawn by a
generator seeded by (seed, iteration): a resumed run draws the same), volume-rendered with
:func:`headrecon.render.volume.render_volume` (hierarchical sampling) with the head's shape and colour codes, over
the black background. Losses (the public code's weights unless noted):

* L1 colour (1);
* mask: binary cross-entropy of the opacity against the mask (``mask_weight``, default 0.1; the public code
  trains on white-background images without it; set 0 for the paper's setting);
* Eikonal (``eikonal_weight``; public code 0.01, default 0.1 here: short CPU runs keep a valid SDF with it) at the
  rendered samples and at points drawn uniformly in the bounding sphere;
* deformation magnitude ``mean ||delta||`` (1e-3) at the rendered samples;
* codes ``mean z^2`` of the batch's shape and colour codes (1e-3 each).

The public code's deformation-gradient term is left out (one more backward pass per iteration). Adam, networks
``lr``, codes ``lr_latent`` and ``log(beta)`` ``lr_beta`` (relative steps: a linear step on beta, as VolSDF takes,
barely moves a small beta), halved at 50 % and 75 % of the run; the template's positional encoding unmasked
over the first half. Checkpoints (``OUT.ckpt.pt``) every ``checkpoint_every`` iterations and at the end; resume is
exact. Several processes (``torchrun ... --ddp``): each renders its share of every iteration's heads and the
gradients are summed, so that every process takes the same step.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F

from ...weights import load_weights, save_weights
from ..normalization import Normalization
from ..training import TrainingError, check_ddp_agreement, checkpoint_path, recorded_command, setup_distributed
from .model import XU_FORMAT, XuPrior, xu_network_config

__all__ = ["XuTrainConfig", "XuData", "xu_image_data", "xu_mesh_data", "train_xu", "XU_TRAIN_FORMAT", "main_from_args"]

XU_TRAIN_FORMAT = XU_FORMAT + "-train"


@dataclass
class XuTrainConfig:
    """Data, rendering, loss and schedule settings of :func:`train_xu` (lengths in prior units)."""

    preset: str = "fast"             # network sizes (xu_network_config)
    views: int = 8                   # images per training head
    size: int = 64                   # image size (px)
    iterations: int = 3000
    batch_shapes: int = 4
    rays_per_shape: int = 256
    n_samples: int = 32              # uniform samples per ray (they place the fine ones)
    n_fine: int = 16                 # fine samples per ray
    lr: float = 5e-4
    lr_latent: float = 1e-3
    lr_beta: float = 1e-2            # Adam learning rate of log(beta): relative steps of beta
    beta_init: float = 0.05
    mask_weight: float = 0.1
    eikonal_weight: float = 0.1
    eikonal_points: int = 256
    deform_weight: float = 1e-3
    code_weight: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 250

    def validate(self) -> None:
        for k in ("views", "size", "iterations", "batch_shapes", "rays_per_shape", "n_samples", "checkpoint_every"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"XuTrainConfig.{k} must be >= 1, got {getattr(self, k)}")
        for k in ("n_fine", "mask_weight", "eikonal_weight", "eikonal_points", "deform_weight", "code_weight"):
            if getattr(self, k) < 0:
                raise ValueError(f"XuTrainConfig.{k} must be >= 0, got {getattr(self, k)}")
        if not (self.lr > 0 and self.lr_latent > 0 and self.lr_beta > 0 and self.beta_init > 0):
            raise ValueError("lr, lr_latent, lr_beta and beta_init must be positive")


@dataclass
class XuData:
    """Rays of every training head in the prior's unit frame (lists indexed by head)."""

    origins: List[torch.Tensor]
    dirs: List[torch.Tensor]
    rgb: List[torch.Tensor]
    mask: List[torch.Tensor]
    norm: Normalization
    description: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.origins)


def head_images(mesh_mm, norm: Normalization, views: int, size: int, seed: int):
    """``views`` posed images (rays in the unit frame, rgb, mask) of one vertex-coloured mesh in mm."""
    from ...data.synthetic import MeshRenderer, default_distance_focal, orbit_cameras
    from ..sira.train import random_lights

    rng = np.random.default_rng([int(seed), 23])
    lights, ambient = random_lights(rng)
    renderer = MeshRenderer(mesh_mm, lights=lights, ambient=ambient)
    center = norm.to_mm(np.zeros((1, 3)))[0]
    distance, focal = default_distance_focal(float(norm.mm_per_unit), int(size), fill=0.95)
    yaws = (np.arange(views) * 360.0 / views + rng.uniform(-180.0 / views, 180.0 / views, views)) % 360.0
    O, D, C, M = [], [], [], []
    for y in yaws:
        cam = orbit_cameras(center, distance, [float(y)], [float(rng.uniform(-20, 25))], focal, int(size))[0]
        res = renderer.render(cam)
        o, d = cam.transformed(norm.scale_mat).rays()
        O.append(o)
        D.append(d)
        C.append(torch.from_numpy(np.ascontiguousarray(res.image.reshape(-1, 3), dtype=np.float32)))
        M.append(torch.from_numpy(res.mask.reshape(-1)))
    return torch.cat(O), torch.cat(D), torch.cat(C), torch.cat(M)


def xu_mesh_data(meshes, norm: Normalization, views: int = 8, size: int = 64, description: Optional[dict] = None,
                 progress: bool = False) -> XuData:
    """Posed images of ``(seed, vertex-coloured mesh in mm)`` pairs (the seed draws the lighting and cameras)."""
    from tqdm.auto import tqdm

    data = XuData([], [], [], [], norm, dict(description or {}, views=int(views), size=int(size)))
    for seed, mesh in tqdm(meshes, desc="rendering training heads", disable=not progress, leave=False):
        o, d, c, m = head_images(mesh, norm, views, size, seed=seed)
        if not bool(m.any()):
            raise ValueError(f"training head {seed}: not visible in its images (is it in mm around the prior "
                             "frame's centre?)")
        data.origins.append(o)
        data.dirs.append(d)
        data.rgb.append(c)
        data.mask.append(m)
    return data


def xu_image_data(source: str, n_shapes: int, views: int = 8, size: int = 64, seed_start: int = 0,
                  progress: bool = False) -> XuData:
    """Posed images of the training heads ``seed_start .. seed_start + n - 1`` of ``source`` (``ict``: heads in
    the head frame; ``composite``, ``anny`` or a mix such as ``composite+ict``: the bust frame)."""
    from ...data.ict import sample_ict_head
    from ..normalization import bust_normalization
    from ..scans import parse_sources, source_model

    parts = parse_sources(source)
    if n_shapes < 1:
        raise ValueError("n_shapes must be >= 1")
    norm = Normalization() if parts == ("ict",) else bust_normalization()
    seeds = range(int(seed_start), int(seed_start) + int(n_shapes))

    def meshes():
        for s in seeds:
            src = parts[s % len(parts)]
            if src == "ict":
                yield s, sample_ict_head(int(s), clip=2.5, albedo=True)
            else:
                from ...data.bust import bust_mesh
                yield s, bust_mesh(src, int(s))

    desc = {"source": "+".join(parts), "model": source_model(parts), "seeds": [seeds.start, seeds.stop - 1],
            "n_shapes": int(n_shapes)}
    return xu_mesh_data(meshes(), norm, views, size, description=desc, progress=progress)


def render_heads(model: XuPrior, data: XuData, heads, idx, cfg: XuTrainConfig, device):
    """Volume-render rays ``idx[k]`` of heads ``heads[k]``; returns the losses (dict of 0-dim tensors)."""
    from ...render.volume import render_volume

    beta = model.beta()
    l_rgb, l_mask, grads, deltas, codes = [], [], [], [], []
    for h, ii in zip(heads, idx):
        zs, zc = model.z_sdf.weight[h], model.z_r.weight[h]
        store = {}

        def field_fn(x, zs=zs, store=store):
            x_ref, delta, gamma = model.warp(x, zs)
            if torch.is_grad_enabled():
                store["delta"] = delta
            return model.reference.sdf(x_ref), torch.cat([x_ref, gamma], -1)

        def color_fn(x, n, v, feat, zc=zc):
            return model.color(feat[..., :3], n, -v, feat[..., 3:], zc)

        o, d = data.origins[h][ii].to(device), data.dirs[h][ii].to(device)
        res = render_volume(field_fn, color_fn, o, d, n_samples=cfg.n_samples, n_fine=cfg.n_fine, beta=beta,
                            radius=1.0)
        gt, m = data.rgb[h][ii].to(device), data.mask[h][ii].to(device)
        l_rgb.append((res.rgb - gt).abs().mean())  # black background: the rendering is the composite itself
        op = res.opacity.clamp(1e-4, 1 - 1e-4)
        l_mask.append(F.binary_cross_entropy(op, m.to(op.dtype)))
        grads.append(res.sample_gradients)
        if "delta" in store:
            deltas.append(store["delta"])
        codes.append((zs.pow(2).mean(), zc.pow(2).mean()))
    return l_rgb, l_mask, grads, deltas, codes


def _objective(model: XuPrior, data: XuData, cfg: XuTrainConfig, iteration: int, device, rank: int = 0,
               world: int = 1):
    """The iteration's losses on this rank's share (heads ``rank::world`` of the iteration's heads, uniform
    Eikonal points ``rank::world``), scaled so that the ranks' sum is the whole batch's objective."""
    gen = torch.Generator().manual_seed(int(cfg.seed) * 1000003 + int(iteration))
    n = len(data)
    heads = torch.randperm(n, generator=gen)[:min(cfg.batch_shapes, n)].tolist()
    idx = [torch.randint(0, data.origins[h].shape[0], (cfg.rays_per_shape,), generator=gen) for h in heads]
    x = torch.randn(cfg.eikonal_points, 3, generator=gen)
    x = x / x.norm(dim=1, keepdim=True) * torch.rand(cfg.eikonal_points, 1, generator=gen) ** (1 / 3)
    zi = torch.tensor(heads)[torch.randint(0, len(heads), (cfg.eikonal_points,), generator=gen)]
    mine = list(range(rank, len(heads), world))
    share = len(mine) / float(len(heads))  # this rank's share of the per-head terms
    l_rgb, l_mask, grads, deltas, codes = render_heads(model, data, [heads[k] for k in mine],
                                                       [idx[k] for k in mine], cfg, device)
    x, zi = x[rank::world].to(device).requires_grad_(True), zi[rank::world]
    g_all = [g for g in grads if g is not None and g.shape[0]]
    if x.shape[0]:
        sdf = model.sdf(x, model.z_sdf.weight[zi.to(device)])
        (gu,) = torch.autograd.grad(sdf.sum(), x, create_graph=True)
        g_all.insert(0, gu)
    zero = model.log_beta.new_zeros(())
    g_cat = torch.cat(g_all) if g_all else zero.new_zeros(0, 3)
    d_cat = torch.cat([d.norm(dim=-1) for d in deltas]) if deltas else zero.new_zeros(0)
    counts = torch.tensor([float(g_cat.shape[0]), float(d_cat.shape[0])], device=zero.device)
    if world > 1:  # the Eikonal and deformation means run over every process's samples
        dist.all_reduce(counts)
    eik = ((g_cat.norm(dim=-1) - 1) ** 2).sum() / counts[0].clamp_min(1)
    deform = d_cat.sum() / counts[1].clamp_min(1)
    rgb = torch.stack(l_rgb).mean() * share if l_rgb else zero
    mask = torch.stack(l_mask).mean() * share if l_mask else zero
    code = torch.stack([a + b for a, b in codes]).mean() * share if codes else zero
    loss = (rgb + cfg.mask_weight * mask + cfg.eikonal_weight * eik + cfg.deform_weight * deform
            + cfg.code_weight * code)
    return {"loss": loss, "rgb": rgb, "mask": mask, "eikonal": eik, "deform": deform, "code": code}


def _lr_factor(iteration: int, total: int) -> float:
    return 0.5 ** sum(1 for f in (0.5, 0.75) if iteration >= f * total)


def train_xu(cfg: XuTrainConfig, data: XuData, out, resume: bool = False, device=None, progress: bool = False,
             stop_after: Optional[int] = None, extra_meta: Optional[dict] = None, half: bool = False,
             ddp: Optional[bool] = None) -> XuPrior:
    """Train (or, with ``resume``, continue) the prior on ``data`` and write it to ``out`` (see the module
    docstring); returns the model. ``ddp`` (None: when torchrun started several processes): each process renders
    its share of every iteration's heads, the gradients are summed over the processes (every process then takes
    the same step), only the first writes files."""
    cfg.validate()
    run = setup_distributed(ddp, device, "torchrun --nproc_per_node=2 -m headrecon.priors.cli SOURCE --model xu "
                                         "--out OUT --ddp")
    device = run.device
    out = Path(out)
    ckpt = checkpoint_path(out)
    net_cfg = xu_network_config(cfg.preset, seed=cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = XuPrior(net_cfg, num_latents=len(data), norm=data.norm, data=data.description,
                        beta_init=cfg.beta_init).to(device)
    nets = [p for n_, p in model.named_parameters() if not n_.startswith(("z_sdf", "z_r", "log_beta"))]
    opt = torch.optim.Adam([{"params": nets, "lr": cfg.lr, "base": cfg.lr},
                            {"params": [model.log_beta], "lr": cfg.lr_beta, "base": cfg.lr_beta},
                            {"params": [model.z_sdf.weight, model.z_r.weight], "lr": cfg.lr_latent,
                             "base": cfg.lr_latent}])
    it, history, elapsed = 0, [], 0.0
    description = {"train": asdict(cfg), "data": data.description}
    if resume and ckpt.is_file():
        st = load_weights(ckpt, "Xu et al. training checkpoint", map_location=device)
        if not isinstance(st, dict) or st.get("format") != XU_TRAIN_FORMAT:
            raise TrainingError(f"{ckpt}: not a Xu et al. training checkpoint")
        if st.get("description") != description:
            raise TrainingError(f"{ckpt}: written for other settings or data; remove it or drop --resume")
        model.load_state_dict(XuPrior.from_state(st["model"]).state_dict())
        opt.load_state_dict(st["optimizer"])
        it, history, elapsed = int(st["iteration"]), list(st["history"]), float(st["elapsed"])
    end = cfg.iterations if stop_after is None else min(int(stop_after), cfg.iterations)
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.iterations, initial=it, desc="xu prior", unit="it", disable=not (progress and run.is_main),
               dynamic_ncols=True)
    acc, n_acc = {}, 0

    def save_ckpt():
        write = {"format": XU_TRAIN_FORMAT, "model": model.state(), "optimizer": opt.state_dict(), "iteration": it,
                 "history": history, "elapsed": elapsed, "description": description}
        save_weights(write, ckpt)

    model.train()
    while it < end:
        t0 = time.perf_counter()
        f = _lr_factor(it, cfg.iterations)
        for g in opt.param_groups:
            g["lr"] = g["base"] * f
        model.reference.set_progress(min(1.0, it / (0.5 * cfg.iterations)))
        losses = _objective(model, data, cfg, it, device, run.rank, run.world)
        if not torch.isfinite(losses["loss"]):
            raise TrainingError(f"non-finite loss at iteration {it}: {({k: float(v) for k, v in losses.items()})}")
        opt.zero_grad(set_to_none=False)
        losses["loss"].backward()
        if run.use_ddp:
            for p in model.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
            for k in losses:
                losses[k] = losses[k].detach().clone()
                dist.all_reduce(losses[k])
        opt.step()
        it += 1
        elapsed += time.perf_counter() - t0
        for k, v in losses.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        n_acc += 1
        if n_acc == 50 or it == end:
            history.append({"iteration": it, "seconds": elapsed, "beta": float(model.beta().detach()),
                            **{k: v / n_acc for k, v in acc.items()}})
            acc, n_acc = {}, 0
        bar.update(1)
        bar.set_postfix(loss=f"{float(losses['loss'].detach()):.4f}", rgb=f"{float(losses['rgb'].detach()):.4f}",
                        beta=f"{float(model.beta().detach()):.4f}", refresh=False)
        if (it % cfg.checkpoint_every == 0 or it == end) and run.is_main:
            save_ckpt()
    bar.close()
    model.meta.update({"iterations_done": it, "train_seconds": round(elapsed, 1), "history": history[-1:],
                       "device": str(device), "world_size": run.world, **(extra_meta or {})})
    if run.use_ddp:
        model.meta["ddp_max_param_diff"] = check_ddp_agreement(model, run.world, device)
    if it >= cfg.iterations and run.is_main:
        model.reference.set_progress(1.0)  # every frequency on (the training ended with them on)
        model.save(out, half=half)
    run.close()
    return model.eval()


def main_from_args(args, argv=None) -> int:
    """``headrecon-train-prior ... --model xu`` (called by :mod:`headrecon.priors.cli` with its parsed args)."""

    from ..scans import is_shape_source

    source = args.scans.lower()
    if not is_shape_source(source):
        raise ValueError("--model xu trains on rendered images of simulated heads ('ict', 'composite', 'anny' or a "
                         "mix such as 'composite+ict')")
    over = {}
    for name, key in (("epochs", "iterations"), ("batch_shapes", "batch_shapes"), ("lr", "lr"),
                      ("lr_latent", "lr_latent"), ("seed", "seed"), ("checkpoint_every", "checkpoint_every"),
                      ("xu_views", "views"), ("xu_size", "size"), ("points", "rays_per_shape")):
        v = getattr(args, name, None)
        if v is not None:
            over[key] = v
    cfg = XuTrainConfig(preset=args.preset if args.preset in ("fast", "paper") else "fast", **over)
    n = 16 if args.shapes is None else int(args.shapes)
    progress = not args.no_progress
    if args.threads:
        torch.set_num_threads(int(args.threads))
    data = xu_image_data(source, n, views=cfg.views, size=cfg.size, progress=progress)
    cmd = recorded_command(argv)
    stop = args.stop_after_epoch
    train_xu(cfg, data, args.out, resume=args.resume, device=args.device, progress=progress, stop_after=stop,
             extra_meta={"command": cmd}, half=bool(getattr(args, "half", False)), ddp=True if args.ddp else None)
    return 0
