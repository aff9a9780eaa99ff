"""Training of the SIRA++ shape-and-appearance model (``headrecon-train-prior ict --model sira``).

Data (:func:`sira_ict_data`): for every training identity (ICT-FaceKit seeds ``0 .. N-1``, see
:mod:`headrecon.prior`) the head with the procedural skin albedo of :func:`headrecon.data.ict.sample_ict_head`

* as a simulated raw scan (same simulation as the H3D-Net prior, :func:`headrecon.priors.scans.simulate_raw_scan`):
  surface points and normals for the surface / Eikonal / normal terms;
* its six landmarks (vertex indices valid for every identity) in the prior frame, for the landmark term;
* ``image_views`` posed images rendered with :class:`headrecon.data.synthetic.MeshRenderer` under lighting drawn
  per head (random key / fill directions and intensities, random ambient), cameras on a jittered orbit. Each
  foreground pixel is ray-cast against the ground-truth mesh (embree), which gives the exact pixel <-> surface
  point correspondence: (surface point, direction towards the camera, pixel colour) triples supervise the
  rendering function at the points the images see.

Training (:func:`train_sira`) reuses the H3D-Net prior's machinery (:mod:`headrecon.priors.h3dnet.train`): the same
checkpoint file beside the output (``OUT.ckpt.pt``, every ``checkpoint_every`` epochs and at the end), exact resume
(the samples of a shape depend only on (seed, epoch, shape) through :func:`headrecon.priors.h3dnet.losses.shape_generator`,
the shape order on the epoch through ``DistributedSampler``), DistributedDataParallel under ``torchrun`` (gloo on
CPU, nccl on CUDA; the landmark term is computed over the shapes each process holds), only rank 0 writes, and the
ranks compare their parameters at the end. One optimiser with two groups (networks ``lr``, latents
``lr_latent``), step decay; the reference SDF's positional encoding is unmasked progressively (``pe_start`` ..
``pe_end`` epochs).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..normalization import Normalization
from ..sampling import sample_volume, shape_generator
from ..training import (
    check_ddp_agreement,
    checkpoint_path,
    epoch_loop,
    final_meta,
    load_resume_state,
    progress_bar,
    recorded_command,
    setup_distributed,
    shard_plan,
    write_checkpoint,
)
from .model import LANDMARK_NAMES, SIRA_FORMAT, SiraConfig, SiraPrior, sira_losses

__all__ = ["SiraData", "sira_ict_data", "sira_bust_data", "sira_mesh_data", "head_samples", "render_head_samples", "train_sira", "SIRA_TRAIN_FORMAT", "LOSS_KEYS"]

SIRA_TRAIN_FORMAT = SIRA_FORMAT + "-train"
LOSS_KEYS = ("loss", "surface", "eikonal", "deform", "landmark", "color", "latent", "normal", "outside", "correction")


@dataclass
class SiraData:
    """Training data in the prior's unit frame (lists indexed by shape).

    ``points`` / ``normals``: raw-scan samples [N_i, 3]; ``landmarks``: [S, K, 3]; ``color_points``,
    ``color_dirs`` (unit, towards the camera), ``color_rgb``: [M_i, 3] appearance samples; ``description``: what
    a checkpoint stores instead of the data; ``norm``: the frame."""

    points: list
    normals: list
    landmarks: torch.Tensor
    color_points: list
    color_dirs: list
    color_rgb: list
    description: dict
    norm: Normalization
    # derived, not data: each shape's face sample indices per radius (face_indices), found once
    _faces: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.points)

    def face_indices(self, i: int, radius_mm: float) -> torch.Tensor:
        """Indices of shape ``i``'s scan samples within ``radius_mm`` of its nose tip (cached per shape and
        radius); ValueError when there are none."""
        key = (int(i), float(radius_mm))
        face = self._faces.get(key)
        if face is None:
            nose = self.landmarks[i, LANDMARK_NAMES.index("nose_tip")]
            r = float(radius_mm) / float(self.norm.mm_per_unit)
            face = torch.nonzero((self.points[i] - nose).norm(dim=-1) < r).flatten()
            if len(face) == 0:
                raise ValueError(f"shape {i}: no scan sample within {radius_mm} mm of its nose tip "
                                 "(face_fraction needs the face in the scan)")
            self._faces[key] = face
        return face

    def __post_init__(self):
        n = len(self.points)
        if n < 1:
            raise ValueError("SiraData needs at least one shape")
        if not (len(self.normals) == len(self.color_points) == len(self.color_dirs) == len(self.color_rgb) == n):
            raise ValueError("SiraData: every per-shape list must have one entry per shape")
        if self.landmarks.dim() != 3 or self.landmarks.shape[0] != n or self.landmarks.shape[2] != 3:
            raise ValueError(f"SiraData.landmarks must be [{n}, K, 3], got {tuple(self.landmarks.shape)}")
        for i in range(n):
            if len(self.points[i]) < 1 or len(self.color_points[i]) < 1:
                raise ValueError(f"shape {i}: no surface or colour samples")


def random_lights(rng: np.random.Generator) -> tuple[str, float]:
    """Lighting of one training head: a key light in the front hemisphere, a fill light, a rim light, random
    intensities, and a random ambient term (MeshRenderer light spec, ambient)."""
    def direction(front: bool):
        d = rng.normal(size=3)
        d[2] = abs(d[2]) + 0.3 if front else -abs(d[2])
        d[1] = abs(d[1]) * 0.8
        return d / np.linalg.norm(d)
    key, fill, rim = direction(True), direction(True), direction(False)
    spec = ";".join(f"{d[0]:.4f},{d[1]:.4f},{d[2]:.4f}@{w:.3f}" for d, w in
                    ((key, rng.uniform(0.4, 0.8)), (fill, rng.uniform(0.1, 0.35)), (rim, rng.uniform(0.1, 0.4))))
    return spec, float(rng.uniform(0.2, 0.45))


def render_head_samples(mesh_mm, norm: Normalization, n_views: int, size: int, seed: int) -> dict:
    """Appearance samples of one head (vertex-coloured mesh in mm): ``n_views`` images of ``size`` px on a
    jittered orbit under random lighting; returns ``points`` (unit frame), ``dirs`` (towards the camera) and
    ``rgb`` [M, 3] float32 arrays plus the lighting used."""
    from ...data.synthetic import MeshRenderer, default_distance_focal, orbit_cameras

    rng = np.random.default_rng([int(seed), 11])
    lights, ambient = random_lights(rng)
    renderer = MeshRenderer(mesh_mm, lights=lights, ambient=ambient)
    center = norm.to_mm(np.zeros((1, 3)))[0]
    radius = 0.8 * float(norm.mm_per_unit)  # heads fill about 0.8 of the unit sphere
    distance, focal = default_distance_focal(radius, int(size), fill=0.95)
    yaws = (np.arange(n_views) * 360.0 / n_views + rng.uniform(-180.0 / n_views, 180.0 / n_views)
            + rng.uniform(0, 360)) % 360.0
    yaws = np.where(yaws > 180, yaws - 360, yaws)
    P, D, C = [], [], []
    for y in yaws:
        cam = orbit_cameras(center, distance, [float(y)], [float(rng.uniform(-20, 25))], focal, int(size))[0]
        o, d = cam.rays_np()
        col, hit, pts = renderer._shade_rays(o, d, cam, shadows=False)[:3]
        P.append(pts[hit])
        D.append(-d[hit])
        C.append(col[hit])
    pts = norm.to_unit(np.concatenate(P))
    return {"points": pts.astype(np.float32), "dirs": np.concatenate(D).astype(np.float32),
            "rgb": np.concatenate(C).astype(np.float32), "lights": lights, "ambient": ambient}


def head_samples(mesh_mm, cfg: SiraConfig, seed: int, norm: Normalization, keep_faces=None, simulation=None):
    """(scan points, scan normals, landmarks [K, 3], colour points, colour dirs, colour rgb) of one vertex-coloured
    head in mm whose ``metadata["landmarks"]`` names the six :data:`LANDMARK_NAMES` (vertex indices)."""
    from ..scans import DEFAULT_SIMULATION, closed_bottom_options, simulate_raw_scan

    lm = (mesh_mm.metadata or {}).get("landmarks") or {}
    missing = [k for k in LANDMARK_NAMES if k not in lm]
    if missing:
        raise ValueError(f"head {seed}: mesh.metadata['landmarks'] lacks {missing} (needs {list(LANDMARK_NAMES)})")
    sim, keep_faces = closed_bottom_options(mesh_mm, DEFAULT_SIMULATION if simulation is None else simulation,
                                            keep_faces)
    scan = simulate_raw_scan(mesh_mm, n_points=cfg.scan_points, seed=int(seed), keep_faces=keep_faces, **sim)
    app = render_head_samples(mesh_mm, norm, cfg.image_views, cfg.image_size, seed=int(seed))
    if len(app["points"]) == 0:
        raise ValueError(f"head {seed}: not visible in its training images (is it in mm, in the ICT frame?)")
    return (torch.as_tensor(norm.to_unit(scan.points), dtype=torch.float32),
            torch.as_tensor(scan.normals, dtype=torch.float32),  # the frame has no rotation
            torch.as_tensor(norm.to_unit(np.stack([mesh_mm.vertices[int(lm[k])] for k in LANDMARK_NAMES])),
                            dtype=torch.float32),
            torch.as_tensor(app["points"]), torch.as_tensor(app["dirs"]), torch.as_tensor(app["rgb"]))


def sira_mesh_data(meshes, cfg: SiraConfig, description: dict | None = None, simulation=None, keep_faces=None,
                   progress: bool = False, norm: Normalization | None = None) -> SiraData:
    """:class:`SiraData` from vertex-coloured head meshes in mm (ICT frame) with the six landmarks; ``meshes`` may
    be a sequence or an iterable of ``(seed, mesh)`` pairs or ``(seed, mesh, keep_faces)`` triples (a per-mesh
    callable or None). ``keep_faces``: optional callable mesh -> face mask for the pairs."""
    norm = norm or Normalization()
    cols = [[] for _ in range(6)]
    it = meshes if not isinstance(meshes, (list, tuple)) else list(enumerate(meshes))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="heads: scans + renders", unit="head")
    for item in it:
        seed, mesh = item[0], item[1]
        keep = item[2] if len(item) > 2 else keep_faces
        kf = keep(mesh) if keep is not None else None
        for c, v in zip(cols, head_samples(mesh, cfg, seed, norm, keep_faces=kf, simulation=simulation)):
            c.append(v)
    if not cols[0]:
        raise ValueError("no training heads")
    desc = dict(description or {"source": "meshes"})
    desc.setdefault("n_shapes", len(cols[0]))
    desc.update(n_points=int(cfg.scan_points), image_views=int(cfg.image_views), image_size=int(cfg.image_size),
                color_samples=[int(len(c)) for c in cols[3]], landmarks=list(LANDMARK_NAMES))
    return SiraData(cols[0], cols[1], torch.stack(cols[2]), cols[3], cols[4], cols[5], desc, norm)


def sira_ict_data(n_shapes: int, cfg: SiraConfig, seed_start: int = 0, clip: float = 2.5,
                  progress: bool = False, simulation: dict | None = None) -> SiraData:
    """Raw scans, landmarks and rendered appearance samples of ICT heads ``seed_start .. seed_start + n - 1``."""
    from ... import shared_dir
    from ...data.ict import sample_ict_head
    from ..scans import ict_visible_faces, make_simulation, simulation_record

    if n_shapes < 1:
        raise ValueError("n_shapes must be >= 1")
    seeds = range(int(seed_start), int(seed_start) + int(n_shapes))
    desc = {"source": "ict", "model": "ICT-FaceKit head basis (MIT licence), 100 identity modes, procedural albedo",
            "basis_dir": str(shared_dir() / "data" / "ict_facekit") if shared_dir() else None,
            "seeds": [seeds.start, seeds.stop - 1], "clip": float(clip),
            "simulation": simulation_record(make_simulation(simulation)), "n_shapes": int(n_shapes)}
    heads = ((s, sample_ict_head(int(s), clip=clip, albedo=True)) for s in seeds)
    return sira_mesh_data(heads, cfg, description=desc, keep_faces=ict_visible_faces, progress=progress,
                          simulation=make_simulation(simulation))


def sira_bust_data(source: str, n_shapes: int, cfg: SiraConfig, seed_start: int = 0, progress: bool = False,
                   max_radius: float | None = None, simulation: dict | None = None) -> SiraData:
    """Raw scans, landmarks and rendered appearance samples of busts (``anny`` / ``composite``,
    :mod:`headrecon.data.bust`, or a mix such as ``composite+ict``: shape k from source k mod 2,
    :func:`headrecon.priors.scans.parse_sources`) ``seed_start .. seed_start + n - 1``, in the bust frame; scan
    points beyond ``max_radius`` (unit frame) are dropped."""
    from ...data.bust import bust_mesh
    from ...data.ict import sample_ict_head
    from ..normalization import bust_normalization
    from ..scans import (BUST_MAX_RADIUS, ict_visible_faces, make_simulation, parse_sources, simulation_record,
                         source_model)

    parts = parse_sources(source)

    def shape(s: int):
        src = parts[s % len(parts)]
        if src == "ict":
            return s, sample_ict_head(s, clip=2.5, albedo=True), ict_visible_faces
        return s, bust_mesh(src, s), None

    max_radius = BUST_MAX_RADIUS if max_radius is None else float(max_radius)
    if n_shapes < 1:
        raise ValueError("n_shapes must be >= 1")
    seeds = range(int(seed_start), int(seed_start) + int(n_shapes))
    desc = {"source": "+".join(parts), "model": source_model(parts) + "; procedural albedo and garment colours",
            "seeds": [seeds.start, seeds.stop - 1], "max_radius": float(max_radius),
            "simulation": simulation_record(make_simulation(simulation)), "n_shapes": int(n_shapes)}
    norm = bust_normalization()
    data = sira_mesh_data((shape(int(s)) for s in seeds), cfg, description=desc,
                          progress=progress, norm=norm, simulation=make_simulation(simulation))
    for i, p in enumerate(data.points):
        keep = p.norm(dim=1) <= max_radius
        data.points[i], data.normals[i] = p[keep], data.normals[i][keep]
    return data


class _Objective(nn.Module):
    """What DDP wraps: latents, SDF + gradient on all samples, colours at the colour samples."""

    def __init__(self, model: SiraPrior):
        super().__init__()
        self.model = model

    def forward(self, idx, pts, c0: int, c1: int, color_dirs):
        m = self.model
        z, zr = m.z_sdf(idx), m.z_r(idx)                          # [B, D], [B, Dr]
        pts = pts.detach().requires_grad_(True)
        sdf, x_ref, delta, gamma, corr = m.terms(pts, z[:, None, :])
        (grad,) = torch.autograd.grad(sdf.sum(), pts, create_graph=True)
        rgb = None
        if c1 > c0:
            rgb = m.color(x_ref[:, c0:c1], grad[:, c0:c1], color_dirs, gamma[:, c0:c1], zr[:, None, :])
        return sdf, grad, x_ref, delta, rgb, z, zr, corr


def _description_key(d: dict) -> dict:
    keys = ("source", "n_shapes", "seeds", "simulation", "clip", "n_points", "image_views", "image_size")
    return {k: d.get(k) for k in keys}


def n_outside(cfg: SiraConfig) -> int:
    """Outside-shell samples per shape (a quarter of the volume samples when the term is on)."""
    return max(1, cfg.volume_points // 4) if cfg.outside_weight > 0 else 0


def surface_indices(data: SiraData, i: int, cfg: SiraConfig, g: torch.Generator) -> torch.Tensor:
    """``cfg.surface_points`` indices into shape ``i``'s scan samples: uniform, or with ``cfg.face_fraction`` of
    them drawn among the samples within ``cfg.face_radius_mm`` of its nose tip (the official protocol's face
    region, which the bust's larger surface otherwise outweighs) and the rest uniform. Without a face share the
    draws are exactly the uniform ones of earlier models."""
    n, P = len(data.points[i]), int(cfg.surface_points)
    nf = int(round(P * float(cfg.face_fraction)))
    if nf == 0:
        return torch.randint(n, (P,), generator=g)
    face = data.face_indices(i, cfg.face_radius_mm)
    return torch.cat([face[torch.randint(len(face), (nf,), generator=g)], torch.randint(n, (P - nf,), generator=g)])


def sample_batch(data: SiraData, batch, cfg: SiraConfig, epoch: int, device):
    """Per-shape samples of a batch: points [B, P+V+C+O+K, 3] (surface, volume, colour, outside shell,
    landmarks), scan normals [B, P, 3], colour directions and targets [B, C, 3]."""
    P_, N_, CD, CR = [], [], [], []
    for i in batch:
        g = shape_generator(cfg.seed, epoch, i)
        k = surface_indices(data, i, cfg, g)
        s, nr = data.points[i][k], data.normals[i][k]
        v = sample_volume(data.points[i], cfg.volume_points, cfg.near_sigmas, cfg.uniform_fraction, g)
        ci = torch.randint(len(data.color_points[i]), (cfg.color_points,), generator=g)
        no = n_outside(cfg)
        d = torch.nn.functional.normalize(torch.randn(no, 3, generator=g), dim=-1)
        r0, r1 = cfg.outside_radius
        out = d * (r0 + (r1 - r0) * torch.rand(no, 1, generator=g))
        P_.append(torch.cat([s, v, data.color_points[i][ci], out, data.landmarks[i]], 0))
        N_.append(nr)
        CD.append(data.color_dirs[i][ci])
        CR.append(data.color_rgb[i][ci])
    return (torch.stack(P_).to(device), torch.stack(N_).to(device), torch.stack(CD).to(device),
            torch.stack(CR).to(device))


def train_sira(cfg: SiraConfig, data: SiraData, out, resume: bool = False, checkpoint_every: int | None = None,
               device=None, progress: bool = True, ddp: Optional[bool] = None, stop_after_epoch: int | None = None,
               log: Callable[[str], None] = print, extra_meta: dict | None = None, half: bool = False) -> SiraPrior:
    """Train (or resume) a SIRA++ model on ``data``; writes ``out`` and ``checkpoint_path(out)``.

    Same rules as :func:`headrecon.priors.h3dnet.train.train_prior`: on resume the checkpoint's settings are kept and
    only ``epochs`` may grow; ``stop_after_epoch`` stops with a checkpoint; ``half`` stores the final model's
    tensors as float16 (the shipped asset). Returns the trained model (on every rank)."""
    out = Path(out)
    ckpt_file = checkpoint_path(out)
    run = setup_distributed(ddp, device, "torchrun --nproc_per_node=2 -m headrecon.priors.cli ict --model sira ... --ddp")
    use_ddp, world, device, is_main = run.use_ddp, run.world, run.device, run.is_main
    say = log if is_main else (lambda *_: None)
    try:
        n = len(data)
        start_epoch, history, elapsed_before, opt_state = 0, [], 0.0, None
        if resume:
            model, start_epoch, history, elapsed_before, opt_state = load_resume_state(
                ckpt_file, SIRA_TRAIN_FORMAT, "model", SiraPrior.from_state, n, data.description, cfg.epochs,
                description_key=_description_key, what="SIRA++")
            cfg = model.config
            say(f"resuming from {ckpt_file} at epoch {start_epoch}/{cfg.epochs}")
        else:
            model = SiraPrior(cfg, num_latents=n, norm=data.norm, data=data.description)
        model.to(device).train()
        runner = run.wrap(_Objective(model))
        nets = list(model.deform.parameters()) + list(model.reference.parameters()) + list(model.render.parameters())
        if model.correct is not None:  # last: a model without one keeps exactly its earlier optimiser
            nets += list(model.correct.parameters())
        opt = torch.optim.Adam([{"params": nets, "lr": cfg.lr, "name": "networks"},
                                {"params": [model.z_sdf.weight, model.z_r.weight], "lr": cfg.lr_latent,
                                 "name": "latents"}])
        if opt_state is not None:
            opt.load_state_dict(opt_state)
        sampler, per_rank, iters = shard_plan(n, cfg.shapes_per_batch, run, cfg.seed)
        every = checkpoint_every or max(1, cfg.epochs // 10)
        last_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, int(stop_after_epoch))
        say(f"training SIRA++ model: {n} heads, {world} process(es) on {device}, {cfg.epochs} epochs x {iters} "
            f"iterations, {per_rank} heads/process/iteration, deformation {cfg.def_layers}x{cfg.def_hidden}, "
            f"reference {cfg.ref_layers}x{cfg.ref_hidden}, "
            f"correction {f'{cfg.corr_layers}x{cfg.corr_hidden}' if cfg.corr_hidden else 'none'}, "
            f"latents {cfg.latent_dim}+{cfg.app_latent_dim}")
        bar = progress_bar(run, progress, (cfg.epochs - start_epoch) * iters, "sira prior")
        t0 = time.perf_counter()

        def save_ckpt(next_epoch: int):
            if not is_main:
                return
            el = elapsed_before + time.perf_counter() - t0
            model.meta.update(epochs_done=next_epoch, elapsed_s=el)
            write_checkpoint(ckpt_file, {"format": SIRA_TRAIN_FORMAT, "model": model.state(),
                                         "optimizer": opt.state_dict(), "epoch": next_epoch, "history": history,
                                         "world_size": world, "elapsed_s": el})

        P = cfg.surface_points
        K = len(LANDMARK_NAMES)
        c0 = P + cfg.volume_points
        c1 = c0 + cfg.color_points
        o1 = c1 + n_outside(cfg)

        def begin_epoch(epoch: int) -> dict:
            lr_n, lr_l = cfg.lr_at(epoch)
            opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr_n, lr_l
            return {"lr": lr_n, "pe": model.set_epoch(epoch)}

        def step(epoch: int, batch) -> dict:
            pts, nrm, cdir, crgb = sample_batch(data, batch, cfg, epoch, device)
            idx = torch.as_tensor(batch, dtype=torch.long, device=device)
            sdf, grad, x_ref, delta, rgb, z, zr, corr = runner(idx, pts, c0, c1, cdir)
            terms = sira_losses(cfg, sdf[:, :P], grad[:, P:c0], delta, x_ref[:, -K:], rgb, crgb, z, zr,
                                grad_surf=grad[:, :P], normals=nrm, sdf_outside=sdf[:, c1:o1], correction=corr)
            opt.zero_grad(set_to_none=False)
            terms["loss"].backward()
            opt.step()
            return terms

        epoch_loop(run, sampler, per_rank, iters, start_epoch, last_epoch, every, LOSS_KEYS, history, begin_epoch,
                   step, lambda m, lg: dict(loss=f"{m['loss']:.4g}", surf=f"{m['surface']:.3g}",
                                            rgb=f"{m['color']:.3g}", pe=f"{lg['pe']:.2f}"), save_ckpt, bar)
        done = max(last_epoch, start_epoch)
        elapsed = elapsed_before + time.perf_counter() - t0
        if use_ddp:
            model.meta["ddp_max_param_diff"] = check_ddp_agreement(model, world, device)
        model.meta.update(final_meta(done, elapsed, world, device, history))
        if extra_meta:
            model.meta.update(extra_meta)
        if done >= cfg.epochs and is_main:
            save_ckpt(done)
            model.save(out, half=half)
            say(f"wrote {out} ({done} epochs, {elapsed:.0f} s, final loss {history[-1]['loss']:.4g})"
                if history else f"wrote {out}")
        elif is_main:
            say(f"stopped after epoch {done}/{cfg.epochs}; checkpoint {ckpt_file} (continue with --resume)")
        if use_ddp:
            dist.barrier()
        return model.eval()
    finally:
        run.close()


def main_from_args(args, argv=None) -> int:
    """``headrecon-train-prior ... --model sira`` (called by :mod:`headrecon.priors.cli` with its parsed args)."""

    from .options import SIRA_OPTIONS, option_field
    from .model import sira_preset

    over = {}
    for name, key in (("epochs", "epochs"), ("batch_shapes", "shapes_per_batch"), ("lr", "lr"),
                      ("lr_latent", "lr_latent"), ("latent_dim", "latent_dim"), ("hidden", "ref_hidden"),
                      ("normal_weight", "normal_weight"), ("seed", "seed"), ("scan_points", "scan_points"),
                      *((option_field(f),) * 2 for f, _, _ in SIRA_OPTIONS)):  # same-named config fields
        v = getattr(args, name, None)
        if v is not None:
            over[key] = v
    if getattr(args, "points", None) is not None:
        over["surface_points"] = over["volume_points"] = over["color_points"] = args.points
    if getattr(args, "layers", None) is not None:
        over["ref_layers"] = args.layers
        over["ref_skip"] = (max(1, args.layers // 2),)
    rank = int(os.environ.get("RANK", "0"))
    progress = not args.no_progress and rank == 0
    from ..scans import closed_bottom_simulation, is_shape_source, parse_sources

    source = args.scans.lower()
    if source != "ict" and is_shape_source(source) and set(parse_sources(source)) - {"ict"}:
        # busts reach radius ~0.97 of the bust frame: the outside shell starts beyond them; larger images so
        # that the face keeps about as many appearance samples as in a head-only frame
        over.setdefault("outside_radius", (0.99, 1.3))
        over.setdefault("image_size", 96)
    cfg = sira_preset(args.preset, **over)  # errors go through headrecon.cli.run_command (the caller's)
    if not is_shape_source(source):
        raise ValueError("--model sira trains on simulated shapes only ('ict', 'composite', 'anny' or a mix such as "
                         "'composite+ict'): it needs "
                         "posed colour images and the six landmarks of every training head, which a scan folder "
                         "does not provide")
    n = 64 if args.shapes is None else int(args.shapes)
    sim = closed_bottom_simulation(getattr(args, "closed_bottom", None))
    data = sira_ict_data(n, cfg, progress=progress, simulation=sim) if source == "ict" else \
        sira_bust_data(source, n, cfg, progress=progress, simulation=sim)
    cmd = recorded_command(argv)
    train_sira(cfg, data, args.out, resume=args.resume, checkpoint_every=args.checkpoint_every,
               device=args.device, progress=progress, ddp=True if args.ddp else None,
               stop_after_epoch=args.stop_after_epoch, extra_meta={"command": cmd},
               half=bool(getattr(args, "half", False)))
    return 0
