"""Read byte ranges of a weights file into host buffers the fastest way for the state of the page cache.

A cold multi-GB file reads faster past the page cache: many O_DIRECT reads in flight keep a virtual disk's queue full
(on the H100 host, ext4, cold: 16 threads x 64 MB O_DIRECT 1.85 GB/s vs 1.72 for one sequential buffered reader and
1.46-1.68 for 8 buffered or direct threads), while data already cached is copied from memory at 7-12 GB/s and must not
come from the disk again. So each range is first read buffered with RWF_NOWAIT, which never waits for (nor, on current
kernels, starts) disk I/O: all the bytes come back when they are cached (warm); EAGAIN or a short count means some are
not (cold), and the range is then read with O_DIRECT from a second descriptor: the 4096-aligned superset of the range
into the start of a page-aligned buffer, the wanted bytes at the returned offset. Data read direct is not left in the
page cache, so loading the same cold file again is cold again (at the faster direct rate).

Fallbacks, silent and kept for the life of the file object: O_DIRECT unavailable (refused at open or a direct read
refused with EINVAL: some file systems) or switched off with the environment variable `WAN_LOADER_DIRECT_IO=0` ->
buffered reads; RWF_NOWAIT unsupported (non-Linux, old kernels) -> plain buffered reads, because without a cache
probe a direct read would fetch warm data from the disk again. Buffers that are not page-aligned, or have no room
for the aligned superset (size + 2 * ALIGN bytes), are read buffered.

Buffered positional reads use what the platform has, found when the file object is made (never at import):
os.preadv (Linux, BSDs, macOS 11+), else os.pread (other POSIX systems; one extra copy), else one file object per
reading thread with seek + readinto (Windows, whose Python has neither).
"""
from __future__ import annotations

import ctypes
import errno
import os
import threading

import torch

from ..errors import CorruptFileError

ALIGN = 4096  # O_DIRECT needs offsets, lengths and addresses on logical-block (<= page) boundaries


def aligned_empty(nbytes: int, pin: bool = False) -> torch.Tensor:
    """An uninitialised uint8 CPU tensor that starts on a page boundary (pinned memory already does; plain CPU
    allocations are only 64-byte aligned), so O_DIRECT can read into it."""
    raw = torch.empty(nbytes + ALIGN, dtype=torch.uint8, pin_memory=pin)
    skip = -raw.data_ptr() % ALIGN
    return raw[skip:skip + nbytes]


def _ends_early(path: str) -> CorruptFileError:
    return CorruptFileError(f"{path}: file ends early (truncated download?). Delete it and download it again.")


def _fill(read, buf: memoryview, offset: int, path: str) -> None:
    """Fill `buf` from `offset` with read(view, offset) -> bytes read, looping over short reads."""
    while len(buf):
        n = read(buf, offset)
        if n <= 0:
            raise _ends_early(path)
        buf = buf[n:]
        offset += n


class RangeFile:
    """A file read by byte ranges from many threads: a buffered descriptor, an O_DIRECT one, both opened on first
    use, and what the system was found to support for this file (`direct`, `nowait`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._fd: int | None = None
        self._direct_fd: int | None = None
        self._handles: list = []              # per-thread file objects of the seek + readinto path
        self._local = threading.local()
        self.direct = os.environ.get("WAN_LOADER_DIRECT_IO", "1") != "0" and hasattr(os, "O_DIRECT") and \
            hasattr(os, "preadv")
        self.nowait = hasattr(os, "RWF_NOWAIT") and hasattr(os, "preadv")
        if hasattr(os, "preadv"):
            self._read = self._read_preadv
        elif hasattr(os, "pread"):
            self._read = self._read_pread
        else:
            self._read = self._read_seek
        self._lock = threading.Lock()  # reader threads may be the first to ask for a descriptor

    @property
    def fd(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            return self._fd

    @property
    def direct_fd(self) -> int | None:
        """The O_DIRECT descriptor, or None where O_DIRECT is off or unsupported."""
        with self._lock:
            if self.direct and self._direct_fd is None:
                try:
                    self._direct_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECT)
                except OSError:
                    self.direct = False
            return self._direct_fd if self.direct else None

    def read_into(self, buf: memoryview, offset: int) -> None:
        """Fill `buf` with the bytes from `offset` on (buffered, safe from many threads at once). Raises
        CorruptFileError when the file ends first."""
        _fill(self._read, buf, offset, self.path)

    def _read_preadv(self, buf: memoryview, offset: int) -> int:
        return os.preadv(self.fd, [buf], offset)

    def _read_pread(self, buf: memoryview, offset: int) -> int:
        data = os.pread(self.fd, len(buf), offset)
        buf[:len(data)] = data
        return len(data)

    def _read_seek(self, buf: memoryview, offset: int) -> int:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._local.handle = open(self.path, "rb", buffering=0)
            with self._lock:
                self._handles.append(handle)
        handle.seek(offset)
        return handle.readinto(buf) or 0

    def close(self) -> None:
        with self._lock:
            for fd in (self._fd, self._direct_fd):
                if fd is not None:
                    os.close(fd)
            for handle in self._handles:
                handle.close()
            self._fd = self._direct_fd = None
            self._handles = []
            self._local = threading.local()

    def __del__(self):
        try:
            self.close()
        except (OSError, AttributeError):  # interpreter exit, or __init__ never ran
            pass


def read_range(file: RangeFile, buf: memoryview, pos: int, size: int) -> int:
    """Read bytes [pos, pos + size) of `file` into `buf`; return the offset in `buf` where they start (0 unless they
    were read direct). Raises CorruptFileError when the file ends before pos + size."""
    if size <= 0:
        return 0
    want = buf[:size]
    if file.nowait and file.direct:
        if _read_cached(file, want, pos) == size:
            return 0
        at = _read_direct(file, buf, pos, size) if file.nowait else None  # probe unsupported: no way to tell
        if at is not None:
            return at
    file.read_into(want, pos)
    return 0


def _read_cached(file: RangeFile, want: memoryview, pos: int) -> int:
    """How many leading bytes of the range were read from the page cache alone (fewer than asked: not all cached)."""
    try:
        return os.preadv(file.fd, [want], pos, os.RWF_NOWAIT)
    except BlockingIOError:  # EAGAIN: the first page is not cached
        return 0
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        file.nowait = False
        return 0


def _read_direct(file: RangeFile, buf: memoryview, pos: int, size: int) -> int | None:
    """O_DIRECT read of the aligned superset of the range into the start of `buf`: the offset of `pos` in `buf`, or
    None when this buffer or file cannot be read direct (the caller then reads buffered)."""
    start = pos - pos % ALIGN
    end = -(-(pos + size) // ALIGN) * ALIGN
    if end - start > len(buf) or ctypes.addressof(ctypes.c_char.from_buffer(buf)) % ALIGN:
        return None
    fd = file.direct_fd
    if fd is None:
        return None
    view, done = buf[:end - start], 0
    try:
        while done < len(view) and done % ALIGN == 0:  # only a read that hits the end of the file stops unaligned
            n = os.preadv(fd, [view[done:]], start + done)
            if n <= 0:
                break
            done += n
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        file.direct = False
        return None
    if done < pos + size - start:
        raise _ends_early(file.path)
    return pos - start
