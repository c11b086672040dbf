"""The RunPod worker's cold start: process start -> ComfyUI ready -> first Animate job done, weights from a cold cache.

    # 1. here, where PyPI answers: the wheels the GPU machine lacks into .whl/, ComfyUI's source into .carry/
    COMFYUI_DIR=/path/to/ComfyUI python -m benchmarks.cold_start --pack
    # 2. on the H200, ONE device call with carry [".whl", ".carry"] (about 50 MiB; the command fits in ~8 minutes):
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
      && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 -m benchmarks.cold_start --comfyui .carry/ComfyUI.tar.gz \
         --out $OUT/cold_start_h200.json      # then copy it to benchmarks/results/
    # the whole path on a CPU, tiny weights, the H200's missing packages made unimportable (under a minute; with
    # --detection full the real-size ONNX graphs too: 2.6 GB, a few minutes):
    COMFYUI_DIR=/path/to/ComfyUI python -m benchmarks.cold_start --size tiny --device cpu --simulate-device \
        --cache-drop files --out benchmarks/results/cold_start_cpu_tiny.json

Expected on the H200: about 2 minutes of preparation (~29 GB written), then the timed part; if the call's 10 minutes
get tight, --frames 33 shortens the job (the report's config records it). Each span is written to the JSON as soon as
it is measured, so a run cut short keeps the ComfyUI start-up time.

Untimed preparation under --work: a ComfyUI base folder with this package in custom_nodes/ and random weights in
ComfyUI's layout, written by wan_loader's writer: the Animate-14B transformer and umT5-XXL in fp8 (e4m3, scaled,
as Comfy-Org ships them), CLIP ViT-H and the Wan2.1 VAE in bf16 (--size tiny: the same writer at the tiny test
sizes), YOLOv10m- and ViTPose-H-sized ONNX graphs with one person planted (benchmarks.preprocess; tiny: the worker
tests' planted graphs), a reference image and a driving clip. Then the page cache is dropped (drop_caches, or with
--cache-drop files fsync + posix_fadvise DONTNEED on every model file) and a 1 GiB probe file is read cold, then
warm: `cache_was_cold` says whether the drop took effect on that machine.

Timed, in a new process: the Worker that docker/handler.py serves (handler.py only wraps Worker.run in the runpod
SDK, which is left out here with boto3) starts ComfyUI (`prestart`, as the handler does at boot), waits until it
answers (`ensure_running`), then runs one job: workflows/api/wan_animate_animate.json with the reference image and
the driving clip sent as base64 and the loader pointed at the written files (fp8, 20 steps, 77 frames at 832x480
unless told otherwise). ComfyUI runs with an empty --front-end-root (its frontend packages are not needed to serve
the API). Rows: process start -> ComfyUI ready, ComfyUI ready -> first job done, process start -> first job done.

The H200 image (device/KINDS.md's package list of 2026-11-17) lacks PyAV, diffusers (and its importlib_metadata),
ftfy (and wcwidth: diffusers' Wan prompt cleaning calls it), torchsde (and trampoline, imported by ComfyUI's
samplers), the runpod SDK, boto3, ComfyUI's frontend, template and docs packages, alembic/SQLAlchemy, kornia,
spandrel and pydantic(-settings). CARRIED lists the wheels --pack fetches
(aiohttp and its parts too: that list names them, but the worker cannot run without them); the rest is not needed
(ComfyUI starts without its frontend with --front-end-root, without a database, and skips the optional nodes that
import kornia or spandrel), which --simulate-device checks on a CPU by making exactly those modules unimportable.
Its onnxruntime has no CUDA provider (onnxruntime-gpu's wheel is far over what a call carries), so the pose
preprocessing runs on its 16 CPU cores there: the report says so.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import aiohttp
import av
import numpy as np
import torch
from PIL import Image

from tests.comfyui_server import free_port
from tests.test_workflows_support import DRIVING, REFERENCE  # the workflow's input file names
from tests.test_workflows_support import write_detection_models as write_tiny_detection_models
from wan_loader.dtypes import fp32_keys
from wan_loader.model.configs import CLIP_VIT_H_CONFIG, UMT5_XXL_CONFIG, WAN21_VAE_CONFIG, build_empty
from wan_loader.model.test_sizes import TINY_CLIP_CONFIG, TINY_UMT5_CONFIG, TINY_VAE_CONFIG
from wan_loader.testing.tiny import tiny_tokenizer
from wan_loader.writers import Weights, Written, write_component, write_extras

from .harness import REPO, Report, drop_page_cache, raw_read
from .models import RandomWeights, transformer_config
from .preprocess import build_models

sys.path.insert(0, str(REPO / "docker"))
from comfy_worker.comfy_client import ComfyClient  # noqa: E402  (docker/ is the worker's root, not a package)
from comfy_worker.job import Worker  # noqa: E402
from comfy_worker.settings import WorkerSettings  # noqa: E402

WORKFLOW = REPO / "workflows" / "api" / "wan_animate_animate.json"
LOADER_NODE, POSE_NODE, PREPROCESS_NODE, SAMPLER_NODE = "2", "4", "5", "7"
PROBE_BYTES = 1024 ** 3
CONFIGS = {
    "full": {"transformer": transformer_config("full"), "text_encoder": UMT5_XXL_CONFIG,
             "image_encoder": CLIP_VIT_H_CONFIG, "vae": WAN21_VAE_CONFIG},
    "tiny": {"transformer": transformer_config("tiny"), "text_encoder": TINY_UMT5_CONFIG,
             "image_encoder": TINY_CLIP_CONFIG, "vae": TINY_VAE_CONFIG},
}
FILE_DTYPES = {"transformer": torch.float8_e4m3fn, "text_encoder": torch.float8_e4m3fn,
               "image_encoder": torch.bfloat16, "vae": torch.bfloat16}
LOADER_INPUTS = {"transformer": "model", "text_encoder": "text_encoder", "image_encoder": "clip_vision", "vae": "vae"}
# import name -> wheel carried to the H200 (versions as in this project's environment; Python 3.12 builds)
CARRIED = {"av": "av==18.1.0", "diffusers": "diffusers==0.42.1", "importlib_metadata": "importlib_metadata==10.2.0",
           "torchsde": "torchsde==0.2.6", "trampoline": "trampoline==0.1.2", "aiohttp": "aiohttp==3.14.5",
           "yarl": "yarl==1.25.1", "multidict": "multidict==7.2.1", "propcache": "propcache==0.5.4",
           "frozenlist": "frozenlist==1.8.0", "aiosignal": "aiosignal==1.4.0",
           "aiohappyeyeballs": "aiohappyeyeballs==2.7.1", "ftfy": "ftfy==6.3.1", "wcwidth": "wcwidth==0.9.4"}
NOT_THERE_NOT_NEEDED = ("runpod", "boto3", "botocore", "comfyui_frontend_package", "comfyui_workflow_templates",
                        "comfyui_embedded_docs", "alembic", "sqlalchemy", "kornia", "spandrel", "pydantic",
                        "pydantic_settings")
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64")
# sitecustomize.py for --simulate-device: a None entry in sys.modules is how Python spells "not installed" to both
# `import` (ModuleNotFoundError) and importlib.util.find_spec (None), which accelerate and transformers probe with.
ABSENT_MODULES = "import sys\n\nsys.modules.update(dict.fromkeys(%r))\n"


# --- preparation ------------------------------------------------------------------------------------------------------
def random_component(component: str, config: dict, weights: RandomWeights, test_model: bool) -> Weights:
    """wan_loader's writer input for one component with random values made on demand, one tensor at a time."""
    model = build_empty(component, config)
    params = dict(model.named_parameters())
    aliases = dict(model.named_parameters(remove_duplicate=False))  # tied weights (umT5's embeddings) written once
    state = {k: v for k, v in model.state_dict().items() if k in params or k not in aliases}
    keep = fp32_keys(model, weights.dtype)
    prefix = "" if component == "transformer" else f"{component}."
    if component == "transformer":
        config = {**config, "_class_name": type(model).__name__}
    return Weights(component, {k: tuple(v.shape) for k, v in state.items()}, {k: v.dtype for k, v in state.items()},
                   lambda k: weights(prefix + k, tuple(state[k].shape), torch.float32 if k in keep else None), config,
                   test_model=test_model)


