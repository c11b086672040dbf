"""The Comfy Registry's own offline check (`comfy node validate`, comfy-cli) accepts pyproject.toml as published."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _comfy_cli() -> str:
    exe = Path(sys.executable).with_name("comfy")
    if not exe.exists():
        pytest.skip("comfy-cli is not installed in this environment (requirements-test.txt installs it)")
    return str(exe)


def _validate(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_comfy_cli(), "--skip-prompt", "--no-enable-telemetry", "node", "validate"], cwd=folder,
                          capture_output=True, text=True, timeout=120)


def test_registry_accepts_the_package():
    result = _validate(REPO_ROOT)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "passed successfully" in out and "Security warnings" not in out, out


def test_registry_refuses_a_broken_pyproject(tmp_path):
    """The check is real: the same file without its version is refused."""
    text = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'version = "' in text
    (tmp_path / "pyproject.toml").write_text(text.replace('version = "', 'version = "" #', 1))
    shutil.copy(REPO_ROOT / "README.md", tmp_path / "README.md")
    result = _validate(tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
