#!/usr/bin/env bash
# Installs everything the tests need into a virtual environment and runs them.
#   bash scripts/test.sh            # the whole suite
#   bash scripts/test.sh -k loader  # pytest arguments pass through
# VENV picks the environment (default .venv). COMFYUI_DIR (default /opt/ComfyUI) enables the ComfyUI integration
# tests; without a ComfyUI source there they are skipped with a loud reason.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
COMFY=${COMFYUI_DIR:-/opt/ComfyUI}
reqs=(-r requirements-test.txt)
if [ -f "$COMFY/requirements.txt" ]; then
  grep -vE '^(torch|torchvision|torchaudio)([^A-Za-z0-9_-]|$)' "$COMFY/requirements.txt" > "$VENV/comfyui-requirements.txt"
  reqs+=(-r "$VENV/comfyui-requirements.txt")
fi
venv_install "${reqs[@]}"
# The browser test drives Debian's headless chromium; install it when missing (needs root and apt-get).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
    || echo "!!! could not install chromium: the browser tests will be skipped" >&2
fi
exec "$PY" -m pytest "$@"
