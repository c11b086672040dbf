"""Where generated frames go as they are produced: kept in memory, or streamed into an mp4 file.

A sink is any object with `write(frames)` taking uint8 (N, H, W, 3) RGB frames in order; the engine calls it once
per segment and never keeps the frames itself.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np


class FrameSink(Protocol):
    def write(self, frames: np.ndarray) -> None: ...


class FrameCollector:
    """Keeps every frame in host memory; `frames()` returns them as one (T, H, W, 3) array."""

    def __init__(self):
        self._chunks: list[np.ndarray] = []

    def write(self, frames: np.ndarray) -> None:
        self._chunks.append(frames)

    def frames(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros((0, 0, 0, 3), np.uint8)


class DiscardFrames:
    """Drops the frames: the sink of the ranks other than the first in a sequence-parallel job (they compute the
    same frames; one rank writes them)."""

    def write(self, frames: np.ndarray) -> None:
        pass


class Mp4Writer:
    """H.264 mp4 streamed frame by frame (wan_animate.preprocess.video_io.VideoWriter), with the driving video's
    sound when given (`sound`, `expected_frames`: see VideoWriter); the file appears under its name only when complete. As a context manager, an exception (error, cancel) deletes the partial file."""

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, crf: int = 18, *, sound=None,
                 expected_frames: int | None = None):
        from wan_animate.preprocess.video_io import VideoWriter

        self.path = Path(path)
        self._partial = self.path.with_name(self.path.name + ".partial.mp4")
        self._writer = VideoWriter(self._partial, fps, crf=crf, sound=sound, expected_frames=expected_frames)

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def write(self, frames: np.ndarray) -> None:
        if self._writer.frames_written == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer.write(frames)

    def close(self) -> None:
        if self._writer.frames_written == 0:
            raise RuntimeError(f"No frames were written to {self.path}.")
        self._writer.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._writer.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
