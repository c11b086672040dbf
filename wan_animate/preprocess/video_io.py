"""Video and image files as RGB uint8 arrays (PyAV / Pillow), and frame-rate resampling by the official rule.

Decoding streams frames, so a long video never has to sit in memory; the pipeline decodes it twice (poses first,
crops and masks second) rather than holding it. Writing is H.264 (libx264, yuv420p) in mp4, as the official
preprocessing writes its videos, with the driving video's sound in step when given (audio.py).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ImageReadError, InputSizeError, VideoReadError

if TYPE_CHECKING:  # audio imports av, which this module imports only when it decodes or encodes
    from .audio import DrivingSound, SoundTrack

OFFICIAL_FPS = 30.0


def resampled_count(num_frames: int, source_fps: float, target_fps: float | None) -> int:
    """Frames left after resampling: the official int(N / source_fps * target_fps), robust to float round-off, and
    at least one frame of a non-empty video (the official count can be 0 for a very short clip)."""
    if target_fps is None or num_frames == 0:
        return num_frames
    return max(1, int(math.floor(num_frames * float(target_fps) / float(source_fps) + 1e-9)))


def source_index(i: int, source_fps: float, target_fps: float | None) -> int:
    """Source frame shown at output frame i: the official round(i / target_fps * source_fps) (numpy rounding)."""
    if target_fps is None:
        return i
    return int(np.round((i / float(target_fps)) * float(source_fps)))


def resample_indices(num_frames: int, source_fps: float, target_fps: float | None) -> np.ndarray:
    """Source indices of every output frame (official get_frame_indices, clipped to the last frame)."""
    count = resampled_count(num_frames, source_fps, target_fps)
    idx = np.array([source_index(i, source_fps, target_fps) for i in range(count)], dtype=np.int64)
    return np.clip(idx, 0, max(num_frames - 1, 0))


def resample_stream(frames: Iterable[np.ndarray], source_fps: float, target_fps: float | None) -> Iterator[np.ndarray]:
    """Resample a stream of frames without knowing its length up front; same frames as resample_indices."""
    if target_fps is None:
        yield from frames
        return
    i = 0
    seen = 0
    last = None
    for j, frame in enumerate(frames):
        seen, last = j + 1, frame
        while source_index(i, source_fps, target_fps) <= j:
            yield frame
            i += 1
    # Output frames whose rounded source index falls past the end repeat the last frame (official clip).
    while last is not None and i < resampled_count(seen, source_fps, target_fps):
        yield last
        i += 1


def chunked(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Group a frame stream into (n, H, W, C) arrays of at most `size` frames."""
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def is_still_image_format(container_format: str) -> bool:
    """ffmpeg reads single images through its image demuxers (png_pipe, jpeg_pipe, ..., image2) as 1-frame videos."""
    return container_format == "image2" or container_format.endswith("_pipe")


