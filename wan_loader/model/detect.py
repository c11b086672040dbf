"""What a weights file is, from its tensor names and shapes only (never from its file name).

`identify(source)` answers: which component (transformer, vae, text_encoder, image_encoder), which key layout
(diffusers / original Wan-AI / comfy), under which key prefix, whether it is the Wan2.2-Animate part the loader
needs, and if not, what model it most likely is.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..dtypes import is_fp8
from ..io.readers import SCALED_FP8_MARKER, TensorSource, View, is_test_model
from ..keymaps import clip as clip_map, t5 as t5_map, vae as vae_map

PREFIXES = ("", "model.diffusion_model.", "diffusion_model.", "model.", "module.", "transformer.")
ANIMATE = "Wan2.2-Animate-14B"
ANIMATE2 = "Wan2.2-Animate-2-14B"
FAMILY_NAMES = {"animate": ANIMATE, "animate2": ANIMATE2}
ANIMATE2_MODEL_TYPES = ("animate2", "animate_2")  # ComfyUI's `config` metadata: {"transformer": {"model_type": ..}}


@dataclass
class Identified:
    component: str            # transformer | vae | text_encoder | image_encoder | unknown
    layout: str               # diffusers | original | comfy | unknown
    model: str                # what it is, in words
    is_animate_part: bool     # usable as that component of Wan2.2-Animate (14B or 2)
    prefix: str = ""
    family: str = "animate"   # transformer only: "animate" (Animate-14B) or "animate2" (Wan-Animate-2)
    distilled: bool = False   # Wan-Animate-2's few-step distilled variant
    scaled_fp8: bool = False
    test_model: bool = False  # written from the tiny test models (io.readers.TEST_MODEL_KEY)
    view: View | None = field(default=None, repr=False)

    @property
    def files(self) -> list[str]:
        return self.view.files if self.view is not None else []


def _has(keys: set[str], *names: str) -> bool:
    return all(n in keys for n in names)


def _count(keys, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def _size_name(dim: int) -> str:
    return {1536: "1.3B", 3072: "5B", 5120: "14B"}.get(dim, f"dim {dim}")


def describe_wan_original(keys: set[str], view: View) -> tuple[str, bool]:
    """Name a Wan-family DiT in original/ComfyUI key names; True when it is Wan2.2-Animate."""
    if "face_adapter.fuser_blocks.0.k_norm.weight" in keys or "motion_encoder.dec.direction.weight" in keys:
        return f"{ANIMATE} transformer", True
    dim = view.shape("patch_embedding.weight")[0]
    in_dim = view.shape("patch_embedding.weight")[1]
    size = _size_name(dim)
    if "vace_patch_embedding.weight" in keys:
        return f"Wan2.1 VACE {size} (video editing)", False
    if "control_adapter.conv.weight" in keys:
        return f"Wan Fun camera-control {size}", False
    if "casual_audio_encoder.encoder.final_linear.weight" in keys:
        return "Wan2.2-S2V-14B (speech to video)", False
    if any(k.startswith("audio_proj.") for k in keys):
        return f"HuMo {size} (human-centric, audio)", False
    if "ref_conv.weight" in keys:
        return f"Wan Fun control/InP {size}", False
    if in_dim == 48:
        return "Wan2.2-TI2V-5B (text/image to video)", False
    if "img_emb.proj.0.weight" in keys:
        flf = "img_emb.emb_pos" in keys
        return f"Wan2.1 {'FLF2V' if flf else 'I2V'} {size} (image to video)", False
    if in_dim == 36:
        return "Wan2.2 I2V-A14B expert (image to video, high- or low-noise)" if dim == 5120 else \
            f"Wan I2V {size}", False
    if in_dim == 16:
        return f"Wan2.1 T2V {size} or Wan2.2 T2V-A14B expert (text to video)", False
    return f"a Wan-family transformer ({size}, in_dim {in_dim})", False


def animate2_marker(metadata: dict) -> tuple[bool, bool]:
    """(is Wan-Animate-2, is its distilled variant) from a safetensors header's metadata.

    The Animate-2 checkpoint is shaped exactly like Wan2.1-I2V-14B; Comfy-Org's repack says what it is in the
    `config` metadata entry (ComfyUI reads `model_type` from it). Distilled: any metadata value mentioning it."""
    try:
        transformer = json.loads(metadata.get("config") or "{}").get("transformer") or {}
    except (json.JSONDecodeError, AttributeError):
        transformer = {}
    marked = str(transformer.get("model_type", "")).lower() in ANIMATE2_MODEL_TYPES
    return marked, marked and any("distill" in str(v).lower() for v in metadata.values())


def animate2_name(distilled: bool) -> str:
    return f"{ANIMATE2} transformer" + (" (distilled, few steps without CFG)" if distilled else "")


I2V_UNMARKED = ("; Wan-Animate-2 has the same weights layout, and this file carries no Animate-2 marker: if it is "
                "Animate-2, load it with model='animate2'")


def describe_wan_diffusers(keys: set[str], view: View) -> tuple[str, bool]:
    if "motion_encoder.motion_synthesis_weight" in keys or "face_adapter.0.to_q.weight" in keys:
        return f"{ANIMATE} transformer", True
    dim, in_dim = view.shape("patch_embedding.weight")[:2]
    size = _size_name(dim)
    if any(k.startswith("vace_blocks.") for k in keys):
        return f"Wan VACE {size} (diffusers)", False
    if in_dim == 48:
        return "Wan2.2-TI2V-5B (diffusers)", False
    if any(k.startswith("condition_embedder.image_embedder.") for k in keys):
        return f"Wan2.1 I2V {size} (diffusers)", False
    return (f"Wan2.2 I2V-A14B expert {size} (diffusers)" if in_dim == 36 else
            f"Wan T2V {size} (diffusers)"), False


_ENCODER_NAMES = {"vae": "Wan2.1 VAE", "text_encoder": "umT5-XXL encoder", "image_encoder": "CLIP ViT-H/14"}


def _clip_name(keys: set[str], view: View, layout: str) -> tuple[str, bool]:
    key = {"original": "visual.patch_embedding.weight", "comfy": "vision_model.embeddings.patch_embedding.weight",
           "diffusers": "embeddings.patch_embedding.weight"}[layout]
    width = view.shape(key)[0] if key in keys else 0
    if width in _WRONG_CLIP_WIDTHS:
        return _WRONG_CLIP_WIDTHS[width], False
    return ("CLIP ViT-H/14" if width == 1280 else f"CLIP vision (width {width})"), True


_WRONG_CLIP_WIDTHS = {1024: "CLIP ViT-L/14 (Animate needs ViT-H/14)", 1664: "CLIP ViT-bigG/14 (Animate needs ViT-H/14)"}
_OTHER_FAMILIES = [  # (key that must exist, what it is)
    ("double_blocks.0.img_attn.qkv.weight", "a FLUX / HunyuanVideo style DiT (double_blocks), not Wan"),
    ("joint_blocks.0.context_block.attn.qkv.weight", "Stable Diffusion 3 (MMDiT), not Wan"),
    ("input_blocks.0.0.weight", "a Stable Diffusion 1.x/2.x/XL UNet, not Wan"),
    ("adaln_single.linear.weight", "an LTX-Video / PixArt style DiT, not Wan"),
    ("transformer_blocks.0.img_mod.1.weight", "Qwen-Image, not Wan"),
    ("transformer_blocks.0.norm1.linear.weight", "a CogVideoX / diffusers DiT, not Wan"),
    ("encoder.block.0.layer.0.SelfAttention.q.weight", "a T5 encoder without per-layer position bias (T5-XXL as "
     "used by FLUX/SD3?), not umT5-XXL"),
    ("encoder.layers.0.self_attn.q_proj.weight", "a text/vision transformer encoder"),
    ("encoder.conv_in.weight", "a VAE of another model family, not the Wan2.1 VAE"),
]


def identify(source: TensorSource, as_animate2: bool = False) -> Identified:
    """Classify a whole file (or shard set). as_animate2: take an unmarked Wan2.1-I2V-shaped DiT as Wan-Animate-2."""
    raw = set(source.keys())
    for prefix in PREFIXES:
        if prefix and not any(k.startswith(prefix) for k in raw):
            continue
        view = View(source, prefix)
        keys = set(view.keys())
        found = _identify_keys(keys, view, as_animate2)
        if found is not None:
            found.prefix = prefix
            found.view = view
            found.scaled_fp8 = view.is_scaled_fp8 or SCALED_FP8_MARKER in {k[len(prefix):] for k in raw}
            if found.layout == "original" and (prefix or found.scaled_fp8):
                found.layout = "comfy"
            if is_test_model(source):
                found.test_model = True
                found.model = f"{found.model} (tiny test model)"
            return found
    return Identified("unknown", "unknown", _guess_other(raw), False, view=View(source))


def _identify_keys(keys: set[str], view: View, as_animate2: bool = False) -> Identified | None:
    if _has(keys, "patch_embedding.weight", "blocks.0.self_attn.to_q.weight"):  # WanAnimate2Transformer3DModel
        distilled = animate2_marker(view.metadata)[1]
        return Identified("transformer", "diffusers", animate2_name(distilled), True, family="animate2",
                          distilled=distilled)
    if _has(keys, "patch_embedding.weight", "head.modulation") or _has(keys, "patch_embedding.weight",
                                                                       "blocks.0.self_attn.q.weight"):
        model, ok = describe_wan_original(keys, view)
        if model.startswith("Wan2.1 I2V"):
            marked, distilled = animate2_marker(view.metadata)
            if marked or as_animate2:
                return Identified("transformer", "original", animate2_name(distilled), True, family="animate2",
                                  distilled=distilled)
            model += I2V_UNMARKED
        return Identified("transformer", "original", model, ok)
    if _has(keys, "patch_embedding.weight", "blocks.0.attn1.to_q.weight"):
        model, ok = describe_wan_diffusers(keys, view)
        return Identified("transformer", "diffusers", model, ok)
    if any(k.endswith("lora_A.weight") or k.endswith("lora_down.weight") for k in keys):
        return None
    if vae_map.looks_like_wan22_vae(keys):
        return Identified("vae", "original", "Wan2.2 VAE (TI2V-5B, z_dim 48): Animate needs the Wan2.1 VAE", False)
    for component, keymap in (("vae", vae_map), ("text_encoder", t5_map), ("image_encoder", clip_map)):
        for layout in ("original", "comfy", "diffusers"):
            if getattr(keymap, f"looks_like_{layout}")(keys):
                model, ok = _ENCODER_NAMES[component], True
                if component == "image_encoder":
                    model, ok = _clip_name(keys, view, layout)
                return Identified(component, layout, model, ok)
    return None


def _guess_other(keys: set[str]) -> str:
    if not keys:
        return "an empty file (no tensors)"
    if any("lora_A" in k or "lora_down" in k or "lora_up" in k for k in keys):
        return "a LoRA (low-rank adapter), not a base model"
    for prefix in PREFIXES:
        for key, what in _OTHER_FAMILIES:
            if prefix + key in keys:
                return what
    return f"an unrecognised model ({len(keys)} tensors, e.g. {sorted(keys)[0]!r})"


def count_parameters(view: TensorSource) -> int:
    n = 0
    for k in view.keys():
        if view.dtype(k).is_floating_point or is_fp8(view.dtype(k)):
            s = 1
            for d in view.shape(k):
                s *= d
            n += s
    return n
