"""Helpers (no tests) shared by the workflow and browser tests: tiny models and input files under the exact names the
shipped workflows use, a shrinker that makes an API workflow cheap on CPU, and an mp4 probe."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.comfyui_server import REPO_ROOT

SIZE = 64  # square driving video and reference: every resolution rule keeps 64x64
DRIVING_FRAMES = 13
FPS = 30
REFERENCE = "wan_animate_reference.png"
DRIVING = "wan_animate_driving.mp4"

# file name in the workflows -> ComfyUI model folder
MODEL_FILES = {
    "wan2.2_animate_14B_bf16.safetensors": "diffusion_models",
    "wan_2.1_vae.safetensors": "vae",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": "text_encoders",
    "clip_vision_h.safetensors": "clip_vision",
}
LORA = "wan2.2_animate_14B_relight_lora_bf16.safetensors"
FULL_SIZE_VAE = "wan_2.1_vae_full_size.safetensors"


@dataclass
class WorkflowAssets:
    expected_size: tuple[int, int]
    driving_frames: int


def write_driving_video(path: Path, frames: int = DRIVING_FRAMES, size: int = SIZE, fps: int = FPS) -> None:
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size, size, 3), 40 + 10 * i, np.uint8)
            img[16:56, 24:40] = rng.integers(120, 255, 3, dtype=np.uint8)  # a "person"
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_reference(path: Path, size: int = SIZE) -> None:
    from PIL import Image

    img = np.zeros((size, size, 3), np.uint8)
    img[:, :] = (30, 90, 160)
    img[12:60, 22:42] = (220, 180, 140)
    Image.fromarray(img).save(path)


def write_detection_models(folder: Path) -> None:
    from wan_animate.preprocess.synthetic_models import planted_detector, planted_pose_model

    folder.mkdir(parents=True, exist_ok=True)
    planted_detector(folder / "yolov10m.onnx", [[200, 100, 440, 600, 0.9, 0]])
    rng = np.random.default_rng(1)
    keypoints = np.stack([rng.uniform(10, 38, 133), rng.uniform(8, 56, 133)], axis=1)
    keypoints[23:91] = np.stack([rng.uniform(18, 30, 68), rng.uniform(6, 16, 68)], axis=1)  # face near the top
    planted_pose_model(folder / "vitpose_h_wholebody.onnx", keypoints)


def write_tiny_models(models_dir: Path, work: Path) -> None:
    """The tiny components written by the loader's own writer in ComfyUI's layout (what `python -m wan_loader tiny
    DIR --layout comfy` writes), copied under the file names the workflows use; plus a relighting LoRA for them in
    Comfy-Org's repackaged layout."""
    from tests.lora_files import block_linears, random_factors, write_comfy_relight
    from wan_loader.tiny import tiny_components
    from wan_loader.writers import COMFY_FOLDERS, write_components

    out = Path(work) / "tiny_comfy"
    components = tiny_components(seed=0)
    if not out.exists():
        write_components(components, out, "comfy")
    for name, folder in MODEL_FILES.items():
        assert folder in COMFY_FOLDERS.values(), folder
        written = sorted((out / folder).glob("*.safetensors"))
        if len(written) != 1:
            raise FileNotFoundError(f"the loader's comfy writer left {len(written)} files in {folder}/: {written}")
        (models_dir / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy2(written[0], models_dir / folder / name)
    for folder in (p for p in (out / "text_encoders").iterdir() if p.is_dir()):  # the umT5 tokenizer beside the file
        shutil.copytree(folder, models_dir / "text_encoders" / folder.name, dirs_exist_ok=True)
    transformer = components.transformer
    present = {name for name, _ in transformer.named_modules()}
    factors = random_factors(transformer, [m for m in block_linears(transformer) if m in present], rank=2)
    (models_dir / "loras").mkdir(parents=True, exist_ok=True)
    write_comfy_relight(models_dir / "loras" / LORA, factors)


def write_full_size_vae(path: Path) -> None:
    """A random Wan2.1 VAE at the real size (127 M parameters, bf16), the only size core's VAELoader builds.
    Built on the meta device and filled in place: seconds instead of the minute a normal init takes on 2 cores."""
    import torch
    from diffusers import AutoencoderKLWan
    from wan_loader.components import WanAnimateComponents
    from wan_loader.writers import write_components

    if path.exists():
        return
    with torch.device("meta"):
        vae = AutoencoderKLWan()
    vae = vae.to_empty(device="cpu").eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if name.endswith("gamma") or "norm" in name:
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.normal_(0, 0.02, generator=generator)
    out = path.parent / "full_size_vae_written"
    write_components(WanAnimateComponents(vae=vae), out, "comfy", dtype="bf16")
    next((out / "vae").glob("*.safetensors")).rename(path)
    shutil.rmtree(out)


def install_workflow_assets(base_dir: Path, work: Path) -> WorkflowAssets:
    base_dir = Path(base_dir)
    write_reference(base_dir / "input" / REFERENCE)
    write_driving_video(base_dir / "input" / DRIVING)
    write_detection_models(base_dir / "models" / "detection")
    write_tiny_models(base_dir / "models", Path(work))
    write_full_size_vae(base_dir / "models" / "vae" / FULL_SIZE_VAE)
    return WorkflowAssets(expected_size=(SIZE, SIZE), driving_frames=DRIVING_FRAMES)


def cpu_overrides(name: str) -> dict[str, dict]:
    """Same graph, CPU-sized numbers per node type: tiny area, 1-2 steps, short segments (several for the long video)."""
    return {
        "WanAnimatePreprocess": {"resolution_area": SIZE * SIZE},
        "WanAnimateSampler": {"steps": 2, "segment_length": 9 if name == "wan_animate_long_video" else 13},
        "WanAnimateModelLoader": {"precision": "fp32"},
        "KSampler": {"steps": 1},
    }


def shrink(prompt: dict, name: str) -> dict:
    overrides = cpu_overrides(name)
    for node in prompt.values():
        node["inputs"].update(overrides.get(node["class_type"], {}))
    return prompt


def tiny_stand_in_for_core_encoders(prompt: dict) -> dict:
    """Core's CLIPLoader (umT5) and CLIPVisionLoader build fixed XXL / ViT-H modules that no tiny file fits, so on
    CPU the encoders of the same tiny model come through this package's encode nodes instead; core's VAELoader
    builds a fixed-size Wan2.1 VAE, so it gets a full-size random one. Every other node of the core graph
    (UNETLoader, WanAnimateToVideo, KSampler, TrimVideoLatent, VAEDecode, CreateVideo, ...) runs as shipped."""
    clip_ids = [i for i, n in prompt.items() if n["class_type"] == "CLIPLoader"]
    for node_id in clip_ids:
        prompt[node_id] = {"class_type": "WanAnimateModelLoader", "inputs": {
            "model": "wan2.2_animate_14B_bf16.safetensors", "vae": "wan_2.1_vae.safetensors",
            "text_encoder": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "clip_vision": "clip_vision_h.safetensors",
            "precision": "fp32", "memory": "gpu"}}
    model = [clip_ids[0], 0]
    for node_id, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CLIPTextEncode":
            prompt[node_id] = {"class_type": "WanAnimateTextEncode", "inputs": {"model": model, "text": inputs["text"]}}
        elif kind == "CLIPVisionEncode":
            prompt[node_id] = {"class_type": "WanAnimateClipVisionEncode", "inputs": {"model": model, "image": inputs["image"]}}
        elif kind == "CLIPVisionLoader":
            del prompt[node_id]
        elif kind == "VAELoader":
            inputs["vae_name"] = FULL_SIZE_VAE
    return prompt


def mp4_frames_and_size(path: Path) -> tuple[int, tuple[int, int]]:
    import av

    with av.open(str(path)) as container:
        frames = [f for f in container.decode(video=0)]
    return len(frames), (frames[0].width, frames[0].height)
