"""The saved workflows: API twins in sync with the UI files, and each API workflow run headlessly through a real
ComfyUI server to an mp4 (decoded: frame count and size, and the driving video's sound in sync).

Models are tiny and random, written in the real file layouts under the real file names the workflows use; the
ONNX detector/pose models are tiny planted graphs with the real input/output signatures. Sizes, steps and segment
lengths are shrunk for CPU speed; the graphs themselves are the shipped ones.
"""
from __future__ import annotations

import json
import urllib.request

import pytest

from tests.audio_files import STATED_LENGTH_S, beep_onsets, durations
from tests.by_path import load_by_path
from tests.comfyui_server import REPO_ROOT
from tests.test_workflows_support import (
    DRIVING_BEEP_S,
    REFERENCE,
    expected_frames,
    install_workflow_assets,
    mp4_frames_and_size,
    shrink,
    tiny_stand_in_for_core_encoders,
)

pytestmark = pytest.mark.comfyui

API_DIR = REPO_ROOT / "workflows" / "api"
WORKFLOWS = sorted(p.stem for p in (REPO_ROOT / "workflows" / "ui").glob("*.json"))


def _sync_module():
    return load_by_path("scripts/sync_workflows.py", "sync_workflows")


def test_the_four_workflows_exist():
    assert {"wan_animate_animate", "wan_animate_replace", "wan_animate_long_video", "wan_animate_core_native"} <= set(WORKFLOWS)


def test_api_twins_and_templates_in_sync(comfy_server):
    sync = _sync_module()
    stale = sync.stale_files(comfy_server.get_json("/object_info"))
    assert not stale, f"run `python scripts/sync_workflows.py`; stale: {[str(p.relative_to(REPO_ROOT)) for p in stale]}"


def test_long_video_workflow_generates_all_frames_in_one_sampler():
    api = json.loads((API_DIR / "wan_animate_long_video.json").read_text())
    samplers = [n for n in api.values() if n["class_type"] == "WanAnimateSampler"]
    assert len(samplers) == 1
    assert samplers[0]["inputs"]["pose_video"][0] in api  # every preprocessed frame goes into that one node
    assert samplers[0]["inputs"]["guide_frames"] == "5"


@pytest.fixture(scope="module")
def assets(comfy_server, tmp_path_factory):
    return install_workflow_assets(comfy_server.base_dir, tmp_path_factory.mktemp("workflow_assets"))


@pytest.mark.slow
@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_headless_to_mp4(comfy_server, assets, name):
    prompt = shrink(json.loads((API_DIR / f"{name}.json").read_text()), name)
    if name == "wan_animate_core_native":
        prompt = tiny_stand_in_for_core_encoders(prompt)
    if name in ("wan_animate_long_video", "wan_animate2_long_video"):
        # the small-GPU set-up: block swap and encoders off the GPU between runs (both models)
        prompt[_node_id(prompt, "WanAnimateModelLoader")]["inputs"].update(blocks_on_cpu=2, memory="offload_idle")
    entry = comfy_server.run(prompt, timeout=900)
    status = entry["status"]
    assert status["status_str"] == "success", json.dumps(status["messages"], indent=1)[-4000:]
    videos = [
        item for node_out in entry["outputs"].values() for item in node_out.get("images", [])
        if item["filename"].endswith(".mp4")
    ]
    assert len(videos) == 1, entry["outputs"]
    saved = comfy_server.output_path(videos[0])
    frames, (width, height) = mp4_frames_and_size(saved)
    assert (width, height) == assets.expected_size
    assert frames == expected_frames(name)
    # the driving video's sound is wired through: as long as the frames, the beep where it was
    video_s, audio_s = durations(saved)
    assert audio_s == pytest.approx(video_s, abs=STATED_LENGTH_S)
    assert beep_onsets(saved) == pytest.approx([DRIVING_BEEP_S], abs=0.003)


def _node_id(prompt: dict, class_type: str) -> str:
    return next(i for i, n in prompt.items() if n["class_type"] == class_type)


@pytest.mark.slow
def test_replace_takes_a_mask_from_any_segmenter(comfy_server, assets):
    """A MASK made by a core node (ImageToMask on the driving frames) goes into the preprocess node's character_mask,
    in place of the template's SAM segmenter."""
    prompt = shrink(json.loads((API_DIR / "wan_animate_replace.json").read_text()), "wan_animate_replace")
    frames = [_node_id(prompt, "GetVideoComponents"), 0]
    prompt["900"] = {"class_type": "ImageToMask", "inputs": {"image": frames, "channel": "red"}}
    preprocess = prompt[_node_id(prompt, "WanAnimatePreprocess")]["inputs"]
    preprocess["character_mask"] = ["900", 0]
    entry = comfy_server.run(prompt, timeout=900)  # the shipped SAM segmenter is linked too: one mask source only
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and "either a character mask or a segmenter, not both" in errors[0]["exception_message"]
    del preprocess["segmenter"]
    entry = comfy_server.run(prompt, timeout=900)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"], indent=1)[-4000:]


