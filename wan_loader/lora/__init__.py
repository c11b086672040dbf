"""LoRAs for Wan2.2-Animate: the public API.

    lora = load_lora("lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors")
    merged = merge_loras(transformer, [(lora, 1.0), ("relighting_lora.ckpt", 1.0)])  # into the weights
    merged.unmerge()
    with apply_loras(transformer, [(lora, 1.0)]):                                       # at run time, removable
        ...

Files in the ComfyUI / Kijai / lightx2v, PEFT (official relighting_lora.ckpt), diffusers and musubi layouts are read
(keys.py, file.py), matched to the model (plan.py) and merged or hooked in (merge.py, apply.py), for bf16/fp16/fp32
weights and for FP8Linear layers (wan_loader.fp8).
"""
from __future__ import annotations

import os
from typing import NamedTuple

from .apply import LoraHandle, MergedLoras, RuntimeLoras, apply_loras, merge_loras
from .file import (
    LoraError,
    LoraFormatError,
    LoraMismatchError,
    LoraWeights,
    LowRank,
    load_lora,
    lora_from_state_dict,
)
from .plan import LoraPlan, plan_loras

__all__ = [
    "LoraError", "LoraFormatError", "LoraHandle", "LoraMismatchError", "LoraPlan", "LoraSpec", "LoraWeights", "LowRank",
    "MergedLoras", "RuntimeLoras", "apply_loras", "load_lora", "lora_from_state_dict", "merge_loras",
    "parse_lora_spec", "plan_loras",
]


class LoraSpec(NamedTuple):
    """A LoRA file and its strength, as the CLI (`--lora FILE[:STRENGTH]`) and the nodes give them."""

    path: str
    strength: float = 1.0


def parse_lora_spec(text: str) -> LoraSpec:
    """'FILE[:STRENGTH]' -> LoraSpec. A colon followed by a number is the strength (so C:\\x.safetensors works)."""
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            return LoraSpec(os.path.expanduser(path), float(tail))
        except ValueError:
            pass
    if not text.strip():
        raise LoraError("empty --lora value: give FILE or FILE:STRENGTH, e.g. relight.safetensors:1.0")
    return LoraSpec(os.path.expanduser(text), 1.0)
