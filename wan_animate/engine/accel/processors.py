"""A self-attention processor for the Wan blocks' attn1 that takes any attention kernel (e.g. fp8_attention).

diffusers' attention dispatch only knows its registered backends; this processor does the same work as its
WanAttnProcessor for self-attention (projections, RMS norms across heads, interleaved RoPE, output projection)
and calls `kernel(q, k, v) -> out` on (B, S, H, D) tensors. Cross-attention keeps diffusers' processor.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on interleaved channel pairs (x: (B, S, H, D); cos/sin: (1, S, 1, D), pairs repeated)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).type_as(x)


class SelfAttentionProcessor:
    def __init__(self, kernel: Kernel):
        self.kernel = kernel

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("SelfAttentionProcessor serves unmasked self-attention (a Wan block's attn1) only")
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query, key = apply_rotary(query, *rotary_emb), apply_rotary(key, *rotary_emb)
        out = self.kernel(query, key, value).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def install_self_attention(blocks, kernel: Kernel) -> None:
    for block in blocks:
        block.attn1.set_processor(SelfAttentionProcessor(kernel))


def reset_self_attention(blocks) -> None:
    """Give attn1 of every block back its default (diffusers) processor."""
    for block in blocks:
        if isinstance(block.attn1.processor, SelfAttentionProcessor):
            block.attn1.set_processor(block.attn1._default_processor_cls())


def sdpa_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch's SDPA on (B, S, H, D) (reference and CPU path)."""
    return torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                            v.transpose(1, 2)).transpose(1, 2)
