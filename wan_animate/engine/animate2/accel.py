"""The engine's fast paths for the Wan-Animate-2 DiT: attention kernel, fp8 tensor-core matmuls (block swap: the
runner of engine.placement's BlockSwap wraps them).

Same choices and seams as Animate-14B's (`..accel`): the quantised self-attention kernels (int8 Q·K^T,
FlashAttention-3, cuDNN, Triton fp8) serve the in-context attention frame by frame; the bf16 kernels that return their log-sum-exp (cuDNN on
Hopper, FLASH elsewhere, flash on the CPU) serve it in two calls (attention.merged). "sparse" (comfy-kitchen's
Sol-Attn) serves the plain self-attention: the driving pass and the steps outside the driving window; it returns no
log-sum-exp and takes queries and keys of one length only, so the in-context attention stays bf16. Cross-attention goes through
diffusers' dispatch with the fastest SDPA kernel. Compiled blocks are not applied to Animate-2 (its blocks run
through Animate2DiT's own block function, not `block.forward`); `compile=True` is refused with that reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from ..accel import AccelOptions, choose_fp8_matmul, fp8_matmul, int8_matmul
from ..accel.attention import (ENV_VAR, BACKENDS, SELF_ATTENTION_KERNELS, _self_attention_kernel, backend_kernel,
                               choose_attention, fastest_sdpa, usable_sparse)
from ..accel.sparse_attention import SPARSE, SparseAttention
from ..blockswap import BlockSwap
from ..accel.attention_quant import probe
from ..accel.processors import sdpa_kernel
from ..placement import swapping
from .attention import Kernel, LseKernel, sdpa_with_lse
from .forward import Animate2BlockRunner, run_block

_LSE_PROBE: dict[int, str | None] = {}  # per GPU


@dataclass
class Animate2FastPath:
    """What `accelerate_animate2` chose; pass it to `animate2(..., fast=)`."""

    attention: str
    fp8_matmul: str
    swap: BlockSwap | None
    kernel: Kernel = sdpa_kernel
    lse_kernel: LseKernel | None = None
    block_runner: Animate2BlockRunner = field(default=run_block)
    int8_layers: int = 0  # Linear layers kept int8 (Comfy-Org's int8 ConvRot files, wan_loader's int8_weights)

    def describe(self) -> dict:
        sparse = self.kernel.settings.describe() if isinstance(self.kernel, SparseAttention) else {}
        return {"attention": self.attention, **sparse, "in_context": "merged" if self.lse_kernel else "framewise",
                "fp8_matmul": self.fp8_matmul, "int8_layers": self.int8_layers,
                "blocks_on_cpu": len(self.swap.indices) if self.swap else 0}


def accelerate_animate2(transformer, device, options: AccelOptions | None = None,
                        swap: BlockSwap | None = None) -> Animate2FastPath:
    """Configure a WanAnimate2Transformer3DModel's kernels for `device`; `swap`: its block swap, from
    engine.placement.place_transformer (the weights stay where they are)."""
    options = options or AccelOptions()
    options.check()
    if options.compile:
        raise ValueError("compile=True is not available for Wan-Animate-2 yet (its blocks run through the engine's "
                         "own block function); leave it off.")
    device = torch.device(device)
    matmul = choose_fp8_matmul(transformer, device, options.fp8_matmul)
    fp8_matmul.install(transformer, fp8_matmul.ScaledMatmul(options.fp8_fast_accum) if matmul == "scaled_mm" else None)
    name = choose_attention(device, options.attention)
    if name in SELF_ATTENTION_KERNELS and (options.attention or "auto") == "auto" and not os.environ.get(ENV_VAR):
        name = fastest_sdpa(device)  # measured: the quantised kernels frame by frame lose to one merged bf16 call
    if name == SPARSE:
        name = usable_sparse(device)
    transformer.set_attention_backend(BACKENDS[fastest_sdpa(device)])  # cross-attention
    runner = swapping(swap, run_block)
    int8 = len(int8_matmul.int8_layers(transformer))
    if name in SELF_ATTENTION_KERNELS:
        return Animate2FastPath(name, matmul, swap, _self_attention_kernel(name, device), None, runner, int8)
    if name == SPARSE:  # the driving pass and steps outside the driving window; in-context frames stay dense
        dense = fastest_sdpa(device)
        return Animate2FastPath(name, matmul, swap, SparseAttention(options.sparse(), backend_kernel(dense)),
                                _lse_kernel(dense, device), runner, int8)
    return Animate2FastPath(name, matmul, swap, backend_kernel(name), _lse_kernel(name, device), runner, int8)


def _lse_kernel(name: str, device: torch.device) -> LseKernel | None:
    """The merged in-context attention's kernel where the bf16 choice `name` has one that runs, else None."""
    return sdpa_with_lse if name in ("auto", "native", "cudnn", "flash") and lse_runs(device) else None


def lse_runs(device: torch.device) -> bool:
    """Whether torch's fused SDPA that returns the log-sum-exp runs on `device` (builds without flash attention,
    e.g. some Windows wheels, lack it): if not, the in-context attention goes frame by frame."""
    return device.type != "cuda" or probe(sdpa_with_lse, device, _LSE_PROBE,
                                          "torch's SDPA with log-sum-exp does not run here") is None

