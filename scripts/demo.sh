#!/usr/bin/env bash
# The main job end to end on a tiny built-in model, on the CPU: a synthetic driving video and reference image are
# preprocessed (tiny ONNX person detector + whole-body pose model), animated by a tiny random Wan2.2-Animate in
# three 17-frame segments, and streamed into out/demo.mp4. Extra arguments go to `python -m wan_animate animate`.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same environment as scripts/test.sh (created and filled on first use; PYTHON=... uses another one as it is).
if [ -z "${PYTHON:-}" ]; then
  source scripts/venv.sh
  venv_install
  PYTHON=$PY
fi
mkdir -p out
"$PYTHON" -m wan_animate animate --tiny --out out/demo.mp4 --steps 4 --segment-frames 17 --resolution-area 96 64 "$@"
