"""Replace mode's SAM segmenter: prompts from the pose, chunks, re-prompting, model files, and the whole pipeline.

Two kinds of segmentation model:
- a tiny SAM2 with random weights run through the real transformers classes (Sam2VideoModel, Sam2VideoProcessor)
  for the plumbing: sessions, prompts, bounded session state, loading and bad files;
- an exact stand-in (ColourTracker) on synthetic videos whose person has a colour of its own, so the true mask is
  known: it segments exactly when prompted and loses the person where a frame says so, which shows that what
  surrounds the model (key frames, chunks, re-prompts, post-processing) turns exact segmentation into the official
  post-processing of the true mask (IoU 1). The planted pose models run in real onnxruntime.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.preprocess_helpers import model_dir, person
from wan_animate.cli import main
from wan_animate.preprocess import masks as masks_mod
from wan_animate.preprocess.errors import MaskInputError
from wan_animate.preprocess.estimator import PoseEstimator
from wan_animate.preprocess.model_files import ModelFileError, ModelNotFoundError
from wan_animate.preprocess.person_select import fill_gaps
from wan_animate.preprocess.pipeline import preprocess
from wan_animate.preprocess.sam2_checkpoint import Sam2CheckpointError
from wan_animate.preprocess.sam_tracker import SamVideoTracker, SegmenterModelError, load_segmenter
from wan_animate.preprocess.segment_prompts import (
    PROMPT_BODY_POINTS, FramePrompt, chunk_ranges, frame_prompt, key_frames, point_coverage,
)
from wan_animate.preprocess.segmenter import PersonSegmenter, SegmentOptions, TrackedMask
from wan_animate.preprocess.segmenter_files import list_model_folders, resolve_segmenter
from wan_animate.preprocess.skeleton import Skeleton
from wan_animate.preprocess.synthetic_sam import write_sam2_folder, write_sam3_tracker_folder
from wan_animate.preprocess.video_io import read_video, write_image, write_video

PERSON = np.array([0, 200, 0], np.uint8)
LOSE_FLAG = (0, 0)  # a frame whose pixel here is 255 in red makes the stand-in lose the person


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model is fastest on one thread on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> Path:
    return write_sam2_folder(tmp_path_factory.mktemp("sam") / "sam2-tiny", "tiny")


def colour_mask(frame: np.ndarray) -> np.ndarray:
    return (np.abs(frame.astype(np.int16) - PERSON).max(axis=2) < 8)


class ColourTracker:
    """Exact stand-in for SAM: the person is the pixels of colour PERSON. A prompt finds them; tracking carries the
    neighbouring frame's result on (the previous frame in the direction of travel) and loses the person on a flagged
    frame or an empty one, after which only a prompt brings them back (what a lost tracker does)."""

    def __init__(self):
        self.sessions: list[list[tuple[int, bool, bool]]] = []
        self.found: dict[int, bool] = {}

    def start(self, height, width):
        self.sessions.append([])
        self.found = {}

    def segment(self, index, frame, prompt=None, reverse=False):
        self.sessions[-1].append((index, prompt is not None, reverse))
        truth = colour_mask(frame)
        if prompt is not None:
            found = truth.any()
        else:
            found = self.found.get(index + 1 if reverse else index - 1, False) and truth.any() \
                and frame[LOSE_FLAG][0] != 255
        self.found[index] = found
        return TrackedMask(truth if found else np.zeros_like(truth), found)

    def finish(self):
        pass


def person_frames(n: int, present=None, lose=(), h: int = 144, w: int = 256):
    """Frames with a person-coloured ellipse walking right, the true masks, and the person's boxes."""
    frames, truth, boxes = [], [], []
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        frame = np.tile(np.linspace(40, 160, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
        cx = 90 + 2 * i
        shown = present is None or present[i]
        inside = (((xx - cx) / 30.0) ** 2 + ((yy - 72) / 60.0) ** 2 <= 1) if shown else np.zeros((h, w), bool)
        frame[inside] = PERSON
        if i in lose:
            frame[LOSE_FLAG] = (255, 0, 0)
        frames.append(frame)
        truth.append(colour_mask(frame))
        boxes.append([cx - 30, 12, cx + 30, 132])
    return frames, truth, boxes


def track_of(boxes, present, h: int = 144, w: int = 256):
    return fill_gaps([person(b) if p else None for b, p in zip(boxes, present)], w, h)


# --------------------------------------------------------------------------------------------------- prompts


def test_prompts_are_the_official_body_points_of_the_chosen_person_with_its_box():
    found = person([80, 10, 140, 130])
    weak = person([80, 10, 140, 130])
    weak.scores[:] = 0.1
    weak.scores[[5, 6, 11]] = 0.9  # the shoulders and one hip only: the neck (mean of shoulders) too
    track = fill_gaps([found, None, weak], 256, 144)
    prompt = frame_prompt(track, 0)
    body = Skeleton.from_wholebody(track.keypoints[0], track.scores[0], 256, 144).body
    assert np.allclose(prompt.points, body[list(PROMPT_BODY_POINTS)]) and len(prompt.points) == 8
    assert np.allclose(prompt.box, [80, 10, 140, 130])
    assert frame_prompt(track, 0, use_box=False).box is None
    assert frame_prompt(track, 1) is None  # interpolated: the pose was not seen there
    assert len(frame_prompt(track, 2).points) == 4  # neck, both shoulders, left hip
    assert frame_prompt(track, 2, min_points=5) is None


def test_key_frames_follow_the_official_spacing_and_skip_frames_without_the_person():
    assert key_frames([True] * 400) == [0, 100, 200, 300]
    assert key_frames([True] * 3) == [0, 1, 2]
    usable = [False] * 10 + [True] * 390
    usable[100:200] = [False] * 100
    assert key_frames(usable) == [10, 200, 300]
    assert key_frames([False] * 50) == []
    assert [(r.start, r.stop) for r in chunk_ranges(850)] == [(0, 400), (400, 800), (800, 850)]
    mask = np.zeros((20, 20), bool)
    mask[5:10, 5:10] = True
    assert point_coverage(mask, np.array([[7, 7], [11, 11], [18, 2]])) == pytest.approx(2 / 3)


# -------------------------------------------------------------------------------- segmenter with the stand-in


def test_chunks_key_frames_and_backward_then_forward_tracking_give_the_true_masks():
    present = [False] * 3 + [True] * 22
    frames, truth, boxes = person_frames(25, present)
    tracker = ColourTracker()
    segmenter = PersonSegmenter(tracker, SegmentOptions(chunk_frames=10, key_frames=2))
    consumed = []
    out = []
    for pair in segmenter.masks((consumed.append(i) or f for i, f in enumerate(frames)), track_of(boxes, present)):
        assert len(consumed) - len(out) <= 10  # one chunk buffered at most
        out.append(pair)
    assert len(out) == 25 and all(f is g for (f, _), g in zip(out, frames))
    assert all((m.astype(bool) == t).all() for (_, m), t in zip(out, truth))
    # Chunks of 10: key frames are the first frames with the person in each half; chunk 0 tracks back from 3 to 0.
    assert segmenter.report.chunks == 3 and segmenter.report.key_frames == [3, 5, 10, 15, 20, 22]
    first = tracker.sessions[0]
    assert first[:2] == [(3, True, False), (5, True, False)]
    assert [i for i, _, r in first if r] == [2, 1, 0] and [i for i, _, r in first[5:]] == [4, 6, 7, 8, 9]
    assert segmenter.report.reprompts == []


def test_lost_tracking_and_a_returning_person_are_prompted_again():
    present = [True] * 8 + [False] * 4 + [True] * 8
    frames, truth, boxes = person_frames(20, present, lose={5})
    tracker = ColourTracker()
    segmenter = PersonSegmenter(tracker, SegmentOptions(chunk_frames=20, key_frames=1, reprompt_gap=0))
    out = [m for _, m in segmenter.masks(frames, track_of(boxes, present))]
    assert all((m.astype(bool) == t).all() for m, t in zip(out, truth))
    assert segmenter.report.reprompts == [5, 12]  # lost at 5; left at 8, back at 12
    # With a gap between re-prompts, the frames right after a prompt are not re-prompted (and stay lost here).
    gapped = PersonSegmenter(ColourTracker(), SegmentOptions(chunk_frames=20, key_frames=1, reprompt_gap=6))
    out = [m for _, m in gapped.masks(frames, track_of(boxes, present))]
    assert gapped.report.reprompts == [6, 12] and not out[5].any() and (out[6].astype(bool) == truth[6]).all()


def test_segmenter_input_errors():
    frames, _, boxes = person_frames(4)
    with pytest.raises(ValueError, match="got 3 frames but the person track has 4"):
        list(PersonSegmenter(ColourTracker()).masks(frames[:3], track_of(boxes, [True] * 4)))
    with pytest.raises(ValueError, match="more frames than the person track's 3"):
        list(PersonSegmenter(ColourTracker()).masks(frames, track_of(boxes[:3], [True] * 3)))
    with pytest.raises(ValueError, match="for 256x144 frames"):
        list(PersonSegmenter(ColourTracker()).masks([f[:100] for f in frames], track_of(boxes, [True] * 4)))
    with pytest.raises(ValueError, match="chunk_frames"):
        PersonSegmenter(ColourTracker(), SegmentOptions(chunk_frames=0))


# ------------------------------------------------------------------------------------ the whole preprocessing


@pytest.fixture(scope="module")
def planted_models(tmp_path_factory) -> Path:
    # 640-px detector row -> 256x144 frames: the person box spans x 80..176, the whole height.
    return model_dir(tmp_path_factory.mktemp("models"), [[200, 100, 440, 600, 0.9, 0]])


@pytest.fixture(scope="module")
def planted_estimator(planted_models) -> PoseEstimator:
    return PoseEstimator(None, None, providers="cpu", search_dirs=[planted_models], allow_download=False, batch_size=4)


def still_person_frames(n: int, lose=()):
    """The planted detector's person (x 80..176) as an ellipse around its keypoints, at the working size."""
    h, w = 144, 256
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx - 128) / 40.0) ** 2 + ((yy - 72) / 72.0) ** 2 <= 1
    frames = []
    for i in range(n):
        frame = np.tile(np.linspace(40, 160, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
        frame[inside] = PERSON
        if i in lose:
            frame[LOSE_FLAG] = (255, 0, 0)
        frames.append(frame)
    return np.stack(frames), inside


def test_pipeline_masks_are_the_official_post_processing_of_the_true_mask(planted_estimator):
    frames, inside = still_person_frames(12, lose={5})
    segmenter = PersonSegmenter(ColourTracker(), SegmentOptions(chunk_frames=8, reprompt_gap=0))
    result = preprocess(planted_estimator, frames, frames[0], fps=30, target_fps=None, mode="replace",
                        resolution_area=256 * 144, segmenter=segmenter)
    expected = masks_mod.refine(inside)
    for m in result.mask:
        iou = (m.astype(bool) & expected.astype(bool)).sum() / (m.astype(bool) | expected.astype(bool)).sum()
        assert iou == 1.0
    assert (result.background == frames * (1 - expected)[None, :, :, None]).all()
    assert segmenter.report.reprompts == [5] and segmenter.report.chunks == 2
    # Raw masks with dilation off; the pose-box mask differs from the true one (that is what SAM is for).
    frames, _ = still_person_frames(12)
    raw = preprocess(planted_estimator, frames, frames[0], fps=30, target_fps=None, mode="replace",
                     resolution_area=256 * 144, mask_iterations=0, segmenter=PersonSegmenter(ColourTracker()))
    assert (raw.mask.astype(bool) == inside).all()
    boxy = preprocess(planted_estimator, frames, frames[0], fps=30, target_fps=None, mode="replace",
                      resolution_area=256 * 144, mask_iterations=0)
    assert (boxy.mask.astype(bool) != inside).any()
    with pytest.raises(MaskInputError, match="not both"):
        preprocess(planted_estimator, frames, frames[0], fps=30, mode="replace", resolution_area=256 * 144,
                   mask=np.ones((12, 144, 256), np.uint8), segmenter=PersonSegmenter(ColourTracker()))


def test_pipeline_progress_runs_through_segmentation(planted_estimator):
    frames, _ = still_person_frames(10)
    seen = []
    preprocess(planted_estimator, frames, frames[0], fps=30, target_fps=None, mode="replace",
               resolution_area=256 * 144, segmenter=PersonSegmenter(ColourTracker(), SegmentOptions(chunk_frames=4)),
               progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (20, 20) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert {d for d, _ in seen} >= set(range(11, 21))  # one report per segmented frame


# ----------------------------------------------------------------------------------- tiny SAM in transformers


class Recorder:
    """Wraps a real SamVideoTracker and records each call (session, frame, prompted) and the session state after it."""

    def __init__(self, tracker: SamVideoTracker):
        self.tracker = tracker
        self.calls: list[tuple[int, int, bool, dict]] = []
        self.sessions = 0

    def start(self, height, width):
        self.sessions += 1
        self.tracker.start(height, width)

    def segment(self, index, frame, prompt=None, reverse=False):
        result = self.tracker.segment(index, frame, prompt, reverse)
        self.calls.append((self.sessions - 1, index, prompt is not None, self.tracker.state_frames()))
        return result

    def finish(self):
        self.tracker.finish()


def test_tiny_sam2_tracks_through_chunks_with_bounded_session_state(tiny_sam):
    tracker = SamVideoTracker.load(tiny_sam, device="cpu")
    assert tracker.memory_frames == 16 and tracker.size == (128, 128)
    frames, _, boxes = person_frames(40, h=72, w=96)
    recorder = Recorder(tracker)
    segmenter = PersonSegmenter(recorder, SegmentOptions(chunk_frames=30, reprompt_gap=4))
    out = list(segmenter.masks(frames, fill_gaps([person(np.array(b) * 0.375) for b in boxes], 96, 72)))
    assert len(out) == 40 and all(m.shape == (72, 96) and m.dtype == np.uint8 for _, m in out)
    assert segmenter.report.key_frames == [0, 7, 15, 22, 30, 32, 35, 37]
    assert all(state["pixels"] == 0 and state["tracked"] <= 16 + 1 and state["prompted"] <= 4 + 2
               for *_, state in recorder.calls)
    assert max(state["tracked"] for *_, state in recorder.calls) > 10  # the memory window is used, then pruned
    assert recorder.sessions == 2 and len(recorder.calls) == 40 + len(segmenter.report.reprompts)
    # Key frames are prompted once; a re-prompted frame was tracked first, found lost, then prompted.
    for frame in segmenter.report.key_frames + segmenter.report.reprompts:
        session, local = divmod(frame, 30)
        calls = [prompted for s, i, prompted, _ in recorder.calls if (s, i) == (session, local)]
        assert calls == ([True] if frame in segmenter.report.key_frames else [False, True])


def test_tiny_sam2_prompt_with_several_points_then_tracking_works(tiny_sam):
    tracker = SamVideoTracker.load(tiny_sam, device="cpu")
    frames, _, _ = person_frames(4, h=72, w=96)
    tracker.start(72, 96)
    prompt = FramePrompt(np.array([[40.0, 30.0], [50.0, 40.0], [45.0, 50.0]]), np.array([20.0, 10.0, 70.0, 60.0]))
    first = tracker.segment(0, frames[0], prompt)
    assert first.mask.shape == (72, 96) and first.present in (True, False)
    for i in (1, 2):
        assert tracker.segment(i, frames[i]).mask.shape == (72, 96)
    again = tracker.segment(2, frames[2], prompt)  # re-prompting a tracked frame makes it a conditioning frame
    assert (again.mask == first.mask).mean() > 0.5 and tracker.state_frames()["prompted"] == 2
    tracker.finish()
    with pytest.raises(RuntimeError, match="before start"):
        tracker.segment(3, frames[3])


def test_tiny_sam3_tracker_folder_runs_through_the_same_segmenter(tmp_path):
    """A SAM 3 tracker folder (model_type sam3_tracker_video) loads as Sam3TrackerVideoModel with its own processor
    (1008-px family, mean = std = 0.5) and segments through the same code as SAM 2."""
    folder = write_sam3_tracker_folder(tmp_path / "sam3-tiny")
    tracker = SamVideoTracker.load(folder, device="cpu")
    assert type(tracker.model).__name__ == "Sam3TrackerVideoModel" and tracker.size == (112, 112)
    assert torch.allclose(tracker.mean.flatten(), torch.full((3,), 127.5))
    frames, _, boxes = person_frames(6, h=72, w=96)
    segmenter = PersonSegmenter(tracker, SegmentOptions(chunk_frames=4))
    out = list(segmenter.masks(frames, fill_gaps([person(np.array(b) * 0.375) for b in boxes], 96, 72)))
    assert [m.shape for _, m in out] == [(72, 96)] * 6 and segmenter.report.chunks == 2


# ------------------------------------------------------------------------------------------------- model files


def test_model_folders_are_found_by_name_or_hub_id(tiny_sam, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    sam2 = tmp_path / "models" / "sam2"
    (sam2 / "facebook").mkdir(parents=True)
    (sam2 / "facebook" / "sam2.1-hiera-tiny").symlink_to(tiny_sam, target_is_directory=True)
    (sam2 / "mine").symlink_to(tiny_sam, target_is_directory=True)
    (sam2 / "sam2.1_hiera_large.safetensors").write_bytes(b"\0" * 64)
    (sam2 / "sam_vit_b_01ec64.pth").write_bytes(b"\0" * 64)  # SAM 1 (models/sams): not a video model, not listed
    assert list_model_folders([sam2, tmp_path / "nowhere"]) == [
        "facebook/sam2.1-hiera-tiny", "mine", "sam2.1_hiera_large.safetensors"]
    assert resolve_segmenter("facebook/sam2.1-hiera-tiny", [sam2]) == sam2 / "facebook" / "sam2.1-hiera-tiny"
    assert resolve_segmenter("mine", [sam2]) == sam2 / "mine"
    assert resolve_segmenter(tiny_sam / "config.json") == tiny_sam
    kept = tmp_path / "models" / "sam2-packs"  # another pack's original file serves the Hub name: no download
    kept.mkdir()
    (kept / "sam2.1_hiera_large.safetensors").write_bytes(b"\0" * 64)
    assert resolve_segmenter("facebook/sam2.1-hiera-large", [kept], allow_download=False) == \
        kept / "sam2.1_hiera_large.safetensors"
    segmenter = load_segmenter("mine", [sam2], device="cpu")
    assert isinstance(segmenter.tracker, SamVideoTracker) and segmenter.tracker.dtype == torch.float32


def test_wrong_or_missing_model_files_say_what_to_do(tiny_sam, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    single = tmp_path / "sam2.1_hiera_large.safetensors"
    single.write_bytes(b"\0" * 64)
    assert resolve_segmenter(single) == single
    with pytest.raises(Sam2CheckpointError, match="sam2.1_hiera_large.safetensors is not a readable checkpoint"):
        SamVideoTracker.load(single, device="cpu")
    other = tmp_path / "sam2_other.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(Sam2CheckpointError, match="not a SAM 2 checkpoint.*facebook/sam3"):
        SamVideoTracker.load(other, device="cpu")
    sam3 = tmp_path / "sam3.safetensors"
    save_file({"detector.backbone.weight": torch.zeros(2)}, sam3)
    with pytest.raises(Sam2CheckpointError, match="a SAM 3 checkpoint"):
        SamVideoTracker.load(sam3, device="cpu")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(ModelFileError, match="not a SAM checkpoint"):
        resolve_segmenter(notes)
    pointer = tmp_path / "sam2_hiera_large.pt"
    pointer.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(ModelFileError, match="Git LFS pointer"):
        resolve_segmenter(pointer)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError, match="without config.json"):
        resolve_segmenter(empty)
    with pytest.raises(ModelNotFoundError, match="neither a model folder or file nor in"):
        resolve_segmenter("no-such-model", [tmp_path])
    with pytest.raises(ModelNotFoundError, match="facebook/sam2.1-hiera-large is not in .* downloads are off"):
        resolve_segmenter("facebook/sam2.1-hiera-large", [empty], allow_download=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="could not be downloaded"):
        resolve_segmenter("facebook/sam3", [tmp_path])
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(SegmenterModelError, match="'bert' model, not a SAM2 or SAM3"):
        SamVideoTracker.load(bert, device="cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_sam.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(SegmenterModelError, match="could not be loaded as a SAM2 video segmenter.*Re-download"):
        SamVideoTracker.load(broken, device="cpu")


@pytest.mark.slow
def test_original_sam2_checkpoints_give_the_official_model_output(tmp_path):
    """An original-layout SAM 2.1 file (what the official preprocessing and other ComfyUI packs keep) is converted
    to transformers' model: a prompted frame gives the official SAM2 code's mask logits (random Hiera-T weights);
    the .pt form gives the same weights."""
    # The reference needs the official code: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0 (its sdist
    # would otherwise fetch a second torch to build in isolation); not in requirements-test.txt for that reason.
    sam2 = pytest.importorskip("sam2.build_sam", reason="the official SAM 2 code (pip install sam2) is the reference")
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    torch.manual_seed(0)
    official = sam2.build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu", mode="eval")
    weights = {k: v.contiguous() for k, v in official.state_dict().items()}
    save_file(weights, tmp_path / "sam2.1_hiera_tiny.safetensors")
    torch.save({"model": weights}, tmp_path / "sam2.1_hiera_tiny.pt")
    image = (np.random.default_rng(0).random((1024, 1024, 3)) * 255).astype(np.uint8)  # the model's size: no resize
    image[300:800, 400:600] = (200, 50, 50)
    prompt = FramePrompt(np.array([[500.0, 400.0], [480.0, 600.0], [520.0, 700.0]]), np.array([400.0, 300.0, 600.0, 800.0]))
    predictor = SAM2ImagePredictor(official)
    predictor.set_image(image)
    masks, _, low_res = predictor.predict(point_coords=prompt.points, point_labels=np.ones(3), box=prompt.box,
                                          multimask_output=False, return_logits=True)
    tracker = SamVideoTracker.load(tmp_path / "sam2.1_hiera_tiny.safetensors", device="cpu")
    tracker.start(1024, 1024)
    result = tracker.segment(0, image, prompt)
    logits = tracker.session.output_dict_per_obj[0]["cond_frame_outputs"][0]["pred_masks"]
    assert torch.allclose(logits.float().flatten(), torch.as_tensor(low_res).float().flatten(), atol=1e-4)
    assert (result.mask == (masks[0] > 0)).all()
    from_pt = SamVideoTracker.load(tmp_path / "sam2.1_hiera_tiny.pt", device="cpu").model.state_dict()
    assert all(torch.equal(v, from_pt[k]) for k, v in tracker.model.state_dict().items())


# ---------------------------------------------------------------------------------------------------------- CLI


def test_cli_segments_with_a_sam_model_folder(tiny_sam, planted_models, tmp_path, capsys):
    """The command line in-process (main(argv), the same parser and code as `python -m wan_animate preprocess`)."""
    frames, _ = still_person_frames(6)
    video = tmp_path / "drive.mp4"
    write_video(video, list(frames), fps=30)
    reference = tmp_path / "ref.png"
    write_image(reference, frames[0])
    common = ["preprocess", "--video", str(video), "--ref", str(reference), "--models", str(planted_models),
              "--device", "cpu", "--no-download", "--resolution-area", "256", "144"]
    out = tmp_path / "out"
    assert main([*common, "--out", str(out), "--mode", "replace", "--segmenter", str(tiny_sam),
                 "--segment-chunk", "4"]) == 0
    mask, _ = read_video(out / "src_mask.mp4", target_fps=None)
    assert mask.shape[:3] == (6, 144, 256) and "segmented 6 frames in 2 chunk(s)" in capsys.readouterr().err
    bad = tmp_path / "bad"
    assert main([*common, "--out", str(bad), "--mode", "replace", "--segmenter", str(tmp_path / "nothing-here")]) == 2
    assert "nothing-here" in capsys.readouterr().err and not bad.exists()
    assert main([*common, "--out", str(bad), "--segmenter", str(tiny_sam)]) == 2
    assert "replace mode only" in capsys.readouterr().err and not bad.exists()


def test_segment_benchmark_runs_and_reports_memory_windows(tmp_path):
    from benchmarks.segment import main as bench

    out = tmp_path / "segment.json"
    assert bench(["--devices", "cpu", "--size", "tiny", "--cpu-frames", "6", "--width", "96", "--height", "72",
                  "--chunk", "4", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["frames"] == row["masks"] == 6 and row["chunks"] == 2 and row["fps"] > 0
    assert [w["frames"] for w in row["windows"]] == [6]


def test_original_files_named_in_capitals_are_found(tmp_path):
    """Windows keeps names as typed: an original checkpoint saved as SAM2.1_Hiera_Base_Plus.PT is still a SAM 2 file."""
    sam2 = tmp_path / "sam2"
    sam2.mkdir()
    (sam2 / "SAM2.1_Hiera_Base_Plus.PT").write_bytes(b"\0" * 64)
    (sam2 / "notes.txt").write_bytes(b"")
    assert list_model_folders([sam2]) == ["SAM2.1_Hiera_Base_Plus.PT"]
