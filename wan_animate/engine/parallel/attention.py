"""Animate-14B's self-attention under sequence parallel: the blocks' attn1 processors with a splitting kernel.

The 14B blocks are diffusers' and call their attention processor; for the job, each attn1 gets the engine's
SelfAttentionProcessor whose kernel is the one the block used before (an fp8 kernel of accel, or diffusers'
attention dispatch with the chosen backend) wrapped so that it attends over every rank's tokens. Afterwards the
previous processors come back.
"""
from __future__ import annotations

import contextlib

from diffusers.models.attention_dispatch import dispatch_attention_fn

from ..accel.processors import SelfAttentionProcessor
from .sequence import Kernel, SequenceParallel


class ParallelKernel:
    """`kernel` over the whole sequence of the forward in progress (`sequence.current`)."""

    def __init__(self, sequence: SequenceParallel, kernel: Kernel):
        self.sequence, self.kernel = sequence, kernel

    def __call__(self, q, k, v):
        return self.sequence.current.attend(self.kernel, q, k, v)


def backend_kernel(processor) -> Kernel:
    """The (B, S, H, D) kernel of a diffusers attention processor: dispatch through its attention backend."""
    backend = getattr(processor, "_attention_backend", None)

    def kernel(q, k, v):
        return dispatch_attention_fn(q, k, v, backend=backend)

    return kernel


@contextlib.contextmanager
def parallel_self_attention(blocks, sequence: SequenceParallel | None):
    """Within the block, every block's attn1 attends across the ranks of `sequence` (no-op for None)."""
    if sequence is None:
        yield
        return
    saved = [block.attn1.processor for block in blocks]
    for block, processor in zip(blocks, saved):
        kernel = processor.kernel if isinstance(processor, SelfAttentionProcessor) else backend_kernel(processor)
        block.attn1.set_processor(SelfAttentionProcessor(ParallelKernel(sequence, kernel)))
    try:
        yield
    finally:
        for block, processor in zip(blocks, saved):
            block.attn1.set_processor(processor)
