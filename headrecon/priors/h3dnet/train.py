"""Training loop of the prior (auto-decoder): single process or PyTorch DistributedDataParallel.

:func:`train_prior` optimises the decoder and the per-shape latents jointly with Adam (two parameter groups:
decoder ``lr``, latents ``lr_latent``), step decay ``decay_factor`` every ``decay_every`` epochs. One epoch is
one pass over the shapes in batches of ``shapes_per_batch`` shapes (global batch); every shape contributes
``surface_points`` scan samples and ``volume_points`` eikonal samples per iteration.

Distributed training (``torchrun --nproc_per_node=K -m headrecon.priors.cli ... --ddp``; detected from
``WORLD_SIZE`` too): gloo on CPU, nccl on CUDA. The decoder and the latents (an ``nn.Embedding``) sit in one
module wrapped by ``DistributedDataParallel``, so gradients of both are averaged across ranks; shapes are
sharded with ``DistributedSampler`` (each rank gets ``shapes_per_batch / K`` shapes per step). Because the
sampler's interleaved shards make each global step cover the same shapes as a single process with the global
batch, and every shape's samples are drawn from a generator seeded by (seed, epoch, shape), a K-process run
follows the single-process run up to floating-point summation order. Only rank 0 writes files; at the end the
ranks compare their parameters (``meta['ddp_max_param_diff']``).

Checkpoints (``OUT.ckpt.pt`` beside ``OUT``; every ``checkpoint_every`` epochs and at the end) hold the prior,
the optimiser state, the next epoch and the loss history; ``resume=True`` continues exactly where the
checkpoint left off (the schedule and the samples depend only on the epoch).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from ..sampling import shape_generator
from ..scans import ScanSet
from ..training import (
    TrainingError,
    check_ddp_agreement,
    checkpoint_path,
    ddp_env,
    epoch_loop,
    final_meta,
    load_resume_state,
    progress_bar,
    setup_distributed,
    shard_plan,
    write_checkpoint,
)
from .config import PriorConfig
from .losses import prior_losses, sample_shape_points
from .model import ShapePrior

__all__ = ["train_prior", "checkpoint_path", "TRAIN_CHECKPOINT_FORMAT", "ddp_env", "TrainingError"]

TRAIN_CHECKPOINT_FORMAT = "headrecon-prior-train"
LOSS_KEYS = ("loss", "surface", "normal", "eikonal", "boundary", "latent")


class _Objective(nn.Module):
    """The module DDP wraps: latents lookup, SDF on all samples and its spatial gradient (with graph)."""

    def __init__(self, prior: ShapePrior):
        super().__init__()
        self.prior = prior

    def forward(self, idx: torch.Tensor, pts: torch.Tensor):
        z = self.prior.latents(idx)                                  # [B, D]
        pts = pts.detach().requires_grad_(True)
        sdf = self.prior.decoder.sdf(pts, z[:, None, :])            # [B, N]
        (grad,) = torch.autograd.grad(sdf.sum(), pts, create_graph=True)
        return sdf, grad, z


def train_prior(cfg: PriorConfig, scans: ScanSet, out, resume: bool = False, checkpoint_every: int | None = None,
                device=None, progress: bool = True, ddp: Optional[bool] = None, stop_after_epoch: int | None = None,
                log: Callable[[str], None] = print, extra_meta: dict | None = None) -> ShapePrior:
    """Train (or resume) a prior on ``scans``; writes ``out`` (final prior) and ``checkpoint_path(out)``.

    Args:
        cfg: configuration (on resume the checkpoint's network/optimiser settings are kept; only ``epochs``
            may grow).
        scans: training scans in the unit frame (:class:`ScanSet`).
        out: output path of the final prior.
        resume: continue from ``checkpoint_path(out)`` (TrainingError when absent or for other data/network).
        checkpoint_every: epochs between checkpoints (default ``max(1, epochs // 10)``).
        device: torch device (default: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU).
        ddp: use DistributedDataParallel (default: when ``WORLD_SIZE > 1``).
        stop_after_epoch: stop (after checkpointing) once this many epochs are done — for tests and for
            splitting a long run; resume later.
        extra_meta: added to the prior's ``meta`` (e.g. the command line).
    Returns the trained :class:`ShapePrior` (on every rank).
    """
    out = Path(out)
    ckpt_file = checkpoint_path(out)
    run = setup_distributed(ddp, device, "torchrun --nproc_per_node=2 -m headrecon.priors.cli ... --ddp")
    use_ddp, world, device, is_main = run.use_ddp, run.world, run.device, run.is_main
    say = log if is_main else (lambda *_: None)

    try:
        n = len(scans)
        start_epoch, history, elapsed_before = 0, [], 0.0
        opt_state = None
        if resume:
            prior, start_epoch, history, elapsed_before, opt_state = load_resume_state(
                ckpt_file, TRAIN_CHECKPOINT_FORMAT, "prior", ShapePrior.from_state, n, scans.description, cfg.epochs)
            cfg = prior.config
            say(f"resuming from {ckpt_file} at epoch {start_epoch}/{cfg.epochs}")
        else:
            prior = ShapePrior(cfg, num_latents=n, norm=scans.norm, data=scans.description)
        prior.to(device).train()
        model = run.wrap(_Objective(prior))
        opt = torch.optim.Adam([
            {"params": list(prior.decoder.parameters()), "lr": cfg.lr, "name": "decoder"},
            {"params": [prior.latents.weight], "lr": cfg.lr_latent, "name": "latents"},
        ])
        if opt_state is not None:
            opt.load_state_dict(opt_state)

        pts_dev = [p.to(device) for p in scans.points]
        nrm_dev = [None if q is None else q.to(device) for q in scans.normals]
        has_nrm = torch.tensor([q is not None for q in scans.normals])
        sampler, per_rank, iters = shard_plan(n, cfg.shapes_per_batch, run, cfg.seed)
        if cfg.shapes_per_batch % world:
            say(f"note: shapes_per_batch={cfg.shapes_per_batch} is not a multiple of {world} processes; "
                f"using {per_rank} per process")
        every = checkpoint_every or max(1, cfg.epochs // 10)
        last_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, int(stop_after_epoch))
        say(f"training prior: {n} shapes, {world} process(es) on {device}, {cfg.epochs} epochs x {iters} "
            f"iterations, {per_rank} shapes/process/iteration, decoder {cfg.n_layers}x{cfg.d_hidden}, "
            f"latent {cfg.latent_dim}")

        bar = progress_bar(run, progress, (cfg.epochs - start_epoch) * iters, "prior")
        t0 = time.perf_counter()

        def save_ckpt(next_epoch: int):
            if not is_main:
                return
            prior.meta.update(epochs_done=next_epoch, elapsed_s=elapsed_before + time.perf_counter() - t0)
            write_checkpoint(ckpt_file, {
                "format": TRAIN_CHECKPOINT_FORMAT, "prior": prior.state(), "optimizer": opt.state_dict(),
                "epoch": next_epoch, "history": history, "world_size": world,
                "elapsed_s": elapsed_before + time.perf_counter() - t0})

        def begin_epoch(epoch: int) -> dict:
            lr_dec, lr_lat = cfg.lr_at(epoch)
            opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr_dec, lr_lat
            return {"lr": lr_dec}

        def step(epoch: int, batch) -> dict:
            surf, nrms, vols = [], [], []
            for i in batch:
                s, nr, v = sample_shape_points(pts_dev[i], nrm_dev[i], cfg, shape_generator(cfg.seed, epoch, i))
                surf.append(s)
                nrms.append(nr if nr is not None else torch.zeros_like(s))
                vols.append(v)
            pts = torch.cat([torch.stack(surf), torch.stack(vols)], dim=1)
            idx = torch.as_tensor(batch, dtype=torch.long, device=device)
            sdf, grad, z = model(idx, pts)
            terms = prior_losses(sdf, grad, cfg.surface_points, torch.stack(nrms), has_nrm[batch].to(device),
                                 z, cfg, n_boundary=cfg.boundary_points)
            opt.zero_grad(set_to_none=False)
            terms["loss"].backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(prior.decoder.parameters(), cfg.grad_clip)
            opt.step()
            return terms

        epoch_loop(run, sampler, per_rank, iters, start_epoch, last_epoch, every, LOSS_KEYS, history, begin_epoch,
                   step, lambda m, _: dict(loss=f"{m['loss']:.4g}", surf=f"{m['surface']:.3g}",
                                           eik=f"{m['eikonal']:.3g}"), save_ckpt, bar)
        done = last_epoch if last_epoch > start_epoch else start_epoch
        elapsed = elapsed_before + time.perf_counter() - t0
        if use_ddp:
            prior.meta["ddp_max_param_diff"] = check_ddp_agreement(prior, world, device)
        prior.meta.update(final_meta(done, elapsed, world, device, history))
        if extra_meta:
            prior.meta.update(extra_meta)
        if done >= cfg.epochs and is_main:
            save_ckpt(done)
            prior.save(out)
            say(f"wrote {out} ({done} epochs, {elapsed:.0f} s, final loss {history[-1]['loss']:.4g})"
                if history else f"wrote {out}")
        elif is_main:
            say(f"stopped after epoch {done}/{cfg.epochs}; checkpoint {ckpt_file} (continue with --resume)")
        if use_ddp:
            dist.barrier()
        return prior.eval()
    finally:
        run.close()
