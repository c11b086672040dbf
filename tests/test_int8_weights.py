"""Comfy-Org's int8 ConvRot Animate-2 repack kept int8: loaded into Int8Linear layers, multiplied by comfy-kitchen.

Real files: a tiny Animate-2 written in ComfyUI's layout, its block Linears re-saved in the int8 ConvRot format
(wan_loader.testing.int8_files, whose quantiser is checked bit-exact against comfy-kitchen's). Real comfy-kitchen: its
eager backend (what its registry picks on the CPU) computes the kept-int8 forward. The GPU choice ("auto" keeps int8
where comfy-kitchen's CUDA/Triton int8 GEMMs pass a probe) cannot run here: those platforms are forced through
DeviceFacts, as a GPU with or without the kernels would report them.

Tolerance of the kept-int8 product: comfy-kitchen quantises the activations (not the weights: those are the file's
int8 values in both paths). Per token it rotates x by the layer's Hadamard groups and rounds x_rot to a grid of step
amax(|x_rot|) / 127, an error of at most half a step per element; so each output differs from the dequantised product
by at most amax(|x_rot|) / 254 * sum_k |W_rot[j, k]| (W_rot = the file's int8 rows times their scales), plus fp32
rounding. Through the whole DiT (120 such layers, 10 residual blocks) the per-layer errors, ~0.5 % of each output
(step / sqrt(12) against rows whose absolute max is ~2.5x their RMS), add up as independent noise and are damped by
the residual stream: the test allows 2 % relative (L2) error on the DiT output, measured 0.4 %.
"""
from __future__ import annotations

import logging

import av
import numpy as np
import pytest
import torch

from wan_animate.cli import main
from wan_animate.engine import accel
from wan_animate.engine.accel import DeviceFacts, INT8_LINEAR, choose_int8_weights, int8_matmul
from wan_animate.engine.accel.selection import select_int8_weights
from wan_animate.engine.animate2 import Animate2DiT
from wan_animate.engine.memory import tensor_bytes
from wan_animate.preprocess.video_io import write_image, write_video
from wan_loader import load_components
from wan_loader.errors import WanLoaderError
from wan_loader.int8_convrot import Int8Linear, hadamard, quantize_int8
from wan_loader.io.readers import open_file
from wan_loader.keymaps.transformer_animate2 import diffusers_key_to_original
from wan_loader.testing.int8_files import is_block_linear_weight, write_int8_convrot
from wan_loader.testing.tiny import tiny_animate2_components
from wan_loader.writers import write_components

ck_eager = pytest.importorskip("comfy_kitchen.backends.eager.quantization")
GROUP = 16  # the tiny DiT's Linears are 32 wide: ConvRot groups of 16 (the real files: 256)


@pytest.fixture(scope="module")
def int8_models(tmp_path_factory):
    """A ComfyUI models folder whose Animate-2 transformer is the int8 ConvRot repack (ffn.2 plain row-wise int8)."""
    models = write_components(tiny_animate2_components(seed=2), tmp_path_factory.mktemp("int8") / "models", "comfy")
    path = next((models / "diffusion_models").glob("*.safetensors"))
    write_int8_convrot(path, path, group_of=lambda key: 0 if key.endswith("ffn.2.weight") else GROUP)
    return models, path


def load(path, int8_weights, dtype="fp32"):
    return load_components(files={"transformer": path}, components=["transformer"], weight_dtype=dtype,
                           int8_weights=int8_weights).transformer


def cpu_keep():
    return choose_int8_weights("cpu", "keep")


@pytest.mark.parametrize("group", [0, 4, GROUP, 64])
def test_quantiser_writes_what_comfy_kitchen_writes(group):
    w = torch.randn(48, 64, generator=torch.Generator().manual_seed(group)) * 0.1
    q, scale = quantize_int8(w, group)
    want_q, want_scale = (ck_eager.quantize_int8_convrot_weight(w, group) if group
                          else ck_eager.quantize_int8_rowwise(w))
    assert torch.equal(q, want_q) and torch.equal(scale, want_scale)


