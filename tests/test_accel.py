"""Engine fast paths on the CPU: block swap gives the resident result, backend choice, fp8 matmul numerics.

The GPU-only parts (cuDNN attention, CUDA streams of the swap, compiled blocks) are measured by benchmarks.step
on an H100; here the same code runs through its CPU branches (torch's CPU _scaled_mm computes the fp8 path).
"""
from __future__ import annotations

import copy

import pytest
import torch

from wan_animate.engine.accel import (
    AccelOptions,
    accelerate,
    choose_attention,
    fp8_matmul,
    quantize_transformer,
)
from wan_animate.engine.accel.selection import INT8, INT8_FP16, SCALED_MM, DeviceFacts
from wan_animate.engine.blockswap import BlockSwap, spread_indices
from wan_animate.engine.forward import AnimateDiT
from wan_animate.engine.placement import place_transformer, swapping
from wan_loader import fp8 as fp8_weights
from wan_loader.fp8 import FP8Linear


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


def forward_inputs(dit: AnimateDiT, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cfg = dit.config
    frames, h, w = 3, 8, 8
    latent = torch.randn(1, cfg.in_channels, frames, h, w, generator=g)
    text = torch.randn(1, 512, cfg.text_dim, generator=g)
    clip = torch.randn(1, 257, cfg.image_dim, generator=g)
    face = torch.rand(1, 3, 4 * (frames - 1) - 3, cfg.motion_encoder_size, cfg.motion_encoder_size, generator=g) * 2 - 1
    pose = torch.randn(1, cfg.latent_channels, frames - 1, h, w, generator=g)
    context = dit.encode_context(text, clip)
    return (latent, dit.time_embedding(torch.tensor([500.0]), context), context, dit.encode_motion(face),
            dit.embed_pose(pose), dit.rotary(latent.shape))


def run(transformer, block_runner=None, seed: int = 0) -> torch.Tensor:
    dit = AnimateDiT(transformer, block_runner)
    with torch.no_grad():
        return dit(*forward_inputs(dit, seed))


def test_block_swap_equals_resident(tiny):
    model = copy.deepcopy(tiny.transformer).float()
    expected = run(model)
    swapped = copy.deepcopy(model)
    swap = BlockSwap(swapped.blocks, [1, 3], "cpu")
    runner = swap.runner()
    for seed in (0, 1):  # a second pass starts the swap cycle over
        torch.testing.assert_close(run(swapped, runner, seed), run(model, seed=seed), rtol=0, atol=0)
    assert swap.slot_bytes == sum(t.numel() * t.element_size() for t in model.blocks[1].state_dict().values())
    assert expected.shape[1] == model.config.out_channels


def test_block_swap_every_block_and_accelerate(tiny):
    model = copy.deepcopy(tiny.transformer).float()
    expected = run(model)
    swapped = copy.deepcopy(model)
    swap = place_transformer(swapped, "cpu", blocks_on_cpu=len(model.blocks))
    fast = accelerate(swapped, "cpu", AccelOptions())
    assert fast.describe() == {"attention": "native", "fp8_matmul": "dequant", "compiled": False}
    assert swap.indices == list(range(len(model.blocks)))
    torch.testing.assert_close(run(swapped, swapping(swap, fast.block_runner)), expected, rtol=0, atol=0)


def test_spread_indices():
    assert spread_indices(40, 8) == [2, 7, 12, 17, 22, 27, 32, 37]
    assert spread_indices(40, 0) == []
    assert spread_indices(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="blocks_on_cpu=41"):
        spread_indices(40, 41)


def test_choose_attention(monkeypatch):
    monkeypatch.delenv("WAN_ANIMATE_ATTENTION", raising=False)
    assert choose_attention("cpu") == "native"
    assert choose_attention("cpu", "cudnn") == "cudnn"
    monkeypatch.setenv("WAN_ANIMATE_ATTENTION", "flash")
    assert choose_attention("cpu") == "flash"
    assert choose_attention("cpu", "efficient") == "efficient"  # the explicit argument wins over the environment
    with pytest.raises(ValueError, match="attention='fast'"):
        choose_attention("cpu", "fast")
    assert choose_attention("cpu", "accurate") == "native"  # bf16 attention: the fastest SDPA kernel


ALL_WORKING = frozenset({INT8, INT8_FP16, SCALED_MM})  # INT8 (fp8 P·V) is never picked: 5-6 % off on random inputs


@pytest.mark.parametrize("capability, cudnn, working, attention, matmul", [
    ((8, 0), 90000, ALL_WORKING, INT8_FP16, "dequant"),  # A100: no fp8 tensor cores
    ((8, 6), 90000, ALL_WORKING, INT8_FP16, "dequant"),  # RTX 30xx
    ((8, 9), 90000, ALL_WORKING, INT8_FP16, SCALED_MM),  # RTX 40xx / L40: fp8 tensor cores
    ((9, 0), 91900, ALL_WORKING, "cudnn", SCALED_MM),  # H100 / H200: cuDNN's bf16 kernel, as fast and exact
    ((12, 0), 91900, ALL_WORKING, INT8_FP16, SCALED_MM),  # RTX 50xx
    ((8, 6), 90000, frozenset(), "flash", "dequant"),  # the int8 kernel's probe failed: bf16 FlashAttention
    ((8, 9), 90000, frozenset({INT8_FP16}), INT8_FP16, "dequant"),  # _scaled_mm failed its probe
    ((9, 0), 80000, ALL_WORKING, INT8_FP16, SCALED_MM),  # Hopper with a cuDNN 8 (no fast bf16 kernel)
    ((7, 5), 90000, ALL_WORKING, "efficient", "dequant"),  # Turing: no int8 kernel, no FlashAttention-2
    (None, None, frozenset(), "native", "dequant"),  # CPU
])
def test_kernel_selection_per_gpu_generation(capability, cudnn, working, attention, matmul):
    """Selection is a pure function of the device's facts: each GPU generation's path, forced on the CPU."""
    from wan_animate.engine.accel import select_attention, select_fp8_matmul
    facts = DeviceFacts(capability, cudnn, working)
    assert select_attention(facts) == attention
    assert select_fp8_matmul(facts, has_fp8_weights=True) == matmul
    assert select_fp8_matmul(facts, has_fp8_weights=False) == "dequant"


def test_failed_probe_falls_back_with_one_log_line(caplog):
    """A kernel whose probe fails is reported once per GPU (the result is cached); here no GPU exists, so the
    probe of cuda:0 fails the way a kernel that does not build would."""
    from wan_animate.engine.accel.attention_quant import probe
    results: dict = {}
    calls = []
    with caplog.at_level("WARNING"):
        for _ in range(2):
            reason = probe(lambda q, k, v: calls.append(1), torch.device("cuda", 0), results, "kernel X fails")
    assert reason.startswith("kernel X fails") and results == {0: reason}
    assert [r.getMessage() for r in caplog.records] == [f"cuda:0: {reason}; another kernel is used"]


def test_two_models_keep_their_own_kernel_settings(tiny, monkeypatch):
    """Attention and fp8 matmul choices live on each model's layers: configuring a second model leaves the first
    model's kernels and output as they were. fp8 tensor cores are forced (Hopper's path; torch computes
    _scaled_mm on the CPU)."""
    monkeypatch.setattr(fp8_matmul, "supports_scaled_mm", lambda device: True)
    first = copy.deepcopy(tiny.transformer).to(torch.bfloat16)
    quantize_transformer(first)
    second = copy.deepcopy(first)
    accelerate(first, "cpu", AccelOptions(attention="math", fp8_matmul="scaled_mm", fp8_fast_accum=False))
    alone = run(first)
    accelerate(second, "cpu", AccelOptions(attention="native", fp8_matmul="dequant"))
    layers = lambda model: [m for m in model.modules() if isinstance(m, FP8Linear)]  # noqa: E731
    assert {m.matmul for m in layers(first)} == {fp8_matmul.ScaledMatmul(fast_accum=False)}
    assert {m.matmul for m in layers(second)} == {None}
    backends = lambda model: {m.processor._attention_backend for m in model.modules() if hasattr(m, "processor")}  # noqa: E731
    assert {str(b) for b in backends(first)} == {"AttentionBackendName._NATIVE_MATH"}
    assert {str(b) for b in backends(second)} == {"AttentionBackendName.NATIVE"}
    torch.testing.assert_close(run(first), alone, rtol=0, atol=0)
    assert cosine(run(second), alone) > 0.99  # the same model through the dequantising path


def test_accel_options_reject_bad_values():
    with pytest.raises(ValueError, match="fp8_matmul='int8'"):
        AccelOptions(fp8_matmul="int8").check()
    with pytest.raises(ValueError, match="scaled_mm"):
        accelerate(torch.nn.Module(), "cpu", AccelOptions(fp8_matmul="scaled_mm", attention="native"))


def test_quantize_rows_roundtrip():
    x = torch.randn(64, 128) * torch.logspace(-3, 2, 64)[:, None]
    q, scale = fp8_matmul.quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (64, 1)
    assert (q.float().abs().amax(dim=1) == fp8_matmul.E4M3_MAX).all()  # every row uses the full fp8 range
    assert cosine(q.float() * scale, x) > 0.999


@pytest.mark.parametrize("per_channel", [True, False])
def test_scaled_mm_matches_dequant_path(per_channel):
    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(128, 96).to(torch.bfloat16)
    layer = FP8Linear(128, 96, per_channel=per_channel)
    q, scale = fp8_weights.quantize_fp8(linear.weight.data, per_channel=per_channel)
    layer.load_state_dict({"weight": q, "scale": scale, "bias": linear.bias.data})
    x = torch.randn(2, 40, 128, generator=g).to(torch.bfloat16)
    dequant = layer(x)
    fast = fp8_matmul.scaled_mm_linear(x, layer.weight, layer.scale, layer.bias, torch.bfloat16)
    assert fast.shape == dequant.shape == (2, 40, 96) and fast.dtype == torch.bfloat16
    assert cosine(fast, dequant) > 0.999
    assert cosine(fast, linear(x)) > 0.998


def test_scaled_mm_falls_back_on_odd_sizes():
    layer = FP8Linear(20, 12, per_channel=True)
    layer.weight.data = torch.randn(12, 20).to(torch.float8_e4m3fn)
    layer.bias.data = torch.randn(12).to(torch.bfloat16)
    x = torch.randn(3, 20, dtype=torch.bfloat16)
    torch.testing.assert_close(fp8_matmul.scaled_mm_linear(x, layer.weight, layer.scale, layer.bias, torch.bfloat16),
                               layer(x))


def test_fp8_transformer_close_to_bf16(tiny):
    model = copy.deepcopy(tiny.transformer).to(torch.bfloat16)
    reference = run(model)
    assert quantize_transformer(model) > 0
    assert any(isinstance(m, FP8Linear) for m in model.blocks.modules())
    dequant = run(model)
    assert fp8_matmul.install(model, fp8_matmul.ScaledMatmul()) == quantize_transformer(copy.deepcopy(tiny.transformer))
    fast = run(model)
    assert cosine(dequant, reference) > 0.99
    assert cosine(fast, reference) > 0.99


def test_self_attention_processor_matches_diffusers(tiny):
    from wan_animate.engine.accel.processors import (
        install_self_attention,
        reset_self_attention,
        sdpa_kernel,
    )
    model = copy.deepcopy(tiny.transformer).float()
    expected = run(model)
    install_self_attention(model.blocks, sdpa_kernel)
    torch.testing.assert_close(run(model), expected, rtol=1e-5, atol=1e-5)
    reset_self_attention(model.blocks)
    assert type(model.blocks[0].attn1.processor).__name__ == "WanAttnProcessor"


def test_fp8_attention_quantisation_keeps_attention():
    """The fp8 kernel's operands (block-scaled Q/K, smoothed K, per-channel V), dequantised, give back attention."""
    from wan_animate.engine.accel import fp8_attention as fa
    from wan_animate.engine.accel.processors import sdpa_kernel
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 300, 2, 64, generator=g) for _ in "qkv")
    k = k + 2.0  # a shared offset, removed by smoothing
    q8, k8, v8, q_scale, k_scale, v_scale = fa.quantize_qkv(q, k, v, 64 ** -0.5)
    assert q8.shape == (1, 2, 384, 64) and v8.shape == (1, 2, 64, 384) and q_scale.shape == (1, 2, 3)
    deq = lambda x, s: (x.float().reshape(1, 2, 3, fa.BLOCK, 64) * s[..., None, None]).reshape(1, 2, 384, 64)
    scores = deq(q8, q_scale) @ deq(k8, k_scale).transpose(-1, -2) / torch.log2(torch.tensor(torch.e))
    scores[..., 300:] = float("-inf")
    out = torch.softmax(scores, -1) @ (v8.float() * v_scale[..., None]).transpose(-1, -2)
    assert cosine(out[:, :, :300].transpose(1, 2), sdpa_kernel(q, k, v)) > 0.99


