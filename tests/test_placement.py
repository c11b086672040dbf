"""Component placement: borrowing a CPU encoder onto a device leaves its CPU weights untouched and in place.

The real target is a CUDA GPU (pinned host memory, asynchronous copies; measured by benchmarks/e2e.py on an H100);
here the `meta` device stands in for it, which exercises the same swapping of parameters and buffers.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from wan_animate.engine.placement import borrowed, placed


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied, like umT5's shared / embed_tokens
        self.norm = nn.LayerNorm(4)
        self.register_buffer("positions", torch.arange(10.0))


def snapshot(module):
    return {n: (t.device, t.data_ptr()) for n, t in list(module.named_parameters()) + list(module.named_buffers())}


def test_borrowed_puts_weights_on_the_device_and_back_untouched():
    enc = Encoder()
    before = snapshot(enc)
    param_ids = {n: id(p) for n, p in enc.named_parameters()}
    with borrowed(enc, torch.device("meta")) as on_device:
        assert on_device is enc
        assert {t.device.type for t in list(enc.parameters()) + list(enc.buffers())} == {"meta"}
        assert enc.head.weight is enc.embed.weight  # still tied
    assert snapshot(enc) == before  # the same CPU storage: nothing was copied back
    assert {n: id(p) for n, p in enc.named_parameters()} == param_ids  # the same Parameter objects again


def test_borrowed_restores_after_an_error():
    enc = Encoder()
    before = snapshot(enc)
    with pytest.raises(RuntimeError, match="boom"), borrowed(enc, torch.device("meta")):
        raise RuntimeError("boom")
    assert snapshot(enc) == before


def test_placed_borrows_only_cpu_modules_that_go_back():
    enc = Encoder()
    assert type(placed(enc, torch.device("meta"), restore=True, borrow=True)).__name__ == "_GeneratorContextManager"
    with placed(enc, torch.device("meta"), restore=True, borrow=True):
        assert enc.embed.weight.device.type == "meta"
    assert enc.embed.weight.device.type == "cpu"
    with placed(enc, torch.device("cpu"), restore=True, borrow=True):  # already there: nothing moves
        assert enc.embed.weight.device.type == "cpu"
