"""`convert`: rewrite a checkpoint (any layout) in another layout and dtype, streaming tensor by tensor."""
from __future__ import annotations

from pathlib import Path

import torch

from .discovery.resolve import prefer_dtype, resolve
from .dtypes import is_fp8, parse_dtype, weight_dtype_name
from .errors import MissingComponentError
from .keymaps import KEYMAPS, plan_to_diffusers
from .model.configs import component_config
from .processors import load_image_processor, load_tokenizer
from .writers import Written, weights_from_part, write_component, write_extras


def convert(src, dst, to: str, dtype=None, components=None, prefix: str = "", per_channel: bool = False,
            model: str | None = None) -> Path:
    """Write the components found in `src` into `dst` in layout `to` (diffusers | comfy | original).

    dtype: bf16 / fp16 / fp32 / fp8_e4m3fn / fp8_e5m2 (fp8 only for comfy: ComfyUI's scaled-fp8 format);
    default: the source's own dtype (fp8 sources become bf16 for diffusers). `prefix` (comfy) puts the
    transformer keys under e.g. `model.diffusion_model.`. `model`="animate2" takes an unmarked Wan2.1-I2V-shaped
    transformer as Wan-Animate-2 (its files then carry the Animate-2 marker).
    """
    if to not in ("diffusers", "comfy", "original"):
        raise ValueError(f"unknown layout {to!r}: use diffusers or comfy")
    res = resolve(src, model=model)
    prefer_dtype(res, dtype or "bf16")
    names = [c for c in (components or KEYMAPS) if c in KEYMAPS and c in res.parts]
    if not names:
        raise MissingComponentError(f"{src}: no Wan2.2-Animate weights found to convert (looked in "
                                    f"{'; '.join(res.looked)}).", looked=res.looked)
    dst = Path(dst)
    written = Written()
    try:
        for name in names:
            part = res.parts[name]
            plan = plan_to_diffusers(name, part)
            config = component_config(name, part, plan, res)
            if isinstance(config, dict) and "_class_name" in config and name in ("text_encoder", "image_encoder"):
                config = {k: v for k, v in config.items() if not k.startswith("_")}
            out_dtype = parse_dtype(dtype) if dtype else parse_dtype(weight_dtype_name(part.view))
            if is_fp8(out_dtype) and to != "comfy":
                if dtype:
                    raise ValueError("fp8 output exists only as ComfyUI scaled-fp8 files: use --to comfy")
                out_dtype = torch.bfloat16
            weights = weights_from_part(name, part, plan, config)
            weights.distilled = part.distilled
            write_component(weights, dst, to, out_dtype, written, prefix, per_channel)
        tokenizer = image_processor = None
        if "text_encoder" in names:
            try:
                tokenizer, _ = load_tokenizer(res)
            except MissingComponentError:
                tokenizer = None
        if "image_encoder" in names:
            image_processor, _ = load_image_processor(res, None if not res.configs.get("image_encoder") else
                                                      res.configs["image_encoder"].get("image_size"))
        transformer = res.parts.get("transformer")
        family = transformer.family if transformer is not None else "animate"
        write_extras(dst, to, tokenizer, image_processor, written, names, family,
                     transformer is not None and transformer.distilled)
    except BaseException:
        written.rollback()
        raise
    return dst

