"""Model files under the three strategies (MODEL_STRATEGY): baked into the image, on a network volume, or downloaded
at first start into the volume. Downloads are locked against concurrent workers sharing the volume and verified
(size and sha256) before they are moved into place, so a half-written or corrupt file is never used.

    python -m comfy_worker.models prepare   # download strategy: fetch what is missing (start.sh runs it)
    python -m comfy_worker.models list      # where each manifest file should be, and whether it is there
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from filelock import FileLock

from .profiles import PROFILES_DIR
from .settings import WorkerSettings


@dataclass(frozen=True)
class ModelFile:
    repo_id: str
    filename: str
    folder: str
    kind: str = ""
    sha256: str | None = None
    size: int | None = None

    @property
    def name(self) -> str:
        return self.filename.rsplit("/", 1)[-1]

    def path(self, models_root: Path) -> Path:
        return Path(models_root) / self.folder / self.name


def load_manifest(path: Path | str | None = None) -> list[ModelFile]:
    """The files of a manifest: `path`, else MODELS_MANIFEST, else the deployed profile's (WORKER_PROFILE)."""
    path = path or os.environ.get("MODELS_MANIFEST") or PROFILES_DIR / WorkerSettings.from_env().profile / "profile.json"
    path = Path(path)
    entries = json.loads(path.read_text())["files"]
    return [ModelFile(**{k: v for k, v in e.items() if k in ModelFile.__dataclass_fields__}) for e in entries]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, size: int | None, sha256: str | None) -> str | None:
    """Why the file is not the expected one, or None when it is."""
    if not path.is_file():
        return f"{path} is missing"
    if size is not None and path.stat().st_size != size:
        return f"{path} has {path.stat().st_size} bytes, expected {size}"
    if sha256 and sha256_of(path) != sha256.lower():
        return f"{path} has the wrong sha256 (corrupt or a different file)"
    return None


def _marker(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def is_verified(path: Path) -> bool:
    """True when a previous verification recorded this exact size and mtime (hashing 30 GB on every start is slow)."""
    marker = _marker(path)
    if not (path.is_file() and marker.is_file()):
        return False
    st = path.stat()
    return marker.read_text().strip() == f"{st.st_size} {st.st_mtime_ns}"


def _mark_verified(path: Path) -> None:
    st = path.stat()
    _marker(path).write_text(f"{st.st_size} {st.st_mtime_ns}\n")


Downloader = Callable[[ModelFile, Path], tuple[Path, int | None, str | None]]


def hub_download(entry: ModelFile, workdir: Path) -> tuple[Path, int | None, str | None]:
    """Fetch one file with huggingface_hub into workdir; returns (path, expected size, expected sha256)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    meta = get_hf_file_metadata(hf_hub_url(entry.repo_id, entry.filename))
    etag = (meta.etag or "").strip('"')
    expected_sha = etag if len(etag) == 64 else None  # LFS files: the etag is the sha256
    path = hf_hub_download(entry.repo_id, entry.filename, local_dir=workdir)
    return Path(path), meta.size, expected_sha


def ensure_files(models_root: Path, files: list[ModelFile], downloader: Downloader = hub_download,
                 lock_timeout_s: float = 6 * 3600, log=print) -> list[Path]:
    """Make every file present and verified under models_root; one worker downloads while the others wait."""
    models_root = Path(models_root)
    models_root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_root / ".download.lock"), timeout=lock_timeout_s):
        done = []
        for entry in files:
            target = entry.path(models_root)
            if is_verified(target) or (target.is_file() and verify(target, entry.size, entry.sha256) is None
                                       and (entry.size or entry.sha256)):
                if not is_verified(target):
                    _mark_verified(target)
                done.append(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            log(f"downloading {entry.repo_id}/{entry.filename} -> {target}")
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".partial-") as work:
                got, size, sha = downloader(entry, Path(work))
                problem = verify(Path(got), entry.size or size, entry.sha256 or sha)
                if problem:
                    raise RuntimeError(f"download of {entry.repo_id}/{entry.filename} failed verification: {problem}")
                os.replace(got, target)
            _mark_verified(target)
            done.append(target)
        return done


def _main(argv=None) -> int:
    from .settings import WorkerSettings

    parser = argparse.ArgumentParser(prog="python -m comfy_worker.models", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["prepare", "list"])
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--models-root", default=None, help="default: from MODEL_STRATEGY")
    args = parser.parse_args(argv)
    settings = WorkerSettings.from_env()
    root = Path(args.models_root) if args.models_root else settings.models_root
    files = load_manifest(args.manifest)
    if args.command == "list":
        for f in files:
            print(f"{'ok     ' if f.path(root).is_file() else 'missing'} {f.path(root)}  ({f.repo_id}/{f.filename})")
        return 0
    if settings.model_strategy != "download" and not args.models_root:
        print(f"MODEL_STRATEGY={settings.model_strategy}: nothing to download")
        return 0
    try:
        ensure_files(root, files)
    except Exception as e:  # reported as one line for the container log
        print(f"model download failed: {e}", file=sys.stderr)
        return 1
    free = shutil.disk_usage(root).free
    print(f"all {len(files)} model files present under {root} ({free / 2**30:.1f} GiB free)")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
