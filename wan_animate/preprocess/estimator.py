"""Batched person detection + whole-body pose for videos and images: the entry point of the models.

    estimator = PoseEstimator("yolov10m.onnx", "vitpose_h_wholebody.onnx", search_dirs=["ComfyUI/models/detection"])
    poses = estimator.estimate(frames)          # [N, H, W, 3] uint8 RGB, or any iterable of frames
    ref = estimator.estimate_image(reference)   # one image, whole-image fallback when nobody is detected

Frames go through the detector `batch_size` at a time and all people of a batch through the pose model together;
the detector of the next batch runs while the current batch's people are cropped, posed and decoded.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from .detector import NMS_IOU, SCORE_THRESHOLD, PersonDetector
from .model_files import ModelFileError, check_model_file, resolve_model_file
from .model_identity import Signature, Slot, check_slot
from .onnx_session import OnnxModel, Providers, create_session
from .pose_model import ChannelOrder, WholeBodyPoseModel, usable_box
from .types import FramePoses, PersonDetection, PersonPose

FULL_FRAME_SCORE = -1.0  # detection score of the whole-frame box used when nobody was detected (official convention)


def load_model(
    source,
    slot: Slot,
    providers: Providers | str | None = None,
    search_dirs: Sequence[str | os.PathLike] = (),
    allow_download: bool = True,
    download_dir: str | os.PathLike | None = None,
) -> OnnxModel:
    """An OnnxModel for `slot` from a path / file name / None (see resolve_model_file), a session or an OnnxModel.

    Checks that the model is the right kind for the slot (WrongModelError naming the file otherwise).
    """
    if isinstance(source, OnnxModel):
        model = source
    elif isinstance(source, ort.InferenceSession):
        model = OnnxModel(source)
    else:
        path = resolve_model_file(slot, source, search_dirs, allow_download, local_dir=download_dir)
        check_model_file(path)
        try:
            session = create_session(path, providers)
        except Exception as error:
            raise ModelFileError(
                f"{path}: onnxruntime could not load this {slot} model ({error}); re-download it if it is damaged"
            ) from error
        model = OnnxModel(session, path)
    check_slot(Signature.of(model.session), slot, str(model.path) if model.path else f"the {slot} session")
    return model


def as_rgb_frame(frame, index: int) -> np.ndarray:
    """A uint8 [H, W, 3] RGB frame from uint8 or [0, 1] float arrays, grey or RGBA images; clear error otherwise."""
    array = np.asarray(frame)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"frame {index}: expected an [H, W, 3] RGB image, got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"frame {index}: expected uint8 or float in [0, 1], got dtype {array.dtype}")
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


class PoseEstimator:
    """YOLOv10 person detection + ViTPose whole-body pose, batched, returning every person of every frame.

    detector, pose: a path, a file name looked up in `search_dirs` (downloaded from the Hub when it is a known one
    and `allow_download`; into the Hugging Face cache, or under `download_dir` in the repository's layout, which
    the search finds next time), None for the default file, an onnxruntime.InferenceSession or an OnnxModel.
    providers: None/'auto' (CUDA when usable, else CPU with one warning), 'cpu', 'cuda', 'cuda:N' or an
    onnxruntime provider list. batch_size: frames per detector call; pose_batch_size: crops per pose call.
    channel_order: 'rgb' (correct) or 'bgr' to reproduce the official pipeline's channel swap (Wan2.2 #183).
    max_people: pose only the largest N people of each frame (crowds cost N pose crops per frame); None: all.
    """

    def __init__(
        self,
        detector=None,
        pose=None,
        *,
        providers: Providers | str | None = None,
        batch_size: int = 16,
        pose_batch_size: int | None = None,
        search_dirs: Sequence[str | os.PathLike] = (),
        allow_download: bool = True,
        download_dir: str | os.PathLike | None = None,
        score_threshold: float = SCORE_THRESHOLD,
        nms_iou: float = NMS_IOU,
        channel_order: ChannelOrder = "rgb",
        max_people: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_people is not None and max_people < 1:
            raise ValueError(f"max_people must be at least 1 (or None for everyone), got {max_people}")
        self.max_people = max_people
        detector_model = load_model(detector, "detector", providers, search_dirs, allow_download, download_dir)
        pose_model = load_model(pose, "pose", providers, search_dirs, allow_download, download_dir)
        self.batch_size = batch_size
        self.detector = PersonDetector(detector_model, score_threshold, nms_iou, batch_size)
        self.pose = WholeBodyPoseModel(pose_model, pose_batch_size or 2 * batch_size, channel_order)

    def estimate(
        self,
        frames: np.ndarray | Iterable,
        *,
        full_frame_fallback: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> list[FramePoses]:
        """Poses of every person in every frame, in input order (FramePoses.index = position in `frames`)."""
        return list(self.iter_estimate(frames, full_frame_fallback=full_frame_fallback, progress=progress))

    def estimate_image(self, image, *, full_frame_fallback: bool = True) -> FramePoses:
        """Poses in one image; by default the whole image is posed when nobody is detected (score -1)."""
        return self.estimate([image], full_frame_fallback=full_frame_fallback)[0]

    def iter_estimate(
        self,
        frames: np.ndarray | Iterable,
        *,
        full_frame_fallback: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[FramePoses]:
        """Like estimate(), but yields frame by frame so long videos need not be held in memory.

        full_frame_fallback: pose the whole frame (detection score -1) when nobody is detected, as the official code
        does; by default such frames have no people and the caller decides (hold, interpolate, count).
        progress: called with the number of frames done after every batch (it may raise to cancel).
        """
        done = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wan-detect") as pool:
            for start, chunk, detections in self._detected_chunks(frames, pool):
                yield from self._pose_chunk(start, chunk, detections, full_frame_fallback)
                done += len(chunk)
                if progress is not None:
                    progress(done)

    def _detected_chunks(self, frames, pool: ThreadPoolExecutor) -> Iterator[tuple[int, list[np.ndarray], Future]]:
        """Chunks with their detection futures; the next chunk is submitted before the current one is handed out."""
        pending = None
        for start, chunk in self._chunks(frames):
            detections = pool.submit(self.detector, chunk)
            if pending is not None:
                yield pending
            pending = (start, chunk, detections)
        if pending is not None:
            yield pending

    def _chunks(self, frames) -> Iterator[tuple[int, list[np.ndarray]]]:
        chunk: list[np.ndarray] = []
        start = 0
        for index, frame in enumerate(frames):
            chunk.append(as_rgb_frame(frame, index))
            if len(chunk) == self.batch_size:
                yield start, chunk
                start, chunk = index + 1, []
        if chunk:
            yield start, chunk

    def _keep(self, found: list[PersonDetection]) -> list[PersonDetection]:
        """Usable boxes; with max_people, only the largest that many (in detector order)."""
        found = [d for d in found if usable_box(d.box)]
        if self.max_people is not None and len(found) > self.max_people:
            largest = sorted(range(len(found)), key=lambda i: found[i].area, reverse=True)[: self.max_people]
            found = [found[i] for i in sorted(largest)]
        return found

    def _pose_chunk(
        self, start: int, chunk: list[np.ndarray], detections: Future, full_frame_fallback: bool
    ) -> Iterator[FramePoses]:
        people: list[list[PersonDetection]] = []
        for frame, found in zip(chunk, detections.result()):
            found = self._keep(found)
            if not found and full_frame_fallback:
                height, width = frame.shape[:2]
                found = [PersonDetection(np.array([0, 0, width, height], np.float32), FULL_FRAME_SCORE)]
            people.append(found)
        owners = [i for i, found in enumerate(people) for _ in found]
        keypoints, scores = self.pose([chunk[i] for i in owners], [d.box for found in people for d in found])
        person = 0
        for i, (frame, found) in enumerate(zip(chunk, people)):
            poses = []
            for detection in found:
                poses.append(PersonPose(detection, keypoints[person], scores[person]))
                person += 1
            yield FramePoses(index=start + i, width=frame.shape[1], height=frame.shape[0], people=poses)

    @property
    def providers(self) -> dict[str, list[str]]:
        """The onnxruntime providers each model actually runs on."""
        return {
            "detector": self.detector.model.session.get_providers(),
            "pose": self.pose.model.session.get_providers(),
        }
