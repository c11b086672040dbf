"""The driving video's sound in the written videos: real audio streams (beeps encoded by PyAV as AAC or PCM), written
through the real VideoWriter and the real CLIs, decoded back and measured: where each beep lands against the video's
frames, how long the sound lasts, whether it was copied or re-encoded."""
from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np
import pytest
import torch

from tests.by_path import load_by_path
from tests.audio_files import (
    STATED_LENGTH_S, audio_codec, beep_onsets, bright_frames, decoded_sound, durations, write_clip,
)
from wan_animate.preprocess.audio import DrivingSound, fit_samples, mono_or_stereo, span_samples
from wan_animate.preprocess.video_io import VideoFile, VideoWriter, resample_stream, resampled_count

OUT_FPS = 30
ONSET_TOLERANCE_S = 0.003  # AAC smears an onset by a millisecond or two
SOURCE_RATES = [24, 25, Fraction(30000, 1001), 60]


def resample_with_sound(src, out, fps=OUT_FPS, frames=None, **writer_options) -> tuple[int, VideoWriter]:
    """Resample src to `fps` as the preprocessing does (first `frames` output frames only, when given) and write it
    with src's sound; returns the frame count and the writer."""
    video = VideoFile(src)
    count = resampled_count(sum(1 for _ in video.frames()), video.fps, fps)
    count = min(count, frames or count)
    with VideoWriter(out, fps, sound=DrivingSound.probe(src), expected_frames=count, **writer_options) as writer:
        for i, frame in enumerate(resample_stream(video.frames(), video.fps, fps)):
            if i == count:
                break
            writer.write(frame)
    return count, writer


def packet_s(path) -> float:
    """Length of one AAC packet of the file's sound: how far a copied track may run past the video."""
    return 1024 / decoded_sound(path)[1]


@pytest.mark.parametrize("codec", ["aac", "pcm_s16le"])
@pytest.mark.parametrize("fps", SOURCE_RATES, ids=lambda f: f"{float(f):g}fps")
def test_sound_stays_in_sync_after_resampling_to_30_fps(tmp_path, fps, codec):
    src = write_clip(tmp_path / f"src.{'mp4' if codec == 'aac' else 'mov'}", fps=fps, frames=int(round(2 * fps)),
                     beep_at=(0.5, 1.3), codec=codec)
    count, writer = resample_with_sound(src, tmp_path / "out.mp4")
    out = tmp_path / "out.mp4"
    video_s, audio_s = durations(out)
    assert video_s == pytest.approx(count / OUT_FPS)
    assert audio_codec(out) == "aac"
    assert writer._sound_track.copied == (codec == "aac")
    if codec == "aac":  # copied packets: the track ends with the packet that covers the last frame
        assert video_s <= audio_s < video_s + packet_s(out)
    else:  # re-encoded: cut to the sample
        assert audio_s == pytest.approx(video_s, abs=STATED_LENGTH_S)
    source_onsets, onsets = beep_onsets(src), beep_onsets(out)
    assert len(onsets) == 2
    np.testing.assert_allclose(onsets, source_onsets, atol=ONSET_TOLERANCE_S)
    # ... and each beep sounds while the output shows the bright frame that went with it in the source
    shown = [i / OUT_FPS for i in bright_frames(out)]
    for onset in onsets:
        assert any(abs(t - onset) <= 1 / OUT_FPS + 0.5 / float(fps) for t in shown), (onset, shown)


def test_fewer_frames_than_the_sound_cut_it_at_the_last_frame(tmp_path):
    src = write_clip(tmp_path / "src.mp4", fps=25, frames=75, beep_at=(0.5, 2.5))
    count, writer = resample_with_sound(src, tmp_path / "out.mp4", frames=45)  # the job produced 1.5 s
    video_s, audio_s = durations(tmp_path / "out.mp4")
    assert count == 45 and video_s == pytest.approx(1.5)
    assert writer._sound_track.copied and video_s <= audio_s < video_s + packet_s(tmp_path / "out.mp4")
    assert beep_onsets(tmp_path / "out.mp4") == pytest.approx([beep_onsets(src)[0]], abs=ONSET_TOLERANCE_S)


