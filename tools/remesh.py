"""Mesh a finished run again at other marching-cubes settings, and score each mesh.

    python tools/remesh.py RUN_DIR SPEC [SPEC ...] [--scene SCENE] [--save DIR] [--out remesh.json] [--threads 1]

``SPEC`` is ``RES`` or ``RESrK``: a ``RES^3`` marching-cubes grid, refined ``K`` times (``ReconConfig.mesh_refine``:
every triangle split in four and every vertex moved onto the surface). The run's checkpoint is loaded (nothing is
trained), each mesh is extracted as the run's own ``mesh.ply`` was (the bounding ball, the largest component,
scene millimetres), its creases counted (folds: edges whose two faces meet nearly back to back) and, when the scene
has a ground truth, scored with the official H3DS protocol and the exact one (``face`` / ``head`` ``gt->pred``).
The official distances end at the prediction's vertices, so they read the vertex spacing as error
(docs/evaluation.md, "Mesh density"); the exact protocol's, to the surface, do not.
``--save DIR`` writes each mesh as ``DIR/mesh_SPEC.ply`` (without vertex colours). The scene is the one in the
run's ``run.json`` unless ``--scene`` names another copy of it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def spec(text: str):
    """``"160r1" -> (160, 1)``; argparse type (:func:`headrecon.render.mesh.parse_mesh_spec`)."""
    from headrecon.render.mesh import parse_mesh_spec

    try:
        return parse_mesh_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def remesh(run_dir, specs, scene_dir=None, save=None, log=print) -> list:
    """One row per spec: resolution, refine, vertices, seconds, the mesh's creases (the largest angle between the
    normals of an edge's two faces, the edges above 90 and above 150 degrees: folds) and (with a ground truth) the
    official and exact face / head ``gt->pred`` in mm."""
    import numpy as np

    from headrecon.eval import evaluate
    from headrecon.recon.pipeline import RunDirError, load_run

    try:
        trainer, _, scene = load_run(run_dir, scene_dir)
    except RunDirError as exc:
        raise SystemExit(str(exc)) from None
    rows = []
    for res, refine in specs:
        t0 = time.perf_counter()
        mesh = trainer.extract_mesh(resolution=res, refine=refine)
        row = {"spec": f"{res}r{refine}", "resolution": res, "refine": refine, "vertices": len(mesh.vertices),
               "mesh_seconds": round(time.perf_counter() - t0, 1)}
        crease = np.degrees(mesh.face_adjacency_angles)  # between the normals of the two faces of every edge
        row.update({"max_crease_deg": round(float(crease.max()), 1), "edges_over_90deg": int((crease > 90).sum()),
                    "folds_over_150deg": int((crease > 150).sum())})
        if scene.gt_mesh is not None:
            for name, kw in (("", {}), ("exact_", {"protocol": "exact"})):
                ev = evaluate(mesh, scene, **kw)
                row.update({name + k: round(float(ev[k]), 3) for k in ("face_gt2pred_mm", "head_gt2pred_mm")
                            if ev.get(k) is not None})
        if save:
            Path(save).mkdir(parents=True, exist_ok=True)
            mesh.export(Path(save) / f"mesh_{row['spec']}.ply")
        log(json.dumps(row))
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished run folder (config.json, checkpoint.pt)")
    ap.add_argument("specs", nargs="+", type=spec, metavar="SPEC", help="RES or RESrK, e.g. 160 160r1 512")
    ap.add_argument("--scene", type=Path, default=None, help="the run's scene (default: the one run.json names)")
    ap.add_argument("--save", type=Path, default=None, help="folder for the meshes (mesh_SPEC.ply)")
    ap.add_argument("--out", type=Path, default=None, help="JSON of the rows")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)
    import torch

    from headrecon.machine import write_result

    torch.set_num_threads(args.threads)
    rows = remesh(args.run, args.specs, args.scene, args.save)
    if args.out:
        write_result(args.out, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
