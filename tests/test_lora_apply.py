"""Merged and run-time LoRAs give the same outputs (fp32, bf16, fp8 weights); strength 0 and removal change nothing.

Through a whole transformer forward on a tiny model, with real LoRA files (ComfyUI lightx2v-style with diffs and a
PEFT relight .ckpt) stacked at different strengths.
"""
from __future__ import annotations

import copy

import pytest
import torch
from diffusers import WanAnimateTransformer3DModel

from tests.lora_files import (
    LORA_TEST_CONFIG,
    block_linears,
    forward,
    random_factors,
    write_kijai,
    write_official_relight_ckpt,
)
from wan_loader.fp8 import FP8Linear, fp8_linear_names, quantize_fp8, replace_linears
from wan_loader.lora import LoraError, apply_loras, load_lora, merge_loras


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return WanAnimateTransformer3DModel(**LORA_TEST_CONFIG).eval()


@pytest.fixture(scope="module")
def loras(base, tmp_path_factory):
    """A distill-style LoRA (low-rank on every layer, bias/norm/modulation diffs) and a relight-style PEFT .ckpt."""
    d = tmp_path_factory.mktemp("loras")
    g = torch.Generator().manual_seed(7)
    extras = {name: torch.randn(p.shape, generator=g) * 0.05 for name, p in base.named_parameters()
              if name.startswith("blocks.") and name.endswith((
                  "to_q.bias", "ffn.net.2.bias", "norm2.weight", "norm_added_k.weight", "2.scale_shift_table",
                  "1.attn2.to_v.weight"))}  # the last: a full-weight `.diff` on a Linear (hooked at run time)
    factors = random_factors(base, block_linears(base) + ["proj_out", "patch_embedding"], 8, seed=8)
    distill = load_lora(write_kijai(d / "lightx2v_rank8.safetensors", factors, extras))
    relight = load_lora(write_official_relight_ckpt(d / "relighting_lora.ckpt",
                                                    random_factors(base, block_linears(base), 16, seed=9)))
    return distill, relight


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k


def to_fp8(model, per_channel: bool):
    """The block/face Linear layers as FP8Linear (e4m3fn + scale), the way the fp8 loader builds them."""
    model = copy.deepcopy(model)
    names = fp8_linear_names(model)
    weights = {n: (model.get_submodule(n).weight.detach().clone(), model.get_submodule(n).bias.detach().clone())
               for n in names}
    replace_linears(model, names, torch.float8_e4m3fn, torch.float32, per_channel)
    for n, (w, b) in weights.items():
        m = model.get_submodule(n)
        q, s = quantize_fp8(w, per_channel)
        m.weight.data.copy_(q)
        m.scale.data.copy_(s.reshape(m.scale.shape))
        m.bias.data.copy_(b)
    return model


def test_merged_equals_runtime_fp32_stacked(base, loras):
    distill, relight = loras
    stack = [(distill, 0.8), (relight, -0.6)]
    model = copy.deepcopy(base)
    reference = forward(model)
    before = state(model)
    with apply_loras(model, stack) as handle:
        runtime = forward(model)
        assert handle.changed
    assert_same_state(model, before)
    assert torch.equal(forward(model), reference)
    with merge_loras(model, stack, keep_original=True):
        merged = forward(model)
    assert_same_state(model, before)
    assert (runtime - reference).abs().max() > 0.05  # the LoRAs do something
    torch.testing.assert_close(runtime, merged, rtol=1e-4, atol=1e-5)


