"""One reconstruction run from a scene folder to a run folder (what ``headrecon-reconstruct`` executes).

:func:`reconstruct` loads the scene, picks the views, checks the run folder (a folder that holds another run is
an error unless resuming), fits the method with :class:`headrecon.recon.trainer.Trainer` (checkpoints, resume),
then writes the results. Run folder layout::

    config.json           the ReconConfig used (presets resolved)
    run.json              scene path, chosen view indices, method facts (method_info), versions, machine
    checkpoint.pt         model + optimizer + RNG + sampler state (for --resume)
    history.json          loss history (one record per log_every iterations)
    loss_curve.png        the loss history, log scale
    mesh.ply              the reconstruction in the scene's millimetres (largest component), vertex colours from
                          the fitted rendering network (each vertex seen along its normal)
    renders_inputs.png    input photo | colour | shaded normals, for each input view (mesh.ply ray-cast, coloured
                          and shaded by the fitted networks at the hits)
    renders_novel.png     the same for novel yaws (with the held-out photo when the scene has that view)
    metrics.json          timings and, when the scene has a ground truth, the H3DS metrics (mm); a prior method's
                          also aligned by its landmarks (h3ds_landmarks)
    landmarks.json        a prior method's placed prior's six H3DS landmarks (scene mm; headrecon-eval
                          --pred-landmarks)
    cameras_refined.npz   with --refine-cameras: the training views' refined cameras (world_mat_i, scale_mat_i)
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ..data.errors import SceneError
from ..data.scene import parse_views
from ..machine import machine_info
from .config import ReconConfig, config_diff
from .trainer import CHECKPOINT_NAME, Trainer, count_parameters, resolve_device

__all__ = ["reconstruct", "RunDirError", "RunResult", "check_run_dir", "load_views", "load_run", "unit_mesh"]


class RunDirError(ValueError):
    """The run folder cannot be used (holds another run, nothing to resume, not a run folder)."""


@dataclass
class RunResult:
    run_dir: Path
    metrics: Dict[str, Any]
    mesh: Any
    trainer: Trainer


def load_views(scene_dir, views):
    """``(full_scene, train_scene)``; errors name the scene folder and say what is wrong."""
    from ..data import load_scene

    full = load_scene(scene_dir)
    spec = parse_views(views)
    try:
        train = full.subset(spec)
    except ValueError as exc:
        raise SceneError(scene_dir, f"cannot select views {views!r}: {exc}") from None
    if len(train) == 0:
        raise SceneError(scene_dir, f"views {views!r} select no view")
    if any(v.mask is None for v in train.views):
        from ..photos.masks import fill_missing_masks

        fill_missing_masks(train)  # the user's masks win; a view without one gets one from its photo
    return full, train


def unit_mesh(mesh, scene):
    """``mesh`` (the scene's frame, mm: the run's ``mesh.ply``) in the unit-sphere frame of the cameras and the
    networks, as ``write_results`` colours and renders it."""
    import numpy as np
    import trimesh

    Sinv = np.linalg.inv(np.asarray(scene.scale_mat, dtype=np.float64))
    return trimesh.Trimesh(np.asarray(mesh.vertices) @ Sinv[:3, :3].T + Sinv[:3, 3], np.asarray(mesh.faces),
                           process=False)


def load_run(run_dir, scene_dir=None, device="cpu"):
    """``(trainer, full_scene, train_scene)`` of a finished run folder, its model as its checkpoint left it
    (``scene_dir``: default the scene the run recorded). For tools that use a trained model again without
    training (``tools/remesh.py``, ``benches/bench_renders.py``)."""
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT_NAME
    for need in (run_dir / "config.json", run_dir / "run.json", ckpt):
        if not need.is_file():
            raise RunDirError(f"{need}: missing; {run_dir} is not a finished headrecon run folder")
    cfg = ReconConfig.load(run_dir / "config.json")
    if scene_dir is None:
        scene_dir = json.loads((run_dir / "run.json").read_text())["scene"]
    full, scene = load_views(scene_dir, cfg.views)
    trainer = Trainer(cfg, scene, device=torch.device(device), progress=False)
    trainer.load_checkpoint(ckpt)
    return trainer, full, scene


def check_run_dir(run_dir: Path, cfg: ReconConfig, resume: bool, explicit: Optional[Dict[str, Any]] = None,
                  scene_dir=None) -> ReconConfig:
    """Validate ``run_dir`` for a new run or a resumption; returns the config to use.

    New run: the folder must be absent or empty; a folder with ``config.json`` and a checkpoint raises
    :class:`RunDirError` (different config: the differences are listed; same config: use --resume). A run that
    stopped before its first checkpoint (a failed start, a kill) left nothing to keep: it is started again.
    Resume: the folder must hold ``config.json``; the stored config is used, and options given explicitly
    (``explicit``) must agree with it (``device`` and ``threads`` may change; the continuation is then exact only
    up to floating-point reduction order). Without a checkpoint the run starts from iteration 0.
    """
    run_dir = Path(run_dir)
    stored_path = run_dir / "config.json"
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a folder")
    ancestor = next(p for p in [run_dir, *run_dir.absolute().parents] if p.exists())
    if not ancestor.is_dir():
        raise RunDirError(f"{run_dir}: cannot be made, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RunDirError(f"{run_dir}: cannot be written (no write permission in {ancestor})")
    if not resume:
        if stored_path.is_file() and not (run_dir / CHECKPOINT_NAME).is_file():
            return cfg  # stopped before its first checkpoint: nothing to keep, start again
        if stored_path.is_file():
            try:
                stored = ReconConfig.load(stored_path)
                diff = config_diff(stored, cfg)
            except ValueError:
                diff = {"config.json": ("unreadable", "")}
            if diff:
                lines = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, a, b in
                                  ((k, v[0], v[1]) for k, v in sorted(diff.items())))
                raise RunDirError(f"{run_dir} holds another run (different config: {lines}); choose another --out "
                                  "or delete that folder")
            raise RunDirError(f"{run_dir} already holds a run with this config; pass --resume to continue it, or "
                              "choose another --out")
        if run_dir.is_dir() and any(p.name != ".lock" for p in run_dir.iterdir()):
            raise RunDirError(f"{run_dir} is not empty and holds no headrecon run (no config.json); choose an empty "
                              "or new folder for --out")
        return cfg
    if not stored_path.is_file():
        raise RunDirError(f"--resume: {run_dir} holds no run to resume (no config.json)")
    stored = ReconConfig.load(stored_path)
    if explicit:
        bad = {k: (getattr(stored, k), v) for k, v in explicit.items()
               if k not in ("device", "threads") and (list(v) if isinstance(v, tuple) else v) != stored.to_dict()[k]}
        if bad:
            lines = ", ".join(f"{k}: {a!r} stored vs {b!r} given" for k, (a, b) in sorted(bad.items()))
            raise RunDirError(f"--resume: options differ from the stored run in {run_dir} ({lines}); drop them to "
                              "continue the stored run exactly")
        for k in ("device", "threads"):
            if k in explicit:
                stored = stored.replace(**{k: explicit[k]})
    if scene_dir is not None and (run_dir / "run.json").is_file():
        info = json.loads((run_dir / "run.json").read_text())
        if info.get("scene") and Path(info["scene"]).resolve() != Path(scene_dir).resolve():
            raise RunDirError(f"--resume: {run_dir} is a run of scene {info['scene']}, not {scene_dir}")
    return stored


def reconstruct(scene_dir, cfg: ReconConfig, run_dir, resume: bool = False, explicit: Optional[dict] = None,
                stop_after: Optional[int] = None, progress: bool = True, log=print) -> RunResult:
    """Fit ``cfg.method`` to the views ``cfg.views`` of ``scene_dir`` and write the run folder ``run_dir``.

    ``stop_after``: stop (with a checkpoint) after this iteration, leaving the run resumable; the results are
    then written for the model at that iteration too but ``metrics.json`` says ``finished: false``.
    """
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    lock = _lock_run_dir(run_dir) if run_dir.is_dir() else None  # before judging a folder, see it is not in use
    try:
        cfg = check_run_dir(run_dir, cfg, resume, explicit, scene_dir)
        device = resolve_device(cfg.device)
        full, scene = load_views(scene_dir, cfg.views)
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    if lock is None:  # nothing is written for a failed start
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_run_dir(run_dir)
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(scene_dir, cfg, run_dir, full, scene, device, resume, stop_after, progress, log, t_start)
    finally:
        torch.set_num_threads(previous_threads)
        lock.close()


def _lock_run_dir(run_dir: Path):
    """An exclusive lock on ``run_dir/.lock`` held for the whole run (released by the OS even when the process is
    killed), so that a live run is never mistaken for a stopped one; RunDirError when another process holds it."""
    import fcntl

    f = open(run_dir / ".lock", "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise RunDirError(f"{run_dir}: another headrecon-reconstruct is running in this folder") from None
    return f


def _run(scene_dir, cfg, run_dir, full, scene, device, resume, stop_after, progress, log, t_start) -> RunResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    ckpt = run_dir / CHECKPOINT_NAME
    trainer = Trainer(cfg, scene, device=device, progress=progress)
    if resume and ckpt.is_file():
        trainer.load_checkpoint(ckpt)
        log(f"resuming {run_dir} at iteration {trainer.iteration}/{trainer.total_iterations}")
    elif resume:
        log(f"{run_dir} stopped before its first checkpoint: starting it from iteration 0")
    info = {"scene": str(Path(scene_dir).resolve()), "views": scene.indices, "n_views": len(scene),
            "training_pixels": len(trainer.bank), "foreground_pixels": trainer.bank.n_foreground,
            "image_sizes": trainer.bank.sizes, "total_iterations": trainer.total_iterations,
            "iterations_per_epoch": trainer.iters_per_epoch, "ss_shrink": trainer.sampler.shrink,
            "parameters": count_parameters(trainer.model),
            "method_info": trainer.method.info(), "machine": machine_info(device),
            "masks_estimated": scene.meta.get("masks_estimated"),
            "headrecon": __import__("headrecon").__version__}
    (run_dir / "run.json").write_text(json.dumps(info, indent=1) + "\n")
    frame = (info["method_info"] or {}).get("prior_frame") or {}
    if frame:
        log(f"prior placed from: {frame.get('source')}"
            + (f" (residual {frame['residual_mm_median']:.1f} mm)" if "residual_mm_median" in frame else "")
            + (f"; {frame['images_failed']}" if frame.get("images_failed") else ""))
    for name in frame.get("views_without_face", []):
        log(f"{name}: no face found; the view serves the colour and silhouette losses, not the prior's placement")
    if scene.meta.get("masks_estimated"):
        log(f"masks estimated from the photos for {len(scene.meta['masks_estimated'])} view(s) without one")
    shrink = " (fewer as selective sampling drops background)" if trainer.sampler.shrink and cfg.ss_fraction else ""
    log(f"{cfg.method} ({cfg.preset} preset) on {len(scene)} views {scene.indices} of {scene_dir}: "
        f"{trainer.total_iterations} iterations of {cfg.batch_rays} rays{shrink}, images {trainer.bank.sizes[0][1]}x"
        f"{trainer.bank.sizes[0][0]}, device {device}")
    summary = trainer.train(checkpoint_path=ckpt, stop_after=stop_after)
    trainer.save_history(run_dir / "history.json")
    metrics = write_results(trainer, full, scene, run_dir, log=log)
    mesh = metrics.pop("_mesh", None)
    metrics.update({"finished": trainer.finished, "iterations": trainer.iteration,
                    "train_seconds": summary["train_seconds"], "train_cpu_seconds": summary["train_cpu_seconds"],
                    "seconds_per_iteration": summary["seconds_per_iteration"],
                    "session_seconds": time.perf_counter() - t_start, "resumed": bool(resume),
                    "views": scene.indices, "device": str(device), "machine": info["machine"]})
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    return RunResult(run_dir=run_dir, metrics=metrics, mesh=mesh, trainer=trainer)


def write_results(trainer: Trainer, full, scene, run_dir: Path, log=print) -> Dict[str, Any]:
    """Mesh, renders, loss curve and metrics of the current model (returns the metrics dict)."""
    import trimesh

    from ..render.mesh import EmptyLevelSetError
    from .renders import (
        comparison_sheet,
        fit_camera,
        loss_curve,
        novel_cameras,
        render_view,
        to_uint8,
        vertex_colors,
    )

    cfg = trainer.cfg
    metrics: Dict[str, Any] = {}
    loss_curve(trainer.history, run_dir / "loss_curve.png")
    t0 = time.perf_counter()
    mesh = mesh_unit = None  # mesh_unit: the same mesh in the unit frame (cameras, networks)
    try:
        mesh = trainer.extract_mesh()
        mesh_unit = unit_mesh(mesh, scene)
        rgb = vertex_colors(trainer.model, mesh_unit.vertices)
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=to_uint8(rgb))
        mesh.export(run_dir / "mesh.ply")
    except EmptyLevelSetError as exc:
        log(f"warning: no surface to mesh ({exc})")
        metrics["mesh_error"] = str(exc)
    metrics["mesh_seconds"] = time.perf_counter() - t0
    if trainer.method.head_ray_share is not None:  # --head-rays: the share of pixels it drew from
        metrics["head_ray_share"] = trainer.method.head_ray_share
    landmarks = trainer.predicted_landmarks()  # a prior method's placed landmarks (scene mm), else None
    if landmarks is not None:
        (run_dir / "landmarks.json").write_text(json.dumps(landmarks, indent=1) + "\n")
    t0 = time.perf_counter()
    # the renders ray-cast the mesh just written, coloured by the networks; without one, traced through the SDF
    tracer = trainer.render_tracer() if mesh_unit is None else None
    if trainer.prior_pose is not None:
        metrics["prior_pose_correction"] = trainer.prior_pose_summary()
    if trainer.cameras is not None:
        metrics["camera_corrections"] = trainer.save_cameras(run_dir / "cameras_refined.npz")
    rows = []
    for view, cam in zip(scene.views, trainer.training_cameras()):
        c = fit_camera(cam, cfg.render_size)
        rgb, shade, _ = render_view(trainer.model, tracer, c, mesh=mesh_unit)
        rows.append((f"input view {view.index}", view.image, rgb, shade))
    comparison_sheet(rows, run_dir / "renders_inputs.png")
    rows = []
    for label, cam, ref in novel_cameras(full, scene, cfg.novel_yaws, cfg.render_size):
        rgb, shade, _ = render_view(trainer.model, tracer, cam, mesh=mesh_unit)
        rows.append((label, ref, rgb, shade))
    if rows:
        comparison_sheet(rows, run_dir / "renders_novel.png", header=("held-out photo", "colour", "normals"))
    metrics["render_seconds"] = time.perf_counter() - t0
    if cfg.evaluate and scene.gt_mesh is not None and mesh is not None:
        from ..eval import evaluate, evaluate_with_own_landmarks, observed_vertices

        t0 = time.perf_counter()
        # the mesh as mesh.ply holds it (float32 vertices), so that evaluating that file repeats these figures
        scored = trimesh.Trimesh(mesh.vertices.astype("float32").astype("float64"), mesh.faces, process=False)
        seen = observed_vertices(scene.gt_mesh, full.cameras)  # observability: every camera of the scene
        res = evaluate(scored, scene, observed_from=seen)  # the official H3DS protocol
        metrics["h3ds"] = {k: v for k, v in res.items() if k != "transform"}
        # second opinions (protocol "exact"): a robust ICP with exact point-to-surface distances, and the same
        # distances without any alignment (the reconstruction is in the scene's frame: posed cameras)
        ex = evaluate(scored, scene, protocol="exact", observed_from=seen)
        metrics["exact"] = {k: v for k, v in ex.items() if k != "transform"}
        raw = evaluate(scored, scene, protocol="exact", align="none", observed_from=seen)
        metrics["scene_frame"] = {k: v for k, v in raw.items() if k.endswith("_mm") and v is not None}
        # the official protocol with the run's own landmarks (H3DS evaluate_scene's landmarks_pred): its coarse
        # Procrustes (with scale) first, for a prediction that is not where the ground truth is (one view: the
        # depth comes from the average head size)
        try:
            lm = evaluate_with_own_landmarks(scored, scene, landmarks, observed_from=seen)
        except ValueError as exc:  # the ground truth names a landmark the prior has not
            lm = {"error": str(exc)}
        if lm is not None:
            metrics["h3ds_landmarks"] = lm
        metrics["eval_seconds"] = time.perf_counter() - t0
        log("H3DS metrics (official protocol, mm): face gt->pred {face_gt2pred_mm:.2f}; head gt->pred "
            "{head_gt2pred_mm:.2f}, pred->gt {head_pred2gt_mm:.2f}".format(**res))
    metrics["_mesh"] = mesh
    return metrics
