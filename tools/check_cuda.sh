#!/usr/bin/env bash
# Compile-check the CUDA path on a machine without a GPU (run by .ci/run).
#  1. every csrc/**/*.cu is compiled with nvcc to object files for sm_80 and sm_90 (pure CUDA, no torch headers);
#  2. the torch glue (csrc/ext.cpp) is syntax-checked with HEADRECON_WITH_CUDA defined, against the installed
#     torch's headers. torch's CPU wheel lacks the generated c10/cuda/impl/cuda_cmake_macros.h, so a stub of that
#     one header is generated in a temporary folder.
# Usage: tools/check_cuda.sh [ARCHS]   (default "80 90"; NVCC, CXX and PYTHON may be overridden)
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-nvcc}
CXX=${CXX:-g++}
PYTHON=${PYTHON:-python3}
ARCHS=${1:-"80 90"}
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "check_cuda: nvcc not found; skipping the CUDA compile check" >&2
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gencode=()
for a in $ARCHS; do gencode+=(-gencode "arch=compute_${a},code=sm_${a}"); done
n=0
for f in $(find csrc -name '*.cu' | sort); do
  "$NVCC" -std=c++17 -O2 --expt-relaxed-constexpr --fmad=false -Icsrc "${gencode[@]}" -c "$f" -o "$tmp/$(basename "$f").o"
  echo "nvcc ok: $f (sm: $ARCHS)"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "check_cuda: no .cu files found" >&2; exit 1; }

cuda_inc=""
for h in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$(command -v "$NVCC")")")")"; do
  if [ -n "$h" ] && [ -f "$h/include/cuda_runtime_api.h" ]; then cuda_inc="$h/include"; break; fi
done
if [ -z "$cuda_inc" ]; then
  echo "check_cuda: cuda_runtime_api.h not found (set CUDA_HOME)" >&2
  exit 1
fi
mkdir -p "$tmp/stub/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$tmp/stub/c10/cuda/impl/cuda_cmake_macros.h"
incs=$("$PYTHON" - <<'PY'
import sysconfig
from torch.utils.cpp_extension import include_paths
print(" ".join("-I" + p for p in include_paths() + [sysconfig.get_paths()["include"]]))
PY
)
# shellcheck disable=SC2086
"$CXX" -std=c++20 -fsyntax-only -DHEADRECON_WITH_CUDA -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H \
  -Icsrc -I"$tmp/stub" $incs -I"$cuda_inc" csrc/ext.cpp
echo "g++ -fsyntax-only ok: csrc/ext.cpp with HEADRECON_WITH_CUDA"
