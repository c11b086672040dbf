"""The preprocessing pipeline and CLI end to end: real PyAV videos, real onnxruntime sessions on planted ONNX models
with the real I/O signatures, a real insightface FaceAnalysis on a tiny SCRFD-shaped model. Nothing is mocked."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.preprocess_helpers import appearing_person_detector_rows, model_dir, tiny_scrfd, write_test_video
from wan_animate.preprocess.errors import ImageReadError, InputSizeError, MaskInputError, NoPersonError, VideoReadError
from wan_animate.preprocess.estimator import PoseEstimator
from wan_animate.preprocess.pipeline import PreprocessOptions, Preprocessor, preprocess
from wan_animate.preprocess.video_io import (
    VideoFile, read_image, read_video, resample_indices, resample_stream, write_image, write_video,
)

REPO = Path(__file__).resolve().parent.parent
PERSON_ROWS = [[200, 100, 440, 600, 0.9, 0]]
SMALL_AREA = 256 * 144


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return model_dir(tmp_path_factory.mktemp("models"), PERSON_ROWS)


@pytest.fixture(scope="module")
def estimator(models) -> PoseEstimator:
    return PoseEstimator(None, None, providers="cpu", search_dirs=[models], allow_download=False, batch_size=4)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_test_video(tmp_path_factory.mktemp("video") / "drive.mp4", [120] * 12, fps=24)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "ref.png"
    write_image(path, np.full((150, 101, 3), 90, np.uint8))  # odd width on purpose
    return path


# ------------------------------------------------------------------------------------------------ video I/O


def test_video_round_trip_and_official_resampling(tmp_path):
    frames = np.stack([np.full((64, 96, 3), 8 * i, np.uint8) for i in range(24)])
    path = tmp_path / "v.mp4"
    assert write_video(path, frames, fps=24) == 24
    video = VideoFile(path)
    assert (video.width, video.height, video.fps) == (96, 64, 24.0)
    same, fps = read_video(path, target_fps=None)
    assert same.shape == (24, 64, 96, 3) and fps == 24.0
    assert np.abs(same.astype(int) - frames).max() <= 3  # H.264 at crf 18
    # Official get_frame_indices: int(N / fps * target) frames at round(i / target * fps).
    idx = resample_indices(24, 24, 30)
    assert len(idx) == 30 and idx[:6].tolist() == [0, 1, 2, 2, 3, 4] and idx[-1] == 23
    streamed = list(resample_stream(iter(range(24)), 24, 30))
    assert streamed == idx.tolist()
    assert resample_indices(100, 60, 30).tolist() == list(range(0, 100, 2))
    assert resample_indices(1, 60, 30).tolist() == [0] and list(resample_stream(iter([7]), 60, 30)) == [7]
    up, fps = read_video(path, target_fps=30)
    assert up.shape[0] == 30 and fps == 30


def test_bad_videos_and_images_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoReadError, match="Cannot read .*junk.mp4"):
        VideoFile(junk)
    with pytest.raises(VideoReadError, match="not found"):
        VideoFile(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    write_video(empty, [], fps=30)  # opens nothing: no file
    assert not empty.exists()
    import av

    with av.open(str(empty), "w") as c:  # a valid container with a video stream and zero frames
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    with pytest.raises(VideoReadError, match="has no video frames"):
        list(VideoFile(empty).frames())
    with pytest.raises(InputSizeError, match="even"):
        write_video(tmp_path / "odd.mp4", [np.zeros((65, 64, 3), np.uint8)], fps=30)
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(bad_png)
    rgba = tmp_path / "rgba.png"
    from PIL import Image

    Image.fromarray(np.full((7, 5, 4), 200, np.uint8)).save(rgba)
    assert read_image(rgba).shape == (7, 5, 3)


# ------------------------------------------------------------------------------------------------- pipeline


def test_animate_official_shapes_and_letterboxed_skeleton(estimator, video, reference):
    result = preprocess(estimator, video, reference, resolution_area=SMALL_AREA)
    # 12 frames at 24 fps -> int(12 / 24 * 30) = 15 frames at 30 fps; the working size follows the reference.
    assert result.fps == 30 and result.frame_count == 15
    assert result.reference.shape == (224, 144, 3) and result.pose.shape == (15, 224, 144, 3)
    assert result.face.shape == (15, 512, 512, 3) and result.face.dtype == np.uint8
    assert result.background is None and result.mask is None and result.missing_frames == []
    # The 192x128 frame's skeleton is letterboxed into 144x224 (scaled to 144x96): nothing is drawn in the bars.
    bar = (224 - 96) // 2
    assert result.pose[:, :bar - 1].max() == 0 and result.pose[:, -bar + 1:].max() == 0
    assert result.pose[:, bar:-bar].max() > 0
    assert result.reference_original.shape == (150, 101, 3)


def test_replace_mode_masks_background_and_retarget(estimator, video, reference, tmp_path):
    result = preprocess(estimator, str(video), reference, mode="replace", resolution_area=SMALL_AREA)
    n, h, w = result.mask.shape
    assert (h, w) == (144, 224) and result.background.shape == (n, h, w, 3) and result.reference.shape == (h, w, 3)
    m = result.mask[0].astype(bool)
    assert 0.05 < m.mean() < 0.9
    inside = np.s_[:, 4:220]  # 192x128 frames letterboxed into 224x144: 4-pixel black bars left and right
    assert result.background[0][m].max() == 0 and result.background[0][inside][~m[inside]].min() > 0
    ys, xs = np.nonzero(m)  # the default mask is one filled rectangle (blockified bbox)
    assert m[ys.min():ys.max(), xs.min():xs.max()].all()
    # An external segmenter's mask (one per source frame, original size) replaces the pose-based one.
    ext = np.zeros((12, 128, 192), np.uint8)
    ext[:, 40:80, 60:100] = 255
    own = preprocess(estimator, video, reference, mode="replace", resolution_area=SMALL_AREA, mask=ext,
                     mask_iterations=0)
    assert own.mask.shape == result.mask.shape and 0.02 < own.mask.mean() < 0.15
    with pytest.raises(MaskInputError, match="7 frames"):
        preprocess(estimator, video, reference, mode="replace", resolution_area=SMALL_AREA, mask=ext[:7])
    with pytest.raises(MaskInputError, match="aspect"):
        preprocess(estimator, video, reference, mode="replace", resolution_area=SMALL_AREA,
                   mask=np.zeros((12, 100, 100), np.uint8))
    with pytest.raises(ValueError, match="animate mode only"):
        preprocess(estimator, video, reference, mode="replace", retarget=True)
    retargeted = preprocess(estimator, video, reference, resolution_area=SMALL_AREA, retarget=True, smoothing=0.5)
    assert retargeted.pose.shape == (15, 224, 144, 3) and retargeted.pose.max() > 0


def test_missing_people_are_filled_and_counted_and_no_person_is_an_error(tmp_path):
    rows, drift = appearing_person_detector_rows()
    est = PoseEstimator(None, None, providers="cpu", allow_download=False,
                        search_dirs=[model_dir(tmp_path / "m", rows, drift=drift)])
    # Bright frames have the person, dark ones not: dark at the start (held), middle (interpolated) and end (held).
    reference = np.full((150, 101, 3), 230, np.uint8)  # bright: this detector sees a person in it
    pattern = [10, 230, 230, 10, 10, 230, 230, 10]
    video = write_test_video(tmp_path / "gaps.mp4", pattern, fps=30)
    result = preprocess(est, video, reference, resolution_area=SMALL_AREA)
    assert result.missing_frames == [0, 3, 4, 7]
    assert (result.interpolated_frames, result.held_frames) == (2, 2)
    assert all(result.pose[i].max() > 0 for i in range(8))  # every frame still has a skeleton
    dark = write_test_video(tmp_path / "dark.mp4", [10] * 5, fps=30)
    with pytest.raises(NoPersonError, match="No person found in any of the 5 frames"):
        preprocess(est, dark, reference, resolution_area=SMALL_AREA)
    nobody = np.full((64, 64, 3), 10, np.uint8)
    with pytest.raises(NoPersonError, match="No person found in the reference image.*turn retargeting off"):
        preprocess(est, video, nobody, resolution_area=SMALL_AREA, retarget=True)
    with pytest.raises(NoPersonError, match="check_reference=False"):
        preprocess(est, video, nobody, resolution_area=SMALL_AREA)
    assert preprocess(est, video, nobody, resolution_area=SMALL_AREA, check_reference=False).frame_count == 8


def test_real_photograph_through_the_real_paths(estimator, tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.astronaut()  # 512x512 RGB
    frames = np.stack([photo, photo[:, ::-1].copy(), photo])
    result = preprocess(estimator, frames, photo, fps=30, mode="replace", resolution_area=SMALL_AREA, smoothing=0.3)
    assert result.frame_count == 3 and result.pose.shape == (3, 192, 192, 3)
    assert result.face.shape == (3, 512, 512, 3) and result.face.std() > 10  # real picture content in the crops
    assert result.background.shape == (3, 192, 192, 3)


def test_bounded_chunks_and_progress(estimator, video, reference):
    seen = []
    pre = Preprocessor(estimator, PreprocessOptions(resolution_area=SMALL_AREA, chunk_size=4),
                       progress=lambda done, total: seen.append((done, total)))
    prepared = pre.prepare(video, reference)
    sizes = [len(c.pose) for c in pre.chunks(prepared)]
    assert sizes == [4, 4, 4, 3]
    assert seen[-1] == (30, 30)


def test_face_detector_places_crops_where_landmarks_are_weak(tmp_path):
    pytest.importorskip("insightface")
    from wan_animate.preprocess.face_detector import FaceDetectorError, InsightFaceDetector

    pack = tmp_path / "insightface" / "models" / "tiny_pack"
    tiny_scrfd(pack / "det_10g.onnx")
    detector = InsightFaceDetector(tmp_path / "insightface")
    frame = np.full((256, 384, 3), 10, np.uint8)
    frame[64:128, 192:256] = 250  # a bright "face"
    faces = detector.detect(frame)
    assert len(faces) >= 1 and faces[0, 4] > 0.9
    centre = (faces[:, :2] + faces[:, 2:4]).mean(axis=0) / 2
    assert np.allclose(centre, [224, 96], atol=40)
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(FaceDetectorError, match="No insightface model"):
        InsightFaceDetector(tmp_path / "nothing_here")
    # Weak face landmarks (0.1): without the detector the crop falls back; with it the crop is on the bright face.
    est = PoseEstimator(None, None, providers="cpu", allow_download=False,
                        search_dirs=[model_dir(tmp_path / "m", [[0, 0, 640, 640, 0.9, 0]], face_confidence=0.1)])
    frames = np.stack([frame] * 3)
    options = PreprocessOptions(mode="replace", resolution_area=384 * 256)
    prepared = Preprocessor(est, options, face_detector=detector).prepare(frames, frame, fps=30)
    assert prepared.weak_face_frames == 3
    for x1, y1, x2, y2 in prepared.face_boxes:  # the crop is on the detected face around (224, 96)
        assert abs((x1 + x2) / 2 - 224) <= 40 and abs((y1 + y2) / 2 - 96) <= 40
    without = Preprocessor(est, options).prepare(frames, frame, fps=30)
    assert without.weak_face_frames == 3 and without.face_boxes != prepared.face_boxes


# ------------------------------------------------------------------------------------------------------ CLI


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wan_animate", "preprocess", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_cli_writes_the_official_file_set(models, video, reference, tmp_path):
    out = tmp_path / "out"
    done = _cli("--video", video, "--ref", reference, "--models", models, "--out", out, "--mode", "replace",
                "--device", "cpu", "--no-download", "--resolution-area", 256, 144)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["src_pose.mp4", "src_face.mp4", "src_ref.png", "src_bg.mp4", "src_mask.mp4"])
    assert (out / "src_ref.png").read_bytes() == reference.read_bytes()
    for name, size in (("src_pose.mp4", (224, 144)), ("src_face.mp4", (512, 512)), ("src_bg.mp4", (224, 144)),
                       ("src_mask.mp4", (224, 144))):
        frames, fps = read_video(out / name, target_fps=None)
        assert frames.shape[0] == 15 and (frames.shape[2], frames.shape[1]) == size and fps == 30, name
    mask, _ = read_video(out / "src_mask.mp4", target_fps=None)
    assert set(np.unique(mask // 128).tolist()) == {0, 1}
    animate_out = tmp_path / "animate"
    done = _cli("--video", video, "--ref", reference, "--models", models, "--out", animate_out, "--device", "cpu",
                "--no-download", "--resolution-area", 256, 144)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in animate_out.iterdir()) == ["src_face.mp4", "src_pose.mp4", "src_ref.png"]


def test_cli_bad_inputs_leave_the_output_untouched(models, video, reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    wrong = model_dir(tmp_path / "swapped", PERSON_ROWS)
    import av

    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as c:  # a video container without a single frame
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    thin = tmp_path / "thin.png"
    write_image(thin, np.full((600, 2, 3), 100, np.uint8))  # no valid working size at this aspect
    cases = [
        (("--video", junk, "--ref", reference, "--models", models), "Cannot read"),
        (("--video", empty, "--ref", reference, "--models", models), "has no video frames"),
        (("--video", video, "--ref", tmp_path / "nope.png", "--models", models), "Image not found"),
        (("--video", video, "--ref", reference, "--detector", wrong / "pose2d" / "vitpose_h_wholebody.onnx",
          "--models", models), "detector"),
        (("--video", video, "--ref", thin, "--models", models), "less extreme aspect"),
    ]
    for args, message in cases:
        done = _cli(*args, "--out", out, "--device", "cpu", "--no-download", "--resolution-area", 256, 144)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr, done.stderr
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_missing_insightface_is_a_clear_error(monkeypatch, tmp_path):
    """insightface is optional; its absence is simulated (it is installed here) by hiding the module."""
    from wan_animate.preprocess.face_detector import FaceDetectorError, InsightFaceDetector

    monkeypatch.setitem(sys.modules, "insightface.app", None)
    with pytest.raises(FaceDetectorError, match="pip install insightface"):
        InsightFaceDetector(tmp_path)
