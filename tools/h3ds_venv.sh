#!/usr/bin/env bash
# Make the side environment that runs the official H3DS evaluation code (PyPI h3ds 0.4.0) for
# tests/test_h3ds_official.py, and print the path of its python. h3ds uses np.int, so it needs numpy<1.24; it
# gets the same trimesh version as headrecon's environment (its ICP is trimesh's), so both sides run one ICP.
#   bash tools/h3ds_venv.sh [DIR]      (default DIR: .h3ds-venv in the repository; about 600 MB, 2-4 min)
# then: HEADRECON_H3DS_PYTHON=DIR/bin/python pytest tests/test_h3ds_official.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIR=${1:-.h3ds-venv}
TRIMESH=$($PY -c 'import trimesh; print(trimesh.__version__)')
if [ ! -x "$DIR/bin/python" ] || ! "$DIR/bin/python" -c 'import h3ds.dataset' 2>/dev/null; then
  $PY -m venv "$DIR"
  "$DIR/bin/python" -m pip install -q "numpy<1.24" "h3ds==0.4.0" "trimesh==$TRIMESH" >&2
fi
"$DIR/bin/python" -c 'import h3ds.dataset, numpy, trimesh; import sys; print(sys.executable)' 
