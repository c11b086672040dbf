"""Helpers (no tests) shared by the workflow and browser tests: tiny models and input files (a driving video with
sound) under the exact names the shipped workflows use, a shrinker that makes an API workflow cheap on CPU, and an mp4
probe."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wan_animate.preprocess.synthetic_sam import write_sam2_folder

SIZE = 64  # square driving video and reference: every resolution rule keeps 64x64
DRIVING_FRAMES = 13
FPS = 30
REFERENCE = "wan_animate_reference.png"
DRIVING = "wan_animate_driving.mp4"
DRIVING_SAMPLE_RATE = 44100
DRIVING_BEEP_S = 0.2  # the driving video's sound beeps here; the workflows' outputs must beep at the same time

# file name in the workflows -> ComfyUI model folder
MODEL_FILES = {
    "wan2.2_animate_14B_bf16.safetensors": "diffusion_models",
    "wan_2.1_vae.safetensors": "vae",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": "text_encoders",
    "clip_vision_h.safetensors": "clip_vision",
}
LORA = "wan2.2_animate_14B_relight_lora_bf16.safetensors"
# Wan-Animate-2 workflows: its transformer files (full, distilled) under the names the workflows use; its CLIP
# projection takes 1280-wide features, so the tiny run uses a 1280-wide tiny CLIP planted under its own name
ANIMATE2_FILES = {"wan_animate_2_bf16.safetensors": False, "wan_animate_2_distill_bf16.safetensors": True}
ANIMATE2_TINY_CLIP = "clip_vision_h_animate2_tiny.safetensors"
MODEL_FPS = 24  # Wan-Animate-2 generates at 24 fps: 13 driving frames at 30 fps become 10
FULL_SIZE_VAE = "wan_2.1_vae_full_size.safetensors"


@dataclass
class WorkflowAssets:
    expected_size: tuple[int, int]
    driving_frames: int


def write_driving_video(path: Path, frames: int = DRIVING_FRAMES, size: int = SIZE, fps: int = FPS) -> None:
    """A moving box with its sound: AAC silence with a beep at DRIVING_BEEP_S, as long as the video."""
    import av

    from tests.audio_files import beeps, encode_sound

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=DRIVING_SAMPLE_RATE)
        sound.layout = "stereo"
        for i in range(frames):
            img = np.full((size, size, 3), 40 + 10 * i, np.uint8)
            img[16:56, 24:40] = rng.integers(120, 255, 3, dtype=np.uint8)  # a "person"
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        encode_sound(out, sound, beeps(frames / fps, DRIVING_SAMPLE_RATE, (DRIVING_BEEP_S,)), DRIVING_SAMPLE_RATE)


def write_reference(path: Path, size: int = SIZE) -> None:
    from PIL import Image

    img = np.zeros((size, size, 3), np.uint8)
    img[:, :] = (30, 90, 160)
    img[12:60, 22:42] = (220, 180, 140)
    Image.fromarray(img).save(path)


def write_detection_models(folder: Path) -> None:
    from wan_animate.preprocess.synthetic_models import (
        planted_detector,
        planted_pose_model,
    )

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
    from wan_loader.testing.tiny import tiny_components
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


def write_tiny_animate2_models(models_dir: Path, work: Path) -> None:
    """Tiny Wan-Animate-2 transformers (full and distilled) and its tiny CLIP, written by the loader's comfy writer."""
    from wan_loader.testing.tiny import tiny_animate2_components
    from wan_loader.writers import write_components

    components = tiny_animate2_components(seed=0)
    for name, distilled in ANIMATE2_FILES.items():
        out = Path(work) / f"tiny_animate2_{int(distilled)}"
        components.distilled = distilled
        if not out.exists():
            write_components(components, out, "comfy")
        shutil.copy2(next((out / "diffusion_models").glob("*.safetensors")), models_dir / "diffusion_models" / name)
    shutil.copy2(next((Path(work) / "tiny_animate2_0" / "clip_vision").glob("*.safetensors")),
                 models_dir / "clip_vision" / ANIMATE2_TINY_CLIP)


def write_full_size_vae(path: Path) -> None:
    """A random Wan2.1 VAE at the real size (127 M parameters, bf16), the only size core's VAELoader builds.
    Built on the meta device and filled in place: seconds instead of the minute a normal init takes on 2 cores."""
    import torch
    from diffusers import AutoencoderKLWan

    from wan_loader.model.components import WanAnimateComponents
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


# A tiny Wan-Animate whose shapes core's AnimateWanModel accepts: core infers only dim/ffn/layers from the file and
# fixes the rest (head size 128, text 4096, CLIP 1280, LIA motion encoder at 512, face encoder 4x1024, an adapter
# every 5 blocks), so the core-native workflow gets these files; its encoders match them (umT5 d_model 4096, CLIP
# hidden 1280).
CORE_TINY_TRANSFORMER = {
    "num_attention_heads": 1, "attention_head_dim": 128, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 64,
    "num_layers": 5, "image_dim": 1280, "added_kv_proj_dim": 128, "rope_max_seq_len": 1024,
}
CORE_TINY_UNET = "core_tiny_wan_animate.safetensors"  # in diffusion_models/, for core's UNETLoader
CORE_TINY_FOLDER = "core_tiny_wan_animate"  # the same model with its encoders, as a Diffusers folder in diffusers/