def test_cudnn_fp8_attention_numerics_emulated():
    """cuDNN fp8 attention's operands and output scaling (smoothed K and V, one scale per tensor, P at 448, output
    in V's scale plus V's mean), emulated with fp8 casts on the CPU, give back attention. The kernel itself needs a
    Hopper GPU: benchmarks.attention and step.py measure it there."""
    from wan_animate.engine.accel import cudnn_fp8_attention as ca
    from wan_animate.engine.accel.processors import sdpa_kernel
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 300, 2, 64, generator=g) for _ in "qkv")
    k, v = k + 3.0, v - 2.0  # shared offsets: smoothing takes them out of the fp8 range
    q8, dq = ca.quantize(q)
    k8, dk = ca.quantize(ca.smooth(k)[0])
    v_smooth, v_mean = ca.smooth(v)
    v8, dv = ca.quantize(v_smooth)
    assert q8.dtype == ca.E4M3 and dq.shape == (1, 1, 1, 1) and v_mean.shape == (1, 1, 2, 64)
    scores = torch.einsum("bshd,bthd->bhst", q8.float() * dq, k8.float() * dk) * 64 ** -0.5
    p = torch.softmax(scores, -1)
    p8 = (p * ca.E4M3_MAX).to(ca.E4M3).float() / ca.E4M3_MAX
    o = torch.einsum("bhst,bthd->bshd", p8, v8.float() * dv)
    assert o.abs().max() <= v_smooth.abs().max() * 1.01  # the output fits V's scale: e4m3 cannot overflow
    out = (o / dv).to(ca.E4M3).float() * dv + v_mean
    assert cosine(out, sdpa_kernel(q, k, v)) > 0.995


