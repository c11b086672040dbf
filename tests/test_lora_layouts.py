"""LoRA files in every layout users have land on the right diffusers parameters, with the right deltas.

Real files: safetensors written with safetensors, the official relighting LoRA as a torch-saved .ckpt.
"""
from __future__ import annotations

import logging

import pytest
import torch
from diffusers import WanAnimateTransformer3DModel
from safetensors.torch import load_file, save_file

from tests.lora_files import (
    LORA_TEST_CONFIG,
    block_linears,
    expected_deltas,
    random_factors,
    write_comfy_relight,
    write_comfyui,
    write_diffusers,
    write_kijai,
    write_musubi,
    write_official_relight_ckpt,
)
from wan_loader.lora import (
    LoraError,
    LoraFormatError,
    LoraMismatchError,
    load_lora,
    merge_loras,
    parse_lora_spec,
    plan_loras,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WanAnimateTransformer3DModel(**LORA_TEST_CONFIG).eval()


def assert_deltas(lora, expected: dict[str, torch.Tensor]):
    got = {t: lr.delta(lr.up.shape[:1] + lr.down.shape[1:]) for t, lr in lora.low_rank.items()}
    assert sorted(got) == sorted(expected)
    for name, delta in expected.items():
        torch.testing.assert_close(got[name], delta, rtol=1e-5, atol=1e-6, msg=name)


RANK = 8
LAYOUTS = {
    # name: (writer, scale the file implies)
    "comfyui_lightx2v_alpha": (lambda p, f: write_comfyui(p, f, alpha=4.0), 4.0 / RANK),
    "comfyui_no_alpha": (lambda p, f: write_comfyui(p, f, alpha=None), 1.0),
    "official_relight_ckpt": (lambda p, f: write_official_relight_ckpt(p, f), 1.0),
    "official_relight_ckpt_peft_prefix": (lambda p, f: write_official_relight_ckpt(p, f, "base_model.model."), 1.0),
    "comfy_repackaged_relight": (lambda p, f: write_comfy_relight(p, f), 1.0),
    "diffusers": (lambda p, f: write_diffusers(p, f), 1.0),
    "diffusers_with_alpha_metadata": (lambda p, f: write_diffusers(p, f, alpha=16.0), 16.0 / RANK),
    "musubi": (lambda p, f: write_musubi(p, f, alpha=2.0), 2.0 / RANK),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_lands_on_the_right_parameters(layout, model, tmp_path):
    writer, scale = LAYOUTS[layout]
    factors = random_factors(model, block_linears(model), RANK, seed=1)
    suffix = ".ckpt" if layout.startswith("official") else ".safetensors"
    lora = load_lora(writer(tmp_path / f"{layout}{suffix}", factors))
    assert_deltas(lora, expected_deltas(factors, scale))
    assert lora.ignored == []
    assert len(plan_loras(model, [(lora, 1.0)]).changes) == len(factors)


def test_relight_lora_targets_every_block_linear_but_no_face_or_modulation(model, tmp_path):
    factors = random_factors(model, block_linears(model), 4)
    lora = load_lora(write_official_relight_ckpt(tmp_path / "relighting_lora.ckpt", factors))
    targets = lora.targets()
    assert len(targets) == 12 * len(model.blocks)
    assert {t.split(".", 2)[2] for t in targets} >= {"attn2.add_k_proj.weight", "attn2.add_v_proj.weight",
                                                      "ffn.net.0.proj.weight", "attn1.to_out.0.weight"}
    assert not any("face" in t or "scale_shift" in t for t in targets)


def test_merge_changes_exactly_the_targets(model, tmp_path):
    """Through the model: each target weight moves by its delta, nothing else moves (fp32)."""
    factors = random_factors(model, block_linears(model, [0, 3]), RANK, seed=2)
    path = write_comfyui(tmp_path / "l.safetensors", factors, alpha=RANK / 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with merge_loras(model, [(str(path), 0.5)], keep_original=True):  # a path is loaded on the way
        after = model.state_dict()
        expected = {k: 0.5 * d for k, d in expected_deltas(factors, 0.5).items()}
        for key, value in before.items():
            if key in expected:
                torch.testing.assert_close(after[key] - value, expected[key], rtol=1e-4, atol=1e-6)
            else:
                assert torch.equal(after[key], value), key
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_kijai_extras_reach_norms_biases_and_modulation(model, tmp_path):
    """diff_b -> bias, norm3.diff -> norm2 (names swap in diffusers), norm_k_img -> norm_added_k, diff_m -> table."""
    g = torch.Generator().manual_seed(3)
    extras = {name: torch.randn(p.shape, generator=g) for name, p in model.named_parameters() if name in {
        "blocks.1.attn1.to_q.bias", "blocks.1.attn2.add_v_proj.bias", "blocks.1.ffn.net.2.bias",
        "blocks.1.norm2.weight", "blocks.1.norm2.bias", "blocks.1.attn2.norm_added_k.weight",
        "blocks.1.attn1.norm_q.weight", "blocks.1.scale_shift_table", "proj_out.bias",
        "condition_embedder.time_proj.bias", "patch_embedding.bias"}}
    assert len(extras) == 11
    factors = random_factors(model, block_linears(model, [1]) + ["proj_out", "patch_embedding",
                                                                 "condition_embedder.text_embedder.linear_1"], 4)
    lora = load_lora(write_kijai(tmp_path / "kijai.safetensors", factors, extras))
    assert_deltas(lora, expected_deltas(factors, 1.0))
    assert sorted(lora.diffs) == sorted(extras)
    for name, delta in extras.items():
        assert torch.equal(lora.diffs[name], delta), name


def test_agrees_with_diffusers_converter_where_it_applies(model, tmp_path):
    """diffusers' own converter for non-diffusers Wan LoRAs, as an independent reference for the ComfyUI layout.

    (It covers the blocks only: with an alpha on head.head it raises, one reason it is not used for loading.)
    """
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    factors = random_factors(model, block_linears(model), RANK, seed=4)
    path = write_comfyui(tmp_path / "l.safetensors", factors, alpha=4.0)  # scale 1/2: exact in bf16 for both
    theirs = _convert_non_diffusers_wan_lora_to_diffusers(load_file(str(path)))
    reference = {}
    for key, a in theirs.items():
        if key.endswith("lora_A.weight"):
            b = theirs[key.replace("lora_A", "lora_B")]
            reference[key.removeprefix("transformer.").replace("lora_A.", "")] = b.float() @ a.float()
    assert_deltas(load_lora(path), reference)


def test_face_adapter_fused_kv_splits_in_row_halves(model, tmp_path):
    g = torch.Generator().manual_seed(5)
    down, up = torch.randn(4, 16, generator=g), torch.randn(32, 4, generator=g)
    save_file({"diffusion_model.face_adapter.fuser_blocks.1.linear1_kv.lora_down.weight": down,
               "diffusion_model.face_adapter.fuser_blocks.1.linear1_kv.lora_up.weight": up,
               "diffusion_model.face_adapter.fuser_blocks.1.linear1_q.lora_down.weight": down.clone(),
               "diffusion_model.face_adapter.fuser_blocks.1.linear1_q.lora_up.weight": up[:16].clone()},
              str(tmp_path / "face.safetensors"))
    lora = load_lora(tmp_path / "face.safetensors")
    assert_deltas(lora, {"face_adapter.1.to_k.weight": up[:16] @ down, "face_adapter.1.to_v.weight": up[16:] @ down,
                         "face_adapter.1.to_q.weight": up[:16] @ down})
    assert len(plan_loras(model, [lora]).changes) == 3


def test_a_few_unmatched_layers_warn_and_are_listed(model, tmp_path, caplog):
    factors = random_factors(model, block_linears(model), 4)
    path = write_comfyui(tmp_path / "more_blocks.safetensors", factors, alpha=None)
    sd = load_file(str(path))
    sd["diffusion_model.blocks.7.self_attn.q.lora_down.weight"] = torch.zeros(4, 16)
    sd["diffusion_model.blocks.7.self_attn.q.lora_up.weight"] = torch.zeros(16, 4)
    sd["diffusion_model.blocks.0.self_attn.q.lokr_w1"] = torch.zeros(2, 2)
    save_file(sd, str(path))
    with caplog.at_level(logging.WARNING):
        lora = load_lora(path)
        plan = plan_loras(model, [lora])
    assert lora.ignored == ["diffusion_model.blocks.0.self_attn.q.lokr_w1"]
    assert plan.unmatched == {str(path): ["blocks.7.attn1.to_q.weight"]}
    text = caplog.text
    assert "lokr_w1" in text and "blocks.7.attn1.to_q.weight" in text and "more_blocks.safetensors" in text
    with pytest.raises(LoraMismatchError, match="strict"):
        plan_loras(model, [lora], strict=True)


def test_mostly_unmatched_lora_is_an_error(model, tmp_path):
    factors = random_factors(model, ["blocks.0.attn1.to_q"], 4)
    sd = {f"diffusion_model.double_blocks.{i}.img_attn.qkv.lora_down.weight": torch.zeros(4, 16) for i in range(3)}
    sd.update({k.replace("lora_down", "lora_up"): torch.zeros(48, 4) for k in list(sd)})
    down, up = factors["blocks.0.attn1.to_q"]
    sd["diffusion_model.blocks.0.self_attn.q.lora_down.weight"], sd["diffusion_model.blocks.0.self_attn.q.lora_up.weight"] = down, up
    save_file(sd, str(tmp_path / "hunyuan_lora.safetensors"))
    with pytest.raises(LoraMismatchError, match=r"hunyuan_lora\.safetensors.*3 of its 4 layers are not in this model"):
        merge_loras(model, [load_lora(tmp_path / "hunyuan_lora.safetensors")])


def test_lora_for_another_model_size_names_the_file(model, tmp_path):
    """A LoRA of a wider model (e.g. Wan 14B on 1.3B): shapes differ -> error naming file and layer."""
    sd = {}
    for name in ("self_attn.q", "cross_attn.k", "ffn.0"):
        sd[f"diffusion_model.blocks.0.{name}.lora_down.weight"] = torch.zeros(4, 40)
        sd[f"diffusion_model.blocks.0.{name}.lora_up.weight"] = torch.zeros(40, 4)
    save_file(sd, str(tmp_path / "wan14b_lora.safetensors"))
    lora = load_lora(tmp_path / "wan14b_lora.safetensors")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LoraMismatchError, match=r"wan14b_lora\.safetensors does not fit.*blocks\.0\.attn1\.to_q"):
        merge_loras(model, [(lora, 1.0)])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # nothing half-merged


def test_files_that_are_not_usable_loras(tmp_path):
    save_file({"model.layers.0.weight": torch.zeros(2, 2)}, str(tmp_path / "checkpoint.safetensors"))
    with pytest.raises(LoraFormatError, match=r"checkpoint\.safetensors: none of its 1 keys"):
        load_lora(tmp_path / "checkpoint.safetensors")
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 16),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(16, 4),
               "diffusion_model.blocks.0.self_attn.q.dora_scale": torch.zeros(1, 16)}, str(tmp_path / "dora.safetensors"))
    with pytest.raises(LoraFormatError, match="DoRA"):
        load_lora(tmp_path / "dora.safetensors")
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 16),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(16, 8)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(LoraFormatError, match=r"bad\.safetensors.*lora_up.*rank 4"):
        load_lora(tmp_path / "bad.safetensors")
    (tmp_path / "truncated.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(LoraError, match=r"truncated\.safetensors"):
        load_lora(tmp_path / "truncated.safetensors")
    with pytest.raises(LoraError, match="not found"):
        load_lora(tmp_path / "missing.safetensors")


def test_parse_lora_spec():
    assert parse_lora_spec("relight.safetensors") == ("relight.safetensors", 1.0)
    assert parse_lora_spec("dir/lightx2v.safetensors:0.8") == ("dir/lightx2v.safetensors", 0.8)
    assert parse_lora_spec(r"C:\loras\x.safetensors:-0.5") == (r"C:\loras\x.safetensors", -0.5)
    assert parse_lora_spec(r"C:\loras\x.safetensors") == (r"C:\loras\x.safetensors", 1.0)
    with pytest.raises(LoraError):
        parse_lora_spec(" ")


def test_loaded_loras_are_reused_until_the_file_changes(model, tmp_path):
    path = write_comfyui(tmp_path / "l.safetensors", random_factors(model, ["blocks.0.attn1.to_q"], 4), alpha=None)
    first = load_lora(path)
    assert load_lora(path) is first and load_lora(str(path)) is first
    assert load_lora(path, cache=False) is not first
    write_comfyui(path, random_factors(model, ["blocks.0.attn1.to_q", "blocks.0.attn1.to_k"], 4, seed=3), alpha=None)
    assert len(load_lora(path).low_rank) == 2
