"""RunPod serverless entry point for ComfyUI workflows (see README "Deploy on RunPod serverless").

    python handler.py                                   # on RunPod
    python handler.py --rp_serve_api --rp_api_port 8000 # local API server (POST /runsync)
"""
from __future__ import annotations

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import runpod  # noqa: E402

from comfy_worker.job import Worker  # noqa: E402

logging.basicConfig(level=os.environ.get("WORKER_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s")
log = logging.getLogger("comfy_worker")
WORKER = Worker()


def _on_runpod() -> bool:
    """progress_update posts to RunPod's job API, which only exists on RunPod (not in the local API server)."""
    return bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))


async def handler(job: dict) -> dict:
    def progress(payload: dict) -> None:
        if _on_runpod():
            runpod.serverless.progress_update(job, payload)
        else:
            log.info("progress %s", payload)

    return await WORKER.run(job, progress)


if __name__ == "__main__":
    WORKER.process.prestart()
    runpod.serverless.start({"handler": handler})
