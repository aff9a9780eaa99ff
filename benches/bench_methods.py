"""Method comparison benchmark: face / head error (mm), training time and convergence of reconstruction methods
and their variants (IDR, H3D-Net, SIRA++ and ablations such as H3D-Net's prior / schedule study) on scenes with
a ground truth.

Usage (the README's tables were produced with these commands)::

    # IDR vs H3D-Net vs SIRA++ at several view counts -> JSON (one row per scene x views x variant) + table
    python benches/bench_methods.py --scenes S/lps S/ict100000 --methods idr h3dnet sira --views 1 3 4 8 \
        --threads 1 --out results.json
    # H3D-Net ablation: labelled variants "label=method:field=value,field=value" (fields of ReconConfig)
    python benches/bench_methods.py --scenes S/lps --views 3 8 --eval-at 250 500 1000 --methods \
        a_idr=idr b_small_noschedule=h3dnet:prior=small.pt,prior_latent_fraction=0 \
        c_full_noschedule=h3dnet:prior_latent_fraction=0 d_full_schedule=h3dnet --out ablation.json
    # pytest smoke (tiny synthetic scene, no shared data): pytest benches/bench_methods.py

Each variant runs :class:`headrecon.recon.trainer.Trainer` with the ``fast`` preset plus its overrides (and the
common ``--iterations`` / ``--set`` overrides), seeded identically. ``--eval-at`` adds intermediate evaluations
(marching cubes at ``--mesh-res``, refined ``--mesh-refine`` times, then :func:`headrecon.eval.evaluate`; results
measured before ``--mesh-refine`` existed used plain meshes: ``--mesh-refine 0`` repeats them, and ``--also-mesh``
scores the final model at other settings too); their cost is *not* counted in the
training time, so ``curve`` gives error against training seconds (convergence). Errors are those of the official
H3DS protocol (the unprefixed keys); the final mesh is also evaluated with the ``exact`` protocol, in the scene
frame (``scene_*``: synthetic scenes share the ground truth's frame exactly) and after its robust ICP (``exact_*``). ``*_chamfer_mm`` is the mean of the two directions;
``gt2pred`` is the H3DS / SIRA++ direction, ``pred2gt`` H3D-Net's. Times: wall seconds of the training steps and
the process's CPU seconds (one torch thread per job with ``--threads 1``). ``final_losses``: each logged loss term
averaged over the last tenth of the run's log (what the fit reached on the photos).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

KEYS = ("face_gt2pred_mm", "face_pred2gt_mm", "head_gt2pred_mm", "head_pred2gt_mm", "face_chamfer_mm",
        "head_chamfer_mm", "face_gt2pred_observed_mm", "head_gt2pred_observed_mm", "hair_gt2pred_mm")


def machine() -> dict:
    """The machine of a benchmark: headrecon.machine.machine_info (CPU identity, torch's SIMD kernels, library
    versions, ``kind``, the load when it started, the GPU when there is one) and the host's name."""
    from headrecon.machine import machine_info

    return {**machine_info(torch.device("cuda") if torch.cuda.is_available() else None), "host": platform.node()}


