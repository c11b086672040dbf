"""The official working-size rule (resize_by_area) and letterboxing (padding_resize), with keypoint mapping.

Official `resize_by_area(img, 1280*720, divisor=16)` first tries an exact search (`calculate_new_size`) that
always raises TypeError (its `check_valid` is called with one argument too many), so the size the official
pipeline really produces is the fallback: the exact-area size with each side floored to the divisor. That is
`rule="official"` here (the default, so outputs match the official file set). `rule="exact"` is the search as
it was meant to work: the largest area not above the target with both sides divisible, closest aspect first.
Either way the image is letterboxed into that size (aspect kept, black bars of a few pixels at most).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import InputSizeError

OFFICIAL_AREA = 1280 * 720
OFFICIAL_DIVISOR = 16
MIN_AREA = OFFICIAL_DIVISOR**2  # the smallest working area: one divisor x divisor block
MAX_ASPECT = 8.0  # beyond 1:8 the working size is a sliver the model cannot use


def _check_image_size(width: int, height: int, what: str) -> None:
    if width < 2 or height < 2:
        raise InputSizeError(f"{what} is {width}x{height} pixels; it needs at least 2 pixels each way.")


def size_by_area(
    width: int, height: int, area: int = OFFICIAL_AREA, divisor: int = OFFICIAL_DIVISOR, rule: str = "official",
    what: str = "image",
) -> tuple[int, int]:
    """(new_width, new_height): about `area` pixels, same aspect, both sides multiples of `divisor`."""
    _check_image_size(width, height, what)
    ratio = width / height
    if rule == "official":
        new_h = math.sqrt(area / ratio)
        new_w = area / new_h
        new_w, new_h = int((new_w // divisor) * divisor), int((new_h // divisor) * divisor)
    elif rule == "exact":
        new_w, new_h = _exact_search(ratio, area, divisor)
    else:
        raise ValueError(f"rule must be 'official' or 'exact', got {rule!r}")
    if new_w < divisor or new_h < divisor or max(ratio, 1 / ratio) > MAX_ASPECT:
        raise InputSizeError(
            f"{what} of {width}x{height} (aspect {ratio:.3g}) gives a working size of {new_w}x{new_h} at area {area}: "
            f"each side must be at least {divisor} and the aspect within 1:{MAX_ASPECT:g}. Crop it to a less extreme "
            "aspect ratio or raise the area."
        )
    return new_w, new_h


def _exact_search(ratio: float, area: int, divisor: int) -> tuple[int, int]:
    best_key, best = (0, 0.0), (0, 0)
    max_h = int(math.sqrt(area / ratio)) + divisor
    for h in range(divisor, max_h + divisor, divisor):
        ideal_w = h * ratio
        for w in (divisor * int(ideal_w // divisor), divisor * math.ceil(ideal_w / divisor)):
            if w <= 0 or w * h > area:
                continue
            key = (w * h, -abs(w / h - ratio))
            if key > best_key:
                best_key, best = key, (w, h)
    return best


def letterbox_geometry(src_h: int, src_w: int, dst_h: int, dst_w: int) -> tuple[float, int, int, int, int]:
    """(scale, new_h, new_w, pad_top, pad_left) of official padding_resize: fit inside, centre, integer bars."""
    if src_h / src_w > dst_h / dst_w:
        new_w = int(dst_h / src_h * src_w)
        return dst_h / src_h, dst_h, new_w, 0, int((dst_w - new_w) / 2)
    new_h = int(dst_w / src_w * src_h)
    return dst_w / src_w, new_h, dst_w, int((dst_h - new_h) / 2), 0


def letterbox(image: np.ndarray, height: int, width: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Official padding_resize: resize keeping aspect to fit (height, width), centred on black."""
    src_h, src_w = image.shape[:2]
    _check_image_size(src_w, src_h, "image")
    _, new_h, new_w, top, left = letterbox_geometry(src_h, src_w, height, width)
    out = np.zeros((height, width) + image.shape[2:], dtype=np.uint8)
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    out[top:top + new_h, left:left + new_w] = resized.reshape((new_h, new_w) + image.shape[2:])
    return out


def letterbox_points(points: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Map (..., 2) pixel coordinates through letterbox() from a src_hw image to a dst_hw one."""
    scale, _, _, top, left = letterbox_geometry(*src_hw, *dst_hw)
    return np.asarray(points, dtype=np.float64) * scale + np.array([left, top], dtype=np.float64)


def resize_by_area(
    image: np.ndarray, area: int = OFFICIAL_AREA, divisor: int = OFFICIAL_DIVISOR, rule: str = "official",
    what: str = "image",
) -> np.ndarray:
    """Official resize_by_area: letterbox into size_by_area(), INTER_AREA when shrinking, else INTER_LINEAR."""
    h, w = image.shape[:2]
    new_w, new_h = size_by_area(w, h, area, divisor, rule, what)
    interpolation = cv2.INTER_AREA if new_w * new_h < w * h else cv2.INTER_LINEAR
    return letterbox(image, new_h, new_w, interpolation)
