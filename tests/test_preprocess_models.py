"""Detection and pose models: real onnxruntime sessions on ONNX graphs built here with the real I/O shapes.

Nothing is mocked except, in one test, the presence of a GPU (there is none here).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wan_animate.preprocess import onnx_session
from wan_animate.preprocess import synthetic_models as sm
from wan_animate.preprocess.detector import decode_detections
from wan_animate.preprocess.estimator import PoseEstimator
from wan_animate.preprocess.heatmap_decode import decode_heatmaps, heatmap_to_image
from wan_animate.preprocess.model_files import ModelFileError, ModelNotFoundError, resolve_model_file
from wan_animate.preprocess.model_identity import WrongModelError
from wan_animate.preprocess.pose_model import crop_region
from tests.hub_helpers import StandInHub

REPO_ROOT = Path(__file__).resolve().parent.parent
FRAME_H, FRAME_W = 720, 1280
# Model-pixel rows (x1, y1, x2, y2, score, class) of the 640x640 detector.
PERSON_A = [100, 100, 300, 600, 0.9, 0]
PERSON_B = [400, 50, 600, 620, 0.7, 0]
NOT_A_PERSON = [10, 10, 60, 60, 0.95, 2]


def gaussian_keypoints(seed: int = 0) -> np.ndarray:
    """133 sub-pixel heatmap positions clear of the border (whose zero padding bends the blurred peak slightly)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(6, 42, 133), rng.uniform(6, 58, 133)], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pose_models")
    kps = gaussian_keypoints()
    drift = np.zeros((2, 6), np.float32)
    drift[:, :4] = 40  # boxes move 40 model pixels per unit of mean brightness: every frame differs
    return {
        "detector": sm.planted_detector(d / "yolov10m.onnx", [PERSON_A, PERSON_B, NOT_A_PERSON]),
        "detector_drift": sm.planted_detector(d / "det_drift.onnx", [PERSON_A, PERSON_B], drift=drift),
        "detector_static": sm.planted_detector(d / "det_static.onnx", [PERSON_A, PERSON_B], drift=drift, static_batch=1),
        "pose": sm.planted_pose_model(d / "vitpose-l-wholebody.onnx", kps),
        "pose_drift": sm.planted_pose_model(d / "pose_drift.onnx", kps, drift=np.full((133, 2), 0.7)),
        "pose_static": sm.planted_pose_model(d / "pose_static.onnx", kps, drift=np.full((133, 2), 0.7), static_batch=1),
        "colour_pose": sm.colour_pose_model(d / "colour_pose.onnx", colour=(0, 0, 255)),
    }


def frames_of_brightness(values) -> np.ndarray:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 20, (len(values), FRAME_H, FRAME_W, 3), dtype=np.uint8)
    return np.stack([np.full((FRAME_H, FRAME_W, 3), v, np.uint8) for v in values]) + noise


def expected_frame_keypoints(box_model_px, keypoints_hm) -> np.ndarray:
    """Where a planted heatmap keypoint lands in the frame, by the official crop/mapping rules."""
    sx, sy = FRAME_W / 640, FRAME_H / 640
    x1, y1, x2, y2 = box_model_px[:4]
    xywh = np.array([x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy], np.float32).astype(np.int32)
    box = np.array([xywh[0], xywh[1], xywh[0] + xywh[2], xywh[1] + xywh[3]], np.float64)
    center, size = crop_region(box)
    return heatmap_to_image(keypoints_hm[None], center[None], size[None], (64, 48))[0]


# ------------------------------------------------------------------------------------------------- decoding


def test_dark_decoding_recovers_planted_subpixel_peaks():
    kps = gaussian_keypoints(3)
    gx, gy = np.arange(48)[None, :], np.arange(64)[:, None]
    maps = np.exp(-((gx - kps[:, 0, None, None]) ** 2 + (gy - kps[:, 1, None, None]) ** 2) / 8.0) * 0.8
    coords, scores = decode_heatmaps(maps[None].astype(np.float32))
    error = np.abs(coords[0] - kps)  # heatmap pixels
    assert error.max() < 0.01  # exact for Gaussians up to float rounding
    assert np.abs(np.round(kps) - kps).max() > 0.3  # the planted points really are sub-pixel
    assert np.allclose(scores, 0.8 * np.exp(-((np.round(kps) - kps) ** 2).sum(1) / 8), atol=1e-5)


