"""wan_loader: every layout written from the same tiny random weights loads to the same model; fp8; inspect; convert.

All files are real (safetensors / torch zip checkpoints / Diffusers folders) written by the tiny writer.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wan_loader import convert, inspect, load_components, load_transformer
from wan_loader.fp8 import FP8Linear, dequantize, quantize_fp8
from wan_loader.writers import write_components

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = ("transformer", "vae", "text_encoder", "image_encoder")
LAYOUTS = {  # name -> (layout, dtype, comfy key prefix)
    "diffusers": ("diffusers", "fp32", ""),
    "original": ("original", "fp32", ""),
    "comfy": ("comfy", "fp32", ""),
    "comfy_prefixed": ("comfy", "fp32", "model.diffusion_model."),
    "comfy_fp8_e4m3fn": ("comfy", "fp8_e4m3fn", ""),
    "comfy_fp8_e5m2": ("comfy", "fp8_e5m2", "model.diffusion_model."),
}


@pytest.fixture(scope="module")
def written(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    for name, (layout, dtype, prefix) in LAYOUTS.items():
        write_components(tiny, root / name, layout, dtype, prefix=prefix)
    return root


def transformer_inputs():
    g = torch.Generator().manual_seed(0)
    return dict(hidden_states=torch.randn(1, 36, 3, 8, 8, generator=g), timestep=torch.tensor([500]),
                encoder_hidden_states=torch.randn(1, 5, 32, generator=g),
                encoder_hidden_states_image=torch.randn(1, 4, 24, generator=g),
                pose_hidden_states=torch.randn(1, 16, 2, 8, 8, generator=g),
                face_pixel_values=torch.randn(1, 3, 5, 16, 16, generator=g), return_dict=False)


@torch.no_grad()
def forward(model):
    return model.float()(**transformer_inputs())[0] if not any(isinstance(m, FP8Linear) for m in model.modules()) \
        else model(**transformer_inputs())[0]


@pytest.mark.parametrize("name", ["diffusers", "original", "comfy", "comfy_prefixed"])
def test_lossless_layouts_load_bit_exact(tiny, written, name):
    out = load_components(written / name, weight_dtype="fp32", vae_dtype="fp32")
    assert out.missing() == []
    for comp in WEIGHTS:
        want, got = getattr(tiny, comp).state_dict(), getattr(out, comp).state_dict()
        assert set(got) == set(want), comp
        for k in want:
            assert torch.equal(got[k], want[k]), f"{comp}.{k}"
    assert torch.equal(forward(out.transformer), forward(tiny.transformer))
    ids = out.tokenizer("a man dancing").input_ids
    assert ids == tiny.tokenizer("a man dancing").input_ids
    assert out.image_processor.crop_size["height"] == tiny.image_processor.crop_size["height"]


@pytest.mark.parametrize("name,fp8", [("comfy_fp8_e4m3fn", torch.float8_e4m3fn),
                                      ("comfy_fp8_e5m2", torch.float8_e5m2)])
def test_scaled_fp8_files_stay_fp8_without_round_trip(tiny, written, name, fp8):
    from safetensors import safe_open

    path = next((written / name / "diffusion_models").glob("*.safetensors"))
    model = load_transformer(path, weight_dtype=name.replace("comfy_", ""), compute_dtype="fp32")
    layer = model.blocks[1].attn1.to_q
    assert isinstance(layer, FP8Linear) and layer.weight.dtype == fp8
    prefix = "model.diffusion_model." if name.endswith("e5m2") else ""
    with safe_open(str(path), "pt") as f:
        raw = f.get_tensor(prefix + "blocks.1.self_attn.q.weight")
        scale = f.get_tensor(prefix + "blocks.1.self_attn.q.scale_weight")
        assert f.get_tensor(prefix + "scaled_fp8").dtype == fp8
        kv_raw = f.get_tensor(prefix + "face_adapter.fuser_blocks.0.linear1_kv.weight")
        kv_scale = f.get_tensor(prefix + "face_adapter.fuser_blocks.0.linear1_kv.scale_weight")
    to_k, to_v = model.face_adapter[0].to_k, model.face_adapter[0].to_v
    half = kv_raw.shape[0] // 2
    assert torch.equal(to_k.weight.view(torch.uint8), kv_raw[:half].view(torch.uint8))
    assert torch.equal(to_v.weight.view(torch.uint8), kv_raw[half:].view(torch.uint8))
    assert torch.equal(to_k.scale, kv_scale) and torch.equal(to_v.scale, kv_scale)
    assert torch.equal(layer.weight.view(torch.uint8), raw.view(torch.uint8))
    assert torch.equal(layer.scale, scale)
    # the fused face k/v projection is split, and keeps its exact fp8 values
    kv = tiny.transformer.face_adapter[0].to_k.weight
    fk = model.face_adapter[0].to_k
    assert torch.allclose(fk.dequantized_weight(torch.float32), kv, rtol=0.13 if fp8 == torch.float8_e4m3fn else 0.26,
                          atol=fk.scale.item() * 2)
    ref = forward(tiny.transformer)
    err = (forward(model) - ref).abs().mean() / ref.abs().mean()
    assert err < (0.05 if fp8 == torch.float8_e4m3fn else 0.1)


def test_scaled_fp8_dequantized_to_bf16_matches_fp8_loaded(written):
    path = next((written / "comfy_fp8_e4m3fn" / "diffusion_models").glob("*.safetensors"))
    fp8 = load_transformer(path, weight_dtype="fp8_e4m3fn", compute_dtype="fp32")
    full = load_transformer(path, weight_dtype="fp32")
    a = fp8.blocks[0].ffn.net[0].proj.dequantized_weight(torch.float32)
    assert torch.equal(a, full.blocks[0].ffn.net[0].proj.weight)


@pytest.mark.parametrize("per_channel", [False, True])
def test_fp8_quantized_at_load_within_rounding(tiny, written, per_channel):
    model = load_transformer(written / "comfy", weight_dtype="fp8_e4m3fn", compute_dtype="fp32",
                             per_channel=per_channel)
    layer = model.blocks[2].ffn.net[2]
    want = tiny.transformer.blocks[2].ffn.net[2].weight
    assert layer.scale.shape == ((want.shape[0],) if per_channel else ())
    err = (layer.dequantized_weight(torch.float32) - want).abs()
    assert torch.all(err <= want.abs() * 2 ** -3 + layer.scale.max() * 2 ** -9)
    assert model.blocks[2].norm2.weight.dtype == torch.float32  # kept in fp32 like diffusers does


def test_quantize_dequantize_roundtrip_and_dtype_safety():
    w = torch.randn(8, 4)
    q, s = quantize_fp8(w, per_channel=True)
    assert q.dtype == torch.float8_e4m3fn and s.shape == (8,)
    assert torch.allclose(dequantize(q, s), w, rtol=0.07, atol=1e-6)
    lin = FP8Linear(4, 8, compute_dtype=torch.float32, per_channel=True)
    lin.weight.data, lin.scale.data = q, s
    lin.bias.data.zero_()
    lin.to(torch.bfloat16)  # a model-wide cast must not turn fp8 weights into unscaled bf16
    assert lin.weight.dtype == torch.float8_e4m3fn and lin.scale.dtype == torch.float32
    x = torch.randn(3, 4, dtype=torch.bfloat16)
    assert torch.allclose(lin(x).float(), (x.float() @ dequantize(q, s).T), rtol=0.05, atol=0.05)


def test_bf16_and_fp16_weights(tiny, written):
    for dt, torch_dt in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        model = load_transformer(written / "original", weight_dtype=dt)
        assert model.blocks[0].attn1.to_q.weight.dtype == torch_dt
        assert model.scale_shift_table.dtype == torch.float32
        assert torch.equal(model.blocks[0].attn1.to_q.weight, tiny.transformer.blocks[0].attn1.to_q.weight.to(torch_dt))


def test_key_map_agrees_with_diffusers_single_file_conversion(tiny, written):
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import load_file

    sd = load_file(next((written / "comfy_prefixed" / "diffusion_models").glob("*.safetensors")))
    theirs = convert_wan_transformer_to_diffusers(sd)
    want = tiny.transformer.state_dict()
    # diffusers hard-codes the 512-px motion encoder's conv index 8; the tiny one has 3 convs
    shared = [k for k in want if k != "motion_encoder.conv_out.weight"]
    assert all(torch.equal(theirs[k], want[k]) for k in shared)


def run_cli(*args, env=None):
    """`python -m wan_loader ...` in a real subprocess (slow: only where the entry point itself is under test)."""
    return subprocess.run([sys.executable, "-m", "wan_loader", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=300)


def cli(capsys, *args) -> tuple[int, str]:
    """The same command line, in process (cli.main), returning (exit code, stdout)."""
    from wan_loader.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("name,layout", [("diffusers", "diffusers"), ("original", "original"), ("comfy", "comfy"),
                                         ("comfy_fp8_e4m3fn", "comfy")])
def test_inspect_json(written, name, layout, capsys):
    if name == "original":
        r = run_cli("inspect", written / name, "--json")
        assert r.returncode == 0, r.stderr
        out = r.stdout
    else:
        code, out = cli(capsys, "inspect", written / name, "--json")
        assert code == 0
    info = json.loads(out)
    assert info["layout"] == layout and info["is_animate"] is True
    assert set(info["found"]) >= {"transformer", "vae", "text_encoder", "tokenizer", "image_encoder"}
    assert info["parameters"] > 300_000 and info["dtype"] in ("fp32", "bf16", "fp8_e4m3fn")
    assert info["components"]["transformer"]["scaled_fp8"] == ("fp8" in name)


def test_inspect_single_file_reports_missing(written):
    info = inspect(next((written / "comfy" / "diffusion_models").glob("*.safetensors")))
    assert info["found"] == ["transformer"] and "vae" in info["missing"] and info["layout"] == "comfy"


def test_convert_to_diffusers_loads_with_plain_from_pretrained(tiny, written, tmp_path, capsys):
    from diffusers import AutoencoderKLWan, WanAnimatePipeline, WanAnimateTransformer3DModel
    from transformers import CLIPVisionModel, UMT5EncoderModel

    code, _ = cli(capsys, "convert", written / "comfy_fp8_e4m3fn", tmp_path / "fp8_to_diff", "--to", "diffusers")
    assert code == 0
    assert inspect(tmp_path / "fp8_to_diff")["components"]["transformer"]["dtype"] == "bf16"
    fp8_back = WanAnimateTransformer3DModel.from_pretrained(tmp_path / "fp8_to_diff", subfolder="transformer")
    want = tiny.transformer.blocks[0].attn1.to_q.weight
    got = fp8_back.blocks[0].attn1.to_q.weight.float()
    assert torch.allclose(got, want, rtol=0.15, atol=want.abs().max().item() / 64)
    convert(written / "comfy", tmp_path / "d", to="diffusers")
    d = tmp_path / "d"
    parts = {"transformer": WanAnimateTransformer3DModel.from_pretrained(d, subfolder="transformer"),
             "vae": AutoencoderKLWan.from_pretrained(d, subfolder="vae"),
             "text_encoder": UMT5EncoderModel.from_pretrained(d, subfolder="text_encoder"),
             "image_encoder": CLIPVisionModel.from_pretrained(d, subfolder="image_encoder")}
    for comp, model in parts.items():
        want, got = getattr(tiny, comp).state_dict(), model.state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), comp
    pipe = WanAnimatePipeline.from_pretrained(d)
    assert pipe.transformer is not None and pipe.tokenizer is not None
    # and back to ComfyUI files (prefixed), which load to the same weights again
    convert(d, tmp_path / "c", to="comfy", prefix="model.diffusion_model.")
    back = load_transformer(tmp_path / "c" / "diffusion_models" / "wan2.2_animate_14B_fp32.safetensors",
                            weight_dtype="fp32")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in tiny.transformer.state_dict().items())


def test_hub_repo_id_from_local_cache_offline(tiny, written, tmp_path, monkeypatch, capsys):
    """A pre-populated Hugging Face cache stands in for the Hub (no network here)."""
    import shutil

    repo = tmp_path / "hf" / "hub" / "models--Wan-AI--Wan2.2-Animate-14B-Diffusers"
    rev = "0" * 40
    shutil.copytree(written / "diffusers", repo / "snapshots" / rev)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = load_components("Wan-AI/Wan2.2-Animate-14B-Diffusers", components=["transformer", "tokenizer"],
                          weight_dtype="fp32")
    assert torch.equal(out.transformer.proj_out.weight, tiny.transformer.proj_out.weight)
    code, out = cli(capsys, "download", "Wan-AI/Wan2.2-Animate-14B-Diffusers")
    assert code == 0 and rev in out
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load_components("Wan-AI/Wan2.2-Animate-14B-Diffusers", components=["transformer"])


def test_tiny_cli_writes_loadable_layout(tmp_path, capsys):
    code, _ = cli(capsys, "tiny", tmp_path / "t", "--layout", "original", "--dtype", "bf16")
    assert code == 0
    out = load_components(tmp_path / "t", components=["transformer", "text_encoder", "tokenizer"])
    assert out.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16


def test_staged_ring_with_tiny_chunks_is_bit_exact(written, monkeypatch):
    """The GPU path's pinned ring (read -> staging slot -> copy -> callback), run on the CPU with 1000-byte chunks
    so tensors span many slots and slots are reused many times."""
    import functools

    from wan_loader.io import stream

    for name, dtype in (("comfy_prefixed", "fp32"), ("comfy_fp8_e4m3fn", "fp8_e4m3fn")):
        path = next((written / name / "diffusion_models").glob("*.safetensors"))
        want = load_transformer(path, weight_dtype=dtype, compute_dtype="fp32").state_dict()
        with monkeypatch.context() as m:
            m.setattr(stream, "Stager", functools.partial(stream.Stager, chunk_bytes=1000, buffers=3, threads=2,
                                                          staged=True))
            got = load_transformer(path, weight_dtype=dtype, compute_dtype="fp32").state_dict()
        assert set(got) == set(want)
        assert all(torch.equal(got[k].reshape(-1).view(torch.uint8), want[k].reshape(-1).view(torch.uint8))
                   for k in want), name


def test_full_size_animate_detected_and_config_inferred_from_shapes():
    from wan_loader.model.configs import ANIMATE_14B_CONFIG, build_empty, infer_transformer_config
    from wan_loader.model.detect import identify
    from wan_loader.keymaps import transformer as tmap
    from wan_loader.io.readers import TensorSource

    model = build_empty("transformer", ANIMATE_14B_CONFIG)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert 17.2e9 < sum(p.numel() for p in model.parameters()) < 17.4e9
    fake = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    original = {t: tuple(r.build(fake.__getitem__).shape) for t, r in tmap.plan_diffusers_to_original(shapes).items()}
    assert original["face_adapter.fuser_blocks.7.linear1_kv.weight"] == (10240, 5120)
    assert original["motion_encoder.enc.net_app.convs.8.weight"] == (512, 512, 4, 4)
    assert original["blocks.39.cross_attn.k_img.weight"] == (5120, 5120)

    class Src(TensorSource):
        files, metadata = ["wan2.2_animate_14B_bf16.safetensors"], {}

        def __init__(self, s):
            self.s = s

        def keys(self):
            return list(self.s)

        def shape(self, k):
            return self.s[k]

        def dtype(self, k):
            return torch.bfloat16

    found = identify(Src({"model.diffusion_model." + k: v for k, v in original.items()}))
    assert found.is_animate_part and found.layout == "comfy" and found.prefix == "model.diffusion_model."
    ofake = {k: torch.empty(s, device="meta") for k, s in original.items()}
    back = {t: tuple(r.build(ofake.__getitem__).shape) for t, r in tmap.plan_original_to_diffusers(original).items()}
    assert back == shapes
    assert infer_transformer_config(back) == {**ANIMATE_14B_CONFIG, "patch_size": (1, 2, 2)}
    # an I2V-A14B expert (no Animate parts, in_dim 36, no CLIP projection) is named as such
    i2v = {k: v for k, v in original.items() if not k.startswith(("face_", "motion_", "pose_", "img_emb"))}
    other = identify(Src(i2v))
    assert not other.is_animate_part and "I2V-A14B" in other.model


def test_fp8_text_encoder_close_to_full_precision(tiny, written):
    out = load_components(written / "comfy_fp8_e4m3fn", components=["text_encoder", "tokenizer"],
                          weight_dtype="fp8_e4m3fn", compute_dtype="fp32")
    enc = out.text_encoder
    assert isinstance(enc.encoder.block[0].layer[0].SelfAttention.q, FP8Linear)
    assert not isinstance(enc.encoder.block[0].layer[1].DenseReluDense.wo, FP8Linear)
    ids = tiny.tokenizer(["a woman dancing"], return_tensors="pt").input_ids
    with torch.no_grad():
        ref = tiny.text_encoder(ids).last_hidden_state
        got = enc(ids).last_hidden_state
    assert (got - ref).abs().mean() / ref.abs().mean() < 0.1  # fp8 e4m3 rounding, per-tensor scales


def test_original_release_with_several_shards(tiny, tmp_path):
    """Like Wan-AI's 4-shard release: shards + index + config.json, loaded through the index."""
    from wan_loader.writers import Written, layout_tensors, weights_from_module, write_sharded

    w = weights_from_module("transformer", tiny.transformer)
    write_sharded(tmp_path, "diffusion_pytorch_model", layout_tensors(w, "original", torch.float32), Written(),
                  shard_bytes=50_000)
    shards = sorted(tmp_path.glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) >= 3 and (tmp_path / "diffusion_pytorch_model.safetensors.index.json").is_file()
    from wan_loader.model.configs import original_config_json
    (tmp_path / "config.json").write_text(json.dumps(original_config_json(w.config)))
    assert inspect(tmp_path)["layout"] == "original"
    model = load_transformer(tmp_path, weight_dtype="fp32")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny.transformer.state_dict().items())


