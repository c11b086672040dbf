"""The engine against independent implementations, on identical tiny weights and inputs.

- Against diffusers' WanAnimatePipeline (an independent port of the official code), frame for frame, in both modes,
  with 1 and 5 guide frames, CFG on and off, over several segments.
  Where our engine follows the official code instead of diffusers, the difference is fed in explicitly and
  asserted separately:
  * CLIP preprocessing: official squashes the whole frame to 224x224; diffusers' CLIPImageProcessor resizes the
    short side and centre-crops. The pipeline's `encode_image` is given our (official) CLIP features.
  * UniPC schedule: official samples shift(linspace(0.999, 0)); the diffusers scheduler shift(linspace(1, 0.001)).
    The pipeline's scheduler is given the official sigmas.
- The split DiT forward against diffusers' monolithic transformer forward, bit for bit.
- The segment plan and ping-pong padding against a transcription of the official loop.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.engine_helpers import driving as make_driving
from wan_animate.engine import AnimateDiT, AnimateInputs, AnimateOptions, animate
from wan_animate.engine.conditioning import (
    OFFICIAL_NEGATIVE_PROMPT,
    encode_clip,
    to_pixels,
)
from wan_animate.engine.schedulers import make_scheduler, official_sigmas
from wan_animate.engine.segments import pingpong_index, plan_segments

H, W, FACE = 32, 32, 16


def driving(n: int, seed: int = 0) -> AnimateInputs:
    return make_driving(n, H, W, FACE, seed)


def official_schedule_unipc():
    from diffusers import UniPCMultistepScheduler

    class OfficialUniPC(UniPCMultistepScheduler):
        def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None):
            unshifted = np.linspace(0.999, 0.0, num_inference_steps + 1)[:-1]
            super().set_timesteps(device=device, sigmas=unshifted)

    return OfficialUniPC(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)


@pytest.mark.parametrize(
    "mode,guide_frames,guide_scale",
    [("animate", 1, 1.0), ("animate", 5, 2.5), ("replace", 1, 2.5), ("replace", 5, 1.0)],
)
def test_matches_diffusers_pipeline(tiny, mode, guide_frames, guide_scale):
    from diffusers import WanAnimatePipeline

    # diffusers takes the guide frames from the segment output after dropping its guide frames, which breaks
    # when that is shorter than guide_frames (9-frame segments, 5 guide frames): use 13-frame segments there.
    n, prompt, segment = 14, "a man dancing", 9 if guide_frames == 1 else 13
    inputs = driving(n)
    options = AnimateOptions(mode=mode, prompt=prompt, steps=2, guide_scale=guide_scale, seed=7, segment_frames=segment,
                             guide_frames=guide_frames)
    ours = animate(tiny, inputs, options, device="cpu")
    assert ours.segments == 2

    with torch.no_grad():
        clip = encode_clip(tiny.image_encoder, tiny.image_processor, to_pixels(inputs.reference[None])[:, :, 0])
    pipe = WanAnimatePipeline(
        tokenizer=tiny.tokenizer, text_encoder=tiny.text_encoder, vae=tiny.vae, scheduler=official_schedule_unipc(),
        image_processor=tiny.image_processor, image_encoder=tiny.image_encoder, transformer=tiny.transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.encode_image = lambda image, device=None: clip  # the official CLIP preprocessing (see module docstring)
    pil = lambda frames: [Image.fromarray(f) for f in frames]
    theirs = pipe(
        image=Image.fromarray(inputs.reference), pose_video=pil(inputs.pose), face_video=pil(inputs.face),
        background_video=pil(inputs.background) if mode == "replace" else None,
        mask_video=pil(inputs.mask) if mode == "replace" else None,
        prompt=prompt, negative_prompt=OFFICIAL_NEGATIVE_PROMPT, height=H, width=W, segment_frame_length=segment,
        num_inference_steps=2, mode=mode, prev_segment_conditioning_frames=guide_frames, guidance_scale=guide_scale,
        generator=torch.Generator().manual_seed(7), output_type="np",
    ).frames[0]
    theirs = np.round(theirs * 255).astype(np.int16)
    assert ours.frames.shape == theirs.shape == (n, H, W, 3)
    assert np.abs(ours.frames.astype(np.int16) - theirs).max() <= 1


def test_clip_preprocessing_is_the_official_squash_not_diffusers_crop(tiny):
    """Documents the CLIP difference: a wide reference loses its sides under diffusers' crop, not under ours."""
    wide = np.zeros((32, 96, 3), np.uint8)
    wide[:, :20] = 255  # content only on the left side
    pixels = to_pixels(wide[None])[:, :, 0]
    with torch.no_grad():
        ours = encode_clip(tiny.image_encoder, tiny.image_processor, pixels)
        cropped = tiny.image_processor(images=Image.fromarray(wide), return_tensors="pt")
        theirs = tiny.image_encoder(**cropped, output_hidden_states=True).hidden_states[-2]
        black = tiny.image_encoder(**tiny.image_processor(images=Image.fromarray(np.zeros_like(wide)), return_tensors="pt"),
                                   output_hidden_states=True).hidden_states[-2]
    assert torch.allclose(theirs, black)  # the crop never sees the left side
    assert not torch.allclose(ours, black, atol=1e-3)


