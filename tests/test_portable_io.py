"""Portable weight reading: every layout loads bit-exactly on the read paths of systems this machine is not.

The platforms are forced on Linux by removing from `os` what they lack: "posix-pread" (a POSIX system without
preadv, O_DIRECT, RWF_NOWAIT, pwritev, posix_fadvise: os.pread) and "forced-windows" (also without os.pread, as on
Windows: one file object per reading thread, seek + readinto). Files, paths and tensors are real; only the
platform's missing functions are simulated (by their absence). Paths typed the Windows way are checked for what
Linux does with them: normalised where that names a real file, a clear error otherwise.
"""
from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wan_loader import load_components, load_transformer
from wan_loader.io import stream
from wan_loader.io.direct_io import RangeFile
from wan_loader.io.readers import SafetensorsFile, tensor_bytes
from wan_loader.errors import CorruptFileError
from wan_loader.writers import Written, layout_tensors, weights_from_module, write_components, write_sharded

WEIGHTS = ("transformer", "vae", "text_encoder", "image_encoder")
LAYOUTS = {  # name -> (layout, dtype, comfy key prefix)
    "diffusers": ("diffusers", "fp32", ""),
    "original": ("original", "fp32", ""),
    "comfy": ("comfy", "fp32", "model.diffusion_model."),
    "comfy_fp8_scaled": ("comfy", "fp8_e4m3fn", ""),
}
MISSING = {  # forced platform -> os attributes it lacks
    "posix-pread": ("preadv", "pwritev", "O_DIRECT", "RWF_NOWAIT", "posix_fadvise"),
    "forced-windows": ("preadv", "pwritev", "O_DIRECT", "RWF_NOWAIT", "posix_fadvise", "pread"),
}
READER = {"posix-pread": "_read_pread", "forced-windows": "_read_seek"}


@pytest.fixture(scope="module")
def written(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("portable")
    for name, (layout, dtype, prefix) in LAYOUTS.items():
        write_components(tiny, root / name, layout, dtype, prefix=prefix)
    w = weights_from_module("transformer", tiny.transformer)
    write_sharded(root / "sharded", "diffusion_pytorch_model", layout_tensors(w, "diffusers", torch.float32),
                  Written(), shard_bytes=50_000)
    return root


PLATFORMS = pytest.mark.parametrize("platform", list(MISSING))


def force(monkeypatch, platform: str) -> list[int]:
    """Remove what the platform lacks from `os`; the sizes of the reads its fallback makes (proof that it ran)."""
    for name in MISSING[platform]:
        monkeypatch.delattr(os, name, raising=False)
    reads: list[int] = []
    method = READER[platform]
    real = getattr(RangeFile, method)

    def counted(self, buf, offset):
        reads.append(len(buf))
        return real(self, buf, offset)

    monkeypatch.setattr(RangeFile, method, counted)
    return reads


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.reshape(-1).view(torch.uint8),
                                                                     b.reshape(-1).view(torch.uint8))


def state(components) -> dict[str, dict[str, torch.Tensor]]:
    return {c: getattr(components, c).state_dict() for c in WEIGHTS}


@PLATFORMS
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_loads_bit_exact_without_linux_reads(written, monkeypatch, name, platform):
    """The same files loaded through the Linux fast path and through the forced platform's path: the same bits."""
    dtype = "fp8_e4m3fn" if "fp8" in name else "fp32"
    want = state(load_components(written / name, weight_dtype=dtype, compute_dtype="fp32", vae_dtype="fp32"))
    reads = force(monkeypatch, platform)
    got = state(load_components(written / name, weight_dtype=dtype, compute_dtype="fp32", vae_dtype="fp32"))
    assert reads, f"{platform}: the fallback read nothing"
    for component in WEIGHTS:
        assert set(got[component]) == set(want[component]), component
        bad = [k for k in want[component] if not same_bits(got[component][k], want[component][k])]
        assert not bad, f"{platform} {name} {component}: {bad[:5]}"


@PLATFORMS
def test_sharded_transformer_loads_bit_exact_on_forced_platform(tiny, written, platform, monkeypatch):
    reads = force(monkeypatch, platform)
    assert len(list((written / "sharded").glob("*.safetensors"))) >= 3
    got = load_transformer(written / "sharded", weight_dtype="fp32").state_dict()
    want = tiny.transformer.state_dict()
    assert reads and set(got) == set(want)
    assert all(same_bits(got[k], want[k]) for k in want), platform


@PLATFORMS
def test_staged_ring_with_many_threads_is_bit_exact_on_forced_platform(written, monkeypatch, platform):
    """The GPU path's staging ring (run on the CPU): 4 threads read 1000-byte pieces of one file at once, which on
    the forced-Windows path means 4 file objects each seeking on its own."""
    path = next((written / "comfy_fp8_scaled" / "diffusion_models").glob("*.safetensors"))
    want = load_transformer(path, weight_dtype="fp8_e4m3fn", compute_dtype="fp32").state_dict()
    reads = force(monkeypatch, platform)
    monkeypatch.setattr(stream, "Stager", functools.partial(stream.Stager, chunk_bytes=1000, buffers=3, threads=4,
                                                             staged=True))
    got = load_transformer(path, weight_dtype="fp8_e4m3fn", compute_dtype="fp32").state_dict()
    assert len(reads) > 100 and max(reads) <= 1000
    assert set(got) == set(want) and all(same_bits(got[k], want[k]) for k in want), platform


