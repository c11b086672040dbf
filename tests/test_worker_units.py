"""The worker's parts that need no ComfyUI: input names and the URL address policy, settings, the model download
strategy (lock + verification) and the doctor on real tiny model files.

The Hugging Face Hub cannot be reached from here, so the download tests pass a local downloader (a stand-in that
copies a file) to the same ensure_files() the container runs; everything else is real (file locks across processes,
sha256 verification, wan_loader inspecting real safetensors files)."""
from __future__ import annotations

import asyncio
import hashlib
import http.server
import ipaddress
import json
import os
import socket
import threading
import urllib.parse
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.comfyui_server import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"
sys.path.insert(0, str(DOCKER_DIR))

from comfy_worker import doctor  # noqa: E402
from comfy_worker.file_refs import check_file_references, point_at_namespace  # noqa: E402
from comfy_worker.inputs import decode_base64, sanitize_name  # noqa: E402
from comfy_worker.namespace import JobNamespace  # noqa: E402
from comfy_worker.errors import WorkerError  # noqa: E402
from comfy_worker.models import ModelFile, ensure_files, is_verified  # noqa: E402
from comfy_worker.settings import WorkerSettings  # noqa: E402
from comfy_worker.url_guard import address_refusal, fetch_url  # noqa: E402


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


# Entries as ComfyUI 0.3.64's /object_info gives them (trimmed to what the worker reads).
SAVERS = {
    "LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}}},
    "SaveVideo": {"output_node": True, "python_module": "comfy_extras.nodes_video",
                  "input": {"required": {"video": ["VIDEO", {}],
                                         "filename_prefix": ["STRING", {"default": "video/ComfyUI"}]}}},
    "SaveImage": {"output_node": True, "python_module": "nodes",
                  "input": {"required": {"images": ["IMAGE", {}],
                                         "filename_prefix": ["STRING", {"default": "ComfyUI"}]}}},
    "SaveLoRANode": {"output_node": True, "python_module": "comfy_extras.nodes_train",
                     "input": {"required": {"lora": ["LORA_MODEL", {}],
                                            "prefix": ["STRING", {"default": "loras/ComfyUI_trained_lora"}]},
                               "optional": {"steps": ["INT", {"forceInput": True}]}}},
    "StringPrefix": {"output_node": False, "python_module": "custom_nodes.strings",
                     "input": {"required": {"prefix": ["STRING", {}], "text": ["STRING", {}]}}},
    "TripoTextToModelNode": {"output_node": True, "python_module": "comfy_api_nodes.nodes_tripo",
                             "input": {"required": {"prompt": ["STRING", {"multiline": True}]}}},
    "Rodin3D_Regular": {"output_node": False, "python_module": "comfy_api_nodes.nodes_rodin",
                        "input": {"required": {"Images": ["IMAGE", {}]}}},
}


def test_namespace_rewrites_only_exact_names_and_save_paths(tmp_path):
    ns = JobNamespace.create("job/1", {k: tmp_path / k for k in ("input", "output", "temp")})
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "../a b.png"}},
              "2": {"class_type": "StringPrefix", "inputs": {"text": "see ../a b.png", "prefix": "p/"}},
              "3": {"class_type": "SaveVideo", "inputs": {"filename_prefix": "video/out"}},
              "4": {"class_type": "SaveLoRANode", "inputs": {"lora": ["9", 0], "prefix": "loras/mine"}},
              "5": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    point_at_namespace(prompt, {"../a b.png": ns.ref("a_b.png")}, ns, SAVERS)
    assert prompt["1"]["inputs"]["image"] == f"{ns.subfolder}/a_b.png" and ns.subfolder.startswith("worker-jobs/job_1-")
    assert prompt["2"]["inputs"] == {"text": "see ../a b.png", "prefix": "p/"}  # not an output node
    assert prompt["3"]["inputs"]["filename_prefix"] == f"{ns.subfolder}/video/out"
    assert prompt["4"]["inputs"]["prefix"] == f"{ns.subfolder}/loras/mine"
    assert prompt["5"]["inputs"]["filename_prefix"] == f"{ns.subfolder}/ComfyUI"  # left out: its default, confined
    assert ns.public_subfolder(f"{ns.subfolder}/video") == "video"


