"""One Wan-Animate-2 job: reference image + raw driving video -> video, any length, memory bounded by one segment.

Per job: umT5 embeddings of the prompt, the negative prompt (CFG) and the driving-video prompt; CLIP features of
the letterboxed reference and of the first driving frame; the projected contexts; the reference's VAE latent.
Per segment (segment_frames frames, consecutive segments sharing one frame): the driving frames are read,
letterboxed and VAE-encoded; the driving pass fills the K/V cache once (on the device, or in host memory with
`options.driving_cache` "host" or "host_int8": kvcache.py); the segment is denoised against it (the unconditional
CFG pass skips block 9), decoded, cropped back to the reference's aspect and written to the sink.
Only the segment's last decoded frame is kept, to condition the next segment. Optional step caching
(`options.step_cache`, engine.stepcache) reuses the DiT's transformation between steps as for Animate-14B; it starts
afresh where the driving window begins or ends, since the transformation changes at once there.

Deliberate differences from diffusers' modular pipelines (each tested on its own in tests/test_animate2_engine.py):
a clip shorter than one segment is generated with the smallest 4n+1 segment that holds it (`fit_short`; diffusers
pads to a whole segment and fails below 41 frames), padding repeats the clip back and forth as often as needed,
and the driving K/V are stored after rotary embedding (same values, applied once instead of every step).
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from wan_loader import COMPONENT_NAMES

from ..conditioning import (
    LatentCodec,
    encode_clip,
    encode_text,
    frame_mask,
    to_pixels,
    to_uint8,
)
from ..jobs import AnimateResult, StepControl, default_device, execute
from ..memory import CACHE_HOST_INT8, HOST_CACHES, JobShape
from ..parallel.sequence import SequenceParallel, agree, check_ulysses
from ..placement import placed
from ..segments import SegmentPlan, plan_segments, segment_indices, zigzag_index
from ..sinks import FrameSink
from ..stepcache import StepCache
from .accel import Animate2FastPath, eager_path
from .forward import Animate2DiT
from .framing import (
    Framing,
    Resampled,
    letterbox_driving,
    letterbox_reference,
    plan_framing,
    resample_indices,
)
from .kvcache import HostDrivingCache
from .options import GUIDE_FRAMES, Animate2Options
from .schedulers import make_scheduler


class Animate2Inputs:
    """reference: (H, W, 3) uint8 RGB character image. video: driving frames (H, W, 3) uint8 (any sequence, read
    one segment at a time). video_fps: the video's frame rate; when given, it is resampled to the job's fps."""

    def __init__(self, reference: np.ndarray, video, video_fps: float | None = None):
        self.reference = np.asarray(reference)
        self.video = video
        self.video_fps = video_fps

    def check(self) -> None:
        ref = self.reference
        if ref.ndim != 3 or ref.shape[2] not in (3, 4) or ref.dtype != np.uint8:
            raise ValueError(f"reference image: expected (H, W, 3) uint8 RGB, got {ref.shape} {ref.dtype}.")
        if len(self.video) < 1:
            raise ValueError("The driving video has no frames.")
        first = np.asarray(self.video[0])
        if first.ndim != 3 or first.shape[2] not in (3, 4) or first.dtype != np.uint8:
            raise ValueError(f"driving video: expected frames (H, W, 3) uint8 RGB, got {first.shape} {first.dtype}.")
        if self.video_fps is not None and self.video_fps <= 0:
            raise ValueError(f"video_fps={self.video_fps}: must be > 0 (or None to take the frames as they are).")

    def frames_at(self, fps: float):
        """The driving frames as the model sees them in time: resampled to `fps` when the video's rate is known."""
        if self.video_fps is None:
            return self.video
        return Resampled(self.video, resample_indices(len(self.video), self.video_fps, fps))


def animate2(components, inputs: Animate2Inputs, options: Animate2Options | None = None, *,
             device: torch.device | str | None = None, sink: FrameSink | None = None,
             progress: Callable[..., None] | None = None, cancel: Callable[[], bool | None] | None = None,
             fast: Animate2FastPath | None = None) -> AnimateResult:
    """Generate the video for `inputs` with loaded Wan-Animate-2 `components` (transformer: diffusers'
    WanAnimate2Transformer3DModel). sink/progress/cancel behave as in `wan_animate.engine.animate`; `fast` is what
    `accelerate_animate2` chose (attention kernels, block swap), by default torch's SDPA frame by frame.
    options.sequence_parallel "ulysses": every rank of torch.distributed's default group calls animate2() with the
    same arguments and gets the same frames (see wan_animate.engine.parallel).
    Raises ValueError for bad inputs/options (before any work), AnimationCancelled, EngineOutOfMemory."""
    options = (options or Animate2Options()).resolved()
    inputs.check()
    missing = [n for n in COMPONENT_NAMES if getattr(components, n, None) is None]
    if missing:
        raise ValueError(f"The model is missing {', '.join(missing)}; load the full Wan-Animate-2 model.")
    check_is_animate2(components.transformer)
    frames, plan, framing = _layout(inputs, options)
    device = torch.device(device) if device is not None else default_device()
    control = StepControl(plan, options.steps, progress, cancel)
    sequence = None if options.sequence_parallel == "off" else SequenceParallel(
        options.sequence_parallel, components.transformer.config.num_heads)
    check_ulysses(sequence, "Wan-Animate-2")
    return execute(lambda out: _Job(components, inputs.reference, frames, options, plan, framing, device, out,
                                    control, fast, sequence), plan, device, sink)


