"""From a driving video and a reference image to what Wan2.2-Animate consumes, as arrays (official recipe).

    result = preprocess(estimator, "dance.mp4", "character.png", mode="animate")
    result.pose, result.face, result.reference          # (N,H,W,3), (N,512,512,3), (H,W,3) uint8 RGB
    result.background, result.mask                      # replace mode: (N,H,W,3) uint8, (N,H,W) uint8 0/1

Two passes over the video keep memory bounded: the first streams frames through the pose estimator and keeps only
the poses; then the person is chosen, gaps are filled, poses smoothed and retargeted, face boxes settled; the
second pass decodes again and yields skeleton frames, face crops, masks and backgrounds chunk by chunk
(`Preprocessor.chunks`), which `preprocess` collects and the CLI writes straight to mp4. In replace mode a segmenter
(SAM2/SAM3, segmenter.py) segments the chosen person during the second pass, prompted from the first pass's track.

Official behaviour kept: animate mode poses and crops the driving frames at their own size, draws the skeleton on a
frame-sized canvas and letterboxes it to the area-resized reference (or, retargeted, draws straight on the
reference's canvas); replace mode letterboxes the driving frames to the area rule first and the reference to them.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from ..modes import MODES
from . import masks as masks_mod
from .errors import MaskInputError, NoPersonError, PreprocessError
from .face_crop import FACE_SIZE, clamp_box, crop_face, expand_face_box, face_box, fallback_box, landmark_box
from .face_detector import pick_face
from .person_select import FILL_MODES, STRATEGIES, PersonTrack, choose, fill_gaps, largest
from .resolution import OFFICIAL_AREA, OFFICIAL_DIVISOR, letterbox, resize_by_area, size_by_area
from .retarget import plan_retarget, apply_retarget
from .skeleton import DRAW_THRESHOLD, Skeleton, render_skeleton
from .smoothing import OneEuroParams, smooth_boxes, smooth_keypoints
from .types import FACE, FramePoses
from .video_io import OFFICIAL_FPS, VideoFile, read_image, resample_indices, resample_stream
RENDER_THREADS = min(8, os.cpu_count() or 1)
Progress = Callable[[int, int], None]


class PoseSource(Protocol):
    """What the pipeline needs from the models (wan_animate.preprocess.estimator.PoseEstimator)."""

    def iter_estimate(self, frames: Iterable[np.ndarray]) -> Iterator[FramePoses]: ...


class FaceSource(Protocol):
    def detect(self, frame: np.ndarray) -> np.ndarray: ...


class MaskSource(Protocol):
    """Replace mode's person masks from a segmentation model (wan_animate.preprocess.segmenter.PersonSegmenter)."""

    def masks(self, frames: Iterable[np.ndarray], track: PersonTrack,
              on_frame: Callable[[int], None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...


@dataclass(frozen=True)
class PreprocessOptions:
    """Every knob of the preprocessing; the defaults reproduce the official pipeline."""

    mode: str = "animate"
    target_fps: float | None = OFFICIAL_FPS  # None keeps the driving video's rate
    resolution_area: int = OFFICIAL_AREA
    divisor: int = OFFICIAL_DIVISOR
    resolution_rule: str = "official"  # or "exact" (see resolution.py)
    person: str = "largest"  # "largest" | "index" (N-th from the left) | "track" (follow from a start frame)
    person_index: int = 0
    track_start_frame: int = 0
    fill: str = "interpolate"  # frames without the person: "interpolate" between neighbours or "hold"
    retarget: bool = False  # animate mode: driving pose to the reference's body proportions
    check_reference: bool = True  # the reference must show a detectable person (off for non-human characters)
    smoothing: float = 0.0  # 0 off, (0, 1] strength of keypoint and face-box smoothing
    face_min_score: float = 0.3  # mean face-landmark score below which landmarks are "weak"
    draw_threshold: float = DRAW_THRESHOLD
    draw_hands: bool = True
    mask_kernel: int = masks_mod.DILATION_KERNEL
    mask_iterations: int = masks_mod.DILATION_ITERATIONS  # 0: use the mask as it is (no dilation, no blocks)
    mask_grid: tuple[int, int] = (masks_mod.GRID_W, masks_mod.GRID_H)  # official get_aug_mask w_len, h_len
    chunk_size: int = 32  # frames per second-pass chunk

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.person not in STRATEGIES:
            raise ValueError(f"person must be one of {STRATEGIES}, got {self.person!r}")
        if self.fill not in FILL_MODES:
            raise ValueError(f"fill must be one of {FILL_MODES}, got {self.fill!r}")
        if self.retarget and self.mode != "animate":
            raise ValueError("retarget works in animate mode only (replace mode keeps the driving person's body)")
        if not 0.0 <= self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in [0, 1], got {self.smoothing}")
        if self.target_fps is not None and self.target_fps <= 0:
            raise ValueError(f"target_fps must be positive (or None to keep the source rate), got {self.target_fps}")
        if self.chunk_size < 1 or self.resolution_area < self.divisor**2:
            raise ValueError("chunk_size must be >= 1 and resolution_area at least divisor**2")


@dataclass
class PreprocessResult:
    """Everything the engine needs, as uint8 RGB arrays (N frames, working size H x W)."""

    mode: str
    fps: float
    pose: np.ndarray  # (N, H, W, 3) skeleton frames
    face: np.ndarray  # (N, 512, 512, 3) face crops
    reference: np.ndarray  # (H, W, 3) reference letterboxed to the working size
    reference_original: np.ndarray  # the reference as given (src_ref.png is a byte copy of its file)
    background: np.ndarray | None = None  # replace: (N, H, W, 3) frames with the character blacked out
    mask: np.ndarray | None = None  # replace: (N, H, W) uint8, 1 on the character
    missing_frames: list[int] = field(default_factory=list)  # frames where the chosen person was not found
    interpolated_frames: int = 0
    held_frames: int = 0
    weak_face_frames: int = 0  # frames whose face landmarks were too weak to place the crop
    source_fps: float = 0.0
    source_size: tuple[int, int] = (0, 0)  # (width, height) of the driving frames as decoded
    track: PersonTrack | None = None  # the chosen person's keypoints in pose-space pixels

    @property
    def frame_count(self) -> int:
        return int(self.pose.shape[0])

    @property
    def height(self) -> int:
        return int(self.pose.shape[1])

    @property
    def width(self) -> int:
        return int(self.pose.shape[2])


@dataclass
class OutputChunk:
    """Frames [start, start + n) of every output stream."""

    start: int
    pose: np.ndarray
    face: np.ndarray
    background: np.ndarray | None
    mask: np.ndarray | None


@dataclass
class PreparedVideo:
    """The result of the first pass: everything but the pixels of the output frames."""

    options: PreprocessOptions
    frames: _FrameSource
    fps: float
    count: int
    frame_hw: tuple[int, int]  # driving frames as decoded
    pose_hw: tuple[int, int]  # where poses live: driving frames (animate) or working frames (replace)
    work_hw: tuple[int, int]  # output size
    reference: np.ndarray
    reference_original: np.ndarray
    track: PersonTrack
    skeletons: list[Skeleton]  # what gets drawn, per frame, in draw space
    draw_hw: tuple[int, int]  # canvas the skeletons are drawn on before letterboxing to work_hw
    face_boxes: list[tuple[int, int, int, int]]
    weak_face_frames: int
    external_masks: np.ndarray | None


class _FrameSource:
    """Re-iterable driving frames at the output rate: a video file (decoded afresh each pass) or an array."""

    def __init__(self, video, fps: float | None, target_fps: float | None):
        self.target_fps = target_fps
        if isinstance(video, (str, Path)):
            self.file = VideoFile(video, fps=fps)
            self.array = None
            self.source_fps = self.file.fps
        else:
            self.file = None
            self.array = _as_frames(video)
            self.source_fps = float(fps) if fps is not None else float(target_fps or OFFICIAL_FPS)
        self.source_count: int | None = None if self.array is None else len(self.array)

    @property
    def fps(self) -> float:
        return float(self.target_fps or self.source_fps)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.array is not None:
            for i in resample_indices(len(self.array), self.source_fps, self.target_fps):
                yield self.array[i]
            return
        count = 0

        def counted() -> Iterator[np.ndarray]:
            nonlocal count
            for frame in self.file.frames():
                count += 1
                yield frame

        yield from resample_stream(counted(), self.source_fps, self.target_fps)
        self.source_count = count


def _as_frames(video) -> np.ndarray:
    frames = np.asarray(video) if not isinstance(video, np.ndarray) else video
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise PreprocessError(
            f"driving frames must be a (N, H, W, 3) uint8 RGB array or a video path, got shape {frames.shape} "
            f"dtype {frames.dtype}"
        )
    if len(frames) == 0:
        raise PreprocessError("the driving video has zero frames; give at least one frame")
    return frames


def _as_image(image, what: str) -> np.ndarray:
    if isinstance(image, (str, Path)):
        return read_image(image)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim != 3 or array.shape[-1] != 3:
        raise PreprocessError(f"{what} must be an (H, W, 3) RGB image or a path, got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise PreprocessError(f"{what} must be uint8 or float in [0, 1], got {array.dtype}")
        array = (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(array)


def _load_masks(mask) -> np.ndarray:
    """External masks as (M, h, w) uint8 0/1 from an array, a video file or a folder of images."""
    if isinstance(mask, (str, Path)):
        path = Path(mask)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
            if not files:
                raise MaskInputError(f"mask folder {path} has no images (png, jpg, webp, bmp)")
            frames = [read_image(p) for p in files]
        else:
            frames = list(VideoFile(path).frames())
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise MaskInputError(f"mask frames in {path} differ in size: {sorted(shapes)}")
        mask = np.stack(frames)
    m = np.asarray(mask)
    if m.ndim == 4 and m.shape[-1] in (1, 3, 4):
        m = m[..., 0]
    if m.ndim != 3 or len(m) == 0:
        raise MaskInputError(f"mask sequence must be (N, H, W) (or N images), got shape {np.shape(mask)}")
    return m


class Preprocessor:
    """The two-pass pipeline; `run` returns arrays, `prepare` + `chunks` stream them."""

    def __init__(self, estimator: PoseSource, options: PreprocessOptions | None = None,
                 face_detector: FaceSource | None = None, progress: Progress | None = None,
                 segmenter: MaskSource | None = None):
        self.estimator = estimator
        self.options = options or PreprocessOptions()
        self.options.validate()
        self.face_detector = face_detector
        self.progress = progress
        self.segmenter = segmenter
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------------------------------ first pass
    def prepare(self, video, reference, *, fps: float | None = None, mask=None) -> PreparedVideo:
        o = self.options
        if mask is not None and o.mode != "replace":
            raise MaskInputError("a character mask is only used in replace mode; drop it or use mode='replace'")
        if mask is not None and self.segmenter is not None:
            raise MaskInputError("give either a character mask or a segmenter, not both: the mask would be ignored")
        ref_original = _as_image(reference, "reference image")
        ref_by_area = resize_by_area(ref_original, o.resolution_area, o.divisor, o.resolution_rule, "reference image")
        # Checked before the video, so a wrong reference fails in a second rather than after the whole first pass.
        ref_skeleton = self._reference_skeleton(ref_by_area) if (o.check_reference or o.retarget) else None
        source = _FrameSource(video, fps, o.target_fps)
        external = _load_masks(mask) if mask is not None else None

        expected = self._expected_count(source)
        self._report(0, 2 * expected)
        sizes: list[tuple[int, int]] = []
        poses: list[FramePoses] = []
        work_of_frame = None

        def pose_frames() -> Iterator[np.ndarray]:
            nonlocal work_of_frame
            for frame in source:
                if not sizes:
                    sizes.append(frame.shape[:2])
                    if o.mode == "replace":
                        w, h = size_by_area(frame.shape[1], frame.shape[0], o.resolution_area, o.divisor,
                                            o.resolution_rule, "driving video frame")
                        work_of_frame = (h, w)
                elif frame.shape[:2] != sizes[0]:
                    raise PreprocessError(f"driving frames change size: {sizes[0]} then {frame.shape[:2]}")
                yield self._to_pose_space(frame)

        for fp in self.estimator.iter_estimate(pose_frames()):
            poses.append(fp)
            if len(poses) % o.chunk_size == 0:
                self._report(len(poses), 2 * max(expected, len(poses)))
        if not poses:
            raise PreprocessError("the driving video has zero frames after resampling; give a longer video")
        count = len(poses)
        frame_hw = sizes[0]

        if o.mode == "replace":
            work_hw = work_of_frame
            pose_hw = work_hw
            reference_fit = letterbox(ref_original, *work_hw)
        else:
            pose_hw = frame_hw
            reference_fit = ref_by_area
            work_hw = reference_fit.shape[:2]

        chosen = choose(poses, o.person, o.person_index, o.track_start_frame)
        track = fill_gaps(chosen, pose_hw[1], pose_hw[0], o.fill)
        if o.smoothing > 0:
            params = OneEuroParams.from_strength(o.smoothing)
            scale = float(np.median(track.boxes[:, 3] - track.boxes[:, 1]))
            track.keypoints = smooth_keypoints(track.keypoints, track.scores, source.fps, params, scale)

        skeletons = [Skeleton.from_wholebody(track.keypoints[i], track.scores[i], pose_hw[1], pose_hw[0])
                     for i in range(count)]
        draw_hw = pose_hw
        if o.retarget:
            plan = plan_retarget(skeletons[0], ref_skeleton)
            skeletons = [apply_retarget(plan, s) for s in skeletons]
            draw_hw = work_hw

        boxes, weak = self._face_boxes(source, track, pose_hw)
        if o.smoothing > 0:
            boxes = smooth_boxes(boxes, source.fps, OneEuroParams.from_strength(o.smoothing))
        face_boxes = [clamp_box(b, pose_hw[1], pose_hw[0]) or clamp_box(fallback_box(pose_hw[1], pose_hw[0]),
                                                                         pose_hw[1], pose_hw[0]) for b in boxes]
        if external is not None:
            external = self._match_masks(external, count, source, frame_hw, work_hw)
        return PreparedVideo(o, source, source.fps, count, frame_hw, pose_hw, work_hw, reference_fit, ref_original, track,
                             skeletons, draw_hw, face_boxes, weak, external)

    def _expected_count(self, source: _FrameSource) -> int:
        n = source.source_count if source.array is not None else source.file.reported_frames
        return max(len(resample_indices(n, source.source_fps, source.target_fps)) if n else 1, 1)

    def _to_pose_space(self, frame: np.ndarray) -> np.ndarray:
        o = self.options
        if o.mode == "replace":
            return resize_by_area(frame, o.resolution_area, o.divisor, o.resolution_rule, "driving video frame")
        return frame

    def _reference_skeleton(self, reference_fit: np.ndarray) -> Skeleton:
        found = next(iter(self.estimator.iter_estimate([reference_fit])))
        person = largest(found.people)
        if person is None:
            why = ("retargeting needs it to measure the character's body; turn retargeting off"
                   if self.options.retarget else "set check_reference=False (CLI: --no-reference-check)")
            raise NoPersonError(
                "No person found in the reference image. Use an image showing the character's body (ideally full "
                f"body, facing the camera, not cropped); for a character the detector cannot see, {why}."
            )
        h, w = reference_fit.shape[:2]
        return Skeleton.from_wholebody(person.keypoints, person.scores, w, h)

    def _face_boxes(self, source: _FrameSource, track: PersonTrack, pose_hw: tuple[int, int]) -> tuple[np.ndarray, int]:
        """Float face boxes per frame: from strong landmarks, else the face detector, else interpolated."""
        o = self.options
        n = len(track)
        boxes = np.full((n, 4), np.nan)
        strong = np.zeros(n, bool)
        for i in range(n):
            if track.scores[i, FACE].mean() >= o.face_min_score:
                box = face_box(track.keypoints[i, FACE])
                if box is not None:
                    boxes[i], strong[i] = box, True
        weak = int(n - strong.sum())
        if weak and self.face_detector is not None:
            wanted = set(np.flatnonzero(~strong).tolist())
            last = max(wanted)
            for i, frame in enumerate(source):
                if i > last:
                    break
                if i in wanted:
                    frame = self._to_pose_space(frame)
                    found = pick_face(self.face_detector.detect(frame), track.boxes[i], track.keypoints[i, 0])
                    if found is not None:
                        box = expand_face_box(found)
                        if box is not None:
                            boxes[i], strong[i] = box, True
        if strong.any():
            known = np.flatnonzero(strong)
            for c in range(4):
                boxes[:, c] = np.interp(np.arange(n), known, boxes[known, c])
            return boxes, weak
        # No confident face anywhere: the official recipe on whatever landmarks there are, else a fixed box.
        for i in range(n):
            box = expand_face_box(landmark_box(track.keypoints[i, FACE]))
            boxes[i] = box if box is not None else fallback_box(pose_hw[1], pose_hw[0])
        return boxes, weak

    def _match_masks(self, masks: np.ndarray, count: int, source: _FrameSource, frame_hw, work_hw) -> np.ndarray:
        masks_mod.check_mask_aspect(masks.shape[1:3], frame_hw, work_hw, "character mask")
        if len(masks) == count:
            return masks
        if source.source_count is not None and len(masks) == source.source_count:
            return masks[resample_indices(source.source_count, source.source_fps, source.target_fps)]
        raise MaskInputError(
            f"character mask has {len(masks)} frames but the driving video has {count} frames at {source.fps:g} fps"
            f"{f' ({source.source_count} before resampling)' if source.source_count else ''}; give one mask per frame."
        )

    # ----------------------------------------------------------------------------------------- second pass
    def chunks(self, prepared: PreparedVideo) -> Iterator[OutputChunk]:
        """Output frames chunk by chunk (decoding the video again; with a segmenter, frames come with their masks)."""
        o, p = self.options, prepared
        segmenting = self.segmenter is not None and o.mode == "replace"
        items: Iterable = p.frames
        if segmenting:
            items = self.segmenter.masks((self._to_pose_space(f) for f in p.frames), p.track,
                                         on_frame=lambda n: self._report(p.count + n, 2 * p.count))
        batch: list = []
        start = 0
        try:
            for item in items:
                batch.append(item)
                if len(batch) == o.chunk_size:
                    yield self._render(p, start, batch, segmenting)
                    start += len(batch)
                    batch = []
                    if not segmenting:
                        self._report(p.count + start, 2 * p.count)
            if batch:
                yield self._render(p, start, batch, segmenting)
                start += len(batch)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
        if start != p.count:
            raise PreprocessError(f"the driving video decoded to {start} frames on the second pass, {p.count} on the first")
        self._report(2 * p.count, 2 * p.count)

    def _render(self, p: PreparedVideo, start: int, items: Sequence, segmented: bool = False) -> OutputChunk:
        """Output frames for driving frames (or, segmented, (pose-space frame, raw person mask) pairs)."""
        o = self.options
        n = len(items)
        work_h, work_w = p.work_hw
        pose = np.empty((n, work_h, work_w, 3), np.uint8)
        face = np.empty((n, FACE_SIZE, FACE_SIZE, 3), np.uint8)
        bg = np.empty((n, work_h, work_w, 3), np.uint8) if o.mode == "replace" else None
        mask = np.empty((n, work_h, work_w), np.uint8) if o.mode == "replace" else None

        def render(k: int) -> None:
            i = start + k
            frame = items[k][0] if segmented else self._to_pose_space(items[k])
            canvas = render_skeleton(p.skeletons[i], o.draw_threshold, draw_hands=o.draw_hands)
            pose[k] = canvas if p.draw_hw == p.work_hw else letterbox(canvas, work_h, work_w)
            face[k] = crop_face(frame, p.face_boxes[i])
            if o.mode == "replace":
                if segmented:
                    raw = items[k][1]
                elif p.external_masks is not None:
                    raw = masks_mod.fit_external_mask(p.external_masks[i], work_h, work_w, f"character mask frame {i}")
                else:
                    raw = masks_mod.person_region(work_h, work_w, p.track.boxes[i], p.track.keypoints[i],
                                                  p.track.scores[i])
                mask[k] = masks_mod.refine(raw, o.mask_kernel, o.mask_iterations, *o.mask_grid)
                bg[k] = masks_mod.background(frame, mask[k])

        # Frames are independent and OpenCV releases the GIL: render them on a few threads.
        list(self._pool().map(render, range(n)))
        return OutputChunk(start, pose, face, bg, mask)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="wan-render")
        return self._executor

    def _report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(int(done), int(max(total, 1)))

    # --------------------------------------------------------------------------------------------- arrays
    def run(self, video, reference, *, fps: float | None = None, mask=None) -> PreprocessResult:
        p = self.prepare(video, reference, fps=fps, mask=mask)
        h, w = p.work_hw
        replace_mode = self.options.mode == "replace"
        pose = np.empty((p.count, h, w, 3), np.uint8)
        face = np.empty((p.count, FACE_SIZE, FACE_SIZE, 3), np.uint8)
        bg = np.empty((p.count, h, w, 3), np.uint8) if replace_mode else None
        mask_out = np.empty((p.count, h, w), np.uint8) if replace_mode else None
        for chunk in self.chunks(p):
            sl = slice(chunk.start, chunk.start + len(chunk.pose))
            pose[sl], face[sl] = chunk.pose, chunk.face
            if replace_mode:
                bg[sl], mask_out[sl] = chunk.background, chunk.mask
        return result_from(p, pose, face, bg, mask_out)


def result_from(p: PreparedVideo, pose, face, background, mask) -> PreprocessResult:
    t = p.track
    return PreprocessResult(
        mode=p.options.mode, fps=p.fps, pose=pose, face=face, reference=p.reference,
        reference_original=p.reference_original, background=background, mask=mask,
        missing_frames=list(t.missing_frames), interpolated_frames=int(t.interpolated.sum()),
        held_frames=int(t.held.sum()), weak_face_frames=p.weak_face_frames, source_fps=p.frames.source_fps,
        source_size=(p.frame_hw[1], p.frame_hw[0]), track=t,
    )


def preprocess(estimator: PoseSource, video, reference, *, fps: float | None = None, mask=None,
               face_detector: FaceSource | None = None, options: PreprocessOptions | None = None,
               progress: Progress | None = None, segmenter: MaskSource | None = None, **overrides) -> PreprocessResult:
    """Run the whole preprocessing and return arrays (see PreprocessResult).

    video: a video file path, or (N, H, W, 3) uint8 RGB frames with their `fps` (without fps, frames are taken to be
    at the target rate already). reference: an image path or (H, W, 3) RGB array. mask (replace mode): per-frame
    character masks from any segmenter, as (N, H, W) array, a mask video or a folder of images; one per output frame
    or per source frame. segmenter (replace mode, instead of `mask`): a PersonSegmenter (wan_animate.preprocess.sam_tracker
    .load_segmenter) that segments the chosen person with SAM2/SAM3, prompted from the pose; without either, the mask
    is the person's box united with the confident keypoints. options / overrides: PreprocessOptions fields (e.g.
    mode="replace", smoothing=0.5).
    progress(done, total) is called as frames are processed (it may raise to cancel).
    """
    opts = replace(options or PreprocessOptions(), **overrides)
    return Preprocessor(estimator, opts, face_detector, progress, segmenter).run(video, reference, fps=fps, mask=mask)
