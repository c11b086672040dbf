"""ComfyUI type conversions of the nodes (IMAGE/MASK/VIDEO <-> the libraries' arrays), in-process and fast."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from tests.by_path import load_by_path


@pytest.fixture(scope="module")
def convert():
    return load_by_path("nodes/convert.py", "wan_nodes_convert")


def test_image_round_trip_and_channel_handling(convert):
    rgba = torch.rand(3, 8, 6, 4)
    frames = convert.image_to_frames(rgba)
    assert frames.dtype == np.uint8 and frames.shape == (3, 8, 6, 3)
    back = convert.frames_to_image(frames)
    assert back.shape == (3, 8, 6, 3) and back.dtype == torch.float32
    assert torch.allclose(back, rgba[..., :3], atol=1 / 255)
    grey = convert.image_to_frames(torch.full((1, 4, 4, 1), 0.5))
    assert grey.shape == (1, 4, 4, 3) and (grey == 128).all()


@pytest.mark.parametrize("bad, words", [
    (torch.rand(0, 4, 4, 3), "at least one frame"),
    (torch.rand(2, 4, 4, 2), "2 channels"),
    (np.zeros((2, 4, 4, 3)), "must be an IMAGE"),
])
def test_bad_images_are_named(convert, bad, words):
    with pytest.raises((ValueError, TypeError), match=words):
        convert.image_to_frames(bad, "pose_video")


def test_masks_single_or_per_frame(convert):
    single = convert.mask_to_array(torch.ones(5, 7), frames=4)
    assert single.shape == (4, 5, 7) and single.dtype == np.float32
    with pytest.raises(ValueError, match="3 frames but the video has 4"):
        convert.mask_to_array(torch.ones(3, 5, 7), frames=4, name="character_mask")
    binary = convert.array_to_mask(np.array([[[0, 1]]], np.uint8))
    assert binary.tolist() == [[[0.0, 1.0]]]


def test_image_sink_fills_one_tensor_segment_by_segment(convert):
    sink = convert.ImageBatchSink(5)
    sink.write(np.full((3, 2, 2, 3), 255, np.uint8))
    with pytest.raises(RuntimeError, match="3 of 5 frames"):
        sink.result()
    sink.write(np.zeros((4, 2, 2, 3), np.uint8))  # a padded last segment: the extra frames are dropped
    image = sink.result()
    assert image.shape == (5, 2, 2, 3) and image[:3].eq(1).all() and image[3:].eq(0).all()


def test_video_from_frames_keeps_fps_and_frames(convert, comfyui_source, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(comfyui_source))
    pytest.importorskip("comfy_api.input_impl")
    images = torch.rand(6, 16, 24, 3)
    video = convert.image_to_video(images, 12.5)
    frames, fps = convert.video_to_image(video)
    assert fps == 12.5 and frames.shape == (6, 16, 24, 3)
    with pytest.raises(ValueError, match="even width and height"):
        convert.image_to_video(torch.rand(2, 15, 24, 3), 30)
    video.save_to(str(tmp_path / "out.mp4"))
    import av

    with av.open(str(tmp_path / "out.mp4")) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 6 and (decoded[0].width, decoded[0].height) == (24, 16)
