"""wan_loader bad input: each case gives one clear error naming the file and what to do; nothing half-loaded."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from wan_loader import (CorruptFileError, MissingComponentError, ShapeMismatchError, WrongModelError, inspect,
                        load_components, load_transformer)
from wan_loader.io.readers import TEST_MODEL_KEY, TEST_MODEL_VALUE
from wan_loader.writers import write_components

TINY_MARK = {TEST_MODEL_KEY: TEST_MODEL_VALUE}  # files re-saved from the tiny model keep its test-model mark


@pytest.fixture(scope="module")
def comfy(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy_bad")
    write_components(tiny, root, "comfy", "fp32")
    return root


def transformer_file(root):
    return next((root / "diffusion_models").glob("*.safetensors"))


def test_truncated_file(comfy, tmp_path):
    src = transformer_file(comfy)
    bad = tmp_path / "wan2.2_animate_14B_bf16.safetensors"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match="truncated") as e:
        load_transformer(bad)
    assert str(bad) in str(e.value) and "again" in str(e.value)


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"])
def test_safetensors_whose_header_length_starts_like_a_pickle_or_zip(tmp_path, first_bytes):
    """The header length is little-endian: 0x...80 or 0x...4b50 ("PK") bytes first; the file is still safetensors."""
    from wan_loader.io.readers import SafetensorsFile, open_file

    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    want = int.from_bytes(first_bytes.ljust(2, b"\x00")[:2], "little") if first_bytes == b"PK" else 0x80
    while (len(header) - want) % (256 ** len(first_bytes)):
        header += b" "  # safetensors allows trailing spaces in the header
    path = tmp_path / "odd.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + torch.tensor([1.0, 2.0]).numpy().tobytes())
    assert path.read_bytes()[:len(first_bytes)] == first_bytes
    source = open_file(path)
    assert isinstance(source, SafetensorsFile) and torch.equal(source.get("w"), torch.tensor([1.0, 2.0]))


def test_not_a_weights_file(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(CorruptFileError, match=str(bad)):
        load_transformer(bad)
    pth = tmp_path / "Wan2.1_VAE.pth"
    pth.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CorruptFileError, match="Wan2.1_VAE.pth"):
        load_components(files={"vae": pth}, components=["vae"])


def test_t2v_model_given_as_animate(comfy, tmp_path):
    sd = load_file(transformer_file(comfy))
    t2v = {k: v for k, v in sd.items() if not k.startswith(("face_", "motion_", "pose_", "img_emb"))}
    t2v["patch_embedding.weight"] = t2v["patch_embedding.weight"][:, :16].contiguous()
    path = tmp_path / "wan2.1_t2v.safetensors"
    save_file(t2v, path)
    with pytest.raises(WrongModelError, match="T2V") as e:
        load_transformer(path)
    assert str(path) in str(e.value)
    info = inspect(path)
    assert info["is_animate"] is False and "T2V" in info["model"]
    with pytest.raises(WrongModelError, match="given as the transformer"):
        load_components(files={"transformer": path}, components=["transformer"])


def test_other_family_named(tmp_path):
    path = tmp_path / "flux.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(6, 2), "img_in.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WrongModelError, match="FLUX"):
        load_transformer(path)


def test_missing_component_says_found_looked_missing(comfy, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(comfy, folder)
    shutil.rmtree(folder / "vae")
    with pytest.raises(MissingComponentError) as e:
        load_components(folder)
    msg = str(e.value)
    assert "Missing Wan2.2-Animate component(s): vae" in msg and "transformer (Wan2.2-Animate-14B" in msg
    assert str(folder) in msg and e.value.missing == ["vae"]
    out = load_components(folder, components=["transformer", "text_encoder", "tokenizer"], weight_dtype="fp32")
    assert out.vae is None and out.transformer is not None


def test_config_that_does_not_match_the_weights(tiny, tmp_path):
    write_components(tiny, tmp_path / "d", "diffusers", "fp32")
    cfg_path = tmp_path / "d" / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["num_layers"] = 6
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ShapeMismatchError, match="missing from the file") as e:
        load_components(tmp_path / "d", components=["transformer"])
    assert "diffusion_pytorch_model.safetensors" in str(e.value)
    write_components(tiny, tmp_path / "o", "original", "fp32")
    orig_cfg = tmp_path / "o" / "config.json"
    cfg = json.loads(orig_cfg.read_text())
    cfg["num_layers"] = 40
    orig_cfg.write_text(json.dumps(cfg))
    with pytest.raises(ShapeMismatchError, match="config.json does not match"):
        load_transformer(tmp_path / "o")


def test_failed_load_releases_everything(comfy, tmp_path, monkeypatch):
    """When a later component fails, the ones already loaded are released (nothing half-loaded is kept)."""
    import wan_loader.load as load_mod

    released = []
    real = load_mod.release
    monkeypatch.setattr(load_mod, "release", lambda m: (released.append(m), real(m)))
    folder = tmp_path / "m"
    shutil.copytree(comfy, folder)
    clip = next((folder / "clip_vision").glob("*.safetensors"))
    sd = load_file(clip)
    key = "vision_model.embeddings.position_embedding.weight"
    sd[key] = sd[key][:-1].contiguous()
    save_file(sd, clip, metadata=TINY_MARK)
    with pytest.raises(ShapeMismatchError, match="clip_vision"):
        load_components(folder, weight_dtype="fp32")
    assert len(released) == 3  # transformer, vae, text encoder
    assert all(p.device.type == "meta" for m in released for p in m.parameters())


def test_tokenizer_from_comfy_spiece_model_then_missing(comfy, tmp_path, monkeypatch):
    """ComfyUI keeps umT5's SentencePiece model inside the text-encoder file; without it and without any tokenizer
    folder or HF cache copy, the error says where it looked."""
    import io

    import sentencepiece as spm

    folder = tmp_path / "models"
    shutil.copytree(comfy, folder)
    shutil.rmtree(folder / "text_encoders" / "umt5_tokenizer")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingComponentError, match="google/umt5-xxl") as e:
        load_components(folder, components=["tokenizer"])
    assert "spiece_model" in str(e.value)

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["a man dancing", "the woman walks"] * 50),
                                   model_writer=model, vocab_size=25, hard_vocab_limit=False, minloglevel=2)
    te = next((folder / "text_encoders").glob("*.safetensors"))
    sd = load_file(te)
    sd["spiece_model"] = torch.frombuffer(bytearray(model.getvalue()), dtype=torch.uint8)
    save_file(sd, te, metadata=TINY_MARK)
    out = load_components(folder, components=["text_encoder", "tokenizer"], weight_dtype="fp32")
    assert out.sources["tokenizer"].startswith("spiece_model in")
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    assert out.tokenizer.vocab_size == sp.get_piece_size()
    assert out.tokenizer("a man dancing").input_ids[:-1] == sp.encode("a man dancing")


class ShapesSource:
    """Only names and shapes (what detection reads); stands in for a header-only view of a real file."""

    def __new__(cls, shapes):
        from wan_loader.io.readers import TensorSource

        class _Src(TensorSource):
            files, metadata = ["<file>"], {}

            def keys(self):
                return list(shapes)

            def shape(self, k):
                return shapes[k]

            def dtype(self, k):
                return torch.bfloat16
        return _Src()


def _wan(in_dim=16, dim=5120, **extra):
    keys = {"patch_embedding.weight": (dim, in_dim, 1, 2, 2), "head.modulation": (1, 2, dim),
            "head.head.weight": (64, dim), "blocks.0.self_attn.q.weight": (dim, dim), "blocks.0.ffn.0.weight": (8, dim)}
    keys.update(extra)
    return keys


@pytest.mark.parametrize("shapes,expected", [
    (_wan(), "T2V"),
    (_wan(in_dim=36, **{"img_emb.proj.0.weight": (1280,)}), "Wan2.1 I2V 14B"),
    (_wan(in_dim=36, **{"img_emb.proj.0.weight": (1280,), "img_emb.emb_pos": (1, 514, 1280)}), "FLF2V"),
    (_wan(in_dim=36), "I2V-A14B"),
    (_wan(in_dim=48, dim=3072), "TI2V-5B"),
    (_wan(**{"vace_patch_embedding.weight": (5120, 96, 1, 2, 2)}), "VACE"),
    (_wan(dim=1536), "1.3B"),
    ({"blocks.0.self_attn.q.lora_A.weight": (32, 5120), "blocks.0.self_attn.q.lora_B.weight": (5120, 32)}, "LoRA"),
    ({"double_blocks.0.img_attn.qkv.weight": (9216, 3072)}, "FLUX"),
    ({"encoder.block.0.layer.0.SelfAttention.q.weight": (4096, 4096), "shared.weight": (32128, 4096)}, "T5"),
])
def test_other_models_are_named(shapes, expected):
    from wan_loader.model.detect import identify

    found = identify(ShapesSource(shapes))
    assert not found.is_animate_part and expected in found.model


@pytest.mark.parametrize("component,folder,size", [("vae", "vae", "Wan2.1 VAE"), ("text_encoder", "text_encoders",
                                                                                   "umT5-XXL"),
                                                   ("image_encoder", "clip_vision", "CLIP ViT-H/14")])
def test_tiny_sizes_only_for_files_marked_as_test_models(comfy, tmp_path, component, folder, size):
    """The tiny test sizes are no released size: an encoder file of that size without the writer's test-model mark
    is refused like any other unknown size; the marked file loads and says it is a test model."""
    marked = next((comfy / folder).glob("*.safetensors"))
    out = load_components(components=[component], vae_dtype="fp32", weight_dtype="fp32", **{component: marked})
    assert "(tiny test model)" in out.sources[component]
    assert "tiny test model" in inspect(marked)["components"][component]["model"]
    unmarked = tmp_path / marked.name
    save_file(load_file(str(marked)), str(unmarked))  # the same tensors, no metadata
    with pytest.raises(ShapeMismatchError, match=f"match none of the known sizes \\({size}\\)") as e:
        load_components(components=[component], **{component: unmarked})
    assert str(unmarked) in str(e.value)
