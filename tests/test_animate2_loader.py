"""Wan-Animate-2 weights through wan_loader: every layout written by `tiny --model animate2` detected from its
contents (Animate-2, its distilled variant, or an unmarked Wan2.1-I2V-shaped file), loaded bit-exact, converted,
and refused with a specific error where the other Animate model is required."""
from __future__ import annotations

import json

import pytest
import torch

from wan_loader import load_components
from wan_loader.discovery.hub import allow_patterns
from wan_loader.errors import MissingComponentError, WrongModelError
from wan_loader.inspection import inspect
from wan_loader.io.readers import open_file
from wan_loader.fp8 import FP8Linear
from wan_loader.testing.tiny import tiny_animate2_components, tiny_components
from wan_loader.writers import write_components, write_safetensors

LAYOUTS = ("diffusers", "comfy", "original")


@pytest.fixture(scope="module")
def tiny2():
    return tiny_animate2_components(seed=1)


@pytest.fixture(scope="module")
def written(tiny2, tmp_path_factory):
    root = tmp_path_factory.mktemp("animate2")
    out = {}
    for layout in LAYOUTS:
        for distilled in (False, True):
            tiny2.distilled = distilled
            out[layout, distilled] = write_components(tiny2, root / f"{layout}{'_distilled' * distilled}", layout)
    tiny2.distilled = False
    return out


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("distilled", [False, True])
def test_every_layout_is_detected_and_loads_bit_exact(tiny2, written, layout, distilled):
    info = inspect(written[layout, distilled])
    assert (info["family"], info["distilled"], info["is_animate"], info["missing"]) == ("animate2", distilled, True, [])
    assert info["model"].startswith("Wan2.2-Animate-2-14B transformer")
    loaded = load_components(written[layout, distilled], weight_dtype="fp32")
    assert (loaded.family, loaded.distilled) == ("animate2", distilled)
    assert type(loaded.transformer).__name__ == "WanAnimate2Transformer3DModel"
    assert same_weights(loaded.transformer, tiny2.transformer)
    assert same_weights(loaded.image_encoder, tiny2.image_encoder)


def test_comfy_file_carries_comfyui_model_type(written):
    path = next((written["comfy", False] / "diffusion_models").glob("wan_animate_2*.safetensors"))
    config = json.loads(open_file(path).metadata["config"])
    assert config["transformer"]["model_type"] == "animate2"  # what ComfyUI's model detection reads


def test_unmarked_i2v_shaped_file_needs_model_animate2(tiny2, written, tmp_path):
    """Without the marker the file is indistinguishable from Wan2.1-I2V-14B: inspect says so and how to load it."""
    source = next((written["comfy", False] / "diffusion_models").glob("*.safetensors"))
    src = open_file(source)
    bare = tmp_path / "unmarked.safetensors"
    write_safetensors(bare, [(k, src.shape(k), src.dtype(k), lambda k=k: src.get(k)) for k in src.keys()])
    info = inspect(bare)
    assert info["is_animate"] is False and "Wan2.1 I2V" in info["model"] and "model='animate2'" in info["model"]
    assert inspect(bare, model="animate2")["family"] == "animate2"
    loaded = load_components(files={"transformer": bare}, components=["transformer"], model="animate2",
                             weight_dtype="fp32")
    assert same_weights(loaded.transformer, tiny2.transformer)


def test_the_other_animate_model_is_refused_by_name(written, tmp_path):
    with pytest.raises(WrongModelError, match="Wan2.2-Animate-2-14B.*but Wan2.2-Animate-14B is required"):
        load_components(written["comfy", False], model="animate")
    write_components(tiny_components(), tmp_path / "a14", "comfy")
    with pytest.raises(WrongModelError, match="Wan2.2-Animate-14B.*but Wan2.2-Animate-2-14B is required"):
        load_components(tmp_path / "a14", model="animate2")


def test_missing_parts_are_named(written, tmp_path):
    folder = tmp_path / "only_dit"
    (folder / "diffusion_models").mkdir(parents=True)
    for f in (written["comfy", False] / "diffusion_models").iterdir():
        (folder / "diffusion_models" / f.name).symlink_to(f)
    with pytest.raises(MissingComponentError, match="vae"):
        load_components(folder)