def test_merged_equals_runtime_bf16(base, loras):
    distill, relight = loras
    model = copy.deepcopy(base).to(torch.bfloat16)
    reference = forward(model)
    with apply_loras(model, [(distill, 1.0), (relight, 0.5)]):
        runtime = forward(model)
    merged_handle = merge_loras(model, [(distill, 1.0), (relight, 0.5)])
    merged = forward(model)
    effect = (runtime - reference).abs().max()
    assert effect > 0.05
    assert (runtime - merged).abs().max() < 0.05 * effect, (runtime - merged).abs().max() / effect
    merged_handle.unmerge()  # by subtraction: back to the original up to bf16 rounding
    assert (forward(model) - reference).abs().max() < 0.05 * effect

    model = copy.deepcopy(base).to(torch.bfloat16)
    before = state(model)
    merged_handle = merge_loras(model, [(distill, 1.0), (relight, 0.5)], keep_original=True)
    changed_bytes = sum(model.get_parameter(n).nbytes for n in merged_handle.changed)
    assert merged_handle.kept_bytes < 0.5 * changed_bytes  # not a full copy
    merged_handle.unmerge()
    assert_same_state(model, before)  # bit-exact


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_merged_equals_runtime_fp8(base, loras, per_channel):
    distill, relight = loras
    stack = [(distill, 1.0), (relight, 1.0)]
    model = to_fp8(base, per_channel)
    assert isinstance(model.blocks[0].attn1.to_q, FP8Linear)
    reference = forward(model)
    before = state(model)
    with apply_loras(model, stack):
        runtime = forward(model)
    assert_same_state(model, before)
    with merge_loras(model, stack, keep_original=True):
        merged = forward(model)
        q = model.blocks[0].attn1.to_q
        assert q.weight.dtype == torch.float8_e4m3fn and q.scale.shape == ((16,) if per_channel else ())
    assert_same_state(model, before)  # exact: fp8 bits and scales restored
    effect = (runtime - reference).abs().max()
    assert effect > 0.05
    assert (runtime - merged).abs().max() < 0.15 * effect  # re-quantization to e4m3 (3 mantissa bits)


def test_strength_zero_changes_nothing(base, loras):
    distill, relight = loras
    model = copy.deepcopy(base)
    reference, before = forward(model), state(model)
    with merge_loras(model, [(distill, 0.0), (relight, 0.0)]) as merged:
        assert merged.changed == []
        assert_same_state(model, before)
    with apply_loras(model, [(distill, 0.0)]) as handle:
        assert handle.changed == [] and not any(m._forward_hooks for m in model.modules())
        assert torch.equal(forward(model), reference)


def test_stacked_handles_removed_in_any_order_restore_exactly(base, loras):
    distill, relight = loras
    model = copy.deepcopy(base)
    reference, before = forward(model), state(model)
    first = apply_loras(model, [(distill, 1.0)])
    second = apply_loras(model, [(distill, 0.5), (relight, 1.0)])
    both = forward(model)
    first.remove()
    only_second = forward(model)
    second.remove()
    assert_same_state(model, before)
    assert torch.equal(forward(model), reference)
    assert not any(m._forward_hooks for m in model.modules())
    with merge_loras(model, [(distill, 1.5), (relight, 1.0)], keep_original=True):
        torch.testing.assert_close(forward(model), both, rtol=1e-4, atol=1e-5)
    with merge_loras(model, [(distill, 0.5), (relight, 1.0)], keep_original=True):
        torch.testing.assert_close(forward(model), only_second, rtol=1e-4, atol=1e-5)
    second.remove()  # idempotent


def test_merged_plus_runtime_on_top_equals_all_merged(base, loras):
    distill, relight = loras
    model = copy.deepcopy(base)
    with merge_loras(model, [(distill, 1.0), (relight, 1.0)], keep_original=True):
        all_merged = forward(model)
    merged = merge_loras(model, [(distill, 1.0)])
    with apply_loras(model, [(relight, 1.0)]):
        torch.testing.assert_close(forward(model), all_merged, rtol=1e-4, atol=1e-5)
    merged.unmerge()


def test_merging_over_runtime_patched_parameters_is_refused(base, loras):
    distill, _ = loras
    model = copy.deepcopy(base)
    with apply_loras(model, [(distill, 1.0)]), pytest.raises(LoraError, match="remove them"):
        merge_loras(model, [(distill, 1.0)])


def test_runtime_follows_the_model_to_another_device_or_compile_wrapper(base, loras):
    """The hooks sit on the real modules, so a torch.compile wrapper object is accepted (not compiled here)."""
    distill, _ = loras
    model = copy.deepcopy(base)
    wrapper = torch.nn.Module()
    wrapper._orig_mod = model
    with apply_loras(wrapper, [(distill, 1.0)]) as handle:
        assert handle.model is model and any(m._forward_hooks for m in model.modules())
