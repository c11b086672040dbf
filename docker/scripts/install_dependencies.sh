#!/usr/bin/env bash
# Python packages of this package, of the worker and of the profiles, and the Comfy Registry custom nodes, never
# replacing the installed torch (its version is a constraint, also for the custom nodes' own requirements).
#   PACKAGE_SRC     holds requirements.txt and docker/requirements.txt (default: two levels above this script)
#   WORKER_DIR      holds comfy_worker/profiles.py and profiles/ (default: the docker/ folder beside this script)
#   PROFILES        docker/profiles/<name>, comma-separated (default animate): their "pip" and "registry_nodes"
#   REGISTRY_NODES  more Comfy Registry node ids (space- or comma-separated), installed with comfy-cli
#   EXTRA_PIP_PACKAGES, COMFYUI_DIR (default /comfyui), PYTHON (default python3)
#   COMFY_CLI       the comfy-cli command (default: "$PYTHON -m comfy_cli")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PACKAGE_SRC=${PACKAGE_SRC:-$(cd "$HERE/../.." && pwd)}
WORKER_DIR=${WORKER_DIR:-$(cd "$HERE/.." && pwd)}
COMFYUI_DIR=${COMFYUI_DIR:-/comfyui}
PYTHON=${PYTHON:-python3}
read -r -a COMFY_CLI <<< "${COMFY_CLI:-$PYTHON -m comfy_cli}"

plan=$(cd "$WORKER_DIR" && "$PYTHON" -m comfy_worker.profiles plan "${PROFILES:-animate}")
eval "$plan"
constraints=$(mktemp)
"$PYTHON" -m pip freeze | grep -iE '^(torch|torchvision)==' > "$constraints" || true
# shellcheck disable=SC2086  # lists of package specs
"$PYTHON" -m pip install --disable-pip-version-check --constraint "$constraints" \
  -r "$PACKAGE_SRC/requirements.txt" -r "$PACKAGE_SRC/docker/requirements.txt" $PROFILE_PIP ${EXTRA_PIP_PACKAGES:-}
registry_nodes=${REGISTRY_NODES:-}
for node in $PROFILE_REGISTRY_NODES ${registry_nodes//,/ }; do
  echo "install_dependencies: Comfy Registry node $node"
  PIP_CONSTRAINT="$constraints" "${COMFY_CLI[@]}" --skip-prompt --workspace "$COMFYUI_DIR" node registry-install "$node" \
    || { echo "install_dependencies: could not install Comfy Registry node '$node' (is the id right? see the Comfy Registry)" >&2; exit 1; }
done
rm -f "$constraints"
echo "install_dependencies: profiles ${PROFILES:-animate} (pip: ${PROFILE_PIP:-none}; registry nodes: ${PROFILE_REGISTRY_NODES:-} ${REGISTRY_NODES:-})"