def test_video_without_a_person_fails_with_a_readable_error(comfy_server, assets):
    from wan_animate.preprocess.synthetic_models import planted_detector

    planted_detector(comfy_server.base_dir / "models" / "detection" / "finds_nobody.onnx", [])
    prompt = shrink(json.loads((API_DIR / "wan_animate_animate.json").read_text()), "wan_animate_animate")
    prompt[_node_id(prompt, "WanAnimatePoseModelLoader")]["inputs"]["detector"] = "finds_nobody.onnx"
    prompt[_node_id(prompt, "WanAnimatePreprocess")]["inputs"]["check_reference"] = False
    entry = comfy_server.run(prompt, timeout=300)
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert entry["status"]["status_str"] == "error" and len(errors) == 1
    assert errors[0]["node_type"] == "WanAnimatePreprocess"
    message = errors[0]["exception_message"]
    assert message.startswith("No person found in any of the 13 frames of the driving video"), message


@pytest.mark.slow
def test_sampler_reports_progress_and_stops_on_interrupt(comfy_server, assets):
    """The green bar: 'progress' messages from the sampler node over the websocket; Stop (POST /interrupt) ends the
    run between steps with execution_interrupted, and the next run still works."""
    import uuid

    import websocket

    prompt = shrink(json.loads((API_DIR / "wan_animate_animate.json").read_text()), "wan_animate_animate")
    sampler = _node_id(prompt, "WanAnimateSampler")
    prompt[sampler]["inputs"].update(steps=50, seed=123)  # long enough to be stopped midway
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(f"ws://127.0.0.1:{comfy_server.port}/ws?clientId={client_id}", timeout=300)
    try:
        status, body = comfy_server.queue(prompt, client_id)
        assert status == 200, body
        progress, interrupted = [], False
        while not interrupted:
            raw = ws.recv()
            if not isinstance(raw, str):
                continue
            message = json.loads(raw)
            data = message.get("data", {})
            if message["type"] == "progress" and data.get("node") == sampler:
                progress.append((data["value"], data["max"]))
                if len(progress) == 2:
                    comfy_server.post_json("/interrupt", {})
            elif message["type"] == "execution_interrupted":
                interrupted = True
                assert data["node_id"] == sampler
            elif message["type"] == "execution_success" and data.get("prompt_id") == body["prompt_id"]:
                pytest.fail("the run finished although Stop was pressed")
        assert progress[0][0] < progress[0][1] and progress[1][0] > progress[0][0]
    finally:
        ws.close()


def test_wrong_model_file_fails_with_a_readable_error(comfy_server, assets):
    """A Wan2.1 VAE picked as the diffusion model: the loader says what the file is and what to use instead."""
    models = comfy_server.base_dir / "models"
    (models / "diffusion_models" / "not_an_animate_model.safetensors").write_bytes(
        (models / "vae" / "wan_2.1_vae.safetensors").read_bytes())
    prompt = shrink(json.loads((API_DIR / "wan_animate_animate.json").read_text()), "wan_animate_animate")
    prompt[_node_id(prompt, "WanAnimateModelLoader")]["inputs"]["model"] = "not_an_animate_model.safetensors"
    entry = comfy_server.run(prompt, timeout=300)
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert entry["status"]["status_str"] == "error" and errors[0]["node_type"] == "WanAnimateModelLoader"
    message = errors[0]["exception_message"]
    assert "not_an_animate_model.safetensors" in message and "Wan2.2-Animate" in message, message


@pytest.mark.parametrize("hub_id, words", [
    ("Wan-AI/Wan2.2-Animate-14B-Diffusers", "offline mode (HF_HUB_OFFLINE=1)"),
    ("/no/such/model/folder", "no such file or folder"),
])
def test_hub_id_or_path_that_cannot_be_had_fails_readably(comfy_server, assets, hub_id, words):
    """The server runs offline (as tests must): a Hub id not in the cache, or a path that does not exist, is named
    in a readable error from the model loader node."""
    prompt = shrink(json.loads((API_DIR / "wan_animate_animate.json").read_text()), "wan_animate_animate")
    prompt[_node_id(prompt, "WanAnimateModelLoader")]["inputs"]["hub_id"] = hub_id
    entry = comfy_server.run(prompt, timeout=300)
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and errors[0]["node_type"] == "WanAnimateModelLoader", entry["status"]
    assert hub_id in errors[0]["exception_message"] and words in errors[0]["exception_message"], errors[0]["exception_message"]