@pytest.mark.parametrize("name, module, words", [("cudnn_fp8", "cudnn_fp8_attention", ("frontend", "GPU")),
                                                  ("fa3_fp8", "fa3_attention", ("FlashAttention-3", "GPU"))])
def test_library_fp8_attention_says_why_it_cannot_run(tiny, name, module, words):
    import importlib

    from wan_animate.engine.accel.attention import set_attention
    reason = importlib.import_module(f"wan_animate.engine.accel.{module}").unavailable_reason("cpu")
    assert reason and any(w in reason for w in words)
    assert choose_attention("cpu", name) == name
    with pytest.raises(ValueError, match=f"{name}.*cannot run"):
        set_attention(copy.deepcopy(tiny.transformer), name, "cpu")


def test_per_head_fp8_operands_for_flash_attention_3():
    """FlashAttention-3 takes one descale per (batch, head): per-head quantisation, dequantised, gives back the
    operands, and a head of small values keeps its precision (a per-tensor scale would flush it)."""
    from wan_animate.engine.accel.attention_quant import E4M3, quantize
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 50, 3, 64, generator=g)
    x[:, :, 1] *= 1e-5
    x8, descale = quantize(x, per_head=True)
    assert x8.dtype == E4M3 and descale.shape == (2, 3)
    back = x8.float() * descale[:, None, :, None]
    for head in range(3):
        assert cosine(back[:, :, head], x[:, :, head]) > 0.998
    assert cosine(quantize(x)[0][:, :, 1].float(), x[:, :, 1]) < 0.99  # what a single scale would do


def test_cuda_index_names_the_gpu_or_says_why_there_is_none(monkeypatch):
    """One rule for every kernel's availability check; the CUDA answers are forced (no GPU here)."""
    from wan_animate.engine.accel.attention_quant import cuda_index
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_index() == (None, "no CUDA GPU")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert cuda_index("cpu") == (None, "cpu is not a CUDA GPU")
    assert cuda_index("cuda:1") == (1, None)
    assert cuda_index() == cuda_index("cuda") == (3, None)
