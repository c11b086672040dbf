"""Full-size models without memory, and a tracer of the memory a computation allocates, for the memory planner.

`meta_components` builds the real diffusers/transformers modules at the released sizes on the meta device, with the
dtypes the loader gives them (fp8 linears where wan_loader.fp8 puts them, fp32 where diffusers keeps fp32), so
their byte counts are the loaded model's. `AllocationTrace` runs real module code on meta tensors and records the
peak bytes of tensors alive at once: what a device's allocator would have to hold, without running the maths.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from wan_loader import WanAnimateComponents
from wan_loader.model.configs import (
    ANIMATE_14B_CONFIG,
    CLIP_VIT_H_CONFIG,
    UMT5_XXL_CONFIG,
    WAN21_VAE_CONFIG,
    TRANSFORMER_CLASSES,
    build_empty,
)
from wan_loader.dtypes import fp32_keys
from wan_loader.fp8 import fp8_linear_names, replace_linears

# Wan2.2-Animate-2-14B as released: diffusers' WanAnimate2Transformer3DModel defaults are its sizes.
ANIMATE2_14B_CONFIG = {"_class_name": TRANSFORMER_CLASSES["animate2"]}


def cast_like_loader(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    keep = fp32_keys(model, dtype)
    for key, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and t.dtype not in (torch.float8_e4m3fn, torch.float8_e5m2):
            t.data = t.data.to(torch.float32 if key in keep else dtype)
    return model


def meta_transformer(precision: str = "fp8", config: dict | None = None) -> torch.nn.Module:
    model = build_empty("transformer", config or ANIMATE_14B_CONFIG)
    if precision == "fp8":
        replace_linears(model, fp8_linear_names(model), torch.float8_e4m3fn, torch.bfloat16, per_channel=True)
    model = cast_like_loader(model, torch.bfloat16)
    return model.to("meta")


def meta_components(precision: str = "fp8", model: str = "animate") -> WanAnimateComponents:
    """The full-size model (Wan2.2-Animate-14B, or Wan-Animate-2 with `model="animate2"`; Wan2.1 VAE, umT5-XXL,
    CLIP ViT-H/14) on the meta device."""
    def bf16(component, config):
        return cast_like_loader(build_empty(component, config), torch.bfloat16).to("meta")

    config = ANIMATE2_14B_CONFIG if model == "animate2" else ANIMATE_14B_CONFIG
    return WanAnimateComponents(
        transformer=meta_transformer(precision, config), vae=bf16("vae", WAN21_VAE_CONFIG),
        text_encoder=bf16("text_encoder", UMT5_XXL_CONFIG), image_encoder=bf16("image_encoder", CLIP_VIT_H_CONFIG))


class AllocationTrace(TorchDispatchMode):
    """Bytes of the tensors created inside the block and still alive, and their peak (inputs and views of them
    count nothing: only new storages do)."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def _track(self, tensor: torch.Tensor, size: int) -> None:
        storage = tensor.untyped_storage()
        if id(storage) in self._sizes:
            return
        self._sizes[id(storage)] = size
        self.live += size
        weakref.finalize(storage, self._release, id(storage))

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor):
                self._track(t, 0)
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t, t.untyped_storage().nbytes())
        self.peak = max(self.peak, self.live)
        return out


def flash_like_attention(query, key, value, *args, **kwargs):
    """Stands in for SDPA while tracing: the output only, as the fused kernels allocate (the meta device would
    otherwise take the math path and materialise the whole attention matrix)."""
    return torch.empty(query.shape[:-1] + (value.shape[-1],), dtype=query.dtype, device=query.device)