def test_unipc_schedule_is_official_and_differs_from_diffusers_default():
    from diffusers import UniPCMultistepScheduler

    scheduler, timesteps = make_scheduler("unipc", 20, 5.0)
    expected = 5 * np.linspace(0.999, 0, 21)[:-1] / (1 + 4 * np.linspace(0.999, 0, 21)[:-1])
    np.testing.assert_allclose(scheduler.sigmas[:-1].numpy(), expected, rtol=1e-6)
    assert timesteps.dtype == torch.int64 and timesteps[0] == 999
    stock = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    stock.set_timesteps(20)
    assert not np.allclose(stock.sigmas[:-1].numpy(), expected, rtol=1e-6, atol=0)
    dpm, _ = make_scheduler("dpm++", 20, 5.0)
    np.testing.assert_allclose(dpm.sigmas[:-1].numpy(), official_sigmas("dpm++", 20, 5.0), rtol=1e-6)
    assert dpm.sigmas[0] == 1.0  # official get_sampling_sigmas starts at 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_forward_equals_diffusers_forward(dtype):
    from wan_loader.testing.tiny import tiny_transformer

    model = tiny_transformer().to(dtype)
    g = torch.Generator().manual_seed(0)
    x, pose = torch.randn(1, 36, 3, 8, 8, generator=g), torch.randn(1, 16, 2, 8, 8, generator=g)
    face = torch.rand(1, 3, 5, FACE, FACE, generator=g) * 2 - 1
    text, clip, t = torch.randn(1, 12, 32, generator=g), torch.randn(1, 5, 24, generator=g), torch.tensor([900])
    dit = AnimateDiT(model)
    with torch.no_grad():
        reference = model(hidden_states=x.to(dtype), timestep=t, encoder_hidden_states=text.to(dtype),
                          encoder_hidden_states_image=clip.to(dtype), pose_hidden_states=pose.to(dtype),
                          face_pixel_values=face.to(dtype), return_dict=False)[0]
        context = dit.encode_context(text, clip)
        ours = dit(x, dit.time_embedding(t, context), context, dit.encode_motion(face), dit.embed_pose(pose), dit.rotary(x.shape))
    assert torch.equal(ours, reference)


def official_starts(real_len: int, clip_len: int, refert: int) -> tuple[list[int], int]:
    """Transcription of WanAnimate.get_valid_len + the generate() while loop."""
    real_clip_len = clip_len - refert
    last = (real_len - refert) % real_clip_len
    target = real_len + (0 if last == 0 else real_clip_len - last)
    starts, start = [], 0
    while start + refert < target:
        starts.append(start)
        start += clip_len - refert
    return starts, target


def official_padding(array: list, target_len: int) -> list:
    """Transcription of WanAnimate.inputs_padding."""
    idx, flip, out = 0, False, []
    while len(out) < target_len:
        out.append(array[idx])
        idx = idx - 1 if flip else idx + 1
        if idx == 0 or idx == len(array) - 1:
            flip = not flip
    return out[:target_len]


@pytest.mark.parametrize("clip_len,refert", [(77, 1), (77, 5), (9, 1), (13, 5)])
def test_segment_plan_and_padding_follow_the_official_loop(clip_len, refert):
    for n in list(range(clip_len, clip_len + 40)) + [1000]:
        plan = plan_segments(n, clip_len, refert)
        starts, target = official_starts(n, clip_len, refert)
        assert list(plan.starts) == starts, n
        assert [pingpong_index(i, n) for i in range(target)] == official_padding(list(range(n)), target)
        covered = [i for k in range(plan.num_segments) for i in range(*plan.output_range(k))]
        assert covered == list(range(n))
