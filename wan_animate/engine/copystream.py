"""Copies between host and device memory on a side CUDA stream, ordered against the compute stream by events.

Block swap (engine.blockswap) brings swapped blocks in this way, and Wan-Animate-2's driving K/V cache in host memory
(engine.animate2.kvcache) takes its layers out in the driving pass and brings them back in for sampling. Nothing
synchronises the host: the compute stream waits on a copy's event before it reads what was copied, and a copy waits
on an event recorded after the compute stream's last use of the memory it overwrites (`mark`). On other devices (the
CPU) copies are plain synchronous copies and every event is None, so the same bookkeeping runs there.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

Event = torch.cuda.Event | None


class CopyStream:
    """One side stream of `device` for copies (None off CUDA); one queue, as the host link moves one thing at a time."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None

    def mark(self) -> Event:
        """An event after the work queued on the compute stream so far (None off CUDA)."""
        if not self.cuda:
            return None
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event

    def copy(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], after: Event = None) -> Event:
        """Copy each (destination, source) on the side stream once `after` (from `mark`) has passed; returns the
        event of their end (None off CUDA, where they are done on return)."""
        if not self.cuda:
            for dst, src in pairs:
                dst.copy_(src)
            return None
        with torch.cuda.stream(self.stream):
            if after is not None:
                self.stream.wait_event(after)
            for dst, src in pairs:
                dst.copy_(src, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        return done

    def wait(self, event: Event) -> None:
        """The compute stream's next work waits for `event` (a copy's end)."""
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)

    def synchronize(self) -> None:
        """The host waits for every copy queued (before it frees host memory they may still read or write)."""
        if self.cuda:
            self.stream.synchronize()
