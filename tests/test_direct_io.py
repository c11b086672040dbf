"""direct_io: byte ranges of real files on disk come back bit-exact on the warm (page cache), cold (O_DIRECT) and
fallback paths, and the staged Stager copies them from the right offsets.

A cold page cache is simulated by making the RWF_NOWAIT probe fail with EAGAIN, as it does on cold data: really
dropping caches needs root and slows every process on the machine. Missing kernel support (O_DIRECT, RWF_NOWAIT) is
simulated the same way, with the errno the kernel gives."""
from __future__ import annotations

import errno
import os

import pytest
import torch

from wan_loader.io.direct_io import ALIGN, RangeFile, aligned_empty, read_range
from wan_loader.errors import CorruptFileError
from wan_loader.io.readers import SafetensorsFile, tensor_bytes
from wan_loader.io.stream import Stager

SIZE = 30 * ALIGN + 1234  # the file does not end on a page boundary
RANGES = [(0, 1), (0, ALIGN), (1, ALIGN), (ALIGN - 1, 2), (5 * ALIGN, 3 * ALIGN), (777, 9 * ALIGN + 5),
          (SIZE - 10, 10), (SIZE - ALIGN - 3, ALIGN + 3), (SIZE - 1234, 1234), (123, SIZE - 123), (0, SIZE),
          (100, 0), (SIZE, 0)]


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(SIZE)
    path = tmp_path / "random.bin"
    path.write_bytes(data)
    assert path.read_bytes() == data  # cached: the warm path
    file = RangeFile(path)
    yield file, data
    file.close()


def read(file, pos, size, misalign=0):
    """read_range into a page-aligned buffer (shifted by `misalign` bytes): (bytes, offset they start at)."""
    buf = aligned_empty(size + 2 * ALIGN + misalign)
    view = tensor_bytes(buf)[misalign:]
    at = read_range(file, view, pos, size)
    return bytes(view[at:at + size]), at


@pytest.fixture
def calls(monkeypatch):
    """Records every os.preadv as (fd, flags); `cold` makes the RWF_NOWAIT probe fail like on uncached data,
    `refuse[flags-or-fd] = errno` makes the kernel refuse a kind of read."""
    real = os.preadv

    class Calls(list):
        def __init__(self):
            super().__init__()
            self.cold, self.refuse = False, {}

        def preadv(self, fd, buffers, offset, flags=0):
            self.append((fd, flags))
            if flags and self.cold:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            for key in (flags, fd):
                if key in self.refuse:
                    raise OSError(self.refuse[key], os.strerror(self.refuse[key]))
            return real(fd, buffers, offset, flags)

    c = Calls()
    monkeypatch.setattr(os, "preadv", c.preadv)
    return c


def test_warm_ranges_come_from_the_page_cache(data_file, calls):
    file, data = data_file
    for pos, size in RANGES:
        assert read(file, pos, size) == (data[pos:pos + size], 0), (pos, size)
    assert {flags for _, flags in calls} == {os.RWF_NOWAIT}  # one probe a range, each answered in full
    assert file._direct_fd is None  # never needed


def test_cold_ranges_are_read_direct_at_an_offset(data_file, calls):
    file, data = data_file
    calls.cold = True
    for pos, size in RANGES:
        got, at = read(file, pos, size)
        assert got == data[pos:pos + size], (pos, size)
        assert at == (pos % ALIGN if size else 0), (pos, size)
    assert file.direct_fd is not None and any(fd == file.direct_fd for fd, _ in calls)


def test_partly_cached_range_is_read_direct_whole(data_file, monkeypatch):
    """RWF_NOWAIT returns a short count when only the first pages are cached."""
    file, data = data_file
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, off, flags=0:
                        real(fd, [bufs[0][:100]], off) if flags else real(fd, bufs, off))
    assert read(file, 4100, 3 * ALIGN) == (data[4100:4100 + 3 * ALIGN], 4)


def test_unaligned_or_small_buffers_are_read_buffered(data_file, calls):
    file, data = data_file
    calls.cold = True
    assert read(file, 777, 5000, misalign=1) == (data[777:5777], 0)
    buf = aligned_empty(5000)  # no room for the aligned superset
    assert read_range(file, tensor_bytes(buf), 777, 5000) == 0 and bytes(tensor_bytes(buf)) == data[777:5777]
    assert file._direct_fd is None


