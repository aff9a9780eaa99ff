#!/usr/bin/env bash
# The real CUDA build, as a user runs it, on a machine without a GPU: a separate venv with torch's default Linux
# wheel (2.13.0+cu130, CUDA 13.0, with its nvidia-* dependencies), then the README's install command with CUDA,
# then checks that the extension imports with its CUDA backend and that CUDA requests fail with clear errors.
#   bash tools/cuda_build_check.sh [VENV_DIR]        (default /tmp/headrecon-cuda-venv; several GB of downloads)
# The build happens in an export of the committed tree (HEAD), so the checkout's own (CPU) build is left alone.
# Runs in every CI run (.ci/run): measured 3 min 56 s from an empty venv on the 2-core VM (80 s of downloads,
# 5.0 GB venv), less when the venv is reused. Needs nvcc (CUDA 13) on PATH or CUDA_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/headrecon-cuda-venv}
PY=${PYTHON:-python3}
NVCC=$(command -v nvcc || true)
[ -n "$NVCC" ] || { echo "cuda_build_check: nvcc not found" >&2; exit 1; }
for h in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$NVCC")")")"; do
  if [ -n "$h" ] && [ -f "$h/include/cuda_runtime.h" ]; then export CUDA_HOME="$h"; break; fi
done
[ -f "${CUDA_HOME:-}/include/cuda_runtime.h" ] || { echo "cuda_build_check: CUDA toolkit headers not found (set CUDA_HOME)" >&2; exit 1; }
CERT=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
t0=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then $PY -m venv "$VENV"; fi
# --isolated: the registry's default torch wheel (+cu130), not a CPU wheel a local pip configuration may prefer
"$VENV/bin/python" -m pip install -q --isolated --cert "$CERT" torch==2.13.0 setuptools ninja
t1=$(date +%s)
SITE=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
export CPATH="$SITE/nvidia/cu13/include${CPATH:+:$CPATH}"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
git archive HEAD | tar -x -C "$BUILD"   # the committed tree
cd "$BUILD"
"$VENV/bin/python" -c 'import torch; assert torch.version.cuda, torch.__version__; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"} "$VENV/bin/python" -m pip install -q --isolated --cert "$CERT" \
  --no-build-isolation -e ".[test]"
t2=$(date +%s)
"$VENV/bin/python" - <<'PY'
import subprocess, sys
import headrecon, torch
info = headrecon.build_info()
print("build_info:", info)
assert info["cuda"] and info["cpu"] and info["error"] is None, info
from headrecon.recon.trainer import resolve_device
if not torch.cuda.is_available():
    try:
        resolve_device("cuda")
        raise SystemExit("--device cuda on a machine without a GPU did not raise")
    except ValueError as exc:
        print("clear error:", exc)
    r = subprocess.run([sys.executable, "-m", "headrecon.recon.cli", "--demo", "--device", "cuda", "--out",
                        "/tmp/hr-cuda-check-run"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    print("headrecon-reconstruct --device cuda:", r.stderr.strip().splitlines()[-1])
PY
# the CUDA tests skip without a GPU, and fail loudly when a GPU is required but absent
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_ops.py tests/test_tracer.py -k cuda -rs | tail -n 3
if ! "$VENV/bin/python" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  if HEADRECON_REQUIRE_CUDA=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_ops.py tests/test_tracer.py -k cuda >/dev/null 2>&1; then
    echo "cuda_build_check: HEADRECON_REQUIRE_CUDA=1 without a GPU did not fail" >&2; exit 1
  fi
  echo "HEADRECON_REQUIRE_CUDA=1 without a GPU: the CUDA tests fail (as they must)"
fi
echo "cuda_build_check: ok (torch download $((t1 - t0)) s, build $((t2 - t1)) s, venv $(du -sh "$VENV" | cut -f1))"
