#!/usr/bin/env bash
# Install this custom-node package into $COMFYUI_DIR/custom_nodes/$NODE_NAME and the worker's dependencies, without
# ever replacing the installed torch (its version is a constraint).
#   PACKAGE_SRC  the repository root (default: two levels above this script)
#   COMFYUI_DIR  (default /comfyui), NODE_NAME (default comfyui-wan-animate), PYTHON (default python3)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PACKAGE_SRC=${PACKAGE_SRC:-$(cd "$HERE/../.." && pwd)}
COMFYUI_DIR=${COMFYUI_DIR:-/comfyui}
NODE_NAME=${NODE_NAME:-comfyui-wan-animate}
PYTHON=${PYTHON:-python3}
dest="$COMFYUI_DIR/custom_nodes/$NODE_NAME"

mkdir -p "$dest"
# What ComfyUI loads: the entry point, the node classes, the libraries, the workflows and the requirements.
for item in __init__.py nodes wan_loader wan_animate workflows example_workflows requirements.txt pyproject.toml; do
  [ -e "$PACKAGE_SRC/$item" ] && cp -a "$PACKAGE_SRC/$item" "$dest/"
done
find "$dest" -name __pycache__ -prune -exec rm -rf {} +

constraints=$(mktemp)
"$PYTHON" -m pip freeze | grep -iE '^(torch|torchvision)==' > "$constraints" || true
"$PYTHON" -m pip install --disable-pip-version-check --constraint "$constraints" \
  -r "$dest/requirements.txt" -r "$PACKAGE_SRC/docker/requirements.txt" ${EXTRA_PIP_PACKAGES:-}
rm -f "$constraints"
echo "install_package: $NODE_NAME installed in $dest"
