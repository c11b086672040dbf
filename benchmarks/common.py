"""Shared pieces of the engine benchmarks: same random weights for every model, timing, GPU facts, JSON output."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GIB = 1024 ** 3
# FLOPs of one DiT forward at the sizes (wan-animate reference): 480x832x77 and 720x1280x77 (+1 ref frame).
KNOWN_FLOPS = {32760: 1.71e15, 75600: 6.60e15}
RESOLUTIONS = {"480p": (480, 832), "720p": (720, 1280), "tiny": (32, 32)}


def transformer_config(size: str) -> dict:
    from wan_loader.model.configs import ANIMATE_14B_CONFIG
    from wan_loader.testing.tiny import TINY_TRANSFORMER_CONFIG
    return dict(ANIMATE_14B_CONFIG) if size == "full" else dict(TINY_TRANSFORMER_CONFIG)


def keep_fp32(key: str, model) -> bool:
    """diffusers keeps these modules in fp32 when a model is loaded in bf16 (`_keep_in_fp32_modules`)."""
    parts = key.split(".")
    return any(name in parts for name in getattr(model, "_keep_in_fp32_modules", None) or ())


class RandomWeights:
    """Deterministic random tensors by diffusers key: every model gets bit-identical weights, generated on `device`
    one tensor at a time (no full copy is ever held), scaled so activations stay O(1) through 40 blocks."""

    def __init__(self, device, seed: int = 0, dtype: torch.dtype = torch.bfloat16):
        self.device, self.seed, self.dtype = torch.device(device), seed, dtype

    def __call__(self, key: str, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
        g = torch.Generator(self.device).manual_seed(self.seed * 1_000_003 + zlib.crc32(key.encode()))
        dtype = dtype or self.dtype
        leaf = key.rsplit(".", 1)[-1]
        if len(shape) >= 2:
            fan_in = 1
            for d in shape[1:]:
                fan_in *= d
            t = torch.randn(shape, generator=g, device=self.device, dtype=torch.float32) / max(fan_in, 1) ** 0.5
            if "scale_shift_table" in key:
                t = torch.randn(shape, generator=g, device=self.device) / shape[-1] ** 0.5
        elif "norm" in key and leaf == "weight":
            t = 1 + 0.1 * torch.randn(shape, generator=g, device=self.device)
        else:
            t = 0.02 * torch.randn(shape, generator=g, device=self.device)
        return t.to(dtype)

    def state_dict_for(self, model) -> dict[str, torch.Tensor]:
        """Random values for every entry of a (meta) diffusers model's state dict, diffusers' fp32 modules in fp32."""
        return {k: self(k, tuple(v.shape), torch.float32 if keep_fp32(k, model) else None)
                for k, v in model.state_dict().items()}


def build_diffusers(config: dict, weights: RandomWeights, device):
    """diffusers' WanAnimateTransformer3DModel with the random weights, as `from_pretrained(torch_dtype=bf16)`."""
    from wan_loader.model.configs import build_empty
    model = build_empty("transformer", config)
    model.load_state_dict(weights.state_dict_for(model), assign=True)
    return model.to(device).eval().requires_grad_(False)


def build_fp8(config: dict, weights: RandomWeights, device):
    """The same model with its block/face-block linears in fp8 (e4m3, per-channel scales), built without ever
    holding the bf16 weights of more than one tensor."""
    from wan_loader.model.configs import build_empty
    from wan_loader.model.fp8 import (
        FP8Linear,
        fp8_linear_names,
        quantize_fp8,
        replace_linears,
    )
    model = build_empty("transformer", config)
    replace_linears(model, fp8_linear_names(model), torch.float8_e4m3fn, torch.bfloat16, per_channel=True)
    fp8_weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, FP8Linear)}
    state = {}
    for key, meta in model.state_dict().items():
        if key.endswith(".scale") and key[:-5] + "weight" in fp8_weights:
            continue
        if key in fp8_weights:
            state[key], state[key[:-6] + "scale"] = quantize_fp8(weights(key, tuple(meta.shape)), per_channel=True)
        else:
            state[key] = weights(key, tuple(meta.shape), torch.float32 if keep_fp32(key, model) else None)
    model.load_state_dict(state, assign=True)
    return model.to(device).eval().requires_grad_(False)


def allocated_gib(device) -> float | None:
    return round(torch.cuda.memory_allocated(device) / GIB, 2) if torch.device(device).type == "cuda" else None


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device, warmup: int, repeats: int) -> tuple[list[float], object]:
    """Seconds of each of `repeats` calls after `warmup` calls (device synchronised around each); last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    sync(device)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - began)
    return times, out


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


def reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / GIB, 2)


def free(device) -> None:
    import gc
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def environment(device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    try:
        import diffusers
        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / GIB, 1)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def comfy_dir() -> Path | None:
    """ComfyUI's source: $COMFYUI_DIR, the carried .comfy_src, or /opt/ComfyUI."""
    for candidate in (os.environ.get("COMFYUI_DIR"), REPO / ".comfy_src", "/opt/ComfyUI"):
        if candidate and (Path(candidate) / "comfy" / "ldm" / "wan" / "model_animate.py").exists():
            return Path(candidate)
    return None


def import_comfy(device) -> str:
    """Import ComfyUI's model code (argument parsing set for `device`); returns where it came from."""
    where = comfy_dir()
    if where is None:
        raise ImportError("ComfyUI source not found: set COMFYUI_DIR")
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))
    argv = sys.argv
    sys.argv = argv[:1] + ([] if torch.device(device).type == "cuda" else ["--cpu"])
    try:
        import comfy.options
        comfy.options.enable_args_parsing()
        import comfy.model_management
        import comfy.ops
        from comfy.ldm.wan.model_animate import AnimateWanModel  # noqa: F401
    finally:
        sys.argv = argv
    return str(where)


def write_json(path: str | os.PathLike | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)
