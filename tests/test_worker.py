"""The RunPod worker (docker/handler.py) end to end: runpod's own local API server (`--rp_serve_api`) in front of a
real ComfyUI, real files in and out.

Two workers run for this module:
- "managed": starts its own ComfyUI (COMFY_START_COMMAND), may fetch http URLs from 127.0.0.1 (the local stand-in
  for an https file host), and uploads large outputs to a local S3-compatible server (moto in server mode: a
  stand-in for AWS S3 / Cloudflare R2 / RunPod's bucket, which cannot be reached from here).
- "attached": attaches to that same ComfyUI, default URL policy (https only, public addresses only), no bucket.
Cancellation cannot go through the local API server (it has no /cancel); RunPod's JobScaler cancels the handler's
asyncio task, so that test does exactly that with the same Worker in-process. runpod's progress_update needs RunPod's
job API, so the progress test records what the handler would send.
The workflows use ComfyUI core nodes only (no model weights needed): LoadImage/LoadVideo -> ImageBlur chains ->
CreateVideo -> SaveVideo gives a real H.264 mp4.
"""
from __future__ import annotations

import asyncio
import base64
import functools
import http.server
import io
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.comfyui_server import REPO_ROOT, ComfyServer, free_port

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]
DOCKER_DIR = REPO_ROOT / "docker"


# --- workflows made of core nodes ---------------------------------------------------------------------------------
def png_bytes(size=32, color=(200, 40, 40)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return buf.getvalue()


def mp4_bytes(frames=6, size=32) -> bytes:
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size, size, 3), 20 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def audio_bytes(fmt: str, seconds: float = 1.5, rate: int = 16000) -> bytes:
    """A 220 Hz tone with a rising pitch, encoded as wav, mp3 or flac by PyAV."""
    import av
    import numpy as np

    codec = {"wav": "pcm_s16le", "mp3": "libmp3lame", "flac": "flac"}[fmt]
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * (220 + 80 * t) * t) * 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def streams(data: bytes) -> dict:
    """{"video": frame count, "audio": seconds of sound} of a media file."""
    import av

    with av.open(io.BytesIO(data)) as f:
        frames = sum(1 for _ in f.decode(video=0))
    with av.open(io.BytesIO(data)) as f:
        audio = [s for s in f.streams if s.type == "audio"]
        seconds = sum(fr.samples / fr.sample_rate for fr in f.decode(audio=0)) if audio else 0.0
    return {"video": frames, "audio": seconds}


def count_frames(data: bytes) -> tuple[int, int, int]:
    import av

    with av.open(io.BytesIO(data)) as f:
        frames = [fr for fr in f.decode(video=0)]
    return len(frames), frames[0].width, frames[0].height


def image_to_video(image_name="ref.png", frames=5, size=48, blurs=0, blur_size=None) -> dict:
    """LoadImage -> ImageScale -> RepeatImageBatch ('Frames') -> ImageBlur x blurs -> CreateVideo -> SaveVideo.

    A random sigma keeps ComfyUI's cache from answering a repeated job without running it."""
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact",
                                                     "width": blur_size or size, "height": blur_size or size,
                                                     "crop": "disabled"}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": frames},
              "_meta": {"title": "Frames"}},
    }
    prev = "3"
    for i in range(blurs):
        wf[str(100 + i)] = {"class_type": "ImageBlur", "inputs": {
            "image": [prev, 0], "blur_radius": 7, "sigma": round(random.uniform(0.5, 9.5), 3)}}
        prev = str(100 + i)
    wf["8"] = {"class_type": "CreateVideo", "inputs": {"images": [prev, 0], "fps": 8.0}}
    wf["9"] = {"class_type": "SaveVideo", "inputs": {"video": ["8", 0], "filename_prefix": "video/test",
                                                     "format": "mp4", "codec": "h264"}}
    return wf


def slow_workflow(image_name="ref.png") -> dict:
    """About half a minute of ImageBlur nodes on 2 CPU cores; ComfyUI checks for interruption between nodes. The
    first blur is previewed (ComfyUI runs an output node as soon as it can): a file in temp/ early in the run."""
    wf = image_to_video(image_name, frames=16, blurs=60, blur_size=256)
    wf["90"] = {"class_type": "PreviewImage", "inputs": {"images": ["100", 0]}}
    return wf


