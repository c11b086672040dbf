"""LoRA files in the layouts users have, written for a tiny model, with the deltas they must produce.

The diffusers -> original Wan name table here is written out by hand on purpose: it is an independent oracle for the
loader's key map, not a copy of it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from wan_loader.testing.tiny import TINY_TRANSFORMER_CONFIG

# The real model has image attention (k_img / v_img); the shared tiny config does not, so the LoRA tests add it.
LORA_TEST_CONFIG = {**TINY_TRANSFORMER_CONFIG, "added_kv_proj_dim": 16}

BLOCK_NAMES = {  # diffusers module inside blocks.N -> original Wan module
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v", "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o", "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
    "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k", "attn2.norm_q": "cross_attn.norm_q",
    "attn2.norm_k": "cross_attn.norm_k", "attn2.norm_added_k": "cross_attn.norm_k_img", "norm2": "norm3",
}
TOP_NAMES = {
    "proj_out": "head.head", "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "patch_embedding": "patch_embedding",
}
LINEARS_IN_BLOCKS = [k for k in BLOCK_NAMES if "norm" not in k]


def wan_name(module: str) -> str:
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", module)
    if m:
        return f"blocks.{m.group(1)}.{BLOCK_NAMES[m.group(2)]}"
    return TOP_NAMES[module]


def block_linears(model, blocks=None) -> list[str]:
    """The Linear layers the official relighting LoRA targets: all in `blocks`, none of face/modulation."""
    n = len(model.blocks)
    return [f"blocks.{i}.{name}" for i in (range(n) if blocks is None else blocks) for name in LINEARS_IN_BLOCKS]


def random_factors(model, modules: list[str], rank: int, seed: int = 0, dtype=torch.bfloat16):
    """{module: (down, up)} of the module's shapes, rounded to `dtype` (what the files store)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in modules:
        w = model.get_submodule(name).weight
        down = torch.randn(rank, *w.shape[1:], generator=g) * 0.2
        up = torch.randn(w.shape[0], rank, *([1] * (w.ndim - 2)), generator=g) * 0.2
        out[name] = (down.to(dtype), up.to(dtype))
    return out


def expected_deltas(factors, scale: float) -> dict[str, torch.Tensor]:
    return {m + ".weight": scale * (up.float().flatten(1) @ down.float().flatten(1)).reshape(
        up.shape[0], *down.shape[1:]) for m, (down, up) in factors.items()}


def write_comfyui(path: Path, factors, alpha: float | None) -> Path:
    """ComfyUI / lightx2v: diffusion_model.<wan>.lora_down.weight / lora_up.weight / alpha."""
    sd = {}
    for module, (down, up) in factors.items():
        base = "diffusion_model." + wan_name(module)
        sd[base + ".lora_down.weight"], sd[base + ".lora_up.weight"] = down, up
        if alpha is not None:
            sd[base + ".alpha"] = torch.tensor(float(alpha))
    save_file(sd, str(path))
    return path


def write_kijai(path: Path, factors, extras: dict[str, torch.Tensor]) -> Path:
    """Kijai's extractions: no alpha; `.diff_b` biases, `.diff` norms, `blocks.N.diff_m` modulation deltas.

    extras: {diffusers parameter name: delta}, written under the original names.
    """
    sd = {}
    for module, (down, up) in factors.items():
        base = "diffusion_model." + wan_name(module)
        sd[base + ".lora_down.weight"], sd[base + ".lora_up.weight"] = down, up
    for param, delta in extras.items():
        module, _, leaf = param.rpartition(".")
        if leaf == "scale_shift_table":
            key = f"diffusion_model.{module}.diff_m"
        else:
            key = f"diffusion_model.{wan_name(module)}." + ("diff_b" if leaf == "bias" else "diff")
        sd[key] = delta
    save_file(sd, str(path))
    return path


def peft_state_dict(factors, prefix: str = "", adapter: str | None = None, wan_names: bool = True):
    mid = f".{adapter}" if adapter else ""
    sd = {}
    for module, (down, up) in factors.items():
        base = prefix + (wan_name(module) if wan_names else module)
        sd[f"{base}.lora_A{mid}.weight"], sd[f"{base}.lora_B{mid}.weight"] = down, up
    return sd


def write_official_relight_ckpt(path: Path, factors, prefix: str = "") -> Path:
    """The official relighting_lora.ckpt: torch.save({'state_dict': PEFT state dict with original names})."""
    torch.save({"state_dict": peft_state_dict(factors, prefix)}, str(path))
    return path


def write_comfy_relight(path: Path, factors) -> Path:
    """Comfy-Org's repackaged relight LoRA: the PEFT tensors under diffusion_model.<wan>.lora_A/lora_B, bf16."""
    save_file(peft_state_dict(factors, "diffusion_model."), str(path))
    return path


def write_diffusers(path: Path, factors, alpha: float | None = None) -> Path:
    """diffusers' save_lora_weights: transformer.<diffusers module>.lora_A/lora_B (+ PEFT metadata with alpha)."""
    sd = peft_state_dict(factors, "transformer.", wan_names=False)
    metadata = None
    if alpha is not None:
        rank = next(iter(factors.values()))[0].shape[0]
        metadata = {"lora_adapter_metadata": json.dumps({"transformer.r": rank, "transformer.lora_alpha": alpha})}
    save_file(sd, str(path), metadata=metadata)
    return path


def write_musubi(path: Path, factors, alpha: float) -> Path:
    """musubi-tuner: lora_unet_blocks_0_self_attn_q.lora_down.weight / lora_up.weight / alpha."""
    sd = {}
    for module, (down, up) in factors.items():
        base = "lora_unet_" + wan_name(module).replace(".", "_")
        sd[base + ".lora_down.weight"], sd[base + ".lora_up.weight"] = down, up
        sd[base + ".alpha"] = torch.tensor(float(alpha))
    save_file(sd, str(path))
    return path


def forward(model, seed: int = 0) -> torch.Tensor:
    """One transformer forward on fixed random inputs (512 text tokens + 5 image tokens, 2 latent frames)."""
    g = torch.Generator().manual_seed(seed)
    dtype = next(p.dtype for p in model.parameters() if p.dtype.is_floating_point and p.dtype.itemsize > 1)
    x = torch.randn(1, 36, 2, 4, 4, generator=g).to(dtype)
    pose = torch.randn(1, 16, 1, 4, 4, generator=g).to(dtype)
    face = torch.randn(1, 3, 1, 16, 16, generator=g).to(dtype)
    text = torch.randn(1, 512, 32, generator=g).to(dtype)
    image = torch.randn(1, 5, 24, generator=g).to(dtype)
    with torch.no_grad():
        return model(x, torch.tensor([500]), text, image, pose, face, return_dict=False)[0].float()
