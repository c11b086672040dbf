"""Sampling: animate or replace any length of video in one node, frames out as IMAGE and as VIDEO with fps."""
from __future__ import annotations

from wan_animate.engine.options import COLOR_ANCHORS, LORA_MODES
from wan_animate.engine.schedulers import SOLVERS

from .convert import ImageBatchSink, image_to_frames, image_to_video, mask_to_array
from .model_nodes import CATEGORY, LORAS_TYPE, MODEL_TYPE
from .progress import NodeProgress, raise_if_interrupted


class WanAnimateSampler:
    DESCRIPTION = (
        "Generates the video with Wan2.2-Animate by the official algorithm: any number of frames in one node (segments "
        "of segment_length frames chained by guide frames, memory bounded by one segment), animate or replace mode, "
        "LoRAs, optional colour anchoring to the reference against drift between segments."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "VIDEO", "FLOAT")
    RETURN_NAMES = ("frames", "video", "fps")
    OUTPUT_TOOLTIPS = (
        "The generated frames (one per pose frame).",
        "The same frames as a VIDEO at `fps` (for core Save Video).",
        "Frame rate of the video.",
    )
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Load Wan Animate Model."}),
                "reference_image": ("IMAGE", {"tooltip": "The character (Wan Animate Preprocess' reference_image, or any image of the pose video's size)."}),
                "pose_video": ("IMAGE", {"tooltip": "Skeleton frames; their count is the output length and their size the output size (divisible by 16)."}),
                "face_video": ("IMAGE", {"tooltip": "Face crops, one per pose frame (resized to the model's face size)."}),
                "mode": (["animate", "replace"], {"default": "animate", "tooltip": "replace needs background_video and character_mask."}),
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "What happens in the video. Empty: the official default prompt."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "Used only when guide_scale > 1. Empty: the official negative prompt."}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 200, "tooltip": "Denoising steps per segment (official 20; 4-6 with a step-distill LoRA)."}),
                "guide_scale": ("FLOAT", {"default": 1.0, "min": 1.0, "max": 20.0, "step": 0.1, "tooltip": "Classifier-free guidance; 1 = off (one model call per step, official default). Above 1 costs two calls."}),
                "shift": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 100.0, "step": 0.1, "tooltip": "Flow-matching timestep shift (official 5.0)."}),
                "scheduler": (list(SOLVERS), {"default": "unipc", "tooltip": "Flow-matching solver: unipc (official), dpm++ or euler."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "Same seed, same inputs, same video."}),
                "segment_length": ("INT", {"default": 77, "min": 5, "max": 201, "step": 4, "tooltip": "Frames generated per segment (4n+1, official 77). Longer videos are done in several segments inside this node, with memory bounded by one segment."}),
                "guide_frames": (["1", "5"], {"default": "1", "tooltip": "Frames carried from one segment into the next (official 1 or 5); 5 gives smoother joins."}),
                "color_anchor": (list(COLOR_ANCHORS), {"default": "off", "tooltip": "Match each segment's colour and brightness to the reference image or to the first segment: stops drift in long videos."}),
                "color_anchor_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "How strongly colour anchoring pulls (1 = fully)."}),
                "tiled_vae": ("BOOLEAN", {"default": False, "tooltip": "Encode/decode in spatial tiles: lower peak memory at large sizes, slightly slower."}),
                "lora_mode": (list(LORA_MODES), {"default": "runtime", "tooltip": "How LoRAs are applied for this run: runtime (hooks, works on fp8 weights, no weight copy) or merge (into the weights, slightly faster steps); the weights are restored afterwards either way."}),
                "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 240.0, "step": 0.001, "tooltip": "Frame rate of the output video (link Wan Animate Preprocess' fps)."}),
            },
            "optional": {
                "background_video": ("IMAGE", {"tooltip": "Replace mode: the driving frames with the character removed (Wan Animate Preprocess)."}),
                "character_mask": ("MASK", {"tooltip": "Replace mode: 1 where the new character goes, one mask per frame (from Wan Animate Preprocess or any segmenter)."}),
                "loras": (LORAS_TYPE, {"tooltip": "From Wan Animate LoRA nodes."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, segment_length):
        if segment_length < 5 or (segment_length - 1) % 4:
            lower = max(5, (segment_length - 1) // 4 * 4 + 1)
            return f"segment_length={segment_length} must be 4n+1 (the VAE packs 4 frames per latent): use {lower} or {lower + 4}."
        return True

    def sample(self, model, reference_image, pose_video, face_video, mode, prompt, negative_prompt, steps, guide_scale,
               shift, scheduler, seed, segment_length, guide_frames, color_anchor, color_anchor_strength, tiled_vae, lora_mode, fps,
               background_video=None, character_mask=None, loras=()):
        from wan_animate.engine import AnimateInputs, AnimateOptions, animate

        pose = image_to_frames(pose_video, "pose_video")
        background = mask = None
        if mode == "replace":
            if background_video is None or character_mask is None:
                raise ValueError("replace mode needs background_video and character_mask (connect them from Wan Animate Preprocess, or use mode 'animate').")
            background = image_to_frames(background_video, "background_video")
            mask = mask_to_array(character_mask, frames=len(pose), name="character_mask")
        inputs = AnimateInputs(
            reference=image_to_frames(reference_image[:1], "reference_image")[0],
            pose=pose,
            face=image_to_frames(face_video, "face_video"),
            background=background,
            mask=mask,
        )
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
            offload=model.memory != "gpu",
            lora_mode=lora_mode,
        )
        raise_if_interrupted()
        sink = ImageBatchSink(len(pose))
        animate(
            model.components, inputs, options, loras=[(lora.path, lora.strength) for lora in loras],
            device=model.device, sink=sink, progress=NodeProgress(), cancel=raise_if_interrupted,
            block_runner=model.block_runner,
        )
        images = sink.result()
        return (images, image_to_video(images, fps), float(fps))


NODES = {
    "WanAnimateSampler": (WanAnimateSampler, "Wan Animate Sampler"),
}
