"""Optional step caching for long, undistilled sampling (EasyCache's runtime-adaptive reuse, training-free).

Across neighbouring denoising steps the DiT's transformation, output minus input, changes slowly. After the
first `warmup` steps each fully computed step records that transformation and its rate k = |Δ output| / |Δ input|
(mean absolute values, between the last two computed steps). A later step estimates its output's relative change
as k * |x_t - x_(t-1)| / |output_(t-1)| and adds it to a running sum; while the sum stays below `threshold` the step
reuses the last transformation (output = x_t + (output - input) of the last computed step) instead of running
the DiT (both passes with CFG). Crossing the threshold computes the step and resets the sum. The last step is
always computed. threshold 0 computes every step (the output is then bit-identical to no cache).
"""
from __future__ import annotations

from collections.abc import Callable

import torch


def check_step_cache(threshold: float) -> None:
    """The one rule for a job's `step_cache` option (both models' options and the sampler nodes check through it)."""
    if not threshold >= 0:
        raise ValueError(f"step_cache={threshold}: must be >= 0 (0 turns step caching off; e.g. 0.1 for 20+ "
                         "undistilled steps).")


class StepCache:
    """Per-segment state of the reuse decision; `begin()` before each segment's denoising loop."""

    def __init__(self, threshold: float, warmup: int = 3):
        if warmup < 2:
            raise ValueError(f"warmup={warmup}: at least 2 computed steps are needed to measure the rate.")
        self.threshold, self.warmup = threshold, warmup
        self.computed = self.reused = 0
        self.begin()

    def begin(self) -> None:
        self._input: torch.Tensor | None = None  # x of the last step (computed or reused)
        self._output_size = 0.0  # mean |output| of the last step
        self._computed: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, output) of the last computed step
        self._rate: float | None = None
        self._accumulated = 0.0

    def __call__(self, step: int, steps: int, x: torch.Tensor, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The step's DiT output for input `x`: `compute()`d, or the last transformation applied to `x`."""
        if self._rate is not None and self.warmup <= step < steps - 1 and self._output_size > 0:
            change = self._rate * (x - self._input).abs().mean().item() / self._output_size
            if self._accumulated + change < self.threshold:
                self._accumulated += change
                last_x, last_out = self._computed
                out = x + (last_out - last_x)
                self._input, self._output_size = x, out.abs().mean().item()
                self.reused += 1
                return out
        out = compute()
        if self._computed is not None:
            last_x, last_out = self._computed
            moved = (x - last_x).abs().mean().item()
            self._rate = (out - last_out).abs().mean().item() / moved if moved > 0 else None
        self._computed = (x, out)
        self._input, self._output_size = x, out.abs().mean().item()
        self._accumulated = 0.0
        self.computed += 1
        return out
