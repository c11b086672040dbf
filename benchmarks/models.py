"""Model builders of the benchmarks: the same deterministic random weights for every model (ours, diffusers,
ComfyUI's), full size or wan_loader's tiny test size, and the import of ComfyUI's model code."""
from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

import torch

from wan_loader.dtypes import fp32_keys
from wan_loader.int8_convrot import Int8Linear, Int8Weights, dequantize_rows, quantize_int8
from wan_loader.model.configs import ANIMATE_14B_CONFIG, build_empty
from wan_loader.testing.tiny import TINY_TRANSFORMER_CONFIG

from .harness import REPO

# FLOPs of one DiT forward at the sizes (wan-animate reference): 480x832x77 and 720x1280x77 (+1 ref frame).
KNOWN_FLOPS = {32760: 1.71e15, 75600: 6.60e15}
RESOLUTIONS = {"480p": (480, 832), "720p": (720, 1280), "tiny": (32, 32)}


def transformer_config(size: str, layers: int | None = None) -> dict:
    """full: the real 14B config. small: the real architecture (512-px motion encoder, 1024-wide face encoder,
    CLIP projection) with a narrow DiT, so every loader runs on a CPU. tiny: wan_loader's test model.
    `layers` replaces the block count."""
    if size == "small":
        cfg = {**ANIMATE_14B_CONFIG, "num_attention_heads": 1, "attention_head_dim": 128, "ffn_dim": 256,
               "num_layers": 5, "text_dim": 64, "added_kv_proj_dim": 128}
    elif size == "full":
        cfg = dict(ANIMATE_14B_CONFIG)
    elif size == "tiny":
        cfg = dict(TINY_TRANSFORMER_CONFIG)
    else:
        raise ValueError(f"size={size!r}: choose full, small or tiny.")
    if layers:
        cfg["num_layers"] = layers
    return cfg


class RandomWeights:
    """Deterministic random tensors by key: every model gets bit-identical weights, generated on `device` one
    tensor at a time (no full copy is ever held), scaled so activations stay O(1) through 40 blocks."""

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

    def state_dict_for(self, model, prefix: str = "") -> dict[str, torch.Tensor]:
        """Random values for every entry of a (meta) model's state dict, the entries its library keeps in fp32 in
        fp32; `prefix` keeps two components' same-named keys apart."""
        keep = fp32_keys(model, self.dtype)
        return {k: self(prefix + k, tuple(v.shape), torch.float32 if k in keep else None)
                for k, v in model.state_dict().items()}


def random_module(component: str, config: dict, weights: RandomWeights, device):
    """A wan_loader component (`transformer`, `vae`, `text_encoder`, `image_encoder`) with random weights."""
    model = build_empty(component, config)
    model.load_state_dict(weights.state_dict_for(model, "" if component == "transformer" else f"{component}."),
                          assign=True, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.to(device).eval().requires_grad_(False)


def build_diffusers(config: dict, weights: RandomWeights, device):
    """diffusers' WanAnimateTransformer3DModel with the random weights, as `from_pretrained(torch_dtype=bf16)`."""
    return random_module("transformer", config, weights, device)


def build_fp8(config: dict, weights: RandomWeights, device):
    """The same model with its block/face-block linears in fp8 (e4m3, per-channel scales), built without ever
    holding the bf16 weights of more than one tensor."""
    from wan_loader.fp8 import FP8Linear, fp8_linear_names, quantize_fp8, replace_linears
    model = build_empty("transformer", config)
    keep = fp32_keys(model, weights.dtype)
    replace_linears(model, fp8_linear_names(model), torch.float8_e4m3fn, torch.bfloat16, per_channel=True)
    fp8_weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, FP8Linear)}
    state = {}
    for key, meta in model.state_dict().items():
        if key.endswith(".scale") and key[:-5] + "weight" in fp8_weights:
            continue
        if key in fp8_weights:
            state[key], state[key[:-6] + "scale"] = quantize_fp8(weights(key, tuple(meta.shape)), per_channel=True)
        else:
            state[key] = weights(key, tuple(meta.shape), torch.float32 if key in keep else None)
    model.load_state_dict(state, assign=True)
    return model.to(device).eval().requires_grad_(False)