def test_progress_and_device_memory_check(written, monkeypatch):
    calls = []
    load_transformer(written / "original", weight_dtype="fp32", progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] > 100_000

    from wan_loader.io import stream
    from wan_loader.model.configs import build_empty
    from wan_loader.testing.tiny import TINY_TRANSFORMER_CONFIG
    from wan_loader.errors import WanLoaderError

    # no GPU here: mem_get_info stands in for a GPU with 1 kB free
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1024, 80 * 1024 ** 3))
    model = build_empty("transformer", TINY_TRANSFORMER_CONFIG)
    with pytest.raises(WanLoaderError, match="fp8_e4m3fn"):
        stream.check_device_memory(model, set(), torch.bfloat16, torch.bfloat16, torch.device("cuda", 0),
                                   stream.SafetensorsFile(next((written / "comfy" / "diffusion_models").glob("*"))),
                                   "transformer")


def test_download_patterns_fetch_only_what_is_needed():
    from wan_loader.discovery.hub import DIFFUSERS_REPO, ORIGINAL_REPO, allow_patterns

    pats = allow_patterns(DIFFUSERS_REPO, ["transformer"])
    assert "transformer/*" in pats and "model_index.json" in pats and "vae/*" not in pats
    pats = allow_patterns(DIFFUSERS_REPO, ["text_encoder"])
    assert "tokenizer/*" in pats and "transformer/*" not in pats
    pats = allow_patterns(ORIGINAL_REPO)
    assert "Wan2.1_VAE.pth" in pats and "google/umt5-xxl/*" in pats
    assert not any("process_checkpoint" in p or "relighting" in p for p in pats)


