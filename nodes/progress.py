"""Adapters from the libraries' callbacks to ComfyUI's progress bar and Stop button.

The libraries know nothing of ComfyUI: they take a `progress(done, total, **info)` callable and a cancellation check.
These adapters forward progress to comfy.utils.ProgressBar (the green bar on the node and the websocket "progress"
messages) and turn a press of Stop into ComfyUI's own InterruptProcessingException, so the run ends cleanly.
"""
from __future__ import annotations

import comfy.model_management
import comfy.utils


class NodeProgress:
    """Callable progress sink: `progress(done, total, **info)`; a new total (a new phase) restarts the bar."""

    def __init__(self):
        self._bar: comfy.utils.ProgressBar | None = None

    def __call__(self, done, total=None, *args, **info) -> None:
        total = int(total) if total else None
        if self._bar is None or (total is not None and total != self._bar.total):
            self._bar = comfy.utils.ProgressBar(total or 1)
        self._bar.update_absolute(int(done), total)
        raise_if_interrupted()


def raise_if_interrupted() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Stop (the libraries call this between steps)."""
    comfy.model_management.throw_exception_if_processing_interrupted()


def is_interrupted() -> bool:
    """For libraries that poll a flag instead of calling a function that raises."""
    return comfy.model_management.processing_interrupted()


def torch_device():
    """The device ComfyUI runs models on (honours --cpu, --gpu-only, --directml, ...)."""
    return comfy.model_management.get_torch_device()


def free_comfy_models() -> None:
    """Unload ComfyUI's own cached models so a large pipeline has room (what the core loaders do before loading)."""
    comfy.model_management.unload_all_models()
    comfy.model_management.soft_empty_cache()
