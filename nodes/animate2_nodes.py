"""Wan-Animate-2 sampling: reference image + the raw driving video (no preprocessing) -> video, any length in one
node. A sibling of Wan Animate Sampler: the two models take different inputs, so each node shows only its own."""
from __future__ import annotations

from comfy_api.latest import io

from wan_animate.engine.animate2.options import DRIVING_PROMPT, SOLVERS, Animate2Options
from wan_animate.engine.memory import DRIVING_CACHES

from .convert import ImageBatchSink, audio_for_frames, image_to_frames, image_to_video
from .io_types import CATEGORY, ModelSocket
from .progress import NodeProgress, raise_if_interrupted
from .step_cache import step_cache_input, step_cache_text
from .validation import check_message

AUTO = "auto"
DRIVING_CACHE_TOOLTIP = (
    "Advanced (auto is right for most). Where each segment's driving-video keys/values live (25 GiB for 81 frames at "
    "480p, more at larger sizes). auto: memory=auto puts them on the GPU when they fit there, else in CPU RAM (what "
    "lets 12-32 GB cards run 81-frame segments), and on the GPU with the other memory modes. device: on the GPU. "
    "host: in CPU RAM (pinned; needs that much free RAM), copied to the GPU one layer at a time while the previous "
    "layer computes. host_int8: the same stored as int8, half the RAM and copies, with a small difference in the "
    "frames.")


def _check_options(**values) -> None:
    Animate2Options(**values).resolved()


def options_from(model, prompt, negative_prompt, prompt_ref, steps, guide_scale, shift, scheduler, seed,
                 segment_length, width, height, fps, driving_strength, driving_start, driving_end,
                 reference_strength, tiled_vae, offload=False, step_cache=0.0, driving_cache=AUTO) -> Animate2Options:
    """The node's values as engine options; 0 / "auto" take the loaded variant's defaults."""
    return Animate2Options(
        variant="distilled" if getattr(model, "distilled", False) else "full", prompt=prompt,
        negative_prompt=negative_prompt, prompt_ref=prompt_ref or DRIVING_PROMPT, steps=steps or None,
        guide_scale=guide_scale or None, shift=shift, solver=None if scheduler == AUTO else scheduler, seed=seed,
        segment_frames=segment_length, area=width * height, fps=fps, driving_strength=driving_strength,
        driving_start=driving_start, driving_end=driving_end, reference_strength=reference_strength,
        tiled_vae=tiled_vae, offload=offload, step_cache=step_cache, driving_cache=driving_cache,
    ).resolved()


