"""Auto-decoder inference: fit only the latent code of a prior to a raw scan, and measure the fit in mm.

This is the sanity check of a trained prior (and the first phase of H3D-Net's reconstruction, with a scan
instead of images): keep the decoder fixed, start from the mean latent, and minimise

    mean |F(x_s, z)| + w_n mean ||grad F(x_s, z) - n_s|| + latent_reg ||z||^2

over the scan's points ``x_s`` (prior unit frame) with Adam. :func:`evaluate_fit` meshes the result (marching
cubes, in mm) and reports point-to-surface distances with :func:`headrecon.eval.metrics.point_to_surface`:

* ``gt2pred_mm`` — area-uniform samples of the ground-truth surface a scanner can see (ICT: everything but
  the neck cap) to the fitted surface, mean (and median); ``face_gt2pred_mm``: the part within 95 mm of the nose
  tip (the H3DS face region);
* ``pred2gt_mm`` — fitted-mesh vertices above the ground truth's neck cut to the ground-truth surface (this
  includes how the prior extrapolates the open neck just above the cut and the unseen back of the head);
  ``face_pred2gt_mm``: the fitted vertices within 95 mm of the nose tip;
* ``scan2pred_mm`` — the scan's own points to the fitted surface (the residual that was minimised).

No alignment is estimated: the prior frame is fixed, so errors include any placement error.

The same fit works for a SIRA++ model (its shape latent ``z_sdf``, the deformation and reference SDF fixed) and
for held-out busts (``source`` ``composite`` / ``anny``, :mod:`headrecon.data.bust`; every surface counts, the open
bottom cut excepted).

CLI: ``python -m headrecon.priors.h3dnet.fit [--prior PRIOR.pt | --sira SIRA.pt] [--source ict|composite|anny]
[--heldout 5 | --seeds 100000 100003] [--scan FILE --gt MESH]`` prints a table (fitted latent vs the mean latent)
and can write the meshes and a JSON report.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ...cli import add_debug_flag, run_command
from .model import ShapePrior, load_prior

__all__ = ["fit_latent", "evaluate_fit", "fit_heldout", "fit_heldout_ict", "main"]


def _sdf(prior, x, z):
    """The prior's SDF at ``x`` for latent ``z`` (H3D-Net decoder or SIRA++ deformation + reference)."""
    return prior.decoder.sdf(x, z) if hasattr(prior, "decoder") else prior.sdf(x, z)


def _mean_latent(prior):
    return prior.mean_latent() if hasattr(prior, "mean_latent") else prior.mean_latents()[0]


def _fixed_parameters(prior):
    return list(prior.decoder.parameters() if hasattr(prior, "decoder") else prior.parameters())


def _device(prior):
    return getattr(prior, "device", None) or next(prior.parameters()).device


def fit_latent(prior: ShapePrior, points, normals=None, iters: int = 300, lr: float = 1e-2,
               n_points: int = 4096, latent_reg: float | None = None, normal_weight: float | None = None,
               init=None, seed: int = 0, progress: bool = False):
    """Optimise a latent for the scan ``points`` [N, 3] (prior unit frame; ``normals`` [N, 3] optional).

    Only the latent changes (the decoder's ``requires_grad`` flags are restored afterwards). ``init``: starting
    latent (default the mean latent). Returns ``(z [latent_dim], history)`` with the loss per iteration.
    """
    dev = _device(prior)
    P = torch.as_tensor(np.asarray(points, dtype=np.float32), device=dev)
    if P.ndim != 2 or P.shape[1] != 3 or len(P) == 0:
        raise ValueError(f"points must be [N, 3] with N > 0, got {tuple(P.shape)}")
    N = None if normals is None else torch.as_tensor(np.asarray(normals, dtype=np.float32), device=dev)
    reg = prior.config.latent_reg if latent_reg is None else float(latent_reg)
    wn = prior.config.normal_weight if normal_weight is None else float(normal_weight)
    z = torch.nn.Parameter((_mean_latent(prior) if init is None else torch.as_tensor(init, device=dev)).clone().float())
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(iters * 0.6), int(iters * 0.85)], gamma=0.3)
    gen = torch.Generator().manual_seed(int(seed))
    fixed = _fixed_parameters(prior)
    flags = [p.requires_grad for p in fixed]
    for p in fixed:
        p.requires_grad_(False)
    history = []
    it = range(int(iters))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="latent fit", unit="it", leave=False)
    try:
        for _ in it:
            idx = torch.randint(len(P), (min(n_points, len(P)),), generator=gen).to(dev)
            x = P[idx]
            if wn > 0 and N is not None:
                x = x.requires_grad_(True)
                s = _sdf(prior, x, z)
                (g,) = torch.autograd.grad(s.sum(), x, create_graph=True)
                loss = s.abs().mean() + wn * (g - N[idx]).norm(dim=-1).mean()
            else:
                s = _sdf(prior, x, z)
                loss = s.abs().mean()
            loss = loss + reg * z.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            history.append(float(loss.detach()))
    finally:
        for p, f in zip(fixed, flags):
            p.requires_grad_(f)
    return z.detach(), history


