"""The driving video's sound, carried in sync into a video made from its frames.

Output frame i shows the driving video at time i / fps (frame-rate resampling keeps the clip's duration), so the
output's sound is the driving video's sound from its first video frame on, for exactly frames / fps seconds: cut where
the sound runs longer, padded with silence where it is missing (before it starts, after it ends).

AAC, the codec mp4 players expect, is copied packet for packet when the sound already starts with the first video
frame and lasts to the last (the usual untrimmed clip; the copy ends within one packet, 21-23 ms, after the video).
Anything else is decoded, cut and padded to the sample and encoded as AAC. A driving video without sound gives a
silent output; one whose sound cannot be decoded gives a silent output and one warning.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

log = logging.getLogger("wan_animate.audio")

COPY_CODECS = frozenset({"aac"})  # copied into mp4 as they are; everything else is encoded to AAC
AAC_BIT_RATE = 192_000
AAC_RATES = frozenset({96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000})
# Two timestamps this close (seconds) are the same instant: container rounding, not a real offset.
SAME_INSTANT_S = 0.001


def span_samples(frames: int, fps: float, sample_rate: int) -> int:
    """Audio samples lasting exactly as long as `frames` video frames at `fps`."""
    return int(round(frames * sample_rate / float(fps)))


def fit_samples(samples: np.ndarray, length: int) -> np.ndarray:
    """(channels, T) samples cut, or padded with silence at the end, to `length` samples."""
    if samples.shape[-1] >= length:
        return samples[..., :length]
    pad = np.zeros(samples.shape[:-1] + (length - samples.shape[-1],), samples.dtype)
    return np.concatenate([samples, pad], axis=-1)


def mono_or_stereo(samples: np.ndarray) -> np.ndarray:
    """(channels, T) -> (1 or 2, T): more than two channels are mixed to mono (their layout is unknown here)."""
    return samples if samples.shape[0] <= 2 else samples.mean(axis=0, keepdims=True)


class AudioDecodeError(RuntimeError):
    """The driving video has an audio stream that cannot be decoded."""


@dataclass(frozen=True)
class DrivingSound:
    """The first audio stream of a driving video, checked by decoding it once (cheap beside any video work).

    `origin` is the time of the first video frame on the container's clock; `start` and `end` (first decoded sample,
    after the last one) are seconds from that frame.
    """

    path: Path
    codec: str
    sample_rate: int
    channels: int
    origin: float
    start: float
    end: float

    @classmethod
    def probe(cls, path: str | Path) -> DrivingSound | None:
        """The sound of `path`; None when it has none, or when it cannot be decoded (then after one warning saying
        that the output will be silent)."""
        try:
            return cls._probe(Path(path))
        except AudioDecodeError as exc:
            log.warning("%s The output video is written without sound.", exc)
            return None

    @classmethod
    def _probe(cls, path: Path) -> DrivingSound | None:
        try:
            with av.open(str(path)) as container:
                if not container.streams.audio:
                    return None
                origin = _first_video_time(container)
            # a fresh demuxer: seeking back to 0 would skip the sound before the first video key frame
            with av.open(str(path)) as container:
                stream = container.streams.audio[0]
                first = last = None
                for packet in container.demux(stream):
                    for frame in packet.decode():
                        if frame.time is None:
                            continue
                        first = frame.time if first is None else first
                        last = frame.time + frame.samples / frame.sample_rate
                if first is None:
                    raise AudioDecodeError(f"The audio stream of {path} holds no decodable sound.")
                return cls(path, stream.codec_context.name, int(stream.sample_rate), int(stream.channels), origin,
                           first - origin, last - origin)
        except av.error.FFmpegError as exc:
            raise AudioDecodeError(
                f"The audio stream of {path} cannot be decoded ({exc}). Re-encode the driving video's sound "
                "(e.g. to AAC) to keep it."
            ) from exc

    def can_copy(self, duration: float) -> bool:
        """Whether the packets can go into an mp4 of `duration` seconds as they are: AAC, starting with the first
        video frame and lasting to the end (nothing to cut at the start, nothing to pad)."""
        return (self.codec in COPY_CODECS and abs(self.start) <= SAME_INSTANT_S
                and self.end >= duration - SAME_INSTANT_S)


def _first_video_time(container) -> float:
    """Presentation time of the first decoded video frame (0 without video frames)."""
    if not container.streams.video:
        return 0.0
    for frame in container.decode(container.streams.video[0]):
        if frame.time is not None:
            return float(frame.time)
    return 0.0


class SoundTrack:
    """A driving video's sound being written into an mp4 beside frames at `fps`, in step with them.

    Call `write_until(frames)` as the video advances (packets interleave, so nothing piles up in memory) and
    `close(frames)` with the number of frames written: the sound ends at frames / fps. `open` picks the kind.
    """

    copied = False

    def __init__(self, output, sound: DrivingSound, fps: float):
        self.sound, self.fps = sound, float(fps)
        self._output = output
        self._source = av.open(str(sound.path))
        self._source_stream = self._source.streams.audio[0]
        self._closed = False

    @staticmethod
    def open(output, sound: DrivingSound, fps: float, expected_frames: int | None = None) -> SoundTrack:
        """The packets copied when they fit an output of `expected_frames` frames as they are, else re-encoded
        (always, when the frame count is not known)."""
        if expected_frames is not None and sound.can_copy(expected_frames / float(fps)):
            return CopiedSound(output, sound, fps)
        return EncodedSound(output, sound, fps)

    def write_until(self, frames: int) -> None:
        """Write the sound that goes with the first `frames` frames."""
        raise NotImplementedError

    def _flush(self) -> None:
        """Write what the encoder still holds."""

    def close(self, frames: int) -> None:
        """End the sound with the last of `frames` frames and release the source."""
        if self._closed:
            return
        self._closed = True
        try:
            self.write_until(frames)
            self._flush()
        finally:
            self._source.close()

    def abort(self) -> None:
        """Release the source without writing more (after an error, or after close)."""
        if not self._closed:
            self._closed = True
            self._source.close()


class CopiedSound(SoundTrack):
    """AAC packets copied as they are, moved onto the output's clock; ends within one packet after the video."""

    copied = True

    def __init__(self, output, sound: DrivingSound, fps: float):
        super().__init__(output, sound, fps)
        self.stream = output.add_stream_from_template(self._source_stream)
        self._packets = self._source.demux(self._source_stream)
        self._next_packet = None

    def write_until(self, frames: int) -> None:
        """Copy every packet that starts before frames / fps."""
        seconds = frames / self.fps
        shift = round(self.sound.origin / self._source_stream.time_base)
        while True:
            if self._next_packet is None:
                self._next_packet = next((p for p in self._packets if p.dts is not None), None)
                if self._next_packet is None:
                    return
            packet = self._next_packet
            if ((packet.pts if packet.pts is not None else packet.dts) - shift) * packet.time_base >= seconds:
                return
            packet.stream = self.stream
            packet.dts -= shift
            if packet.pts is not None:
                packet.pts -= shift
            self._output.mux(packet)
            self._next_packet = None