def ui_image_to_video(frames=3) -> dict:
    """The same graph in the editor's format (with a Note, which the conversion must drop)."""
    return {
        "nodes": [
            {"id": 1, "type": "LoadImage", "mode": 0, "inputs": [],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK", "links": None}],
             "widgets_values": ["ui.png", "image"]},
            {"id": 2, "type": "RepeatImageBatch", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}], "widgets_values": [frames],
             "title": "Frames"},
            {"id": 3, "type": "CreateVideo", "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 2}, {"name": "audio", "type": "AUDIO", "link": None}],
             "outputs": [{"name": "VIDEO", "type": "VIDEO", "links": [3]}], "widgets_values": [6]},
            {"id": 4, "type": "SaveVideo", "mode": 0, "inputs": [{"name": "video", "type": "VIDEO", "link": 3}],
             "outputs": [], "widgets_values": ["video/ui", "auto", "auto"]},
            {"id": 5, "type": "Note", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["a note"]},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "VIDEO"]],
        "groups": [], "version": 0.4, "extra": {},
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- local stand-ins: a file host, an S3 server, the workers -------------------------------------------------------
class _FileHost(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        if self.path == "/drop.png":  # a host that hangs up mid-file
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(png_bytes()[:100])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.path.startswith("/redirect-private"):
            self.send_response(302)
            self.send_header("Location", "http://10.11.12.13/secret.png")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def file_host(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    (root / "ref.png").write_bytes(png_bytes(color=(10, 200, 10)))
    (root / "drive.mp4").write_bytes(mp4_bytes(frames=6))
    (root / "big.bin").write_bytes(os.urandom(3_000_000))
    for fmt in ("wav", "mp3", "flac"):
        (root / f"voice.{fmt}").write_bytes(audio_bytes(fmt))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_FileHost, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}\n{log.read_text()[-3000:] if log else ''}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f}s\n{log.read_text()[-3000:] if log else ''}")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3 in server mode: a local stand-in for S3-compatible storage (real HTTP, real boto3 signing)."""
    pytest.importorskip("moto")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url, 60, proc, log)
        import boto3

        boto3.client("s3", endpoint_url=url, aws_access_key_id="test-key", aws_secret_access_key="test-secret",
                     region_name="us-east-1").create_bucket(Bucket="wan-outputs")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class WorkerAPI:
    """`python docker/handler.py --rp_serve_api` with its own environment."""

    def __init__(self, env: dict, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "COMFY_", "WORKER_"))}
        full_env.update(env, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "handler.py", "--rp_serve_api", "--rp_api_port", str(self.port),
             "--rp_api_host", "127.0.0.1"],
            cwd=DOCKER_DIR, env=full_env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        )

    def wait(self):
        _wait_http(self.url + "/", 90, self.proc, self.log)
        return self

    def runsync(self, job_input: dict, timeout: float = 240) -> dict:
        r = requests.post(self.url + "/runsync", json={"input": job_input}, timeout=timeout)
        r.raise_for_status()
        return r.json()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def workers(comfyui_source, tmp_path_factory, s3_server):
    base = tmp_path_factory.mktemp("worker_comfy")
    comfy = ComfyServer(base, comfyui_source)  # used for its command line and base directory; the worker starts it
    logs = tmp_path_factory.mktemp("worker_logs")
    managed = WorkerAPI({
        "COMFY_URL": comfy.url, "COMFY_START_COMMAND": shlex.join(comfy.command()),
        "COMFY_LOG_PATH": str(logs / "comfyui.log"), "COMFY_PID_FILE": str(logs / "comfyui.pid"),
        "COMFY_STARTUP_TIMEOUT_S": "180", "WORKER_INPUT_URL_SCHEMES": "https,http",
        "WORKER_INPUT_URL_ALLOW_NETWORKS": "127.0.0.1/32", "WORKER_MAX_INPUT_BYTES": "2000000",
        "BUCKET_ENDPOINT_URL": s3_server, "BUCKET_NAME": "wan-outputs", "BUCKET_ACCESS_KEY_ID": "test-key",
        "BUCKET_SECRET_ACCESS_KEY": "test-secret", "BUCKET_REGION": "us-east-1",
        "WORKER_PROGRESS_INTERVAL_S": "0", "COMFY_BASE_DIR": str(comfy.base_dir), "COMFY_HEALTH_TIMEOUT_S": "5",
    }, logs / "managed.log")
    attached = WorkerAPI({"COMFY_URL": comfy.url, "COMFY_STARTUP_TIMEOUT_S": "180",
                          "COMFY_BASE_DIR": str(comfy.base_dir)}, logs / "attached.log")
    try:
        managed.wait()
        attached.wait()
        _wait_http(comfy.url + "/system_stats", 180)
        yield {"managed": managed, "attached": attached, "comfy": comfy, "logs": logs}
    finally:
        managed.stop()
        attached.stop()
        pid_file = logs / "comfyui.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass


def _ok(result: dict) -> dict:
    assert result["status"] == "COMPLETED", json.dumps(result)[:3000]
    return result["output"]


def _failed(result: dict) -> str:
    assert result["status"] == "FAILED", json.dumps(result)[:3000]
    return result["error"]


def _no_job_files(workers) -> None:
    """Every job's input namespace is gone once it ended, and nothing any job wrote is left in output/ or temp/."""
    base = workers["comfy"].base_dir
    left = list((base / "input").rglob("worker-jobs/*"))
    left += [p for kind in ("output", "temp") for p in (base / kind).rglob("*") if not p.is_dir()]
    assert not left, f"job files left: {left}"


def _temp_files_of(comfy_url: str, prompt_id: str) -> list[str]:
    """The temp files (previews) ComfyUI's history lists for a prompt: proof that the job made some."""
    entry = requests.get(f"{comfy_url}/history/{prompt_id}", timeout=10).json()[prompt_id]
    return [f"{item.get('subfolder', '')}/{item['filename']}" for output in entry["outputs"].values()
            for items in output.values() if isinstance(items, list) for item in items
            if isinstance(item, dict) and item.get("type") == "temp"]