def test_no_o_direct_falls_back_to_buffered_for_good(data_file, calls, monkeypatch):
    """Where open(O_DIRECT) is refused (EINVAL: e.g. tmpfs on older kernels) reads are buffered."""
    file, data = data_file
    real_open, opens = os.open, []

    def open_(path, flags, *a):
        opens.append(flags)
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", open_)
    calls.cold = True
    for pos, size in RANGES:
        assert read(file, pos, size) == (data[pos:pos + size], 0)
    assert file.direct_fd is None and not file.direct
    assert sum(1 for f in opens if f & os.O_DIRECT) == 1


def test_direct_read_refused_falls_back_to_buffered_for_good(data_file, calls):
    file, data = data_file
    calls.cold = True
    calls.refuse[file.direct_fd] = errno.EINVAL
    for pos, size in RANGES[:5]:
        assert read(file, pos, size) == (data[pos:pos + size], 0)
    assert not file.direct
    assert sum(1 for fd, _ in calls if fd == file._direct_fd) == 1  # tried once


def test_direct_io_switched_off_by_environment(data_file, calls, monkeypatch):
    monkeypatch.setenv("WAN_LOADER_DIRECT_IO", "0")
    file = RangeFile(data_file[0].path)
    calls.cold = True
    assert read(file, 777, 3 * ALIGN) == (data_file[1][777:777 + 3 * ALIGN], 0)
    assert file.direct_fd is None
    assert all(flags == 0 for _, flags in calls)  # today's plain buffered reads, no probe
    file.close()


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.EINVAL])
def test_no_rwf_nowait_means_plain_buffered_reads(data_file, calls, err):
    """Without a cache probe a direct read could fetch warm data from the disk again: read buffered instead."""
    file, data = data_file
    calls.refuse[os.RWF_NOWAIT] = err
    for pos, size in RANGES[:5]:
        assert read(file, pos, size) == (data[pos:pos + size], 0)
    assert not file.nowait and file._direct_fd is None
    assert sum(1 for _, flags in calls if flags) == 1  # probed once


@pytest.mark.parametrize("cold", [False, True])
def test_range_past_the_end_is_a_corrupt_file(data_file, calls, cold):
    file, _ = data_file
    calls.cold = cold
    for pos, size in ((SIZE - 10, 11), (SIZE - 1234, 5 * ALIGN), (SIZE + ALIGN, 1)):
        with pytest.raises(CorruptFileError, match="random.bin: file ends early"):
            read(file, pos, size)


@pytest.fixture
def safetensors_file(tmp_path):
    """Tensors of several dtypes and odd sizes, so most start and end off page boundaries, some span many chunks."""
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(0)
    tensors = {"a": torch.randn(37, 129, generator=g), "b": torch.randn(3, 1001, generator=g).to(torch.bfloat16),
               "c": torch.randint(0, 255, (7,), generator=g, dtype=torch.uint8),
               "d": torch.randn(20000, generator=g).to(torch.float8_e4m3fn), "e": torch.zeros(0),
               "f": torch.randn(5, 4097, generator=g).to(torch.float16)}
    path = tmp_path / "weights.safetensors"
    save_file(tensors, str(path))
    return path, tensors


@pytest.mark.parametrize("cold", [False, True])
def test_staged_stager_is_bit_exact(safetensors_file, calls, cold):
    """The GPU path's staging ring on the CPU: read -> page-aligned slot -> copy from the piece's offset."""
    path, tensors = safetensors_file
    file = SafetensorsFile(path)
    calls.cold = cold
    stager = Stager(torch.device("cpu"), chunk_bytes=3 * ALIGN + 100, buffers=3, threads=4, staged=True)
    got = {}
    for key in tensors:
        got[key] = torch.empty(file.shape(key), dtype=file.dtype(key))
        _, start, end = file.byte_range(key)
        stager.read(file, start, end, got[key])
    stager.close()
    for key, want in tensors.items():
        assert torch.equal(got[key].view(torch.uint8), want.view(torch.uint8)), key
    assert any(fd == file._direct_fd for fd, _ in calls) == cold  # the cold run really read direct, at offsets
    file.close()


def test_staged_stager_names_a_file_truncated_after_opening(safetensors_file, calls):
    path, tensors = safetensors_file
    file = SafetensorsFile(path)
    os.truncate(path, os.path.getsize(path) - 5000)
    calls.cold = True
    stager = Stager(torch.device("cpu"), chunk_bytes=4 * ALIGN, buffers=3, threads=2, staged=True)
    with pytest.raises(CorruptFileError, match="weights.safetensors: file ends early"):
        for key in tensors:
            _, start, end = file.byte_range(key)
            stager.read(file, start, end, torch.empty(file.shape(key), dtype=file.dtype(key)))
        stager.drain()
    stager.pool.shutdown(wait=True, cancel_futures=True)
    file.close()
