"""Where the detection and pose ONNX files are: an explicit path, a models folder, or the Hugging Face Hub.

Search folders are given by the caller (the ComfyUI nodes pass folder_paths' `detection` folders; the command line
passes --models). Inside each, the file is looked for directly and in the sub-folders the usual downloads create
(`detection/`, Wan-AI's `process_checkpoint/det|pose2d/`, `onnx/`), so a Wan-AI checkout works as well as ComfyUI's
`models/detection`. Downloads go through wan_loader's Hub downloader (huggingface_hub underneath), so HF_HOME,
HF_HUB_CACHE, HF_HUB_OFFLINE and tokens apply and transient network errors are retried.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wan_loader.discovery import hub

from .model_identity import Slot

LFS_POINTER_PREFIX = b"version https://git-lfs"
GRAPH_ONLY_MAX_BYTES = 64 * 2**20  # files this small may keep their weights in separate external-data files


@dataclass(frozen=True)
class HubFile:
    """A known model file on the Hub; `companions` are fetched with it (external-data weights)."""

    repo_id: str
    filename: str
    companions: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/blob/main/{self.filename}"


KNOWN_FILES: dict[str, HubFile] = {
    "yolov10m.onnx": HubFile("Wan-AI/Wan2.2-Animate-14B", "process_checkpoint/det/yolov10m.onnx"),
    "vitpose_h_wholebody.onnx": HubFile(
        "Wan-AI/Wan2.2-Animate-14B",
        "process_checkpoint/pose2d/vitpose_h_wholebody.onnx",
        companions=("process_checkpoint/pose2d/*",),
    ),
    "vitpose_h_wholebody_model.onnx": HubFile(
        "Kijai/vitpose_comfy",
        "onnx/vitpose_h_wholebody_model.onnx",
        companions=("onnx/vitpose_h_wholebody_data.bin",),
    ),
    "vitpose-l-wholebody.onnx": HubFile("JunkyByte/easy_ViTPose", "onnx/wholebody/vitpose-l-wholebody.onnx"),
}

# Preference order when no file is named: the official models first.
SLOT_FILES: dict[str, tuple[str, ...]] = {
    "detector": ("yolov10m.onnx",),
    "pose": ("vitpose_h_wholebody.onnx", "vitpose_h_wholebody_model.onnx", "vitpose-l-wholebody.onnx"),
}
SUBFOLDERS = ("", "detection", "det", "pose2d", "process_checkpoint/det", "process_checkpoint/pose2d", "onnx", "onnx/wholebody")


class ModelNotFoundError(FileNotFoundError):
    """No model file for a slot could be found or downloaded."""


class ModelFileError(ValueError):
    """A model file exists but can't be used as it is (LFS pointer, missing external data, not ONNX)."""


def find_in_dirs(name: str, search_dirs: Iterable[str | os.PathLike]) -> Path | None:
    """The first `name` found in the search folders or their usual sub-folders."""
    for folder in search_dirs:
        for sub in SUBFOLDERS:
            candidate = Path(folder) / sub / name
            if candidate.is_file():
                return candidate
    return None


def download(name: str, local_dir: str | os.PathLike | None = None) -> Path:
    """Fetch a known model file (and its external-data companions) from the Hub, through wan_loader's downloader
    (HF cache, offline mode, retries of transient network errors), into `local_dir` in the repository's layout when
    given; returns the local .onnx path."""
    source = KNOWN_FILES[name]
    root = hub.download(source.repo_id, dir=None if local_dir is None else os.fspath(local_dir),
                        patterns=[source.filename, *source.companions])
    path = Path(root) / source.filename
    if not path.is_file():
        raise FileNotFoundError(f"{source.filename} is not in {source.repo_id}")
    return path


def resolve_model_file(
    slot: Slot,
    source: str | os.PathLike | None = None,
    search_dirs: Sequence[str | os.PathLike] = (),
    allow_download: bool = True,
    local_dir: str | os.PathLike | None = None,
) -> Path:
    """Path of the model file for `slot` ('detector' or 'pose').

    `source`: a path to a file (or to a folder holding one of the known files), a file name to look up in
    `search_dirs` (and download when it is a known one), or None for the first known file found, else the
    official one downloaded.
    """
    if source is not None:
        path = Path(source).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            found = next(filter(None, (find_in_dirs(n, [path]) for n in SLOT_FILES[slot])), None)
            if found is None:
                raise ModelNotFoundError(
                    f"{path} is a folder without a {slot} model ({', '.join(SLOT_FILES[slot])}); pass the .onnx file itself"
                )
            return found
        if len(path.parts) > 1:
            raise ModelNotFoundError(f"{slot} model file {path} does not exist")
        names = (path.name,)
    else:
        names = SLOT_FILES[slot]
    for name in names:
        found = find_in_dirs(name, search_dirs)
        if found is not None:
            return found
    where = ", ".join(str(d) for d in search_dirs) or "(no folders given)"
    wanted = next((n for n in names if n in KNOWN_FILES), None)
    if wanted is None:
        raise ModelNotFoundError(f"{slot} model {names[0]} was not found in {where}")
    if not allow_download:
        raise ModelNotFoundError(
            f"{slot} model {wanted} was not found in {where}; download {KNOWN_FILES[wanted].url} into one of them"
        )
    try:
        return download(wanted, local_dir=local_dir)
    except Exception as error:
        why = "HF_HUB_OFFLINE is set" if hub.offline() else f"{type(error).__name__}: {error}"
        raise ModelNotFoundError(
            f"{slot} model {wanted} was not found in {where} and could not be downloaded from "
            f"{KNOWN_FILES[wanted].url} ({why}). Download it into one of those folders."
        ) from error


def check_model_source(slot: Slot, source: str | os.PathLike, search_dirs: Sequence[str | os.PathLike] = ()) -> None:
    """Raise ModelNotFoundError unless `source` names a model file that can be had: found as resolve_model_file
    finds it, or one of the slot's known files (downloaded when it is loaded). Reads no file and downloads nothing."""
    if str(source) in SLOT_FILES[slot]:
        return
    resolve_model_file(slot, source, search_dirs, allow_download=False)


def check_model_file(path: Path) -> None:
    """Fail early, naming the file, on problems onnxruntime reports obscurely: LFS pointers, missing external data."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(len(LFS_POINTER_PREFIX))
    if head == LFS_POINTER_PREFIX:
        raise ModelFileError(
            f"{path} is a Git LFS pointer ({size} bytes), not the model: fetch the real file (git lfs pull, or download "
            "it from the Hub)"
        )
    if size > GRAPH_ONLY_MAX_BYTES:
        return
    missing = [name for name in external_data_files(path) if not (path.parent / name).is_file()]
    if missing:
        raise ModelFileError(
            f"{path} keeps its weights in {', '.join(missing)}, which must be in the same folder ({path.parent}) "
            "but is missing: download it next to the .onnx file"
        )


def external_data_files(path: Path) -> list[str]:
    """Names of the external-data files an ONNX graph refers to (weights stored outside the .onnx)."""
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as error:
        raise ModelFileError(f"{path} is not a readable ONNX model ({error}); re-download it") from error
    names = []
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location and location not in names:
                names.append(location)
    return names