@pytest.mark.parametrize("node, inputs, why", [
    ("SaveImage", {"filename_prefix": "../../x"}, "climbs out"),
    ("SaveImage", {"filename_prefix": "/tmp/x"}, "absolute path"),
    ("SaveImage", {"filename_prefix": ""}, "names no file"),
    ("SaveImage", {"filename_prefix": "./"}, "names no file"),
    ("SaveVideo", {"filename_prefix": ["7", 0]}, "is connected to another node"),
    ("SaveLoRANode", {"prefix": "..\\..\\loras\\x"}, "climbs out"),
    ("SaveLoRANode", {"prefix": ["7", 0]}, "is connected to another node"),
    ("TripoTextToModelNode", {"prompt": "a cat"}, "Tripo 3D API node"),
    ("Rodin3D_Regular", {}, "Rodin 3D API node"),
])
def test_save_paths_that_cannot_be_confined_are_refused(tmp_path, node, inputs, why):
    ns = JobNamespace.create("j", {k: tmp_path / k for k in ("input", "output", "temp")})
    with pytest.raises(WorkerError) as e:
        point_at_namespace({"9": {"class_type": node, "inputs": dict(inputs)}}, {}, ns, SAVERS)
    assert e.value.code == "path_refused" and why in e.value.message and "node 9" in e.value.message


LOADERS = {"LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}}},
           "LoadVideo": {"input": {"required": {"file": ["COMBO", {"options": [], "video_upload": True}]}}},
           "UNETLoader": {"input": {"required": {"unet_name": [["m.safetensors"]], "weight_dtype": [["default"]]}}},
           "CLIPTextEncode": {"input": {"required": {"text": ["STRING", {"multiline": True}]}}},
           "VHS_LoadVideoPath": {"input": {"required": {"video_path": ["STRING", {}]}}}}


@pytest.mark.parametrize("node, value, why", [
    ("LoadImage", "../../etc/passwd", "climbs out"),
    ("LoadImage", "/etc/passwd", "absolute path"),
    ("LoadVideo", "C:\\Windows\\win.ini", "absolute path"),
    ("LoadVideo", "..\\..\\secret.mp4", "climbs out"),
    ("LoadImage", "x.png [output]", "output folder"),
    ("LoadImage", "ComfyUI_00001_.png [temp]", "temp folder"),
    ("LoadImage", "worker-jobs/other-job/ref.png", "another job"),
    ("UNETLoader", "../../../root/.ssh/id_rsa", "climbs out"),
    ("VHS_LoadVideoPath", "/root/.cache/secret.mp4", "absolute path"),
])
def test_path_widgets_reaching_outside_are_refused(tmp_path, node, value, why):
    ns = JobNamespace.create("j", {k: tmp_path / k for k in ("input", "output", "temp")})
    key = next(iter(LOADERS[node]["input"]["required"]))
    with pytest.raises(WorkerError) as e:
        check_file_references({"5": {"class_type": node, "inputs": {key: value}}}, LOADERS, ns)
    assert e.value.code == "path_refused" and why in e.value.message and "node 5" in e.value.message


