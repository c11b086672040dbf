#!/usr/bin/env bash
# Container entry point: wire the model strategy, check the worker, start the RunPod handler (it starts ComfyUI).
#   MODEL_STRATEGY=baked     models inside the image (/comfyui/models)
#   MODEL_STRATEGY=volume    models on the network volume ($RUNPOD_VOLUME_DIR/models, via extra_model_paths.yaml)
#   MODEL_STRATEGY=download  like volume, and missing files are downloaded there first (locked, verified)
#   DOCTOR_STRICT=1          exit when the start-up doctor finds a failure (default: log it and serve jobs, which
#                            then fail with readable errors)
#   WORKER_VARIANT=debug     (the debug image) DEBUG logs, a strict doctor, and the environment printed at start
set -euo pipefail
cd /worker
if [ "${WORKER_VARIANT:-}" = debug ]; then
  export WORKER_LOG_LEVEL=${WORKER_LOG_LEVEL:-DEBUG} DOCTOR_STRICT=${DOCTOR_STRICT:-1} RUNPOD_LOG_LEVEL=DEBUG
  env | grep -E '^(WORKER_|COMFY|MODEL_STRATEGY|RUNPOD_VOLUME_DIR)' | grep -v SECRET | sort >&2
fi
case "${MODEL_STRATEGY:-baked}" in
  volume|download)
    sed "s#base_path: /runpod-volume/models#base_path: ${RUNPOD_VOLUME_DIR:-/runpod-volume}/models#" \
      /worker/extra_model_paths.yaml > "$COMFYUI_DIR/extra_model_paths.yaml" ;;
  baked) rm -f "$COMFYUI_DIR/extra_model_paths.yaml" ;;
  *) echo "start.sh: MODEL_STRATEGY=$MODEL_STRATEGY: use baked, volume or download" >&2; exit 2 ;;
esac
if [ "${MODEL_STRATEGY:-baked}" = "download" ]; then
  python -m comfy_worker.models prepare
fi
if ! doctor --phase start; then
  [ "${DOCTOR_STRICT:-0}" = "1" ] && exit 1
  echo "start.sh: doctor reported failures (above); serving jobs anyway" >&2
fi
exec python -u /worker/handler.py