def test_convert_original_to_comfy_fp8(tiny, written, tmp_path):
    convert(written / "original", tmp_path / "c", to="comfy", dtype="fp8_e4m3fn")
    info = inspect(tmp_path / "c")
    assert info["is_animate"] and info["components"]["transformer"]["scaled_fp8"]
    out = load_components(tmp_path / "c", weight_dtype="fp8_e4m3fn", compute_dtype="fp32")
    assert isinstance(out.transformer.blocks[3].attn2.to_v, FP8Linear)
    ref = forward(tiny.transformer)
    assert (forward(out.transformer) - ref).abs().mean() / ref.abs().mean() < 0.05


COMFY_KEYS_SCRIPT = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1]); sys.argv = [sys.argv[0], "--cpu"]
import comfy.options; comfy.options.enable_args_parsing()
import comfy.ops
from comfy.ldm.wan.model_animate import AnimateWanModel
m = AnimateWanModel(in_dim=36, dim=128, ffn_dim=256, freq_dim=256, text_dim=64, out_dim=16, num_heads=1, num_layers=5,
                    device="meta", dtype=torch.bfloat16, operations=comfy.ops.disable_weight_init)
print(json.dumps({k: list(v.shape) for k, v in m.state_dict().items()}))
"""


def test_comfy_layout_matches_comfyui_animate_model_exactly(comfyui_source):
    """Our original/ComfyUI key map (real architecture: 512-px motion encoder, 1024-wide face encoder, CLIP
    projection; narrow DiT) gives exactly the state dict of ComfyUI's own AnimateWanModel, names and shapes."""
    from wan_loader.model.configs import ANIMATE_14B_CONFIG, build_empty
    from wan_loader.keymaps import transformer as tmap

    r = subprocess.run([sys.executable, "-c", COMFY_KEYS_SCRIPT, str(comfyui_source)], capture_output=True,
                       text=True, timeout=300, cwd=str(comfyui_source))
    assert r.returncode == 0, r.stderr[-2000:]
    theirs = {k: tuple(v) for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}
    cfg = {**ANIMATE_14B_CONFIG, "num_attention_heads": 1, "attention_head_dim": 128, "ffn_dim": 256,
           "num_layers": 5, "text_dim": 64, "added_kv_proj_dim": 128}
    shapes = {k: tuple(v.shape) for k, v in build_empty("transformer", cfg).state_dict().items()}
    fake = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    ours = {k: tuple(r.build(fake.__getitem__).shape) for k, r in tmap.plan_diffusers_to_comfy(shapes).items()}
    assert ours == theirs