class VideoFile:
    """A video file opened for decoding: metadata on open, RGB frames on demand (rotation metadata applied)."""

    def __init__(self, path: str | Path, fps: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoReadError(f"Driving video not found: {self.path}. Give the path of an existing video file.")
        import av

        try:
            with av.open(str(self.path)) as container:
                if is_still_image_format(container.format.name):
                    raise VideoReadError(
                        f"{self.path} is a still image ({container.format.name.removesuffix('_pipe')}), not a video: "
                        "give the driving video (mp4, mov, webm, mkv, ...); the character image goes to the reference."
                    )
                if not container.streams.video:
                    raise VideoReadError(
                        f"{self.path} has no video frames (no video stream). Give a video file with frames "
                        "(mp4, mov, webm, mkv, ...)."
                    )
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.width, self.height = stream.codec_context.width, stream.codec_context.height
                self.reported_frames = int(stream.frames or 0)
        except VideoReadError:
            raise
        except Exception as exc:  # av raises many error types for unreadable files
            raise VideoReadError(
                f"Cannot read {self.path} as a video ({type(exc).__name__}: {exc}). "
                "Give a video file that ffmpeg can decode (mp4/H.264 is safest)."
            ) from exc
        if fps is None and not rate:
            raise VideoReadError(f"{self.path} does not state its frame rate; pass the source fps explicitly.")
        self.fps = float(fps) if fps is not None else float(rate)

    def frames(self) -> Iterator[np.ndarray]:
        """Decode every frame as (H, W, 3) uint8 RGB. Raises VideoReadError when nothing decodes."""
        import av

        count = 0
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                size = None
                for frame in container.decode(stream):
                    if size is None:
                        size = (frame.width, frame.height)
                    rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
                    if rotation:
                        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
                    count += 1
                    yield rgb
        except av.error.FFmpegError as exc:
            raise VideoReadError(
                f"Decoding {self.path} failed after {count} frame(s) ({exc}). Re-encode the video (e.g. to mp4/H.264)."
            ) from exc
        if count == 0:
            raise VideoReadError(f"{self.path} has no decodable video frames. Give a video with at least one frame.")


class VideoWriter:
    """Write RGB uint8 frames to an H.264 mp4 (libx264, yuv420p); the size is taken from the first frame.

    sound: a driving video's sound to carry along, in step with the frames (wan_animate.preprocess.audio);
    expected_frames, the number of frames that will be written, lets it be copied instead of re-encoded.
    """

    def __init__(self, path: str | Path, fps: float, *, crf: int = 18, preset: str = "medium",
                 sound: DrivingSound | None = None, expected_frames: int | None = None):
        self.path = Path(path)
        self.fps = Fraction(float(fps)).limit_denominator(1001)
        self.crf, self.preset = crf, preset
        self.sound, self.expected_frames = sound, expected_frames
        self._container = None
        self._stream = None
        self._sound_track: SoundTrack | None = None
        self.frames_written = 0

    def _open(self, height: int, width: int) -> None:
        import av

        if height % 2 or width % 2:
            raise InputSizeError(
                f"H.264 (yuv420p) needs even frame sizes; got {width}x{height} for {self.path.name}. "
                "Resize to even width and height first."
            )
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream(
            "libx264", rate=self.fps, options={"crf": str(self.crf), "preset": self.preset}
        )
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        if self.sound is not None:
            from .audio import SoundTrack

            self._sound_track = SoundTrack.open(self._container, self.sound, self.fps, self.expected_frames)

    def write(self, frames: np.ndarray) -> None:
        """Append one frame (H, W[, 3]) or a batch (n, H, W[, 3]); grey frames are written as grey RGB."""
        import av

        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise TypeError(f"frames must be uint8, got {frames.dtype}")
        if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] == 3):
            frames = frames[None]  # one grey or RGB frame; (n, H, W) is a batch of grey frames
        for frame in frames:
            if frame.ndim == 2:
                frame = np.repeat(frame[..., None], 3, axis=2)
            if self._container is None:
                self._open(*frame.shape[:2])
            packet_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in self._stream.encode(packet_frame):
                self._container.mux(packet)
            self.frames_written += 1
        if self._sound_track is not None:
            self._sound_track.write_until(self.frames_written)

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._sound_track is not None:
                self._sound_track.close(self.frames_written)
        finally:
            if self._sound_track is not None:
                self._sound_track.abort()
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, **options) -> int:
    """Write frames (an array or any iterable of frames/batches) to an H.264 mp4; returns the frame count."""
    with VideoWriter(path, fps, **options) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames_written


def read_video(path: str | Path, target_fps: float | None = OFFICIAL_FPS, fps: float | None = None) -> tuple[np.ndarray, float]:
    """Whole video as (N, H, W, 3) uint8 RGB resampled to target_fps (None keeps the source rate), and its fps."""
    video = VideoFile(path, fps=fps)
    frames = np.stack(list(resample_stream(video.frames(), video.fps, target_fps)))
    return frames, float(target_fps or video.fps)


def read_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, EXIF orientation applied (as cv2.imread does), alpha dropped."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"Image not found: {path}.")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                image = image.point(lambda v: v / 256).convert("L")
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageReadError(f"Cannot read {path} as an image ({exc}). Give a PNG, JPEG or WebP file.") from exc


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB array (format from the file extension)."""
    from PIL import Image

    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
