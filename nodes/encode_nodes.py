"""Text and reference-image encoding with the Wan Animate model's own encoders, as core ComfyUI types.

For the native path (core WanAnimateToVideo + KSampler) with encoders in layouts core's CLIPLoader and
CLIPVisionLoader cannot read (the Diffusers folder, the original Wan-AI .pth files, a Hub download): the model
loaded by Load Wan Animate Model encodes, and the result is a core CONDITIONING / CLIP_VISION_OUTPUT.
"""
from __future__ import annotations

import torch
from comfy_api.latest import io

from .convert import image_to_frames
from .io_types import CATEGORY, ModelSocket


def used_on(model, module):
    """`module` on the model's device for one call: borrowed from (pinned) CPU memory and dropped afterwards, or left
    on the GPU when the model lives there (the engine's placement)."""
    from wan_animate.engine.placement import placed

    return placed(module, model.device, restore=model.memory != "gpu", borrow=True)


class WanAnimateTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimateTextEncode",
            display_name="Wan Animate Text Encode (for core nodes)",
            category=CATEGORY,
            description=(
                "Encodes a prompt with the umT5 text encoder of a loaded Wan Animate model, as core CONDITIONING "
                "(padded to 512 tokens with zeros, as the official code does), for core WanAnimateToVideo / KSampler."
            ),
            inputs=[
                ModelSocket.Input("model", tooltip="From Load Wan Animate Model (its text encoder and tokenizer are used)."),
                io.String.Input("text", multiline=True, dynamic_prompts=False, default="", tooltip="The prompt. Empty encodes the empty prompt."),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning", tooltip="The prompt embedding, for core WanAnimateToVideo's positive or negative input.")],
        )

    @classmethod
    def execute(cls, model, text) -> io.NodeOutput:
        from wan_animate.engine.conditioning import encode_text

        components = model.components
        if components.text_encoder is None or components.tokenizer is None:
            raise ValueError("this Wan Animate model was loaded without its text encoder or tokenizer; pick a text_encoder in Load Wan Animate Model.")
        with used_on(model, components.text_encoder) as encoder:
            embedding = encode_text(encoder, components.tokenizer, text, model.device)
        return io.NodeOutput([[embedding.float().cpu(), {}]])


class WanAnimateClipVisionEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimateClipVisionEncode",
            display_name="Wan Animate CLIP Vision Encode (for core nodes)",
            category=CATEGORY,
            description=(
                "Encodes the reference image with the CLIP vision encoder of a loaded Wan Animate model (official "
                "preprocessing: the whole image squashed to the CLIP size), as core CLIP_VISION_OUTPUT for "
                "WanAnimateToVideo."
            ),
            inputs=[
                ModelSocket.Input("model", tooltip="From Load Wan Animate Model (its CLIP vision encoder is used)."),
                io.Image.Input("image", tooltip="The reference image (the first image of the batch is used)."),
            ],
            outputs=[io.ClipVisionOutput.Output(display_name="clip_vision_output", tooltip="CLIP features of the reference, for core WanAnimateToVideo's clip_vision_output input.")],
        )

    @classmethod
    def execute(cls, model, image) -> io.NodeOutput:
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
        return io.NodeOutput(output)


NODES = [WanAnimateTextEncode, WanAnimateClipVisionEncode]