def test_same_weights_as_diffusers_from_single_file(tmp_path):
    """At the real architecture (narrow DiT), diffusers' own single-file conversion of our ComfyUI-layout file
    gives exactly the weights our loader gives."""
    from diffusers import WanAnimateTransformer3DModel

    from wan_loader.model.configs import ANIMATE_14B_CONFIG
    from wan_loader.writers import Written, save_config, weights_from_module, write_component

    cfg = {**ANIMATE_14B_CONFIG, "num_attention_heads": 1, "attention_head_dim": 128, "ffn_dim": 256,
           "num_layers": 5, "text_dim": 64, "added_kv_proj_dim": 128}
    torch.manual_seed(0)
    model = WanAnimateTransformer3DModel(**cfg).to(torch.bfloat16)
    w = weights_from_module("transformer", model)
    path = write_component(w, tmp_path, "comfy", torch.bfloat16, Written(), prefix="model.diffusion_model.")[0]
    save_config(w, tmp_path / "cfg" / "transformer", Written())
    theirs = WanAnimateTransformer3DModel.from_single_file(str(path), config=str(tmp_path / "cfg"),
                                                           subfolder="transformer", torch_dtype=torch.bfloat16)
    ours = load_transformer(path, weight_dtype="bf16")
    a, b = ours.state_dict(), theirs.state_dict()
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_folder_with_bf16_and_fp8_copies_uses_the_asked_precision(written, tmp_path):
    import shutil

    from safetensors.torch import load_file

    models = tmp_path / "models" / "diffusion_models"
    models.mkdir(parents=True)
    for name in ("comfy", "comfy_fp8_e4m3fn"):
        src = next((written / name / "diffusion_models").glob("*.safetensors"))
        shutil.copy(src, models / src.name)
    fp8 = load_transformer(tmp_path / "models", weight_dtype="fp8_e4m3fn", compute_dtype="fp32")
    raw = load_file(next(models.glob("*fp8*.safetensors")))["blocks.0.self_attn.q.weight"]
    assert torch.equal(fp8.blocks[0].attn1.to_q.weight.view(torch.uint8), raw.view(torch.uint8))  # the fp8 copy
    res_files = {o["file"] for o in inspect(tmp_path / "models")["other_files"]}
    assert any("fp8" in f for f in res_files)  # inspect (bf16 preference) lists the fp8 copy as not used
    full = load_transformer(tmp_path / "models", weight_dtype="fp32")
    assert full.blocks[0].attn1.to_q.weight.dtype == torch.float32
