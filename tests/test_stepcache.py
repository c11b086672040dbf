"""Step caching (EasyCache-style reuse of the DiT's transformation) in the engine, on the tiny model (CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.engine_helpers import driving
from wan_animate.engine import AnimateOptions, animate
from wan_animate.engine.forward import run_block
from wan_animate.engine.stepcache import StepCache

STEPS = 12


def counted_runner():
    """A block runner that counts DiT forwards (block 0 runs once per forward)."""
    calls = []

    def runner(index, block, *args):
        if index == 0:
            calls.append(1)
        return run_block(index, block, *args)
    return runner, calls


def run(tiny, step_cache: float):
    runner, calls = counted_runner()
    options = AnimateOptions(steps=STEPS, segment_frames=9, step_cache=step_cache)
    frames = animate(tiny, driving(9, 32, 32), options, block_runner=runner).frames
    return frames, len(calls)


def test_reuse_skips_forwards_and_stays_near_the_uncached_video(tiny):
    uncached, forwards = run(tiny, 0.0)
    assert forwards == STEPS
    tight, tight_forwards = run(tiny, 1e-9)  # every estimated change exceeds it: every step computed
    assert tight_forwards == STEPS and np.array_equal(tight, uncached)
    cached, cached_forwards = run(tiny, 10.0)  # everything between the warm-up and the last step reused
    assert cached_forwards == 3 + 1
    difference = np.abs(cached.astype(int) - uncached.astype(int)).mean()
    assert 0 < difference < 64  # changed, still the same video


def test_reuse_applies_the_last_transformation():
    """On a model whose transformation is constant, reused steps give exactly what computing them would."""
    shift = torch.full((2, 3), 0.5)
    cache = StepCache(threshold=1.0, warmup=2)
    computed = []

    def model(x):
        computed.append(1)
        return x + shift

    x = torch.zeros(2, 3)
    for step in range(6):
        out = cache(step, 6, x, lambda x=x: model(x))
        torch.testing.assert_close(out, x + shift)
        x = x + 0.01 * (step + 1)
    assert len(computed) == 3 and (cache.computed, cache.reused) == (3, 3)  # 2 warm-up steps, 3 reused, the last


def test_negative_threshold_is_refused(tiny):
    with pytest.raises(ValueError, match="step_cache=-0.1"):
        animate(tiny, driving(9, 32, 32), AnimateOptions(steps=1, step_cache=-0.1))
