"""Tiny randomly initialised Wan2.2-Animate components with the real module classes.

Used by the tests, the README's end-to-end demo and the benchmarks' smoke runs. Shapes keep the real
constraints between parts: transformer text_dim == umT5 d_model, image_dim == CLIP hidden size,
in_channels == 2 * latent_channels + 4, VAE z_dim == latent_channels. The face motion encoder works at
TINY_FACE_SIZE (16) instead of 512 so a sampling step costs milliseconds on a CPU.
"""
from __future__ import annotations

import torch

from ..io.readers import TEST_MODEL_KEY
from ..model.components import WanAnimateComponents
from ..model.test_sizes import (TINY_ANIMATE2_CLIP_CONFIG, TINY_CLIP_CONFIG, TINY_CLIP_IMAGE_SIZE,  # noqa: F401
                                 TINY_UMT5_CONFIG, TINY_VAE_CONFIG, TINY_VOCAB)

TINY_FACE_SIZE = 16
TINY_TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=8,
    in_channels=36,
    latent_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=16,
    ffn_dim=32,
    num_layers=4,
    image_dim=24,
    rope_max_seq_len=64,
    motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16},
    motion_encoder_size=TINY_FACE_SIZE,
    motion_style_dim=16,
    motion_dim=4,
    motion_encoder_dim=16,
    face_encoder_hidden_dim=16,
    face_encoder_num_heads=2,
    inject_face_latents_blocks=2,
    motion_encoder_batch_size=8,
)

def marked(model):
    """The model, marked as a tiny test model: the writers then mark its files (io.readers.TEST_MODEL_KEY)."""
    setattr(model, TEST_MODEL_KEY, True)
    return model


def tiny_transformer(seed: int = 0):
    from diffusers import WanAnimateTransformer3DModel

    torch.manual_seed(seed)
    model = WanAnimateTransformer3DModel(**TINY_TRANSFORMER_CONFIG).eval()
    # diffusers zero-initialises some parameters; give every tensor distinct random values so that a
    # conversion that drops or swaps any of them shows up in the tests.
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0.0, 0.02)
    return marked(model)


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed + 1)
    return marked(AutoencoderKLWan(**TINY_VAE_CONFIG).eval())


def tiny_text_encoder(seed: int = 0):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed + 2)
    return marked(UMT5EncoderModel(UMT5Config(**TINY_UMT5_CONFIG)).eval())


def tiny_tokenizer():
    from transformers import T5Tokenizer

    vocab = [(piece, 0.0 if i < 3 else -float(i)) for i, piece in enumerate(TINY_VOCAB)]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_image_encoder(seed: int = 0, config: dict | None = None):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed + 3)
    return marked(CLIPVisionModel(CLIPVisionConfig(**(config or TINY_CLIP_CONFIG))).eval())


def tiny_image_processor():
    from transformers import CLIPImageProcessor

    size = TINY_CLIP_IMAGE_SIZE
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def tiny_components(seed: int = 0) -> WanAnimateComponents:
    """All six parts, in memory, deterministic for a given seed."""
    return WanAnimateComponents(
        transformer=tiny_transformer(seed),
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(seed),
        tokenizer=tiny_tokenizer(),
        image_encoder=tiny_image_encoder(seed),
        image_processor=tiny_image_processor(),
        sources={"all": f"tiny random (seed {seed})"},
    )


# Wan-Animate-2: the Wan2.1-I2V-shaped DiT. Ten layers so that the unconditional pass's skipped block (9) exists;
# its CLIP projection takes 1280-wide features whatever the model size, so the tiny CLIP is 1280 wide (two layers)
# and sees 224 px images, as the Animate-2 pipeline feeds it.
TINY_ANIMATE2_CONFIG = dict(dim=32, ffn_dim=32, freq_dim=16, text_dim=TINY_UMT5_CONFIG["d_model"], num_heads=2,
                            num_layers=10, text_len=512)
def tiny_animate2_transformer(seed: int = 0):
    from diffusers import WanAnimate2Transformer3DModel

    torch.manual_seed(seed)
    return marked(WanAnimate2Transformer3DModel(**TINY_ANIMATE2_CONFIG).eval())


def tiny_animate2_components(seed: int = 0) -> WanAnimateComponents:
    """A tiny Wan-Animate-2 (transformer, VAE, umT5, CLIP 224 px), in memory, deterministic for a given seed."""
    from transformers import CLIPImageProcessor

    size = TINY_ANIMATE2_CLIP_CONFIG["image_size"]
    return WanAnimateComponents(
        transformer=tiny_animate2_transformer(seed),
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(seed),
        tokenizer=tiny_tokenizer(),
        image_encoder=tiny_image_encoder(seed, TINY_ANIMATE2_CLIP_CONFIG),
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        sources={"all": f"tiny random Wan-Animate-2 (seed {seed})"},
    )
