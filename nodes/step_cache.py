"""The step-cache input both sampler nodes have (wan_animate.engine.stepcache), and the line that says what it saved.

Optional with default 0 (off), appended after the samplers' other widgets: workflows saved before it existed keep
their values in place and run as before.
"""
from __future__ import annotations

from comfy_api.latest import io, ui

NAME = "step_cache"
TOOLTIP = (
    "Step caching for long undistilled sampling (20+ steps without a step-distill LoRA; Animate-2's full model): "
    "0 = off. Above 0, a step reuses the model's last change instead of running it while the estimated accumulated "
    "relative change stays below this value (0.05-0.2: fewer model calls, small differences; higher: faster, "
    "further from the uncached video). The first 3 steps and the last are always computed. No use with 4-10 steps."
)


def step_cache_input() -> io.Float.Input:
    return io.Float.Input(NAME, default=0.0, min=0.0, max=1.0, step=0.01, optional=True, tooltip=TOOLTIP)


def step_cache_text(result, steps: int) -> ui.PreviewText:
    """'step cache: N of M steps reused' for the node's output panel (M: all sampling steps of the job)."""
    total = steps * result.segments
    return ui.PreviewText(f"step cache: {result.steps_reused} of {total} sampling steps reused "
                          f"({total - result.steps_reused} computed)")
