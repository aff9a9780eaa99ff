"""Build headrecon's CUDA kernels (csrc/**/*.cu, unchanged) into a host shared library with ROCm's HIP-CPU, so
that tests can execute every kernel without a GPU (tests/test_cuda_emulated.py).

    python tools/hipcpu/build.py OUT.so [--max-blocks N] [--hip-cpu DIR]

Each ``.cu`` is copied, its ``kernel<T><<<grid, block, shmem, stream>>>(args)`` launches rewritten to
``hipLaunchKernelGGL(kernel<T>, dim3(grid), dim3(block), shmem, stream, args)`` (the build fails if any ``<<<`` is
left), and compiled with g++ (C++17) against the shim ``tools/hipcpu/cuda_runtime.h`` and HIP-CPU's headers
(``../shared/third_party/hip-cpu/include`` by default; needs TBB: ``apt-get install -y libtbb-dev``), together
with ``entry.cpp``'s C entry points. ``--max-blocks`` caps ``hr_blocks`` so that the grid-stride loops run several
rounds. Like every emulator HIP-CPU runs threads in an order of its own: it cannot show a data race, but it does
show wrong indexing, launch bounds, grid-stride loops and missing writes.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAUNCH = re.compile(r"([A-Za-z_]\w*(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses / angle-free brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def rewrite_launches(src: str, name: str = "source") -> str:
    """``k<T><<<g, b, s, st>>>(`` -> ``hipLaunchKernelGGL(k<T>, dim3(g), dim3(b), s, st, ``."""
    def rep(m):
        cfg = _split_top(m.group(2))
        if not 2 <= len(cfg) <= 4:
            raise ValueError(f"{name}: cannot read the launch configuration <<<{m.group(2)}>>>")
        cfg += ["0", "0"][: 4 - len(cfg)]
        return f"hipLaunchKernelGGL({m.group(1)}, dim3({cfg[0]}), dim3({cfg[1]}), {cfg[2]}, {cfg[3]}, "

    out = LAUNCH.sub(rep, src)
    if "<<<" in out:
        raise ValueError(f"{name}: a kernel launch was left unrewritten")
    return out


def build(out: Path, max_blocks: int | None = None, hip_cpu: Path | None = None, cxx: str = "g++") -> Path:
    hip_cpu = Path(hip_cpu) if hip_cpu else REPO.parent / "shared" / "third_party" / "hip-cpu"
    if not (hip_cpu / "include" / "hip" / "hip_runtime.h").is_file():
        raise FileNotFoundError(f"{hip_cpu}: HIP-CPU not found (include/hip/hip_runtime.h)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(REPO / "csrc", tmp / "csrc")
        sources = [HERE / "entry.cpp"]
        n = 0
        for cu in sorted((tmp / "csrc").rglob("*.cu")):
            text = cu.read_text()
            n += text.count("<<<")
            dst = cu.with_suffix(".hip.cpp")
            dst.write_text(rewrite_launches(text, str(cu.relative_to(tmp))))
            sources.append(dst)
        if n == 0:
            raise ValueError("no kernel launch found in csrc/**/*.cu")
        cmd = [cxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-pthread", f"-I{HERE}", f"-I{hip_cpu / 'include'}",
               f"-I{tmp / 'csrc'}", *(f"-DHR_MAX_BLOCKS={int(max_blocks)}" for _ in [0] if max_blocks),
               *map(str, sources), "-o", str(out), "-ltbb"]
        subprocess.run(cmd, check=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-blocks", type=int, default=None)
    ap.add_argument("--hip-cpu", type=Path, default=None)
    args = ap.parse_args(argv)
    build(args.out, args.max_blocks, args.hip_cpu)
    print(f"built {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
