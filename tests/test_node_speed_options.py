"""The speed options on the nodes inside a real ComfyUI server: the samplers' step_cache changes the work done
(sampling steps reused, reported on the node), the loader offers attention "sparse" with its sparse_tau, both are
checked by the engine's rules, the Animate-2 sampler's driving_cache runs with the cache in host memory, and
workflows saved before these inputs existed load unchanged."""
from __future__ import annotations

import json
import re

import pytest

from tests.comfyui_server import REPO_ROOT
from tests.test_workflows_support import install_workflow_assets

pytestmark = pytest.mark.comfyui

STEPS = 8


@pytest.fixture(scope="module")
def assets(comfy_server, tmp_path_factory):
    return install_workflow_assets(comfy_server.base_dir, tmp_path_factory.mktemp("workflow_assets"))


def sampler_prompt(**sampler_inputs) -> dict:
    """Tiny Animate-14B (the workflows' file names) -> Wan Animate Sampler on plain frames -> preview."""
    sampler = {
        "model": ["1", 0], "reference_image": ["2", 0], "pose_video": ["2", 0], "face_video": ["2", 0],
        "mode": "animate", "prompt": "", "negative_prompt": "", "steps": STEPS, "guide_scale": 1.0, "shift": 5.0,
        "scheduler": "unipc", "seed": 0, "segment_length": 9, "guide_frames": "1", "color_anchor": "off",
        "color_anchor_strength": 1.0, "tiled_vae": False, "lora_mode": "runtime", "fps": 30.0, **sampler_inputs,
    }
    return {
        "1": {"class_type": "WanAnimateModelLoader", "inputs": {
            "model": "wan2.2_animate_14B_bf16.safetensors", "vae": "wan_2.1_vae.safetensors",
            "text_encoder": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "clip_vision": "clip_vision_h.safetensors",
            "precision": "fp32", "memory": "gpu"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 9, "color": 8421504}},
        "3": {"class_type": "WanAnimateSampler", "inputs": sampler},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }


def succeeded(entry: dict) -> dict:
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"], indent=1)[-3000:]
    return entry["outputs"]


def test_step_cache_reuses_steps_and_says_so(comfy_server, assets):
    old = sampler_prompt()  # as a workflow saved before the input existed: no step_cache at all
    outputs = succeeded(comfy_server.run(old, timeout=600))
    assert "text" not in outputs.get("3", {})  # off: nothing reused, nothing reported
    outputs = succeeded(comfy_server.run(sampler_prompt(step_cache=1.0), timeout=600))
    (text,) = outputs["3"]["text"]
    match = re.fullmatch(rf"step cache: (\d) of {STEPS} sampling steps reused \((\d) computed\)", text)
    assert match, text
    reused, computed = int(match[1]), int(match[2])
    # fewer DiT forwards: the 3 warm-up steps and the last are always computed, some of the others reused
    assert reused + computed == STEPS and 1 <= reused <= STEPS - 4


def test_negative_step_cache_is_refused_by_the_engine_rule(comfy_server):
    status, body = comfy_server.queue(sampler_prompt(step_cache=-0.5))
    assert status == 400
    errors = {e["extra_info"]["input_name"]: e for e in body["node_errors"]["3"]["errors"]}
    assert "step_cache=-0.5: must be >= 0" in errors["step_cache"]["details"]


def test_loader_offers_sparse_attention_and_checks_its_threshold(comfy_server):
    loader = comfy_server.get_json("/object_info/WanAnimateModelLoader")["WanAnimateModelLoader"]["input"]["optional"]
    assert "sparse" in loader["attention"][1]["options"]
    assert loader["sparse_tau"][1]["default"] == 1.0
    prompt = sampler_prompt()
    prompt["1"]["inputs"].update(attention="sparse", sparse_tau=float("nan"))
    status, body = comfy_server.queue(prompt)
    assert status == 400
    errors = {e["extra_info"]["input_name"]: e for e in body["node_errors"]["1"]["errors"]}
    assert "sparse_tau=nan: must be a finite number" in errors["sparse_tau"]["details"]


def test_animate2_sampler_keeps_its_driving_cache_in_host_memory(comfy_server, assets):
    """The shipped Wan-Animate-2 workflow (shrunk for the CPU) with the sampler's driving_cache set to host: the K/V
    cache of each segment lives in host memory, and the whole video comes out."""
    from tests.test_workflows_support import expected_frames, mp4_frames_and_size, shrink

    name = "wan_animate2"
    prompt = shrink(json.loads((REPO_ROOT / "workflows" / "api" / f"{name}.json").read_text()), name)
    sampler = next(node for node in prompt.values() if node["class_type"] == "WanAnimate2Sampler")
    assert sampler["inputs"]["driving_cache"] == "auto"
    sampler["inputs"]["driving_cache"] = "host"
    outputs = succeeded(comfy_server.run(prompt, timeout=900))
    (video,) = [item for out in outputs.values() for item in out.get("images", []) if item["filename"].endswith(".mp4")]
    assert mp4_frames_and_size(comfy_server.output_path(video))[0] == expected_frames(name)


ADDED_LAST = {"WanAnimateSampler": ("step_cache", 0), "WanAnimate2Sampler": ("driving_cache", "auto"),
              "WanAnimateModelLoader": ("sparse_tau", 1.0)}  # node -> (widget added last, its shipped value)


@pytest.mark.parametrize("name", ["wan_animate_animate", "wan_animate2"])
def test_workflows_saved_before_the_inputs_convert_as_before(comfy_server, name):
    """UI files store widget values by position: each new widget is its node's last, so an old save (one value
    fewer) gives the same API inputs as the shipped workflow, the new input aside."""
    from comfy_cli.workflow_to_api import convert_ui_to_api

    object_info = comfy_server.get_json("/object_info")
    ui = json.loads((REPO_ROOT / "workflows" / "ui" / f"{name}.json").read_text())
    changed = [n for n in ui["nodes"] if n["type"] in ADDED_LAST]
    assert {n["type"] for n in changed} >= {"WanAnimateModelLoader"} and len(changed) == 2
    assert all(n["widgets_values"][-1] == ADDED_LAST[n["type"]][1] for n in changed)
    current = convert_ui_to_api(ui, object_info)
    for node in changed:
        node["widgets_values"] = node["widgets_values"][:-1]
    old = convert_ui_to_api(ui, object_info)
    for node_id, node in current.items():
        expected = dict(node["inputs"])
        added, value = ADDED_LAST.get(node["class_type"], (None, None))
        if added:
            assert expected.pop(added) == value
        assert {k: v for k, v in old[node_id]["inputs"].items() if k != added} == expected
