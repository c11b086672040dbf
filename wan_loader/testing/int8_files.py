"""Comfy-Org's int8 ConvRot layout from a ComfyUI-layout transformer file, for tests, demos and benchmarks.

Every Linear weight of the blocks becomes an int8 weight, its per-row `weight_scale` and a `comfy_quant` JSON marker,
as comfy-kitchen's quantiser and ComfyUI's saver write them (int8_convrot.quantize_int8; tests check it bit-exact
against comfy-kitchen). The rest of the file (norms, embeddings, head, metadata) is copied as it is.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import torch

from ..int8_convrot import INT8_FORMAT, quantize_int8
from ..io.readers import open_file
from ..writers import write_safetensors


_BLOCK_WEIGHT = re.compile(r"(^|\.)blocks\.\d+\..*\.weight$")


def is_block_linear_weight(key: str, shape) -> bool:
    """A Linear weight of the DiT's blocks (with or without ComfyUI's model.diffusion_model. prefix)."""
    return bool(_BLOCK_WEIGHT.search(key)) and len(shape) == 2


def marker(group: int) -> torch.Tensor:
    """The comfy_quant tensor of one int8 layer (ConvRot with `group`, or plain row-wise int8 when 0)."""
    config = {"format": INT8_FORMAT, **({"convrot": True, "convrot_groupsize": group} if group else {})}
    return torch.tensor(list(json.dumps(config).encode()), dtype=torch.uint8)


def write_int8_convrot(source: Path, dest: Path, group: int = 16,
                       group_of: Callable[[str], int] | None = None) -> Path:
    """`source` (a ComfyUI-layout transformer .safetensors) re-saved at `dest` with its blocks' Linear weights in
    int8; `group_of(key)` picks a layer's ConvRot group (0: row-wise int8 without rotation), default `group`."""
    src = open_file(source)
    items = []
    for key in src.keys():
        shape, dtype = tuple(src.shape(key)), src.dtype(key)
        if not is_block_linear_weight(key, shape):
            items.append((key, shape, dtype, lambda k=key: src.get(k)))
            continue
        q, scale = quantize_int8(src.get(key), group if group_of is None else group_of(key))
        mark = marker(group if group_of is None else group_of(key))
        stem = key[: -len("weight")]
        items += [(key, shape, torch.int8, lambda q=q: q),
                  (stem + "weight_scale", tuple(scale.shape), torch.float32, lambda s=scale: s),
                  (stem + "comfy_quant", tuple(mark.shape), torch.uint8, lambda m=mark: m)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(dest, items, dict(src.metadata))
    return dest