def test_convert_between_layouts_keeps_weights_and_variant(tiny2, written, tmp_path, capsys):
    from wan_loader.cli import main

    assert main(["convert", str(written["comfy", True]), str(tmp_path / "d"), "--to", "diffusers"]) == 0
    info = inspect(tmp_path / "d")
    assert (info["family"], info["distilled"]) == ("animate2", True)
    assert (tmp_path / "d" / "modular_model_index.json").is_file()
    assert same_weights(load_components(tmp_path / "d", components=["transformer"], weight_dtype="fp32").transformer,
                        tiny2.transformer)


def test_modular_index_pointing_at_the_hub_loads_local_files_offline(written, tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "hub_index"
    shutil.copytree(written["diffusers", False], folder)
    index = json.loads((folder / "modular_model_index.json").read_text())
    for entry in index.values():
        if isinstance(entry, list):
            entry[2]["pretrained_model_name_or_path"] = "Wan-AI/Wan2.2-Animate-2-14B-Diffusers"
    (folder / "modular_model_index.json").write_text(json.dumps(index))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_components(folder, weight_dtype="fp32").family == "animate2"


def test_fp8_loading_as_for_animate_14b(tiny2, written):
    loaded = load_components(written["comfy", False], components=["transformer"], weight_dtype="fp8_e4m3fn")
    assert isinstance(loaded.transformer.blocks[0].self_attn.to_q, FP8Linear)
    assert isinstance(loaded.transformer.blocks[0].ffn[0], FP8Linear)


def test_tiny_cli_and_hub_patterns(tmp_path, capsys):
    from wan_loader.cli import main

    assert main(["tiny", str(tmp_path / "t"), "--model", "animate2", "--layout", "comfy", "--distilled"]) == 0
    assert inspect(tmp_path / "t")["distilled"] is True
    patterns = allow_patterns("Wan-AI/Wan2.2-Animate-2-14B-Diffusers", ["transformer"])
    assert "transformer/*" in patterns and "vae/*" not in patterns and "*.json" in patterns


def test_int8_convrot_file_reads_as_comfy_kitchen_dequantizes_it(tiny2, written, tmp_path):
    """Comfy-Org's int8 ConvRot files: weights quantised here by comfy-kitchen itself (its eager backend, the
    format ComfyUI writes: int8 weight, per-row weight_scale, comfy_quant JSON marker), loaded by wan_loader, equal
    comfy-kitchen's own dequantisation; ConvRot layers and a plain int8 layer both."""
    ck = pytest.importorskip("comfy_kitchen.backends.eager.quantization")
    source = next((written["comfy", False] / "diffusion_models").glob("*.safetensors"))
    src = open_file(source)
    items, expected = [], {}
    for key in src.keys():
        t = src.get(key)
        if key.startswith("blocks.") and key.endswith(".weight") and t.ndim == 2:
            stem, rotate = key[: -len("weight")], not key.endswith("ffn.2.weight")
            conf = {"format": "int8_tensorwise", **({"convrot": True, "convrot_groupsize": 16} if rotate else {})}
            if rotate:
                q, scale = ck.quantize_int8_convrot_weight(t.float(), 16)
                expected[key] = ck.dequantize_int8_convrot_weight(q, scale, 16)
            else:
                q, scale = ck.quantize_int8_rowwise(t.float())
                expected[key] = ck.dequantize_int8_simple(q, scale)
            marker = torch.tensor(list(json.dumps(conf).encode()), dtype=torch.uint8)
            items += [(key, tuple(q.shape), torch.int8, lambda q=q: q),
                      (stem + "weight_scale", tuple(scale.shape), torch.float32, lambda s=scale: s.float()),
                      (stem + "comfy_quant", tuple(marker.shape), torch.uint8, lambda m=marker: m)]
        else:
            items.append((key, tuple(t.shape), t.dtype, lambda t=t: t))
    path = tmp_path / "diffusion_models" / "wan_animate_2_int8_convrot.safetensors"
    write_safetensors(path, items, dict(src.metadata))
    info = inspect(path)
    assert info["family"] == "animate2"
    loaded = load_components(files={"transformer": path}, components=["transformer"], weight_dtype="fp32")
    from wan_loader.keymaps.transformer_animate2 import original_key_to_diffusers

    state = loaded.transformer.state_dict()
    for key, want in expected.items():
        torch.testing.assert_close(state[original_key_to_diffusers(key)], want, rtol=0, atol=1e-6)
    reference = tiny2.transformer.state_dict()["blocks.0.self_attn.to_q.weight"]
    assert (state["blocks.0.self_attn.to_q.weight"] - reference).abs().max() < reference.abs().max() / 60