def _value(text: str):
    """A command-line override value: int, float, bool, comma-free string (tuples are not needed here)."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _string_fields() -> set:
    import dataclasses

    from headrecon.recon.config import ReconConfig

    return {f.name for f in dataclasses.fields(ReconConfig) if isinstance(f.default, str)}


def parse_variant(spec: str) -> tuple[str, str, dict]:
    """``label=method:field=value,...`` | ``method:field=value,...`` | ``method`` -> (label, method, overrides)."""
    label, _, rest = spec.partition("=") if "=" in spec.split(":", 1)[0] else (None, "", spec)
    method, _, opts = rest.partition(":")
    over = {}
    for item in filter(None, opts.split(",")):
        k, eq, v = item.partition("=")
        if not eq:
            raise ValueError(f"variant {spec!r}: option {item!r} is not field=value")
        key = k.strip().replace("-", "_")
        # "none" is a value of string fields (e.g. detail=none), None everywhere else
        over[key] = v.strip() if key in _string_fields() and v.strip().lower() == "none" else _value(v.strip())
    if not method:
        raise ValueError(f"variant {spec!r} names no method")
    return label or method, method, over


def make_trainer(scene, method: str, views, overrides: dict, device="cpu"):
    from headrecon.recon.config import make_config
    from headrecon.recon.trainer import Trainer

    overrides = dict(overrides)
    preset = overrides.pop("preset", "fast")  # a variant may pick another preset: "label=idr:preset=instant"
    cfg = make_config(preset, method=method, views=str(views), device=device, **overrides)
    return Trainer(cfg, scene, device=device)


def _observed(scene, full):
    """GT vertices that any camera of the full scene sees (the ``*_observed`` metrics)."""
    from headrecon.eval import observed_vertices

    return observed_vertices(scene.gt_mesh, full.cameras)


def _metrics(mesh, scene, seen, icp: bool, landmarks=None) -> dict:
    """The official H3DS figures (unprefixed); with ``icp`` (the final mesh) also the ``exact`` protocol's in the
    scene frame (``scene_*``) and after its robust ICP (``exact_*``), and, for a prior method (``landmarks``: the
    placed prior's, ``Trainer.predicted_landmarks``), the official figures with them as the prediction's
    landmarks (``lm_*``)."""
    from headrecon.eval import evaluate, evaluate_with_own_landmarks

    try:
        res = {k: v for k, v in evaluate(mesh, scene, observed_from=seen).items() if k in KEYS}
        res["protocol"] = "h3ds"
    except ValueError:  # no face sphere (no landmarks): the official protocol cannot run; scene frame, exact
        r0 = evaluate(mesh, scene, protocol="exact", align="none", observed_from=seen)
        res = {k: v for k, v in r0.items() if k in KEYS}
        res["protocol"] = "exact"
    if icp:
        r1 = evaluate(mesh, scene, protocol="exact", align="none", observed_from=seen)
        res.update({"scene_" + k: r1.get(k) for k in KEYS})
        r2 = evaluate(mesh, scene, protocol="exact", observed_from=seen)
        res.update({"exact_" + k: r2.get(k) for k in KEYS})
        res["exact_icp_accepted"] = bool(r2["alignment_details"].get("accepted"))
        r3 = evaluate_with_own_landmarks(mesh, scene, landmarks, observed_from=seen) if res["protocol"] == "h3ds" \
            else None
        if r3 is not None:
            res.update({"lm_" + k: r3.get(k) for k in KEYS})
    return {k: (round(float(v), 3) if isinstance(v, float) else v) for k, v in res.items()}


def _mesh_spec(text: str) -> str:
    """argparse type of ``--also-mesh``: "RES" or "RESrK" (:func:`headrecon.render.mesh.parse_mesh_spec`)."""
    from headrecon.render.mesh import parse_mesh_spec

    try:
        parse_mesh_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _also_mesh(tr, spec: str, scene, seen) -> dict:
    """The official figures of the final model's mesh extracted at ``spec`` ("RES" or "RESrK": marching-cubes
    resolution, refinements), with its vertex count and extraction seconds."""
    from headrecon.render.mesh import parse_mesh_spec

    res, refine = parse_mesh_spec(spec)
    t0 = time.perf_counter()
    try:
        mesh = tr.extract_mesh(resolution=res, refine=refine)
    except Exception as exc:  # empty level set, ...
        return {"error": f"{type(exc).__name__}: {exc}"}
    seconds = round(time.perf_counter() - t0, 1)
    return {**_metrics(mesh, scene, seen, icp=False), "vertices": len(mesh.vertices), "mesh_seconds": seconds}


def final_losses(history, share: float = 0.1) -> dict:
    """The mean of each logged loss term over the last ``share`` of the trainer's log entries (at least one): what
    the fit reached on the photos, to set beside its accuracy."""
    tail = history[-max(1, int(len(history) * share)):]
    keys = sorted({k for h in tail for k in h if k.endswith("loss")})
    return {k: round(float(np.mean([h[k] for h in tail if k in h])), 6) for k in keys}


def run_variant(scene_dir, seen, scene, views, label, method, over, args) -> dict:
    """Train one variant, evaluating at ``args.eval_at`` and at the end; returns the result row."""
    torch.manual_seed(0)
    over = {"mesh_resolution": args.mesh_res, "mesh_refine": args.mesh_refine, **dict(args.common), **over}
    if args.iterations:
        over.setdefault("iterations", args.iterations)
    tr = make_trainer(scene, method, views, over)
    total = tr.total_iterations
    stops = sorted({int(i) for i in (args.eval_at or []) if 0 < int(i) < total} | {total})
    curve, res = [], {}
    for stop in stops:
        tr.train(stop_after=stop)
        try:
            mesh = tr.extract_mesh()
            res = _metrics(mesh, scene, seen, icp=stop == total, landmarks=tr.predicted_landmarks())
        except Exception as exc:  # empty level set, ...: report and keep going
            mesh, res = None, {"error": f"{type(exc).__name__}: {exc}"}
        curve.append({"iteration": tr.iteration, "train_seconds": round(tr.elapsed, 1),
                      "cpu_seconds": round(tr.cpu_elapsed, 1), **{k: res.get(k) for k in KEYS}})
        print(f"  {label} it {tr.iteration}: " + " ".join(f"{k.replace('_mm', '')} {res.get(k)}" for k in KEYS[:4])
              + f" ({tr.elapsed:.0f} s)", flush=True)
    also = {spec: _also_mesh(tr, spec, scene, seen) for spec in (args.also_mesh or [])}
    if args.save_meshes and mesh is not None:
        Path(args.save_meshes).mkdir(parents=True, exist_ok=True)
        mesh.export(Path(args.save_meshes) / f"{Path(scene_dir).name}_v{views}_{label}.ply")
        landmarks = tr.predicted_landmarks()
        if landmarks is not None:  # headrecon-eval MESH SCENE --pred-landmarks this file
            (Path(args.save_meshes) / f"{Path(scene_dir).name}_v{views}_{label}.landmarks.json").write_text(
                json.dumps(landmarks, indent=1) + "\n")
    return {"scene": Path(scene_dir).name, "views": views, "label": label, "method": method,
            "overrides": {k: v for k, v in over.items() if k not in ("mesh_resolution", "mesh_refine")},
            "iterations": tr.iteration,
            "train_seconds": round(tr.elapsed, 1), "cpu_seconds": round(tr.cpu_elapsed, 1),
            "phases": [p.name for p in tr.phases], **res, "curve": curve, "final_losses": final_losses(tr.history),
            **({"also_mesh": also} if also else {}),
            **({"prior_pose_correction": tr.prior_pose_summary()} if getattr(tr, "prior_pose", None) is not None
               else {})}


def compare(args) -> list:
    from headrecon.recon.pipeline import load_views

    variants = [parse_variant(s) for s in args.methods]
    rows, out = [], Path(args.out) if args.out else None
    info = {"machine": machine(), "args": {k: v for k, v in vars(args).items() if k != "common"},
            "command": " ".join(sys.argv)}
    for scene_dir in args.scenes:
        for v in args.views:
            full, scene = load_views(scene_dir, str(v))
            seen = _observed(scene, full)
            for label, method, over in variants:
                row = run_variant(scene_dir, seen, scene, v, label, method, over, args)
                rows.append(row)
                print(json.dumps({k: x for k, x in row.items() if k != "curve"}), flush=True)
                if out:
                    out.write_text(json.dumps({**info, "rows": rows}, indent=1))
    print_table(rows)
    return rows


def print_table(rows) -> None:
    print(f"{'scene':<16}{'views':>5} {'variant':<22}" + "".join(f"{h:>9}" for h in
          ("face g2p", "face p2g", "head g2p", "head p2g", "time s")))
    for r in rows:
        f = lambda k: f"{r[k]:9.2f}" if isinstance(r.get(k), (int, float)) else f"{'-':>9}"
        print(f"{r['scene']:<16}{r['views']:>5} {r['label']:<22}" + "".join(f(k) for k in KEYS[:4])
              + f"{r['train_seconds']:9.0f}")


def rescore(path, meshes) -> None:
    """Re-evaluate the saved final meshes (``--save-meshes`` folder) of a result file with the current
    :func:`_metrics` (e.g. the official protocol, or metrics added after the run) and rewrite the file; training
    figures are kept (the curve's intermediate points keep the protocol they were measured with)."""
    import trimesh

    from headrecon.recon.pipeline import load_views

    data = json.loads(Path(path).read_text())
    scenes = {Path(p).name: p for p in data["args"]["scenes"]}
    for r in data["rows"]:
        f = Path(meshes) / f"{r['scene']}_v{r['views']}_{r['label']}.ply"
        if not f.is_file():
            print(f"no mesh {f}: row kept as is")
            continue
        full, scene = load_views(scenes[r["scene"]], str(r["views"]))
        r.update(_metrics(trimesh.load(f, process=False), scene, _observed(scene, full), icp=True))
        r["curve"][-1].update({k: r.get(k) for k in KEYS})
    Path(path).write_text(json.dumps(data, indent=1))


def report(paths, metrics=("face_gt2pred_mm", "head_gt2pred_mm", "face_gt2pred_observed_mm",
                           "head_gt2pred_observed_mm", "face_pred2gt_mm", "head_pred2gt_mm"),
           baseline=None) -> str:
    """Markdown tables from result JSON files: final errors and times, then the convergence curves (error at each
    evaluation, with its training seconds) and, when ``baseline`` names a variant, the first evaluation at which
    each variant is at least as good as the baseline's *final* face and head error (``gt2pred``), with its training
    seconds as a fraction of the baseline's whole run. ``baseline``: one label, or several (a row is then compared
    with the baseline of its own method, e.g. ``idr_fast sira_fast`` for ``idr_instant`` and ``sira_instant``)."""
    rows = [r for p in paths for r in json.loads(Path(p).read_text())["rows"]]
    if any(isinstance(r.get("hair_gt2pred_mm"), (int, float)) for r in rows):  # scenes with regions/hair.txt
        metrics = tuple(metrics[:2]) + ("hair_gt2pred_mm",) + tuple(metrics[2:])
    short = {"hair_gt2pred_mm": "hair gt→pred", "face_gt2pred_mm": "face gt→pred", "head_gt2pred_mm": "head gt→pred", "face_pred2gt_mm": "face pred→gt",
             "head_pred2gt_mm": "head pred→gt", "face_gt2pred_observed_mm": "face observed",
             "head_gt2pred_observed_mm": "head observed"}
    fmt = lambda x: f"{x:.2f}" if isinstance(x, (int, float)) else "–"
    out = ["| scene | views | variant | " + " | ".join(short[m] for m in metrics) + " | train s | CPU s |",
           "|---|---|---|" + "---|" * (len(metrics) + 2)]
    for r in rows:
        out.append(f"| {r['scene']} | {r['views']} | {r['label']} | " + " | ".join(fmt(r.get(m)) for m in metrics)
                   + f" | {r['train_seconds']:.0f} | {r['cpu_seconds']:.0f} |")
    if any(len(r.get("curve", [])) > 1 for r in rows):
        out += ["", "| scene | views | variant | face / head gt→pred (mm) at iteration (train s) ... |"
                + (" first at least as good as the baseline's final face & head |" if baseline else ""),
                "|---|---|---|---|" + ("---|" if baseline else "")]
        for r in rows:
            cells = [f"{c['iteration']} ({c['train_seconds']:.0f} s): {fmt(c.get('face_gt2pred_mm'))} / "
                     f"{fmt(c.get('head_gt2pred_mm'))}" for c in r.get("curve", [])]
            line = f"| {r['scene']} | {r['views']} | {r['label']} | " + "; ".join(cells) + " |"
            if baseline:
                labels = [baseline] if isinstance(baseline, str) else list(baseline)
                same = lambda b: b["scene"] == r["scene"] and b["views"] == r["views"]
                cands = [b for b in rows if same(b) and b["label"] in labels]
                base = next((b for b in cands if b["method"] == r["method"]), cands[0] if cands else None)
                hit = None
                finite = lambda x: isinstance(x, (int, float)) and math.isfinite(x)
                keys = [k for k in ("face_gt2pred_mm", "head_gt2pred_mm") if base is not None and finite(base.get(k))]
                if keys:  # NaN metrics (no face region in the scene) are left out of the comparison
                    hit = next((c for c in r.get("curve", []) if all(
                        finite(c.get(k)) and c[k] <= base[k] for k in keys)), None)
                frac = (f" ({hit['train_seconds'] / base['train_seconds']:.2f}x)"
                        if hit and base.get("train_seconds") else "")
                line += (f" it {hit['iteration']}, {hit['train_seconds']:.0f} s{frac} |" if hit else " not reached |")
            out.append(line)
    return "\n".join(out)


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--scenes", nargs="+", help="scene folders with a ground-truth mesh")
    ap.add_argument("--report", nargs="+", metavar="JSON", help="print markdown tables of earlier results and exit")
    ap.add_argument("--baseline", nargs="+", default=None,
                    help="--report: variant label(s) whose final errors are the bar (several: each row against "
                         "the one of its own method)")
    ap.add_argument("--rescore", nargs=2, metavar=("JSON", "MESH_DIR"),
                    help="re-evaluate the saved final meshes of a result file (current metrics) and exit")
    ap.add_argument("--methods", nargs="+", default=["idr", "h3dnet", "sira"],
                    help="variants: method | label=method | label=method:field=value,field=value")
    ap.add_argument("--views", nargs="+", type=int, default=[3])
    ap.add_argument("--iterations", type=int, default=None, help="override the fast preset's 1500 iterations")
    ap.add_argument("--eval-at", nargs="*", type=int, default=[], help="intermediate evaluation iterations")
    ap.add_argument("--mesh-res", type=int, default=128, help="marching-cubes resolution of every evaluation")
    ap.add_argument("--mesh-refine", type=int, default=1,
                    help="refinements of every evaluation's mesh (ReconConfig.mesh_refine: subdivided and moved onto "
                         "the surface)")
    ap.add_argument("--also-mesh", nargs="*", default=[], metavar="RES[rK]", type=_mesh_spec,
                    help="also score the final model's mesh extracted at these settings (e.g. 128r0 160r1 384r0): "
                         "official face / head per setting in the row's also_mesh, the same trained model")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="overrides applied to every variant (before the variant's own)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", default=None, help="JSON results (rewritten after every row)")
    ap.add_argument("--save-meshes", default=None, help="folder for the final meshes (scene frame, mm)")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.rescore:
        rescore(*args.rescore)
        return 0
    if args.report:
        print(report(args.report, baseline=args.baseline))
        return 0
    if not args.scenes:
        ap.error("--scenes is required (or --report)")
    args.common = parse_variant("x:" + ",".join(args.set))[2] if args.set else {}
    if args.threads:
        torch.set_num_threads(args.threads)
    compare(args)
    return 0