def convrot_group(width: int) -> int:
    """The ConvRot group Comfy-Org's int8 repack uses (256), or for a tiny layer the largest power of 4 dividing it."""
    group = 256
    while width % group:
        group //= 4
    return group


def build_int8(config: dict, weights: RandomWeights, device, keep: Int8Weights):
    """The model with its block linears in Comfy-Org's int8 ConvRot format (wan_loader's quantiser, one scale per
    row): kept int8 (Int8Linear computing through `keep.matmul`) when `keep.keep`, else dequantised to bf16 as the
    loader's int8_weights="dequantize" does; one tensor's bf16 weights at a time."""
    from wan_loader.fp8 import fp8_linear_names

    model = build_empty("transformer", config)
    keep32 = fp32_keys(model, weights.dtype)
    names = fp8_linear_names(model)
    int8 = {f"{n}.weight": n for n in names}
    if keep.keep:
        for name in names:
            parent, _, child = name.rpartition(".")
            old = getattr(model.get_submodule(parent), child)
            setattr(model.get_submodule(parent), child, Int8Linear(old.in_features, old.out_features,
                                                                   old.bias is not None, matmul=keep.matmul))
    state = {}
    for key, meta in model.state_dict().items():
        if key.endswith(".scale") and key[:-5] + "weight" in int8:
            continue
        if key in int8:
            group = convrot_group(meta.shape[1])
            q, scale = quantize_int8(weights(key, tuple(meta.shape)), group)
            if keep.keep:
                state[key], state[key[:-6] + "scale"] = q, scale.reshape(-1)
                model.get_submodule(int8[key]).group_size = group
            else:
                state[key] = dequantize_rows(q, scale, group).to(weights.dtype)
        else:
            state[key] = weights(key, tuple(meta.shape), torch.float32 if key in keep32 else None)
    model.load_state_dict(state, assign=True)
    return model.to(device).eval().requires_grad_(False)


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
        import comfy.utils
        from comfy.ldm.wan.model_animate import AnimateWanModel  # noqa: F401
    finally:
        sys.argv = argv
    return str(where)


def build_comfy(cfg: dict, weights: RandomWeights, device):
    """ComfyUI's AnimateWanModel in bf16 with the same random tensors, through wan_loader's diffusers->ComfyUI
    key map (call `import_comfy` first)."""
    import comfy.ops
    from comfy.ldm.wan.model_animate import AnimateWanModel

    from wan_loader.keymaps import execute
    from wan_loader.keymaps.transformer import plan_diffusers_to_comfy

    meta = build_empty("transformer", cfg)
    shapes = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    dtypes = {k: torch.float32 if k.endswith(("scale_shift_table",)) else None for k in shapes}
    del meta
    model = AnimateWanModel(in_dim=cfg["in_channels"], dim=cfg["num_attention_heads"] * cfg["attention_head_dim"],
                            ffn_dim=cfg["ffn_dim"], freq_dim=cfg["freq_dim"], text_dim=cfg["text_dim"],
                            out_dim=cfg["out_channels"], num_heads=cfg["num_attention_heads"],
                            num_layers=cfg["num_layers"], device=device, dtype=torch.bfloat16,
                            operations=comfy.ops.disable_weight_init)
    params = model.state_dict()
    plan = plan_diffusers_to_comfy(shapes)
    with torch.no_grad():
        for key, tensor in execute(plan, lambda k: weights(k, shapes[k], dtypes[k])):
            if key in params:
                params[key].copy_(tensor.reshape(params[key].shape))
    return model.eval()
