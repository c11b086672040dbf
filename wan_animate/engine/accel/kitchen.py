"""comfy-kitchen (ComfyUI's kernel library), an optional dependency of the fast paths: found without importing it,
imported on first use (its import takes seconds). Its int8 GEMMs (int8_matmul) and Sol-Attn sparse attention
(sparse_attention) come from here."""
from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache

KITCHEN_REQUIREMENT = "comfy-kitchen>=0.2.40"


def kitchen_installed() -> bool:
    """Whether comfy-kitchen is installed (without importing it)."""
    return importlib.util.find_spec("comfy_kitchen") is not None


@lru_cache(maxsize=1)
def kitchen():
    """The comfy_kitchen module (imported on first use)."""
    return importlib.import_module("comfy_kitchen")