def _visible_samples(gt_mesh, n: int, keep_faces=None, seed: int = 0):
    import trimesh

    mesh = gt_mesh
    if keep_faces is not None:
        mesh = trimesh.Trimesh(gt_mesh.vertices, np.asarray(gt_mesh.faces)[np.asarray(keep_faces, bool)], process=False)
    pts, _ = trimesh.sample.sample_surface(mesh, int(n), seed=seed)
    return np.asarray(pts)


def evaluate_fit(prior: ShapePrior, z, gt_mesh, scan_points_mm=None, keep_faces=None, nose_tip_mm=None,
                 resolution: int = 128, n_samples: int = 20000, face_radius_mm: float = 95.0, seed: int = 0):
    """Errors (mm) of the shape ``z`` against ``gt_mesh`` (mm, prior's ICT frame). Returns ``(metrics, mesh)``.

    ``keep_faces``: bool mask of the ground-truth faces to measure (default all); ``nose_tip_mm`` enables the
    face-region figure; ``scan_points_mm`` enables ``scan2pred_mm``.
    """
    from ...eval.metrics import point_to_surface

    mesh = prior.mesh(z, resolution=resolution, mm=True)
    gt_pts = _visible_samples(gt_mesh, n_samples, keep_faces, seed)
    d_gt, _ = point_to_surface(gt_pts, mesh)
    out = {"gt2pred_mm": float(d_gt.mean()), "gt2pred_median_mm": float(np.median(d_gt))}
    if nose_tip_mm is not None:
        face = np.linalg.norm(gt_pts - np.asarray(nose_tip_mm), axis=1) <= face_radius_mm
        out["face_gt2pred_mm"] = float(d_gt[face].mean()) if face.any() else float("nan")
    V = np.asarray(mesh.vertices)
    above = V[:, 1] >= gt_pts[:, 1].min()  # ignore how the prior closes the neck below the scan's cut
    d_pred, _ = point_to_surface(V[above], gt_mesh)
    out["pred2gt_mm"] = float(d_pred.mean()) if len(d_pred) else float("nan")
    if nose_tip_mm is not None:
        face = np.linalg.norm(V[above] - np.asarray(nose_tip_mm), axis=1) <= face_radius_mm
        out["face_pred2gt_mm"] = float(d_pred[face].mean()) if face.any() else float("nan")
    if scan_points_mm is not None:
        sp = np.asarray(scan_points_mm)
        if len(sp) > n_samples:
            sp = sp[np.random.default_rng(seed).choice(len(sp), n_samples, replace=False)]
        out["scan2pred_mm"] = float(point_to_surface(sp, mesh)[0].mean())
    return out, mesh


def fit_heldout(prior, seeds, source: str = "ict", iters: int = 300, resolution: int = 128, out_dir=None,
                progress: bool = True, log=print) -> dict:
    """Fit held-out shapes (seeds, e.g. :func:`headrecon.priors.heldout_seeds`) of ``source`` (``ict``,
    ``composite`` or ``anny``) as simulated raw scans, with an H3D-Net prior or a SIRA++ model.

    For every seed: simulate the raw scan (same simulation as training), fit the latent, evaluate it and the
    mean latent against the ground truth (ICT: without the neck cap; busts: everything). Returns
    ``{"rows": [...], "summary": {...}}``.
    """
    from ..scans import bust_raw_scan, ict_raw_scan, ict_visible_faces

    norm = prior.norm
    n_points = int(getattr(prior.config, "scan_points", 30000))
    rows = []
    mean_z = _mean_latent(prior)
    for seed in seeds:
        t0 = time.perf_counter()
        if source == "ict":
            scan, gt = ict_raw_scan(int(seed), n_points=n_points, return_mesh=True)
            keep = ict_visible_faces(gt)
        else:
            scan, gt = bust_raw_scan(source, int(seed), n_points=n_points, return_mesh=True)
            keep = None
        pu = norm.to_unit(scan.points)
        nu = scan.normals  # pure translation + scale: normals unchanged
        z, hist = fit_latent(prior, pu, nu, iters=iters, seed=int(seed), progress=progress)
        nose = gt.vertices[gt.metadata["landmarks"]["nose_tip"]]
        fit, mesh = evaluate_fit(prior, z, gt, scan.points, keep, nose, resolution=resolution)
        base, mesh0 = evaluate_fit(prior, mean_z, gt, scan.points, keep, nose, resolution=resolution)
        row = {"source": source, "seed": int(seed), "scan_points": len(scan),
               "kept_fraction": scan.meta["kept_fraction"], "fit": fit, "mean_latent": base,
               "final_loss": hist[-1], "seconds": time.perf_counter() - t0}
        rows.append(row)
        log(f"{source} {seed}: fitted gt2pred {fit['gt2pred_mm']:.2f} mm (face {fit['face_gt2pred_mm']:.2f}), "
            f"pred2gt {fit['pred2gt_mm']:.2f} (face {fit['face_pred2gt_mm']:.2f}), scan2pred "
            f"{fit['scan2pred_mm']:.2f} | mean latent gt2pred {base['gt2pred_mm']:.2f} (face "
            f"{base['face_gt2pred_mm']:.2f}) [{row['seconds']:.0f} s]")
        if out_dir is not None:
            d = Path(out_dir)
            d.mkdir(parents=True, exist_ok=True)
            mesh.export(str(d / f"{source}{seed}_fit.ply"))
            mesh0.export(str(d / f"{source}{seed}_mean.ply"))
            gt.export(str(d / f"{source}{seed}_gt.ply"))
    keys = ("gt2pred_mm", "face_gt2pred_mm", "pred2gt_mm", "face_pred2gt_mm", "scan2pred_mm")
    summary = {f"fit_{k}": float(np.mean([r["fit"][k] for r in rows])) for k in keys}
    summary.update({f"mean_latent_{k}": float(np.mean([r["mean_latent"][k] for r in rows])) for k in keys})
    summary.update(n=len(rows), iters=iters, resolution=resolution, source=source)
    return {"rows": rows, "summary": summary}