def _layout(inputs: Animate2Inputs, options: Animate2Options) -> tuple[object, SegmentPlan, Framing]:
    """(driving frames at the job's fps, the segments, the output frame) of a job."""
    frames = inputs.frames_at(options.fps)
    if len(frames) < 1:
        raise ValueError(f"The driving video is too short to give one frame at {options.fps:g} fps.")
    plan = plan_segments(len(frames), options.segment_frames, GUIDE_FRAMES, options.fit_short)
    return frames, plan, plan_framing(inputs.reference.shape[:2], options.area)


def job_shape(inputs: Animate2Inputs, options: Animate2Options) -> JobShape:
    """The segment that a job of these inputs generates: what memory="auto" plans the device memory for."""
    _, plan, framing = _layout(inputs, options.resolved())
    return JobShape(plan.segment_frames, framing.height, framing.width)


def default_job_shape() -> JobShape:
    """What memory="auto" plans for before the first job is known: a default-length segment at the default area
    (diffusers' 800 x 640 portrait)."""
    framing = plan_framing((800, 640))
    return JobShape(Animate2Options().segment_frames, framing.height, framing.width)


def check_is_animate2(transformer) -> None:
    """A clear error when the transformer is another model (e.g. Animate-14B given to the Animate-2 engine)."""
    name = type(transformer).__name__
    if not name.startswith("WanAnimate2"):
        raise ValueError(f"The loaded transformer is {name}, not Wan-Animate-2: the Animate-2 sampler needs "
                         "Wan2.2-Animate-2-14B weights (e.g. Comfy-Org's wan_animate_2_bf16 or "
                         "Wan-AI/Wan2.2-Animate-2-14B-Diffusers). Animate-14B weights go to the Wan Animate sampler.")


