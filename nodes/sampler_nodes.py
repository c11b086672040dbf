"""Sampling: animate or replace any length of video in one node, frames out as IMAGE and as VIDEO with fps."""
from __future__ import annotations

from comfy_api.latest import io

from wan_animate.engine.inputs import check_replace_signals
from wan_animate.engine.memory import JobShape
from wan_animate.engine.options import COLOR_ANCHORS, LORA_MODES, AnimateOptions
from wan_animate.modes import MODES
from wan_animate.engine.schedulers import SOLVERS

from .convert import ImageBatchSink, audio_for_frames, image_to_frames, image_to_video, mask_to_array
from .io_types import CATEGORY, LorasSocket, ModelSocket
from .progress import NodeProgress, raise_if_interrupted
from .step_cache import step_cache_input, step_cache_text
from .validation import NOT_CONNECTED, as_int, check_message


def _check_options(**values) -> None:
    AnimateOptions(**values).check()


class WanAnimateSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimateSampler",
            display_name="Wan Animate Sampler",
            category=CATEGORY,
            description=(
                "Generates the video with Wan2.2-Animate by the official algorithm: any number of frames in one node "
                "(segments of segment_length frames chained by guide frames, memory bounded by one segment), animate "
                "or replace mode, LoRAs, optional colour anchoring to the reference against drift between segments."
            ),
            inputs=[
                ModelSocket.Input("model", tooltip="From Load Wan Animate Model."),
                io.Image.Input("reference_image", tooltip="The character (Wan Animate Preprocess' reference_image, or any image of the pose video's size)."),
                io.Image.Input("pose_video", tooltip="Skeleton frames; their count is the output length and their size the output size (divisible by 16)."),
                io.Image.Input("face_video", tooltip="Face crops, one per pose frame (resized to the model's face size)."),
                io.Combo.Input("mode", options=list(MODES), default="animate", tooltip="replace needs background_video and character_mask."),
                io.String.Input("prompt", multiline=True, default="", tooltip="What happens in the video. Empty: the official default prompt."),
                io.String.Input("negative_prompt", multiline=True, default="", tooltip="Used only when guide_scale > 1. Empty: the official negative prompt."),
                io.Int.Input("steps", default=20, min=1, max=200, tooltip="Denoising steps per segment (official 20; 4-6 with a step-distill LoRA)."),
                io.Float.Input("guide_scale", default=1.0, min=1.0, max=20.0, step=0.1, tooltip="Classifier-free guidance; 1 = off (one model call per step, official default). Above 1 costs two calls."),
                io.Float.Input("shift", default=5.0, min=0.0, max=100.0, step=0.1, tooltip="Flow-matching timestep shift (official 5.0)."),
                io.Combo.Input("scheduler", options=list(SOLVERS), default="unipc", tooltip="Flow-matching solver: unipc (official), dpm++ or euler."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="Same seed, same inputs, same video."),
                io.Int.Input("segment_length", default=77, min=5, max=201, step=4, tooltip="Frames generated per segment (4n+1, official 77). Longer videos are done in several segments inside this node, with memory bounded by one segment."),
                io.Combo.Input("guide_frames", options=["1", "5"], default="1", tooltip="Frames carried from one segment into the next (official 1 or 5); 5 gives smoother joins."),
                io.Combo.Input("color_anchor", options=list(COLOR_ANCHORS), default="off", tooltip="Match each segment's colour and brightness to the reference image or to the first segment: stops drift in long videos."),
                io.Float.Input("color_anchor_strength", default=1.0, min=0.0, max=1.0, step=0.05, tooltip="How strongly colour anchoring pulls (1 = fully)."),
                io.Boolean.Input("tiled_vae", default=False, tooltip="Encode/decode in spatial tiles: lower peak memory at large sizes, slightly slower."),
                io.Combo.Input("lora_mode", options=list(LORA_MODES), default="runtime", tooltip="How LoRAs are applied for this run: runtime (hooks, works on fp8 weights, no weight copy) or merge (into the weights, slightly faster steps); the weights are restored afterwards either way."),
                io.Float.Input("fps", default=30.0, min=1.0, max=240.0, step=0.001, tooltip="Frame rate of the output video (link Wan Animate Preprocess' fps)."),
                io.Image.Input("background_video", optional=True, tooltip="Replace mode: the driving frames with the character removed (Wan Animate Preprocess)."),
                io.Mask.Input("character_mask", optional=True, tooltip="Replace mode: 1 where the new character goes, one mask per frame (from Wan Animate Preprocess or any segmenter)."),
                LorasSocket.Input("loras", optional=True, tooltip="From Wan Animate LoRA nodes."),
                io.Audio.Input("audio", optional=True, tooltip="The driving video's sound (core Get Video Components' audio): the video output carries it, cut or padded with silence to the frames' length, from the first frame on."),
                step_cache_input(),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="The generated frames (one per pose frame)."),
                io.Video.Output(display_name="video", tooltip="The same frames as a VIDEO at `fps`, with the audio input's sound when connected (for core Save Video)."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the video."),
            ],
        )

    @classmethod
    def validate_inputs(cls, segment_length=None, guide_frames=None, mode=None, background_video=NOT_CONNECTED,
                        character_mask=NOT_CONNECTED, step_cache=0.0) -> bool | str:
        segments = check_message(_check_options, segment_frames=segment_length, guide_frames=as_int(guide_frames),
                                 step_cache=step_cache)
        if segments is not True or mode is None:
            return segments
        return check_message(check_replace_signals, mode=mode, has_background=background_video is not NOT_CONNECTED,
                             has_mask=character_mask is not NOT_CONNECTED)

    @classmethod
    def execute(cls, model, reference_image, pose_video, face_video, mode, prompt, negative_prompt, steps, guide_scale,
                shift, scheduler, seed, segment_length, guide_frames, color_anchor, color_anchor_strength, tiled_vae,
                lora_mode, fps, background_video=None, character_mask=None, loras=(), audio=None,
                step_cache=0.0) -> io.NodeOutput:
        from wan_animate.engine import AnimateInputs, animate

        pose = image_to_frames(pose_video, "pose_video")
        sound = audio_for_frames(audio, len(pose), fps) if audio is not None else None  # checked before the long work
        background = mask = None
        check_replace_signals(mode, background_video is not None, character_mask is not None)
        if mode == "replace":
            background = image_to_frames(background_video, "background_video")
            mask = mask_to_array(character_mask, frames=len(pose), name="character_mask")
        inputs = AnimateInputs(
            reference=image_to_frames(reference_image[:1], "reference_image")[0],
            pose=pose,
            face=image_to_frames(face_video, "face_video"),
            background=background,
            mask=mask,
        )
        runner, vae_tile = model.block_runner, 256
        if model.managed is not None:  # memory="auto": room made through ComfyUI, weights placed for this job
            runner = model.managed.prepare(JobShape(segment_length, *pose.shape[1:3]))
            tiled_vae, vae_tile = model.managed.plan.vae_tiling(tiled_vae, vae_tile)
        options = AnimateOptions(
            mode=mode,
            prompt=prompt or None,
            negative_prompt=negative_prompt or None,
            steps=steps,
            guide_scale=guide_scale,
            shift=shift,
            solver=scheduler,
            seed=seed,
            segment_frames=segment_length,
            guide_frames=int(guide_frames),
            color_anchor=color_anchor,
            color_anchor_strength=color_anchor_strength,
            tiled_vae=tiled_vae,
            vae_tile=vae_tile,
            offload=model.memory == "offload_idle",
            lora_mode=lora_mode,
            step_cache=step_cache,
        )
        raise_if_interrupted()
        sink = ImageBatchSink(len(pose))
        result = animate(
            model.components, inputs, options, loras=[(lora.path, lora.strength) for lora in loras],
            device=model.device, sink=sink, progress=NodeProgress(), cancel=raise_if_interrupted,
            block_runner=runner,
        )
        images = sink.result()
        return io.NodeOutput(images, image_to_video(images, fps, sound), float(fps),
                             ui=step_cache_text(result, steps) if step_cache > 0 else None)


NODES = [WanAnimateSampler]
