"""The DiT's blocks sharded across the ranks (FSDP2, `torch.distributed.fsdp.fully_shard`), by choice.

Replicated weights (the default) cost each GPU the whole DiT (28 GB bf16 / 14-17 GB fp8 for 14B) and no traffic.
Sharded, each GPU keeps 1/N of every block and all-gathers a block's weights just before running it (and drops
them after), which frees memory for long or 720p segments at the cost of one weight all-gather per block per
forward. Only the repeated blocks are sharded; embeddings, face adapters and the head stay whole on every rank.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard


def shard_blocks(transformer, device: torch.device | str, group=None) -> None:
    """Shard every block of `transformer` (already on `device`) over `group` (default: all ranks), in place."""
    if not dist.is_initialized():
        raise ValueError("Sharded weights need torch.distributed initialised (start the job with torchrun).")
    mesh = DeviceMesh.from_group(group or dist.group.WORLD, torch.device(device).type)
    for block in transformer.blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=True)


def unsharding(runner):
    """A block runner that gathers a sharded block's weights around `runner`'s call (any runner signature whose
    first two arguments are (index, block)); unsharded blocks run as they are. The Animate-2 forward calls a
    block's parts rather than the block, so FSDP's own forward hooks do not fire there: Animate2DiT wraps its
    runner in this. (Animate-14B calls the blocks, whose FSDP hooks gather the weights.)"""

    def run(index, block, *args):
        if not isinstance(block, FSDPModule):
            return runner(index, block, *args)
        block.unshard()
        try:
            return runner(index, block, *args)
        finally:
            block.reshard()

    return run
