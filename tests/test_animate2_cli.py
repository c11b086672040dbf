"""`python -m wan_animate animate` on Wan-Animate-2 weights: the model is read from --models, the raw driving
video goes in (no pose preprocessing), the mp4 comes out at the model's 24 fps. Real files throughout: a tiny
Animate-2 written in ComfyUI's layout and loaded by wan_loader, an mp4 written and read back with PyAV."""
from __future__ import annotations

import av
import numpy as np
import pytest

from wan_animate.cli import main
from wan_animate.preprocess.video_io import write_image, write_video
from wan_loader.testing.tiny import tiny_animate2_components
from wan_loader.writers import write_components

QUICK = ["--steps", "1", "--segment-frames", "9", "--resolution-area", "32", "48"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("animate2_cli")
    models = write_components(tiny_animate2_components(), root / "models", "comfy")
    rng = np.random.default_rng(0)
    video = root / "driving.mp4"
    write_video(video, (rng.random((15, 48, 64, 3)) * 255).astype(np.uint8), fps=30)
    ref = root / "ref.png"
    write_image(ref, (rng.random((60, 40, 3)) * 255).astype(np.uint8))
    return models, video, ref


def read(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], float(stream.average_rate)


def test_animate2_weights_run_animate2_on_the_raw_video(files, tmp_path):
    models, video, ref = files
    out = tmp_path / "out.mp4"
    assert main(["animate", "--models", str(models), "--video", str(video), "--ref", str(ref), "--out", str(out),
                 "--prompt", "front view", *QUICK]) == 0
    frames, fps = read(out)
    assert fps == 24 and len(frames) == 12  # 15 frames at 30 fps = 12 at 24 fps
    assert frames[0].shape == (48, 32, 3)  # 32x48 area with the reference's 2:3 aspect


def test_animate14b_options_and_the_wrong_model_are_refused(files, tmp_path, capsys):
    models, video, ref = files
    args = ["animate", "--models", str(models), "--video", str(video), "--ref", str(ref), *QUICK]
    assert main([*args, "--mode", "replace", "--out", str(tmp_path / "a.mp4")]) == 2
    assert "Animate-14B options" in capsys.readouterr().err
    assert main([*args, "--model", "animate", "--out", str(tmp_path / "b.mp4")]) == 2
    assert "Wan2.2-Animate-14B is required" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
