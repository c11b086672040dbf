#!/usr/bin/env bash
# Install this custom-node package into $COMFYUI_DIR/custom_nodes/$NODE_NAME and every Python dependency
# (install_dependencies.sh: this package's, the worker's, the profiles'), without ever replacing the installed torch.
# The image copies the files itself (after the model layers) and runs install_dependencies.sh in its build stage.
#   PACKAGE_SRC  the repository root (default: two levels above this script)
#   COMFYUI_DIR  (default /comfyui), NODE_NAME (default comfyui-wan-animate), PYTHON (default python3), PROFILES
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PACKAGE_SRC=${PACKAGE_SRC:-$(cd "$HERE/../.." && pwd)}
COMFYUI_DIR=${COMFYUI_DIR:-/comfyui}
NODE_NAME=${NODE_NAME:-comfyui-wan-animate}
dest="$COMFYUI_DIR/custom_nodes/$NODE_NAME"

mkdir -p "$dest"
# What ComfyUI loads: the entry point, the node classes, the libraries, the workflows and the requirements.
for item in __init__.py nodes wan_loader wan_animate workflows example_workflows requirements.txt pyproject.toml; do
  [ -e "$PACKAGE_SRC/$item" ] && cp -a "$PACKAGE_SRC/$item" "$dest/"
done
find "$dest" -name __pycache__ -prune -exec rm -rf {} +
PACKAGE_SRC="$PACKAGE_SRC" COMFYUI_DIR="$COMFYUI_DIR" bash "$HERE/install_dependencies.sh"
echo "install_package: $NODE_NAME installed in $dest"
