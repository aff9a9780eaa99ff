#!/usr/bin/env bash
# The one command to run first on a machine with an NVIDIA GPU: build with CUDA, run the CUDA tests, benchmark the
# tracer on the GPU and reconstruct the demo head with every method; one JSON of results (tools/gpu_check.py).
#   bash tools/gpu_check.sh [OUT_DIR]          (default: $OUT, else the current folder; about 5-8 min on one GPU)
# Uses the python3 that holds a CUDA torch. Without network access, carry the pure-Python dependencies that
# machine lacks as wheels in .whl/ (prepared elsewhere with
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl trimesh==5.2.0 );
# they are installed into /tmp/site first. HEADRECON_GPU_CHECK_ITERATIONS shortens the reconstructions;
# HEADRECON_GPU_CHECK_ARGS passes more options to tools/gpu_check.py (e.g. "--methods idr sira").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-.}}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.__version__, torch.cuda.get_device_name(0))'
arch=$($PY -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.major}.{p.minor}")')
t0=$(date +%s)
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch} MAX_JOBS=${MAX_JOBS:-8} \
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tee "$OUT_DIR/gpu_check_build.log" | tail -n 5
echo "build: $(( $(date +%s) - t0 )) s"
$PY -c 'import headrecon; i = headrecon.build_info(); print(i); assert i["cuda"], i'
$PY tools/gpu_check.py --device cuda --out "$OUT_DIR/gpu_check.json" \
  ${HEADRECON_GPU_CHECK_ITERATIONS:+--iterations $HEADRECON_GPU_CHECK_ITERATIONS} ${HEADRECON_GPU_CHECK_ARGS:-}