# ---------------------------------------------------------------------------------------------- pytest smoke
def test_parse_variant():
    assert parse_variant("idr") == ("idr", "idr", {})
    assert parse_variant("b=h3dnet:prior=/x/p.pt,prior_latent_fraction=0") == (
        "b", "h3dnet", {"prior": "/x/p.pt", "prior_latent_fraction": 0})
    assert parse_variant("sira:sira_accel=false")[2] == {"sira_accel": False}


def test_compare_smoke(tmp_path):
    """Two IDR variants for a few iterations on a tiny synthetic ellipsoid: rows, curves and the JSON."""
    import numpy as np
    import trimesh

    from headrecon.data.synthetic import make_scene

    torch.set_num_threads(1)
    m = trimesh.creation.icosphere(subdivisions=3)
    m.vertices = m.vertices * np.array([70.0, 90.0, 80.0])
    make_scene(m, tmp_path / "s", views=4, size=40, progress=False)
    out = tmp_path / "r.json"
    args = build_parser().parse_args([
        "--scenes", str(tmp_path / "s"), "--views", "3", "--iterations", "6", "--eval-at", "3", "--mesh-res", "32",
        "--methods", "idr", "slow=idr:lr=1e-5", "--set", "image_size=32", "batch_rays=128", "--out", str(out),
        "--also-mesh", "24", "24r1"])
    args.common = parse_variant("x:" + ",".join(args.set))[2]
    rows = compare(args)
    assert [r["label"] for r in rows] == ["idr", "slow"] and all(r["iterations"] == 6 for r in rows)
    assert [c["iteration"] for c in rows[0]["curve"]] == [3, 6]
    also = rows[0]["also_mesh"]  # the same model meshed twice more: four times the vertices once refined
    assert also["24r1"]["vertices"] > 3 * also["24"]["vertices"] > 0 and also["24"]["head_gt2pred_mm"] > 0
    assert "mesh_refine" not in rows[0]["overrides"] and json.loads(out.read_text())["args"]["mesh_refine"] == 1
    try:
        build_parser().parse_args(["--also-mesh", "160x"])
        raise AssertionError("--also-mesh 160x accepted")
    except SystemExit:
        pass
    assert rows[1]["overrides"]["lr"] == 1e-5 and rows[1]["overrides"]["batch_rays"] == 128
    assert {"rgb_loss", "mask_loss", "loss"} <= set(rows[0]["final_losses"]) and rows[0]["final_losses"]["loss"] > 0
    assert json.loads(out.read_text())["rows"][0]["curve"][1]["train_seconds"] >= rows[0]["curve"][0]["train_seconds"]
    lines = [ln for ln in report([out], baseline="idr").splitlines() if ln.startswith("| s | 3 | idr |")]
    assert len(lines) == 2 and " it " in lines[1]  # final table + curve; the baseline reaches its own final
    assert re.search(r"s \(\d+\.\d\dx\) \|$", lines[1])  # ... in a fraction of its own time (at most 1.00x)
    assert float(re.search(r"\((\d+\.\d\d)x\)", lines[1]).group(1)) <= 1.0
    assert report([out], baseline=["slow", "idr"]).count(" it ") >= 1  # several baselines: each row's own method


if __name__ == "__main__":
    sys.exit(main())