def test_dark_edges_and_empty_maps_follow_mmpose():
    maps = np.zeros((1, 3, 64, 48), np.float32)
    maps[0, 0, 0, 30] = 0.6  # peak on the border: integer argmax, no Taylor step
    maps[0, 2] = -0.1  # nothing positive: (-1, -1)
    coords, scores = decode_heatmaps(maps)
    assert coords[0, 0].tolist() == [30, 0] and scores[0, 0] == pytest.approx(0.6)
    assert coords[0, 1].tolist() == [-1, -1] and coords[0, 2].tolist() == [-1, -1]


def test_dark_step_stays_near_the_argmax_on_degenerate_maps():
    """Flat noisy maps make mmpose's Newton step jump anywhere; here it stays within two heatmap pixels."""
    maps = np.random.default_rng(5).uniform(0.30, 0.31, (4, 133, 64, 48)).astype(np.float32)
    coords, _ = decode_heatmaps(maps)
    index = maps.reshape(4, 133, -1).argmax(axis=2)
    argmax = np.stack([index % 48, index // 48], axis=-1)
    assert np.abs(coords - argmax).max() <= 2.0


def test_planted_keypoints_come_back_in_frame_pixels(models):
    estimator = PoseEstimator(models["detector"], models["pose"], providers="cpu")
    frame = estimator.estimate(frames_of_brightness([90]))[0]
    assert len(frame.people) == 2  # the class-2 box is not a person
    kps = gaussian_keypoints()
    for person, planted in zip(frame.people, [PERSON_A, PERSON_B]):
        error = np.abs(person.keypoints - expected_frame_keypoints(planted, kps)).max()
        assert error < 0.5, error
        assert person.keypoints.shape == (133, 2) and person.scores.shape == (133,)
        assert 0.8 < person.scores.min() and person.scores.max() <= 0.9 + 1e-6


# ---------------------------------------------------------------------------------------------- detection


def test_detector_postprocessing_threshold_scaling_nms_class():
    rows = np.zeros((300, 6), np.float32)
    rows[:6] = [
        [100.7, 100.2, 300.9, 600.0, 0.90, 0],  # kept; scaled by (2, 1.125) then truncated
        [105.0, 105.0, 305.0, 605.0, 0.80, 0],  # IoU > 0.5 with the first: suppressed
        [400.0, 50.0, 600.0, 620.0, 0.06, 0],  # weak but above 0.05: kept
        [400.0, 300.0, 600.0, 400.0, 0.04, 0],  # below the threshold
        [320.0, 0.0, 390.0, 90.0, 0.99, 5],  # not a person
        [330.0, 5.0, 395.0, 95.0, 0.50, 0],  # person under a higher-scored non-person box: class-agnostic NMS drops it
    ]
    people = decode_detections(rows, (720, 1280))
    assert [p.score for p in people] == pytest.approx([0.9, 0.06])
    x, y = int(np.float32(100.7) * 2), int(np.float32(100.2) * 1.125)
    w, h = int(np.float32(300.9) * 2 - np.float32(100.7) * 2), int(np.float32(600) * 1.125 - np.float32(100.2) * 1.125)
    assert people[0].box.tolist() == [x, y, x + w, y + h]
    assert people[1].box.tolist() == [800, 56, 1200, 697]


def test_yolov8_layout_is_read_too():
    anchors = np.zeros((84, 10), np.float32)
    anchors[:4, 3] = [320, 320, 100, 200]  # cx, cy, w, h
    anchors[4, 3] = 0.8  # person
    people = decode_detections(anchors, (640, 640))
    assert len(people) == 1 and people[0].box.tolist() == [270, 220, 370, 420]


# ----------------------------------------------------------------------------------------------- batching


def test_batches_equal_frame_by_frame_and_static_batch_models_work(models):
    frames = frames_of_brightness([10, 60, 120, 200, 30, 250, 90])
    reference = PoseEstimator(models["detector_drift"], models["pose_drift"], providers="cpu", batch_size=1)
    batched = PoseEstimator(models["detector_drift"], models["pose_drift"], providers="cpu", batch_size=3)
    static = PoseEstimator(models["detector_static"], models["pose_static"], providers="cpu", batch_size=4)
    assert static.detector.model.static_batch == 1 and static.pose.model.static_batch == 1
    one = [reference.estimate_image(f, full_frame_fallback=False) for f in frames]
    for result in (batched.estimate(frames), static.estimate(iter(list(frames)))):
        assert [f.index for f in result] == list(range(len(frames)))
        for a, b in zip(one, result):
            assert len(a.people) == len(b.people) == 2
            for pa, pb in zip(a.people, b.people):
                np.testing.assert_array_equal(pa.detection.box, pb.detection.box)
                np.testing.assert_allclose(pa.keypoints, pb.keypoints, atol=1e-3)
                np.testing.assert_allclose(pa.scores, pb.scores, atol=1e-6)
    boxes = [tuple(f.people[0].detection.box) for f in one]
    assert len(set(boxes)) == len(frames)  # every frame really gave a different answer


def test_static_batch_two_pads_the_last_chunk(tmp_path, models):
    det = sm.planted_detector(tmp_path / "det2.onnx", [PERSON_A], drift=[[40, 40, 40, 40, 0, 0]], static_batch=2)
    estimator = PoseEstimator(det, models["pose_drift"], providers="cpu", batch_size=8)
    frames = frames_of_brightness([10, 100, 200])
    result = estimator.estimate(frames)
    single = [estimator.estimate_image(f) for f in frames]
    assert [tuple(r.people[0].detection.box) for r in result] == [tuple(s.people[0].detection.box) for s in single]


def test_max_people_keeps_the_largest_in_detector_order(models):
    estimator = PoseEstimator(models["detector"], models["pose"], providers="cpu", max_people=1)
    frame = estimator.estimate_image(frames_of_brightness([90])[0])
    assert [p.detection.score for p in frame.people] == pytest.approx([0.7])  # PERSON_B is the larger box


def test_frames_without_people_and_full_frame_fallback(tmp_path, models):
    empty_detector = sm.planted_detector(tmp_path / "none.onnx", [NOT_A_PERSON])
    estimator = PoseEstimator(empty_detector, models["pose"], providers="cpu")
    frames = frames_of_brightness([50, 50])
    assert [len(f.people) for f in estimator.estimate(frames)] == [0, 0]
    ref = estimator.estimate_image(frames[0])
    assert len(ref.people) == 1 and ref.people[0].detection.score == -1.0
    assert ref.people[0].detection.box.tolist() == [0, 0, FRAME_W, FRAME_H]


def test_frame_inputs_are_checked_and_converted(models):
    estimator = PoseEstimator(models["detector"], models["pose"], providers="cpu")
    frame = frames_of_brightness([80])[0]
    as_uint8 = estimator.estimate_image(frame)
    as_float = estimator.estimate_image(frame.astype(np.float32) / 255)
    np.testing.assert_allclose(as_uint8.people[0].keypoints, as_float.people[0].keypoints, atol=1e-3)
    with pytest.raises(ValueError, match=r"frame 1: expected an \[H, W, 3\] RGB image, got shape \(4, 4, 5\)"):
        estimator.estimate([frame, np.zeros((4, 4, 5), np.uint8)])
    small = estimator.estimate([frame, frame[:300, :200]])
    assert [(f.width, f.height) for f in small] == [(FRAME_W, FRAME_H), (200, 300)]
    assert small[1].people[0].detection.box.tolist() == [31, 46, 93, 280]  # PERSON_A scaled to 200x300, truncated
    progress = []
    estimator.batch_size = 2
    estimator.estimate(np.stack([frame] * 5), progress=progress.append)
    assert progress == [2, 4, 5]


# ------------------------------------------------------------------------------------- a real photograph


def test_real_photograph_end_to_end_crop_channels_and_mapping(tmp_path, models):
    """skimage's astronaut with a blue blob on her forehead: a pose model that follows blue must find it."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.astronaut()  # 512x512 RGB
    blob = np.array([231.3, 97.6])
    yy, xx = np.mgrid[:512, :512]
    alpha = np.exp(-((xx - blob[0]) ** 2 + (yy - blob[1]) ** 2) / (2 * 8.0**2))[..., None]
    image = (photo * (1 - alpha) + np.array([0, 0, 255]) * alpha).round().astype(np.uint8)
    head_box = [150 * 640 / 512, 20 * 640 / 512, 300 * 640 / 512, 200 * 640 / 512, 0.9, 0]
    detector = sm.planted_detector(tmp_path / "head.onnx", [head_box])
    found = PoseEstimator(detector, models["colour_pose"], providers="cpu").estimate_image(image)
    assert len(found.people) == 1 and (found.width, found.height) == (512, 512)
    error = np.linalg.norm(found.people[0].keypoints - blob, axis=1).max()
    assert error < 1.0, error  # frame pixels; one heatmap pixel is ~3.9 frame pixels here
    swapped = PoseEstimator(detector, models["colour_pose"], providers="cpu", channel_order="bgr").estimate_image(image)
    assert np.linalg.norm(swapped.people[0].keypoints - blob, axis=1).min() > 20  # blue reads as red: not found


# ------------------------------------------------------------------------------ model files and wrong models


def test_external_data_model_loads_and_missing_data_is_named(tmp_path):
    path = sm.planted_pose_model(
        tmp_path / "vitpose_h_wholebody_model.onnx", gaussian_keypoints(), external_data="vitpose_h_wholebody_data.bin"
    )
    data = tmp_path / "vitpose_h_wholebody_data.bin"
    assert data.stat().st_size > 0 and path.stat().st_size < 10_000
    det = sm.planted_detector(tmp_path / "yolov10m.onnx", [PERSON_A])
    found = PoseEstimator(None, None, providers="cpu", search_dirs=[tmp_path], allow_download=False)
    assert found.pose.model.path == path and found.detector.model.path == det
    frame = found.estimate(frames_of_brightness([70]))[0]
    assert np.abs(frame.people[0].keypoints - expected_frame_keypoints(PERSON_A, gaussian_keypoints())).max() < 0.5
    data.rename(tmp_path / "elsewhere.bin")
    with pytest.raises(ModelFileError, match="vitpose_h_wholebody_data.bin.*same folder"):
        PoseEstimator(det, path, providers="cpu")


@pytest.mark.parametrize(
    "detector_key, pose_key, message",
    [
        ("pose", "pose", r"vitpose-l-wholebody\.onnx: this looks like a ViTPose whole-body pose model.*detector slot expects.*swapped"),
        ("detector", "detector", r"yolov10m\.onnx: this looks like a YOLOv10 object detector.*pose slot expects.*swapped"),
    ],
)
def test_model_in_the_wrong_slot_is_named(models, detector_key, pose_key, message):
    with pytest.raises(WrongModelError, match=message):
        PoseEstimator(models[detector_key], models[pose_key], providers="cpu")


def test_tensor_names_do_not_matter(tmp_path):
    det = sm.planted_detector(tmp_path / "d.onnx", [PERSON_A], input_name="input.1", output_name="dets")
    pose = sm.planted_pose_model(tmp_path / "p.onnx", gaussian_keypoints(), input_name="pixel_values", output_name="hm")
    frame = PoseEstimator(det, pose, providers="cpu").estimate_image(frames_of_brightness([40])[0])
    assert np.abs(frame.people[0].keypoints - expected_frame_keypoints(PERSON_A, gaussian_keypoints())).max() < 0.5


def test_body_only_pose_model_is_recognised(tmp_path, models):
    from onnx import TensorProto, helper, numpy_helper

    body = tmp_path / "vitpose-b-coco.onnx"
    weight = numpy_helper.from_array(np.zeros((17, 3, 4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["heatmaps"], strides=[4, 4])],
        "body", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 256, 192])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 17, 64, 48])], [weight],
    )
    body.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(WrongModelError, match="vitpose-b-coco.onnx: this looks like a body-only pose model"):
        PoseEstimator(models["detector"], body, providers="cpu")


def test_model_files_are_found_in_comfyui_and_wan_layouts(tmp_path):
    comfy = tmp_path / "ComfyUI" / "models" / "detection"
    wan = tmp_path / "Wan2.2-Animate-14B"
    (wan / "process_checkpoint" / "det").mkdir(parents=True)
    comfy.mkdir(parents=True)
    (wan / "process_checkpoint" / "det" / "yolov10m.onnx").write_bytes(b"x")
    (comfy / "vitpose-l-wholebody.onnx").write_bytes(b"x")
    (comfy / "vitpose_h_wholebody_model.onnx").write_bytes(b"x")
    dirs = [comfy, wan]
    assert resolve_model_file("detector", None, dirs) == wan / "process_checkpoint" / "det" / "yolov10m.onnx"
    assert resolve_model_file("pose", None, dirs) == comfy / "vitpose_h_wholebody_model.onnx"  # H before L
    assert resolve_model_file("pose", "vitpose-l-wholebody.onnx", dirs) == comfy / "vitpose-l-wholebody.onnx"
    assert resolve_model_file("pose", comfy / "vitpose-l-wholebody.onnx") == comfy / "vitpose-l-wholebody.onnx"
    with pytest.raises(ModelNotFoundError, match=r"vitpose_h_wholebody\.onnx was not found in .*download https://huggingface\.co/Wan-AI"):
        resolve_model_file("pose", "vitpose_h_wholebody.onnx", dirs, allow_download=False)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_file("detector", tmp_path / "nowhere" / "yolov10m.onnx")


def test_lfs_pointers_and_damaged_files_are_explained(tmp_path, models):
    pointer = tmp_path / "yolov10m.onnx"
    pointer.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 61000000\n")
    with pytest.raises(ModelFileError, match="Git LFS pointer"):
        PoseEstimator(pointer, models["pose"], providers="cpu")
    damaged = tmp_path / "vitpose-l-wholebody.onnx"
    damaged.write_bytes(models["pose"].read_bytes()[:-40])
    with pytest.raises(ModelFileError, match="vitpose-l-wholebody.onnx.*(not a readable ONNX model|could not load)"):
        PoseEstimator(models["detector"], damaged, providers="cpu")


HUB_SCRIPT = """
import sys
from wan_animate.preprocess.model_files import ModelNotFoundError, resolve_model_file
print(resolve_model_file("detector", None, []))
try:
    resolve_model_file("pose", "vitpose-l-wholebody.onnx", [])
except ModelNotFoundError as error:
    print("ERROR", error)
"""


def test_hub_cache_under_hf_home_is_used_offline(tmp_path):
    """A file already in the Hugging Face cache (HF_HOME) is found with HF_HUB_OFFLINE=1; a missing one explains."""
    repo = tmp_path / "hf" / "hub" / "models--Wan-AI--Wan2.2-Animate-14B"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit / "process_checkpoint" / "det"
    snapshot.mkdir(parents=True)
    (snapshot / "yolov10m.onnx").write_bytes(b"onnx")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", HUB_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == str(snapshot / "yolov10m.onnx")
    assert "ERROR pose model vitpose-l-wholebody.onnx was not found" in lines[1] and "HF_HUB_OFFLINE is set" in lines[1]
    assert "https://huggingface.co/JunkyByte/easy_ViTPose" in lines[1]


class CudaLookingSession:
    """A real CPU session that reports the CUDA provider (there is no GPU here) and records the batch sizes run."""

    def __init__(self, session):
        self.session, self.batches = session, []

    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def run(self, names, feeds):
        self.batches.append(len(next(iter(feeds.values()))))
        return self.session.run(names, feeds)

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_cuda_batches_are_padded_to_few_shapes_and_trimmed(models):
    from wan_animate.preprocess.onnx_session import OnnxModel, create_session

    plain = OnnxModel(create_session(models["pose_drift"], "cpu"))
    recorded = CudaLookingSession(plain.session)
    bucketed = OnnxModel(recorded)
    batch = np.random.default_rng(0).normal(size=(21, 3, 256, 192)).astype(np.float32)
    out = bucketed.run(batch, max_batch=16)
    assert recorded.batches == [16, 8]  # 16 + 5 padded to 8: at most a handful of shapes for cuDNN
    np.testing.assert_allclose(out, plain.run(batch, max_batch=16), atol=1e-6)
    recorded.batches.clear()
    bucketed.run(batch[:11], max_batch=16)
    assert recorded.batches == [16]


DOWNLOAD_SCRIPT = """
import sys
import numpy as np
from wan_animate.preprocess.estimator import PoseEstimator
from wan_animate.preprocess.model_files import resolve_model_file
local = sys.argv[1]
print(resolve_model_file("detector"))
first = PoseEstimator(None, "vitpose_h_wholebody_model.onnx", providers="cpu", search_dirs=[local], download_dir=local)
print(first.detector.model.path)
print(first.pose.model.path)
again = PoseEstimator(None, "vitpose_h_wholebody_model.onnx", providers="cpu", search_dirs=[local], allow_download=False)
print(again.pose.model.path)
print(len(again.estimate_image(np.full((360, 640, 3), 90, np.uint8)).people))
"""


def test_models_download_from_a_stand_in_hub(tmp_path):
    """The real huggingface_hub download path against a local Hub: into the cache under HF_HOME, and into a download
    folder in the repositories' layout (found by the search next time), the ViTPose-H pair with its _data.bin."""
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    sm.planted_detector(graphs / "yolov10m.onnx", [PERSON_A])
    sm.planted_pose_model(graphs / "vitpose_h_wholebody_model.onnx", gaussian_keypoints(), external_data="vitpose_h_wholebody_data.bin")
    hub = StandInHub({
        "Wan-AI/Wan2.2-Animate-14B": {"process_checkpoint/det/yolov10m.onnx": (graphs / "yolov10m.onnx").read_bytes()},
        "Kijai/vitpose_comfy": {
            f"onnx/{name}": (graphs / name).read_bytes()
            for name in ("vitpose_h_wholebody_model.onnx", "vitpose_h_wholebody_data.bin")
        },
    })
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO_ROOT), HF_HUB_DISABLE_TELEMETRY="1")
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_HUB_CACHE", None)
    local = tmp_path / "models" / "detection"
    try:
        run = subprocess.run([sys.executable, "-c", DOWNLOAD_SCRIPT, str(local)], env=env, capture_output=True, text=True, timeout=120)
    finally:
        hub.close()
    assert run.returncode == 0, run.stderr
    cached, detector, pose, pose_again, people = run.stdout.splitlines()[-5:]
    assert cached.startswith(str(tmp_path / "hf" / "hub" / "models--Wan-AI--Wan2.2-Animate-14B" / "snapshots"))
    assert detector == str(local / "process_checkpoint" / "det" / "yolov10m.onnx")
    assert pose == pose_again == str(local / "onnx" / "vitpose_h_wholebody_model.onnx")
    assert (local / "onnx" / "vitpose_h_wholebody_data.bin").is_file() and people == "1"


