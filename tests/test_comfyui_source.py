"""scripts/comfyui_source.sh: where the test command takes ComfyUI from (COMFYUI_DIR, COMFYUI_TARBALL, download)."""
from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _locate(env: dict) -> subprocess.CompletedProcess:
    script = f'source "{REPO_ROOT}/scripts/comfyui_source.sh"; echo "COMFYUI_DIR=${{COMFYUI_DIR:-}}"'
    base = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_DIR", "COMFYUI_TARBALL")}
    return subprocess.run(["bash", "-c", script], env={**base, **env}, capture_output=True, text=True, timeout=60)


def _found(result: subprocess.CompletedProcess) -> str:
    return result.stdout.strip().rsplit("COMFYUI_DIR=", 1)[1]


def _tarball(path: Path, top: str, with_main: bool = True) -> Path:
    src = path.parent / f"src-{path.stem}" / top
    src.mkdir(parents=True)
    if with_main:
        (src / "main.py").write_text("print('comfy')\n")
    (src / "requirements.txt").write_text("numpy\n")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname=top)
    return path


def test_comfyui_dir_is_used_as_it_is(tmp_path):
    (tmp_path / "main.py").write_text("")
    assert _found(_locate({"COMFYUI_DIR": str(tmp_path)})) == str(tmp_path)


def test_tarball_is_extracted_once_into_the_cache(tmp_path):
    tarball = _tarball(tmp_path / "comfy.tar.gz", "ComfyUI")
    env = {"COMFYUI_TARBALL": str(tarball), "COMFYUI_CACHE": str(tmp_path / "cache")}
    first = _found(_locate(env))
    assert Path(first, "main.py").is_file() and Path(first).parent == tmp_path / "cache"
    Path(first, "marker").write_text("kept")
    second = _found(_locate(env))
    assert second == first and Path(second, "marker").read_text() == "kept"  # reused, not extracted again
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(first).name]  # no partial folders left


def test_a_tarball_without_comfyui_leaves_nothing_and_says_so(tmp_path):
    tarball = _tarball(tmp_path / "other.tar.gz", "something", with_main=False)
    result = _locate({"COMFYUI_TARBALL": str(tarball), "COMFYUI_CACHE": str(tmp_path / "cache")})
    assert _found(result) == ""
    assert "not a ComfyUI source tarball" in result.stderr and "SKIPPED" in result.stderr
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_tarball_is_named(tmp_path):
    result = _locate({"COMFYUI_TARBALL": str(tmp_path / "nope.tar.gz"), "COMFYUI_CACHE": str(tmp_path / "cache")})
    assert _found(result) == "" and "nope.tar.gz does not exist" in result.stderr
