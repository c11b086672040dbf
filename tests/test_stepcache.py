"""Step caching (EasyCache-style reuse of the DiT's transformation) in both engines, on tiny models (CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.engine_helpers import driving
from wan_animate.engine import AnimateOptions, animate
from wan_animate.engine.animate2 import Animate2Inputs, Animate2Options, animate2
from wan_animate.engine.animate2.accel import Animate2FastPath
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
    result = animate(tiny, driving(9, 32, 32), options, block_runner=runner)
    assert result.steps_reused == STEPS - len(calls)  # what the sampler node reports
    return result.frames, len(calls)


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
    with pytest.raises(ValueError, match="step_cache=-0.1"):
        Animate2Options(step_cache=-0.1).resolved()


def run2(tiny2, step_cache: float, **options):
    """An Animate-2 job (full variant: CFG, two forwards a step); its forwards counted through the fast path's runner.
    The driving pass runs block 0 once per segment as well: counted apart."""
    forwards = []

    def runner(index, block, call):
        if index == 0:
            forwards.append(1)
        return call(block)
    rng = np.random.default_rng(0)
    video = (rng.random((9, 32, 32, 3)) * 255).astype(np.uint8)
    fast = Animate2FastPath("native", "dequant", None, block_runner=runner)
    settings = dict(variant="full", steps=STEPS, segment_frames=9, area=32 * 32, seed=5, step_cache=step_cache)
    result = animate2(tiny2, Animate2Inputs(video[0], video), Animate2Options(**{**settings, **options}),
                      device="cpu", fast=fast)
    return result, len(forwards) - 1  # minus the driving pass


def test_animate2_reuse_skips_both_cfg_passes(tiny2):
    uncached, forwards = run2(tiny2, 0.0)
    assert forwards == 2 * STEPS and uncached.steps_reused == 0
    tight, _ = run2(tiny2, 1e-9)
    assert np.array_equal(tight.frames, uncached.frames)
    cached, cached_forwards = run2(tiny2, 10.0)
    assert cached.steps_reused == STEPS - 4 and cached_forwards == 2 * 4  # 3 warm-up steps and the last
    difference = np.abs(cached.frames.astype(int) - uncached.frames.astype(int)).mean()
    assert 0 < difference < 64


def test_animate2_reuse_starts_afresh_where_the_driving_window_ends(tiny2):
    """Driving attended in the first half only: the step after the window computes again, twice, before reuse."""
    cached, _ = run2(tiny2, 10.0, driving_end=0.5)
    # steps 0-2 warm-up, 3-5 reused, 6 and 7 computed (the window ends at step 6), 8-10 reused, 11 the last
    assert cached.steps_reused == 3 + 3
