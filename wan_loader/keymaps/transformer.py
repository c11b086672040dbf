"""Wan2.2-Animate transformer key maps: original Wan-AI / ComfyUI names <-> diffusers WanAnimateTransformer3DModel.

The original release and ComfyUI's single files use the same names (ComfyUI may add `model.diffusion_model.`, which
the reader strips). Differences from diffusers: renamed modules, the face adapter's fused `linear1_kv` (split into
to_k/to_v), the motion encoder's StyleGAN-style `net_app.convs` list (res blocks renumbered, activation biases kept
as (1, C, 1, 1)) and its persistent blur kernels (diffusers recomputes them).
"""
from __future__ import annotations

import re
from typing import Callable

import torch

from .plan import Plan, Recipe

_BLUR_KERNEL = (1.0, 3.0, 3.0, 1.0)


def _first_half(t: torch.Tensor) -> torch.Tensor:
    return t[: t.shape[0] // 2]


def _second_half(t: torch.Tensor) -> torch.Tensor:
    return t[t.shape[0] // 2:]


def _concat_rows(*ts: torch.Tensor) -> torch.Tensor:
    return torch.cat(ts, dim=0)


def _flat_bias(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)


def _image_bias(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, -1, 1, 1)


def blur_kernel() -> torch.Tensor:
    k = torch.tensor(_BLUR_KERNEL)
    k = k[None, :] * k[:, None]
    return k / k.sum()


_ATTN = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k",
         "k_img": "add_k_proj", "v_img": "add_v_proj", "norm_k_img": "norm_added_k"}
_ATTN_BACK = {v: k for k, v in _ATTN.items()}
_FACE_BLOCK = {"linear1_q": "to_q", "linear2": "to_out", "q_norm": "norm_q", "k_norm": "norm_k"}
_FACE_BLOCK_BACK = {v: k for k, v in _FACE_BLOCK.items()}
_STATIC = {  # whole-prefix renames, original -> diffusers
    "time_embedding.0.": "condition_embedder.time_embedder.linear_1.",
    "time_embedding.2.": "condition_embedder.time_embedder.linear_2.",
    "time_projection.1.": "condition_embedder.time_proj.",
    "text_embedding.0.": "condition_embedder.text_embedder.linear_1.",
    "text_embedding.2.": "condition_embedder.text_embedder.linear_2.",
    "img_emb.proj.0.": "condition_embedder.image_embedder.norm1.",
    "img_emb.proj.1.": "condition_embedder.image_embedder.ff.net.0.proj.",
    "img_emb.proj.3.": "condition_embedder.image_embedder.ff.net.2.",
    "img_emb.proj.4.": "condition_embedder.image_embedder.norm2.",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
    "head.head.": "proj_out.",
    "head.modulation": "scale_shift_table",
    "patch_embedding.": "patch_embedding.",
    "pose_patch_embedding.": "pose_patch_embedding.",
    "face_encoder.conv1_local.conv.": "face_encoder.conv1_local.",
    "face_encoder.conv2.conv.": "face_encoder.conv2.",
    "face_encoder.conv3.conv.": "face_encoder.conv3.",
    "face_encoder.out_proj.": "face_encoder.out_proj.",
    "face_encoder.padding_tokens": "face_encoder.padding_tokens",
    "motion_encoder.dec.direction.weight": "motion_encoder.motion_synthesis_weight",
    "motion_encoder.enc.fc.": "motion_encoder.motion_network.",
    "motion_encoder.enc.net_app.convs.0.0.weight": "motion_encoder.conv_in.weight",
}
_STATIC_BACK = {v: k for k, v in _STATIC.items()}

_NET_APP = "motion_encoder.enc.net_app.convs."
_RES_PARTS = {"conv1.0.weight": "conv1.weight", "conv2.1.weight": "conv2.weight", "skip.1.weight": "conv_skip.weight"}
_RES_PARTS_BACK = {v: k for k, v in _RES_PARTS.items()}
_RES_BIASES = {"conv1.1.bias": "conv1.act_fn.bias", "conv2.2.bias": "conv2.act_fn.bias"}
_RES_BIASES_BACK = {v: k for k, v in _RES_BIASES.items()}


def _prefix_rename(key: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old):]
    return None


def _count(shapes, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := rx.match(k))})


def is_ignorable_original_key(key: str) -> bool:
    """Keys of the original layout that carry no learned weight (diffusers recomputes the blur kernels)."""
    return key.startswith(_NET_APP) and key.endswith(".kernel")


def plan_original_to_diffusers(shapes: dict[str, tuple[int, ...]]) -> Plan:
    plan: Plan = {}
    last_conv = _count(shapes, re.escape(_NET_APP) + r"(\d+)\.") - 1
    for key in shapes:
        target, transform = _original_key_to_diffusers(key, last_conv)
        if target is None:
            continue
        if isinstance(target, tuple):  # fused k/v of a face block
            plan[target[0]] = Recipe((key,), _first_half)
            plan[target[1]] = Recipe((key,), _second_half)
        else:
            plan[target] = Recipe((key,), transform)
    return plan