def _comfy_idle(comfy_url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = requests.get(comfy_url + "/queue", timeout=5).json()
        if not q["queue_running"] and not q["queue_pending"]:
            return
        time.sleep(0.3)
    busy = [item[1] for key in ("queue_running", "queue_pending") for item in q[key]]
    raise AssertionError(f"ComfyUI still busy after {timeout}s with prompts {busy}")


# --- tests ----------------------------------------------------------------------------------------------------------
def test_video_output_from_base64_image_with_override_by_title(workers):
    out = _ok(workers["managed"].runsync({
        "workflow": image_to_video("../../etc/ref image.png", frames=5, size=48),
        "images": [{"name": "../../etc/ref image.png", "image": "data:image/png;base64," + b64(png_bytes())}],
        "overrides": {"Frames": {"amount": 7}},
    }))
    [video] = out["outputs"]
    assert video["kind"] == "video" and video["content_type"] == "video/mp4" and video["node_id"] == "9"
    data = base64.b64decode(video["base64"])
    assert len(data) == video["size"]
    assert count_frames(data) == (7, 48, 48)
    assert video["subfolder"] == "video"
    stored = workers["comfy"].base_dir / "input"
    assert not list(stored.rglob("*ref_image*")) and not list(stored.rglob("*etc*"))
    _no_job_files(workers)


def test_url_inputs_image_and_video(workers, file_host):
    wf = image_to_video("remote.png", frames=3)
    wf.update({
        "20": {"class_type": "LoadVideo", "inputs": {"file": "drive.mp4"}},
        "21": {"class_type": "SaveVideo", "inputs": {"video": ["20", 0], "filename_prefix": "video/copy",
                                                     "format": "mp4", "codec": "h264"}},
    })
    out = _ok(workers["managed"].runsync({"workflow": wf, "images": [
        {"name": "remote.png", "url": f"{file_host}/ref.png"}, {"name": "drive.mp4", "url": f"{file_host}/drive.mp4"}]}))
    by_node = {o["node_id"]: o for o in out["outputs"]}
    assert count_frames(base64.b64decode(by_node["9"]["base64"]))[0] == 3
    assert count_frames(base64.b64decode(by_node["21"]["base64"]))[0] == 6


def test_url_input_limits(workers, file_host):
    err = _failed(workers["managed"].runsync({"workflow": image_to_video("big.png"),
                                              "images": [{"name": "big.png", "url": f"{file_host}/big.bin"}]}))
    assert "input_too_large" in err and "WORKER_MAX_INPUT_BYTES" in err
    err = _failed(workers["managed"].runsync({"workflow": image_to_video("r.png"),
                                              "images": [{"name": "r.png", "url": f"{file_host}/redirect-private"}]}))
    assert "url_refused" in err and "10.11.12.13" in err and "private" in err


@pytest.mark.parametrize("url, why", [
    ("https://127.0.0.1/a.png", "loopback"),
    ("https://localhost:9/a.png", "loopback"),
    ("https://10.0.0.7/a.png", "private"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://[::1]/a.png", "loopback"),
    ("http://example.com/a.png", "scheme 'http' is not allowed"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
])
def test_private_and_non_https_urls_refused_by_default(workers, url, why):
    err = _failed(workers["attached"].runsync({"workflow": image_to_video("a.png"),
                                               "images": [{"name": "a.png", "url": url}]}))
    assert "url_refused" in err and why in err


def test_ui_format_workflow(workers):
    out = _ok(workers["managed"].runsync({"workflow": ui_image_to_video(frames=4),
                                          "images": [{"name": "ui.png", "image": b64(png_bytes(24))}],
                                          "overrides": {"2": {"amount": 2}}}))
    [video] = out["outputs"]
    assert count_frames(base64.b64decode(video["base64"])) == (2, 24, 24)


def test_invalid_workflows_get_sentences(workers):
    w = workers["managed"]
    assert "[bad_input]" in _failed(w.runsync({"prompt": {}}))
    assert "has no 'class_type'" in _failed(w.runsync({"workflow": {"1": {"inputs": {}}, "2": {"class_type": "X"}}}))
    images = [{"name": "v.png", "image": b64(png_bytes())}]
    wf = image_to_video("v.png")
    wf["3"]["inputs"]["amount"] = 0
    err = _failed(w.runsync({"workflow": wf, "images": images}))
    assert "[invalid_workflow]" in err and "Node 3 'Frames' (RepeatImageBatch) input 'amount'" in err
    wf = image_to_video("v.png")
    del wf["8"]["inputs"]["images"]
    err = _failed(w.runsync({"workflow": wf, "images": images}))
    assert "Node 8 (CreateVideo) is missing its required input 'images'" in err
    assert "no node has that id or title" in _failed(w.runsync({"workflow": image_to_video(),
                                                                "overrides": {"Nope": {"x": 1}}}))


def test_missing_custom_nodes_are_named(workers):
    wf = image_to_video("m.png")
    wf["30"] = {"class_type": "WanAnimateSamplerFromAnotherPack", "inputs": {}}
    wf["31"] = {"class_type": "VHS_VideoCombine", "inputs": {}}
    err = _failed(workers["managed"].runsync({"workflow": wf}))
    assert "[missing_custom_nodes]" in err and "'VHS_VideoCombine' (used by node 31)" in err
    assert "'WanAnimateSamplerFromAnotherPack'" in err
    ui = ui_image_to_video()
    ui["nodes"][2]["type"] = "VHS_LoadVideo"
    assert "'VHS_LoadVideo' (used by node 3)" in _failed(workers["managed"].runsync({"workflow": ui}))


def test_missing_model_named_with_its_folder(workers):
    wf = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.2_animate_14B_bf16.safetensors",
                                                     "weight_dtype": "default"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["2", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "m"}},
        "6": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 5.0}},
    }
    err = _failed(workers["managed"].runsync({"workflow": wf}))
    models = workers["comfy"].base_dir / "models"
    assert "[missing_model]" in err
    assert f"'wan_2.1_vae.safetensors', which is not in {models / 'vae'}" in err


def test_timeout_interrupts_comfyui_and_next_job_runs(workers):
    w = workers["managed"]
    started = time.monotonic()
    err = _failed(w.runsync({"workflow": slow_workflow("slow.png"), "timeout_s": 3,
                             "images": [{"name": "slow.png", "image": b64(png_bytes())}]}))
    assert "[timeout]" in err and "within 3 s" in err
    assert time.monotonic() - started < 20
    _comfy_idle(workers["comfy"].url, timeout=20)
    assert _temp_files_of(workers["comfy"].url, err.split("its prompt ")[1].split()[0])  # the preview was made
    _no_job_files(workers)  # ... and removed with the job
    assert _ok(w.runsync({"workflow": image_to_video("slow.png", frames=2),
                          "images": [{"name": "slow.png", "image": b64(png_bytes())}]}))["outputs"]


