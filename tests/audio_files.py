"""Video files with real sound for the audio tests (no tests here): beeps at known times through PyAV's encoders, a
bright video frame at each beep, and probes that measure what an output file holds."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

BEEP_HZ = 880.0
BEEP_S = 0.1
# How exactly an mp4 states a track's length: in its movie time scale, milliseconds as PyAV writes it.
STATED_LENGTH_S = 0.001


def beeps(seconds: float, sample_rate: int, at: tuple[float, ...], channels: int = 2) -> np.ndarray:
    """(channels, T) float32: silence with a BEEP_S sine burst starting at each time in `at`."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    on = np.zeros_like(t, dtype=bool)
    for start in at:
        on |= (t >= start) & (t < start + BEEP_S)
    wave = (0.5 * np.sin(2 * np.pi * BEEP_HZ * t) * on).astype(np.float32)
    return np.repeat(wave[None], channels, axis=0)


def write_clip(path: Path, *, fps: float | Fraction, frames: int, beep_at: tuple[float, ...] = (1.0,),
               codec: str | None = "aac", sample_rate: int = 44100, channels: int = 2, audio_start: float = 0.0,
               audio_seconds: float | None = None, video_start: float = 0.0, size: int = 32) -> Path:
    """A clip of `frames` frames at `fps` whose frames are dark except a bright one at each beep. Its sound (codec
    None: none) starts at `audio_start` and lasts `audio_seconds` (default: as long as the video) on the container's
    clock, where the video starts at `video_start`; beep times are on that clock too."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    bright = {int(round((t - video_start) * rate)) for t in beep_at}
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = 1 / rate
        audio = None
        if codec:
            audio = out.add_stream(codec, rate=sample_rate)
            audio.layout = "mono" if channels == 1 else ("stereo" if channels == 2 else "5.1")
        first = int(round(video_start * rate))
        for i in range(frames):
            img = np.full((size, size, 3), 230 if i in bright else 20, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = first + i
            frame.time_base = 1 / rate
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            seconds = audio_seconds if audio_seconds is not None else frames / float(rate)
            clock = beeps(audio_start + seconds, sample_rate, beep_at, channels)[:, int(round(audio_start * sample_rate)):]
            encode_sound(out, audio, clock, sample_rate, int(round(audio_start * sample_rate)))
    return path


def encode_sound(out, stream, samples: np.ndarray, sample_rate: int, first_pts: int = 0) -> None:
    """Encode (channels, T) float samples into `stream` of the open output container `out`, starting at first_pts."""
    import av

    fmt = stream.codec_context.format
    step = stream.codec_context.frame_size or 1024
    scale = {"s16": 32767, "s32": 2**31 - 1}.get(fmt.name.rstrip("p"))
    for s in range(0, samples.shape[1], step):
        chunk = samples[:, s:s + step]
        if scale:
            chunk = (chunk * scale).astype(np.int16 if fmt.name.startswith("s16") else np.int32)
        if not fmt.is_planar:
            chunk = chunk.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt.name, layout=stream.layout.name)
        frame.sample_rate = sample_rate
        frame.pts = first_pts + s
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def decoded_sound(path: Path) -> tuple[np.ndarray, int, float]:
    """(channels, T) float samples of the first audio stream, its rate, and the time of its first sample relative to
    the first video frame."""
    import av

    with av.open(str(path)) as container:
        video_start = next(container.decode(video=0)).time
    with av.open(str(path)) as container:  # not seek(0): it skips the sound before the first video key frame
        stream = container.streams.audio[0]
        to_float = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.sample_rate)
        frames = list(container.decode(stream))
        data = np.concatenate([c.to_ndarray() for f in frames for c in to_float.resample(f)], axis=1)
        return data, stream.sample_rate, frames[0].time - video_start


def beep_onsets(path: Path) -> list[float]:
    """Times (seconds after the first video frame) at which the beeps start in the file's sound."""
    samples, rate, start = decoded_sound(path)
    loud = np.abs(samples).max(axis=0) > 0.05
    edges = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    edges = [e for e in edges if not loud[max(0, e - int(0.05 * rate)):e].any()]  # burst starts, not zero crossings
    if loud[0]:
        edges = [0, *edges]
    return [start + e / rate for e in edges]


def durations(path: Path) -> tuple[float, float | None]:
    """(video seconds = frames / frame rate, audio stream seconds as the container states it or None)."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
        seconds = frames / float(video.average_rate)
        if not container.streams.audio:
            return seconds, None
        audio = container.streams.audio[0]
        return seconds, float(audio.duration * audio.time_base)


def bright_frames(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as container:
        return [i for i, f in enumerate(container.decode(video=0)) if f.to_ndarray(format="gray").mean() > 128]


def audio_codec(path: Path) -> str | None:
    import av

    with av.open(str(path)) as container:
        return container.streams.audio[0].codec_context.name if container.streams.audio else None
