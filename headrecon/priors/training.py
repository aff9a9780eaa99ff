"""Training machinery shared by the priors (H3D-Net auto-decoder, SIRA++ model): process groups and DDP,
shard plans, the epoch loop with its progress bar, atomic checkpoint writes, resume validation, epoch-loss
reduction, the DDP agreement check and the final metadata of a model file."""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from ..machine import machine_info
from ..weights import load_weights, save_weights

__all__ = ["TrainingError", "checkpoint_path", "ddp_env", "Distributed", "setup_distributed", "shard_plan",
           "progress_bar", "epoch_loop", "load_resume_state", "write_checkpoint", "epoch_means",
           "check_ddp_agreement", "final_meta", "recorded_command", "finish_ddp_worker"]


class TrainingError(RuntimeError):
    """Training cannot start or continue (bad resume checkpoint, diverged loss...)."""

    user_facing = True  # headrecon.cli.run_command reports it as an error of the input, not as a bug


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
        """Wait for every rank (rank 0 may still be saving), then destroy the group this run created: a rank
        that tears gloo down while a peer is still connected can abort the peer (SIGABRT)."""
        if self.own_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def finish_ddp_worker(rc: int) -> None:
    """End a torchrun worker (``WORLD_SIZE > 1``) with exit code ``rc`` without the interpreter's teardown; a
    process outside torchrun returns.

    A gloo worker that had finished its training (the model written, the process group destroyed) has been seen
    to die of SIGABRT ("terminate called without an active exception") or SIGSEGV while Python tore down its
    modules (pytorch/pytorch#179291 and #190489 report such exit crashes); torchrun then reports the finished
    training as failed. Call it last, after every file is closed: stdout and stderr are flushed, nothing else
    (no ``atexit`` handler, no buffer of a file still open) runs after it."""
    if not ddp_env():
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed or replaced stream: nothing left to lose
            pass
    os._exit(rc)


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


def _description_key(d: dict) -> dict:
    keys = ("source", "n_shapes", "seeds", "files", "simulation", "clip", "n_points", "units_to_mm", "align")
    return {k: d.get(k) for k in keys}


def _param_vector(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in module.parameters()])


def load_resume_state(ckpt_file: Path, fmt: str, key: str, from_state, n: int, description: dict, epochs: int,
                      description_key=_description_key, what: str = "prior"):
    """Load and validate a training checkpoint for ``--resume``.

    Checks the format tag, the number of shapes, the data description (through ``description_key``) and that the
    run is not shortened. Returns ``(model, start_epoch, history, elapsed_s, optimizer_state)``; the model's
    config carries the (possibly extended) ``epochs``.
    """
    if not ckpt_file.is_file():
        raise TrainingError(f"{ckpt_file}: no checkpoint to resume from")
    state = load_weights(ckpt_file, f"{what} training checkpoint")
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise TrainingError(f"{ckpt_file}: not a headrecon {what} training checkpoint")
    missing = [k for k in (key, "epoch", "optimizer") if k not in state]
    if missing:
        raise TrainingError(f"{ckpt_file}: the training checkpoint lacks {missing} (damaged or of another version)")
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
    save_weights(state, ckpt_file)


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


def recorded_command(argv) -> str:
    """The ``headrecon-train-prior`` command line a model file records (``meta["command"]``): ``argv`` (default
    ``sys.argv[1:]``) shell-quoted, with every absolute path reduced to its last component, so that a model file
    says how it was made without naming folders of the machine that made it."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = []
    for a in args:
        key, eq, val = a.partition("=") if a.startswith("--") else ("", "", a)
        if os.path.isabs(val):
            val = os.path.basename(val.rstrip(os.sep)) or val
        out.append(shlex.quote(key + eq + val))
    return " ".join(["headrecon-train-prior"] + out)


def final_meta(done: int, elapsed: float, world: int, device, history: list) -> dict:
    """Metadata a finished (or stopped) training run records in its model file."""
    return dict(epochs_done=done, elapsed_s=elapsed, world_size=world, device=str(device),
                final_losses=history[-1] if history else None, torch=str(torch.__version__),
                machine=f"{machine_info()['kind']}, {os.cpu_count()} cpus",
                history=[{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in history])