class EncodedSound(SoundTrack):
    """The sound decoded, cut and padded with silence to the sample, and encoded as AAC (mono or stereo)."""

    def __init__(self, output, sound: DrivingSound, fps: float):
        super().__init__(output, sound, fps)
        self.rate = sound.sample_rate if sound.sample_rate in AAC_RATES else 48_000
        self.layout = "mono" if sound.channels == 1 else "stereo"
        self.stream = output.add_stream("aac", rate=self.rate)
        self.stream.layout = self.layout
        self.stream.bit_rate = AAC_BIT_RATE
        self._chunks = self._timeline()
        self._pending: np.ndarray | None = None
        self.samples_written = 0

    def write_until(self, frames: int) -> None:
        target = span_samples(frames, self.fps, self.rate)
        while self.samples_written < target:
            chunk = self._pending if self._pending is not None else next(self._chunks)
            take = min(chunk.shape[1], target - self.samples_written)
            self._pending = chunk[:, take:] if take < chunk.shape[1] else None
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[:, :take]), format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = self.samples_written
            frame.time_base = Fraction(1, self.rate)
            for packet in self.stream.encode(frame):
                self._output.mux(packet)
            self.samples_written += take

    def _flush(self) -> None:
        for packet in self.stream.encode(None):
            self._output.mux(packet)

    def _timeline(self) -> Iterator[np.ndarray]:
        """(channels, n) float32 chunks of the output's sound from its sample 0 on: the source's decoded samples at
        their place on the clock, silence where it has none, endless silence after its end."""
        channels = 1 if self.layout == "mono" else 2
        resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        cursor = 0
        for packet in self._source.demux(self._source_stream):
            for frame in packet.decode():
                converted = resampler.resample(frame)
                if frame.time is None or not converted:
                    continue
                offset = int(round((frame.time - self.sound.origin) * self.rate))
                data = np.concatenate([f.to_ndarray() for f in converted], axis=1)
                if abs(offset - cursor) <= 2:  # timestamp rounding, not a gap: keep the samples contiguous
                    offset = cursor
                if offset > cursor:
                    yield np.zeros((channels, offset - cursor), np.float32)
                    cursor = offset
                data = data[:, cursor - offset:]
                if data.shape[1]:
                    yield data
                    cursor += data.shape[1]
        while True:
            yield np.zeros((channels, self.rate), np.float32)
