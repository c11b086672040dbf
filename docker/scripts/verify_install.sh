#!/usr/bin/env bash
# Fail fast after installing: the libraries import, ComfyUI loads this package without IMPORT FAILED, and the
# doctor's build checks pass.
#   COMFYUI_DIR (default /comfyui), NODE_NAME (default comfyui-wan-animate), PYTHON, WORKER_DIR (docker/ folder)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
COMFYUI_DIR=${COMFYUI_DIR:-/comfyui}
NODE_NAME=${NODE_NAME:-comfyui-wan-animate}
PYTHON=${PYTHON:-python3}
WORKER_DIR=${WORKER_DIR:-$(cd "$HERE/.." && pwd)}
node_dir="$COMFYUI_DIR/custom_nodes/$NODE_NAME"

PYTHONPATH="$node_dir" "$PYTHON" -c "import wan_loader, wan_animate; print('verify: libraries import')"
log=$(mktemp)
base=$(mktemp -d)
mkdir -p "$base/custom_nodes"
ln -s "$node_dir" "$base/custom_nodes/$NODE_NAME"
# --quick-test-for-ci loads ComfyUI and every custom node, then exits.
(cd "$COMFYUI_DIR" && "$PYTHON" main.py --cpu --quick-test-for-ci --disable-api-nodes \
  --base-directory "$base" --database-url sqlite:///:memory: > "$log" 2>&1) || { cat "$log" >&2; exit 1; }
if grep -q "IMPORT FAILED.*$NODE_NAME" "$log"; then
  echo "verify: ComfyUI could not import $NODE_NAME:" >&2
  cat "$log" >&2
  exit 1
fi
echo "verify: ComfyUI loads $NODE_NAME"
rm -rf "$base" "$log"
(cd "$WORKER_DIR" && COMFYUI_DIR="$COMFYUI_DIR" WAN_ANIMATE_PACKAGE_DIR="$node_dir" DOCTOR_REQUIRE_MODELS=0 \
  MODEL_STRATEGY=volume "$PYTHON" -m comfy_worker.doctor --phase build)