def write_models(models: Path, size: str, device: str) -> dict[str, str]:
    """Random weights in ComfyUI's folders (fp8 transformer and text encoder); returns the loader inputs naming them.
    The real umT5 tokenizer cannot be fetched on the GPU machine: a small one gives valid ids for any encoder."""
    weights = RandomWeights(device)
    names = {}
    for component, dtype in FILE_DTYPES.items():
        part = random_component(component, CONFIGS[size][component], weights, test_model=size == "tiny")
        [path] = write_component(part, models, "comfy", dtype, Written())
        names[LOADER_INPUTS[component]] = path.name
    write_extras(models, "comfy", tiny_tokenizer(), None, Written(), list(FILE_DTYPES))
    return names


def write_detection_models(models: Path, size: str) -> dict[str, str]:
    """Full size: YOLOv10m- and ViTPose-H-sized graphs, one person planted; tiny: the worker tests' planted graphs
    under the workflow's own names. Returns the pose loader's inputs."""
    if size == "tiny":
        write_tiny_detection_models(models / "detection")
        return {}
    options = argparse.Namespace(model_dir=models / "detection", size="real", static_batch=False, people=1, pose="h")
    detector, pose = build_models(options)
    return {"detector": str(detector.relative_to(options.model_dir)), "pose": str(pose.relative_to(options.model_dir))}


