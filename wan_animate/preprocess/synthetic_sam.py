"""SAM2 video models with random weights in the transformers folder layout (config.json + model.safetensors +
processor files), for tests and benchmarks: no download.

- "large": SAM 2.1 Hiera-L's real configuration (the sizes of facebook/sam2.1-hiera-large and of the official
  Wan2.2 preprocessing's sam2_hiera_large), for speed and memory figures;
- "tiny": the same architecture at a 128-px input with narrow layers (runs in milliseconds on a CPU), for tests;
- a tiny SAM 3 tracker (write_sam3_tracker_folder), for the SAM 3 path.
"""
from __future__ import annotations

import os
from pathlib import Path

from .sam_tracker import sam2_processor

TINY_IMAGE_SIZE = 128
SIZES = ("large", "tiny")


def sam2_config(size: str = "large"):
    """A Sam2VideoConfig of one of SIZES."""
    from transformers import Sam2VideoConfig

    if size == "large":
        backbone = dict(
            model_type="sam2_hiera_det_model", hidden_size=144, num_attention_heads=2,
            embed_dim_per_stage=[144, 288, 576, 1152], num_attention_heads_per_stage=[2, 4, 8, 16],
            blocks_per_stage=[2, 6, 36, 4], global_attention_blocks=[23, 33, 43],
            window_positional_embedding_background_size=[7, 7], window_size_per_stage=[8, 4, 16, 8],
        )
        vision = dict(model_type="sam2_vision_model", backbone_config=backbone, backbone_channel_list=[1152, 576, 288, 144])
        return Sam2VideoConfig(vision_config=vision, enable_temporal_pos_encoding_for_object_pointers=True,
                               enable_occlusion_spatial_embedding=True)
    if size != "tiny":
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    s = TINY_IMAGE_SIZE
    backbone = dict(
        model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1, image_size=[s, s],
        blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[4, 4, 4, 2], global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2],
    )
    vision = dict(model_type="sam2_vision_model", backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                  backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]], fpn_hidden_size=64)
    # The memory path needs hidden sizes of 64 (transformers fixes the memory attention's key width at 64).
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=64, image_size=s, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=64, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        memory_attention_hidden_size=64, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[s // 16, s // 16], memory_encoder_hidden_size=64,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=64, memory_fuser_embed_dim=64,
        memory_fuser_intermediate_dim=64, image_size=s, enable_temporal_pos_encoding_for_object_pointers=True,
        enable_occlusion_spatial_embedding=True,
    )


def sam2_model(size: str = "large", seed: int = 0, dtype=None):
    """A Sam2VideoModel of one of SIZES with random weights (seeded)."""
    import torch
    from transformers import Sam2VideoModel

    torch.manual_seed(seed)
    model = Sam2VideoModel(sam2_config(size)).eval()
    return model.to(dtype) if dtype is not None else model


def write_sam2_folder(folder: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """A transformers SAM2 video model folder with random weights, as from_pretrained reads it."""
    folder = Path(folder)
    model = sam2_model(size, seed)
    model.save_pretrained(folder)
    sam2_processor(model.config.image_size).save_pretrained(folder)
    return folder


def write_sam3_tracker_folder(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny SAM 3 tracker (Sam3TrackerVideoModel: SAM 3's ViT backbone at 112 px) folder with random weights."""
    import torch
    from transformers import (Sam2ImageProcessor, Sam2VideoVideoProcessor, Sam3TrackerVideoConfig,
                              Sam3TrackerVideoModel, Sam3TrackerVideoProcessor)

    s = 112
    vit = dict(model_type="sam3_vit_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=2, image_size=s, patch_size=14, window_size=4, global_attn_indexes=[1],
               pretrain_image_size=56)
    config = Sam3TrackerVideoConfig(
        vision_config=dict(model_type="sam3_vision_model", backbone_config=vit, fpn_hidden_size=64),
        prompt_encoder_config=dict(hidden_size=64, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=64, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        memory_attention_hidden_size=64, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_encoder_hidden_size=64, memory_encoder_output_channels=64, mask_downsampler_embed_dim=64,
        memory_fuser_embed_dim=64, memory_fuser_intermediate_dim=64, image_size=s,
    )
    torch.manual_seed(seed)
    folder = Path(folder)
    Sam3TrackerVideoModel(config).eval().save_pretrained(folder)
    size, half = {"height": s, "width": s}, [0.5, 0.5, 0.5]  # SAM 3 normalises with mean = std = 0.5
    Sam3TrackerVideoProcessor(
        image_processor=Sam2ImageProcessor(size=size, image_mean=half, image_std=half),
        video_processor=Sam2VideoVideoProcessor(size=size, image_mean=half, image_std=half),
    ).save_pretrained(folder)
    return folder