def test_oversized_output_without_bucket_is_a_clear_error(workers):
    err = _failed(workers["attached"].runsync({
        "workflow": image_to_video("o.png", frames=4), "output": {"inline_max_bytes": 100},
        "images": [{"name": "o.png", "image": b64(png_bytes())}]}))
    assert "[output_too_large]" in err and "BUCKET_ENDPOINT_URL" in err and ".mp4" in err


def test_oversized_output_goes_to_s3_compatible_bucket(workers, s3_server):
    out = _ok(workers["managed"].runsync({
        "workflow": image_to_video("s.png", frames=4), "output": {"inline_max_bytes": 100},
        "images": [{"name": "s.png", "image": b64(png_bytes())}]}))
    [video] = out["outputs"]
    assert "base64" not in video and video["url"].startswith(s3_server)
    got = requests.get(video["url"], timeout=30)
    assert got.status_code == 200 and len(got.content) == video["size"]
    assert got.headers["Content-Type"] == "video/mp4"
    assert count_frames(got.content)[0] == 4
    log = (workers["logs"] / "managed.log").read_text()
    assert "test-secret" not in log


def test_cancel_interrupts_comfyui_and_progress_is_forwarded(workers):
    """RunPod cancels a job by cancelling the handler's asyncio task (runpod.serverless JobScaler.stop_job)."""
    sys.path.insert(0, str(DOCKER_DIR))
    from comfy_worker.job import Worker
    from comfy_worker.settings import WorkerSettings

    comfy_url = workers["comfy"].url
    worker = Worker(WorkerSettings(comfy_url=comfy_url, progress_interval_s=0,
                                   comfy_base_dir=workers["comfy"].base_dir))
    events: list[dict] = []
    job = {"id": "cancel-me", "input": {"workflow": slow_workflow("c.png"),
                                        "images": [{"name": "c.png", "image": b64(png_bytes())}]}}

    async def scenario():
        task = asyncio.create_task(worker.run(job, events.append))
        for _ in range(300):
            await asyncio.sleep(0.1)
            if sum(e["class_type"] == "ImageBlur" for e in events) >= 2:
                break
        running = requests.get(comfy_url + "/queue", timeout=5).json()["queue_running"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return running[0][1]

    prompt_id = asyncio.run(scenario())
    _comfy_idle(comfy_url, timeout=15)
    assert _temp_files_of(comfy_url, prompt_id)
    _no_job_files(workers)
    status = requests.get(f"{comfy_url}/history/{prompt_id}", timeout=5).json()[prompt_id]["status"]
    assert any(kind == "execution_interrupted" for kind, _ in status["messages"])
    done = [e["nodes_done"] for e in events]
    assert done == sorted(done) and events[-1]["nodes_total"] > 60 and 0 < events[-1]["percent"] < 100


@pytest.fixture(scope="module")
def wan_models(workers, tmp_path_factory):
    """Tiny random Wan2.2-Animate models in the real layouts under the shipped workflows' file names."""
    from tests.test_workflows_support import write_detection_models, write_tiny_animate2_models, write_tiny_models

    models = workers["comfy"].base_dir / "models"
    write_detection_models(models / "detection")
    work = tmp_path_factory.mktemp("tiny_models")
    write_tiny_models(models, work)
    write_tiny_animate2_models(models, work)


@pytest.mark.parametrize("name", ["wan_animate_animate", "wan_animate2_distilled"])
def test_shipped_editor_workflow_runs_with_tiny_models(workers, wan_models, tmp_path, name):
    """The smoke job of the real thing: a workflow in workflows/ui as saved by the editor (Animate-14B, and
    Wan-Animate-2's distilled one), its reference image and driving video sent as base64, CPU-sized numbers given
    as overrides by node id."""
    from tests.audio_files import STATED_LENGTH_S, beep_onsets, durations
    from tests.test_workflows_support import (DRIVING, DRIVING_BEEP_S, REFERENCE, SIZE, cpu_overrides,
                                              expected_frames, write_driving_video, write_reference)

    ui = json.loads((REPO_ROOT / "workflows" / "ui" / f"{name}.json").read_text())
    api = json.loads((REPO_ROOT / "workflows" / "api" / f"{name}.json").read_text())
    per_class = cpu_overrides(name)
    overrides = {nid: per_class[n["class_type"]] for nid, n in api.items() if n["class_type"] in per_class}
    write_reference(tmp_path / REFERENCE)
    write_driving_video(tmp_path / DRIVING)
    out = _ok(workers["managed"].runsync({
        "workflow": ui, "overrides": overrides,
        "images": [{"name": n, "image": b64((tmp_path / n).read_bytes())} for n in (REFERENCE, DRIVING)],
    }, timeout=900))
    [video] = [o for o in out["outputs"] if o["kind"] == "video"]
    assert count_frames(base64.b64decode(video["base64"])) == (expected_frames(name), SIZE, SIZE)
    returned = tmp_path / "returned.mp4"  # with the driving video's sound, in sync (issue 18)
    returned.write_bytes(base64.b64decode(video["base64"]))
    video_s, audio_s = durations(returned)
    assert audio_s == pytest.approx(video_s, abs=STATED_LENGTH_S)
    assert beep_onsets(returned) == pytest.approx([DRIVING_BEEP_S], abs=0.003)


def test_comfyui_killed_mid_job_is_reported_and_restarted(workers):
    w, comfy_url = workers["managed"], workers["comfy"].url
    pid = int((workers["logs"] / "comfyui.pid").read_text())
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(w.runsync({
        "workflow": slow_workflow("k.png"), "images": [{"name": "k.png", "image": b64(png_bytes())}]})))
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not requests.get(comfy_url + "/queue", timeout=5).json()["queue_running"]:
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    t.join(240)
    err = _failed(result)
    assert "[comfyui_died]" in err and "exited with code -9" in err and "restarted for the next job" in err
    _no_job_files(workers)
    assert int((workers["logs"] / "comfyui.pid").read_text()) != pid
    out = _ok(w.runsync({"workflow": image_to_video("k2.png", frames=2),
                         "images": [{"name": "k2.png", "image": b64(png_bytes())}]}))
    assert out["outputs"][0]["kind"] == "video"


