"""Component placement: borrowing a CPU encoder onto a device leaves its CPU weights untouched and in place.

The real target is a CUDA GPU (pinned host memory, asynchronous copies; measured by benchmarks/e2e.py on an H100);
here the `meta` device stands in for it, which exercises the same swapping of parameters and buffers (and counts
what is on the "device" at each moment).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from wan_animate.engine.blockswap import spread_indices
from wan_animate.engine.memory import tensor_bytes
from wan_animate.engine.placement import place_transformer, placed, streamed


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied, like umT5's shared / embed_tokens
        self.norm = nn.LayerNorm(4)
        self.register_buffer("positions", torch.arange(10.0))

    def forward(self, ids):
        return self.head(self.norm(self.embed(ids)))


def snapshot(module):
    return {n: (t.device, t.data_ptr()) for n, t in list(module.named_parameters()) + list(module.named_buffers())}


def test_placed_streams_cpu_modules_that_go_back():
    enc = Encoder()
    before = snapshot(enc)
    seen = []
    enc.norm.register_forward_pre_hook(lambda m, args: seen.append(enc.embed.weight.device.type))
    with placed(enc, torch.device("meta"), restore=True, borrow=True):
        assert enc.embed.weight.device.type == "cpu"  # lent only while it runs
        out = enc(torch.zeros(3, dtype=torch.long, device="meta"))
        assert enc.embed.weight.device.type == "cpu"
    assert seen == ["meta"] and out.device.type == "meta"
    assert snapshot(enc) == before
    with placed(enc, torch.device("cpu"), restore=True, borrow=True):  # already there: nothing moves
        assert snapshot(enc) == before


def test_streamed_holds_one_piece_of_the_encoder_at_a_time(tiny):
    """umT5 streamed in pieces: while a layer runs only that piece is on the device; afterwards all is as before."""
    encoder = copy.deepcopy(tiny.text_encoder)
    before = snapshot(encoder)
    layer_bytes = max(tensor_bytes(block) for block in encoder.encoder.block)
    on_device: list[int] = []

    def count(module, args):
        on_device.append(sum(p.numel() * p.element_size() for p in encoder.parameters() if p.device.type == "meta"))

    with streamed(encoder, torch.device("meta"), unit_bytes=layer_bytes):
        hooks = [block.register_forward_pre_hook(count) for block in encoder.encoder.block]
        ids = torch.zeros(1, 8, dtype=torch.long, device="meta")
        out = encoder(input_ids=ids).last_hidden_state
        for hook in hooks:
            hook.remove()
    assert out.device.type == "meta" and len(on_device) == len(encoder.encoder.block)
    assert max(on_device) == layer_bytes  # one layer (the embedding was dropped after its lookup)
    assert snapshot(encoder) == before


def test_streamed_restores_after_an_error(tiny):
    encoder = copy.deepcopy(tiny.text_encoder)
    before = snapshot(encoder)
    block = encoder.encoder.block[1]
    hook = block.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    ids = torch.zeros(1, 8, dtype=torch.long, device="meta")
    with pytest.raises(RuntimeError, match="boom"), streamed(encoder, torch.device("meta"), unit_bytes=1):
        encoder(input_ids=ids)
    hook.remove()
    assert snapshot(encoder) == before


def test_place_transformer_keeps_swapped_blocks_on_the_host(tiny):
    model = copy.deepcopy(tiny.transformer)
    blocks = len(model.blocks)
    swap = place_transformer(model, torch.device("meta"), blocks_on_cpu=2)
    assert swap.indices == spread_indices(blocks, 2)
    for i, block in enumerate(model.blocks):
        assert {p.device.type for p in block.parameters()} == {"cpu" if i in swap.indices else "meta"}
    outside = [p for n, p in model.named_parameters() if not n.startswith("blocks.")]
    assert {p.device.type for p in outside} == {"meta"}
    on_device = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]
                    if t.device.type == "meta")
    assert on_device == tensor_bytes(model) - sum(tensor_bytes(model.blocks[i]) for i in swap.indices)
    assert place_transformer(model, torch.device("meta"), 0) is None
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_host_copies_share_one_exact_slab(tiny):
    """Weights moved to the host land in one allocation of exactly their size (torch's pinned allocator would
    round each tensor up to a power of two), with their values, ties and Parameter objects kept."""
    from wan_animate.engine.pinned import ALIGN, pinned_copies
    from wan_animate.engine.placement import to_host

    tensors = [torch.randn(3, 5), torch.arange(7, dtype=torch.int64), torch.randn(2, 2).to(torch.bfloat16)]
    copies = pinned_copies(tensors, pinned=False)
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(tensors, copies))
    storages = {c.untyped_storage().data_ptr() for c in copies}
    assert len(storages) == 1 and copies[0].untyped_storage().nbytes() == 3 * ALIGN
    encoder = copy.deepcopy(tiny.text_encoder)
    before = snapshot(encoder)
    to_host(encoder, pinned=False)  # already on the host: nothing moves
    assert snapshot(encoder) == before


def test_place_for_job_plans_and_places(tiny):
    """memory="auto" outside ComfyUI: the plan for the declared free memory, and the weights where it says."""
    from wan_animate.engine.memory import ENCODERS_RESIDENT, GIB, DeviceBudget, JobShape
    from wan_animate.engine.placement import place_for_job

    components = copy.deepcopy(tiny)
    plan, swap = place_for_job(components, torch.device("meta"), JobShape(5, 32, 32), DeviceBudget(64 * GIB))
    assert (plan.blocks_on_cpu, plan.encoders, plan.vae_tile, swap) == (0, ENCODERS_RESIDENT, None, None)
    for module in (components.transformer, components.vae, components.text_encoder, components.image_encoder):
        assert {p.device.type for p in module.parameters()} == {"meta"}
    plan, swap = place_for_job(copy.deepcopy(tiny), torch.device("meta"), JobShape(5, 32, 32),
                               DeviceBudget(64 * GIB), blocks_on_cpu=2)
    assert plan.blocks_on_cpu == 2 and swap.indices == spread_indices(len(tiny.transformer.blocks), 2)