@PLATFORMS
def test_forced_platform_reader_is_chosen_and_closes_its_files(written, platform, monkeypatch):
    reads = force(monkeypatch, platform)
    path = next((written / "comfy" / "diffusion_models").glob("*.safetensors"))
    file = SafetensorsFile(path)
    assert not file.direct and not file.nowait
    key = file.keys()[0]
    assert same_bits(file.get(key), load_file(str(path))[key])
    handles = list(file._handles)
    assert reads and (len(handles) == 1) == (platform == "forced-windows")
    file.close()
    assert all(h.closed for h in handles) and file._handles == [] and file._fd is None


@PLATFORMS
def test_file_ending_early_is_a_corrupt_file_on_forced_platform(tmp_path, platform, monkeypatch):
    force(monkeypatch, platform)
    path = tmp_path / "short.bin"
    path.write_bytes(b"x" * 100)
    file = RangeFile(path)
    buf = tensor_bytes(torch.empty(50, dtype=torch.uint8))
    file.read_into(buf, 50)
    assert bytes(buf) == b"x" * 50
    with pytest.raises(CorruptFileError, match="short.bin: file ends early"):
        file.read_into(tensor_bytes(torch.empty(51, dtype=torch.uint8)), 50)
    file.close()


@PLATFORMS
@pytest.mark.parametrize("folder", ["models with spaces", "mödels ünïcode 模型", "a b/ç d"])
def test_paths_with_spaces_and_non_ascii_load(tiny, tmp_path, folder, platform, monkeypatch):
    reads = force(monkeypatch, platform)
    root = tmp_path / folder
    write_components(tiny, root, "comfy", "fp32")
    file = next((root / "diffusion_models").glob("*.safetensors"))
    for given in (file, str(file)):
        got = load_transformer(given, weight_dtype="fp32").state_dict()
        assert all(same_bits(got[k], v) for k, v in tiny.transformer.state_dict().items())
    out = load_components(str(root), components=["vae"], vae_dtype="fp32")
    assert reads and out.sources["vae"].count(folder) == 1


def test_backslash_path_is_read_as_separators_where_that_names_a_file(tiny, written, monkeypatch):
    """A relative path typed the Windows way (models\\diffusion_models\\x.safetensors) on Linux: the backslashes are
    separators when the path does not exist as written and the '/' one does."""
    monkeypatch.chdir(written / "comfy")
    file = next(Path("diffusion_models").glob("*.safetensors"))
    model = load_transformer(f"diffusion_models\\{file.name}", weight_dtype="fp32")
    assert all(same_bits(model.state_dict()[k], v) for k, v in tiny.transformer.state_dict().items())
    vae = next(Path("vae").glob("*.safetensors"))
    out = load_components(components=["vae"], vae=f".\\vae\\{vae.name}", vae_dtype="fp32")
    assert all(same_bits(out.vae.state_dict()[k], v) for k, v in tiny.vae.state_dict().items())


def test_backslash_name_that_exists_on_linux_is_taken_as_written(tiny, tmp_path):
    """On Linux a backslash is a legal file-name character: a file really named that way is used as is."""
    write_components(tiny, tmp_path / "w", "comfy", "fp32")
    src = next((tmp_path / "w" / "diffusion_models").glob("*.safetensors"))
    literal = tmp_path / "odd\\name.safetensors"
    shutil.copyfile(src, literal)
    model = load_transformer(str(literal), weight_dtype="fp32")
    assert same_bits(model.proj_out.weight, tiny.transformer.proj_out.weight)


@pytest.mark.parametrize("given", ["C:\\models\\wan2.2_animate.safetensors", "models\\missing.safetensors"])
def test_backslash_path_that_names_nothing_says_so(tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        load_transformer(given)
    assert str(e.value).startswith(given) and "no such file or folder" in str(e.value)
    assert "backslashes: on this system folders are separated by '/'" in str(e.value)
    with pytest.raises(FileNotFoundError, match="given as the vae.*backslashes"):
        load_components(components=["vae"], vae=given)


def test_home_and_dot_segments_are_normalised(tiny, written, monkeypatch):
    monkeypatch.setenv("HOME", str(written))
    file = next((written / "comfy" / "diffusion_models").glob("*.safetensors"))
    for given in (f"~/comfy/diffusion_models/{file.name}", f"{written}/comfy/./vae/../diffusion_models/{file.name}"):
        model = load_transformer(given, weight_dtype="fp32")
        assert same_bits(model.proj_out.weight, tiny.transformer.proj_out.weight), given