def test_hung_comfyui_is_restarted_not_waited_on(workers):
    """SIGSTOP leaves ComfyUI alive but silent: the next job's health check (COMFY_HEALTH_TIMEOUT_S=5) kills and
    restarts it instead of waiting for the start-up timeout."""
    w = workers["managed"]
    pid_file = workers["logs"] / "comfyui.pid"
    _ok(w.runsync({"workflow": image_to_video("h.png", frames=2), "images": [{"name": "h.png", "image": b64(png_bytes())}]}))
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    out = _ok(w.runsync({"workflow": image_to_video("h.png", frames=2),
                         "images": [{"name": "h.png", "image": b64(png_bytes())}]}))
    assert out["outputs"][0]["kind"] == "video" and time.monotonic() - started < 120
    assert int(pid_file.read_text()) != pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "did not answer within 5 s" in (workers["logs"] / "managed.log").read_text()


# --- isolation between jobs -----------------------------------------------------------------------------------------
def _mean_color(video_b64: str) -> tuple[int, int, int]:
    import av

    with av.open(io.BytesIO(base64.b64decode(video_b64))) as f:
        frame = next(f.decode(video=0)).to_ndarray(format="rgb24")
    return tuple(int(c) for c in frame.reshape(-1, 3).mean(0))


def test_concurrent_jobs_with_the_same_input_name_see_their_own_files(workers):
    """Both jobs upload 'same.png' before either runs (ComfyUI runs one prompt at a time); each must get its own."""
    colors = {"red": (220, 20, 20), "blue": (20, 20, 220)}
    results: dict = {}

    def run(name):
        wf = image_to_video("same.png", frames=8, blurs=6, blur_size=128)
        results[name] = workers["managed"].runsync({"workflow": wf, "images": [
            {"name": "same.png", "image": b64(png_bytes(color=colors[name]))}]})

    threads = [threading.Thread(target=run, args=(n,)) for n in colors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for name, rgb in colors.items():
        got = _mean_color(_ok(results[name])["outputs"][0]["base64"])
        assert all(abs(a - b) < 40 for a, b in zip(got, rgb)), (name, got)
    _no_job_files(workers)


def test_a_later_job_cannot_read_an_earlier_jobs_upload(workers):
    w = workers["managed"]
    _ok(w.runsync({"workflow": image_to_video("private.png", frames=2),
                   "images": [{"name": "private.png", "image": b64(png_bytes())}]}))
    err = _failed(w.runsync({"workflow": image_to_video("private.png", frames=2)}))
    assert "private.png" in err and "send it in the job's 'images' list" in err


@pytest.mark.parametrize("node, value, why", [
    ("LoadImage", "/etc/hostname", "absolute path"),
    ("LoadImage", "../../../../etc/hostname", "climbs out"),
    ("LoadVideo", "../../../../etc/hostname", "climbs out"),
    ("LoadImage", "test_00001_.mp4 [output]", "output folder"),
    ("LoadImage", "worker-jobs/someone-else/ref.png", "another job"),
])
def test_path_widgets_outside_the_input_folder_are_refused(workers, node, value, why):
    wf = image_to_video("x.png", frames=2)
    wf["1"] = {"class_type": node, "inputs": {"image" if node == "LoadImage" else "file": value}}
    if node == "LoadVideo":
        wf["2"]["class_type"], wf["2"]["inputs"] = "GetVideoComponents", {"video": ["1", 0]}
    err = _failed(workers["managed"].runsync({"workflow": wf, "images": [{"name": "x.png", "image": b64(png_bytes())}]}))
    assert "[path_refused]" in err and why in err and "node 1" in err
    _no_job_files(workers)  # the upload made before the refusal is gone too


def test_previews_of_a_job_that_fails_in_comfyui_are_removed(workers):
    """The preview is made, then SaveVideo fails inside ComfyUI (H.264 refuses an odd frame width)."""
    wf = image_to_video("odd.png", frames=2, size=33)
    wf["90"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    err = _failed(workers["managed"].runsync({"workflow": wf,
                                              "images": [{"name": "odd.png", "image": b64(png_bytes())}]}))
    assert err.startswith("[execution_error]") and "node 9" in err, err
    history = requests.get(f"{workers['comfy'].url}/history", timeout=10).json()
    [prompt_id] = [pid for pid, e in history.items()
                   if e["prompt"][2].get("2", {}).get("inputs", {}).get("width") == 33]
    assert _temp_files_of(workers["comfy"].url, prompt_id)  # the preview was made
    _no_job_files(workers)


# Every output node of ComfyUI 0.3.64 (API nodes left out, as the test server disables them): how it names its files.
SAVERS_BY_PATH_INPUT = {
    "filename_prefix": {"SaveImage", "SaveLatent", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveVideo", "SaveWEBM",
                        "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveSVGNode", "SaveGLB", "CheckpointSave",
                        "CLIPSave", "VAESave", "ModelSave", "ImageOnlyCheckpointSave", "LoraSave", "LossGraphNode"},
    "prefix": {"SaveLoRANode"},
}
PREVIEWS = {"PreviewImage", "MaskPreview", "PreviewAudio"}  # temp/ under random names, removed by the prompt's history
WRITES_NOTHING = {"PreviewAny", "Preview3D", "Preview3DAnimation"}  # show a value or an existing file in the editor


def test_every_core_output_node_is_confined_or_known(workers):
    """The worker's rule (file_refs.save_path_inputs) against the real /object_info: each output node that writes is
    confined through its path input; the rest are previews or write nothing. A ComfyUI that adds an output node
    fails this test until the node is looked at."""
    sys.path.insert(0, str(DOCKER_DIR))
    from comfy_worker.file_refs import save_path_inputs

    object_info = requests.get(workers["comfy"].url + "/object_info", timeout=120).json()
    core = {name: info for name, info in object_info.items() if info.get("output_node")
            and not info.get("python_module", "").startswith("custom_nodes")}
    confined = {name: set(save_path_inputs(name, object_info)) for name in core}
    assert {n for n, keys in confined.items() if keys} == set().union(*SAVERS_BY_PATH_INPUT.values())
    for key, names in SAVERS_BY_PATH_INPUT.items():
        assert all(confined[n] == {key} for n in names), {n: confined[n] for n in names}
    assert {n for n, keys in confined.items() if not keys} == PREVIEWS | WRITES_NOTHING


def _watch_files(root: Path, seen: set, stop: threading.Event) -> None:
    while not stop.is_set():
        seen.update(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        stop.wait(0.05)


def test_every_core_save_node_writes_inside_the_job_folder_only(workers, s2v_models):
    """Images, animated images, webm, mp4, latent, three audio formats, a diffusion model and an extracted LoRA
    (ModelSave, LoraSave on the tiny transformer) and three previews in one real job; every file that appears in
    output/ or temp/ while it runs is inside the job's folder or one of its listed previews, and all are gone after."""
    from tests.test_workflows_support import CORE_TINY_UNET

    def node(class_type, **inputs):
        return {"class_type": class_type, "inputs": inputs}

    frames = ["3", 0]
    wf = {
        "1": node("LoadImage", image="s.png"),
        "2": node("ImageScale", image=["1", 0], upscale_method="nearest-exact", width=32, height=32, crop="disabled"),
        "3": node("RepeatImageBatch", image=["2", 0], amount=2),
        "10": node("SaveImage", images=frames, filename_prefix="img/still"),
        "11": node("SaveAnimatedWEBP", images=frames, filename_prefix="anim/w", fps=6.0, lossless=False, quality=80,
                   method="fastest"),
        "12": node("SaveAnimatedPNG", images=frames, filename_prefix="anim/p", fps=6.0, compress_level=1),
        "13": node("SaveWEBM", images=frames, filename_prefix="webm/v", codec="vp9", fps=6.0, crf=40.0),
        "14": node("CreateVideo", images=frames, fps=6.0),
        "15": node("SaveVideo", video=["14", 0], filename_prefix="video/v", format="mp4", codec="h264"),
        "16": node("EmptyLatentImage", width=32, height=32, batch_size=1),
        "17": node("SaveLatent", samples=["16", 0], filename_prefix="latents/l"),
        "18": node("LoadAudio", audio="v.wav"),
        "19": node("SaveAudio", audio=["18", 0], filename_prefix="audio/flac"),
        "20": node("SaveAudioMP3", audio=["18", 0], filename_prefix="audio/mp3", quality="128k"),
        "21": node("SaveAudioOpus", audio=["18", 0], filename_prefix="audio/opus", quality="64k"),
        "22": node("UNETLoader", unet_name=CORE_TINY_UNET, weight_dtype="default"),
        "23": node("ModelSave", model=["22", 0], filename_prefix="diffusion_models/m"),
        "24": node("ModelMergeSubtract", model1=["22", 0], model2=["22", 0], multiplier=1.0),
        "25": node("LoraSave", model_diff=["24", 0], filename_prefix="loras/extracted", rank=4,
                   lora_type="standard", bias_diff=True),
        "26": node("PreviewImage", images=frames),
        "27": node("PreviewAudio", audio=["18", 0]),
        "28": node("MaskPreview", mask=["1", 1]),
    }
    base = workers["comfy"].base_dir
    seen: dict[str, set] = {"output": set(), "temp": set()}
    stop = threading.Event()
    watchers = [threading.Thread(target=_watch_files, args=(base / kind, seen[kind], stop)) for kind in seen]
    for t in watchers:
        t.start()
    try:
        out = _ok(workers["managed"].runsync({"workflow": wf, "include_previews": True, "images": [
            {"name": "s.png", "image": b64(png_bytes())}, {"name": "v.wav", "image": b64(audio_bytes("wav"))}]},
            timeout=600))
    finally:
        stop.set()
        for t in watchers:
            t.join()
    saved = {(o["node_id"], o["subfolder"], o["filename"].rsplit(".", 1)[-1]) for o in out["outputs"]}
    assert {("10", "img", "png"), ("11", "anim", "webp"), ("12", "anim", "png"), ("13", "webm", "webm"),
            ("15", "video", "mp4"), ("17", "latents", "latent"), ("19", "audio", "flac"), ("20", "audio", "mp3"),
            ("21", "audio", "opus")} <= saved, saved
    previews = {o["filename"] for o in out["outputs"] if o["node_id"] in ("26", "27", "28")}
    assert len(previews) == 4, out["outputs"]  # two frames, the sound, the mask
    outside = {f for f in seen["output"] if not f.startswith("worker-jobs/")}
    outside |= {f for f in seen["temp"] if not f.startswith("worker-jobs/") and os.path.basename(f) not in previews}
    assert not outside, outside
    written = {f.split("/", 2)[2] for f in seen["output"]}  # without worker-jobs/<job>/
    assert any(f.startswith("diffusion_models/m_") and f.endswith(".safetensors") for f in written), written
    assert any(f.startswith("loras/extracted_") and f.endswith(".safetensors") for f in written), written
    _no_job_files(workers)


@pytest.mark.parametrize("change, why", [
    (lambda wf: wf["9"]["inputs"].update(filename_prefix="../../escaped"), "climbs out"),
    (lambda wf: wf["9"]["inputs"].update(filename_prefix=""), "names no file"),
    (lambda wf: (wf.update({"40": {"class_type": "PrimitiveString", "inputs": {"value": "../../x"}}}),
                 wf["9"]["inputs"].update(filename_prefix=["40", 0])), "is connected to another node"),
    (lambda wf: wf.update({"41": {"class_type": "SaveLoRANode", "inputs": {"lora": ["1", 0], "prefix": "../../x"}}}),
     "node 41 (SaveLoRANode) input 'prefix'"),
])
def test_save_paths_leaving_the_job_folder_are_refused_before_submitting(workers, change, why):
    wf = image_to_video("p.png", frames=2)
    change(wf)
    err = _failed(workers["managed"].runsync({"workflow": wf,
                                              "images": [{"name": "p.png", "image": b64(png_bytes())}]}))
    assert err.startswith("[path_refused]") and why in err, err
    _no_job_files(workers)


def test_timeout_while_comfyui_still_validates_a_large_prompt_leaves_nothing_running(workers):
    """6,000 blur+preview pairs take ComfyUI several seconds to validate before it queues them; a 1 s timeout fires
    while POST /prompt is still in flight. The worker must wait for it, then withdraw the prompt."""
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "w.png"}}}
    for i in range(6000):
        wf[str(10 + i)] = {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1,
                                                                 "sigma": round(1.0 + i * 1e-4, 6)}}
        wf[str(100000 + i)] = {"class_type": "PreviewImage", "inputs": {"images": [str(10 + i), 0]}}
    result = workers["managed"].runsync({"workflow": wf, "timeout_s": 1,
                                         "images": [{"name": "w.png", "image": b64(png_bytes())}]})
    err = _failed(result)
    assert "[timeout]" in err
    prompt_id = err.split("its prompt ")[1].split()[0]
    _comfy_idle(workers["comfy"].url, timeout=10)
    entry = requests.get(f"{workers['comfy'].url}/history/{prompt_id}", timeout=10).json().get(prompt_id)
    if entry is not None:  # taken off the queue before it started (no entry), or interrupted as it started
        assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"]), entry["status"]
    _no_job_files(workers)


