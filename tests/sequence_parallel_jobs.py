"""The tiny jobs that tests/test_sequence_parallel.py runs in one process and across torchrun's ranks.

Each job takes `parallel` (AnimateOptions.sequence_parallel) and `shard_weights` (FSDP2 blocks) and returns the
frames. Animate-14B: 13 frames of 32x48, i.e. 4 latent frames plus the reference frame of 2x3 tokens = 30 tokens:
15 per rank on 2 ranks (Ulysses), 8 per rank on 4 ranks with 2 padding tokens, where the tiny model's 2 heads do not
divide by 4 (the ring fallback); either way slices end inside frames (the face adapters' frame-by-frame path).
"""
from __future__ import annotations

import numpy as np

from tests.engine_helpers import driving
from wan_animate.engine import AnimateOptions, animate
from wan_animate.engine.animate2 import Animate2Inputs, Animate2Options, animate2
from wan_animate.engine.parallel import shard_blocks
from wan_loader.testing.tiny import tiny_animate2_components, tiny_components


def _components(components, shard_weights: bool):
    if shard_weights:
        shard_blocks(components.transformer, "cpu")
    return components


def animate14b(parallel: str = "off", shard_weights: bool = False, **settings) -> np.ndarray:
    components = _components(tiny_components(seed=2), shard_weights)
    options = AnimateOptions(seed=7, steps=2, segment_frames=13, sequence_parallel=parallel, **settings)
    return animate(components, driving(13, 32, 48, seed=1), options, device="cpu").frames


def animate2_job(parallel: str = "off", shard_weights: bool = False, driving_cache: str = "device") -> np.ndarray:
    components = _components(tiny_animate2_components(seed=3), shard_weights)
    rng = np.random.default_rng(0)
    video = (rng.random((9, 40, 56, 3)) * 255).astype(np.uint8)
    reference = (rng.random((48, 40, 3)) * 255).astype(np.uint8)
    options = Animate2Options(prompt="a man dancing", steps=2, segment_frames=9, area=32 * 32, seed=5,
                              sequence_parallel=parallel, driving_cache=driving_cache)
    return animate2(components, Animate2Inputs(reference, video), options, device="cpu").frames


def animate2_host_cache(parallel: str = "off", shard_weights: bool = False) -> np.ndarray:
    """Animate-2 with each rank's shard of the driving K/V cache in host memory."""
    return animate2_job(parallel, shard_weights, driving_cache="host")


JOBS = {"animate14b": animate14b, "animate2": animate2_job, "animate2_host": animate2_host_cache}
