"""Where Wan-Animate-2's frames come from: output size, letterboxing, frame-rate resampling (diffusers' steps).

The output frame has a target *area* and the reference image's aspect ratio (sides multiples of 16). The reference
and every driving frame are letterboxed into it (aspect kept, black bars, content pasted at ((W - w) // 2,
(H - h) // 2)); the bars are cropped off the generated video at the end. The reference is resized bicubic, the
driving frames bilinear, with PIL, as the diffusers pipeline does. A driving video of another frame rate is
resampled to the model's by nearest frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZE_MULTIPLE = 16  # VAE stride 8 x patch 2
DEFAULT_AREA = 800 * 640  # diffusers' default height x width


@dataclass(frozen=True)
class Framing:
    height: int
    width: int
    crop: tuple[int, int, int, int]  # (top, left, height, width) of the reference's content in the frame

    def crop_frames(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, C) generated frames -> the reference content's region."""
        top, left, height, width = self.crop
        return frames[:, top:top + height, left:left + width]


def plan_framing(reference_hw: tuple[int, int], area: int = DEFAULT_AREA) -> Framing:
    """Output frame for a reference of (height, width) pixels and a target area (pixels)."""
    ref_h, ref_w = reference_hw
    image_h = round(math.sqrt(ref_w * ref_h * (ref_h / ref_w))) // SIZE_MULTIPLE * SIZE_MULTIPLE
    image_w = round(math.sqrt(ref_w * ref_h / (ref_h / ref_w))) // SIZE_MULTIPLE * SIZE_MULTIPLE
    if image_h < SIZE_MULTIPLE or image_w < SIZE_MULTIPLE:
        raise ValueError(f"The reference image is {ref_w}x{ref_h} pixels; Wan-Animate-2 needs at least "
                         f"{SIZE_MULTIPLE} pixels on each side. Use a larger reference image.")
    aspect = image_h / image_w
    height = int(math.sqrt(area * aspect)) // SIZE_MULTIPLE * SIZE_MULTIPLE
    width = int(math.sqrt(area / aspect)) // SIZE_MULTIPLE * SIZE_MULTIPLE
    if height < SIZE_MULTIPLE or width < SIZE_MULTIPLE:
        raise ValueError(f"resolution area {area} gives a {width}x{height} frame for this reference's aspect; "
                         f"raise the area so both sides are at least {SIZE_MULTIPLE}.")
    wider = width / height < image_w / image_h
    crop_w = width if wider else image_w * height // image_h
    crop_h = height if width / height >= image_w / image_h else image_h * width // image_w
    return Framing(height, width, ((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w))


def letterbox(frame: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (height, width, 3) uint8, aspect kept, centred on black."""
    image = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
    fits_width = width / height < image.width / image.height
    src_w = width if fits_width else image.width * height // image.height
    src_h = height if width / height >= image.width / image.height else image.height * width // image.width
    canvas = Image.new("RGB", (width, height), color=0)
    canvas.paste(image.resize((src_w, src_h), resample=resample), box=((width - src_w) // 2, (height - src_h) // 2))
    return np.array(canvas)


def letterbox_reference(image: np.ndarray, framing: Framing) -> np.ndarray:
    return letterbox(image, framing.height, framing.width, Image.BICUBIC)


def letterbox_driving(frame: np.ndarray, framing: Framing) -> np.ndarray:
    return letterbox(frame, framing.height, framing.width, Image.BILINEAR)


def resample_indices(num_frames: int, video_fps: float, fps: float) -> list[int]:
    """Nearest source frame for each output frame when a `video_fps` clip is played at `fps`."""
    count = int(num_frames / video_fps * fps)
    times = np.arange(count) / fps
    return np.clip(np.round(times * video_fps).astype(int), 0, num_frames - 1).tolist()


class Resampled:
    """A lazy view of a frame sequence through an index map (nothing is read until a frame is asked for)."""

    def __init__(self, frames, indices: list[int]):
        self.frames = frames
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.frames[self.indices[i]])
