"""Sequence parallel: the DiT's video tokens split across the ranks of a torch.distributed process group.

Every rank holds the whole model (or its share of it, weights.py) and runs every block on its contiguous slice of
the token sequence: patch embedding, norms, cross-attention, face adapter, feed-forward and output head are per token
and need no communication. Self-attention needs every token, and gets it one of two ways:

- "ulysses" (DeepSpeed-Ulysses): one all-to-all turns (tokens / N, all heads) into (all tokens, heads / N), the
  attention kernel runs on whole sequences of its heads, a second all-to-all turns the output back. Traffic per rank
  is 4 x tokens x dim / N per layer, so it scales; it needs the head count divisible by N (40 heads: 2, 4, 5, 8).
- "ring": every rank keeps its queries and gathers all keys and values in one all-gather (what torch's
  context-parallel ring attention does with its default all-gather rotation), then runs the kernel on its queries.
  Any N works; traffic is 2 x tokens x dim per layer, so it is the fallback where the heads do not divide.

Both are exact: the same kernel sees the same keys, values and queries as on one GPU. The sequence is padded to a
multiple of N; the padding tokens are cut away before attention keys/values are used and after the gather.
The collectives are torch.distributed's functional collectives (NCCL on GPUs, gloo on CPUs), the ones torch's
DTensor and context parallel use, which torch.compile traces into compiled blocks: `all_to_all_single`,
`all_gather_single`. diffusers' own context parallel has no plan for the Animate transformers, and this engine calls
their blocks itself.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol

MODES = ("off", "ulysses", "ring")

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"sequence_parallel={mode!r}: choose one of {', '.join(MODES)}.")


class Split:
    """How one forward's sequence of `length` tokens (dim 1 of (B, S, ...) tensors) lies across the ranks."""

    def __init__(self, length: int, mode: str, rank: int, size: int, group):
        self.length, self.mode, self.rank, self.size, self.group = length, mode, rank, size, group
        self.chunk = math.ceil(length / size)
        self.start = min(rank * self.chunk, length)  # this rank's tokens are [start, end) of the sequence
        self.end = min(self.start + self.chunk, length)

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.chunk * self.size - x.shape[1]
        return torch.cat([x, x.new_zeros(x.shape[0], pad, *x.shape[2:])], dim=1) if pad else x

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's `chunk` tokens of a full (B, S, ...) tensor (zeros past the end of the sequence)."""
        return self._padded(x)[:, self.rank * self.chunk:(self.rank + 1) * self.chunk]

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's (B, chunk, ...) slice -> the full (B, S, ...) tensor, on every rank."""
        parts = funcol.wait_tensor(funcol.all_gather_single(x.contiguous(), 0, self.group))
        return parts.unflatten(0, (self.size, x.shape[0])).movedim(0, 1).flatten(1, 2)[:, :self.length]

    def _all_to_all(self, send: torch.Tensor) -> torch.Tensor:
        """Part i of dim 0 goes to rank i; part i of the result came from rank i."""
        return funcol.wait_tensor(funcol.all_to_all_single(send, None, None, self.group))

    def to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """Ulysses: (B, chunk, H, D) on each rank -> (B, S, H / N, D), this rank's heads of every token."""
        b, c, h, d = x.shape
        send = x.reshape(b, c, self.size, h // self.size, d).permute(2, 0, 1, 3, 4).contiguous()
        received = self._all_to_all(send)
        return received.permute(1, 0, 2, 3, 4).reshape(b, self.size * c, h // self.size, d)[:, :self.length]

    def to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Ulysses, inverse of `to_heads`: (B, S, H / N, D) -> (B, chunk, H, D)."""
        b, _, h, d = x.shape
        send = self._padded(x).reshape(b, self.size, self.chunk, h, d).transpose(0, 1).contiguous()
        received = self._all_to_all(send)
        return received.permute(1, 2, 0, 3, 4).reshape(b, self.chunk, self.size * h, d)

    def attend(self, kernel: Kernel, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Self-attention of this rank's (B, chunk, H, D) q/k/v over the whole sequence -> (B, chunk, H, D)."""
        if self.mode == "ulysses":
            return self.to_tokens(kernel(self.to_heads(q), self.to_heads(k), self.to_heads(v)))
        return kernel(q, self.gather(k), self.gather(v))


class WholeSequence:
    """The one-process case: every operation of `Split` is the identity."""

    mode, start, rank, size = "off", 0, 0, 1

    def __init__(self, length: int):
        self.length = self.end = self.chunk = length

    def shard(self, x):
        return x

    gather = to_heads = to_tokens = shard

    @staticmethod
    def attend(kernel: Kernel, q, k, v):
        return kernel(q, k, v)


class SequenceParallel:
    """Sequence parallel over `group` (default: torch.distributed's default group, e.g. the ranks of torchrun).

    mode "ulysses" falls back to "ring" when `heads` does not divide by the world size. `split(length)` starts a
    forward over `length` tokens and becomes `current`, which the installed attention kernels read."""

    def __init__(self, mode: str, heads: int, group=None):
        check_mode(mode)
        if mode == "off":
            raise ValueError("SequenceParallel needs mode 'ulysses' or 'ring'.")
        if not dist.is_available() or not dist.is_initialized():
            raise ValueError(f"sequence_parallel={mode!r} needs torch.distributed initialised: start the job with "
                             "torchrun (e.g. `torchrun --nproc-per-node 8 -m wan_animate animate ... "
                             f"--sequence-parallel {mode}`) or call torch.distributed.init_process_group first.")
        self.group = group or dist.group.WORLD
        self.rank, self.size = dist.get_rank(self.group), dist.get_world_size(self.group)
        self.heads = heads
        self.mode = "ring" if mode == "ulysses" and heads % self.size else mode
        self.current: Split | None = None
        self._splits: dict[int, Split] = {}

    def split(self, length: int) -> Split:
        """The Split of a `length`-token forward; one object per length, so compiled blocks see the same one."""
        if length not in self._splits:
            self._splits[length] = Split(length, self.mode, self.rank, self.size, self.group)
        self.current = self._splits[length]
        return self.current

    def same_everywhere(self, x: torch.Tensor) -> torch.Tensor:
        """Rank 0's copy of `x` on every rank (conditioning computed on each rank may differ in the last bits)."""
        x = x.contiguous()
        dist.broadcast(x, 0, group=self.group)
        return x

    def describe(self) -> dict:
        return {"sequence_parallel": self.mode, "world_size": self.size, "heads_per_rank":
                self.heads // self.size if self.mode == "ulysses" else self.heads}


def agree(sequence: SequenceParallel | None, tensor: torch.Tensor) -> torch.Tensor:
    """Under sequence parallel, rank 0's copy of a DiT input that each rank computed itself; else `tensor`."""
    return sequence.same_everywhere(tensor) if sequence is not None else tensor


def check_ulysses(sequence: SequenceParallel | None, model: str) -> None:
    """For forwards that need whole sequences per head (Wan-Animate-2's in-context attention and K/V cache)."""
    if sequence is not None and sequence.mode != "ulysses":
        raise ValueError(f"{model} runs sequence parallel as Ulysses only: its {sequence.heads} heads must divide "
                         f"by the {sequence.size} ranks (e.g. 40 heads: 2, 4, 5 or 8 GPUs).")


def split_for(sequence: SequenceParallel | None, length: int) -> Split | WholeSequence:
    return sequence.split(length) if sequence is not None else WholeSequence(length)


def frame_runs(start: int, end: int, frame_tokens: int):
    """(frame index, first token, end token) of each frame that tokens [start, end) touch, clipped to the range."""
    first = start
    while first < end:
        frame = first // frame_tokens
        stop = min(end, (frame + 1) * frame_tokens)
        yield frame, first, stop
        first = stop
