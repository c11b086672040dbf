"""One animation job: the official Wan2.2-Animate algorithm over any number of segments, with bounded memory.

Per job (once): umT5 embeddings of the prompt (and negative prompt), CLIP features and VAE latent of the reference,
the projected cross-attention contexts, the motion tokens of the blank face (CFG's unconditional face).
Per segment: the segment's driving frames go to the device, are encoded (pose latents, face motion tokens,
conditioning latents with the 4-channel mask), the latents are denoised, decoded, optionally colour-anchored,
and leave the device for the sink. Only the last `guide_frames` decoded frames are kept to guide the next
segment, so device and host memory do not grow with the video length.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from wan_loader import COMPONENT_NAMES
from wan_loader.lora import apply_loras, merge_loras

from .color import ColorStats, anchor_colors, color_stats
from .conditioning import (
    OFFICIAL_NEGATIVE_PROMPT,
    OFFICIAL_PROMPT,
    LatentCodec,
    background_mask,
    encode_clip,
    encode_text,
    fit_reference,
    frame_mask,
    to_pixels,
    to_uint8,
)
from .forward import AnimateDiT, BlockRunner
from .inputs import AnimateInputs, gather, gather_face, gather_mask, mask_scale
from .jobs import AnimateResult, StepControl, default_device, execute
from .options import AnimateOptions
from .parallel.attention import parallel_self_attention
from .parallel.sequence import SequenceParallel, agree
from .placement import placed
from .schedulers import make_scheduler
from .segments import SegmentPlan, plan_segments
from .sinks import FrameSink
from .stepcache import StepCache


def animate(
    components,
    inputs: AnimateInputs,
    options: AnimateOptions | None = None,
    *,
    device: torch.device | str | None = None,
    sink: FrameSink | None = None,
    progress: Callable[..., None] | None = None,
    cancel: Callable[[], bool | None] | None = None,
    loras: Sequence[tuple[object, float]] = (),
    block_runner: BlockRunner | None = None,
) -> AnimateResult:
    """Generate the video for `inputs` with the loaded `components` (wan_loader.model.components.WanAnimateComponents).

    sink: receives the uint8 frames as each segment is decoded; without one they are collected and returned.
    progress: called after every sampling step as `progress(done, total, step=, steps=, segment=, segments=)`
        (done/total count steps over the whole job; step and segment are 1-based).
    cancel: checked before every step; returning True stops the job with AnimationCancelled (it may also raise
        its own exception, e.g. ComfyUI's interrupt, which is passed through after the same clean-up).
    loras: [(path | wan_loader LoraWeights, strength), ...] for this job only: hooked in at run time or merged
        (options.lora_mode) and taken out again afterwards, also after an error; the weights end unchanged.
    options.sequence_parallel "ulysses" | "ring": every rank of torch.distributed's default group (torchrun) calls
        animate() with the same arguments and gets the same frames; the DiT's tokens are split across the ranks.
    Raises ValueError for bad inputs/options (before any work), AnimationCancelled, EngineOutOfMemory.
    """
    options = options or AnimateOptions()
    options.check()
    inputs.check(options.mode)
    missing = [n for n in COMPONENT_NAMES if getattr(components, n, None) is None]
    if missing:
        raise ValueError(f"The model is missing {', '.join(missing)}; load the full Wan2.2-Animate model.")
    if type(components.transformer).__name__.startswith("WanAnimate2"):
        raise ValueError("The loaded transformer is Wan-Animate-2, not Wan2.2-Animate-14B: use the Animate-2 "
                         "sampler (wan_animate.engine.animate2), which takes the raw driving video.")
    plan = plan_segments(len(inputs), options.segment_frames, options.guide_frames, options.fit_short)
    device = torch.device(device) if device is not None else default_device()
    control = StepControl(plan, options.steps, progress, cancel)
    sequence = None if options.sequence_parallel == "off" else SequenceParallel(
        options.sequence_parallel, components.transformer.config.num_attention_heads)
    return execute(lambda out: _Job(components, inputs, options, plan, device, out, control, loras, block_runner,
                                    sequence), plan, device, sink)


@contextlib.contextmanager
def job_loras(transformer, loras: list, mode: str):
    """LoRAs on `transformer` for the duration of the block only (wan_loader.lora), merged or as run-time hooks."""
    if not loras:
        yield
        return
    handle = merge_loras(transformer, loras, keep_original=True) if mode == "merge" else apply_loras(transformer, loras)
    with handle:
        yield


class _Job:
    """The state of one animate() call: inputs and options, the per-job encodings, the guide frames between segments."""

    def __init__(self, components, inputs: AnimateInputs, options: AnimateOptions, plan: SegmentPlan, device,
                 sink: FrameSink, control: StepControl, loras, block_runner, sequence: SequenceParallel | None):
        self.components = components
        self.inputs = inputs
        self.options = options
        self.plan = plan
        self.device = device
        self.sink = sink
        self.control = control
        self.loras = list(loras)
        self.block_runner = block_runner
        self.sequence = sequence
        self.height, self.width = inputs.size
        self.latent_h, self.latent_w = self.height // 8, self.width // 8
        self.generator = torch.Generator().manual_seed(options.seed)
        self.mask_scale = mask_scale(inputs.mask) if options.mode == "replace" else 1.0
        self.step_cache = StepCache(options.step_cache) if options.step_cache > 0 else None
        # filled once per job by run() / encode_prompts() / prepare(), on the device
        self.dit: AnimateDiT | None = None
        self.codec: LatentCodec | None = None
        self.text: torch.Tensor | None = None              # umT5 embeddings, dropped once projected into the contexts
        self.text_negative: torch.Tensor | None = None
        self.context: torch.Tensor | None = None
        self.context_negative: torch.Tensor | None = None  # with CFG only
        self.y_ref: torch.Tensor | None = None             # [mask; latent] of the reference frame
        self.anchor: ColorStats | None = None               # colour statistics the frames are anchored to
        self.motion_negative: torch.Tensor | None = None   # blank-face motion tokens, with CFG only
        # updated per segment: the last guide frames decoded, which start the next segment
        self.tail: torch.Tensor | None = None

    def run(self) -> None:
        parts, options = self.components, self.options
        self.control.check_cancel(0, 0)
        reference = to_pixels(fit_reference(np.asarray(self.inputs.reference), self.height, self.width)[None])
        self.encode_prompts()
        with placed(parts.image_encoder, self.device, restore=True, borrow=True):
            clip = encode_clip(parts.image_encoder, parts.image_processor, reference[:, :, 0].to(self.device))
        with placed(parts.transformer, self.device, options.offload), placed(parts.vae, self.device, options.offload):
            self.dit = AnimateDiT(parts.transformer, self.block_runner, self.sequence)
            self.codec = LatentCodec(parts.vae, tiled=options.tiled_vae, tile=options.vae_tile,
                                     fast=options.vae_fast_options())
            with job_loras(parts.transformer, self.loras, options.lora_mode), torch.no_grad(), \
                    parallel_self_attention(parts.transformer.blocks, self.sequence):
                self.prepare(reference.to(self.device), clip)
                for index in range(self.plan.num_segments):
                    self.segment(index)

    def encode_prompts(self) -> None:
        parts, options = self.components, self.options
        prompt = options.prompt or OFFICIAL_PROMPT
        negative = options.negative_prompt or OFFICIAL_NEGATIVE_PROMPT
        with placed(parts.text_encoder, self.device, restore=True, borrow=True):
            self.text = encode_text(parts.text_encoder, parts.tokenizer, prompt, self.device)
            if options.cfg:
                self.text_negative = encode_text(parts.text_encoder, parts.tokenizer, negative, self.device)

    def prepare(self, reference: torch.Tensor, clip: torch.Tensor) -> None:
        """Work shared by all segments and steps."""
        self.context = agree(self.sequence, self.dit.encode_context(self.text, clip))
        self.context_negative = None
        if self.options.cfg:
            self.context_negative = agree(self.sequence, self.dit.encode_context(self.text_negative, clip))
        self.text = self.text_negative = None
        ref_latent = self.codec.encode(reference)
        ref_mask = frame_mask(1, self.latent_h, self.latent_w, 1, device=self.device).unsqueeze(0)
        self.y_ref = torch.cat([ref_mask, ref_latent.float()], dim=1)
        if self.options.color_anchor == "reference":
            self.anchor = color_stats(reference[0])
        if self.options.cfg:
            size = self.dit.config.motion_encoder_size
            blank = -torch.ones(1, 3, self.plan.segment_frames, size, size, device=self.device)
            self.motion_negative = agree(self.sequence,
                                         self.dit.encode_motion(blank, self.options.motion_encode_batch))

    def conditioning(self, index: int) -> torch.Tensor:
        """[4-channel mask; VAE latents] of the reference frame followed by the segment's guide/background video."""
        plan, known = self.plan, (0 if index == 0 else self.plan.guide_frames)
        shape = (plan.latent_frames, self.latent_h, self.latent_w)
        if self.options.mode == "replace":
            video = to_pixels(gather(self.inputs.background, plan, index), self.device)
            character = torch.from_numpy(gather_mask(self.inputs.mask, plan, index, self.mask_scale)).to(self.device)
            pixel_mask = background_mask(character, self.latent_h, self.latent_w)
            mask = frame_mask(*shape, known, pixel_mask, device=self.device)
        else:
            mask = frame_mask(*shape, known, device=self.device)
            # without guide frames the video is all zeros: its latents are the same in every job of this size
            video = torch.zeros(1, 3, plan.segment_frames, self.height, self.width, device=self.device) if known \
                else None
        if known:
            video[:, :, :known] = self.tail.unsqueeze(0)
        latents = (self.codec.encode(video) if video is not None else
                   self.codec.encode_zeros(plan.segment_frames, self.height, self.width, self.device)).float()
        return torch.cat([self.y_ref, torch.cat([mask.unsqueeze(0), latents], dim=1)], dim=2)

    def predict(self, latents, cond, t, motion, pose, rotary) -> torch.Tensor:
        """The DiT's prediction for one step (guided when CFG is on)."""
        dit, options = self.dit, self.options
        latent_input = torch.cat([latents, cond], dim=1)
        embedding = dit.time_embedding(t.reshape(1).to(self.device), self.context)
        pred = dit(latent_input, embedding, self.context, motion, pose, rotary).float()
        if options.cfg:
            uncond = dit(latent_input, embedding, self.context_negative, self.motion_negative, pose, rotary).float()
            pred = uncond + options.guide_scale * (pred - uncond)
        return pred

    def segment(self, index: int) -> None:
        plan, options, dit = self.plan, self.options, self.dit
        self.control.check_cancel(index, 0)
        pose_latents = self.codec.encode(to_pixels(gather(self.inputs.pose, plan, index), self.device))
        pose = dit.embed_pose(pose_latents)
        size = dit.config.motion_encoder_size
        face = to_pixels(gather_face(self.inputs.face, plan, index, size), self.device)
        motion = dit.encode_motion(face, options.motion_encode_batch)
        cond = self.conditioning(index)
        pose, motion, cond = (agree(self.sequence, t) for t in (pose, motion, cond))
        del pose_latents, face

        shape = (1, self.components.vae.config.z_dim, plan.latent_frames + 1, self.latent_h, self.latent_w)
        latents = torch.randn(shape, generator=self.generator, dtype=torch.float32).to(self.device)
        scheduler, timesteps = make_scheduler(options.solver, options.steps, options.shift, self.device)
        rotary = dit.rotary((1, latents.shape[1] + cond.shape[1]) + shape[2:])
        if self.step_cache:
            self.step_cache.begin()
        for step, t in enumerate(timesteps):
            self.control.check_cancel(index, step)
            predict = functools.partial(self.predict, latents, cond, t, motion, pose, rotary)
            pred = self.step_cache(step, len(timesteps), latents, predict) if self.step_cache else predict()
            latents = scheduler.step(pred, t, latents, return_dict=False)[0]
            del pred
            self.control.step_done(index, step)
        del cond, pose, motion, rotary

        frames = self.codec.decode(latents[:, :, 1:])[0]
        del latents
        if options.color_anchor == "first_segment" and self.anchor is None:
            self.anchor = color_stats(frames)
        elif self.anchor is not None:
            frames = anchor_colors(frames, self.anchor, options.color_anchor_strength)
        self.tail = frames[:, -plan.guide_frames :].clone()
        first, end = plan.output_range(index)
        skip = 0 if index == 0 else plan.guide_frames
        if end > first:
            self.sink.write(to_uint8(frames[:, skip : skip + end - first]))
