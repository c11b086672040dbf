"""The package imports inside a real ComfyUI server, under a folder name that is not the repository's."""
import re

import pytest

from tests.comfyui_server import CUSTOM_NODE_NAME

pytestmark = pytest.mark.comfyui


def test_package_imports_without_errors(comfy_server):
    log = comfy_server.log_text()
    assert CUSTOM_NODE_NAME not in _failed_lines(log), log[-4000:]
    assert re.search(r"seconds: .*custom_nodes/" + re.escape(CUSTOM_NODE_NAME) + r"\s*$", log, re.M), (
        "ComfyUI did not list the package among the imported custom nodes:\n" + log[-4000:]
    )


def test_server_answers_object_info(comfy_server):
    info = comfy_server.get_json("/object_info")
    assert "KSampler" in info


def _failed_lines(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "IMPORT FAILED" in line)
