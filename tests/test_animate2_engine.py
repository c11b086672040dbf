"""The Wan-Animate-2 engine against diffusers' modular pipelines, on identical tiny random weights and inputs.

- Frames equal diffusers' WanAnimate2ModularPipeline (CFG with its skipped block) and its distilled pipeline within
  one 8-bit level, over three segments, with the driving video resampled 30 -> 24 fps and letterboxed.
  The only harness change: diffusers builds its flex-attention block mask with torch.compile; here it is built
  eagerly (`_compile=False`, the same mask), so the test does not spend minutes compiling on a CPU.
- The split forward (driving pass once, in-context attention without a mask) against diffusers' transformer.
- Each deliberate deviation on its own: short clips (`fit_short`, and padding that diffusers cannot do), the
  driving window and strengths, progress, cancel, streaming, wrong model.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wan_animate.engine.accel.processors import sdpa_kernel
from wan_animate.engine.animate2 import Animate2DiT, Animate2Inputs, Animate2Options, animate2
from wan_animate.engine.animate2.attention import framewise, merged, sdpa_with_lse
from wan_animate.engine.animate2.framing import plan_framing
from wan_animate.engine.jobs import AnimationCancelled
from wan_animate.engine.segments import zigzag_index
from tests.animate2_inputs import REFERENCE, clip

AREA = 32 * 32  # a 48x40 reference -> 32x16 frames (latent 4x2), its content the 24x16 rows 4..27
SEGMENT, STEPS, PROMPT = 9, 2, "a man dancing"


def diffusers_frames(components, video, fps, distilled: bool, segment: int) -> np.ndarray:
    import diffusers.models.transformers.transformer_wan_animate_2 as model_module
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler
    from diffusers.modular_pipelines import WanAnimate2Blocks, WanAnimate2DistilledBlocks

    eager = model_module.create_block_mask
    model_module.create_block_mask = lambda *a, **k: eager(*a, **{**k, "_compile": False})
    try:
        pipe = (WanAnimate2DistilledBlocks() if distilled else WanAnimate2Blocks()).init_pipeline()
        scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0) if distilled else DPMSolverMultistepScheduler(
            algorithm_type="dpmsolver++", use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=5.0)
        pipe.update_components(transformer=components.transformer, vae=components.vae, scheduler=scheduler,
                               text_encoder=components.text_encoder, tokenizer=components.tokenizer,
                               image_encoder=components.image_encoder)
        components.transformer.block_masks.clear()
        out = pipe(prompt=PROMPT, image=Image.fromarray(REFERENCE), driving_video=[Image.fromarray(f) for f in video],
                   driving_video_fps=fps, fps=24, height=32, width=32, segment_frame_length=segment,
                   num_inference_steps=STEPS, generator=torch.Generator().manual_seed(5), output="videos")
    finally:
        model_module.create_block_mask = eager
    return np.round(np.asarray(out[0]) * 255).astype(np.uint8)


def ours(components, video, fps=None, **overrides):
    settings = dict(prompt=PROMPT, steps=STEPS, segment_frames=SEGMENT, area=AREA, seed=5)
    options = Animate2Options(**{**settings, **overrides})
    return animate2(components, Animate2Inputs(REFERENCE, video, video_fps=fps), options, device="cpu")


@pytest.mark.parametrize("variant", ["full", "distilled"])
def test_matches_diffusers_modular_pipeline(tiny2, variant):
    video = clip(25)  # 25 frames at 30 fps -> 20 at 24 fps -> 3 segments of 9 frames
    result = ours(tiny2, video, fps=30, variant=variant, fit_short=False)
    assert result.segments == 3 and result.frames.shape == (20, 24, 16, 3)
    theirs = diffusers_frames(tiny2, video, 30, variant == "distilled", SEGMENT)
    assert theirs.shape == result.frames.shape
    assert np.abs(result.frames.astype(int) - theirs.astype(int)).max() <= 1


def test_short_clip_uses_the_smallest_segment_that_holds_it(tiny2):
    """fit_short (default) = diffusers run with that shorter segment; diffusers' own padding to 81 frames fails
    below 41 frames, and with 4 frames here it cannot even pad a 9-frame segment."""
    video = clip(7)
    short = ours(tiny2, video, segment_frames=81)
    assert (short.frames.shape[0], short.segment_frames, short.segments) == (7, 9, 1)
    theirs = diffusers_frames(tiny2, video, None, False, 9)
    assert np.abs(short.frames.astype(int) - theirs.astype(int)).max() <= 1
    assert ours(tiny2, clip(2), fit_short=False).frames.shape[0] == 2  # 2 frames padded to 9: zigzag repeats


def test_zigzag_padding_repeats_the_clip_back_and_forth():
    assert [zigzag_index(i, 3) for i in range(9)] == [0, 1, 2, 2, 1, 0, 0, 1, 2]
    assert [zigzag_index(i, 1) for i in range(4)] == [0, 0, 0, 0]


def test_split_forward_equals_diffusers_transformer(tiny2):
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

    import diffusers.models.transformers.transformer_wan_animate_2 as model_module

    model = tiny2.transformer
    g = torch.Generator().manual_seed(0)
    f, h, w = 3, 4, 6
    driving, driving_cond = torch.randn(16, f, h, w, generator=g), torch.randn(20, f, h, w, generator=g)
    latents, cond = torch.randn(16, f + 1, h, w, generator=g), torch.randn(20, f + 1, h, w, generator=g)
    text, text_ref = torch.randn(1, 20, 32, generator=g), torch.randn(1, 20, 32, generator=g)
    image, image_ref = torch.randn(1, 257, 1280, generator=g), torch.randn(1, 257, 1280, generator=g)
    grid = torch.tensor([[f, h // 2, w // 2]])
    cache = WanAnimate2KVCache(len(model.blocks))
    eager = model_module.create_block_mask
    model_module.create_block_mask = lambda *a, **k: eager(*a, **{**k, "_compile": False})
    try:
        with torch.no_grad():
            model([driving], timestep=torch.tensor([999.0]), encoder_hidden_states=[text_ref[0]],
                  encoder_hidden_states_image=image_ref, condition_latents=[driving_cond], kv_cache=cache,
                  kv_cache_mode="extract", seq_len=f * h * w // 4, offset_grid_sizes=grid)
            theirs = {unc: model([latents], timestep=torch.tensor([500.0]), encoder_hidden_states=[text[0]],
                                 encoder_hidden_states_image=image, condition_latents=[cond], kv_cache=cache,
                                 kv_cache_mode="cached", seq_len=(f + 1) * h * w // 4, reference_grid_sizes=grid,
                                 origin_len=(f - 1) * 4 + 1, origin_area=[h * 8, w * 8],
                                 is_uncondtion=unc).sample[0] for unc in (False, True)}
    finally:
        model_module.create_block_mask = eager
    for lse in (None, sdpa_with_lse):
        dit = Animate2DiT(model, lse_kernel=lse)
        with torch.no_grad():
            cached = dit.driving_pass(torch.cat([driving, driving_cond])[None], dit.encode_context(text_ref, image_ref))
            context = dit.encode_context(text, image)
            for unc in (False, True):
                mine = dit(torch.cat([latents, cond])[None], torch.tensor([500.0]), context, cached, unconditional=unc)
                torch.testing.assert_close(mine[0], theirs[unc], atol=2e-6, rtol=1e-5)


def test_in_context_attention_paths_equal_masked_attention():
    g = torch.Generator().manual_seed(1)
    frames, hw, heads, dim = 4, 6, 2, 8
    q, k, v = (torch.randn(1, frames * hw, heads, dim, generator=g) for _ in range(3))
    k_ref, v_ref = (torch.randn(1, (frames - 1) * hw, heads, dim, generator=g) for _ in range(2))
    mask = torch.zeros(frames * hw, (2 * frames - 1) * hw, dtype=torch.bool)
    mask[:, :frames * hw] = True
    for j in range(1, frames):
        mask[j * hw:(j + 1) * hw, (frames + j - 1) * hw:(frames + j) * hw] = True
    keys, values = torch.cat([k, k_ref], 1), torch.cat([v, v_ref], 1)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2), attn_mask=mask).transpose(1, 2)
    torch.testing.assert_close(framewise(q, k, v, k_ref, v_ref, hw, sdpa_kernel), expected)
    torch.testing.assert_close(merged(q, k, v, k_ref, v_ref, hw, sdpa_with_lse), expected)


def test_driving_window_and_strengths(tiny2):
    base = ours(tiny2, clip(9), variant="distilled").frames
    other = clip(9, seed=4)
    assert not np.array_equal(ours(tiny2, other, variant="distilled").frames, base)
    # outside the driving window the driving video is not attended: its content no longer matters
    off = ours(tiny2, clip(9), variant="distilled", driving_end=0.0).frames
    assert np.array_equal(ours(tiny2, other, variant="distilled", driving_end=0.0).frames, off)
    assert not np.array_equal(off, base)
    for name in ("driving_strength", "reference_strength"):
        assert not np.array_equal(ours(tiny2, clip(9), variant="distilled", **{name: 0.5}).frames, base)


def test_progress_cancel_and_streaming(tiny2):
    calls, chunks = [], []

    class Sink:
        def write(self, frames):
            chunks.append(frames.shape)

    result = animate2(tiny2, Animate2Inputs(REFERENCE, clip(17)), Animate2Options(
        variant="distilled", steps=2, segment_frames=SEGMENT, area=AREA), device="cpu", sink=Sink(),
        progress=lambda done, total, **k: calls.append((done, total, k["segment"])))
    assert result.frames is None and result.segments == 2
    assert chunks == [(9, 24, 16, 3), (8, 24, 16, 3)]  # one write per segment, the shared frame written once
    assert calls == [(1, 4, 1), (2, 4, 1), (3, 4, 2), (4, 4, 2)]
    with pytest.raises(AnimationCancelled, match="segment 1/1, step 0"):
        animate2(tiny2, Animate2Inputs(REFERENCE, clip(5)), Animate2Options(variant="distilled", area=AREA),
                 device="cpu", cancel=lambda: True)


def test_framing_follows_the_reference_aspect():
    framing = plan_framing((48, 40), AREA)
    assert (framing.height, framing.width, framing.crop) == (32, 16, (4, 0, 24, 16))
    portrait = plan_framing((1280, 720))
    assert (portrait.height, portrait.width) == (944, 528)  # diffusers: 800x640 area, 16:9 portrait
    with pytest.raises(ValueError, match="at least 16 pixels"):
        plan_framing((10, 40))


def test_bad_inputs_are_named(tiny2):
    from wan_loader.testing.tiny import tiny_components

    with pytest.raises(ValueError, match="not Wan-Animate-2.*Animate-14B weights go to the Wan Animate sampler"):
        animate2(tiny_components(), Animate2Inputs(REFERENCE, clip(5)), device="cpu")
    with pytest.raises(ValueError, match="driving video: expected frames"):
        animate2(tiny2, Animate2Inputs(REFERENCE, np.zeros((3, 8, 8), np.float32)), device="cpu")
    with pytest.raises(ValueError, match="variant='turbo'"):
        animate2(tiny2, Animate2Inputs(REFERENCE, clip(5)), Animate2Options(variant="turbo"), device="cpu")
    with pytest.raises(ValueError, match="solver='unipc': choose one of dpm\\+\\+, euler"):  # Animate-14B's only
        Animate2Options(solver="unipc").resolved()
    with pytest.raises(ValueError, match="guide_scale=-1.0: must be >= 0"):
        Animate2Options(variant="distilled", guide_scale=-1.0).resolved()


def test_auto_attention_takes_the_merged_bf16_path_where_auto_picks_a_quantised_kernel(tiny2, monkeypatch):
    """Forced Hopper code path: there `auto` picks int8 attention, which Animate-2 would run frame by frame (measured
    2.8x slower than one merged cuDNN call at 480p on an H200), so the Animate-2 fast path takes the merged one."""
    import wan_animate.engine.animate2.accel as accel

    monkeypatch.delenv("WAN_ANIMATE_ATTENTION", raising=False)
    monkeypatch.setattr(accel, "choose_attention", lambda device, override=None: "int8_fp16")
    monkeypatch.setattr(accel, "fastest_sdpa", lambda device: "native")
    fast = accel.accelerate_animate2(tiny2.transformer, "cpu")
    assert (fast.attention, fast.describe()["in_context"]) == ("native", "merged")


def test_without_the_log_sum_exp_kernel_the_in_context_attention_goes_frame_by_frame(tiny2, monkeypatch):
    """A torch build whose fused SDPA with log-sum-exp fails its probe (no flash attention) gets the framewise path."""
    import wan_animate.engine.animate2.accel as accel

    monkeypatch.delenv("WAN_ANIMATE_ATTENTION", raising=False)
    monkeypatch.setattr(accel, "lse_runs", lambda device: False)
    fast = accel.accelerate_animate2(tiny2.transformer, "cpu")
    assert fast.lse_kernel is None and fast.describe()["in_context"] == "framewise"