def fit_heldout_ict(prior: ShapePrior, seeds, iters: int = 300, resolution: int = 128, out_dir=None,
                    progress: bool = True, log=print) -> dict:
    """:func:`fit_heldout` on held-out ICT heads."""
    return fit_heldout(prior, seeds, "ict", iters=iters, resolution=resolution, out_dir=out_dir,
                       progress=progress, log=log)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m headrecon.priors.h3dnet.fit", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 allow_abbrev=False)  # "--out" is not "--out-dir": a typo must not write meshes
    ap.add_argument("--prior", default=None, help="prior checkpoint (default: the shipped prior)")
    ap.add_argument("--sira", default=None, help="fit this SIRA++ model's shape latent instead of an H3D-Net prior")
    ap.add_argument("--source", choices=["ict", "composite", "anny"], default="ict",
                    help="held-out shapes: ICT heads, ICT heads on Anny busts, or Anny busts")
    ap.add_argument("--heldout", type=int, default=3, help="fit the first N held-out seeds (100000, ...)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="explicit seeds instead of --heldout")
    ap.add_argument("--scan", default=None, help="fit a scan file (ply/obj...) in mm, ICT frame, instead")
    ap.add_argument("--gt", default=None, help="ground-truth mesh (mm) for --scan")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--resolution", type=int, default=128, help="marching-cubes grid")
    ap.add_argument("--out-dir", default=None, help="write fitted / mean / ground-truth meshes here")
    ap.add_argument("--json", default=None, help="write the report as JSON")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_debug_flag(ap)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_command("python -m headrecon.priors.h3dnet.fit", lambda: _run(args), argv)


def _run(args) -> int:
    if args.sira:
        from ..sira.model import load_sira

        prior = load_sira(args.sira)
    else:
        prior = load_prior(args.prior)
    if args.scan:
        from ...data.meshio import load_mesh
        from ..scans import load_scan_file

        scan = load_scan_file(args.scan, n_points=prior.config.scan_points)
        z, _ = fit_latent(prior, prior.norm.to_unit(scan.points), scan.normals, iters=args.iters, progress=True)
        if args.gt:
            res, mesh = evaluate_fit(prior, z, load_mesh(args.gt), scan.points, resolution=args.resolution)
        else:
            mesh = prior.mesh(z, resolution=args.resolution)
            from ...eval.metrics import point_to_surface

            res = {"scan2pred_mm": float(point_to_surface(scan.points, mesh)[0].mean())}
        print(json.dumps(res, indent=2))
        report = {"scan": str(args.scan), "metrics": res}
        if args.out_dir:
            Path(args.out_dir).mkdir(parents=True, exist_ok=True)
            mesh.export(str(Path(args.out_dir) / (Path(args.scan).stem + "_fit.ply")))
    else:
        from .. import heldout_seeds

        seeds = args.seeds if args.seeds else heldout_seeds(args.heldout)
        report = fit_heldout(prior, seeds, args.source, iters=args.iters, resolution=args.resolution,
                             out_dir=args.out_dir)
        s = report["summary"]
        print(f"mean over {s['n']} held-out {args.source} shapes: fitted latent gt2pred {s['fit_gt2pred_mm']:.2f} mm, face "
              f"{s['fit_face_gt2pred_mm']:.2f} mm, pred2gt {s['fit_pred2gt_mm']:.2f} mm (face "
              f"{s['fit_face_pred2gt_mm']:.2f} mm), scan2pred {s['fit_scan2pred_mm']:.2f} mm; mean latent "
              f"gt2pred {s['mean_latent_gt2pred_mm']:.2f} mm, face {s['mean_latent_face_gt2pred_mm']:.2f} mm")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