def test_kept_layers_hold_the_files_int8_bytes(int8_models):
    _, path = int8_models
    src = open_file(path)
    kept, dequantised = load(path, cpu_keep(), "bf16"), load(path, "dequantize", "bf16")
    layers = {name: m for name, m in kept.named_modules() if isinstance(m, Int8Linear)}
    int8_keys = [k for k in src.keys() if is_block_linear_weight(k, src.shape(k))]
    assert len(layers) == len(int8_keys) == 10 * 12
    for name, layer in layers.items():
        key = diffusers_key_to_original(name + ".weight")
        assert layer.weight.dtype == torch.int8 and torch.equal(layer.weight, src.get(key))
        assert layer.scale.dtype == torch.float32 and torch.equal(layer.scale, src.get(key + "_scale").reshape(-1))
        assert layer.group_size == (0 if key.endswith("ffn.2.weight") else GROUP)

    weights = sum(m.weight.numel() for m in layers.values())
    scales = sum(m.scale.numel() for m in layers.values())
    # what the memory planner measures: bf16 -> int8 weights, plus their fp32 scales
    assert tensor_bytes(dequantised) - tensor_bytes(kept) == weights * (2 - 1) - scales * 4
    kept.to(torch.bfloat16)  # a dtype cast moves nothing out of int8 and keeps the scales fp32
    assert all(m.weight.dtype == torch.int8 and m.scale.dtype == torch.float32 for m in layers.values())


