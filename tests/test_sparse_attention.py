"""attention="sparse": comfy-kitchen's training-free Sol-Attn as an attention choice of both engines.

comfy-kitchen's CUDA kernel cannot run here (no GPU): its eager reference, which defines the algorithm (in fp32),
is what SparseAttention calls on the CPU, so the numbers below are the algorithm's; the kernel's own int8 rounding
and its speed are measured by benchmarks.attention on a GPU. Where the kernel can run is decided by a probe that
needs a CUDA GPU: the tests that install it on a CPU force that answer (`forced_available`) and say so.
"""
from __future__ import annotations

import logging

import pytest
import torch

from benchmarks.attention import exact_block_fraction, random_qkv, structured_qkv
from benchmarks.harness import relative_error
from wan_animate.engine.accel import AccelOptions, accelerate, sparse_attention
from wan_animate.engine.accel.processors import SelfAttentionProcessor, sdpa_kernel
from wan_animate.engine.accel.sparse_attention import SparseAttention, SparseSettings

pytest.importorskip("comfy_kitchen")

TOKENS, HEADS, DIM = 2048, 2, 128  # 32 blocks of 64 tokens


def qkv(kind: str, tokens: int = TOKENS, heads: int = HEADS):
    make = structured_qkv if kind == "structured" else random_qkv
    return tuple(t.float() for t in make(tokens, heads, DIM, torch.Generator().manual_seed(7)))


def sparse(tau: float = 1.0, min_tokens: int = 0, dense=sdpa_kernel) -> SparseAttention:
    return SparseAttention(SparseSettings(tau=tau, min_tokens=min_tokens), dense)


@pytest.mark.parametrize("kind", ["structured", "random"])
def test_equals_dense_attention_when_every_block_is_exact(kind):
    q, k, v = qkv(kind)
    assert exact_block_fraction(q, k, -100.0) == 1.0  # a threshold far below every score: nothing pooled
    torch.testing.assert_close(sparse(tau=-100.0)(q, k, v), sdpa_kernel(q, k, v), rtol=1e-4, atol=1e-4)


def test_error_bounded_on_structured_inputs_and_not_on_random_ones():
    """The 3 % rule of item 2, on benchmarks.attention's structured inputs: met with most blocks pooled; on random
    inputs (no block more relevant than another) the same routing is tens of percent off, which is why "auto"
    never picks it."""
    q, k, v = qkv("structured")
    assert exact_block_fraction(q, k, 1.0) < 0.5
    out = sparse(tau=1.0)(q, k, v)
    assert not torch.equal(out, sdpa_kernel(q, k, v))
    assert relative_error(out, sdpa_kernel(q, k, v)) < 0.03
    q, k, v = qkv("random")
    assert relative_error(sparse(tau=1.0)(q, k, v), sdpa_kernel(q, k, v)) > 0.1


def test_calls_it_does_not_fit_take_the_dense_kernel():
    calls = []

    def dense(q, k, v):
        calls.append(q.shape)
        return sdpa_kernel(q, k, v)
    q, k, v = qkv("random", tokens=256)
    kernel = sparse(min_tokens=512, dense=dense)
    assert torch.equal(kernel(q, k, v), sdpa_kernel(q, k, v))  # shorter than min_tokens
    kernel = sparse(dense=dense)
    kernel(q[..., :64], k[..., :64], v[..., :64])  # head size 64: comfy-kitchen's kernels take 128 only
    kernel(q[:, :64], k, v)  # queries of one frame against all keys (Animate-2's in-context attention)
    assert calls == [(1, 256, 2, 128), (1, 256, 2, 64), (1, 64, 2, 128)]
    kernel(q, k, v)
    assert len(calls) == 3  # fits: Sol-Attn


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="sparse_tau=nan: must be a finite number"):
        AccelOptions(attention="sparse", sparse_tau=float("nan")).check()
    with pytest.raises(ValueError, match="min_tokens=-1"):
        SparseSettings(min_tokens=-1).check()


def test_where_it_cannot_run_auto_is_used_with_one_log_line(caplog):
    from wan_loader.testing.tiny import tiny_transformer

    model = tiny_transformer()
    with caplog.at_level(logging.WARNING):
        fast = accelerate(model, "cpu", AccelOptions(attention="sparse"))
    assert fast.attention == "native" and fast.describe()["attention"] == "native"
    lines = [r.getMessage() for r in caplog.records if "sparse" in r.getMessage()]
    assert lines == ["attention='sparse' cannot run: no CUDA GPU (comfy-kitchen's sol_attn kernel runs on CUDA GPUs); "
                     "using 'native' instead"]
    assert not any(isinstance(b.attn1.processor, SelfAttentionProcessor) for b in model.blocks)


