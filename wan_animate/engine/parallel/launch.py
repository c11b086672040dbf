"""Joining the process group that torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK, ...).

One process per GPU: rank r uses cuda:LOCAL_RANK and NCCL; on a machine without CUDA the ranks are CPU processes
talking over gloo (how the tests check that N processes give the frames of one).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_first(self) -> bool:
        """The rank that reads the inputs, reports progress and writes the output."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def join(device: str = "auto") -> Rank:
    """Initialise torch.distributed from torchrun's environment; `device` "auto" picks cuda:LOCAL_RANK or CPU."""
    if not launched_by_torchrun():
        raise ValueError("Sequence parallel runs one process per GPU: start the command with torchrun, e.g. "
                         "`torchrun --nproc-per-node 8 -m wan_animate animate ... --sequence-parallel ulysses`.")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not dist.is_nccl_available():
        raise ValueError("Sequence parallel on GPUs needs NCCL, which this torch build lacks (torch has no NCCL on "
                         "Windows): run it on Linux, or run one process without --sequence-parallel.")
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device
                                if device.type == "cuda" else None)
    return Rank(dist.get_rank(), dist.get_world_size(), device)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
