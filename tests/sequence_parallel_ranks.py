"""One rank of the sequence-parallel tests, started by torchrun as CPU processes talking over gloo:

    torchrun --standalone --nproc-per-node N tests/sequence_parallel_ranks.py OUT_DIR MODE JOB[:sharded] ...

Runs each named job of tests/sequence_parallel_jobs.py with AnimateOptions.sequence_parallel=MODE (":sharded":
with the DiT blocks sharded by FSDP2) and writes rank 0's frames to OUT_DIR/JOB.npy.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sequence_parallel_jobs import JOBS  # noqa: E402  (after the path)
from wan_animate.engine.parallel import join, leave  # noqa: E402


def main(out: Path, mode: str, jobs: list[str]) -> None:
    rank = join("cpu")
    try:
        for spec in jobs:
            name, _, sharded = spec.partition(":")
            frames = JOBS[name](mode, sharded == "sharded")
            if rank.is_first:
                np.save(out / f"{name}.npy", frames)
    finally:
        leave()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
