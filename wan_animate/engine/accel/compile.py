"""torch.compile of the 40 repeated transformer blocks (regional compilation).

Every block has the same code and shapes, so one compiled graph serves all of them (torch's inlined nn.Module
tracing treats parameters as graph inputs): compile time is one block's, ~1 minute cold on an H100. Inductor's
on-disk caches (FX graph + AOT autograd) make later processes start in seconds; `cache_dir` points them at a
persistent folder (e.g. a network volume on RunPod). In the compiled block the fp8 activation quantisation, RoPE,
modulation and gating fuse into a few kernels around the GEMMs and attention.
"""
from __future__ import annotations

import os

import torch


def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Inductor's cache folder (call before the first compile)."""
    if path:
        os.makedirs(path, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)


def compile_blocks(blocks, mode: str | None = None) -> int:
    """Compile each block's forward in place (graph built lazily on the first call); returns the block count."""
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    for block in blocks:
        block.compile(dynamic=False, mode=mode)
    return len(blocks)
