"""How a video of any length is cut into overlapping segments (official `WanAnimate.generate`).

Each segment generates `segment_frames` (4n+1) frames. Every segment after the first starts with `guide_frames`
frames re-used from the previous segment's decoded output, so consecutive segments advance by
`segment_frames - guide_frames`. The driving inputs are padded to a whole number of segments by ping-pong
(mirror) repetition, computed as an index map so nothing is copied.
"""
from __future__ import annotations

from dataclasses import dataclass

GUIDE_FRAME_CHOICES = (1, 5)
FRAMES_PER_LATENT = 4  # the Wan VAE packs 4 frames into each latent frame after the first: segments are 4n+1 frames
MIN_SEGMENT_FRAMES = 1 + FRAMES_PER_LATENT


def is_segment_length(frames: int) -> bool:
    """Whether a segment of `frames` frames fits the VAE's time packing (4n+1, at least 5)."""
    return frames >= MIN_SEGMENT_FRAMES and (frames - 1) % FRAMES_PER_LATENT == 0


def segment_length_holding(frames: int) -> int:
    """The smallest valid segment length (4n+1, at least 5) with room for `frames` frames."""
    n = -(-(frames - 1) // FRAMES_PER_LATENT)
    return max(MIN_SEGMENT_FRAMES, n * FRAMES_PER_LATENT + 1)


@dataclass(frozen=True)
class SegmentPlan:
    num_frames: int  # real frames in the driving video (the output length)
    segment_frames: int  # frames generated per segment (4n+1)
    guide_frames: int  # frames carried over from the previous segment (1 or 5)
    starts: tuple[int, ...]  # first (padded) input frame of every segment

    @property
    def num_segments(self) -> int:
        return len(self.starts)

    @property
    def latent_frames(self) -> int:
        """Latent frames of the generated part of a segment (the reference latent frame comes on top)."""
        return (self.segment_frames - 1) // FRAMES_PER_LATENT + 1

    def output_range(self, index: int) -> tuple[int, int]:
        """[first, end) of the output frames that segment `index` contributes (its guide frames excluded)."""
        start = self.starts[index]
        first = start if index == 0 else start + self.guide_frames
        return min(first, self.num_frames), min(start + self.segment_frames, self.num_frames)


def check_segment_frames(segment_frames: int, guide_frames: int) -> None:
    if guide_frames not in GUIDE_FRAME_CHOICES:
        raise ValueError(
            f"guide_frames={guide_frames}: the model was trained with 1 or 5 temporal guidance frames; use 1 "
            "(official default) or 5 (smoother segment joins)."
        )
    if not is_segment_length(segment_frames):
        upper = segment_length_holding(segment_frames)
        lower = max(MIN_SEGMENT_FRAMES, upper - FRAMES_PER_LATENT)
        raise ValueError(
            f"segment_frames={segment_frames}: a segment must have 4n+1 frames, at least {MIN_SEGMENT_FRAMES} (the "
            f"VAE packs 4 frames per latent frame after the first), e.g. {lower} or {max(upper, lower + 4)}; the "
            "official default is 77."
        )
    if segment_frames <= guide_frames:
        raise ValueError(f"segment_frames={segment_frames} must exceed guide_frames={guide_frames}.")


def plan_segments(num_frames: int, segment_frames: int = 77, guide_frames: int = 1, fit_short: bool = True) -> SegmentPlan:
    """Segment starts exactly as the official loop visits them.

    fit_short: a video shorter than one segment is generated with the smallest 4n+1 segment that holds it instead
    of being ping-pong padded to `segment_frames` (same frames conditioned the same way, less work).
    """
    check_segment_frames(segment_frames, guide_frames)
    if num_frames < 1:
        raise ValueError("The driving video has no frames.")
    if num_frames <= segment_frames:
        if fit_short:
            segment_frames = segment_length_holding(num_frames)
        return SegmentPlan(num_frames, segment_frames, guide_frames, (0,))
    stride = segment_frames - guide_frames
    remainder = (num_frames - guide_frames) % stride
    padded = num_frames + (stride - remainder if remainder else 0)
    starts = tuple(range(0, padded - guide_frames, stride))
    return SegmentPlan(num_frames, segment_frames, guide_frames, starts)


def pingpong_index(index: int, length: int) -> int:
    """Input frame shown at padded position `index`: 0,1,..,n-1,n-2,..,1,0,1,.. (official `inputs_padding`)."""
    if length == 1:
        return 0
    period = 2 * (length - 1)
    m = index % period
    return m if m < length else period - m


def zigzag_index(index: int, length: int) -> int:
    """Input frame shown at padded position `index`: 0,1,..,n-1,n-1,..,1,0,0,1,.. (Wan-Animate-2's padding, which
    repeats the end frame; diffusers' pipeline pads once and fails when more padding than frames is needed)."""
    m = index % (2 * length)
    return m if m < length else 2 * length - 1 - m


def segment_indices(plan: SegmentPlan, index: int, length: int, pad=pingpong_index) -> list[int]:
    """Indices into an input of `length` frames for every frame of segment `index`, padded by `pad`."""
    start = plan.starts[index]
    return [pad(i, length) for i in range(start, start + plan.segment_frames)]
