"""The nodes inside a real ComfyUI server: listed in /object_info with inputs, outputs and tooltips; bad values come
back as node_errors a user understands; model folders merge with what extra_model_paths.yaml configured."""
from __future__ import annotations


import pytest

from tests.by_path import load_by_path

pytestmark = pytest.mark.comfyui

OUR_NODES = {
    "WanAnimateModelLoader": ("Load Wan Animate Model", ["WANANIMATE_MODEL"]),
    "WanAnimateLoraSelect": ("Wan Animate LoRA", ["WANANIMATE_LORAS"]),
    "WanAnimatePoseModelLoader": ("Load Wan Animate Pose Models", ["WANANIMATE_POSE_MODEL"]),
    "WanAnimateFaceDetectorLoader": ("Load Wan Animate Face Detector", ["WANANIMATE_FACE_DETECTOR"]),
    "WanAnimateSegmenterLoader": ("Load Wan Animate Segmenter (SAM2/SAM3)", ["WANANIMATE_SEGMENTER"]),
    "WanAnimatePreprocess": (
        "Wan Animate Preprocess",
        ["IMAGE", "IMAGE", "IMAGE", "IMAGE", "MASK", "FLOAT", "INT", "INT", "INT"],
    ),
    "WanAnimateSampler": ("Wan Animate Sampler", ["IMAGE", "VIDEO", "FLOAT"]),
    "WanAnimateTextEncode": ("Wan Animate Text Encode (for core nodes)", ["CONDITIONING"]),
    "WanAnimateClipVisionEncode": ("Wan Animate CLIP Vision Encode (for core nodes)", ["CLIP_VISION_OUTPUT"]),
}


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get_json("/object_info")


@pytest.mark.parametrize("name", sorted(OUR_NODES))
def test_node_listed_with_inputs_outputs_and_tooltips(object_info, name):
    display, outputs = OUR_NODES[name]
    info = object_info.get(name)
    assert info is not None, f"{name} missing from /object_info"
    assert info["display_name"] == display
    assert info["category"] == "Wan Animate"
    assert info["output"] == outputs
    assert len(info["output_tooltips"]) == len(outputs)
    assert info["description"]
    inputs = {**info["input"]["required"], **info["input"].get("optional", {})}
    assert inputs
    for input_name, spec in inputs.items():
        assert len(spec) == 2 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"


def test_preprocess_outputs_match_core_wan_animate_inputs(object_info):
    """pose_video/face_video/background_video/character_mask plug straight into core WanAnimateToVideo."""
    ours = object_info["WanAnimatePreprocess"]
    produced = dict(zip(ours["output_name"], ours["output"]))
    core = object_info["WanAnimateToVideo"]["input"]["optional"]
    for name in ("pose_video", "face_video", "background_video", "character_mask"):
        assert produced[name] == core[name][0], name


def test_encode_nodes_feed_core_wan_animate(object_info):
    core = object_info["WanAnimateToVideo"]["input"]
    assert object_info["WanAnimateTextEncode"]["output"] == [core["required"]["positive"][0]]
    assert object_info["WanAnimateClipVisionEncode"]["output"] == [core["optional"]["clip_vision_output"][0]]


def test_detection_folder_lists_onnx_models(comfy_server):
    folder = comfy_server.base_dir / "models" / "detection"
    (folder / "listed_detector.onnx").write_bytes(b"not a real model")
    (folder / "notes.txt").write_text("not a model")
    info = comfy_server.get_json("/object_info/WanAnimatePoseModelLoader")["WanAnimatePoseModelLoader"]
    choices = _combo_options(info["input"]["required"]["detector"])
    assert "listed_detector.onnx" in choices and "notes.txt" not in choices


