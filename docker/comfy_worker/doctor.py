"""Health checks for the worker image: run at build (--phase build), at container start (--phase start) and by hand.

    python -m comfy_worker.doctor [--phase build|start|manual] [--json]

Checks: Python imports, GPU/CUDA, onnxruntime providers, paths and environment agree (strategy, volume,
extra_model_paths.yaml, bucket settings), ComfyUI reachable with this package's nodes, and each model file of the
manifest present with the expected layout (`python -m wan_loader inspect PATH --json` when available).
Exit code 1 when any check FAILs (warnings do not fail).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from .models import load_manifest
from .settings import WorkerSettings

OK, WARN, FAIL = "ok", "warn", "fail"
REQUIRED_IMPORTS = ("runpod", "boto3", "aiohttp", "comfy_cli.workflow_to_api", "huggingface_hub", "filelock",
                    "torch", "onnxruntime", "av", "safetensors")
PACKAGE_IMPORTS = ("wan_loader", "wan_animate")
# Manifest kinds that `wan_loader inspect` reports as components (LoRAs and ONNX files are only checked for presence).
INSPECTED_KINDS = ("transformer", "vae", "text_encoder", "image_encoder")


@dataclass
class Check:
    name: str
    status: str
    detail: str


def check_imports(package_dir: Path | None) -> list[Check]:
    out = []
    if package_dir and str(package_dir) not in sys.path:
        sys.path.append(str(package_dir))
    for mod in REQUIRED_IMPORTS + (PACKAGE_IMPORTS if package_dir else ()):
        try:
            importlib.import_module(mod)
            out.append(Check(f"import {mod}", OK, "imports"))
        except Exception as e:  # any import failure is the finding
            out.append(Check(f"import {mod}", FAIL, f"{type(e).__name__}: {e}"))
    return out


def check_gpu(require: bool) -> list[Check]:
    try:
        import torch
    except Exception as e:
        return [Check("gpu", FAIL, f"torch does not import: {e}")]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        free, total = torch.cuda.mem_get_info(0)
        return [Check("gpu", OK, f"{name}, CUDA {torch.version.cuda}, {free / 2**30:.1f}/{total / 2**30:.1f} GiB free")]
    detail = f"torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no GPU"
    return [Check("gpu", FAIL if require else WARN, detail)]


def check_onnxruntime(gpu_expected: bool) -> list[Check]:
    try:
        import onnxruntime as ort
    except Exception as e:
        return [Check("onnxruntime", FAIL, f"does not import: {e}")]
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" in providers:
        return [Check("onnxruntime", OK, f"{ort.__version__}: {', '.join(providers)}")]
    status = WARN if gpu_expected else OK
    return [Check("onnxruntime", status, f"{ort.__version__}: {', '.join(providers)} (pose detection runs on the CPU; "
                  "install onnxruntime-gpu for CUDA)")]


def check_paths(settings: WorkerSettings, phase: str) -> list[Check]:
    out = []
    main = settings.comfyui_dir / "main.py"
    out.append(Check("comfyui source", OK if main.is_file() else FAIL, str(main)))
    strategy = settings.model_strategy
    source_yaml = Path(__file__).resolve().parent.parent / "extra_model_paths.yaml"
    if phase == "build":
        out.append(Check("extra_model_paths.yaml", OK if source_yaml.is_file() else FAIL,
                         f"{source_yaml} (start.sh installs it for the volume and download strategies)"))
    elif strategy in ("volume", "download"):
        yaml_path = settings.comfyui_dir / "extra_model_paths.yaml"
        if not yaml_path.is_file():
            out.append(Check("extra_model_paths.yaml", FAIL, f"{yaml_path} missing (MODEL_STRATEGY={strategy})"))
        else:
            text = yaml_path.read_text()
            want = f"base_path: {settings.volume_dir}/models"
            out.append(Check("extra_model_paths.yaml", OK if want in text else FAIL,
                             f"{yaml_path} {'has' if want in text else 'lacks'} '{want}'"))
        if not settings.volume_dir.is_dir():
            out.append(Check("network volume", FAIL if strategy == "volume" else WARN,
                             f"{settings.volume_dir} is not mounted (attach a network volume to the endpoint)"))
        else:
            out.append(Check("network volume", OK, str(settings.volume_dir)))
    if settings.profile in settings.built_profiles:
        out.append(Check("profile", OK, f"{settings.profile} (image built with {', '.join(settings.built_profiles)})"))
    else:
        out.append(Check("profile", FAIL, f"WORKER_PROFILE={settings.profile} but this image was built with "
                         f"{', '.join(settings.built_profiles)} (build with --build-arg PROFILES=...)"))
    bucket_vars = [v for v in ("BUCKET_ENDPOINT_URL", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY") if os.environ.get(v)]
    if bucket_vars and len(bucket_vars) < 3:
        out.append(Check("bucket", FAIL, f"only {', '.join(bucket_vars)} set; set all of BUCKET_ENDPOINT_URL, "
                         "BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY"))
    else:
        out.append(Check("bucket", OK, f"outputs over {settings.inline_max_bytes} bytes go to "
                         f"{settings.bucket.endpoint_url if settings.bucket else 'nowhere (such jobs fail clearly)'}"))
    return out


def check_comfyui(settings: WorkerSettings, required: bool) -> list[Check]:
    try:
        with urllib.request.urlopen(settings.comfy_url + "/object_info", timeout=30) as r:
            info = json.loads(r.read())
    except OSError as e:
        return [Check("comfyui", FAIL if required else WARN, f"{settings.comfy_url} does not answer: {e}")]
    return [Check("comfyui", OK, f"{settings.comfy_url} answers with {len(info)} node types")]


def _inspect(path: Path, kind: str, package_dir: str | None) -> tuple[str, str]:
    """Whether wan_loader finds the expected component (kind) in the file, with its layout and dtype."""
    try:
        proc = subprocess.run([sys.executable, "-m", "wan_loader", "inspect", str(path), "--json"], cwd=package_dir,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return WARN, "wan_loader inspect took over 300 s"
    if proc.returncode != 0:
        if "No module named wan_loader" in proc.stderr:
            return OK, "present (wan_loader not importable here: set WAN_ANIMATE_PACKAGE_DIR to check the layout)"
        return FAIL, f"wan_loader inspect failed: {proc.stderr.strip()[-300:]}"
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return WARN, "present; wan_loader inspect printed no JSON"
    found = report.get("components") or {}
    if kind in INSPECTED_KINDS and kind not in found:
        return FAIL, (f"expected a {kind} but the file holds {', '.join(found) or 'nothing wan_loader knows'} "
                      f"(layout {report.get('layout')})")
    if kind == "transformer" and report.get("is_animate") is False:
        return FAIL, f"a Wan transformer but not Wan2.2-Animate ({report.get('model')})"
    part = found.get(kind) or {}
    return OK, f"{part.get('model', report.get('model'))}, layout {part.get('layout', report.get('layout'))}, " \
               f"{part.get('dtype', report.get('dtype'))}"


def check_models(settings: WorkerSettings, manifest: str | None, required: bool, inspect: bool,
                 package_dir: str | None = None) -> list[Check]:
    out = []
    for entry in load_manifest(manifest):
        path = entry.path(settings.models_root)
        if not path.is_file():
            out.append(Check(f"model {entry.folder}/{entry.name}", FAIL if required else WARN,
                             f"missing: {path} (from {entry.repo_id}/{entry.filename})"))
            continue
        if inspect and entry.kind in INSPECTED_KINDS:
            status, detail = _inspect(path, entry.kind, package_dir)
        else:
            status, detail = OK, f"{path.stat().st_size / 2**30:.2f} GiB"
        out.append(Check(f"model {entry.folder}/{entry.name}", status, detail))
    return out


def run_checks(phase: str, settings: WorkerSettings | None = None, manifest: str | None = None) -> list[Check]:
    settings = settings or WorkerSettings.from_env()
    package_dir = os.environ.get("WAN_ANIMATE_PACKAGE_DIR")
    require_gpu = phase == "start" and os.environ.get("DOCTOR_REQUIRE_GPU", "1") == "1"
    checks = check_imports(Path(package_dir) if package_dir else None)
    checks += check_gpu(require_gpu) + check_onnxruntime(gpu_expected=phase != "build")
    checks += check_paths(settings, phase)
    if phase != "build":
        checks += check_comfyui(settings, required=phase == "manual")
    # Baked images must carry their models from the build on; a volume must hold them at start; downloads happen
    # at start (after this check). DOCTOR_REQUIRE_MODELS=0 relaxes it (e.g. a smoke-test image without weights).
    models_required = phase == "manual" or (settings.model_strategy == "baked") or (
        phase == "start" and settings.model_strategy == "volume")
    if phase != "build" or settings.model_strategy == "baked":
        checks += check_models(settings, manifest, models_required and os.environ.get("DOCTOR_REQUIRE_MODELS", "1") == "1",
                               inspect=phase in ("manual", "start"), package_dir=package_dir)
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=["build", "start", "manual"], default="manual")
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    checks = run_checks(args.phase, manifest=args.manifest)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=1))
    else:
        for c in checks:
            print(f"[{c.status.upper():4}] {c.name}: {c.detail}")
    failed = [c for c in checks if c.status == FAIL]
    if not args.json:
        print(f"doctor ({args.phase}): {len(checks)} checks, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