# --- errors a user can act on ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mutate, expect", [
    (lambda ui: ui["nodes"][1].update(type=7), "node 2 has no node type"),
    (lambda ui: ui["nodes"].append("not a node"), "node #6 is not an object"),
    (lambda ui: ui.update(definitions="subgraphs"), "'definitions' must be an object"),
    (lambda ui: ui.update(definitions={"subgraphs": [{"name": "no id"}]}), "subgraph definition #1 has no id"),
    (lambda ui: ui.update(definitions={"subgraphs": {"a": 1}}), "'definitions.subgraphs' must be a list"),
    (lambda ui: ui.update(links=[[1, 1]]), "has a link that is not"),
    (lambda ui: ui["nodes"][1].update(inputs="image"), "has 'inputs' that is not a list"),
    (lambda ui: ui.update(definitions={"subgraphs": [{"id": "4c7a1f3e-0000-4000-8000-000000000001",
                                                      "nodes": [{"id": 1, "type": None}]}]}), "has no node type"),
])
def test_malformed_editor_workflows_get_one_sentence(workers, mutate, expect):
    ui = ui_image_to_video()
    mutate(ui)
    err = _failed(workers["managed"].runsync({"workflow": ui}))
    assert err.startswith("[invalid_workflow] The editor workflow is malformed") and expect in err, err
    assert "Traceback" not in err and "site-packages" not in err and str(REPO_ROOT) not in err