class WanAnimate2Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimate2Sampler",
            display_name="Wan Animate 2 Sampler",
            category=CATEGORY,
            description=(
                "Generates the video with Wan-Animate-2 (load its weights with Load Wan Animate Model): the character "
                "of the reference image moves like the person in the driving video, taken as it is (no pose or face "
                "preprocessing). Any number of frames in one node, memory bounded by one segment; the prompt sets "
                "viewpoint and background. Full model: CFG, 40 steps; distilled: 10 steps without CFG (auto)."
            ),
            inputs=[
                ModelSocket.Input("model", tooltip="From Load Wan Animate Model with Wan-Animate-2 weights (full or distilled)."),
                io.Image.Input("reference_image", tooltip="The character (core Load Image); its aspect ratio sets the output's."),
                io.Image.Input("driving_video", tooltip="The driving frames as they are (core Load Video -> Get Video Components' images)."),
                io.Float.Input("driving_fps", default=0.0, min=0.0, max=240.0, step=0.001, tooltip="Frame rate of the driving video (link Get Video Components' fps): it is resampled to `fps`. 0: the frames are taken as they are."),
                io.String.Input("prompt", multiline=True, default="", tooltip="Viewpoint, background and scene text, e.g. 'front view, on a beach at sunset'."),
                io.String.Input("negative_prompt", multiline=True, default="", tooltip="Used only with guidance (guide_scale > 1)."),
                io.Int.Input("steps", default=0, min=0, max=200, tooltip="Denoising steps per segment; 0 = the model's own (40 full, 10 distilled)."),
                io.Float.Input("guide_scale", default=0.0, min=0.0, max=20.0, step=0.1, tooltip="Classifier-free guidance; 0 = the model's own (3.0 full, 1.0 = off for distilled). Above 1 costs a second model call per step."),
                io.Float.Input("shift", default=5.0, min=0.0, max=100.0, step=0.1, tooltip="Flow-matching timestep shift (the model's 5.0)."),
                io.Combo.Input("scheduler", options=[AUTO, *SOLVERS], default=AUTO, tooltip="auto: dpm++ for the full model, euler for the distilled one."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="Same seed, same inputs, same video."),
                io.Int.Input("segment_length", default=81, min=5, max=201, step=4, tooltip="Frames per segment (4n+1, the model's 81); longer videos are done in several segments inside this node, sharing one frame. A shorter clip uses the smallest segment that holds it."),
                io.Int.Input("width", default=640, min=16, max=4096, step=16, tooltip="With height, the target area of the output (width x height pixels); the aspect ratio is the reference image's."),
                io.Int.Input("height", default=800, min=16, max=4096, step=16, tooltip="See width (the model's default area is 640x800)."),
                io.Float.Input("fps", default=24.0, min=1.0, max=240.0, step=0.001, tooltip="Frame rate the model generates at (its own 24) and of the output video."),
                io.Float.Input("driving_strength", default=1.0, min=0.0, max=2.0, step=0.05, tooltip="How strongly the driving video's motion is followed (1 = as trained)."),
                io.Float.Input("driving_start", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="Fraction of the steps from which the driving video is attended."),
                io.Float.Input("driving_end", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Fraction of the steps after which the driving video is no longer attended."),
                io.Float.Input("reference_strength", default=1.0, min=0.0, max=2.0, step=0.05, tooltip="How strongly the reference image is kept (1 = as trained)."),
                io.String.Input("prompt_ref", default="", tooltip="Text of the driving-video pass; empty: the model's own."),
                io.Boolean.Input("tiled_vae", default=False, tooltip="Encode/decode in spatial tiles: lower peak memory at large sizes."),
                io.Audio.Input("audio", optional=True, tooltip="The driving video's sound (Get Video Components' audio): the video output carries it, fitted to the frames."),
                step_cache_input(),
                io.Combo.Input("driving_cache", options=list(DRIVING_CACHES), default=AUTO, optional=True,
                               tooltip=DRIVING_CACHE_TOOLTIP),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="The generated frames (core Create Video, Preview)."),
                io.Video.Output(display_name="video", tooltip="The frames as a VIDEO at `fps`, with the audio input's sound (for core Save Video)."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the video."),
            ],
        )

    @classmethod
    def validate_inputs(cls, segment_length=None, driving_start=None, driving_end=None, step_cache=0.0) -> bool | str:
        if None in (segment_length, driving_start, driving_end):  # linked: known only when the node runs
            return True
        return check_message(_check_options, segment_frames=segment_length, driving_start=driving_start,
                             driving_end=driving_end, step_cache=step_cache)

    @classmethod
    def execute(cls, model, reference_image, driving_video, driving_fps, prompt, negative_prompt, steps, guide_scale,
                shift, scheduler, seed, segment_length, width, height, fps, driving_strength, driving_start,
                driving_end, reference_strength, prompt_ref, tiled_vae, audio=None, step_cache=0.0,
                driving_cache=AUTO) -> io.NodeOutput:
        from wan_animate.engine.animate2 import Animate2Inputs, animate2
        from wan_animate.engine.animate2.run import job_shape

        if model.components.family != "animate2":
            raise ValueError("This model is Wan2.2-Animate-14B: use Wan Animate Sampler (with Wan Animate Preprocess), "
                             "or load Wan-Animate-2 weights (e.g. wan_animate_2_bf16.safetensors) for this node.")
        options = options_from(model.components, prompt, negative_prompt, prompt_ref, steps, guide_scale, shift,
                               scheduler, seed, segment_length, width, height, fps, driving_strength, driving_start,
                               driving_end, reference_strength, tiled_vae,
                               offload=model.memory == "offload_idle", step_cache=step_cache,
                               driving_cache=driving_cache)
        inputs = Animate2Inputs(image_to_frames(reference_image[:1], "reference_image")[0],
                                image_to_frames(driving_video, "driving_video"), video_fps=driving_fps or None)
        fast = model.fast
        if model.managed is not None:  # memory="auto": room made through ComfyUI, weights placed for this job
            model.managed.prepare(job_shape(inputs, options), options.driving_cache)
            fast = fast.with_swap(model.managed.swap)
            options.tiled_vae, options.vae_tile = model.managed.plan.vae_tiling(options.tiled_vae, options.vae_tile)
            options.driving_cache = model.managed.plan.driving_cache
        count = len(inputs.frames_at(options.fps))
        sound = audio_for_frames(audio, count, fps) if audio is not None else None  # checked before the long work
        raise_if_interrupted()
        sink = ImageBatchSink(count)
        result = animate2(model.components, inputs, options, device=model.device, sink=sink, progress=NodeProgress(),
                          cancel=raise_if_interrupted, fast=fast)
        images = sink.result()
        return io.NodeOutput(images, image_to_video(images, fps, sound), float(fps),
                             ui=step_cache_text(result, options.steps) if step_cache > 0 else None)


NODES = [WanAnimate2Sampler]
