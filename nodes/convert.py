"""Conversions between ComfyUI's types and the arrays the libraries take.

ComfyUI: IMAGE is a float tensor [B,H,W,C] in 0..1 (C may be 4 after some nodes), MASK is [B,H,W] or [H,W] in 0..1,
VIDEO is a comfy_api VideoInput, AUDIO a dict {"waveform": [B,C,T] float, "sample_rate": int}. The libraries take
uint8 RGB frames [N,H,W,3], float masks [N,H,W] and (channels, samples) sound.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from wan_animate.preprocess.audio import fit_samples, mono_or_stereo, span_samples


def image_to_frames(image: torch.Tensor, name: str = "images") -> np.ndarray:
    """IMAGE [B,H,W,C] float 0..1 -> uint8 RGB [B,H,W,3] (alpha dropped, greyscale repeated)."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"'{name}' must be an IMAGE (a [frames, height, width, channels] tensor), got {type(image).__name__}.")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] == 0:
        raise ValueError(f"'{name}' must be an IMAGE batch [frames, height, width, channels] with at least one frame, got shape {tuple(image.shape)}.")
    channels = image.shape[-1]
    if channels == 1:
        image = image.expand(*image.shape[:3], 3)
    elif channels >= 3:
        image = image[..., :3]
    else:
        raise ValueError(f"'{name}' has {channels} channels; an IMAGE needs 1, 3 or 4.")
    return (image.detach().float().clamp(0, 1).mul(255).round()).to(torch.uint8).cpu().numpy()


def frames_to_image(frames) -> torch.Tensor:
    """uint8 or float frames [N,H,W,3] (numpy or torch; a single [H,W,3] frame too) -> IMAGE float32 [N,H,W,3]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else torch.as_tensor(frames)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    t = t.float().div(255.0) if t.dtype == torch.uint8 else t.float()
    return t.clamp(0, 1).contiguous()


def mask_to_array(mask: torch.Tensor, frames: int | None = None, name: str = "mask") -> np.ndarray:
    """MASK [B,H,W] or [H,W] -> float32 [N,H,W] in 0..1; a single mask is repeated to `frames` when given."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"'{name}' must be a MASK tensor, got {type(mask).__name__}.")
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 3:
        raise ValueError(f"'{name}' must be a MASK [frames, height, width], got shape {tuple(mask.shape)}.")
    arr = mask.detach().float().clamp(0, 1).cpu().numpy()
    if frames is not None and arr.shape[0] != frames:
        if arr.shape[0] != 1:
            raise ValueError(f"'{name}' has {arr.shape[0]} frames but the video has {frames}; give one mask per frame or a single mask.")
        arr = np.repeat(arr, frames, axis=0)
    return arr


def array_to_mask(mask) -> torch.Tensor:
    """[N,H,W] (or [H,W]) mask with values in 0..1, any dtype (a 0/1 uint8 mask too) -> MASK float32 [N,H,W]."""
    t = torch.from_numpy(np.ascontiguousarray(mask)) if isinstance(mask, np.ndarray) else torch.as_tensor(mask)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    return t.float().clamp(0, 1).contiguous()


def video_to_image(video) -> tuple[torch.Tensor, float]:
    """VIDEO (core LoadVideo, CreateVideo, ...) -> (IMAGE [N,H,W,3], fps)."""
    if not hasattr(video, "get_components"):
        raise TypeError(f"expected a VIDEO (from LoadVideo or CreateVideo), got {type(video).__name__}.")
    components = video.get_components()
    return components.images, float(components.frame_rate)


def audio_for_frames(audio, frames: int, fps: float) -> dict:
    """AUDIO {"waveform": [B,C,T], "sample_rate"} -> the same sound cut, or padded with silence, to last exactly as
    long as `frames` frames at `fps` (from the first frame on, as wan_animate.preprocess.audio does for files), in mono
    or stereo (all core Save Video writes). Only the first sound of a batch is kept."""
    waveform = audio.get("waveform") if isinstance(audio, dict) else None
    if not isinstance(waveform, torch.Tensor) or waveform.ndim not in (2, 3) or waveform.shape[-2] == 0:
        raise ValueError(
            "'audio' must be an AUDIO ({'waveform': [batch, channels, samples] tensor, 'sample_rate': int}), as core "
            f"Get Video Components or Load Audio give; got {type(audio).__name__}."
        )
    rate = int(audio.get("sample_rate") or 0)
    if rate <= 0:
        raise ValueError(f"'audio' has sample_rate {audio.get('sample_rate')!r}; it must be a positive number of "
                         "samples per second.")
    samples = (waveform if waveform.ndim == 2 else waveform[0]).detach().float().cpu().numpy()
    fitted = fit_samples(mono_or_stereo(samples), span_samples(frames, fps, rate))
    return {"waveform": torch.from_numpy(np.ascontiguousarray(fitted)).unsqueeze(0), "sample_rate": rate}


def image_to_video(images: torch.Tensor, fps: float, audio: dict | None = None):
    """IMAGE [N,H,W,3] + fps (+ AUDIO, fitted to the frames by audio_for_frames) -> VIDEO that core SaveVideo writes as
    H.264 mp4 with AAC sound (even sizes required by yuv420p)."""
    from comfy_api.input_impl import VideoFromComponents
    from comfy_api.util import VideoComponents

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}.")
    h, w = images.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 video needs even width and height, got {w}x{h}; resize to an even size first.")
    rate = Fraction(fps).limit_denominator(1001)
    sound = audio_for_frames(audio, len(images), rate) if audio is not None else None
    return VideoFromComponents(VideoComponents(images=images, audio=sound, frame_rate=rate))


class ImageBatchSink:
    """Engine frame sink that fills one preallocated IMAGE tensor segment by segment.

    Host memory holds the output IMAGE plus one segment, instead of every uint8 frame and then a float copy.
    """

    def __init__(self, num_frames: int):
        self.num_frames = num_frames
        self.image: torch.Tensor | None = None
        self.written = 0

    def write(self, frames: np.ndarray) -> None:
        if self.image is None:
            h, w = frames.shape[1:3]
            self.image = torch.empty((self.num_frames, h, w, 3), dtype=torch.float32)
        n = min(len(frames), self.num_frames - self.written)
        self.image[self.written:self.written + n] = torch.from_numpy(np.ascontiguousarray(frames[:n])).float().div_(255.0)
        self.written += n

    def result(self) -> torch.Tensor:
        if self.image is None or self.written != self.num_frames:
            raise RuntimeError(f"the engine produced {self.written} of {self.num_frames} frames.")
        return self.image
