"""Training loop of the prior (auto-decoder): single process or PyTorch DistributedDataParallel.

:func:`train_prior` optimises the decoder and the per-shape latents jointly with Adam (two parameter groups:
decoder ``lr``, latents ``lr_latent``), step decay ``decay_factor`` every ``decay_every`` epochs. One epoch is
one pass over the shapes in batches of ``shapes_per_batch`` shapes (global batch); every shape contributes
``surface_points`` scan samples and ``volume_points`` eikonal samples per iteration.

Distributed training (``torchrun --nproc_per_node=K -m headrecon.prior.cli ... --ddp``; detected from
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

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from .config import PriorConfig
from .losses import prior_losses, sample_shape_points, shape_generator
from .model import ShapePrior, atomic_save
from .scans import ScanSet

__all__ = ["train_prior", "checkpoint_path", "TRAIN_CHECKPOINT_FORMAT", "ddp_env", "TrainingError"]

TRAIN_CHECKPOINT_FORMAT = "headrecon-prior-train"
LOSS_KEYS = ("loss", "surface", "normal", "eikonal", "boundary", "latent")


class TrainingError(RuntimeError):
    """Training cannot start or continue (bad resume checkpoint, diverged loss...)."""


def checkpoint_path(out) -> Path:
    """Training checkpoint beside the output: ``prior.pt`` -> ``prior.ckpt.pt``."""
    out = Path(out)
    stem = out.name[:-3] if out.name.endswith(".pt") else out.name
    return out.with_name(stem + ".ckpt.pt")


def ddp_env() -> bool:
    """True when launched by torchrun with more than one process (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass
class Distributed:
    """Where this process trains: DDP flags, rank, world size, device (from :func:`setup_distributed`)."""

    use_ddp: bool
    own_group: bool  # this call created the process group (and destroys it with :meth:`close`)
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel when training on several processes (else itself)."""
        if not self.use_ddp:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def close(self) -> None:
        if self.own_group and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(ddp, device, launch_hint: str) -> Distributed:
    """Start the process group when ``ddp`` (``None``: when torchrun set ``WORLD_SIZE > 1``) and pick the device
    (default ``cuda:LOCAL_RANK`` when CUDA is available, else CPU); nccl on CUDA, gloo otherwise. Without a
    torchrun launch, :class:`TrainingError` showing ``launch_hint``."""
    use_ddp = ddp_env() if ddp is None else bool(ddp)
    own_group = False
    if use_ddp and not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ:
            raise TrainingError(f"--ddp needs a torchrun launch (WORLD_SIZE, RANK, MASTER_ADDR not set): {launch_hint}")
        backend = "nccl" if torch.cuda.is_available() and (device is None or str(device).startswith("cuda")) else "gloo"
        dist.init_process_group(backend=backend)
        own_group = True
    if device is None:
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if torch.cuda.is_available() \
            else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Distributed(use_ddp, own_group, dist.get_rank() if use_ddp else 0, dist.get_world_size() if use_ddp else 1,
                       device)


def shard_plan(n: int, shapes_per_batch: int, run: Distributed, seed: int):
    """``(sampler, per_rank, iterations per epoch)``: the shapes of an epoch sharded over the ranks by a
    ``DistributedSampler`` (shuffled by epoch), ``shapes_per_batch / world`` shapes per rank and step."""
    sampler = DistributedSampler(range(n), num_replicas=run.world, rank=run.rank, shuffle=True, seed=seed,
                                 drop_last=False)
    per_rank = min(max(1, shapes_per_batch // run.world), len(sampler))
    return sampler, per_rank, (len(sampler) + per_rank - 1) // per_rank


def progress_bar(run: Distributed, progress: bool, total: int, desc: str):
    """A tqdm bar on the main rank when ``progress`` (else None)."""
    if not (progress and run.is_main):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)


def epoch_loop(run: Distributed, sampler, per_rank: int, iters: int, start_epoch: int, last_epoch: int, every: int,
               loss_keys, history: list, begin_epoch, step, postfix, save_ckpt, bar=None) -> None:
    """The epoch / iteration skeleton shared by the H3D-Net and SIRA++ trainers.

    Per epoch: ``begin_epoch(epoch) -> dict`` (sets learning rates etc.; its dict is logged), the shard's shape
    order from ``sampler`` (``set_epoch``), ``iters`` steps of ``per_rank`` shapes, each ``step(epoch, batch) ->
    terms`` (forward, backward, optimiser step; ``terms`` holds the ``loss_keys``), the epoch means reduced over
    the ranks appended to ``history``, the bar's ``postfix(means, logged)`` and a checkpoint
    (``save_ckpt(epochs_done)``) every ``every`` epochs and at ``last_epoch``."""
    for epoch in range(start_epoch, last_epoch):
        logged = begin_epoch(epoch)
        sampler.set_epoch(epoch)
        order = list(sampler)
        sums = torch.zeros(len(loss_keys), dtype=torch.float64, device=run.device)  # on device: no per-step sync
        for it in range(iters):
            batch = order[it * per_rank:(it + 1) * per_rank] or order[-per_rank:]
            terms = step(epoch, batch)
            sums += torch.stack([terms[k].detach().to(torch.float64).reshape(()) for k in loss_keys])
            if bar is not None:
                bar.update(1)
        means = epoch_means(sums, loss_keys, iters, epoch, run.use_ddp, run.world, run.device)
        history.append({"epoch": epoch, **logged, **means})
        if bar is not None:
            bar.set_postfix(epoch=epoch + 1, **postfix(means, logged))
        done = epoch + 1
        if done % every == 0 or done == last_epoch:
            save_ckpt(done)
    if bar is not None:
        bar.close()


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


def _description_key(d: dict) -> dict:
    keys = ("source", "n_shapes", "seeds", "files", "simulation", "clip", "n_points", "units_to_mm", "align")
    return {k: d.get(k) for k in keys}


def _param_vector(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in module.parameters()])


# ---- training machinery shared by the H3D-Net prior and the SIRA++ model (headrecon/prior/sira_train.py)
def load_resume_state(ckpt_file: Path, fmt: str, key: str, from_state, n: int, description: dict, epochs: int,
                      description_key=_description_key, what: str = "prior"):
    """Load and validate a training checkpoint for ``--resume``.

    Checks the format tag, the number of shapes, the data description (through ``description_key``) and that the
    run is not shortened. Returns ``(model, start_epoch, history, elapsed_s, optimizer_state)``; the model's
    config carries the (possibly extended) ``epochs``.
    """
    if not ckpt_file.is_file():
        raise TrainingError(f"{ckpt_file}: no checkpoint to resume from")
    state = torch.load(ckpt_file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise TrainingError(f"{ckpt_file}: not a headrecon {what} training checkpoint")
    model = from_state(state[key], source=str(ckpt_file))
    if model.num_latents != n:
        raise TrainingError(f"{ckpt_file}: trained on {model.num_latents} shapes but {n} were given")
    if description_key(model.data) != description_key(description):
        raise TrainingError(f"{ckpt_file}: the checkpoint was trained on different data "
                            f"({description_key(model.data)}) than given ({description_key(description)})")
    if epochs < model.config.epochs:
        raise TrainingError(f"cannot shorten a run on resume ({model.config.epochs} -> {epochs} epochs)")
    model.config = model.config.replace(epochs=epochs)
    return (model, int(state["epoch"]), list(state.get("history", [])), float(state.get("elapsed_s", 0.0)),
            state["optimizer"])


def write_checkpoint(ckpt_file: Path, state: dict) -> None:
    """Write a training checkpoint atomically (a stopped write never leaves a truncated checkpoint)."""
    atomic_save(state, ckpt_file)


def epoch_means(sums: torch.Tensor, keys, iters: int, epoch: int, use_ddp: bool, world: int, device) -> dict:
    """Mean loss terms of an epoch (averaged over the DDP ranks); raises TrainingError when one is not finite."""
    if use_ddp:
        red = sums.to(device)
        dist.all_reduce(red)
        sums = red / world
    means = {k: float(v) / iters for k, v in zip(keys, sums.cpu())}
    if not all(v == v and abs(v) != float("inf") for v in means.values()):
        raise TrainingError(f"epoch {epoch}: loss is not finite ({means}); lower the learning rate")
    return means


def check_ddp_agreement(model: nn.Module, world: int, device) -> float:
    """All-gather the parameters of every rank; raise TrainingError when they differ (returns the max diff)."""
    vec = _param_vector(model).to(device)
    gathered = [torch.zeros_like(vec) for _ in range(world)]
    dist.all_gather(gathered, vec)  # gloo handles CPU tensors; nccl needs device tensors
    diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
    if diff > 1e-6:
        raise TrainingError(f"DDP ranks disagree on the parameters after training (max diff {diff:g})")
    return diff


def final_meta(done: int, elapsed: float, world: int, device, history: list) -> dict:
    """Metadata a finished (or stopped) training run records in its model file."""
    return dict(epochs_done=done, elapsed_s=elapsed, world_size=world, device=str(device),
                final_losses=history[-1] if history else None, torch=str(torch.__version__),
                machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
                history=[{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in history])


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
    run = setup_distributed(ddp, device, "torchrun --nproc_per_node=2 -m headrecon.prior.cli ... --ddp")
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
