"""Build times and image sizes of the worker image's variants with a real Docker daemon.

    eval "$(bash docker/scripts/local_dockerd.sh start)" && bash docker/scripts/make_local_base.sh
    COMFYUI_DIR=/path/to/ComfyUI python -m benchmarks.docker_build --out benchmarks/results/docker_build_local.json

Rows: the cold build of the production variant (build cache pruned first; pip's cache mount empty too), the rebuild
after a code-only change (a new file in docker/comfy_worker/), then the minimal and debug variants on that cache;
each with its wall time and image size. The ComfyUI source is copied to docker/vendor/ComfyUI for an offline build
(removed afterwards); docker/models/ holds no weights, so production equals minimal plus empty model layers here.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

from .docker_context import context_files
from .harness import REPO, Report

GIB = 1024 ** 3


def _docker(*args: str, timeout: float = 7200) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, DOCKER_BUILDKIT="1"))


def build(report: Report, name: str, base: str, variant: str, tag: str) -> None:
    began = time.perf_counter()
    proc = _docker("build", "-f", "docker/Dockerfile", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
                   "--build-arg", "EXTRA_PIP_PACKAGES=", "--build-arg", f"VARIANT={variant}", "-t", tag, ".")
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        report.note(f"{name}: build failed:\n{proc.stderr[-3000:]}")
        raise SystemExit(1)
    size = int(_docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip())
    report.add(build=name, variant=variant, seconds=round(seconds, 1), image_gib=round(size / GIB, 2))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="wan-worker-base:local")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    report = Report("docker_build", args.out, config=vars(args))
    source = Path(os.environ.get("COMFYUI_DIR", "/opt/ComfyUI"))
    vendored = REPO / "docker" / "vendor" / "ComfyUI"
    probe = REPO / "docker" / "comfy_worker" / "_rebuild_probe.py"
    shutil.copytree(source, vendored, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    try:
        report.set(context_mib=round(sum(context_files(REPO).values()) / 1024 ** 2, 2))
        _docker("builder", "prune", "-af")
        build(report, "cold", args.base, "production", "wan-worker:production")
        probe.write_text(f'"""Code-only change for benchmarks.docker_build ({time.time()})."""\n')
        build(report, "code-only change", args.base, "production", "wan-worker:production")
        probe.unlink()
        build(report, "minimal on the cache", args.base, "minimal", "wan-worker:minimal")
        build(report, "debug on the cache", args.base, "debug", "wan-worker:debug")
    finally:
        probe.unlink(missing_ok=True)
        shutil.rmtree(vendored, ignore_errors=True)
    report.print_table(["build", "variant", "seconds", "image_gib"])


if __name__ == "__main__":
    main()