class _Job:
    """The state of one Animate-2 job: inputs and options, the per-job encodings, the frame between segments."""

    def __init__(self, components, reference: np.ndarray, frames, options: Animate2Options, plan: SegmentPlan,
                 framing: Framing, device, sink: FrameSink, control: StepControl, fast: Animate2FastPath | None,
                 sequence: SequenceParallel | None):
        self.components, self.frames, self.options, self.plan, self.framing = components, frames, options, plan, framing
        self.device, self.sink, self.control = device, sink, control
        self.reference = letterbox_reference(reference, framing)
        self.fast, self.sequence = fast, sequence
        self.latent_h, self.latent_w = framing.height // 8, framing.width // 8
        self.generator = torch.Generator().manual_seed(options.seed)
        self.step_cache = StepCache(options.step_cache) if options.step_cache > 0 else None
        # filled once per job by run(), on the device
        self.dit: Animate2DiT | None = None
        self.codec: LatentCodec | None = None
        self.context: torch.Tensor | None = None
        self.context_negative: torch.Tensor | None = None  # with CFG only
        self.context_driving: torch.Tensor | None = None
        self.y_ref: torch.Tensor | None = None             # [mask; latent] of the reference frame
        self.host_cache: HostDrivingCache | None = None    # options.driving_cache "host": every segment's K/V
        # updated per segment: the last GUIDE_FRAMES decoded frames, which start the next segment
        self.tail: torch.Tensor | None = None

    def driving_pixels(self, index: int) -> torch.Tensor:
        indices = segment_indices(self.plan, index, len(self.frames), pad=zigzag_index)
        video = np.stack([letterbox_driving(np.asarray(self.frames[i]), self.framing) for i in indices])
        return to_pixels(video, self.device)

    def run(self) -> None:
        parts, options = self.components, self.options
        self.control.check_cancel(0, 0)
        reference = to_pixels(self.reference[None], self.device)
        first = to_pixels(letterbox_driving(np.asarray(self.frames[0]), self.framing)[None], self.device)
        texts = self.encode_prompts()
        with placed(parts.image_encoder, self.device, restore=True, borrow=True):
            clip = encode_clip(parts.image_encoder, parts.image_processor, reference[:, :, 0])
            clip_driving = encode_clip(parts.image_encoder, parts.image_processor, first[:, :, 0])
        with placed(parts.transformer, self.device, options.offload), placed(parts.vae, self.device, options.offload):
            self.dit = (self.fast or eager_path()).dit(parts.transformer, self.sequence)
            self.codec = LatentCodec(parts.vae, tiled=options.tiled_vae, tile=options.vae_tile)
            if options.driving_cache in HOST_CACHES:  # its copies queue behind the block swap's (one host link)
                swap = self.fast.swap if self.fast is not None else None
                self.host_cache = HostDrivingCache(self.device, len(parts.transformer.blocks),
                                                   swap.copies if swap is not None else None,
                                                   int8=options.driving_cache == CACHE_HOST_INT8)
            with torch.no_grad():
                self.context = self.dit.encode_context(texts["prompt"], clip)
                self.context_negative = self.dit.encode_context(texts["negative"], clip) if options.cfg else None
                self.context_driving = self.dit.encode_context(texts["driving"], clip_driving)
                del texts, clip, clip_driving
                ref_mask = frame_mask(1, self.latent_h, self.latent_w, 1, device=self.device).unsqueeze(0)
                self.y_ref = torch.cat([ref_mask, self.codec.encode(reference).float()], dim=1)
                try:
                    for index in range(self.plan.num_segments):
                        self.segment(index)
                finally:
                    if self.host_cache is not None:
                        self.host_cache.close()

    def encode_prompts(self) -> dict[str, torch.Tensor]:
        parts, options = self.components, self.options
        prompts = {"prompt": options.prompt, "driving": options.prompt_ref}
        if options.cfg:
            prompts["negative"] = options.negative_prompt
        with placed(parts.text_encoder, self.device, restore=True, borrow=True):
            return {name: encode_text(parts.text_encoder, parts.tokenizer, text, self.device, clean=False)
                    for name, text in prompts.items()}

    def conditioning(self, index: int) -> torch.Tensor:
        """[mask; latents] of the reference frame, then of the previous segment's last frame followed by blanks."""
        plan = self.plan
        known = 0 if index == 0 else GUIDE_FRAMES
        video = torch.zeros(1, 3, plan.segment_frames, self.framing.height, self.framing.width, device=self.device)
        if known:
            video[:, :, :known] = self.tail.unsqueeze(0)
        mask = frame_mask(plan.latent_frames, self.latent_h, self.latent_w, known, device=self.device)
        latents = self.codec.encode(video).float()
        return agree(self.sequence, torch.cat([self.y_ref, torch.cat([mask.unsqueeze(0), latents], dim=1)], dim=2))

    def driving(self, index: int):
        """The segment's driving K/V cache: driving latents with an all-known mask, through the driving pass."""
        latents = self.codec.encode(self.driving_pixels(index)).float()
        mask = frame_mask(self.plan.latent_frames, self.latent_h, self.latent_w, self.plan.segment_frames,
                          device=self.device).unsqueeze(0)
        return self.dit.driving_pass(agree(self.sequence, torch.cat([latents, mask, latents], dim=1)),
                                     self.context_driving, self.host_cache)

    def predict(self, latents, cond, t, driving) -> torch.Tensor:
        """The DiT's velocity for one step (guided when CFG is on); `driving` None: the driving video not attended."""
        dit, options = self.dit, self.options
        latent_input = torch.cat([latents, cond], dim=1).to(dit.dtype)
        timestep = t.reshape(1).to(self.device)
        strengths = {"driving_strength": options.driving_strength, "reference_strength": options.reference_strength}
        pred = dit(latent_input, timestep, self.context, driving, **strengths).float()
        if options.cfg:
            uncond = dit(latent_input, timestep, self.context_negative, driving, unconditional=True,
                         **strengths).float()
            pred = uncond + options.guide_scale * (pred - uncond)
        return pred

    def segment(self, index: int) -> None:
        plan, options = self.plan, self.options
        self.control.check_cancel(index, 0)
        cond = self.conditioning(index)  # before the K/V cache exists: the VAE's peak and the cache's never meet
        driving = self.driving(index)
        shape = (1, self.components.vae.config.z_dim, plan.latent_frames + 1, self.latent_h, self.latent_w)
        latents = torch.randn(shape, generator=self.generator, dtype=torch.float32).to(self.device)
        scheduler, timesteps = make_scheduler(options.solver, options.steps, options.shift, self.device)
        for step, t in enumerate(timesteps):
            self.control.check_cancel(index, step)
            if self.step_cache and (step == 0 or options.drives(step) != options.drives(step - 1)):
                self.step_cache.begin()  # the driving video enters or leaves: the transformation changes at once
            predict = functools.partial(self.predict, latents, cond, t, driving if options.drives(step) else None)
            pred = self.step_cache(step, len(timesteps), latents, predict) if self.step_cache else predict()
            latents = scheduler.step(pred, t, latents, return_dict=False)[0]
            del pred
            self.control.step_done(index, step)
        del cond, driving
        if self.host_cache is not None:
            self.host_cache.release()  # its device slots: the VAE decodes without them

        frames = self.codec.decode(latents[:, :, 1:])[0]
        del latents
        self.tail = frames[:, -GUIDE_FRAMES:].clone()
        first, end = plan.output_range(index)
        skip = 0 if index == 0 else GUIDE_FRAMES
        if end > first:
            self.sink.write(self.framing.crop_frames(to_uint8(frames[:, skip:skip + end - first])))
