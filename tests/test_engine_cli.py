"""`python -m wan_animate animate` end to end on the tiny built-in model, and job LoRAs in the engine.

Everything is real: tiny ONNX detection models run by onnxruntime, a tiny model folder written in the diffusers
layout and loaded by wan_loader, mp4 files read back with PyAV, LoRA files in the ComfyUI/lightx2v layout.
"""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from tests.lora_files import random_factors, write_comfyui
from wan_animate.cli import main
from wan_animate.engine import AnimateInputs, AnimateOptions, animate
from wan_animate.engine.demo import DEMO_FRAMES

QUICK = ["--tiny", "--steps", "1", "--segment-frames", "17", "--resolution-area", "96", "64"]


def read_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize("mode", ["animate", "replace"])
def test_tiny_job_writes_the_whole_video(tmp_path, mode, lora_file):
    out = tmp_path / "out.mp4"
    lora = ["--lora", f"{lora_file}:0.7"] if mode == "animate" else []
    assert main(["animate", *QUICK, "--mode", mode, *lora, "--out", str(out)]) == 0
    frames = read_frames(out)
    assert len(frames) == DEMO_FRAMES and frames[0].shape[0] % 16 == 0 and frames[0].shape[1] % 16 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_sparse_attention_where_it_cannot_run_falls_back_with_one_line(tmp_path, caplog):
    """--attention sparse on a CPU: comfy-kitchen's Sol-Attn kernel needs a CUDA GPU, so auto's kernel runs the job
    and one log line says why (the sparse path itself: tests/test_sparse_attention.py)."""
    out = tmp_path / "out.mp4"
    with caplog.at_level("WARNING", logger="wan_animate.engine.accel.attention"):
        assert main(["animate", *QUICK, "--attention", "sparse", "--out", str(out)]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "wan_animate.engine.accel.attention"]
    assert lines == ["attention='sparse' cannot run: no CUDA GPU (comfy-kitchen's sol_attn kernel runs on CUDA "
                     "GPUs); using 'native' instead"]
    assert len(read_frames(out)) == DEMO_FRAMES


def test_reference_without_a_person_is_refused_before_any_work(tmp_path, capsys):
    from wan_animate.preprocess.video_io import write_image

    empty = tmp_path / "empty.png"
    write_image(empty, np.zeros((96, 128, 3), np.uint8))
    out = tmp_path / "out.mp4"
    assert main(["animate", *QUICK, "--ref", str(empty), "--out", str(out)]) == 2
    assert "No person found in the reference image" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--segment-frames", "18"], "4n\\+1"),
        (["--lora", "missing.safetensors:0.5"], "LoRA file not found"),
        (["--attention", "sparse", "--sparse-tau", "nan"], "sparse_tau=nan: must be a finite number"),
    ],
)
def test_bad_arguments_exit_with_a_message(tmp_path, capsys, extra, message):
    assert main(["animate", *QUICK, *extra, "--out", str(tmp_path / "o.mp4")]) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


def test_missing_inputs_without_tiny(tmp_path, capsys):
    assert main(["animate", "--out", str(tmp_path / "o.mp4")]) == 2
    assert "missing --ref, --video, --models" in capsys.readouterr().err


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    from wan_loader.testing.tiny import tiny_transformer

    model = tiny_transformer()
    modules = [f"blocks.{i}.{m}" for i in range(len(model.blocks)) for m in ("attn1.to_q", "attn2.to_v", "ffn.net.2")]
    return write_comfyui(tmp_path_factory.mktemp("lora") / "distill_rank4.safetensors",
                         random_factors(model, modules, 4, seed=5, dtype=torch.float32), alpha=4.0)


def test_job_loras_merged_equal_run_time_and_leave_the_weights_unchanged(tiny, lora_file):
    rng = np.random.default_rng(0)
    inputs = AnimateInputs(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                           rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8),
                           rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8))
    before = {k: v.clone() for k, v in tiny.transformer.state_dict().items()}
    plain = animate(tiny, inputs, AnimateOptions(steps=2)).frames.astype(np.int16)
    runtime = animate(tiny, inputs, AnimateOptions(steps=2), loras=[(lora_file, 0.8)]).frames.astype(np.int16)
    merged = animate(tiny, inputs, AnimateOptions(steps=2, lora_mode="merge"), loras=[(lora_file, 0.8)]).frames
    assert np.abs(runtime - merged.astype(np.int16)).max() <= 1
    assert np.abs(runtime - plain).mean() > 1.0
    after = tiny.transformer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
