"""Fast paths for the engine's DiT forward: attention kernel choice, fp8 tensor-core matmuls, int8 weights kept int8
(chosen before loading: `choose_int8_weights`), compiled blocks.
Everything plugs into AnimateDiT's seams; nothing here changes the model's maths beyond fp8 rounding, and nothing
here moves weights (where they live is engine.placement's job; block swap wraps the runner returned here).

    from wan_animate.engine.accel import AccelOptions, accelerate
    from wan_animate.engine.placement import place_transformer, swapping
    swap = place_transformer(components.transformer, "cuda", blocks_on_cpu=8)
    fast = accelerate(components.transformer, "cuda", AccelOptions(compile=True))
    animate(components, inputs, options, block_runner=swapping(swap, fast.block_runner))
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from wan_loader.fp8 import FP8Linear
from wan_loader.int8_convrot import Int8Weights

from ..forward import BlockRunner, run_block
from . import fp8_matmul, int8_matmul
from .attention import choose_attention, set_attention
from .compile import compile_blocks, set_cache_dir
from .quantize import quantize_transformer
from .selection import (
    INT8_LINEAR,
    DeviceFacts,
    device_facts,
    select_attention,
    select_fp8_matmul,
    select_int8_weights,
)
from .sparse_attention import SPARSE, SparseSettings

FP8_MATMUL_CHOICES = ("auto", "scaled_mm", "dequant")
INT8_WEIGHT_CHOICES = ("auto", "keep", "dequantize")


@dataclass
class AccelOptions:
    attention: str = "auto"  # auto | accurate | int8 | int8_fp16 | fa3_fp8 | cudnn_fp8 | fp8 | sparse | cudnn | flash | ... (attention.CHOICES; env WAN_ANIMATE_ATTENTION)
    fp8_matmul: str = "auto"  # auto: fp8 tensor cores when the weights are fp8 and the GPU has them | scaled_mm | dequant
    fp8_fast_accum: bool = True  # scaled_mm: tensor-core accumulation without fp32 promotion (~25% faster GEMMs)
    compile: bool = False  # torch.compile the repeated blocks (first call ~1 min, cached on disk)
    compile_cache_dir: str | None = None
    sparse_tau: float = 1.0  # attention="sparse": Sol-Attn's routing threshold (higher: sparser, faster, less exact)

    def check(self) -> None:
        if self.fp8_matmul not in FP8_MATMUL_CHOICES:
            raise ValueError(f"fp8_matmul={self.fp8_matmul!r}: choose one of {', '.join(FP8_MATMUL_CHOICES)}.")
        self.sparse().check()

    def sparse(self) -> SparseSettings:
        return SparseSettings(tau=self.sparse_tau)


@dataclass
class FastPath:
    """What `accelerate` chose; pass `block_runner` to AnimateDiT / animate()."""

    attention: str
    fp8_matmul: str
    compiled: bool
    block_runner: BlockRunner = field(default=run_block)
    fp8_fast_accum: bool = True
    sparse: SparseSettings | None = None  # attention "sparse": its settings

    def describe(self) -> dict:
        fast_accum = {"fp8_fast_accum": self.fp8_fast_accum} if self.fp8_matmul == "scaled_mm" else {}
        sparse = self.sparse.describe() if self.attention == SPARSE and self.sparse else {}
        return {"attention": self.attention, **sparse, "fp8_matmul": self.fp8_matmul, **fast_accum,
                "compiled": self.compiled}


def has_fp8_linears(model: torch.nn.Module) -> bool:
    return any(isinstance(m, FP8Linear) for m in model.modules())


def choose_fp8_matmul(model: torch.nn.Module, device, choice: str) -> str:
    if choice == "auto":
        return select_fp8_matmul(device_facts(device), has_fp8_linears(model))
    if choice == "scaled_mm" and not fp8_matmul.supports_scaled_mm(device):
        raise ValueError(f"fp8_matmul='scaled_mm' needs a CUDA GPU of compute capability >= 8.9; {device} is not.")
    return choice


def check_int8_weights(choice: str) -> None:
    if choice not in INT8_WEIGHT_CHOICES:
        raise ValueError(f"int8_weights={choice!r}: choose one of {', '.join(INT8_WEIGHT_CHOICES)} (auto keeps int8 "
                         "weights int8 where comfy-kitchen's int8 kernels run on the GPU, else dequantises them).")


def why_not_int8(device: torch.device, facts: DeviceFacts) -> str:
    """Why int8 weights cannot be kept int8 with a fast kernel on `device` (facts: `device_facts(device)`)."""
    if not int8_matmul.kitchen_installed():
        return "comfy-kitchen is not installed"
    if facts.capability is None:
        return f"no fast int8 kernel on {device} (comfy-kitchen's are for CUDA GPUs)"
    if facts.capability < int8_matmul.INT8_LINEAR_CAPABILITY:
        return f"{device} has compute capability {facts.capability[0]}.{facts.capability[1]}, without int8 tensor cores"
    return int8_matmul.unavailable_reason(device) or f"comfy-kitchen's int8 kernels are not used on {device}"


def choose_int8_weights(device, choice: str = "auto") -> Int8Weights:
    """What the loader does with int8 weights (Comfy-Org's int8 ConvRot files) for a model that runs on `device`.

    auto: keep them int8, computing through comfy-kitchen's int8 GEMMs, where those pass their probe on this GPU;
    else dequantise them at load with one logged line saying why. keep: int8 where auto keeps them, and on the CPU
    through comfy-kitchen's eager backend (right, not fast); elsewhere loading an int8 file fails with a one-line
    error naming what to install. dequantize: at load, as before (the weight dtype's memory). Passed to wan_loader's
    `load_components(int8_weights=...)`, which applies it only to a file that has int8 weights."""
    check_int8_weights(choice)
    if choice == "dequantize":
        return Int8Weights(keep=False)
    device = torch.device(device)
    facts = device_facts(device)
    kernel = int8_matmul.KitchenInt8Matmul()
    if select_int8_weights(facts) == "keep":
        return Int8Weights(keep=True, matmul=kernel)
    reason = why_not_int8(device, facts)
    if choice == "auto":
        return Int8Weights(fallback=f"int8 weights dequantised at load: {reason}. To keep them int8, "
                                    f"{int8_matmul.INSTALL_HINT}.")
    if facts.capability is None and int8_matmul.kitchen_installed():
        return Int8Weights(keep=True, matmul=kernel)  # comfy-kitchen's eager backend serves the CPU
    return Int8Weights(refusal=f"int8_weights='keep' cannot keep these int8 weights int8: {reason}. To keep them, "
                               f"{int8_matmul.INSTALL_HINT}; or use int8_weights='auto' or 'dequantize'.")


def accelerate(transformer, device, options: AccelOptions | None = None) -> FastPath:
    """Configure `transformer` (diffusers WanAnimateTransformer3DModel) for `device` and return the block runner.

    The weights stay where they are (engine.placement places them). The attention and fp8 matmul choices are set
    on this model's layers only.
    """
    options = options or AccelOptions()
    options.check()
    device = torch.device(device)
    matmul = choose_fp8_matmul(transformer, device, options.fp8_matmul)
    attention = set_attention(transformer, choose_attention(device, options.attention), device, options.sparse())
    fp8_matmul.install(transformer, fp8_matmul.ScaledMatmul(options.fp8_fast_accum) if matmul == "scaled_mm" else None)
    compiled = False
    if options.compile:
        set_cache_dir(options.compile_cache_dir)
        compile_blocks(transformer.blocks)
        compiled = True
    return FastPath(attention, matmul, compiled, run_block, options.fp8_fast_accum, options.sparse())


__all__ = [
    "AccelOptions",
    "DeviceFacts",
    "INT8_LINEAR",
    "INT8_WEIGHT_CHOICES",
    "FastPath",
    "SparseSettings",
    "accelerate",
    "choose_attention",
    "choose_fp8_matmul",
    "choose_int8_weights",
    "compile_blocks",
    "fp8_matmul",
    "quantize_transformer",
    "select_attention",
    "select_fp8_matmul",
    "select_int8_weights",
    "set_attention",
]