def test_cycles_out_of_range_values_and_dropped_file_host_are_named(workers, file_host):
    w = workers["managed"]
    wf = image_to_video("c.png", blurs=2)
    wf["100"]["inputs"]["image"] = ["101", 0]
    err = _failed(w.runsync({"workflow": wf}))
    assert "[invalid_workflow] The workflow has a cycle: node 100 (ImageBlur) -> node 101 (ImageBlur) -> node 100" in err
    wf = image_to_video("v.png")
    wf["3"]["inputs"]["amount"] = 0
    err = _failed(w.runsync({"workflow": wf, "images": [{"name": "v.png", "image": b64(png_bytes())}]}))
    assert "Node 3 'Frames' (RepeatImageBatch) input 'amount': Value 0 smaller than min of 1" in err
    err = _failed(w.runsync({"workflow": image_to_video("d.png"), "images": [{"name": "d.png", "url": f"{file_host}/drop.png"}]}))
    assert err.startswith("[url_failed]") and "closed the connection" in err and "ComfyUI" not in err


def test_missing_models_name_the_modern_folder_and_this_packages_folders(workers):
    models = workers["comfy"].base_dir / "models"
    err = _failed(workers["managed"].runsync({"workflow": {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.2_s2v_14B_fp8_scaled.safetensors",
                                                     "weight_dtype": "default"}},
        "2": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 5.0}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "seed": 0, "steps": 1, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "positive": ["5", 0],
                                                   "negative": ["5", 0], "latent_image": ["3", 0], "denoise": 1.0}},
        "5": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["7", 0]}},
        "7": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5.safetensors", "type": "wan"}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
    }}))
    assert "[missing_model]" in err and f"which is not in {models / 'diffusion_models'}" in err, err
    info = requests.get(f"{workers['comfy'].url}/object_info/WanAnimateModelLoader", timeout=30).json()
    required = info["WanAnimateModelLoader"]["input"]["required"]
    inputs = {k: (spec[1] or {}).get("default", spec[0][0] if isinstance(spec[0], list) else None)
              for k, spec in required.items() if len(spec) > 1}
    inputs["model"] = "wan2.2_animate_14B_fp8_scaled.safetensors"
    err = _failed(workers["managed"].runsync({"workflow": {
        "1": {"class_type": "WanAnimateModelLoader", "inputs": inputs},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}}))
    ours = err.split(" ComfyUI: ")[0]  # ComfyUI's own message after it lists every folder path, legacy ones too
    assert "[missing_model]" in ours and "models/diffusion_models" in ours and "unet" not in ours, err