def test_sound_longer_than_the_video_is_cut_to_it(tmp_path):
    src = write_clip(tmp_path / "src.mp4", fps=24, frames=48, beep_at=(1.0, 2.5), audio_seconds=3.0)
    resample_with_sound(src, tmp_path / "out.mp4")
    video_s, audio_s = durations(tmp_path / "out.mp4")
    assert video_s == pytest.approx(2.0) and audio_s < video_s + packet_s(tmp_path / "out.mp4")
    assert beep_onsets(tmp_path / "out.mp4") == pytest.approx([beep_onsets(src)[0]], abs=ONSET_TOLERANCE_S)


def test_sound_shorter_than_the_video_is_padded_with_silence(tmp_path):
    src = write_clip(tmp_path / "src.mp4", fps=25, frames=50, beep_at=(0.5,), audio_seconds=1.0)
    _, writer = resample_with_sound(src, tmp_path / "out.mp4")
    out = tmp_path / "out.mp4"
    video_s, audio_s = durations(out)
    assert not writer._sound_track.copied
    assert audio_s == pytest.approx(video_s, abs=STATED_LENGTH_S) and video_s == pytest.approx(2.0)
    samples, rate, start = decoded_sound(out)
    assert start == pytest.approx(0, abs=1e-3)
    assert np.abs(samples[:, int(1.1 * rate):int(2.0 * rate)]).max() < 0.01  # silence after the sound ran out
    assert beep_onsets(out) == pytest.approx(beep_onsets(src), abs=ONSET_TOLERANCE_S)


def test_video_trimmed_after_the_sound_starts_takes_the_sound_from_its_first_frame(tmp_path):
    """A clip cut from a longer one: its video starts half a second after its sound on the container's clock."""
    src = write_clip(tmp_path / "src.mp4", fps=25, frames=50, beep_at=(0.2, 1.2), video_start=0.5,
                     audio_seconds=2.5)
    sound = DrivingSound.probe(src)
    assert sound.origin > 0.4 and sound.start < -0.4
    _, writer = resample_with_sound(src, tmp_path / "out.mp4")
    out = tmp_path / "out.mp4"
    assert not writer._sound_track.copied
    onsets = beep_onsets(out)
    # the beep before the first frame is cut away; the other keeps its place against the frames
    assert onsets == pytest.approx([t for t in beep_onsets(src) if t > 0], abs=ONSET_TOLERANCE_S)
    video_s, audio_s = durations(out)
    assert audio_s == pytest.approx(video_s, abs=STATED_LENGTH_S)


def test_sound_starting_after_the_first_frame_gets_leading_silence(tmp_path):
    src = write_clip(tmp_path / "src.mp4", fps=30, frames=60, beep_at=(1.0,), audio_start=0.4)
    _, writer = resample_with_sound(src, tmp_path / "out.mp4")
    out = tmp_path / "out.mp4"
    samples, rate, start = decoded_sound(out)
    assert not writer._sound_track.copied and start == pytest.approx(0, abs=1e-3)
    assert beep_onsets(out) == pytest.approx(beep_onsets(src), abs=ONSET_TOLERANCE_S)
    assert durations(out)[1] == pytest.approx(2.0, abs=STATED_LENGTH_S)


def test_more_than_two_channels_are_mixed_to_stereo_and_odd_rates_resampled(tmp_path):
    src = write_clip(tmp_path / "src.mov", fps=25, frames=50, beep_at=(0.7,), codec="pcm_s16le", channels=6,
                     sample_rate=37800)
    resample_with_sound(src, tmp_path / "out.mp4")
    samples, rate, _ = decoded_sound(tmp_path / "out.mp4")
    assert samples.shape[0] == 2 and rate == 48000
    assert beep_onsets(tmp_path / "out.mp4") == pytest.approx(beep_onsets(src), abs=ONSET_TOLERANCE_S)


def test_video_without_sound_is_written_silent(tmp_path, caplog):
    src = write_clip(tmp_path / "src.mp4", fps=25, frames=25, codec=None)
    with caplog.at_level(logging.WARNING):
        assert DrivingSound.probe(src) is None
    assert not caplog.records
    count, _ = resample_with_sound(src, tmp_path / "out.mp4")
    assert durations(tmp_path / "out.mp4") == (pytest.approx(count / OUT_FPS), None)


