"""torch.compile of the 40 repeated transformer blocks (regional compilation).

Every block has the same code and shapes, so one compiled graph serves all of them (torch's inlined nn.Module
tracing treats parameters as graph inputs): compile time is one block's, ~1 minute cold on an H100. Inductor's
on-disk caches (FX graph + AOT autograd) make later processes start in seconds; `cache_dir` points them at a
persistent folder (e.g. a network volume on RunPod). In the compiled block the fp8 activation quantisation, RoPE,
modulation and gating fuse into a few kernels around the GEMMs and attention.

Animate-14B's blocks are compiled as modules (`compile_blocks`: their `forward`); Animate-2's engine runs a block
through its own functions of (block, tensors) (animate2.forward.generation_block / driving_block), which are
compiled as functions (`compile_function`): the block comes in as an argument, so again one graph serves all.
"""
from __future__ import annotations

import os

import torch

GRAPHS_PER_FUNCTION = 64  # dynamo's cache entries per compiled code: shapes of a job (segment, CFG pass) differ


def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Inductor's cache folder (call before the first compile)."""
    if path:
        os.makedirs(path, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)


def _allow_graphs() -> None:
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, GRAPHS_PER_FUNCTION)


def compile_blocks(blocks, mode: str | None = None) -> int:
    """Compile each block's forward in place (graph built lazily on the first call); returns the block count."""
    _allow_graphs()
    for block in blocks:
        block.compile(dynamic=False, mode=mode)
    return len(blocks)


def compile_function(fn, mode: str | None = None):
    """`fn` compiled lazily on its first call, with the same settings as `compile_blocks`."""
    _allow_graphs()
    return torch.compile(fn, dynamic=False, mode=mode)
