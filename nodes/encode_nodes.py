"""Text and reference-image encoding with the Wan Animate model's own encoders, as core ComfyUI types.

For the native path (core WanAnimateToVideo + KSampler) with encoders in layouts core's CLIPLoader and
CLIPVisionLoader cannot read (the Diffusers folder, the original Wan-AI .pth files, a Hub download): the model
loaded by Load Wan Animate Model encodes, and the result is a core CONDITIONING / CLIP_VISION_OUTPUT.
"""
from __future__ import annotations

import torch

from .convert import image_to_frames
from .model_nodes import CATEGORY, MODEL_TYPE


def used_on(model, module):
    """`module` on the model's device for one call: borrowed from (pinned) CPU memory and dropped afterwards, or left
    on the GPU when the model lives there (the engine's placement)."""
    from wan_animate.engine.placement import placed

    return placed(module, model.device, restore=model.memory != "gpu", borrow=True)


class WanAnimateTextEncode:
    DESCRIPTION = (
        "Encodes a prompt with the umT5 text encoder of a loaded Wan Animate model, as core CONDITIONING "
        "(padded to 512 tokens with zeros, as the official code does), for core WanAnimateToVideo / KSampler."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("The prompt embedding, for core WanAnimateToVideo's positive or negative input.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Load Wan Animate Model (its text encoder and tokenizer are used)."}),
                "text": ("STRING", {"multiline": True, "dynamicPrompts": False, "default": "", "tooltip": "The prompt. Empty encodes the empty prompt."}),
            }
        }

    def encode(self, model, text):
        from wan_animate.engine.conditioning import encode_text

        components = model.components
        if components.text_encoder is None or components.tokenizer is None:
            raise ValueError("this Wan Animate model was loaded without its text encoder or tokenizer; pick a text_encoder in Load Wan Animate Model.")
        with used_on(model, components.text_encoder) as encoder:
            embedding = encode_text(encoder, components.tokenizer, text, model.device)
        return ([[embedding.float().cpu(), {}]],)


class WanAnimateClipVisionEncode:
    DESCRIPTION = (
        "Encodes the reference image with the CLIP vision encoder of a loaded Wan Animate model (official "
        "preprocessing: the whole image squashed to the CLIP size), as core CLIP_VISION_OUTPUT for WanAnimateToVideo."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    RETURN_NAMES = ("clip_vision_output",)
    OUTPUT_TOOLTIPS = ("CLIP features of the reference, for core WanAnimateToVideo's clip_vision_output input.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Load Wan Animate Model (its CLIP vision encoder is used)."}),
                "image": ("IMAGE", {"tooltip": "The reference image (the first image of the batch is used)."}),
            }
        }

    def encode(self, model, image):
        import comfy.clip_vision

        from wan_animate.engine.conditioning import encode_clip

        components = model.components
        if components.image_encoder is None or components.image_processor is None:
            raise ValueError("this Wan Animate model was loaded without its CLIP vision encoder; pick a clip_vision file in Load Wan Animate Model.")
        pixels = torch.from_numpy(image_to_frames(image[:1], "image")).permute(0, 3, 1, 2).float() / 127.5 - 1
        with used_on(model, components.image_encoder) as encoder:
            hidden = encode_clip(encoder, components.image_processor, pixels.to(model.device))
        output = comfy.clip_vision.Output()
        output["penultimate_hidden_states"] = hidden.float().cpu()
        return (output,)


NODES = {
    "WanAnimateTextEncode": (WanAnimateTextEncode, "Wan Animate Text Encode (for core nodes)"),
    "WanAnimateClipVisionEncode": (WanAnimateClipVisionEncode, "Wan Animate CLIP Vision Encode (for core nodes)"),
}
