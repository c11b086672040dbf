"""Where generated frames go as they are produced: kept in memory, or streamed into an mp4 file.

A sink is any object with `write(frames)` taking uint8 (N, H, W, 3) RGB frames in order; the engine calls it once
per segment and never keeps the frames itself.
"""
from __future__ import annotations

import os
from fractions import Fraction
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


class Mp4Writer:
    """H.264 mp4 written frame by frame through PyAV; the file appears under its name only when complete.

    Use as a context manager: on an exception (error, cancel) the partial file is deleted.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, crf: int = 18):
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self._partial = self.path.with_name(self.path.name + ".partial.mp4")
        self._container = None
        self._stream = None
        self.frames_written = 0

    def write(self, frames: np.ndarray) -> None:
        import av

        if self._container is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frames.shape[1:3]
            self._container = av.open(str(self._partial), mode="w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf)}
        for frame in frames:
            if frame.shape[0] % 2 or frame.shape[1] % 2:
                frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            raise RuntimeError(f"No frames were written to {self.path}.")
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._partial.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
