"""The animation engine on tiny random models (real diffusers/transformers modules, CPU): behaviour and contracts."""
from __future__ import annotations

import gc
import tracemalloc

import av
import numpy as np
import pytest
import torch

from tests.engine_helpers import driving as make_driving
from wan_animate.engine import (
    AnimateInputs,
    AnimateOptions,
    AnimationCancelled,
    EngineOutOfMemory,
    Mp4Writer,
    animate,
)
from wan_animate.engine.segments import plan_segments

H, W, FACE = 32, 32, 16
FAST = {"steps": 2, "segment_frames": 9}


def driving(n: int, seed: int = 0, face: int = FACE) -> AnimateInputs:
    return make_driving(n, H, W, face, seed)


def test_same_seed_same_video_other_seed_other_video(tiny):
    inputs = driving(14)
    a = animate(tiny, inputs, AnimateOptions(seed=3, **FAST)).frames
    b = animate(tiny, inputs, AnimateOptions(seed=3, **FAST)).frames
    c = animate(tiny, inputs, AnimateOptions(seed=4, **FAST)).frames
    assert a.shape == (14, H, W, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    replace, short = AnimateOptions(mode="replace", seed=3, **FAST), driving(9)
    assert np.array_equal(animate(tiny, short, replace).frames, animate(tiny, short, replace).frames)


def test_guidance_frames_and_cfg_change_the_result(tiny):
    inputs = driving(14)
    base = animate(tiny, inputs, AnimateOptions(**FAST)).frames
    five = animate(tiny, inputs, AnimateOptions(guide_frames=5, **FAST)).frames
    cfg = animate(tiny, inputs, AnimateOptions(guide_scale=3.0, **FAST)).frames
    # The first segment has no guide frames: identical; later ones differ.
    assert np.array_equal(base[:9], five[:9]) and not np.array_equal(base[9:], five[9:])
    assert not np.array_equal(base, cfg)


def test_other_solvers(tiny):
    inputs = driving(5)
    unipc = animate(tiny, inputs, AnimateOptions(**FAST)).frames
    for solver in ("dpm++", "euler"):
        other = animate(tiny, inputs, AnimateOptions(solver=solver, **FAST)).frames
        assert other.shape == unipc.shape and not np.array_equal(other, unipc)


def test_progress_reports_every_step_of_every_segment(tiny):
    calls = []
    result = animate(tiny, driving(20), AnimateOptions(**FAST), progress=lambda done, total, **info: calls.append((done, total, info)))
    assert result.segments == 3
    assert [c[0] for c in calls] == list(range(1, 7)) and {c[1] for c in calls} == {6}
    assert calls[2][2] == {"step": 1, "steps": 2, "segment": 2, "segments": 3}


def test_cancel_stops_inside_the_loop_and_leaves_no_file(tiny, tmp_path):
    seen = []
    out = tmp_path / "out.mp4"
    with pytest.raises(AnimationCancelled, match="segment 2/3"), Mp4Writer(out, fps=30) as writer:
        animate(tiny, driving(20), AnimateOptions(**FAST), sink=writer, progress=lambda d, t, **i: seen.append(d),
                cancel=lambda: len(seen) >= 3)
    assert seen == [1, 2, 3]
    assert list(tmp_path.iterdir()) == []


def test_cancel_may_raise_its_own_exception(tiny):
    class Interrupted(Exception):
        pass

    def stop():
        raise Interrupted

    with pytest.raises(Interrupted):
        animate(tiny, driving(9), AnimateOptions(**FAST), cancel=stop)


def test_out_of_memory_is_reported_with_advice_and_modules_go_back(tiny):
    """A GPU cannot exist here: the OOM is raised from the block-runner seam, where a real one would happen."""

    def exhausted(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(EngineOutOfMemory, match="tiled_vae=True.*segment_frames"):
        animate(tiny, driving(9), AnimateOptions(**FAST), block_runner=exhausted)
    result = animate(tiny, driving(9), AnimateOptions(**FAST))  # the model is intact afterwards
    assert result.frames.shape[0] == 9


def test_mp4_sink_streams_the_whole_video(tiny, tmp_path):
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, fps=30) as writer:
        result = animate(tiny, driving(20), AnimateOptions(**FAST), sink=writer)
    assert result.frames is None and result.num_frames == 20
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 20 and frames[0].shape == (H, W, 3)


def test_short_video_uses_a_short_segment(tiny):
    result = animate(tiny, driving(6), AnimateOptions(steps=2))
    assert result.segment_frames == 9 and result.segments == 1 and result.frames.shape[0] == 6
    padded = animate(tiny, driving(6), AnimateOptions(steps=2, segment_frames=13, fit_short=False))
    assert padded.segment_frames == 13 and padded.frames.shape[0] == 6


def test_face_crops_and_reference_of_another_size_are_fitted(tiny):
    inputs = driving(5, face=40)
    inputs.reference = np.full((20, 50, 3), 200, np.uint8)  # letterboxed to 32x32
    assert animate(tiny, inputs, AnimateOptions(**FAST)).frames.shape == (5, H, W, 3)


def test_color_anchor_pulls_every_segment_to_the_reference(tiny):
    inputs = driving(20)
    anchored = animate(tiny, inputs, AnimateOptions(color_anchor="reference", **FAST)).frames.astype(np.float64)
    plain = animate(tiny, inputs, AnimateOptions(**FAST)).frames.astype(np.float64)
    target = inputs.reference.reshape(-1, 3).mean(0)
    for first, end in [(0, 9), (9, 17)]:  # whole segments (the last one is mostly padding)
        assert np.abs(anchored[first:end].reshape(-1, 3).mean(0) - target).max() < 5.0
        assert np.abs(plain[first:end].reshape(-1, 3).mean(0) - target).max() > 8.0


def test_tiled_vae_matches_untiled_closely():
    from wan_loader.testing.tiny import tiny_components

    components = tiny_components(seed=1)
    tiling = ("use_tiling", "tile_sample_min_height", "tile_sample_min_width", "tile_sample_stride_height",
              "tile_sample_stride_width")
    before = {n: getattr(components.vae, n) for n in tiling}
    inputs = driving(5)
    plain = animate(components, inputs, AnimateOptions(**FAST)).frames.astype(np.int16)
    tiled = animate(components, inputs, AnimateOptions(tiled_vae=True, vae_tile=16, **FAST)).frames.astype(np.int16)
    assert {n: getattr(components.vae, n) for n in tiling} == before  # the tile settings were the job's only
    assert not np.array_equal(plain, tiled) and np.abs(plain - tiled).mean() < 20


class LazyFrames:
    """A frame source that makes frames on demand (like a video reader): nothing is held."""

    def __init__(self, n, shape, seed):
        self.n, self.shape, self.seed = n, shape, seed

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.random.default_rng(self.seed + i).integers(0, 256, self.shape, dtype=np.uint8)


class Discard:
    def write(self, frames):
        pass


def peak_memory(tiny, n: int) -> tuple[int, int]:
    """(peak bytes of live torch tensors other than the weights, seen at every step; peak traced host bytes)."""
    weights = {id(t) for c in (tiny.transformer, tiny.vae, tiny.text_encoder, tiny.image_encoder)
               for t in list(c.parameters()) + list(c.buffers())}
    peak = [0]

    def measure(*args, **info):
        live = sum(o.numel() * o.element_size() for o in gc.get_objects()
                   if type(o) is torch.Tensor and id(o) not in weights and o.device.type != "meta")
        peak[0] = max(peak[0], live)

    inputs = AnimateInputs(np.zeros((H, W, 3), np.uint8), LazyFrames(n, (H, W, 3), 0), LazyFrames(n, (FACE, FACE, 3), 1))
    gc.collect()
    tracemalloc.start()
    animate(tiny, inputs, AnimateOptions(steps=1, segment_frames=9), sink=Discard(), progress=measure)
    host_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak[0], host_peak


def test_lazy_frame_sources_in_replace_mode(tiny):
    n = 5
    inputs = AnimateInputs(np.zeros((H, W, 3), np.uint8), LazyFrames(n, (H, W, 3), 0), LazyFrames(n, (FACE, FACE, 3), 1),
                           LazyFrames(n, (H, W, 3), 2), LazyFrames(n, (H, W), 3))
    assert animate(tiny, inputs, AnimateOptions(mode="replace", steps=1)).frames.shape == (n, H, W, 3)


def test_memory_does_not_grow_with_video_length(tiny):
    short_tensors, short_host = peak_memory(tiny, 12)
    long_tensors, long_host = peak_memory(tiny, 4 * 12)
    assert plan_segments(4 * 12, 9, 1).num_segments == 3 * plan_segments(12, 9, 1).num_segments == 6
    assert long_tensors <= short_tensors * 1.05
    assert long_host <= short_host * 1.25 + 256 * 1024


@pytest.mark.parametrize(
    "change,message",
    [
        ({"pose": np.zeros((9, 40, 32, 3), np.uint8)}, "multiples of 16"),
        ({"face": np.zeros((8, FACE, FACE, 3), np.uint8)}, "differ in length.*pose 9, face 8"),
        ({"mask": np.zeros((7, H, W), np.uint8)}, "mask 7"),
        ({"background": None}, "missing: background"),
        ({"reference": np.zeros((H, W), np.uint8)}, "reference"),
        ({"background": np.zeros((9, 16, 32, 3), np.uint8)}, "background frames are 32x16"),
    ],
)
def test_bad_inputs_are_named(tiny, change, message):
    fields = vars(driving(9)) | change
    with pytest.raises(ValueError, match=message):
        animate(tiny, AnimateInputs(**fields), AnimateOptions(mode="replace", **FAST))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"segment_frames": 10}, "4n\\+1.*9 or 13"),
        ({"guide_frames": 3}, "1 or 5"),
        ({"segment_frames": 5, "guide_frames": 5}, "exceed"),
        ({"solver": "ddim"}, "unipc"),
        ({"steps": 0}, "steps=0: at least 1"),
        ({"guide_scale": -1.0}, "guide_scale=-1.0: must be >= 0"),
        ({"mode": "swap"}, "animate"),
        ({"color_anchor": "lab"}, "reference"),
    ],
)
def test_bad_options_are_named(tiny, change, message):
    with pytest.raises(ValueError, match=message):
        animate(tiny, driving(9), AnimateOptions(**({"steps": 1} | change)))
