#!/usr/bin/env bash
# Create or refresh the local virtual environment (.venv) with everything the SDK, its tests and demo need.
# Torch: on the project's CPU machines the pinned CUDA build is on local disk; elsewhere a plain install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt setup.py ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  echo "installing torch ..."
  pip install -q torch==2.14.1 torchvision==0.29.1 || pip install -q torch torchvision
fi
echo "installing edge-geoloc and its dependencies ..."
pip install -q -e ".[runtime,train,export,dev]"
touch "$stamp"
echo "environment ready: $VENV"
