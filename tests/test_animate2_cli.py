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


def test_memory_auto_places_the_model_by_a_plan(files, tmp_path, monkeypatch, capsys):
    """--memory auto with its GPU code path forced on the CPU (no GPU here; the CPU stands in for the device, so
    its "free memory" is declared): the model loads on the CPU, the plan for the job's segment (9 frames at 32x48)
    swaps blocks and streams the encoders, the plan is printed, and the frames written equal those with everything
    resident (block swap is exact); --driving-cache host keeps the K/V cache in host memory under the same plan, with
    the same frames. The frames are compared as the engine hands them to the mp4 writer: the encoder itself does not
    give identical files for identical frames."""
    import wan_animate.engine.animate2.cli as animate2_cli
    import wan_animate.engine.placement as placement
    from wan_animate.engine.memory import ENCODERS_STREAMED, DeviceBudget, Footprint, JobShape, _plan, tensor_bytes
    from wan_animate.engine.sinks import Mp4Writer
    from wan_loader import load_components

    written: dict[str, list] = {}
    write = Mp4Writer.write
    monkeypatch.setattr(Mp4Writer, "write", lambda self, frames: (
        written.setdefault(self.path.name, []).append(np.array(frames)), write(self, frames))[1])
    models, video, ref = files
    args = ["animate", "--models", str(models), "--video", str(video), "--ref", str(ref), *QUICK]
    assert main([*args, "--memory", "gpu", "--out", str(tmp_path / "resident.mp4")]) == 0
    assert "memory plan" not in capsys.readouterr().err

    loaded = load_components(models, device="cpu", weight_dtype="fp32", model="animate2")
    own = sum(tensor_bytes(getattr(loaded, n)) for n in ("transformer", "vae", "text_encoder", "image_encoder"))
    peak = _plan(Footprint.of(loaded), JobShape(9, 48, 32), 5, ENCODERS_STREAMED, None, 0).peak_bytes
    free = DeviceBudget(0).free_bytes_for(peak) - own  # with the model's own weights: just enough for 5 swapped
    monkeypatch.setattr(animate2_cli, "plans_memory", lambda args, device: True)
    monkeypatch.setattr(placement, "free_device_bytes", lambda device: free)
    assert main([*args, "--memory", "auto", "--out", str(tmp_path / "planned.mp4")]) == 0
    err = capsys.readouterr().err
    assert "memory plan: 5 of 10 transformer blocks swapped from host memory, encoders streamed, VAE whole frames" in err
    assert len(read(tmp_path / "planned.mp4")[0]) == 12
    planned, resident = (np.concatenate(written[name]) for name in ("planned.mp4", "resident.mp4"))
    assert planned.shape == (12, 48, 32, 3) and np.array_equal(planned, resident)
    assert main([*args, "--memory", "auto", "--driving-cache", "host", "--out", str(tmp_path / "host.mp4")]) == 0
    err = capsys.readouterr().err
    assert "5 of 10 transformer blocks swapped" in err and "driving K/V cache 0.0 GiB in host memory" in err
    assert np.array_equal(np.concatenate(written["host.mp4"]), resident)
