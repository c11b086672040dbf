"""LoRA key names: every released layout normalised to parameter names of diffusers' WanAnimateTransformer3DModel.

Layouts seen in the wild for Wan2.2-Animate:
- ComfyUI / Kijai / lightx2v: `diffusion_model.blocks.0.self_attn.q.lora_down.weight` + `lora_up` + `alpha`, with
  full deltas `.diff` (norms, head), bias deltas `.diff_b` and `blocks.N.diff_m` (modulation table).
- PEFT (the official `relighting_lora.ckpt` and its repackagings): `[base_model.model.]blocks.0.self_attn.q.lora_A
  [.default].weight` + `lora_B`, original Wan module names, no alpha (r = alpha = 128, scale 1).
- diffusers: `transformer.blocks.0.attn1.to_q.lora_A.weight` (alpha from the file's PEFT metadata when present).
- musubi-tuner: `lora_unet_blocks_0_self_attn_q.lora_down.weight` (converted by diffusers' own converter).

Original Wan names are translated with the loader's key map (keymaps.transformer), so the name table exists once
and a LoRA lands exactly where the loader put the weight it changes, Animate-only modules included.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..keymaps.transformer import plan_original_to_diffusers

# (suffix, role). Longest suffixes first so ".lora_B.bias" wins over ".bias"-less roles.
ROLE_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".lora_down.weight", "down"), (".lora_A.weight", "down"), (".lora.down.weight", "down"),
    (".lora_up.weight", "up"), (".lora_B.weight", "up"), (".lora.up.weight", "up"),
    (".lora_B.bias", "up_bias"),
    (".alpha", "alpha"),
    (".dora_scale", "dora_scale"),
    (".diff_b", "diff_b"),
    (".diff", "diff"),
)
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "transformer.", "pipe.dit.")
MUSUBI_PREFIX = "lora_unet_"

WAN_NAME_MARKERS = re.compile(
    r"(^|\.)(self_attn|cross_attn|modulation|fuser_blocks|text_embedding|time_embedding|time_projection|img_emb)"
    r"(\.|$)|(^|\.)ffn\.[02](\.|$)|^head\.")
DIFFUSERS_NAME_MARKERS = re.compile(
    r"(^|\.)(attn1|attn2|condition_embedder|scale_shift_table|proj_out)(\.|$)|\.ffn\.net\.|^face_adapter\.\d")


@dataclass(frozen=True)
class LoraKey:
    """One source key, split: the module (or bare parameter) path in the source naming, and what the tensor is."""

    source: str
    path: str
    role: str


def strip_prefix(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def split_key(key: str) -> LoraKey | None:
    """Parse one key; None when it is not a LoRA tensor we know (LoKr, LoHa, optimizer state, ...)."""
    name = strip_prefix(key).replace(".default.", ".")
    if name.endswith(".diff_m"):  # Kijai / lightx2v: the block's modulation table
        return LoraKey(key, name[: -len(".diff_m")] + ".modulation", "diff")
    for suffix, role in ROLE_SUFFIXES:
        if name.endswith(suffix):
            return LoraKey(key, name[: -len(suffix)], role)
    return None


def detect_naming(paths: list[str]) -> str:
    """'wan' (original / ComfyUI module names) or 'diffusers'; raises on a file mixing both."""
    wan = sum(1 for p in paths if WAN_NAME_MARKERS.search(p))
    diffusers = sum(1 for p in paths if DIFFUSERS_NAME_MARKERS.search(p))
    if wan and diffusers:
        raise ValueError(f"mixes original Wan module names ({wan} keys, e.g. "
                         f"{next(p for p in paths if WAN_NAME_MARKERS.search(p))}) with diffusers names ({diffusers} "
                         f"keys, e.g. {next(p for p in paths if DIFFUSERS_NAME_MARKERS.search(p))})")
    return "diffusers" if diffusers else "wan"


Transform = Callable[[torch.Tensor], torch.Tensor] | None


def wan_to_diffusers_params(names: list[str]) -> dict[str, list[tuple[str, Transform]]]:
    """Original Wan parameter name -> [(diffusers name, transform of a row-indexed tensor)], for the names known.

    Uses the loader's own key map (keymaps.transformer), so a LoRA lands where the loader put the weight. A fused
    original projection gives two targets (face adapter `linear1_kv` -> `to_k`, `to_v`, halves of the rows).
    """
    plan = plan_original_to_diffusers({name: (1,) for name in names})
    out: dict[str, list[tuple[str, Transform]]] = {}
    for target, recipe in plan.items():
        if len(recipe.sources) == 1:
            out.setdefault(recipe.sources[0], []).append((target, recipe.transform))
    return out


def convert_musubi(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """musubi-tuner keys (`lora_unet_blocks_0_...`) to diffusers PEFT keys, alpha folded in (diffusers' converter)."""
    from diffusers.loaders.lora_conversion_utils import (
        _convert_musubi_wan_lora_to_diffusers,
    )

    return _convert_musubi_wan_lora_to_diffusers(dict(state_dict))


def summarize(names: list[str], limit: int = 8) -> str:
    """Names grouped by block number: 'blocks.{0..39}.attn2.add_k_proj.weight (40)' instead of 40 lines."""
    groups: dict[str, list[int]] = {}
    singles: list[str] = []
    for n in sorted(set(names)):
        m = re.match(r"^(.*?\bblocks\.)(\d+)(\..*)$", n)
        if m:
            groups.setdefault(m.group(1) + "{}" + m.group(3), []).append(int(m.group(2)))
        else:
            singles.append(n)
    items = [f"{pattern.format(_ranges(nums))} ({len(nums)})" if len(nums) > 1 else pattern.format(nums[0])
             for pattern, nums in groups.items()] + singles
    more = f", and {len(items) - limit} more groups" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _ranges(nums: list[int]) -> str:
    nums = sorted(set(nums))
    parts, start = [], nums[0]
    for a, b in zip(nums, nums[1:] + [None]):
        if b != a + 1:
            parts.append(str(start) if start == a else f"{start}..{a}")
            start = b
    return "{" + ",".join(parts) + "}"
