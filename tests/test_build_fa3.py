"""scripts/build_fa3.sh refuses early, with what to do, where it cannot build FlashAttention-3.

The build itself needs network access (GitHub, PyPI) and minutes of compiling; it was run on this machine with a
local flash-attention checkout (FA3_SRC) and its FlashAttention-3 loaded on the H100 (benchmarks.attention).
Here a stand-in interpreter reports torch's CUDA version, so the checks run without installing anything.
"""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build_fa3.sh"


def run_with_torch_cuda(tmp_path: Path, cuda: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\n[ "$1" = -c ] && echo "$FAKE_TORCH_CUDA"\nexit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PYTHON": str(fake), "FAKE_TORCH_CUDA": cuda, "WORK": str(tmp_path / "work")}
    env.pop("CUDA_HOME", None)
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_refuses_a_cpu_build_of_torch(tmp_path):
    result = run_with_torch_cuda(tmp_path, "")
    assert result.returncode != 0
    assert "CPU build" in result.stderr


def test_asks_for_a_toolkit_when_torch_is_not_cuda_13(tmp_path):
    if subprocess.run(["bash", "-c", "command -v gcc && command -v g++"], capture_output=True).returncode:
        pytest.skip("gcc/g++ are not installed here: the script stops at that check first")
    result = run_with_torch_cuda(tmp_path, "12.8")
    assert result.returncode != 0
    assert "install a CUDA 12.8 toolkit and set CUDA_HOME" in result.stderr
