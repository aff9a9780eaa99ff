"""Build the shipped demo scene ``headrecon/assets/demo_lps/`` (``headrecon-reconstruct --demo``).

Three 256 px renders (yaw 0 deg and +-45 deg, the H3DS 3-view set) of the Lee Perry-Smith head scan (CC BY 3.0,
``../shared/data/scans/lee_perry_smith``) with their masks and cameras, made by ``headrecon-make-scene --lps``
(studio lights, 2x2 supersampling), plus the scan itself as the ground truth (``full_head.obj`` in mm, written
with 0.01 mm precision to keep the scene small; every vertex kept so that the nearest-vertex H3DS metrics
are the same as on the full-resolution scene; the outer surface, as `headrecon-make-scene --lps` keeps it),
its six landmarks and face region. About 0.5 MB.

Run from the repository root: ``PYTHONPATH=. python tools/make_demo_scene.py`` (a few seconds).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "headrecon" / "assets" / "demo_lps"

NOTE = """# Demo scene: three renders of the Lee Perry-Smith head scan

Used by `headrecon-reconstruct --demo`. Made by `tools/make_demo_scene.py` from the shared copy of the scan:
`headrecon-make-scene --lps --views=0,-45,45 --size 256 --ssaa 2` (yaw 0 deg and +-45 deg, studio lights), then the
ground truth rewritten with 0.01 mm precision. Files: `image/` and `mask/` (PNG), `cameras.npz` (IDR layout),
`full_head.obj` (the scan, mm, ground truth for the printed errors only), `landmarks.txt`, `regions/`,
`scene_info.json`.

## Licence and attribution

The images and the mesh are derived from **"Infinite, 3D Head Scan" by Lee Perry-Smith**, licensed under the
Creative Commons Attribution 3.0 Unported licence (https://creativecommons.org/licenses/by/3.0/), based on a work
at www.triplegangers.com (permissions beyond the licence: http://www.ir-ltd.net/). Changes: converted to
millimetres (48 mm per unit, estimated), re-rendered from three viewpoints with headrecon's ray-casting renderer,
mesh coordinates rounded to 0.01 mm. `LICENSE.txt` beside this note is the scan's own licence note.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    from headrecon import shared_dir
    from headrecon.data.make_scene import main as make_scene

    lps = (shared_dir() or Path("../shared")) / "data" / "scans" / "lee_perry_smith"
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp) / "scene"
        rc = make_scene(["--lps", "--views=0,-45,45", "--size", "256", "--ssaa", "2", "--out", str(scene), "--quiet"])
        if rc:
            return rc
        lines = []
        for line in (scene / "full_head.obj").read_text().splitlines():
            if line.startswith("v "):
                x, y, z = (float(t) for t in line.split()[1:4])
                line = f"v {x:.2f} {y:.2f} {z:.2f}"
            elif line.startswith("#"):
                continue
            lines.append(line)
        (scene / "full_head.obj").write_text("\n".join(lines) + "\n")
        (scene / "README.md").write_text(NOTE)
        (scene / "LICENSE.txt").write_bytes((lps / "LICENSE.txt").read_bytes())
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(scene, args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