def write_inputs(folder: Path, frames: int, width: int, height: int) -> dict[str, bytes]:
    """A reference image and a driving clip (a bright block moving over a dark ground), both at width x height."""
    folder.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), (30, 90, 160), np.uint8)
    image[height // 6: height * 5 // 6, width * 2 // 5: width * 3 // 5] = (220, 180, 140)
    Image.fromarray(image).save(folder / REFERENCE)
    with av.open(str(folder / DRIVING), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = np.full((height, width, 3), 40, np.uint8)
            left = (width // 3 + 2 * i) % (width - width // 5)
            frame[height // 6: height * 5 // 6, left: left + width // 5] = (200, 170, 150)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return {name: (folder / name).read_bytes() for name in (REFERENCE, DRIVING)}


def job_input(inputs: dict[str, bytes], loader: dict, detection: dict, args) -> dict:
    """The shipped workflow, pointed at the written files; fp8 compute on a GPU (a CPU has no fp8 matmul: fp32)."""
    precision = "fp8_e4m3fn" if args.device != "cpu" else "fp32"
    overrides = {LOADER_NODE: {**loader, "precision": precision}, POSE_NODE: detection,
                 PREPROCESS_NODE: {"resolution_area": args.width * args.height},
                 SAMPLER_NODE: {"steps": args.steps, "segment_length": args.frames}}
    return {"workflow": json.loads(WORKFLOW.read_text()), "overrides": overrides, "timeout_s": args.job_timeout,
            "images": [{"name": name, "image": base64.b64encode(data).decode()} for name, data in inputs.items()]}


def comfyui_source(spec: str, work: Path) -> Path:
    """A ComfyUI folder, or the .tar.gz --pack makes, unpacked under --work."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    target = work / "ComfyUI"
    if not (target / "main.py").is_file():
        with tarfile.open(path) as tar:
            tar.extractall(target, filter="data")
    return target


def prepare(args, report: Report) -> tuple[Path, list[Path]]:
    work = Path(args.work)
    base, models = work / "base", work / "base" / "models"
    for sub in ("custom_nodes", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (work / "frontend").mkdir(exist_ok=True)
    (work / "frontend" / "index.html").write_text("<!doctype html><title>benchmarks.cold_start: no frontend</title>")
    link = base / "custom_nodes" / "comfyui-wan-animate"
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    began = time.perf_counter()
    loader = write_models(models, args.size, args.device)
    detection = write_detection_models(models, args.detection)
    inputs = write_inputs(work / "inputs", args.frames, args.width, args.height)
    job = work / "job.json"
    job.write_text(json.dumps(job_input(inputs, loader, detection, args)))
    files = sorted(p for p in models.rglob("*") if p.is_file())
    report.set(prepare_s=round(time.perf_counter() - began, 1), model_files=len(files),
               model_gb=round(sum(p.stat().st_size for p in files) / 1e9, 2), loader_inputs=loader,
               detection_inputs=detection)
    probe = work / "cache_probe.bin"
    if not probe.exists():
        with open(probe, "wb") as f:
            for _ in range(PROBE_BYTES // (64 << 20)):
                f.write(os.urandom(64 << 20))
    return job, files + [probe]


def simulate_device(work: Path) -> dict[str, str]:
    """The environment for the worker and ComfyUI with the GPU machine's missing, uncarried modules unimportable."""
    folder = work / "absent_modules"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(ABSENT_MODULES % (sorted(NOT_THERE_NOT_NEEDED),))
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def pack(comfyui: Path) -> None:
    """The wheels of CARRIED into .whl/ (Python 3.12, x86-64 Linux) and ComfyUI's source into .carry/."""
    wheels, carry = REPO / ".whl", REPO / ".carry"
    carry.mkdir(exist_ok=True)
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(wheels),
                    *CARRIED.values()], check=True)
    with tarfile.open(carry / "ComfyUI.tar.gz", "w:gz") as tar:
        tar.add(comfyui, arcname=".", filter=lambda info: None if any(
            part in ("__pycache__", ".git", "tests", "tests-unit") for part in Path(info.name).parts) else info)
    for path in sorted(wheels.glob("*.whl")) + [carry / "ComfyUI.tar.gz"]:
        print(f"{path.stat().st_size / 2 ** 20:7.1f} MiB  {path.relative_to(REPO)}")


# --- the timed process ----------------------------------------------------------------------------------------------
def child(args) -> None:
    """One worker process from its start: ComfyUI started and awaited, then the first job."""
    began = time.time()
    base = Path(args.work) / "base"
    command = [sys.executable, str(Path(args.comfyui) / "main.py"), "--listen", "127.0.0.1", "--port", str(args.port),
               "--base-directory", str(base), "--front-end-root", str(Path(args.work) / "frontend"),
               "--disable-api-nodes", "--disable-auto-launch", *(["--cpu"] if args.device == "cpu" else [])]
    settings = WorkerSettings(comfy_url=f"http://127.0.0.1:{args.port}", comfy_start_command=tuple(command),
                              comfy_log_path=Path(args.work) / "comfyui.log", comfy_base_dir=base,
                              startup_timeout_s=args.job_timeout, job_timeout_s=args.job_timeout,
                              inline_max_bytes=1 << 30)
    worker = Worker(settings)
    worker.process.prestart()

    async def ready() -> None:
        async with aiohttp.ClientSession() as session:
            await worker.process.ensure_running(ComfyClient(settings.comfy_url, session))

    asyncio.run(ready())
    print(json.dumps({"began": began, "ready": time.time()}), flush=True)
    result = asyncio.run(worker.run({"id": "cold-start", "input": json.loads(Path(args.job).read_text())}))
    done_at = time.time()
    worker.process.stop()
    outputs = [{k: o.get(k) for k in ("kind", "filename", "size")} for o in result.get("outputs", [])]
    print(json.dumps({"done": done_at, "error": result.get("error"), "outputs": outputs,
                      "log_tail": worker.process.log_tail(3000)}), flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=["full", "tiny"], default="full")
    p.add_argument("--device", default="cuda", help="cuda: ComfyUI on the GPU; cpu: ComfyUI with --cpu")
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_DIR", ".carry/ComfyUI.tar.gz"),
                   help="ComfyUI's source: a folder or a .tar.gz (default $COMFYUI_DIR, else .carry/ComfyUI.tar.gz)")
    p.add_argument("--work", default="/tmp/wan_cold_start", help="weights, inputs and ComfyUI's base folder")
    p.add_argument("--detection", choices=["full", "tiny"], default=None,
                   help="the detection graphs' size (default: --size); full on a CPU checks their path (slow)")
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--steps", type=int, default=20, help="the shipped workflow's steps")
    p.add_argument("--cache-drop", choices=["system", "files"], default="system",
                   help="system: drop_caches where allowed (a machine of one's own); files: only the model files")
    p.add_argument("--simulate-device", action="store_true",
                   help="make the modules the GPU machine lacks and that are not carried unimportable")
    p.add_argument("--job-timeout", type=float, default=480.0, help="ComfyUI's start-up and the job's timeout, s")
    p.add_argument("--port", type=int, default=None, help="ComfyUI's port (default: a free one)")
    p.add_argument("--pack", action="store_true", help="fetch the wheels and pack ComfyUI for the GPU machine")
    p.add_argument("--out", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.size == "tiny":
        args.frames, args.width, args.height, args.steps = 13, 64, 64, 1
    args.port = args.port or free_port()
    args.detection = args.detection or args.size
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.pack:
        pack(Path(args.comfyui))
        return 0
    if args.child:
        child(args)
        return 0
    report = Report("worker cold start", args.out, args.device, vars(args))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.comfyui = str(comfyui_source(args.comfyui, work))
    job, files = prepare(args, report)
    env = dict(os.environ, **(simulate_device(work) if args.simulate_device else {}))
    report.set(onnxruntime_providers=subprocess.run(
        [sys.executable, "-c", "import onnxruntime; print(','.join(onnxruntime.get_available_providers()))"],
        capture_output=True, text=True, env=env).stdout.strip())
    system_wide = args.cache_drop == "system"
    report.set(cache_drop=drop_page_cache(files, system_wide))
    probe = files[-1]
    size = probe.stat().st_size / 1e9
    cold, warm = size / raw_read(probe), size / raw_read(probe)
    report.set(probe_cold_gbps=round(cold, 2), probe_warm_gbps=round(warm, 2), cache_was_cold=bool(cold < 0.5 * warm))
    drop_page_cache(files, system_wide)
    command = [sys.executable, "-m", "benchmarks.cold_start", "--child", "--job", str(job), "--comfyui", args.comfyui,
               "--work", args.work, "--device", args.device, "--port", str(args.port),
               "--job-timeout", str(args.job_timeout)]
    errors = work / "worker_stderr.log"
    spawned = time.time()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=errors.open("w"), text=True, env=env)
    ready = done = None
    for line in proc.stdout:  # each time as soon as it is known: a run cut short keeps what it measured
        event = json.loads(line) if line.startswith("{") else {}
        if "ready" in event:
            ready = event["ready"]
            report.add(span="process start -> ComfyUI ready", seconds=round(ready - spawned, 2))
        elif "done" in event:
            done = event
    if proc.wait() != 0 or done is None or ready is None:
        report.note(f"the worker process failed (exit {proc.returncode}): {errors.read_text()[-3000:]}")
        return 1
    report.set(outputs=done["outputs"])
    if done["error"]:
        report.note(f"the first job failed: {done['error'][:2000]}\nComfyUI's log ends:\n{done['log_tail']}")
    report.add(span="ComfyUI ready -> first job done", seconds=round(done["done"] - ready, 2))
    report.add(span="process start -> first job done", seconds=round(done["done"] - spawned, 2))
    report.print_table(["span", "seconds"])
    return 1 if done["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
