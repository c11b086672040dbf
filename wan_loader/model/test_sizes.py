"""The encoder sizes of the tiny test models (wan_loader.testing builds them).

They live here, beside the released configs, because the loader recognises them: a file marked as a tiny test model
(io.readers.TEST_MODEL_KEY) is matched against these sizes and nothing else is (model.configs.match_known_config).
"""
from __future__ import annotations

TINY_CLIP_IMAGE_SIZE = 28
TINY_VOCAB = ["<pad>", "</s>", "<unk>", "\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [
    "\u2581" + w for w in ("a", "the", "man", "woman", "dance", "dancing", "person", "walk", "blurry", "bad")
]

TINY_VAE_CONFIG = dict(
    base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[], temperal_downsample=[False, True, True]
)

TINY_UMT5_CONFIG = dict(
    vocab_size=len(TINY_VOCAB),
    d_model=32,
    d_kv=8,
    d_ff=48,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
    feed_forward_proj="gated-gelu",
    is_encoder_decoder=False,
)

TINY_CLIP_CONFIG = dict(
    hidden_size=24,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=2,
    image_size=TINY_CLIP_IMAGE_SIZE,
    patch_size=14,
    projection_dim=16,
    hidden_act="gelu",
)

TINY_ANIMATE2_CLIP_CONFIG = dict(hidden_size=1280, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=224, patch_size=14, projection_dim=16, hidden_act="gelu")
# the encoder sizes the loader accepts from files marked as tiny test models (model.configs.match_known_config)
TEST_CONFIGS = {"vae": {"tiny": TINY_VAE_CONFIG}, "text_encoder": {"tiny": TINY_UMT5_CONFIG},
                "image_encoder": {"tiny": TINY_CLIP_CONFIG, "tiny (Animate-2)": TINY_ANIMATE2_CLIP_CONFIG}}
