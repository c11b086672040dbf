#!/usr/bin/env bash
# Install a pinned ComfyUI into $COMFYUI_DIR with its requirements, torch pinned.
#   COMFYUI_DIR      target (default /comfyui)
#   COMFYUI_VERSION  ComfyUI release for comfy-cli (default: the newest release the PROFILES pin, see
#                    docker/profiles/; the build fails if the installed ComfyUI is older than that)
#   PROFILES         deployment profiles (default animate); WORKER_DIR holds comfy_worker/profiles.py and profiles/
#   COMFYUI_SOURCE   optional local ComfyUI source: a git checkout (comfy-cli installs from it) or a plain copy
#                    (copied); empty or missing -> comfy-cli fetches COMFYUI_VERSION
#   PYTHON           the environment's python (default python3)
#   TORCH_SPEC       torch pins installed with the requirements (default torch==2.14.1 torchvision==0.29.1);
#                    INSTALL_TORCH=0 keeps the torch already installed (tests reuse a shared environment)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
COMFYUI_DIR=${COMFYUI_DIR:-/comfyui}
PYTHON=${PYTHON:-python3}
WORKER_DIR=${WORKER_DIR:-$(cd "$HERE/.." && pwd)}
needed=$(cd "$WORKER_DIR" && "$PYTHON" -m comfy_worker.profiles plan "${PROFILES:-animate}" | sed -n 's/^COMFYUI_VERSION=//p')
COMFYUI_VERSION=${COMFYUI_VERSION:-$needed}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
PIP=("$PYTHON" -m pip install --disable-pip-version-check)

"${PIP[@]}" "comfy-cli==1.23.0"
if [ -n "${COMFYUI_SOURCE:-}" ] && [ -f "$COMFYUI_SOURCE/main.py" ]; then
  if [ -d "$COMFYUI_SOURCE/.git" ]; then
    "$PYTHON" -m comfy_cli --skip-prompt --workspace "$COMFYUI_DIR" install --url "$COMFYUI_SOURCE" \
      --skip-manager --skip-torch-or-directml --skip-requirement
  else
    mkdir -p "$COMFYUI_DIR"
    cp -a "$COMFYUI_SOURCE/." "$COMFYUI_DIR/"
  fi
else
  "$PYTHON" -m comfy_cli --skip-prompt --workspace "$COMFYUI_DIR" install --nvidia --version "$COMFYUI_VERSION" \
    --skip-manager --skip-torch-or-directml --skip-requirement
fi
[ -f "$COMFYUI_DIR/main.py" ] || { echo "install_comfyui: no ComfyUI at $COMFYUI_DIR" >&2; exit 1; }
installed=$("$PYTHON" -c "import sys; sys.path.insert(0, '$COMFYUI_DIR'); import comfyui_version; print(comfyui_version.__version__)")
if [ "$(printf '%s\n%s\n' "$needed" "$installed" | sort -V | head -1)" != "$needed" ]; then
  echo "install_comfyui: ComfyUI $installed is older than $needed, which the profiles ${PROFILES:-animate} need" \
       "(docker/profiles/*/profile.json comfyui_version); use a newer docker/vendor/ComfyUI or COMFYUI_VERSION" >&2
  exit 1
fi

# ComfyUI's requirements without torch*, plus `requests` (imported by ComfyUI, missing from its list).
req=$(mktemp)
grep -vE '^(torch|torchvision|torchaudio)([^A-Za-z0-9_-]|$)' "$COMFYUI_DIR/requirements.txt" > "$req"
echo requests >> "$req"
if [ "${INSTALL_TORCH:-1}" = "1" ]; then
  # shellcheck disable=SC2086  # TORCH_SPEC is a list of pins
  "${PIP[@]}" $TORCH_SPEC -r "$req"
else
  "${PIP[@]}" -r "$req" --constraint <("$PYTHON" -m pip freeze | grep -iE '^(torch|torchvision)==')
fi
rm -f "$req"
echo "install_comfyui: ComfyUI $installed in $COMFYUI_DIR"
