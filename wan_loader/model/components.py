"""The loaded model: one object whatever layout the weights came from.

Every layout (Diffusers folder or Hub repo, original Wan-AI release, ComfyUI single files) is converted to these
diffusers / transformers module classes, so the engine sees one model definition.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

COMPONENT_NAMES = ("transformer", "vae", "text_encoder", "tokenizer", "image_encoder", "image_processor")


@dataclass
class WanAnimateComponents:
    """Wan2.2-Animate parts. Any may be None when it was not asked for or not found.

    transformer: diffusers.WanAnimateTransformer3DModel (with pose embedding, motion/face encoders, face adapter), or
        diffusers.WanAnimate2Transformer3DModel for Wan-Animate-2
    vae: diffusers.AutoencoderKLWan (Wan2.1 VAE)
    text_encoder: transformers.UMT5EncoderModel; tokenizer: its tokenizer (google/umt5-xxl)
    image_encoder: transformers.CLIPVisionModel (ViT-H/14); image_processor: transformers.CLIPImageProcessor
    """

    transformer: Any = None
    vae: Any = None
    text_encoder: Any = None
    tokenizer: Any = None
    image_encoder: Any = None
    image_processor: Any = None
    sources: dict[str, str] = field(default_factory=dict)
    distilled: bool = False  # Wan-Animate-2's distilled variant (few steps, no CFG), as the weights say

    @property
    def family(self) -> str:
        """"animate2" for a Wan-Animate-2 transformer, else "animate" (Wan2.2-Animate-14B)."""
        return "animate2" if type(self.transformer).__name__.startswith("WanAnimate2") else "animate"

    def present(self) -> list[str]:
        return [f.name for f in fields(self) if f.name in COMPONENT_NAMES and getattr(self, f.name) is not None]

    def missing(self) -> list[str]:
        return [n for n in COMPONENT_NAMES if getattr(self, n) is None]
