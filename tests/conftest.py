"""Shared fixtures: tiny random Wan2.2-Animate and Wan-Animate-2 components and a real ComfyUI server."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.comfyui_server import ComfyServer, comfyui_dir, missing_comfyui_reason  # noqa: E402


def pytest_report_header(config):
    return missing_comfyui_reason() if comfyui_dir() is None else f"ComfyUI source: {comfyui_dir()}"


@pytest.fixture(scope="session")
def tiny():
    """All six tiny components in memory (seed 0). Treat as read-only: it is shared by the whole session."""
    from wan_loader.testing.tiny import tiny_components

    return tiny_components(seed=0)


@pytest.fixture(scope="module")
def tiny2():
    """Tiny Wan-Animate-2 components (seed 3), one set per test module (some modules place or swap its blocks)."""
    from wan_loader.testing.tiny import tiny_animate2_components

    return tiny_animate2_components(seed=3)


@pytest.fixture(scope="session")
def comfyui_source() -> Path:
    path = comfyui_dir()
    if path is None:
        pytest.skip(missing_comfyui_reason())
    return path


@pytest.fixture(scope="session")
def comfy_server(comfyui_source, tmp_path_factory):
    """One real ComfyUI server for the session, with this package in custom_nodes/ under a different folder name.

    Tests that need models put them into `comfy_server.base_dir / "models" / <folder>` (ComfyUI re-lists folders).
    """
    server = ComfyServer(tmp_path_factory.mktemp("comfy_base"), comfyui_source).start()
    yield server
    server.stop()