def test_cuda_failing_at_run_time_switches_to_cpu(monkeypatch, caplog, models):
    """There is no GPU here: a session that claims CUDA and fails like a GPU without kernels for its architecture."""
    from wan_animate.preprocess.onnx_session import OnnxModel, create_session

    class BrokenCudaSession(CudaLookingSession):
        def run(self, names, feeds):
            raise RuntimeError("CUDA error cudaErrorNoKernelImageForDevice: no kernel image is available")

    monkeypatch.setattr(onnx_session, "_warned", set())
    model = OnnxModel(BrokenCudaSession(create_session(models["pose"], "cpu")), models["pose"])
    batch = np.zeros((2, 3, 256, 192), np.float32)
    with caplog.at_level(logging.WARNING, logger="wan_animate.preprocess"):
        out = model.run(batch, max_batch=8)
    assert out.shape == (2, 133, 64, 48) and model.session.get_providers() == ["CPUExecutionProvider"]
    assert "no kernel image" in caplog.text and "vitpose-l-wholebody.onnx" in caplog.text


# ---------------------------------------------------------------------------------------------- providers


def test_cpu_fallback_is_warned_once_with_the_reason(monkeypatch, caplog, models):
    monkeypatch.setattr(onnx_session, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="wan_animate.preprocess"):
        PoseEstimator(models["detector"], models["pose"])
        PoseEstimator(models["detector"], models["pose"], providers="cuda")
        PoseEstimator(models["detector"], models["pose"], providers="cpu")
    warnings = [r.getMessage() for r in caplog.records if "run on the CPU" in r.getMessage()]
    assert len(warnings) == 1
    assert "no CUDA device" in warnings[0] or "onnxruntime-gpu is not installed" in warnings[0]


def test_missing_gpu_build_is_named_when_a_gpu_exists(monkeypatch):
    """There is no GPU here: pretend one exists to check the onnxruntime-gpu message."""
    monkeypatch.setattr(onnx_session, "_cuda_device_count", lambda: 1)
    monkeypatch.setattr(onnx_session.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    reason = onnx_session.cuda_unavailable_reason()
    assert "onnxruntime-gpu is not installed" in reason and "pip uninstall -y onnxruntime" in reason


# -------------------------------------------------------------------------------------------- benchmark


def test_benchmark_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "benchmarks.preprocess", "--device", "cpu", "--size", "tiny",
           "--frames", "4", "--batch-size", "2", "--out", str(out), "--model-dir", str(tmp_path / "models")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr

    result = json.loads(out.read_text())
    assert result["config"]["frames"] == 4 and result["config"]["size"] == "tiny"
    assert {r["mode"] for r in result["rows"]} >= {"batched", "per_frame"}
    assert all(r["fps"] > 0 for r in result["rows"])
    assert "fps" in run.stdout