def test_segmenter_loader_lists_sam_folders_and_hub_models_and_names_a_missing_one(comfy_server):
    """Transformers model folders and original SAM 2 files in models/sam2, models/sam3 and models/sams are listed,
    then the known Hub models; a model that is none of them (gone since the list was made) is refused before
    running, by the library's check."""
    models = comfy_server.base_dir / "models"
    for folder in (models / "sam2" / "my-sam2", models / "sam3" / "facebook" / "sam3"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text('{"model_type": "sam2_video"}')
    (models / "sam2" / "sam2.1_hiera_large.safetensors").write_bytes(b"an original SAM 2 file: listed")
    (models / "sams").mkdir(parents=True, exist_ok=True)
    (models / "sams" / "sam_vit_b_01ec64.pth").write_bytes(b"SAM 1, no video model: not listed")
    info = comfy_server.get_json("/object_info/WanAnimateSegmenterLoader")["WanAnimateSegmenterLoader"]
    choices = _combo_options(info["input"]["required"]["model"])
    assert {"my-sam2", "facebook/sam3", "facebook/sam2.1-hiera-large", "sam2.1_hiera_large.safetensors"} <= set(choices)
    assert choices.count("facebook/sam3") == 1 and "sam_vit_b_01ec64.pth" not in choices
    preprocess = object_info_input(comfy_server, "WanAnimatePreprocess", "segmenter")
    assert preprocess[0] == "WANANIMATE_SEGMENTER"
    prompt = {
        "1": {"class_type": "WanAnimateSegmenterLoader", "inputs": {
            "model": "gone-sam", "device": "cpu", "precision": "auto", "chunk_frames": 400, "prompt": "box+points"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    errors = _refused(comfy_server, prompt, "1")
    assert "segmenter 'gone-sam' is not a model folder or file in" in errors["model"]["details"]


def object_info_input(comfy_server, node: str, name: str):
    info = comfy_server.get_json(f"/object_info/{node}")[node]["input"]
    return {**info["required"], **info.get("optional", {})}[name]


def test_register_merges_with_paths_set_before(comfyui_source, monkeypatch, tmp_path):
    """extra_model_paths.yaml runs before custom nodes load: its `detection` paths must survive registration."""
    monkeypatch.syspath_prepend(str(comfyui_source))
    folder_paths = pytest.importorskip("folder_paths")
    folders = load_by_path("nodes/folders.py", "wan_nodes_under_test")  # by path: ComfyUI's own nodes.py shadows our nodes/ package here

    user_dir = str(tmp_path / "my_detection")
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "detection", ([user_dir], set()))
    folders.register_model_folders()
    folders.register_model_folders()
    paths, extensions = folder_paths.folder_names_and_paths["detection"]
    assert paths[0] == user_dir and paths.count(user_dir) == 1
    assert sum(p.endswith("detection") for p in paths) == 2
    assert ".onnx" in extensions


def _combo_options(spec) -> list:
    """A dropdown's choices from /object_info: V3 nodes send ("COMBO", {"options": [...]})."""
    assert spec[0] == "COMBO", spec
    return spec[1]["options"]


def _errors(body, node_id):
    return body["node_errors"][node_id]["errors"]


def _by_input(errors) -> dict:
    return {e["extra_info"]["input_name"]: e for e in errors}


def _refused(comfy_server, prompt, node_id) -> dict:
    """POST /prompt, expect ComfyUI's validation to refuse it; the errors of one node by input name."""
    status, body = comfy_server.queue(prompt)
    assert status == 400, body
    return _by_input(_errors(body, node_id))


def _sampler_prompt(**overrides):
    """A sampler fed by the model loader: enough for validation, never executed."""
    sampler = {
        "model": ["1", 0], "reference_image": ["2", 0], "pose_video": ["2", 0], "face_video": ["2", 0],
        "mode": "animate", "prompt": "", "negative_prompt": "", "steps": 4, "guide_scale": 1.0, "shift": 5.0,
        "scheduler": "unipc", "seed": 0, "segment_length": 77, "guide_frames": "1", "color_anchor": "off",
        "color_anchor_strength": 1.0, "tiled_vae": False, "lora_mode": "runtime", "fps": 30.0,
    }
    sampler.update(overrides)
    return {
        "1": {"class_type": "WanAnimateModelLoader", "inputs": {
            "model": "no_such_model.safetensors", "vae": "(from the model)", "text_encoder": "(from the model)",
            "clip_vision": "(from the model)", "precision": "bf16", "memory": "gpu"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "3": {"class_type": "WanAnimateSampler", "inputs": sampler},
        "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 1], "filename_prefix": "t", "format": "auto", "codec": "auto"}},
    }


def test_bad_values_come_back_as_readable_node_errors(comfy_server):
    status, body = comfy_server.queue(_sampler_prompt(steps=0, segment_length=78))
    assert status == 400 and body["error"]["type"] == "prompt_outputs_failed_validation"
    loader = _by_input(_errors(body, "1"))
    assert loader["model"]["type"] == "custom_validation_failed"
    assert "'no_such_model.safetensors' is not in the 'diffusion_models' model folder" in loader["model"]["details"]
    sampler = _by_input(_errors(body, "3"))
    assert sampler["steps"]["type"] == "value_smaller_than_min"
    assert sampler["segment_length"]["type"] == "custom_validation_failed"
    # the engine's own rule and words (wan_animate.engine.segments), not a copy in the node
    assert "4n+1" in sampler["segment_length"]["details"] and "77 or 81" in sampler["segment_length"]["details"]


def test_guide_frames_are_checked_by_the_engine_rule(comfy_server):
    sampler = _refused(comfy_server, _sampler_prompt(guide_frames="3"), "3")
    assert "guide_frames=3" in sampler["guide_frames"]["details"] and "1 (official default) or 5" in sampler["guide_frames"]["details"]


def _preprocess_prompt(detector="yolov10m.onnx", pose="vitpose_h_wholebody.onnx", **overrides):
    """Pose models -> preprocess -> preview: enough for validation, never executed."""
    preprocess = {
        "pose_model": ["1", 0], "video": ["2", 0], "reference_image": ["2", 0], "mode": "animate",
        "resolution_area": 4096, "fps": 30.0, "target_fps": 30.0, "person": "largest", "person_index": 0,
        "track_start_frame": 0, "fill": "interpolate", "retarget": False, "check_reference": True,
        "smoothing": 0.0, "mask_dilation": 3,
    }
    preprocess.update(overrides)
    return {
        "1": {"class_type": "WanAnimatePoseModelLoader", "inputs": {"detector": detector, "pose": pose, "device": "cpu"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "3": {"class_type": "WanAnimatePreprocess", "inputs": preprocess},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }


def test_replace_mode_without_background_and_mask_is_refused_before_the_model_loads(comfy_server):
    sampler = _refused(comfy_server, _sampler_prompt(mode="replace"), "3")
    details = sampler["mode"]["details"]
    assert "replace mode needs the driving video's background and character mask" in details
    assert "missing: background, character mask" in details
    linked = _sampler_prompt(mode="replace")
    linked["3"]["inputs"].update(background_video=["2", 0], character_mask=["5", 0])
    linked["5"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
    status, body = comfy_server.queue(linked)
    assert "3" not in body.get("node_errors", {}), body  # linked: known only when it runs, so not refused here


def test_preprocess_refuses_retarget_in_replace_mode_before_running(comfy_server):
    status, body = comfy_server.queue(_preprocess_prompt(mode="replace", retarget=True))
    assert status == 400
    errors = _by_input(_errors(body, "3"))
    assert "retarget works in animate mode only" in errors["retarget"]["details"]
    assert "1" not in body["node_errors"]  # known model names not in models/detection pass: they download on load


def test_pose_model_file_not_in_the_folder_is_named(comfy_server):
    """A file name neither in models/detection nor a known downloadable model is refused when queued."""
    errors = _refused(comfy_server, _preprocess_prompt(detector="gone_detector.onnx"), "1")
    details = errors["detector"]["details"]
    assert "detector model gone_detector.onnx was not found in" in details and "models/detection" in details


def test_a_lora_no_longer_in_the_folder_is_named(comfy_server):
    prompt = _sampler_prompt()
    prompt["5"] = {"class_type": "WanAnimateLoraSelect", "inputs": {"lora": "gone.safetensors", "strength": 1.0}}
    prompt["3"]["inputs"]["loras"] = ["5", 0]
    errors = _refused(comfy_server, prompt, "5")
    assert "'gone.safetensors' is not in the 'loras' model folder" in errors["lora"]["details"]


def test_missing_required_input_is_named(comfy_server):
    prompt = _sampler_prompt()
    del prompt["3"]["inputs"]["pose_video"]
    status, body = comfy_server.queue(prompt)
    assert status == 400
    errors = _errors(body, "3")
    assert any(e["type"] == "required_input_missing" and e["extra_info"]["input_name"] == "pose_video" for e in errors)


@pytest.mark.slow
def test_extra_model_paths_yaml_detection_folder_is_kept(comfyui_source, tmp_path):
    """A real server started with extra_model_paths.yaml that defines `detection`: the dropdown lists the models of
    both that folder and models/detection (registration merged, nothing overwritten)."""
    from tests.comfyui_server import ComfyServer

    shared = tmp_path / "shared_models"
    (shared / "det").mkdir(parents=True)
    (shared / "det" / "from_yaml.onnx").write_bytes(b"x")
    yaml = tmp_path / "extra_model_paths.yaml"
    yaml.write_text(f"team:\n    base_path: {shared}\n    detection: det/\n")
    server = ComfyServer(tmp_path / "base", comfyui_source, extra_args=["--extra-model-paths-config", str(yaml)])
    (server.base_dir / "models" / "detection" / "from_models_dir.onnx").write_bytes(b"x")
    server.start()
    try:
        info = server.get_json("/object_info/WanAnimatePoseModelLoader")["WanAnimatePoseModelLoader"]
    finally:
        server.stop()
    choices = _combo_options(info["input"]["required"]["detector"])
    assert {"from_yaml.onnx", "from_models_dir.onnx"} <= set(choices), choices
