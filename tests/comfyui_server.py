"""Start a real ComfyUI server (from COMFYUI_DIR) with this package in a throwaway base directory, and talk to it.

Used by the integration tests of the nodes, the workflows and the RunPod worker. Nothing is mocked: the server is
ComfyUI's own main.py, on CPU, on a free loopback port.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The folder name under custom_nodes/ differs from the repository's on purpose: the package must load under any name.
CUSTOM_NODE_NAME = "ComfyUI-Wan-Animate-under-test"


def comfyui_dir() -> Path | None:
    """COMFYUI_DIR (scripts/test.sh sets it, see scripts/comfyui_source.sh); None when no ComfyUI source is there."""
    where = os.environ.get("COMFYUI_DIR")
    return Path(where) if where and (Path(where) / "main.py").is_file() else None


def missing_comfyui_reason() -> str:
    where = os.environ.get("COMFYUI_DIR")
    return (
        f"!!! ComfyUI INTEGRATION TESTS SKIPPED: no ComfyUI source ({f'{where}/main.py not found' if where else 'COMFYUI_DIR is not set'}). "
        "Run them through scripts/test.sh (COMFYUI_DIR, COMFYUI_TARBALL or the pinned download), or set COMFYUI_DIR "
        "to a ComfyUI checkout (0.3.64 or newer)."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_base_dir(base: Path) -> Path:
    """A ComfyUI base directory with this package linked into custom_nodes/ and empty model folders."""
    for sub in ("custom_nodes", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for folder in ("diffusion_models", "vae", "text_encoders", "clip_vision", "loras", "detection"):
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / CUSTOM_NODE_NAME
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    return base


class ComfyServer:
    """One ComfyUI process. `start()` waits until it answers; `log_text()` returns everything it printed."""

    def __init__(self, base_dir: Path, comfy_dir: Path | None = None, port: int | None = None, extra_args=()):
        self.comfy_dir = comfy_dir or comfyui_dir()
        self.base_dir = make_base_dir(Path(base_dir))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.log_path = self.base_dir / "comfyui.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, str(self.comfy_dir / "main.py"), "--cpu", "--listen", "127.0.0.1",
            "--port", str(self.port), "--base-directory", str(self.base_dir),
            "--disable-api-nodes", "--database-url", "sqlite:///:memory:", *self.extra_args,
        ]

    def start(self, timeout: float = 180.0) -> "ComfyServer":
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.comfy_dir, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                self.get_json("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f}s:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- HTTP -----------------------------------------------------------------------------------------------
    def get_json(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post_json(self, path: str, body, timeout: float = 30):
        """Returns (status, parsed JSON or text); HTTP errors are returned, not raised."""
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def queue(self, prompt: dict, client_id: str | None = None):
        return self.post_json("/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """Poll /history until the prompt finished; returns its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hist = self.get_json(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f}s:\n{self.log_text()[-4000:]}")

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        status, body = self.queue(prompt)
        if status != 200:
            raise AssertionError(f"prompt refused ({status}): {json.dumps(body, indent=1)[:4000]}")
        return self.wait(body["prompt_id"], timeout)

    def output_path(self, file_info: dict) -> Path:
        root = {"output": "output", "temp": "temp", "input": "input"}[file_info.get("type", "output")]
        return self.base_dir / root / file_info.get("subfolder", "") / file_info["filename"]

    def download(self, file_info: dict) -> bytes:
        query = urllib.parse.urlencode(
            {k: file_info.get(k, "") for k in ("filename", "subfolder", "type")}
        )
        with urllib.request.urlopen(f"{self.url}/view?{query}", timeout=60) as r:
            return r.read()


def copy_into_models(base_dir: Path, folder: str, src: Path, name: str | None = None) -> Path:
    dst = Path(base_dir) / "models" / folder / (name or Path(src).name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if Path(src).is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)
    return dst
