"""Build times and image sizes of the worker image's variants, for one set of profiles, with a real Docker daemon.

    eval "$(bash docker/scripts/local_dockerd.sh start)" && bash docker/scripts/make_local_base.sh
    COMFYUI_DIR=/path/to/ComfyUI python -m benchmarks.docker_build --profiles s2v \
        --out benchmarks/results/docker_build_s2v_local.json --remove-images

Rows: the cold build of the production variant (build cache pruned first; pip's cache mount empty too), the rebuild
after a code-only change (a new file in docker/comfy_worker/), then the minimal and debug variants on that cache;
each with its wall time and image size. The ComfyUI source is copied to docker/vendor/ComfyUI for an offline build
(removed afterwards) when its release is one the profiles accept; otherwise the build fetches the release the profiles
pin with comfy-cli, as without a vendored source. docker/models/ holds no weights, so production equals minimal plus
empty model layers here. A failed build is recorded with the lines of its log that say why.

A build is stopped (and the report says so) when the free space of the daemon's disk falls below --min-free-gib:
an image with torch's CUDA libraries, its build stage and pip's cache took about 12 GB together. --remove-images
deletes the images and the build cache at the end, so profiles can be measured one after another on a small disk.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .docker_context import context_files
from .harness import REPO, Report

sys.path.insert(0, str(REPO / "docker"))
from comfy_worker import profiles  # noqa: E402  (docker/ is the worker's root, not a package)

GIB = 1024 ** 3
VARIANTS = ("production", "minimal", "debug")
FAILURE_MARKERS = ("ERROR", "fatal:", "install_comfyui:", "Error:", "error:")


def _docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, DOCKER_BUILDKIT="1"))


def free_gib(path: Path) -> float:
    return shutil.disk_usage(path).free / GIB


class DiskFloor:
    """The least free space a build may leave on the disk holding `path` (shared disks: stop before others fail)."""

    def __init__(self, path: Path, min_free_gib: float):
        self.path, self.min_free_gib = path, min_free_gib
        self.lowest_gib = free_gib(path)

    def breached(self) -> bool:
        free = free_gib(self.path)
        self.lowest_gib = min(self.lowest_gib, free)
        return free < self.min_free_gib


class Builder:
    """`docker build` of docker/Dockerfile for one profile set, watched against the disk floor."""

    def __init__(self, report: Report, base: str, profiles: str, floor: DiskFloor):
        self.report, self.base, self.profiles, self.floor = report, base, profiles, floor

    def tag(self, variant: str) -> str:
        return f"wan-worker-{self.profiles.replace(',', '-')}:{variant}"

    def build(self, name: str, variant: str) -> None:
        command = ["docker", "build", "-f", "docker/Dockerfile", "--network", "host",
                   "--build-arg", f"BASE_IMAGE={self.base}", "--build-arg", "EXTRA_PIP_PACKAGES=",
                   "--build-arg", f"PROFILES={self.profiles}", "--build-arg", f"VARIANT={variant}",
                   "-t", self.tag(variant), "."]
        log = REPO / "benchmarks" / "results" / f".docker_build_{self.profiles}_{variant}.log"
        began = time.perf_counter()
        with open(log, "w") as out:
            proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, DOCKER_BUILDKIT="1"))
            while proc.poll() is None:
                if self.floor.breached():
                    proc.terminate()
                    proc.wait()
                    self.report.note(f"{name}: stopped: free disk fell below {self.floor.min_free_gib} GiB "
                                     f"({self.floor.lowest_gib:.1f} GiB left)")
                    raise SystemExit(1)
                time.sleep(2)
        seconds = time.perf_counter() - began
        text = log.read_text(errors="replace")
        log.unlink()
        if proc.returncode != 0:
            why = [line for line in text.splitlines() if any(m in line for m in FAILURE_MARKERS)]
            self.report.note(f"{name}: build failed (exit {proc.returncode}): " + " | ".join(why[-6:]))
            raise SystemExit(1)
        size = int(_docker("image", "inspect", "-f", "{{.Size}}", self.tag(variant)).stdout.strip())
        self.report.add(build=name, profiles=self.profiles, variant=variant, seconds=round(seconds, 1),
                        image_gib=round(size / GIB, 2), lowest_free_disk_gib=round(self.floor.lowest_gib, 1))

    def remove_images(self) -> None:
        """The variants' images, the production image the code-only rebuild untagged, and the build cache."""
        _docker("image", "rm", "-f", *(self.tag(v) for v in VARIANTS))
        _docker("image", "prune", "-f")
        _docker("builder", "prune", "-af", timeout=1800)


def comfyui_release(source: Path) -> str:
    return (source / "comfyui_version.py").read_text().split("__version__ = ")[1].split()[0].strip("\"'")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="wan-worker-base:local")
    parser.add_argument("--profiles", default="animate", help="PROFILES build argument (docker/profiles/<name>)")
    parser.add_argument("--min-free-gib", type=float, default=8.0,
                        help="stop a build when the disk of --docker-root has less free space than this")
    parser.add_argument("--docker-root", default=os.environ.get("DOCKERD_ROOT", "/tmp/wan-dockerd"),
                        help="a path on the disk the daemon stores images on (local_dockerd.sh's DOCKERD_ROOT)")
    parser.add_argument("--remove-images", action="store_true", help="delete the images and build cache at the end")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    report = Report("docker_build", args.out, config=vars(args))
    source = Path(os.environ.get("COMFYUI_DIR", "/opt/ComfyUI"))
    vendored = REPO / "docker" / "vendor" / "ComfyUI"
    probe = REPO / "docker" / "comfy_worker" / "_rebuild_probe.py"
    have = comfyui_release(source)
    need = profiles.comfyui_version_for([profiles.Profile.load(n) for n in profiles.parse_names(args.profiles)])
    if profiles.version_tuple(have) >= profiles.version_tuple(need):
        shutil.copytree(source, vendored, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    else:
        report.note(f"{source} is ComfyUI {have}; profiles {args.profiles} need {need}: not vendored, the build "
                    "fetches it with comfy-cli")
    report.set(comfyui_needed=need, comfyui_vendored=have if vendored.exists() else None)
    builder = Builder(report, args.base, args.profiles, DiskFloor(Path(args.docker_root), args.min_free_gib))
    try:
        report.set(context_mib=round(sum(context_files(REPO).values()) / 1024 ** 2, 2),
                   free_disk_gib_before=round(free_gib(Path(args.docker_root)), 1))
        _docker("builder", "prune", "-af", timeout=1800)
        builder.build("cold", "production")
        probe.write_text(f'"""Code-only change for benchmarks.docker_build ({time.time()})."""\n')
        builder.build("code-only change", "production")
        probe.unlink()
        builder.build("minimal on the cache", "minimal")
        builder.build("debug on the cache", "debug")
    finally:
        probe.unlink(missing_ok=True)
        shutil.rmtree(vendored, ignore_errors=True)
        if args.remove_images:
            builder.remove_images()
    report.print_table(["build", "profiles", "variant", "seconds", "image_gib", "lowest_free_disk_gib"])


if __name__ == "__main__":
    main()
