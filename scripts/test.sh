#!/usr/bin/env bash
# Installs everything the tests need into a virtual environment and runs them.
#   bash scripts/test.sh            # the whole suite
#   bash scripts/test.sh -k loader  # pytest arguments pass through
# Side effects: creates the virtual environment VENV (default .venv, about 7 GB: torch's CUDA build), installs this
# package into it (editable), and, as root with apt-get, installs Debian's chromium + chromium-driver for the browser
# tests. The ComfyUI integration tests need a ComfyUI source: COMFYUI_DIR, or a tarball named by COMFYUI_TARBALL,
# or the pinned release downloaded once (scripts/comfyui_source.sh); without one they skip with a loud reason.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
source scripts/comfyui_source.sh
reqs=(-r requirements-test.txt)
if [ -n "${COMFYUI_DIR:-}" ]; then
  grep -vE '^(torch|torchvision|torchaudio)([^A-Za-z0-9_-]|$)' "$COMFYUI_DIR/requirements.txt" > "$VENV/comfyui-requirements.txt"
  reqs+=(-r "$VENV/comfyui-requirements.txt")
fi
venv_install "${reqs[@]}"
# The browser test drives Debian's headless chromium; install it when missing (needs root and apt-get).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
    || echo "!!! could not install chromium: the browser tests will be skipped" >&2
fi
# Lint first: the ruff configuration in pyproject.toml is part of the test command.
"$PY" -m ruff check .
exec "$PY" -m pytest "$@"