# --- profiles: audio in, video with its sound out; Wan2.2-S2V end to end; core nodes of a newer ComfyUI ----------------
def audio_to_video(audio_name: str) -> dict:
    wf = image_to_video("still.png", frames=8, size=32)
    wf["20"] = {"class_type": "LoadAudio", "inputs": {"audio": audio_name}}
    wf["8"]["inputs"]["audio"] = ["20", 0]
    return wf


@pytest.mark.parametrize("fmt, how", [("wav", "base64"), ("mp3", "url"), ("flac", "base64"), ("flac", "url")])
def test_audio_inputs_and_video_output_with_its_sound(workers, file_host, fmt, how):
    name = f"voice.{fmt}"
    audio = {"name": name, "url": f"{file_host}/{name}"} if how == "url" else {"name": name, "image": b64(audio_bytes(fmt))}
    out = _ok(workers["managed"].runsync({"workflow": audio_to_video(name), "images": [
        audio, {"name": "still.png", "image": b64(png_bytes())}]}))
    [video] = out["outputs"]
    got = streams(base64.b64decode(video["base64"]))
    assert got["video"] == 8 and got["audio"] > 0.9, got
    _no_job_files(workers)


@pytest.fixture(scope="module")
def s2v_models(workers, tmp_path_factory):
    """Random S2V transformer + wav2vec2-large in ComfyUI's layouts (tests/s2v_models.py), the full-size random Wan
    VAE, and the tiny umT5 (d_model 4096) that stands in for core's CLIPLoader as in the core-native Animate test."""
    from tests.s2v_models import write_s2v_models
    from tests.test_workflows_support import FULL_SIZE_VAE, write_core_tiny_models, write_full_size_vae

    models = workers["comfy"].base_dir / "models"
    write_s2v_models(models, workers["comfy"].comfy_dir)
    write_full_size_vae(models / "vae" / FULL_SIZE_VAE)
    write_core_tiny_models(models, tmp_path_factory.mktemp("core_tiny"))


def test_s2v_profile_workflow_runs_end_to_end_with_sound(workers, s2v_models):
    """The S2V profile's workflow (core LoadAudio, AudioEncoderLoader/Encode, UNETLoader, WanSoundImageToVideo,
    KSampler, VAEDecode, CreateVideo with the audio, SaveVideo) through the worker with a wav sent as base64.
    CLIPLoader/CLIPTextEncode become this package's text encoder on a tiny umT5 (no tiny file fits core's umT5-XXL)."""
    from tests.s2v_models import AUDIO_ENCODER, S2V_UNET
    from tests.test_workflows_support import tiny_stand_in_for_core_encoders

    workflow = tiny_stand_in_for_core_encoders(json.loads((DOCKER_DIR / "profiles" / "s2v" / "workflows" /
                                                           "wan22_s2v.json").read_text()))
    out = _ok(workers["managed"].runsync({
        "workflow": workflow,
        "overrides": {"5": {"unet_name": S2V_UNET}, "3": {"audio_encoder_name": AUDIO_ENCODER},
                      "Sound to video": {"width": 64, "height": 64, "length": 5}, "Sampler": {"steps": 1}},
        "images": [{"name": "reference.png", "image": b64(png_bytes(64))},
                   {"name": "speech.wav", "image": b64(audio_bytes("wav", seconds=2.0))}],
    }, timeout=900))
    [video] = [o for o in out["outputs"] if o["kind"] == "video"]
    data = base64.b64decode(video["base64"])
    assert count_frames(data)[1:] == (64, 64)
    got = streams(data)
    assert got["video"] == 5 and abs(got["audio"] - 5 / 16) < 0.05, got  # the sound, cut to the video's 16 fps
    _no_job_files(workers)


def test_core_nodes_of_a_newer_comfyui_name_the_version_and_profile(workers):
    wf = image_to_video("i.png")
    wf["30"] = {"class_type": "WanInfiniteTalkToVideo", "inputs": {}}
    wf["31"] = {"class_type": "WanAnimate2ToVideo", "inputs": {}}
    err = _failed(workers["managed"].runsync({"workflow": wf}))
    assert err.startswith("[needs_newer_comfyui]") and "ComfyUI 0.3.68 or newer" in err
    assert "this worker runs ComfyUI 0.3.64" in err and "PROFILES=infinitetalk" in err
    assert ("'WanAnimate2ToVideo' is a core node of a newer ComfyUI than this worker runs (0.3.64); the 'animate2' "
            "profile serves that model with this package's nodes instead (workflows: workflows/api/wan_animate2.json") in err