def test_a_kept_layer_through_comfy_kitchen_is_within_its_activation_rounding_bound(int8_models):
    _, path = int8_models
    kept, dequantised = load(path, cpu_keep()), load(path, "dequantize")
    x = torch.randn(2, 50, 32, generator=torch.Generator().manual_seed(1))
    for name in ("blocks.0.self_attn.to_q", "blocks.3.ffn.2", "blocks.9.cross_attn.to_out.0"):
        layer = kept.get_submodule(name)
        assert isinstance(layer, Int8Linear) and int8_matmul.backend_for(x, layer.weight, layer.scale,
                                                                         layer.group_size) == "eager"
        got, want = layer(x), dequantised.get_submodule(name)(x)
        group = layer.group_size or 32
        rotated = x.reshape(-1, 32 // group, group) @ (hadamard(group) if layer.group_size else torch.eye(32))
        rows = layer.weight.float() * layer.scale[:, None]
        bound = rotated.reshape(2, 50, 32).abs().amax(-1, keepdim=True) / 254 * rows.abs().sum(1)
        assert ((got - want).abs() <= bound + 1e-5).all(), name
        assert not torch.equal(got, want)  # the activations really were rounded to int8


def dit_output(transformer) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    f, h, w = 3, 4, 6
    driving = torch.randn(1, 36, f, h, w, generator=g)
    latents = torch.randn(1, 36, f + 1, h, w, generator=g)
    text, image = torch.randn(1, 20, 32, generator=g), torch.randn(1, 257, 1280, generator=g)
    dit = Animate2DiT(transformer)
    with torch.no_grad():
        cached = dit.driving_pass(driving, dit.encode_context(text, image))
        return dit(latents, torch.tensor([500.0]), dit.encode_context(text, image), cached)


def test_kept_int8_dit_forward_equals_the_dequantised_one_within_activation_rounding(int8_models):
    _, path = int8_models
    kept, dequantised = dit_output(load(path, cpu_keep())), dit_output(load(path, "dequantize"))
    error = ((kept - dequantised).norm() / dequantised.norm()).item()
    assert 0 < error < 0.02


def test_auto_keeps_int8_only_where_the_gpu_kernels_passed_their_probe():
    """Facts as GPUs report them (forced platform paths: no GPU here)."""
    hopper = DeviceFacts((9, 0), 90100, frozenset({INT8_LINEAR}))
    assert select_int8_weights(hopper) == "keep"
    assert select_int8_weights(DeviceFacts((9, 0), 90100, frozenset())) == "dequantize"  # probe failed / no kitchen
    assert select_int8_weights(DeviceFacts((7, 0), None, frozenset({INT8_LINEAR}))) == "dequantize"  # Volta
    assert select_int8_weights(DeviceFacts()) == "dequantize"  # CPU


def test_forced_gpu_platform_path_device_facts_probes_comfy_kitchen_once_per_gpu(monkeypatch):
    """device_facts on a GPU as torch reports it (forced: no GPU here): from compute capability 7.5 comfy-kitchen's
    int8_linear is probed and, passing, listed as working; below it, not probed at all."""
    from wan_animate.engine.accel import selection

    probed = []
    monkeypatch.setattr(selection.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(selection.torch.backends.cudnn, "is_available", lambda: False)
    monkeypatch.setattr(selection, "_probe_scaled_mm", lambda device: "not here")
    monkeypatch.setattr(selection.int8_attention, "unavailable_reason", lambda device, pv: "not here")
    monkeypatch.setattr(int8_matmul, "unavailable_reason", lambda device: probed.append(device))
    for capability, listed in (((9, 0), True), ((7, 5), True), ((7, 0), False)):
        monkeypatch.setattr(selection.torch.cuda, "get_device_capability", lambda device, c=capability: c)
        probed.clear()
        facts = selection.device_facts("cuda:0")
        assert (INT8_LINEAR in facts.working) == listed and len(probed) == int(listed)
        assert select_int8_weights(facts) == ("keep" if listed else "dequantize")


def test_forced_gpu_with_int8_kernels_platform_path_auto_keeps_them_through_comfy_kitchen(int8_models, monkeypatch,
                                                                                          caplog):
    """An H200 whose comfy-kitchen probe passed: "auto" keeps the int8 weights and gives every Int8Linear
    comfy-kitchen's int8_linear (run here by its eager backend, the GPU's being absent), with no log line."""
    _, path = int8_models
    monkeypatch.setattr(accel, "device_facts", lambda device: DeviceFacts((9, 0), 90100, frozenset({INT8_LINEAR})))
    with caplog.at_level(logging.WARNING):
        model = load(path, choose_int8_weights("cuda:0", "auto"))
    layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert len(layers) == 120 and all(isinstance(m.matmul, int8_matmul.KitchenInt8Matmul) for m in layers)
    assert not caplog.records


def test_forced_gpu_without_int8_kernels_platform_path_dequantises_with_one_log_line(int8_models, monkeypatch,
                                                                                     caplog):
    """A Volta GPU (compute capability 7.0, no int8 tensor cores) as device_facts reports it: "auto" dequantises
    at load and says why in one line; the same file's bf16 copy would be loaded the same."""
    _, path = int8_models
    monkeypatch.setattr(accel, "device_facts", lambda device: DeviceFacts((7, 0), 90100, frozenset()))
    choice = choose_int8_weights("cuda:0", "auto")
    with caplog.at_level(logging.WARNING):
        model = load(path, choice)
    lines = [r.getMessage() for r in caplog.records if "int8" in r.getMessage()]
    assert len(lines) == 1 and "compute capability 7.0" in lines[0] and "comfy-kitchen>=0.2.40" in lines[0]
    assert not any(isinstance(m, Int8Linear) for m in model.modules())
    assert model.blocks[0].self_attn.to_q.weight.dtype == torch.float32


def test_forced_hopper_whose_kitchen_probe_failed_platform_path_says_why(monkeypatch):
    """An H200 on which comfy-kitchen's int8_linear failed its probe (here: as under ComfyUI with a torch built for
    CUDA < 13, which disables comfy-kitchen's CUDA backend, leaving only its eager fallback), as device_facts and
    the probe's per-GPU record report it: auto dequantises saying so, keep refuses saying so."""
    reason = ("comfy-kitchen's int8_linear does not run here: only comfy-kitchen's eager fallback runs int8_linear "
              "here (cuda backend disabled; triton backend disabled)")
    monkeypatch.setattr(accel, "device_facts", lambda device: DeviceFacts((9, 0), 90100, frozenset()))
    monkeypatch.setattr(int8_matmul, "_PROBE", {0: reason})
    auto = choose_int8_weights("cuda:0", "auto")
    assert not auto.keep and reason in auto.fallback
    keep = choose_int8_weights("cuda:0", "keep")
    assert not keep.keep and reason in keep.refusal and "comfy-kitchen>=0.2.40" in keep.refusal


def test_forced_keep_without_kernel_support_is_a_one_line_error_naming_what_to_install(int8_models, monkeypatch):
    _, path = int8_models
    monkeypatch.setattr(accel, "device_facts", lambda device: DeviceFacts((7, 0), 90100, frozenset()))
    with pytest.raises(WanLoaderError, match=r"compute capability 7\.0.*pip install 'comfy-kitchen>=0\.2\.40'") as e:
        load(path, choose_int8_weights("cuda:0", "keep"))
    assert "\n" not in str(e.value)
    monkeypatch.setattr(int8_matmul, "kitchen_installed", lambda: False)  # comfy-kitchen missing, as on a bare install
    with pytest.raises(WanLoaderError, match=r"comfy-kitchen is not installed.*comfy-kitchen>=0\.2\.40"):
        load(path, choose_int8_weights("cpu", "keep"))


def test_a_bf16_file_is_loaded_as_before_whatever_the_int8_setting(int8_models, tmp_path, monkeypatch, caplog):
    models, _ = int8_models
    plain = write_components(tiny_animate2_components(seed=2), tmp_path / "plain", "comfy")
    path = next((plain / "diffusion_models").glob("*.safetensors"))
    monkeypatch.setattr(int8_matmul, "kitchen_installed", lambda: False)
    with caplog.at_level(logging.WARNING):
        model = load(path, choose_int8_weights("cpu", "keep"))
    assert not any(isinstance(m, Int8Linear) for m in model.modules()) and not caplog.records


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="int8_weights='fast'.*auto, keep, dequantize"):
        choose_int8_weights("cpu", "fast")


def read_frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


def test_cli_runs_an_int8_convrot_folder_kept_or_dequantised(int8_models, tmp_path, caplog):
    """`python -m wan_animate animate` on a models folder holding the int8 ConvRot repack: by default ("auto") on the
    CPU the weights are dequantised with one log line; --int8-weights keep runs them through comfy-kitchen (eager)
    and gives the same video up to the activations' int8 rounding and the mp4's lossy coding."""
    models, _ = int8_models
    rng = np.random.default_rng(0)
    video, ref = tmp_path / "driving.mp4", tmp_path / "ref.png"
    write_video(video, (rng.random((5, 48, 64, 3)) * 255).astype(np.uint8), fps=24)
    write_image(ref, (rng.random((60, 40, 3)) * 255).astype(np.uint8))
    args = ["animate", "--models", str(models), "--video", str(video), "--ref", str(ref), "--steps", "1",
            "--guide-scale", "1", "--segment-frames", "5", "--resolution-area", "32", "48", "--no-audio"]
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--out", str(tmp_path / "auto.mp4")]) == 0
    assert sum("int8 weights dequantised at load" in r.getMessage() for r in caplog.records) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--int8-weights", "keep", "--out", str(tmp_path / "keep.mp4")]) == 0
    assert not any("int8" in r.getMessage() for r in caplog.records)
    auto, keep = read_frames(tmp_path / "auto.mp4"), read_frames(tmp_path / "keep.mp4")
    assert auto.shape == keep.shape == (5, 48, 32, 3)
    # the job's frames differ by ~0.1 level on average; H.264 coding these noise-like frames moves pixels by a few
    # levels either way, so what survives the mp4 is the frames' brightness and their correlation
    assert np.abs(auto.mean(axis=(1, 2, 3)) - keep.mean(axis=(1, 2, 3))).max() < 1
    assert np.corrcoef(auto.ravel(), keep.ravel())[0, 1] > 0.97


def test_tiny_cli_writes_the_int8_convrot_repack_and_inspect_names_it(tmp_path, capsys):
    from wan_loader.cli import main as loader_main
    from wan_loader.inspection import inspect

    assert loader_main(["tiny", str(tmp_path / "t"), "--model", "animate2", "--layout", "comfy", "--distilled",
                        "--int8-convrot"]) == 0
    info = inspect(tmp_path / "t")
    transformer = info["components"]["transformer"]
    assert transformer["files"][0].endswith("wan_animate_2_distill_int8_convrot.safetensors")
    assert (info["family"], info["distilled"], transformer["int8"], transformer["scaled_fp8"]) == (
        "animate2", True, True, False)
    model = load(transformer["files"][0], cpu_keep())
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == 120
    capsys.readouterr()
    assert loader_main(["tiny", str(tmp_path / "u"), "--layout", "diffusers", "--int8-convrot"]) == 2
    assert "use it with --model animate2 --layout comfy" in capsys.readouterr().err


def test_convert_dequantises_the_int8_weights_with_their_scales(int8_models, tmp_path):
    """`convert` of the int8 ConvRot repack writes each weight dequantised and un-rotated (never the int8 values
    without their scales): the converted folder loads to the same weights as the int8 file dequantised at load."""
    from wan_loader.conversion import convert

    models, path = int8_models
    convert(models, tmp_path / "d", "diffusers", components=["transformer"])
    converted = load_components(tmp_path / "d", components=["transformer"], weight_dtype="fp32").transformer
    reference = load(path, "dequantize").state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in converted.state_dict().items())
