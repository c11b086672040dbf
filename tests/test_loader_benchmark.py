"""benchmarks.load runs end to end on the CPU with the tiny model (the full-size run needs an H100)."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_load_benchmark_smoke(tmp_path):
    out = tmp_path / "load.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.load", "--size", "tiny", "--device", "cpu",
                        "--file", str(tmp_path / "tiny.safetensors"), "--loaders", "ours", "--modes", "warm",
                        "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "GB/s" in r.stdout
    report = json.loads(out.read_text())
    runs = {x["loader"]: x for x in report["rows"]}
    assert runs["ours"]["on_device"] and runs["ours"]["gb_per_s"] > 0
    assert report["ratios"]["warm ours vs raw read"] == round(runs["ours"]["gb_per_s"] / runs["raw read"]["gb_per_s"], 3)
