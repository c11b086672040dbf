"""benchmarks.step / benchmarks.e2e / benchmarks.attention smoke runs on CPU with the tiny model: every model that
can run here runs and agrees, and the report has the harness's one shape."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPORT_KEYS = {"benchmark", "device", "config", "rows", "ratios", "goals", "notes"}


def run_benchmark(name: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], check=True, timeout=600, cwd=REPO)


def test_step_benchmark_tiny_cpu(tmp_path):
    out = tmp_path / "step.json"
    run_benchmark("step", "--size", "tiny", "--device", "cpu", "--repeats", "1", "--no-compile", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report) >= REPORT_KEYS and report["config"]["size"] == "tiny"
    rows = {r["model"]: r for r in report["rows"]}
    assert {r["res"] for r in report["rows"]} == {"tiny"}
    assert set(rows) == {"diffusers", "ours fp8 eager"}
    assert rows["diffusers"]["cosine_vs_diffusers_bf16"] == 1.0
    assert rows["ours fp8 eager"]["cosine_vs_diffusers_bf16"] > 0.99  # fp8 weights vs the bf16 reference
    assert rows["ours fp8 eager"]["setup"]["fp8_matmul"] == "dequant"  # no fp8 tensor cores on a CPU
    assert all(r["seconds"] > 0 for r in rows.values())
    assert any("comfy skipped" in n for n in report["notes"])  # ComfyUI's model only exists at full size
    speedup = rows["diffusers"]["seconds"] / rows["ours fp8 eager"]["seconds"]
    assert report["ratios"] == {"tiny ours fp8 eager vs best competitor": round(speedup, 3)}


def test_e2e_benchmark_tiny_cpu(tmp_path):
    """The whole-job benchmark on the tiny model with synthetic inputs and block swap: every stage is timed, the same
    job runs through diffusers' pipeline, and the VAE rows compare its fast path with diffusers' code."""
    out = tmp_path / "e2e.json"
    run_benchmark("e2e", "--size", "tiny", "--device", "cpu", "--no-compile", "--no-preprocess",
                  "--blocks-on-cpu", "2", "--vae-chunks", "2", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report) >= REPORT_KEYS
    ours = [r for r in report["rows"] if r["kind"] == "ours"]
    assert [r["run"] for r in ours] == ["warm-up", "measured"]
    measured = ours[-1]
    assert measured["frames_out"] == 9 and len(measured["per_step_seconds"]) == 4
    assert report["accel"]["blocks_on_cpu"] == 2 and report["lora_merged_parameters"] > 0  # merged at load
    stages = measured["stages"]
    assert {"VAE encode", "VAE decode", "DiT 4 steps", "text encoder (umT5)"} <= set(stages)
    other = next(k for k in stages if k.startswith("other"))
    assert all(v > 0 for k, v in stages.items() if k != other and not k.startswith("preprocess"))  # each one timed
    assert stages[other] >= -0.01  # the timed stages do not overlap (double-counted time would exceed the total)
    assert report["vae_path"]["path"] == "fast"
    theirs = [r for r in report["rows"] if r["kind"] == "diffusers"][-1]
    assert theirs["frames_out"] == 9 and theirs["stages"]["DiT 4 steps"] > 0 and theirs["stages"]["VAE decode"] > 0
    assert report["ratios"]["diffusers pipeline vs ours (without preprocessing)"] == round(
        theirs["total_seconds"] / measured["job_seconds"], 3)
    vae = {r["variant"]: r for r in report["rows"] if r["kind"] == "vae"}
    assert set(vae) == {"diffusers fp32", "diffusers bf16", "fast auto chunk 2", "fast fp32 chunk 2"}
    assert vae["diffusers fp32"]["encode_error"] == 0 and vae["fast fp32 chunk 2"]["decode_error"] < 1e-5
    assert 0 < vae["diffusers bf16"]["decode_error"] < 0.1


def test_step_benchmark_notes_a_kernel_this_machine_lacks(tmp_path):
    """An attention kernel that cannot run here (FlashAttention-3 needs a Hopper GPU) is skipped with the reason."""
    out = tmp_path / "step.json"
    run_benchmark("step", "--size", "tiny", "--device", "cpu", "--models", "ours", "--attention", "fa3_fp8",
                  "--repeats", "1", "--no-compile", "--out", str(out))
    report = json.loads(out.read_text())
    assert report["rows"] == []
    assert any("skipped" in n and "fa3_fp8" in n for n in report["notes"])


def test_step_benchmark_proxy_generations():
    """`--attention sm86` etc. force the kernels selection picks on that GPU generation, given what works on this
    machine (here nothing optional works: bf16 SDPA kernels, dequantising matmuls)."""
    from benchmarks.step import generation_kernels, variant_name
    assert generation_kernels("sm86", "cpu") == ("flash", "dequant")
    assert generation_kernels("sm90", "cpu") == ("flash", "dequant")  # no cuDNN version on a CPU device
    assert generation_kernels("sm75", "cpu") == ("efficient", "dequant")
    assert variant_name("sm120") == "ours (sm120 kernels, proxy)" and variant_name("auto") == "ours"


def test_memory_caps_benchmark_tiny_cpu(tmp_path):
    """The memory=auto benchmark runs its job through the planner and placement the loader node uses."""
    out = tmp_path / "caps.json"
    run_benchmark("memory_caps", "--size", "tiny", "--device", "cpu", "--caps", "0", "--steps", "1", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report) >= REPORT_KEYS and len(report["rows"]) == 1
    row = report["rows"][0]
    assert row["frames_out"] == 9 and row["seconds"] > 0 and "warmup_seconds" in row
    assert row["plan"].startswith("memory plan: 0 of 4 transformer blocks swapped")
    assert row["host_peak_rss_gib"] > 0 and report["footprint"]["blocks"] == 4


def test_attention_benchmark_sparse_rows_on_cpu(tmp_path):
    """The attention benchmark on the CPU: bf16 SDPA and the sparse rows (comfy-kitchen's eager Sol-Attn), each with
    its time, error on both kinds of input and fraction of exact block pairs; ratios against SDPA."""
    out = tmp_path / "attention.json"
    run_benchmark("attention", "--device", "cpu", "--tokens", "512", "--heads", "2", "--sparse-taus=-100,1",
                  "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report) >= REPORT_KEYS
    rows = {r["kernel"]: r for r in report["rows"]}
    assert set(rows) == {"sdpa bf16", "sparse sol_attn tau=-100", "sparse sol_attn tau=1"}
    dense, all_exact, sparse = rows["sdpa bf16"], rows["sparse sol_attn tau=-100"], rows["sparse sol_attn tau=1"]
    assert all_exact["exact_blocks_random"] == all_exact["exact_blocks_structured"] == 1.0
    assert all_exact["rel_err_random"] <= dense["rel_err_random"] + 1e-3  # fp32 reference maths: no sparsity error
    assert sparse["exact_blocks_random"] < 1.0 and sparse["rel_err_random"] > 0.05  # pooled blocks: an error
    assert all(r["ms"] > 0 and "ms_structured" in r for r in (all_exact, sparse))
    assert set(report["ratios"]) == {"512 sparse sol_attn tau=-100 vs sdpa bf16", "512 sparse sol_attn tau=1 vs sdpa bf16"}
