"""LoRA costs on Wan2.2-Animate-sized layers: load, merge (bf16 and fp8), exact unmerge, run-time overhead per forward.

    python -m benchmarks.lora --device cuda --blocks 4 --out bench_lora.json     # real layer sizes, 4 of 40 blocks
    python -m benchmarks.lora --size tiny --device cpu --out /tmp/lora.json        # smoke test

Builds a WanAnimateTransformer3DModel with the real dimensions (dim 5120, ffn 13824, 40 heads) but --blocks blocks
(random weights), writes a lightx2v-style LoRA (ComfyUI keys, rank --rank, on every Linear of the blocks, with bias
deltas) whose deltas are --magnitude times the weights' spread, then measures:
- load_s: load_lora of the file;  merge_s / unmerge_s: merge_loras(keep_original=True) and the bit-exact unmerge;
  kept_fraction: CPU bytes kept for the exact unmerge / bytes of the changed weights (a full copy would be 1.0);
- forward_ms with no LoRA, with the LoRA merged and at run time (hooks), at 480p latent size (32760 tokens);
- the same merge and run-time forward with the blocks' Linear layers in fp8 (FP8Linear, per-tensor scale).
Whole-model figures scale with the block count (x 40 / --blocks for merge, load and the LoRA part of a forward).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from .harness import Report
from .models import transformer_config

LATENT = {"real": (21, 60, 104), "tiny": (2, 4, 4)}  # 480x832: 1 reference + 20 latent frames (77 face frames)


def build(size: str, blocks: int, device: str, dtype: torch.dtype):
    from diffusers import WanAnimateTransformer3DModel

    config = transformer_config("full" if size == "real" else "tiny", blocks)
    if size == "tiny":
        config["added_kv_proj_dim"] = 16
    # diffusers puts num_layers // n face adapters after every n-th block; n must divide the block count
    n = config["inject_face_latents_blocks"]
    config["inject_face_latents_blocks"] = n if blocks % n == 0 else blocks
    torch.manual_seed(0)
    return WanAnimateTransformer3DModel(**config).eval().to(device=device, dtype=dtype), config


def inputs(model, size: str, device: str, dtype: torch.dtype):
    c = model.config
    t, h, w = LATENT[size]
    face = c.motion_encoder_size
    g = torch.Generator(device).manual_seed(1)

    def rand(*shape):
        return torch.randn(*shape, generator=g, device=device).to(dtype)

    return (rand(1, c.in_channels, t, h, w), torch.tensor([500], device=device), rand(1, 512, c.text_dim),
            rand(1, 257, c.image_dim), rand(1, c.latent_channels, t - 1, h, w), rand(1, 3, (t - 1) * 4 - 3, face, face))


def write_lora(model, path: Path, rank: int, magnitude: float) -> None:
    """ComfyUI/lightx2v keys: diffusion_model.blocks.N.self_attn.q.lora_down/lora_up + alpha, diff_b for biases."""
    from safetensors.torch import save_file

    from tests.lora_files import block_linears, wan_name

    g = torch.Generator().manual_seed(2)
    sd = {}
    for name in block_linears(model):
        layer = model.get_submodule(name)
        out_f, in_f = layer.weight.shape
        spread = layer.weight.float().std().item() * magnitude
        down = torch.randn(rank, in_f, generator=g) / rank ** 0.5
        up = torch.randn(out_f, rank, generator=g) * spread / in_f ** 0.5 * rank ** 0.5
        base = "diffusion_model." + wan_name(name)
        sd[base + ".lora_down.weight"] = down.to(torch.bfloat16)
        sd[base + ".lora_up.weight"] = up.to(torch.bfloat16)
        sd[base + ".alpha"] = torch.tensor(float(rank))
        sd[base + ".diff_b"] = (torch.randn(out_f, generator=g) * spread).to(torch.bfloat16)
    save_file(sd, str(path))


def timed(fn, device: str, repeat: int = 1) -> tuple[float, object]:
    out = None
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start, out


def to_fp8(model) -> None:
    from wan_loader.fp8 import fp8_linear_names, quantize_fp8, replace_linears

    names = [n for n in fp8_linear_names(model) if n.startswith("blocks.")]
    old = {n: (model.get_submodule(n).weight.detach(), model.get_submodule(n).bias.detach()) for n in names}
    replace_linears(model, names, torch.float8_e4m3fn, next(iter(old.values()))[0].dtype)
    for n, (w, b) in old.items():
        layer = model.get_submodule(n)
        q, s = quantize_fp8(w)
        layer.weight.data.copy_(q)
        layer.scale.data.copy_(s)
        layer.bias.data.copy_(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("real", "tiny"), default="real")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--magnitude", type=float, default=0.05, help="LoRA delta spread / weight spread")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--skip-forward", action="store_true", help="only load / merge / unmerge (e.g. real size on a CPU)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from wan_loader.lora import apply_loras, load_lora, merge_loras

    dtype = getattr(torch, args.dtype) if args.dtype else torch.bfloat16 if args.device == "cuda" else torch.float32
    model, _ = build(args.size, args.blocks, args.device, dtype)
    x = None if args.skip_forward else inputs(model, args.size, args.device, dtype)

    def forward():
        if args.skip_forward:
            return None
        with torch.no_grad():
            return model(*x, return_dict=False)[0]

    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lora.safetensors"
        write_lora(model, path, args.rank, args.magnitude)
        result["file_mb"] = path.stat().st_size / 2 ** 20
        result["load_s"], lora = timed(lambda: load_lora(path), args.device)
    timed(forward, args.device)  # warm-up
    result["forward_ms"] = timed(forward, args.device, 3)[0] * 1e3
    result["merge_s"], merged = timed(lambda: merge_loras(model, [(lora, 1.0)], keep_original=True), args.device)
    changed = sum(model.get_parameter(n).nbytes for n in merged.changed)
    result["kept_fraction"] = merged.kept_bytes / changed
    result["forward_merged_ms"] = timed(forward, args.device, 3)[0] * 1e3
    result["unmerge_s"] = timed(merged.unmerge, args.device)[0]
    with apply_loras(model, [(lora, 1.0)]):
        timed(forward, args.device)
        result["forward_runtime_ms"] = timed(forward, args.device, 3)[0] * 1e3
    to_fp8(model)
    result["fp8_forward_ms"] = timed(forward, args.device, 3)[0] * 1e3
    result["fp8_merge_s"], merged = timed(lambda: merge_loras(model, [(lora, 1.0)]), args.device)
    merged.unmerge()
    with apply_loras(model, [(lora, 1.0)]):
        timed(forward, args.device)
        result["fp8_forward_runtime_ms"] = timed(forward, args.device, 3)[0] * 1e3
    for key, value in result.items():
        print(f"{key:>24}: {value:.4g}" if isinstance(value, float) else f"{key:>24}: {value}")
    report = Report("LoRA costs", args.out, args.device, vars(args) | {"dtype": str(dtype)})
    report.add(**result)
    if not args.skip_forward:
        report.ratio("forward runtime LoRA vs none", result["forward_runtime_ms"] / result["forward_ms"])
        report.ratio("fp8 forward runtime LoRA vs none", result["fp8_forward_runtime_ms"] / result["fp8_forward_ms"])
    report.print_ratios()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
