"""benchmarks.cold_start runs end to end on the CPU with tiny weights (the full-size run is for an H200): its weight
writer, the page-cache drop, the worker process that starts ComfyUI and runs the animate workflow, with the modules
the GPU machine lacks and that are not carried made unimportable, as they are there."""
import json
import subprocess
import sys

import pytest

from tests.comfyui_server import REPO_ROOT

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]


def test_cold_start_benchmark_smoke(comfyui_source, tmp_path):
    out = tmp_path / "cold.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.cold_start", "--size", "tiny", "--device", "cpu",
                        "--simulate-device", "--cache-drop", "files", "--comfyui", str(comfyui_source),
                        "--work", str(tmp_path / "work"), "--out", str(out)],
                       capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    report = json.loads(out.read_text())
    assert r.returncode == 0, (report["notes"], r.stderr[-3000:])
    spans = {row["span"]: row["seconds"] for row in report["rows"]}
    ready, job, total = (spans[k] for k in ("process start -> ComfyUI ready", "ComfyUI ready -> first job done",
                                              "process start -> first job done"))
    assert 0 < ready < total and 0 < job < total and total == pytest.approx(ready + job, abs=0.05)
    assert report["cache_drop"] == "posix_fadvise(DONTNEED)" and report["probe_cold_gbps"] > 0
    assert report["loader_inputs"]["model"] == "wan2.2_animate_14B_fp8_e4m3fn_scaled.safetensors"
    [video] = report["outputs"]
    assert video["kind"] == "video" and video["size"] > 0
    comfy_log = (tmp_path / "work" / "comfyui.log").read_text()
    assert "import of spandrel halted" in comfy_log  # the GPU machine's missing modules were missing here too
