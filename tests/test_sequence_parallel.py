"""Sequence parallel (wan_animate.engine.parallel): N CPU processes under torchrun (gloo) give the frames of one.

Real processes, real collectives (gloo's all-to-all, all-gather, broadcast), real FSDP2 sharding; only the GPUs are
missing (NCCL is the same torch.distributed calls). Frames may differ by one level of 255 where a different
attention path (the engine's processor instead of diffusers') rounds differently.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.sequence_parallel_jobs import JOBS
from tests.test_engine_cli import QUICK, read_frames
from wan_animate.cli import main
from wan_animate.engine import AnimateOptions, animate
from wan_animate.engine.animate2 import Animate2Options
from wan_animate.engine.parallel import SequenceParallel

RANKS_SCRIPT = Path(__file__).with_name("sequence_parallel_ranks.py")


@pytest.fixture(scope="module")
def one_process():
    return {name: job() for name, job in JOBS.items()}


def torchrun(ranks: int, *arguments: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-4000:]


def run_ranks(tmp_path: Path, ranks: int, mode: str, *jobs: str) -> dict[str, np.ndarray]:
    torchrun(ranks, str(RANKS_SCRIPT), str(tmp_path), mode, *jobs)
    return {name.partition(":")[0]: np.load(tmp_path / f"{name.partition(':')[0]}.npy") for name in jobs}


def assert_same_frames(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_two_ranks_ulysses_equal_one_process(tmp_path, one_process):
    """Ulysses (2 heads over 2 ranks) for Animate-14B with replicated weights and Animate-2 with FSDP2 blocks, and
    Animate-2 with each rank's half of the driving K/V cache in host memory (the same frames as the device cache)."""
    frames = run_ranks(tmp_path, 2, "ulysses", "animate14b", "animate2:sharded", "animate2_host")
    for name, got in frames.items():
        assert_same_frames(got, one_process[name])
    assert_same_frames(frames["animate2_host"], one_process["animate2"])
    assert np.array_equal(one_process["animate2_host"], one_process["animate2"])


def test_four_ranks_fall_back_to_ring_and_equal_one_process(tmp_path, one_process):
    """2 heads do not divide by 4 ranks: Animate-14B gathers keys/values instead; blocks sharded by FSDP2."""
    frames = run_ranks(tmp_path, 4, "ulysses", "animate14b:sharded")
    assert_same_frames(frames["animate14b"], one_process["animate14b"])


def test_without_a_process_group_the_error_says_to_use_torchrun():
    from wan_loader.testing.tiny import tiny_components
    from tests.engine_helpers import driving

    with pytest.raises(ValueError, match="torchrun"):
        animate(tiny_components(), driving(5, 32, 32), AnimateOptions(steps=1, sequence_parallel="ulysses"),
                device="cpu")
    with pytest.raises(ValueError, match="sequence_parallel='tensor'"):
        Animate2Options(sequence_parallel="tensor").resolved()
    with pytest.raises(ValueError, match="ulysses' or 'ring"):
        SequenceParallel("off", heads=40)


def test_gpu_ranks_without_nccl_say_so(monkeypatch):
    """Windows builds of torch have no NCCL: a clear error instead of init_process_group's."""
    from wan_animate.engine.parallel import launch

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(launch.dist, "is_nccl_available", lambda: False)
    with pytest.raises(ValueError, match="needs NCCL"):
        launch.join("cuda:0")


def test_cli_under_torchrun_writes_the_video_of_one_process(tmp_path):
    """`torchrun -m wan_animate animate --sequence-parallel ulysses`: rank 0 preprocesses and writes the mp4."""
    single, parallel = tmp_path / "single.mp4", tmp_path / "parallel.mp4"
    assert main(["animate", *QUICK, "--out", str(single)]) == 0
    torchrun(2, "-m", "wan_animate", "animate", *QUICK, "--out", str(parallel), "--sequence-parallel", "ulysses")
    want, got = np.stack(read_frames(single)).astype(int), np.stack(read_frames(parallel)).astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).mean() < 0.5  # the same frames up to one level, through the same H.264 encoder


def test_cli_sequence_parallel_without_torchrun_says_how_to_start_it(tmp_path, capsys):
    assert main(["animate", *QUICK, "--out", str(tmp_path / "x.mp4"), "--sequence-parallel", "ulysses"]) == 2
    assert "torchrun --nproc-per-node" in capsys.readouterr().err
    assert main(["animate", *QUICK, "--out", str(tmp_path / "x.mp4"), "--shard-weights"]) == 2
    assert "--sequence-parallel" in capsys.readouterr().err
