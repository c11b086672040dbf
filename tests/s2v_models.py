"""Random Wan2.2-S2V model files in ComfyUI's own layouts, for running the S2V profile's core-node graph on the CPU.

Built with ComfyUI's own classes (comfy.ldm.wan.model.WanModel_S2V, comfy.audio_encoders.wav2vec2.Wav2Vec2Model) so
the key names are exactly what UNETLoader / AudioEncoderLoader detect and load:
- the transformer is tiny where core reads the size from the file (dim 128 = one 128-wide head, 2 blocks, ffn 64)
  and full where core fixes it (text 4096, audio 1024, the 12 audio injectors, the frame packer);
- the audio encoder is a full-size wav2vec2-large (core accepts only embed_dim 1024 or 768 with fixed depth, and the
  S2V model takes 1024-wide features), random, fp16 (~0.6 GB), written once per test session.
Every tensor is written: ComfyUI loads with strict=False into modules whose weights it never initialises.

Runs in a child process (`python tests/s2v_models.py MODELS_DIR`): importing ComfyUI's modules sets up its device
management, which the test process must not carry.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

S2V_UNET = "tiny_wan22_s2v.safetensors"
AUDIO_ENCODER = "random_wav2vec2_large.safetensors"


def write_s2v_models(models_dir: Path, comfyui_dir: Path) -> None:
    models_dir = Path(models_dir)
    if (models_dir / "diffusion_models" / S2V_UNET).exists() and (models_dir / "audio_encoders" / AUDIO_ENCODER).exists():
        return
    proc = subprocess.run([sys.executable, __file__, str(models_dir)], cwd=comfyui_dir, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(comfyui_dir)))
    if proc.returncode != 0:
        raise RuntimeError(f"writing the S2V test models failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def _randomised(module, generator, dtype):
    import torch

    out = {}
    for name, tensor in module.state_dict().items():
        if tensor.ndim == 1 and ("norm" in name or name.endswith("layer_norm.weight")) and name.endswith("weight"):
            value = torch.ones(tensor.shape)
        elif name.endswith("bias"):
            value = torch.zeros(tensor.shape)
        else:
            value = torch.randn(tensor.shape, generator=generator) * 0.02
        out[name] = value.to(dtype).contiguous()
    return out


def _main(models_dir: Path) -> None:
    import torch
    from safetensors.torch import save_file

    import comfy.options

    comfy.options.enable_args_parsing()
    sys.argv = [sys.argv[0], "--cpu"]  # ComfyUI's device setup reads its command line when first imported
    import comfy.ops
    from comfy.audio_encoders.wav2vec2 import Wav2Vec2Model
    from comfy.ldm.wan.model import WanModel_S2V

    ops = comfy.ops.disable_weight_init
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        unet = WanModel_S2V(dim=128, ffn_dim=64, num_heads=1, num_layers=2, in_dim=16, out_dim=16, operations=ops)
    (models_dir / "diffusion_models").mkdir(parents=True, exist_ok=True)
    save_file(_randomised(unet, g, torch.float32), str(models_dir / "diffusion_models" / S2V_UNET))
    with torch.device("meta"):
        encoder = Wav2Vec2Model(embed_dim=1024, num_heads=16, num_layers=24, conv_norm=True, conv_bias=True,
                                do_normalize=True, do_stable_layer_norm=True, operations=ops)
    (models_dir / "audio_encoders").mkdir(parents=True, exist_ok=True)
    save_file(_randomised(encoder, g, torch.float16), str(models_dir / "audio_encoders" / AUDIO_ENCODER))


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