def corrupt_sound(path):
    """Overwrite the payload of every audio packet after the fifth with noise: the stream stays, it won't decode."""
    import av

    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.audio[0]) if p.pos is not None]
    rng = np.random.default_rng(0)
    with open(path, "r+b") as f:
        for pos, size in packets[5:]:
            f.seek(pos)
            f.write(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def test_undecodable_sound_gives_a_silent_video_and_one_warning(tmp_path, caplog):
    src = corrupt_sound(write_clip(tmp_path / "src.mp4", fps=25, frames=50))
    with caplog.at_level(logging.WARNING):
        count, _ = resample_with_sound(src, tmp_path / "out.mp4")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    message = caplog.records[0].getMessage()
    assert "src.mp4" in message and "cannot be decoded" in message and "without sound" in message
    assert durations(tmp_path / "out.mp4") == (pytest.approx(count / OUT_FPS), None)


def test_span_and_fit_rules():
    assert span_samples(45, 30, 44100) == 66150
    assert span_samples(60, Fraction(30000, 1001), 48000) == 96096
    samples = np.ones((2, 10), np.float32)
    assert fit_samples(samples, 4).shape == (2, 4)
    padded = fit_samples(samples, 13)
    assert padded.shape == (2, 13) and padded[:, 10:].max() == 0 and padded[:, :10].min() == 1
    assert mono_or_stereo(np.ones((6, 5))).shape == (1, 5) and mono_or_stereo(samples).shape == (2, 10)


# ------------------------------------------------------------------------------------------------ the CLIs


@pytest.fixture(scope="module")
def detection_models(tmp_path_factory):
    from tests.preprocess_helpers import model_dir

    return model_dir(tmp_path_factory.mktemp("models"), [[200, 100, 440, 600, 0.9, 0]])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from wan_animate.preprocess.video_io import write_image

    path = tmp_path_factory.mktemp("ref") / "ref.png"
    write_image(path, np.full((64, 64, 3), 90, np.uint8))
    return path


def preprocess_cli(video, reference, models, out, *extra):
    from wan_animate.cli import main

    return main(["preprocess", "--video", str(video), "--ref", str(reference), "--models", str(models),
                 "--out", str(out), "--mode", "replace", "--device", "cpu", "--no-download",
                 "--resolution-area", "64", "64", *extra])


def test_preprocess_cli_videos_carry_the_sound_in_sync(tmp_path, detection_models, reference):
    src = write_clip(tmp_path / "drive.mp4", fps=25, frames=30, beep_at=(0.4,), size=64)
    assert preprocess_cli(src, reference, detection_models, tmp_path / "out") == 0
    for name in ("src_pose.mp4", "src_face.mp4", "src_bg.mp4", "src_mask.mp4"):
        video_s, audio_s = durations(tmp_path / "out" / name)
        assert video_s == pytest.approx(36 / 30), name  # 30 frames at 25 fps -> 36 at 30 fps: the same 1.2 s
        assert video_s <= audio_s < video_s + packet_s(tmp_path / "out" / name), name
        assert beep_onsets(tmp_path / "out" / name) == pytest.approx(beep_onsets(src), abs=ONSET_TOLERANCE_S)


def test_preprocess_cli_no_audio_and_corrupt_sound(tmp_path, detection_models, reference, caplog):
    src = write_clip(tmp_path / "drive.mp4", fps=25, frames=30, size=64)
    assert preprocess_cli(src, reference, detection_models, tmp_path / "silent", "--no-audio") == 0
    assert durations(tmp_path / "silent" / "src_pose.mp4")[1] is None
    corrupt_sound(src)
    with caplog.at_level(logging.WARNING):
        assert preprocess_cli(src, reference, detection_models, tmp_path / "corrupt") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot be decoded" in warnings[0] and "without sound" in warnings[0]
    for name in ("src_pose.mp4", "src_face.mp4", "src_bg.mp4", "src_mask.mp4"):
        assert durations(tmp_path / "corrupt" / name) == (pytest.approx(1.2), None)


def animate_cli(src, out, model, *extra):
    """The whole `animate` job on the tiny built-in model of `model` (Animate-14B or Animate-2) on the clip `src`."""
    from wan_animate.cli import main

    return main(["animate", "--tiny", "--model", model, "--steps", "1", "--segment-frames", "17",
                 "--resolution-area", "96", "64", "--video", str(src), "--out", str(out), *extra])


@pytest.mark.parametrize("model, fps, frames, out_fps", [("animate", 24, 12, 30), ("animate2", 30, 15, 24)])
def test_animate_cli_output_carries_the_sound_in_sync(tmp_path, model, fps, frames, out_fps):
    """The whole job on each tiny built-in model with a driving video that has sound, resampled to the model's frame
    rate (Animate-14B: 12 frames at 24 fps -> 15 at 30; Animate-2: 15 at 30 -> 12 at 24): the same 0.5 s, and the
    beep stays with its frame."""
    src = write_clip(tmp_path / "drive.mp4", fps=fps, frames=frames, beep_at=(0.2,), size=64)
    out = tmp_path / "animated.mp4"
    assert animate_cli(src, out, model) == 0
    video_s, audio_s = durations(out)
    assert video_s == pytest.approx(0.5) and video_s <= audio_s < video_s + packet_s(out)
    assert VideoFile(out).fps == out_fps
    assert audio_codec(out) == "aac"
    assert beep_onsets(out) == pytest.approx(beep_onsets(src), abs=ONSET_TOLERANCE_S)


def test_animate2_cli_no_audio_and_video_fps_kept(tmp_path):
    """Animate-2: --no-audio writes the frames silent; --fps -1 keeps the video's 25 fps and its re-encoded PCM sound
    (cut to the sample)."""
    src = write_clip(tmp_path / "drive.mov", fps=25, frames=10, beep_at=(0.2,), codec="pcm_s16le", size=64)
    assert animate_cli(src, tmp_path / "silent.mp4", "animate2", "--no-audio") == 0
    assert durations(tmp_path / "silent.mp4") == (pytest.approx(9 / 24), None)  # 10 frames at 25 fps -> 9 at 24
    assert animate_cli(src, tmp_path / "kept.mp4", "animate2", "--fps", "-1") == 0
    video_s, audio_s = durations(tmp_path / "kept.mp4")
    assert VideoFile(tmp_path / "kept.mp4").fps == 25
    assert video_s == pytest.approx(0.4) and audio_s == pytest.approx(video_s, abs=STATED_LENGTH_S)
    assert beep_onsets(tmp_path / "kept.mp4") == pytest.approx(beep_onsets(src), abs=ONSET_TOLERANCE_S)


# ------------------------------------------------------------------------------------------------ the nodes' VIDEO


@pytest.fixture(scope="module")
def convert():
    return load_by_path("nodes/convert.py", "wan_nodes_convert")


@pytest.mark.parametrize("frames, sound_s", [(45, 2.0), (60, 1.0)], ids=["sound-longer", "sound-shorter"])
def test_node_video_carries_the_sound_fitted_to_its_frames(convert, comfyui_source, monkeypatch, tmp_path,
                                                            frames, sound_s):
    """The sampler's VIDEO from core's own pieces: the AUDIO that core's VideoFromFile (Load Video / Get Video
    Components) decodes, fitted by the package, saved by core's VideoFromComponents.save_to (what Save Video runs)."""
    monkeypatch.syspath_prepend(str(comfyui_source))
    input_impl = pytest.importorskip("comfy_api.input_impl")
    src = write_clip(tmp_path / "src.mp4", fps=25, frames=50, beep_at=(0.5,), audio_seconds=sound_s)
    audio = input_impl.VideoFromFile(str(src)).get_components().audio
    video = convert.image_to_video(torch.rand(frames, 16, 16, 3), 30, audio)
    assert video.get_components().audio["waveform"].shape == (1, 2, span_samples(frames, 30, 44100))
    video.save_to(str(tmp_path / "out.mp4"))
    video_s, audio_s = durations(tmp_path / "out.mp4")
    assert video_s == pytest.approx(frames / 30) and audio_s == pytest.approx(video_s, abs=STATED_LENGTH_S)
    assert beep_onsets(tmp_path / "out.mp4") == pytest.approx(beep_onsets(src), abs=ONSET_TOLERANCE_S)


def test_node_audio_is_checked_and_mixed_for_core(convert):
    six = {"waveform": torch.ones(1, 6, 100), "sample_rate": 100}
    fitted = convert.audio_for_frames(six, frames=3, fps=2)
    assert fitted["waveform"].shape == (1, 1, 150) and fitted["waveform"][0, 0, 100:].abs().max() == 0
    for bad, words in [({"waveform": np.zeros((1, 2, 5)), "sample_rate": 100}, "must be an AUDIO"),
                       ("sound.wav", "must be an AUDIO"),
                       ({"waveform": torch.zeros(1, 2, 5), "sample_rate": 0}, "sample_rate 0")]:
        with pytest.raises(ValueError, match=words):
            convert.audio_for_frames(bad, frames=3, fps=2)