def test_symlink_out_of_input_refused_and_own_files_and_text_allowed(tmp_path):
    dirs = {k: tmp_path / k for k in ("input", "output", "temp")}
    ns = JobNamespace.create("j", dirs)
    (dirs["input"] / ns.subfolder).mkdir(parents=True)
    (dirs["input"] / ns.subfolder / "ref.png").write_bytes(b"png")
    (tmp_path / "secret.png").write_bytes(b"secret")
    (dirs["input"] / "linked.png").symlink_to(tmp_path / "secret.png")
    ok = {"1": {"class_type": "LoadImage", "inputs": {"image": ns.ref("ref.png")}},
          "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "../../ /etc/passwd is just a prompt"}},
          "3": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan/m.safetensors", "weight_dtype": "default"}}}
    check_file_references(ok, LOADERS, ns)
    with pytest.raises(WorkerError, match="leads out"):
        check_file_references({"1": {"class_type": "LoadImage", "inputs": {"image": "linked.png"}}}, LOADERS, ns)
    ns.remember_temp("", "preview.png")
    (dirs["temp"]).mkdir()
    (dirs["temp"] / "preview.png").write_bytes(b"p")
    ns.remove()
    assert not (dirs["input"] / ns.subfolder).exists() and not (dirs["temp"] / "preview.png").exists()


def test_cycles_are_named():
    from comfy_worker.workflow import check_cycles

    prompt = {"1": {"class_type": "A", "inputs": {"x": ["3", 0]}}, "2": {"class_type": "B", "inputs": {"x": ["1", 0]}},
              "3": {"class_type": "C", "inputs": {"x": ["2", 0]}}, "4": {"class_type": "D", "inputs": {"x": ["3", 0]}}}
    with pytest.raises(WorkerError, match=r"cycle: node 1 \(A\) -> node 2 \(B\) -> node 3 \(C\) -> node 1 \(A\)"):
        check_cycles(prompt)
    check_cycles({"1": {"class_type": "A", "inputs": {}}, "2": {"class_type": "B", "inputs": {"x": ["1", 0], "y": ["1", 1]}}})


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


class _CountingHost(http.server.BaseHTTPRequestHandler):
    """A loopback file host that records every request it receives; /to?u=URL redirects there, /drop hangs up."""

    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server API)
        _CountingHost.hits.append(self.path)
        if self.path.startswith("/to?u="):
            self.send_response(302)
            # Raw UTF-8 bytes, as a hostile server may send them (http.server's send_header only takes latin-1).
            location = urllib.parse.unquote(self.path[len("/to?u="):])
            self._headers_buffer.append(b"Location: " + location.encode() + b"\r\n")
            self.end_headers()
        elif self.path == "/drop":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            body = b"secret file"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(address: str) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((address, 0), _CountingHost)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def loopback_host():
    """Port of the counting host on 127.0.0.1 (the target every test must fail to reach)."""
    server = _serve("127.0.0.1")
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def redirector():
    """The same handler on 127.0.0.2: the first, allowed hop of the redirect tests (a stand-in for a public host)."""
    server = _serve("127.0.0.2")
    yield server.server_address[1]
    server.shutdown()


# Spellings of 127.0.0.1 that the HTTP client (yarl's IDNA folding) or the socket layer (inet_aton) read as loopback.
LOOPBACK_SPELLINGS = ["127.0.0.1", "\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127\u30020\u30020\u30021",
                      "127\uff0e0\uff0e0\uff0e1", "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11",
                      "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "[::ffff:127.0.0.1]",
                      "[::ffff:7f00:1]", "localhost", "LOCALHOST"]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_url_guard_refuses_every_spelling_of_loopback_and_never_connects(loopback_host, host):
    _CountingHost.hits.clear()
    settings = WorkerSettings(input_url_schemes=("http", "https"))
    with pytest.raises(WorkerError) as e:
        asyncio.run(fetch_url("a.png", f"http://{host}:{loopback_host}/a.png", settings))
    assert e.value.code == "url_refused" and "loopback" in e.value.message
    assert _CountingHost.hits == []


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS[1:12])
def test_url_guard_checks_every_redirect_hop(loopback_host, redirector, host):
    _CountingHost.hits.clear()
    settings = WorkerSettings(input_url_schemes=("http",),
                              input_url_allow_networks=(ipaddress.ip_network("127.0.0.2/32"),))
    target = urllib.parse.quote(f"http://{host}:{loopback_host}/a.png")
    with pytest.raises(WorkerError) as e:
        asyncio.run(fetch_url("a.png", f"http://127.0.0.2:{redirector}/to?u={target}", settings))
    assert e.value.code == "url_refused" and "loopback" in e.value.message, e.value.message
    assert len(_CountingHost.hits) == 1 and _CountingHost.hits[0].startswith("/to?u=")


