"""Replace mode: the chosen person's mask in every frame from a video segmentation model, prompted automatically.

`PersonSegmenter.masks(frames, track)` streams (frame, mask) pairs. Frames are buffered one chunk at a time
(`chunk_frames`, official 400), so memory does not grow with the video's length. Each chunk is one tracking session:

1. the key frames (see segment_prompts.key_frames) are prompted with the pose's points and box;
2. SAM propagates backwards from the first key frame to the chunk's start, then forwards to its end (the official
   code only goes forwards from frame 0, which it always prompts, whatever the pose shows there);
3. wherever the person is detected with confident keypoints but SAM's mask has lost them (SAM says the object is
   gone, or fewer than `min_coverage` of the prompt points lie on the mask: it drifted to a part, another person or
   the background, or the person left and came back), that frame is prompted again and tracking goes on from the
   new prompt. At most one re-prompt every `reprompt_gap` frames.

A chunk where the person is never detected gets empty masks. Frames where the pose lost the person (interpolated
or held) keep what SAM tracks. The masks are raw (1 on the person); masks.refine applies the official dilation and
grid afterwards, like for any other mask source.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .person_select import PersonTrack
from .segment_prompts import (
    OFFICIAL_CHUNK_FRAMES,
    OFFICIAL_KEY_FRAMES,
    FramePrompt,
    frame_prompt,
    key_frames,
    point_coverage,
)


@dataclass(frozen=True)
class TrackedMask:
    """One frame's result: the (H, W) bool mask at the frame's size, and whether the model sees the object at all."""

    mask: np.ndarray
    present: bool


class VideoTracker(Protocol):
    """A promptable video segmentation model holding one tracking session at a time (SamVideoTracker)."""

    def start(self, height: int, width: int) -> None:
        """Open a new session for frames of this size; frame indices count from 0 within it."""

    def segment(self, index: int, frame: np.ndarray, prompt: FramePrompt | None = None,
                reverse: bool = False) -> TrackedMask:
        """With a prompt: segment `frame` from it as a new conditioning frame (dropping any earlier result there).
        Without: track the object into `frame` from the session's memory (backwards in time when `reverse`)."""

    def finish(self) -> None:
        """Close the session and free its memory."""


@dataclass(frozen=True)
class SegmentOptions:
    """How the segmenter is prompted and chunked; the defaults follow the official recipe where it has one."""

    chunk_frames: int = OFFICIAL_CHUNK_FRAMES
    key_frames: int = OFFICIAL_KEY_FRAMES
    use_box: bool = True  # official: points only
    min_coverage: float = 0.5  # re-prompt when fewer prompt points than this lie on the tracked mask
    reprompt_gap: int = 8  # frames between two re-prompts

    def validate(self) -> None:
        if self.chunk_frames < 1 or self.key_frames < 1:
            raise ValueError(f"chunk_frames and key_frames must be >= 1, got {self.chunk_frames}, {self.key_frames}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in [0, 1], got {self.min_coverage}")
        if self.reprompt_gap < 0:
            raise ValueError(f"reprompt_gap must be >= 0, got {self.reprompt_gap}")


@dataclass
class SegmentReport:
    """What the last run did: chunks, prompted key frames, re-prompts, frames left empty for want of a prompt."""

    chunks: int = 0
    key_frames: list[int] = field(default_factory=list)  # video frame indices
    reprompts: list[int] = field(default_factory=list)
    empty_frames: int = 0


class PersonSegmenter:
    """Masks of the chosen person through a whole video, chunk by chunk, from a VideoTracker."""

    def __init__(self, tracker: VideoTracker, options: SegmentOptions | None = None):
        self.tracker = tracker
        self.options = options or SegmentOptions()
        self.options.validate()
        self.report = SegmentReport()

    def masks(self, frames: Iterable[np.ndarray], track: PersonTrack,
              on_frame: Callable[[int], None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(frame, (H, W) uint8 0/1 mask) for each frame, in order. `track` holds the person in these frames' pixels;
        on_frame(n) is called as each frame's mask is made (n: frames done so far; it may raise to cancel)."""
        self.report = SegmentReport()
        buffer: list[np.ndarray] = []
        start = 0
        for frame in frames:
            if start + len(buffer) == len(track):
                raise ValueError(f"the segmenter got more frames than the person track's {len(track)}")
            buffer.append(frame)
            if len(buffer) == self.options.chunk_frames:
                yield from self._chunk(start, buffer, track, on_frame)
                start += len(buffer)
                buffer = []
        if buffer:
            yield from self._chunk(start, buffer, track, on_frame)
            start += len(buffer)
        if start != len(track):
            raise ValueError(f"the segmenter got {start} frames but the person track has {len(track)}")

    def _chunk(self, start: int, frames: Sequence[np.ndarray], track: PersonTrack,
               on_frame: Callable[[int], None] | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        o = self.options
        n = len(frames)
        height, width = frames[0].shape[:2]
        if (track.width, track.height) != (width, height):
            raise ValueError(f"person track is for {track.width}x{track.height} frames, the segmenter got {width}x{height}")
        prompts = [frame_prompt(track, start + i, o.use_box) for i in range(n)]
        keys = key_frames([p is not None for p in prompts], o.key_frames)
        self.report.chunks += 1
        masks: list[np.ndarray | None] = [None] * n
        made = 0

        def done(i: int, mask: np.ndarray) -> None:
            nonlocal made
            masks[i] = mask
            made += 1
            if on_frame is not None:
                on_frame(start + made)

        if not keys:
            self.report.empty_frames += n
            for i in range(n):
                done(i, np.zeros((height, width), bool))
        else:
            self.report.key_frames += [start + k for k in keys]
            self.tracker.start(height, width)
            try:
                for k in keys:
                    done(k, self.tracker.segment(k, frames[k], prompts[k]).mask)
                last_prompt = keys[0]
                for i in range(keys[0] - 1, -1, -1):
                    mask, last_prompt = self._step(start, i, frames[i], prompts[i], True, last_prompt)
                    done(i, mask)
                last_prompt = keys[0]
                for i in range(keys[0] + 1, n):
                    if masks[i] is not None:
                        last_prompt = i
                        continue
                    mask, last_prompt = self._step(start, i, frames[i], prompts[i], False, last_prompt)
                    done(i, mask)
            finally:
                self.tracker.finish()
        for frame, mask in zip(frames, masks):
            yield frame, mask.astype(np.uint8)

    def _step(self, start: int, index: int, frame: np.ndarray, prompt: FramePrompt | None, reverse: bool,
              last_prompt: int) -> tuple[np.ndarray, int]:
        result = self.tracker.segment(index, frame, reverse=reverse)
        if prompt is None or abs(index - last_prompt) < self.options.reprompt_gap or not self._lost(result, prompt):
            return result.mask, last_prompt
        self.report.reprompts.append(start + index)
        return self.tracker.segment(index, frame, prompt, reverse=reverse).mask, index

    def _lost(self, result: TrackedMask, prompt: FramePrompt) -> bool:
        return not result.present or point_coverage(result.mask, prompt.points) < self.options.min_coverage