@pytest.fixture
def forced_available(monkeypatch):
    """The probe's answer on a GPU where the kernel runs, forced on this CPU (SparseAttention then calls
    comfy-kitchen's eager reference)."""
    monkeypatch.setattr(sparse_attention, "unavailable_reason", lambda device: None)


def transformer_with_128_wide_heads():
    """The tiny Animate-14B with the real head size (1 head of 128), so Sol-Attn applies to its self-attention."""
    from diffusers import WanAnimateTransformer3DModel

    from wan_loader.testing.tiny import TINY_TRANSFORMER_CONFIG

    torch.manual_seed(0)
    return WanAnimateTransformer3DModel(**{**TINY_TRANSFORMER_CONFIG, "num_attention_heads": 1,
                                           "attention_head_dim": 128}).eval()


def test_each_model_keeps_its_own_sparse_settings(forced_available):
    first, second = transformer_with_128_wide_heads(), transformer_with_128_wide_heads()
    fast = accelerate(first, "cpu", AccelOptions(attention="sparse", sparse_tau=0.5))
    accelerate(second, "cpu", AccelOptions(attention="sparse", sparse_tau=2.0))
    assert fast.describe() == {"attention": "sparse", "sparse_tau": 0.5, "sparse_min_tokens": 12288,
                               "fp8_matmul": "dequant", "compiled": False}
    taus = lambda model: {b.attn1.processor.kernel.settings.tau for b in model.blocks}  # noqa: E731
    assert taus(first) == {0.5} and taus(second) == {2.0}
    accelerate(first, "cpu", AccelOptions(attention="native"))  # another choice gives diffusers' processors back
    assert not any(isinstance(b.attn1.processor, SelfAttentionProcessor) for b in first.blocks)
    assert taus(second) == {2.0}


def test_a_block_runs_sol_attn_through_the_engine_processor(forced_available, monkeypatch):
    """The processor the engine installs sends a block's self-attention through Sol-Attn: with every block exact it
    equals diffusers' own processor; sparser, it differs."""
    from wan_animate.engine.accel.attention import set_attention

    model = transformer_with_128_wide_heads()
    attn = model.blocks[0].attn1
    hidden = torch.randn(1, 512, model.config.num_attention_heads * 128, generator=torch.Generator().manual_seed(1))
    expected = attn.processor(attn, hidden)
    sol_calls = []
    for tau, close in ((-100.0, True), (3.0, False)):
        set_attention(model, "sparse", "cpu", SparseSettings(tau=tau, min_tokens=0))
        kernel = attn.processor.kernel
        monkeypatch.setattr(kernel, "sol_attn", lambda *a, _f=kernel.sol_attn, **kw: sol_calls.append(1) or _f(*a, **kw))
        out = attn.processor(attn, hidden)
        assert torch.allclose(out, expected, atol=1e-5) == close
    assert len(sol_calls) == 2


def test_animate2_takes_it_for_plain_self_attention_and_keeps_the_merged_in_context_call(forced_available):
    from wan_animate.engine.animate2.accel import accelerate_animate2
    from wan_animate.engine.animate2.attention import sdpa_with_lse
    from wan_loader.testing.tiny import tiny_animate2_transformer

    fast = accelerate_animate2(tiny_animate2_transformer(), "cpu", AccelOptions(attention="sparse", sparse_tau=1.5))
    assert isinstance(fast.kernel, SparseAttention) and fast.lse_kernel is sdpa_with_lse
    assert fast.describe()["attention"] == "sparse" and fast.describe()["sparse_tau"] == 1.5
    assert fast.describe()["in_context"] == "merged"


def test_animate2_where_it_cannot_run_uses_auto():
    from wan_animate.engine.animate2.accel import accelerate_animate2
    from wan_loader.testing.tiny import tiny_animate2_transformer

    fast = accelerate_animate2(tiny_animate2_transformer(), "cpu", AccelOptions(attention="sparse"))
    assert fast.attention == "native" and not isinstance(fast.kernel, SparseAttention)
