"""Wan-Animate-2 transformer key maps: original Wan-AI / ComfyUI names <-> diffusers WanAnimate2Transformer3DModel.

The checkpoint is Wan2.1-I2V-14B shaped, and diffusers' WanAnimate2Transformer3DModel keeps the original module
tree; only the attention projections are renamed (q/k/v/o -> to_q/to_k/to_v/to_out.0, k_img/v_img/norm_k_img ->
add_k_proj/add_v_proj/norm_added_k). ComfyUI's int8 ConvRot files add `<linear>.weight_scale` and a
`<linear>.comfy_quant` marker per quantised linear; those keys follow their weight's rename.
"""
from __future__ import annotations

import re

from .plan import Plan, Recipe

_ATTN = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "k_img": "add_k_proj", "v_img": "add_v_proj",
         "norm_k_img": "norm_added_k"}
_ATTN_BACK = {v: k for k, v in _ATTN.items()}
_ORIGINAL = re.compile(r"(blocks\.\d+\.(?:self_attn|cross_attn)\.)(\w+)\.(\w+)")
_DIFFUSERS = re.compile(r"(blocks\.\d+\.(?:self_attn|cross_attn)\.)(to_out\.0|\w+)\.(\w+)")


def original_key_to_diffusers(key: str) -> str:
    if (m := _ORIGINAL.fullmatch(key)) and m.group(2) in _ATTN:
        return f"{m.group(1)}{_ATTN[m.group(2)]}.{m.group(3)}"
    return key


def diffusers_key_to_original(key: str) -> str:
    if (m := _DIFFUSERS.fullmatch(key)) and m.group(2) in _ATTN_BACK:
        return f"{m.group(1)}{_ATTN_BACK[m.group(2)]}.{m.group(3)}"
    return key


def plan_original_to_diffusers(shapes: dict[str, tuple[int, ...]]) -> Plan:
    return {original_key_to_diffusers(k): Recipe((k,)) for k in shapes}


def plan_diffusers_to_original(shapes: dict[str, tuple[int, ...]]) -> Plan:
    return {diffusers_key_to_original(k): Recipe((k,)) for k in shapes}


plan_comfy_to_diffusers = plan_original_to_diffusers
plan_diffusers_to_comfy = plan_diffusers_to_original
