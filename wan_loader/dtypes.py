"""Weight dtypes: the names users give, the names reports print, the fp8 formats, and which weights stay fp32.

The bottom layer of wan_loader (imports only torch): every module that parses, names or classifies a dtype uses
these, so "bf16" means the same thing to the loader, the converter, the CLI and the file scanner.
"""
from __future__ import annotations

from collections import Counter

import torch

FP8_DTYPES = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
FP8_TORCH_DTYPES = frozenset(FP8_DTYPES.values())
E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)  # 448: what fp8 quantizers scale the absolute maximum to
DTYPE_NAMES = ("bf16", "fp16", "fp32", *FP8_DTYPES)  # the short names users pass (CLI choices, loader arguments)
_BY_NAME = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
            "fp32": torch.float32, "float32": torch.float32, **FP8_DTYPES}
_SHORT_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32",
                **{v: k for k, v in FP8_DTYPES.items()}}


def is_fp8(dtype: torch.dtype) -> bool:
    return dtype in FP8_TORCH_DTYPES


def parse_dtype(dtype) -> torch.dtype:
    """A torch dtype from a torch dtype or a name (bf16, bfloat16, fp16, fp32, fp8_e4m3fn, fp8_e5m2; any case)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _BY_NAME[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPE_NAMES)}") from None


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of a dtype (bf16, fp8_e4m3fn, ...); other dtypes by torch's name without `torch.`."""
    return _SHORT_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def dominant_dtype(view) -> str:
    """The short name of the dtype holding most of the bytes of a tensor source ("none" when it is empty)."""
    c: Counter = Counter()
    for k in view.keys():
        c[view.dtype(k)] += view.nbytes(k)
    if not c:
        return "none"
    return dtype_name(c.most_common(1)[0][0])


def weight_dtype_name(view) -> str:
    """The dominant dtype of a source if it is a weight dtype users can ask for, else bf16 (e.g. for int buffers)."""
    name = dominant_dtype(view)
    return name if name in DTYPE_NAMES else "bf16"


def fp32_keys(model: torch.nn.Module, weight_dtype: torch.dtype) -> set[str]:
    """State-dict keys the model keeps in fp32 whatever the weight dtype (as diffusers/transformers loaders do)."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    if not keep:
        return set()
    is_transformers = not hasattr(model, "register_to_config")
    if is_transformers and weight_dtype != torch.float16:
        return set()
    return {k for k in model.state_dict() if any(m in k.split(".") for m in keep)}
