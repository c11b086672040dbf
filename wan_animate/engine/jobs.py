"""What every animation job shares, whichever model it runs: cancel and progress per step, the out-of-memory
handling that releases the device and says what lowers memory, and the result.

A job object has `run()`, which writes frames to its sink segment by segment, and `step_cache` (its
stepcache.StepCache, or None); `execute` runs it and returns the AnimateResult. Animate-14B (run.py) and Animate-2 (animate2/run.py) jobs differ only in what a segment computes.
"""
from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .segments import SegmentPlan
from .sinks import FrameCollector, FrameSink

MEMORY_ADVICE = (
    "To lower memory: tiled_vae=True (--tiled-vae), a shorter segment_frames (e.g. 45 or 33; --segment-frames), "
    "guide_scale 1 (CFG > 1 runs a second forward), a lower resolution, fp8 weights or block swap "
    "for the DiT, Wan-Animate-2's driving K/V cache in host memory (driving_cache='host'; --driving-cache host), "
    "and offload=True so the DiT/VAE leave the GPU between jobs."
)


class AnimationCancelled(RuntimeError):
    """The caller's `cancel` check returned True; nothing more was written to the sink."""


class EngineOutOfMemory(RuntimeError):
    """The device ran out of memory; device memory was released. The message names options that lower memory."""


@dataclass
class AnimateResult:
    frames: np.ndarray | None  # (T, H, W, 3) uint8 when no sink was given, else None
    num_frames: int
    segments: int
    segment_frames: int
    seconds: float
    steps_reused: int = 0  # sampling steps whose DiT forwards the step cache skipped (options.step_cache)


class StepControl:
    """Cancel checks and progress reports of a job of `plan.num_segments` segments x `steps` steps."""

    def __init__(self, plan: SegmentPlan, steps: int, progress: Callable[..., None] | None,
                 cancel: Callable[[], bool | None] | None):
        self.plan, self.steps, self.progress, self.cancel = plan, steps, progress, cancel

    def check_cancel(self, segment: int, step: int) -> None:
        if self.cancel is not None and self.cancel():
            raise AnimationCancelled(
                f"Cancelled at segment {segment + 1}/{self.plan.num_segments}, step {step}/{self.steps}."
            )

    def step_done(self, segment: int, step: int) -> None:
        """`progress(done, total, step=, steps=, segment=, segments=)` after 0-based `step` of `segment`."""
        if self.progress is not None:
            self.progress(segment * self.steps + step + 1, self.plan.num_segments * self.steps, step=step + 1,
                          steps=self.steps, segment=segment + 1, segments=self.plan.num_segments)


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def release_device_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def execute(make_job: Callable[[FrameSink], object], plan: SegmentPlan, device: torch.device,
            sink: FrameSink | None) -> AnimateResult:
    """Build the job on `sink` (or a collector) and run it; on any error the device memory is released first,
    and running out of memory becomes EngineOutOfMemory."""
    collector = FrameCollector() if sink is None else None
    began = time.perf_counter()
    job = make_job(sink or collector)
    try:
        job.run()
    except torch.OutOfMemoryError as error:
        traceback.clear_frames(error.__traceback__)
        job = None
        release_device_memory(device)
        raise EngineOutOfMemory(f"Out of memory on {device} ({error}). {MEMORY_ADVICE}") from None
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)
        job = None
        release_device_memory(device)
        raise
    reused = job.step_cache.reused if job.step_cache is not None else 0
    job = None
    release_device_memory(device)
    frames = collector.frames() if collector is not None else None
    return AnimateResult(frames, plan.num_frames, plan.num_segments, plan.segment_frames, time.perf_counter() - began,
                         reused)