def write_core_tiny_models(models_dir: Path, work: Path) -> None:
    import torch
    from diffusers import WanAnimateTransformer3DModel
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
    )

    from wan_loader.model.components import WanAnimateComponents
    from wan_loader.testing.tiny import (
        TINY_CLIP_CONFIG,
        TINY_UMT5_CONFIG,
        tiny_image_processor,
        tiny_tokenizer,
        tiny_vae,
    )
    from wan_loader.writers import write_components

    unet, folder = models_dir / "diffusion_models" / CORE_TINY_UNET, models_dir / "diffusers" / CORE_TINY_FOLDER
    if unet.exists() and folder.exists():
        return
    torch.manual_seed(0)
    components = WanAnimateComponents(
        transformer=WanAnimateTransformer3DModel(**CORE_TINY_TRANSFORMER).eval(),
        text_encoder=UMT5EncoderModel(UMT5Config(**{**TINY_UMT5_CONFIG, "d_model": 4096})).eval(),
        tokenizer=tiny_tokenizer(),
        image_encoder=CLIPVisionModel(CLIPVisionConfig(**{**TINY_CLIP_CONFIG, "hidden_size": 1280})).eval(),
        image_processor=tiny_image_processor(),
        vae=tiny_vae(),  # unused by the encode nodes; the folder must be a complete model
    )
    out = Path(work) / "core_tiny_comfy"
    write_components(components, out, "comfy")
    shutil.copy2(next((out / "diffusion_models").glob("*.safetensors")), unet)
    write_components(components, folder, "diffusers")


def install_workflow_assets(base_dir: Path, work: Path) -> WorkflowAssets:
    """Inputs and models for the shipped workflows, once per ComfyUI base directory (the test modules share one)."""
    base_dir = Path(base_dir)
    marker = base_dir / "models" / ".wan_workflow_assets"
    if marker.exists():
        return WorkflowAssets(expected_size=(SIZE, SIZE), driving_frames=DRIVING_FRAMES)
    write_reference(base_dir / "input" / REFERENCE)
    write_driving_video(base_dir / "input" / DRIVING)
    write_detection_models(base_dir / "models" / "detection")
    write_tiny_models(base_dir / "models", Path(work))
    write_tiny_animate2_models(base_dir / "models", Path(work))
    write_full_size_vae(base_dir / "models" / "vae" / FULL_SIZE_VAE)
    write_core_tiny_models(base_dir / "models", Path(work))
    # The replace workflow's segmenter, facebook/sam2.1-hiera-large, as a tiny random SAM2 in models/sam2 (no download).
    write_sam2_folder(base_dir / "models" / "sam2" / "sam2.1-hiera-large", "tiny")
    marker.write_text("installed by tests/test_workflows_support.py\n")
    return WorkflowAssets(expected_size=(SIZE, SIZE), driving_frames=DRIVING_FRAMES)


CORE_FPS = 12  # the core-native test resamples 13 frames at 30 fps to 5: core's motion encoder costs ~5 s a frame


def cpu_overrides(name: str) -> dict[str, dict]:
    """Same graph, CPU-sized numbers per node type: tiny area, 1-2 steps, short segments (several for the long video)."""
    if name.startswith("wan_animate2"):
        return {"WanAnimate2Sampler": {"steps": 1, "segment_length": 5 if name.endswith("long_video") else 9,
                                       "width": SIZE, "height": SIZE},
                "WanAnimateModelLoader": {"precision": "fp32", "clip_vision": ANIMATE2_TINY_CLIP}}
    preprocess = {"resolution_area": SIZE * SIZE}
    if name == "wan_animate_core_native":
        preprocess["target_fps"] = CORE_FPS
    return {
        "WanAnimatePreprocess": preprocess,
        "WanAnimateSampler": {"steps": 1, "segment_length": 9 if name == "wan_animate_long_video" else 13},
        "WanAnimateModelLoader": {"precision": "fp32"},
        "KSampler": {"steps": 1},
    }


def expected_frames(name: str) -> int:
    """Frames the shrunk workflow must write: every driving frame at 30 fps (or the core test's resampled count)."""
    if name == "wan_animate_core_native":
        return int(DRIVING_FRAMES * CORE_FPS / FPS)
    if name.startswith("wan_animate2"):
        return int(DRIVING_FRAMES * MODEL_FPS / FPS)
    return DRIVING_FRAMES


def shrink(prompt: dict, name: str) -> dict:
    overrides = cpu_overrides(name)
    for node in prompt.values():
        node["inputs"].update(overrides.get(node["class_type"], {}))
    return prompt


def tiny_stand_in_for_core_encoders(prompt: dict) -> dict:
    """The core-native graph on CPU-sized models. Core's loaders build fixed full-size modules around what the file
    gives: UNETLoader gets the core-shaped tiny model (CORE_TINY_TRANSFORMER), VAELoader a full-size random Wan2.1
    VAE, and because no tiny file fits core's CLIPLoader (umT5-XXL) or CLIPVisionLoader (ViT-H), the prompt and the
    reference are encoded by this package's encode nodes from the matching tiny encoders. Every other node
    (our preprocessing, WanAnimateToVideo, ModelSamplingSD3, KSampler, TrimVideoLatent, VAEDecode, ImageFromBatch,
    CreateVideo, SaveVideo) and every link between them runs as shipped."""
    clip_ids = [i for i, n in prompt.items() if n["class_type"] == "CLIPLoader"]
    for node_id in clip_ids:
        prompt[node_id] = {"class_type": "WanAnimateModelLoader", "inputs": {
            "model": f"diffusers/{CORE_TINY_FOLDER}", "vae": "(from the model)", "text_encoder": "(from the model)",
            "clip_vision": "(from the model)", "precision": "fp32", "memory": "gpu"}}
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
        elif kind == "UNETLoader":
            inputs["unet_name"] = CORE_TINY_UNET
    return prompt


def mp4_frames_and_size(path: Path) -> tuple[int, tuple[int, int]]:
    import av

    with av.open(str(path)) as container:
        frames = [f for f in container.decode(video=0)]
    return len(frames), (frames[0].width, frames[0].height)
