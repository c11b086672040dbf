"""Each job's own corner of ComfyUI's input/, output/ and temp/ folders, removed when the job ends.

ComfyUI has one input, one output and one temp folder for every prompt. Without a per-job subfolder a later job can
load an earlier job's upload by naming it, and two concurrent jobs that upload `ref.png` overwrite each other's file.
So uploads go to input/<ROOT>/<job key>/, every save node's path input is moved under <ROOT>/<job key>/ of output/
(temp/ for savers into temp), and those folders are deleted when the job ends (success, error, timeout, cancel,
ComfyUI crash alike). Previews land in temp/ under names ComfyUI picks at random: the job's prompt history lists them,
and they are deleted by name once the prompt has stopped (job.py).
"""
from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("comfy_worker.namespace")

ROOT = "worker-jobs"
KINDS = ("input", "output", "temp")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class JobNamespace:
    """subfolder: the job's folder relative to input/ and output/ ("worker-jobs/<job id>-<random>")."""

    dirs: dict[str, Path]
    subfolder: str
    temp_files: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls, job_id: str, dirs: dict[str, Path]) -> "JobNamespace":
        key = f"{_UNSAFE.sub('_', str(job_id or 'job'))[:40]}-{uuid.uuid4().hex[:12]}"
        return cls(dirs, f"{ROOT}/{key}")

    def ref(self, name: str) -> str:
        """How a loader node names a file of this job (ComfyUI reads subfolder/name relative to input/)."""
        return f"{self.subfolder}/{name}"

    def owns(self, relative: str) -> bool:
        return relative == self.subfolder or relative.startswith(self.subfolder + "/")

    def output_prefix(self, prefix: str) -> str:
        return f"{self.subfolder}/{prefix.lstrip('/')}"

    def public_subfolder(self, subfolder: str) -> str:
        """An output's subfolder as the job sent it (the namespace taken off again)."""
        return subfolder[len(self.subfolder):].lstrip("/") if self.owns(subfolder) else subfolder

    def remember_temp(self, subfolder: str, filename: str) -> None:
        """A preview outside the namespace (its name comes from the prompt's history): deleted by remove()."""
        self.temp_files.append(self.dirs["temp"] / subfolder / filename)

    def remove(self) -> None:
        for kind in KINDS:
            shutil.rmtree(self.dirs[kind] / self.subfolder, ignore_errors=True)
        for path in self.temp_files:
            path.unlink(missing_ok=True)


def sweep_stale(dirs: dict[str, Path], older_than_s: float) -> int:
    """Remove job folders left by a worker that was killed mid-job (its `finally` never ran); returns how many."""
    removed, cutoff = 0, time.time() - older_than_s
    for kind in KINDS:
        root = dirs[kind] / ROOT
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            try:
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
            except OSError as e:
                log.warning("could not sweep %s: %s", entry, e)
    return removed
