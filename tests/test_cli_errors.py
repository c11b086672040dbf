"""Command-line mistakes a newcomer makes end in one line that says what to do, with the documented exit code.

The commands run in-process through their real entry points (`wan_loader.cli.main`, `wan_animate.cli.main`) on
real files: a LoRA written with safetensors, a PNG given as the driving video (decoded by PyAV/ffmpeg). The
missing GPU is this machine's real state (the test is skipped where torch does see a CUDA GPU).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from wan_animate.cli import main as animate_main
from wan_animate.preprocess.cli import area_argument
from wan_animate.preprocess.errors import PreprocessError
from wan_animate.preprocess.video_io import VideoFile
from wan_loader.cli import main as loader_main


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_tiny_onto_an_existing_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"not a folder")
    assert loader_main(["tiny", str(target), "--layout", "comfy"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and f"{target} is a file" in line and "folder" in line
    assert target.read_bytes() == b"not a folder"  # nothing lost


def test_inspect_of_a_lora_exits_1_as_documented(tmp_path, capsys):
    lora = tmp_path / "relight.safetensors"
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 16),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(16, 4)}, str(lora))
    assert loader_main(["inspect", str(lora)]) == 1
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "1: no model weights (e.g. a LoRA file" in readme


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_device_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    out = tmp_path / "o.mp4"
    assert animate_main(["animate", "--tiny", "--device", "cuda", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--device cuda" in line and "no CUDA GPU" in line and "--device cpu" in line
    assert not out.exists()


@pytest.mark.parametrize("area", [("8", "8"), ("0", "720"), ("16", "15")])
def test_resolution_area_below_the_minimum_names_the_flag(tmp_path, capsys, area):
    assert animate_main(["animate", "--tiny", "--resolution-area", *area, "--out", str(tmp_path / "o.mp4")]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"--resolution-area {area[0]} {area[1]}" in line and "at least 256" in line


def test_resolution_area_below_the_minimum_for_animate2(tmp_path, capsys):
    out = tmp_path / "o.mp4"
    assert animate_main(["animate", "--tiny", "--model", "animate2", "--resolution-area", "8", "8", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--resolution-area 8 8" in line and "at least 256" in line and not out.exists()


def test_resolution_area_at_the_minimum_is_accepted():
    assert area_argument((16, 16)) == 256 and area_argument((1280, 720)) == 1280 * 720


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_image_given_as_the_driving_video_is_refused(tmp_path, suffix):
    image = tmp_path / f"character{suffix}"
    assert cv2.imwrite(str(image), np.full((64, 48, 3), 128, np.uint8))
    with pytest.raises(PreprocessError, match="is a still image .*not a video: give the driving video"):
        VideoFile(image)


def test_image_as_driving_video_from_the_command_line(tmp_path, capsys):
    image = tmp_path / "character.png"
    cv2.imwrite(str(image), np.full((64, 48, 3), 128, np.uint8))
    assert animate_main(["animate", "--tiny", "--video", str(image), "--out", str(tmp_path / "o.mp4")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "character.png is a still image" in line