def test_encode_nodes_give_core_types_from_the_loaded_model(comfy_server, assets):
    """Text and reference encoded by the loaded model's own umT5 / CLIP (moved back off the device afterwards in
    offload mode), received by a core node."""
    api = shrink(json.loads((API_DIR / "wan_animate_animate.json").read_text()), "wan_animate_animate")
    loader = api[_node_id(api, "WanAnimateModelLoader")]
    loader["inputs"]["memory"] = "offload_idle"
    prompt = {
        "1": loader,
        "2": {"class_type": "LoadImage", "inputs": {"image": REFERENCE}},
        "3": {"class_type": "WanAnimateTextEncode", "inputs": {"model": ["1", 0], "text": "a person dancing"}},
        "4": {"class_type": "WanAnimateClipVisionEncode", "inputs": {"model": ["1", 0], "image": ["2", 0]}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
    }
    entry = comfy_server.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"], indent=1)[-4000:]
    assert "tensor(" in entry["outputs"]["5"]["text"][0]
    assert entry["outputs"]["6"]["text"][0]


def test_templates_listed_for_the_editor(comfy_server):
    from tests.comfyui_server import CUSTOM_NODE_NAME

    listed = comfy_server.get_json("/api/workflow_templates").get(CUSTOM_NODE_NAME, [])
    assert set(WORKFLOWS) <= set(listed), listed
    assert sorted(listed) == sorted(set(listed)), f"templates listed more than once in the editor: {listed}"
    with urllib.request.urlopen(f"{comfy_server.url}/api/workflow_templates/{CUSTOM_NODE_NAME}/{WORKFLOWS[0]}.json") as r:
        assert json.loads(r.read()) == json.loads((REPO_ROOT / "example_workflows" / f"{WORKFLOWS[0]}.json").read_text())


def test_animate2_workflows_feed_the_raw_video_to_one_sampler():
    for name in ("wan_animate2", "wan_animate2_long_video", "wan_animate2_distilled"):
        api = json.loads((API_DIR / f"{name}.json").read_text())
        samplers = [n for n in api.values() if n["class_type"] == "WanAnimate2Sampler"]
        assert len(samplers) == 1 and not any(n["class_type"] == "WanAnimatePreprocess" for n in api.values())
        video = api[samplers[0]["inputs"]["driving_video"][0]]
        assert video["class_type"] == "GetVideoComponents"  # the driving frames as they are
        loader = api[samplers[0]["inputs"]["model"][0]]["inputs"]["model"]
        assert ("distill" in loader) == (name != "wan_animate2")


@pytest.mark.slow
def test_the_other_animate_model_in_a_sampler_is_a_clear_node_error(comfy_server, assets):
    """Animate-14B weights loaded into the Wan-Animate-2 workflow: the Animate 2 sampler names both models."""
    prompt = shrink(json.loads((API_DIR / "wan_animate2_distilled.json").read_text()), "wan_animate2_distilled")
    loader = prompt[_node_id(prompt, "WanAnimateModelLoader")]["inputs"]
    loader.update(model="wan2.2_animate_14B_bf16.safetensors", clip_vision="clip_vision_h.safetensors")
    entry = comfy_server.run(prompt, timeout=600)
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and errors[0]["node_type"] == "WanAnimate2Sampler"
    assert "This model is Wan2.2-Animate-14B: use Wan Animate Sampler" in errors[0]["exception_message"]


@pytest.mark.slow
def test_int8_convrot_file_runs_through_the_loader_node_kept_int8(comfy_server, assets):
    """Comfy-Org's int8 ConvRot repack picked in the Load Wan Animate Model node, int8_weights=keep: the weights stay
    int8 and comfy-kitchen computes with them (its eager backend on this CPU); the distilled workflow writes its mp4."""
    from wan_loader.testing.int8_files import write_int8_convrot

    models = comfy_server.base_dir / "models" / "diffusion_models"
    write_int8_convrot(models / "wan_animate_2_distill_bf16.safetensors",
                       models / "wan_animate_2_distill_int8_convrot.safetensors")
    prompt = shrink(json.loads((API_DIR / "wan_animate2_distilled.json").read_text()), "wan_animate2_distilled")
    prompt[_node_id(prompt, "WanAnimateModelLoader")]["inputs"].update(
        model="wan_animate_2_distill_int8_convrot.safetensors", int8_weights="keep")
    entry = comfy_server.run(prompt, timeout=600)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"], indent=1)[-4000:]
