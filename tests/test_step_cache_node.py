"""The samplers' step_cache input inside a real ComfyUI server: it changes the work done (sampling steps reused,
reported on the node), it is checked by the engine's rule, and workflows saved before it existed load unchanged."""
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


@pytest.mark.parametrize("name", ["wan_animate_animate", "wan_animate2"])
def test_workflows_saved_before_the_input_convert_as_before(comfy_server, name):
    """UI files store widget values by position: the new widget is the samplers' last, so an old save (one value
    fewer) gives the same API inputs as the shipped workflow, step_cache aside."""
    from comfy_cli.workflow_to_api import convert_ui_to_api

    object_info = comfy_server.get_json("/object_info")
    ui = json.loads((REPO_ROOT / "workflows" / "ui" / f"{name}.json").read_text())
    samplers = [n for n in ui["nodes"] if n["type"] in ("WanAnimateSampler", "WanAnimate2Sampler")]
    assert samplers and all(n["widgets_values"][-1] == 0 for n in samplers)  # shipped: off
    current = convert_ui_to_api(ui, object_info)
    for node in samplers:
        node["widgets_values"] = node["widgets_values"][:-1]
    old = convert_ui_to_api(ui, object_info)
    for node_id, node in current.items():
        expected = dict(node["inputs"])
        if node["class_type"] in ("WanAnimateSampler", "WanAnimate2Sampler"):
            assert expected.pop("step_cache") == 0
        assert {k: v for k, v in old[node_id]["inputs"].items() if k != "step_cache"} == expected
