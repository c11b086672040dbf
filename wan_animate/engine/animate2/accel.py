"""The engine's fast paths for the Wan-Animate-2 DiT: attention kernel, fp8 tensor-core matmuls, compiled blocks
(block swap: the runner of engine.placement's BlockSwap wraps them).

Same choices and seams as Animate-14B's (`..accel`): the quantised self-attention kernels (int8 Q·K^T,
FlashAttention-3, cuDNN, Triton fp8) serve the in-context attention frame by frame; the bf16 kernels that return their log-sum-exp (cuDNN on
Hopper, FLASH elsewhere, flash on the CPU) serve it in two calls (attention.merged). "sparse" (comfy-kitchen's
Sol-Attn) serves the plain self-attention: the driving pass and the steps outside the driving window; it returns no
log-sum-exp and takes queries and keys of one length only, so the in-context attention stays bf16. Cross-attention goes through
diffusers' dispatch with the fastest SDPA kernel. `compile=True` compiles the engine's block functions
(forward.generation_block / driving_block; accel.compile.compile_function): one graph for the driving pass and one
per kind of sampling pass serve every block, swapped ones included.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import torch

from ..accel import AccelOptions, choose_fp8_matmul, fp8_matmul, int8_matmul
from ..accel.attention import (ENV_VAR, BACKENDS, SELF_ATTENTION_KERNELS, _self_attention_kernel, backend_kernel,
                               choose_attention, fastest_sdpa, usable_sparse)
from ..accel.sparse_attention import SPARSE, SparseAttention
from ..accel.attention_quant import probe
from ..accel.compile import compile_function, set_cache_dir
from ..accel.processors import sdpa_kernel
from ..blockswap import BlockSwap
from ..placement import swapping
from .attention import Kernel, LseKernel, sdpa_with_lse
from .forward import Animate2BlockRunner, Animate2DiT, BlockFunctions, driving_block, generation_block, run_block

_LSE_PROBE: dict[int, str | None] = {}  # per GPU


@dataclass
class Animate2FastPath:
    """What `accelerate_animate2` chose; pass it to `animate2(..., fast=)`. `swap`: the transformer's block swap
    (engine.placement), which a memory plan may replace per job (`with_swap`)."""

    attention: str
    fp8_matmul: str
    swap: BlockSwap | None = None
    kernel: Kernel = sdpa_kernel
    lse_kernel: LseKernel | None = None
    block_runner: Animate2BlockRunner = field(default=run_block)  # runs each block's work; the swap wraps it
    blocks: BlockFunctions = field(default_factory=BlockFunctions)
    compiled: bool = False
    int8_layers: int = 0  # Linear layers kept int8 (Comfy-Org's int8 ConvRot files, wan_loader's int8_weights)

    def with_swap(self, swap: BlockSwap | None) -> Animate2FastPath:
        return replace(self, swap=swap)

    def dit(self, transformer, sequence=None) -> Animate2DiT:
        """The DiT runner with these kernels, block functions and block swap."""
        return Animate2DiT(transformer, swapping(self.swap, self.block_runner), self.kernel, self.lse_kernel, sequence,
                           self.blocks)

    def describe(self) -> dict:
        sparse = self.kernel.settings.describe() if isinstance(self.kernel, SparseAttention) else {}
        return {"attention": self.attention, **sparse, "in_context": "merged" if self.lse_kernel else "framewise",
                "fp8_matmul": self.fp8_matmul, "int8_layers": self.int8_layers, "compiled": self.compiled,
                "blocks_on_cpu": len(self.swap.indices) if self.swap else 0}


def eager_path(swap: BlockSwap | None = None) -> Animate2FastPath:
    """No kernel choices: torch's SDPA frame by frame and the weights' own matmuls, what animate2() runs without a
    fast path; `swap`: blocks streamed in from host memory."""
    return Animate2FastPath("native", "dequant", swap)


def accelerate_animate2(transformer, device, options: AccelOptions | None = None,
                        swap: BlockSwap | None = None) -> Animate2FastPath:
    """Configure a WanAnimate2Transformer3DModel's kernels for `device`; `swap`: its block swap, from
    engine.placement.place_transformer (the weights stay where they are)."""
    options = options or AccelOptions()
    options.check()
    device = torch.device(device)
    matmul = choose_fp8_matmul(transformer, device, options.fp8_matmul)
    fp8_matmul.install(transformer, fp8_matmul.ScaledMatmul(options.fp8_fast_accum) if matmul == "scaled_mm" else None)
    name = choose_attention(device, options.attention)
    if name in SELF_ATTENTION_KERNELS and (options.attention or "auto") == "auto" and not os.environ.get(ENV_VAR):
        name = fastest_sdpa(device)  # measured: the quantised kernels frame by frame lose to one merged bf16 call
    if name == SPARSE:
        name = usable_sparse(device)
    transformer.set_attention_backend(BACKENDS[fastest_sdpa(device)])  # cross-attention
    blocks = BlockFunctions()
    if options.compile:
        set_cache_dir(options.compile_cache_dir)
        blocks = BlockFunctions(compile_function(generation_block), compile_function(driving_block))
    fast = Animate2FastPath(name, matmul, swap, blocks=blocks, compiled=options.compile,
                            int8_layers=len(int8_matmul.int8_layers(transformer)))
    if name in SELF_ATTENTION_KERNELS:
        return replace(fast, kernel=_self_attention_kernel(name, device))
    if name == SPARSE:  # the driving pass and steps outside the driving window; in-context frames stay dense
        dense = fastest_sdpa(device)
        return replace(fast, kernel=SparseAttention(options.sparse(), backend_kernel(dense)),
                       lse_kernel=_lse_kernel(dense, device))
    return replace(fast, kernel=backend_kernel(name), lse_kernel=_lse_kernel(name, device))


def _lse_kernel(name: str, device: torch.device) -> LseKernel | None:
    """The merged in-context attention's kernel where the bf16 choice `name` has one that runs, else None."""
    return sdpa_with_lse if name in ("auto", "native", "cudnn", "flash") and lse_runs(device) else None


def lse_runs(device: torch.device) -> bool:
    """Whether torch's fused SDPA that returns the log-sum-exp runs on `device` (builds without flash attention,
    e.g. some Windows wheels, lack it): if not, the in-context attention goes frame by frame."""
    return device.type != "cuda" or probe(sdpa_with_lse, device, _LSE_PROBE,
                                          "torch's SDPA with log-sum-exp does not run here") is None