def _original_key_to_diffusers(key: str, last_conv: int) -> tuple[str | tuple[str, str] | None, Callable | None]:
    if (new := _prefix_rename(key, _STATIC)) is not None:
        return new, None
    if m := re.fullmatch(r"blocks\.(\d+)\.(self_attn|cross_attn)\.(\w+)\.(\w+)", key):
        n, kind, part, leaf = m.groups()
        if part in _ATTN:
            return f"blocks.{n}.{'attn1' if kind == 'self_attn' else 'attn2'}.{_ATTN[part]}.{leaf}", None
    if m := re.fullmatch(r"blocks\.(\d+)\.(norm3|modulation|ffn\.0|ffn\.2)((?:\.\w+)?)", key):
        n, part, leaf = m.groups()
        new = {"norm3": "norm2", "modulation": "scale_shift_table", "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2"}
        return f"blocks.{n}.{new[part]}{leaf}", None
    if m := re.fullmatch(r"face_adapter\.fuser_blocks\.(\d+)\.(\w+)\.(\w+)", key):
        n, part, leaf = m.groups()
        if part == "linear1_kv":
            return (f"face_adapter.{n}.to_k.{leaf}", f"face_adapter.{n}.to_v.{leaf}"), None
        if part in _FACE_BLOCK:
            return f"face_adapter.{n}.{_FACE_BLOCK[part]}.{leaf}", None
    if key == _NET_APP + "0.1.bias":
        return "motion_encoder.conv_in.act_fn.bias", _flat_bias
    if m := re.fullmatch(re.escape(_NET_APP) + r"(\d+)\.(.+)", key):
        i, rest = int(m.group(1)), m.group(2)
        if i == last_conv and rest == "weight":
            return "motion_encoder.conv_out.weight", None
        if rest in _RES_PARTS:
            return f"motion_encoder.res_blocks.{i - 1}.{_RES_PARTS[rest]}", None
        if rest in _RES_BIASES:
            return f"motion_encoder.res_blocks.{i - 1}.{_RES_BIASES[rest]}", _flat_bias
    return None, None


def plan_diffusers_to_original(shapes: dict[str, tuple[int, ...]]) -> Plan:
    plan: Plan = {}
    n_res = _count(shapes, r"motion_encoder\.res_blocks\.(\d+)\.")
    for key in shapes:
        if (new := _prefix_rename(key, _STATIC_BACK)) is not None:
            plan[new] = Recipe((key,))
        elif m := re.fullmatch(r"blocks\.(\d+)\.(attn1|attn2)\.(\w+(?:\.0)?)\.(\w+)", key):
            n, kind, part, leaf = m.groups()
            plan[f"blocks.{n}.{'self_attn' if kind == 'attn1' else 'cross_attn'}.{_ATTN_BACK[part]}.{leaf}"] = \
                Recipe((key,))
        elif m := re.fullmatch(r"blocks\.(\d+)\.(norm2|scale_shift_table|ffn\.net\.0\.proj|ffn\.net\.2)((?:\.\w+)?)",
                               key):
            n, part, leaf = m.groups()
            old = {"norm2": "norm3", "scale_shift_table": "modulation", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}
            plan[f"blocks.{n}.{old[part]}{leaf}"] = Recipe((key,))
        elif m := re.fullmatch(r"face_adapter\.(\d+)\.(\w+)\.(\w+)", key):
            n, part, leaf = m.groups()
            if part == "to_k":
                plan[f"face_adapter.fuser_blocks.{n}.linear1_kv.{leaf}"] = Recipe(
                    (key, f"face_adapter.{n}.to_v.{leaf}"), _concat_rows)
            elif part in _FACE_BLOCK_BACK:
                plan[f"face_adapter.fuser_blocks.{n}.{_FACE_BLOCK_BACK[part]}.{leaf}"] = Recipe((key,))
        elif key == "motion_encoder.conv_in.act_fn.bias":
            plan[_NET_APP + "0.1.bias"] = Recipe((key,), _image_bias)
        elif key == "motion_encoder.conv_out.weight":
            plan[f"{_NET_APP}{n_res + 1}.weight"] = Recipe((key,))
        elif m := re.fullmatch(r"motion_encoder\.res_blocks\.(\d+)\.(.+)", key):
            i, rest = int(m.group(1)) + 1, m.group(2)
            if rest in _RES_PARTS_BACK:
                plan[f"{_NET_APP}{i}.{_RES_PARTS_BACK[rest]}"] = Recipe((key,))
            elif rest in _RES_BIASES_BACK:
                plan[f"{_NET_APP}{i}.{_RES_BIASES_BACK[rest]}"] = Recipe((key,), _image_bias)
    for i in range(1, n_res + 1):  # the original Blur modules keep their kernel as a persistent buffer
        for part in ("conv2.0.kernel", "skip.0.kernel"):
            plan[f"{_NET_APP}{i}.{part}"] = Recipe((), blur_kernel)
    return plan


plan_comfy_to_diffusers = plan_original_to_diffusers
plan_diffusers_to_comfy = plan_diffusers_to_original
