"""The worker's parts that need no ComfyUI: input names and the URL address policy, settings, the model download
strategy (lock + verification) and the doctor on real tiny model files.

The Hugging Face Hub cannot be reached from here, so the download tests pass a local downloader (a stand-in that
copies a file) to the same ensure_files() the container runs; everything else is real (file locks across processes,
sha256 verification, wan_loader inspecting real safetensors files)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.comfyui_server import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"
sys.path.insert(0, str(DOCKER_DIR))

from comfy_worker import doctor  # noqa: E402
from comfy_worker.inputs import address_refusal, decode_base64, rename_references, sanitize_name  # noqa: E402
from comfy_worker.errors import WorkerError  # noqa: E402
from comfy_worker.models import ModelFile, ensure_files, is_verified  # noqa: E402
from comfy_worker.settings import WorkerSettings  # noqa: E402


@pytest.mark.parametrize("name, safe", [
    ("ref.png", "ref.png"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\win.ini", "win.ini"),
    ("/abs/path/drive clip (1).mp4", "drive_clip_1_.mp4"),
    (".hidden.png", "hidden.png"),
    ("..", "input_3"),
    ("ü.png", "input_3.png"),
])
def test_sanitize_name(name, safe):
    assert sanitize_name(name, 3) == safe


def test_rename_references_only_touches_exact_names():
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "../a b.png"}},
              "2": {"class_type": "X", "inputs": {"text": "see ../a b.png", "n": 3}}}
    rename_references(prompt, {"../a b.png": "a_b.png"})
    assert prompt["1"]["inputs"]["image"] == "a_b.png" and prompt["2"]["inputs"]["text"] == "see ../a b.png"


@pytest.mark.parametrize("ip, refused", [
    ("8.8.8.8", None), ("2606:4700:4700::1111", None),
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.4", "private"),
    ("172.16.9.9", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "unspecified"), ("100.64.0.1", "not a public"),
    ("fd00::1", "private"), ("224.0.0.1", "multicast"),
])
def test_address_policy(ip, refused):
    why = address_refusal(ip, WorkerSettings())
    assert (why is None) if refused is None else (refused in why)


def test_allow_networks_exempt_only_those_addresses():
    settings = WorkerSettings.from_env({"WORKER_INPUT_URL_ALLOW_NETWORKS": "127.0.0.1/32, 10.8.0.0/16"})
    assert address_refusal("127.0.0.1", settings) is None and address_refusal("10.8.3.4", settings) is None
    assert "loopback" in address_refusal("127.0.0.2", settings) and "private" in address_refusal("10.9.0.1", settings)


def test_base64_limits_and_errors():
    assert decode_base64("a", "data:image/png;base64,aGVsbG8=", 10) == b"hello"
    with pytest.raises(WorkerError, match="WORKER_MAX_INPUT_BYTES"):
        decode_base64("a", "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=", 10)
    with pytest.raises(WorkerError, match="not valid base64"):
        decode_base64("a", "not*base64", 100)


def test_settings_from_env_and_secrets_stay_out_of_repr():
    s = WorkerSettings.from_env({
        "BUCKET_ENDPOINT_URL": "https://my-bucket.s3.eu-west-1.amazonaws.com", "BUCKET_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "BUCKET_SECRET_ACCESS_KEY": "very-secret", "COMFY_START_COMMAND": "python main.py --port 8190",
        "MODEL_STRATEGY": "Download", "RUNPOD_VOLUME_DIR": "/vol"})
    assert s.bucket.name == "my-bucket" and "very-secret" not in repr(s)
    assert s.comfy_start_command == ("python", "main.py", "--port", "8190")
    assert s.model_strategy == "download" and s.models_root == Path("/vol/models")
    with pytest.raises(ValueError, match="BUCKET_NAME"):
        WorkerSettings.from_env({"BUCKET_ENDPOINT_URL": "http://127.0.0.1:9000"})
    with pytest.raises(ValueError, match="baked, volume, download"):
        WorkerSettings.from_env({"MODEL_STRATEGY": "cloud"})


# --- download strategy ---------------------------------------------------------------------------------------------
def _local_downloader(source_dir: Path, log: Path | None = None):
    """Stand-in for the Hub: copies source_dir/<name> and reports the size and sha256 the Hub would."""
    def download(entry: ModelFile, workdir: Path):
        src = source_dir / entry.name
        if log:
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {entry.name}\n")
        dst = workdir / entry.filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
        return dst, src.stat().st_size, hashlib.sha256(src.read_bytes()).hexdigest()
    return download


def test_download_verifies_and_skips_verified_files(tmp_path):
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "vae.safetensors").write_bytes(os.urandom(1000))
    entry = ModelFile("org/repo", "split_files/vae/vae.safetensors", "vae")
    root = tmp_path / "models"
    [path] = ensure_files(root, [entry], _local_downloader(hub), log=lambda *_: None)
    assert path == root / "vae" / "vae.safetensors" and path.read_bytes() == (hub / "vae.safetensors").read_bytes()
    assert is_verified(path)
    ensure_files(root, [entry], downloader=lambda *_: pytest.fail("a verified file was downloaded again"))

    bad = ModelFile("org/repo", "split_files/vae/other.safetensors", "vae", sha256="0" * 64)
    (hub / "other.safetensors").write_bytes(b"x" * 10)
    with pytest.raises(RuntimeError, match="wrong sha256"):
        ensure_files(root, [bad], _local_downloader(hub), log=lambda *_: None)
    assert not (root / "vae" / "other.safetensors").exists()
    assert not list((root / "vae").glob(".partial-*"))


def test_concurrent_workers_download_once(tmp_path):
    """Two worker processes share a volume: the lock makes the second wait and then find the verified file."""
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "big.safetensors").write_bytes(os.urandom(2_000_000))
    log = tmp_path / "downloads.log"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(DOCKER_DIR)!r}, {str(REPO_ROOT)!r}]
        from pathlib import Path
        from comfy_worker.models import ModelFile, ensure_files
        from tests.test_worker_units import _local_downloader
        slow = _local_downloader(Path({str(hub)!r}), Path({str(log)!r}))
        def download(entry, work):
            time.sleep(1.0)
            return slow(entry, work)
        ensure_files(Path({str(tmp_path / 'models')!r}),
                     [ModelFile("org/repo", "big.safetensors", "diffusion_models")], download, log=lambda *_: None)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT) for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    assert len(log.read_text().splitlines()) == 1
    assert (tmp_path / "models" / "diffusion_models" / "big.safetensors").stat().st_size == 2_000_000


# --- doctor --------------------------------------------------------------------------------------------------------
def test_doctor_checks_model_layouts_and_reports_failures(tiny, tmp_path, monkeypatch, capsys):
    from wan_loader.writers import write_components

    written = tmp_path / "written"
    write_components(tiny, written, "comfy")
    volume = tmp_path / "volume"
    models = volume / "models"
    (models / "diffusion_models").mkdir(parents=True)
    (models / "vae").mkdir()
    [transformer] = (written / "diffusion_models").glob("*.safetensors")
    [vae] = (written / "vae").glob("*.safetensors")
    (models / "diffusion_models" / "animate.safetensors").write_bytes(transformer.read_bytes())
    (models / "vae" / "vae.safetensors").write_bytes(transformer.read_bytes())  # wrong file under the VAE's name
    manifest = tmp_path / "models.json"
    manifest.write_text(json.dumps({"files": [
        {"repo_id": "o/r", "filename": "animate.safetensors", "folder": "diffusion_models", "kind": "transformer"},
        {"repo_id": "o/r", "filename": "vae.safetensors", "folder": "vae", "kind": "vae"},
        {"repo_id": "o/r", "filename": "yolov10m.onnx", "folder": "detection", "kind": "detector"},
    ]}))
    comfy = tmp_path / "comfyui"
    comfy.mkdir()
    (comfy / "main.py").write_text("")
    (comfy / "extra_model_paths.yaml").write_text(f"runpod_volume:\n  base_path: {volume}/models\n")
    for key, value in {"MODEL_STRATEGY": "volume", "RUNPOD_VOLUME_DIR": str(volume), "COMFYUI_DIR": str(comfy),
                       "COMFY_URL": "http://127.0.0.1:9", "WAN_ANIMATE_PACKAGE_DIR": str(REPO_ROOT)}.items():
        monkeypatch.setenv(key, value)
    assert doctor.main(["--phase", "manual", "--manifest", str(manifest), "--json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["model diffusion_models/animate.safetensors"]["status"] == "ok"
    assert "layout comfy" in checks["model diffusion_models/animate.safetensors"]["detail"]
    assert checks["model vae/vae.safetensors"]["status"] == "fail"
    assert "expected a vae but the file holds transformer" in checks["model vae/vae.safetensors"]["detail"]
    assert checks["model detection/yolov10m.onnx"]["status"] == "fail"
    assert checks["comfyui"]["status"] == "fail" and checks["extra_model_paths.yaml"]["status"] == "ok"
    assert checks["network volume"]["status"] == "ok" and checks["import wan_loader"]["status"] == "ok"

    (models / "vae" / "vae.safetensors").write_bytes(vae.read_bytes())
    assert doctor.main(["--phase", "build", "--manifest", str(manifest)]) == 0