def test_url_guard_pins_the_vetted_address_at_connect(loopback_host):
    """The socket factory is the last gate: an address that was not vetted for this hop is never dialled, even if
    the resolver were bypassed."""
    from comfy_worker.url_guard import PinnedResolver, UnvettedAddress

    resolver = PinnedResolver()
    resolver.pin("files.example", 443, [{"hostname": "files.example", "host": "93.184.215.14", "port": 443,
                                         "family": socket.AF_INET, "proto": 0, "flags": 0}])
    with pytest.raises(UnvettedAddress):
        resolver.socket_for((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", loopback_host)))
    resolver.socket_for((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))).close()
    with pytest.raises(UnvettedAddress):
        asyncio.run(resolver.resolve("other.example", 443))


def test_url_guard_allowed_host_is_fetched_and_dropped_connection_is_named(loopback_host):
    settings = WorkerSettings(input_url_schemes=("http",),
                              input_url_allow_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    fullwidth = "\uff11\uff12\uff17.\uff10.\uff10.\uff11"
    assert asyncio.run(fetch_url("a", f"http://{fullwidth}:{loopback_host}/a.png", settings)) == b"secret file"
    with pytest.raises(WorkerError) as e:
        asyncio.run(fetch_url("d.png", f"http://127.0.0.1:{loopback_host}/drop", settings))
    assert e.value.code == "url_failed" and "closed the connection" in e.value.message


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
    """Two worker processes share a volume: the second finds the lock held while the first downloads, waits, and then
    finds the verified file. Synchronised, not timed: each worker's FileLock first tries without waiting and marks
    `blocked-PID` when that fails; the worker holding the lock finishes its download only once the other is blocked
    (so a lock that did not exclude would leave no mark and the holder would give up)."""
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "big.safetensors").write_bytes(os.urandom(2_000_000))
    log = tmp_path / "downloads.log"
    marks = tmp_path / "marks"
    marks.mkdir()
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path[:0] = [{str(DOCKER_DIR)!r}, {str(REPO_ROOT)!r}]
        from pathlib import Path
        from filelock import FileLock, Timeout
        import comfy_worker.models as models
        from comfy_worker.models import ModelFile, ensure_files
        from tests.test_worker_units import _local_downloader
        marks, me = Path({str(marks)!r}), os.getpid()

        class ContendedLock(FileLock):
            def acquire(self, timeout=None, *args, **kwargs):
                try:
                    return super().acquire(timeout=0)
                except Timeout:
                    (marks / f"blocked-{{me}}").touch()
                    return super().acquire(timeout, *args, **kwargs)

        models.FileLock = ContendedLock
        fetch = _local_downloader(Path({str(hub)!r}), Path({str(log)!r}))

        def download(entry, work):
            deadline = time.monotonic() + 60
            while not [m for m in marks.iterdir() if m.name != f"blocked-{{me}}"]:
                if time.monotonic() > deadline:
                    sys.exit("the other worker was never blocked by the download lock")
                time.sleep(0.01)  # polling for the other worker's mark
            return fetch(entry, work)

        ensure_files(Path({str(tmp_path / 'models')!r}),
                     [ModelFile("org/repo", "big.safetensors", "diffusion_models")], download, log=lambda *_: None)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT) for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    assert len(log.read_text().splitlines()) == 1
    assert len(list(marks.iterdir())) == 1  # exactly one worker waited for the other
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
