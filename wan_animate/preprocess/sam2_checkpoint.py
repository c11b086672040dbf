"""SAM 2 / 2.1 checkpoints in the original layout (facebookresearch/sam2) as transformers' Sam2VideoModel.

The official Wan2.2 preprocessing ships `process_checkpoint/sam2/sam2_hiera_large.pt`, and ComfyUI packs keep
`sam2_hiera_*.safetensors` / `sam2.1_hiera_*.safetensors` (the same tensors) in models/sam2. Their keys are renamed
to transformers' (the renames transformers' own conversion script makes), the Hiera size is recognised from the
patch embedding width and the number of blocks, and SAM 2.1 from the tensors only it has; the model is then loaded
strictly, so a file of another model fails with the keys that do not fit.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# (patch embedding width, blocks) -> Hiera settings the weights cannot tell (heads, windows, global attention).
HIERA = {
    (96, 12): dict(name="tiny", blocks_per_stage=[1, 2, 7, 2], num_attention_heads_per_stage=[1, 2, 4, 8],
                   global_attention_blocks=[5, 7, 9], window_size_per_stage=[8, 4, 14, 7]),
    (96, 16): dict(name="small", blocks_per_stage=[1, 2, 11, 2], num_attention_heads_per_stage=[1, 2, 4, 8],
                   global_attention_blocks=[7, 10, 13], window_size_per_stage=[8, 4, 14, 7]),
    (112, 24): dict(name="base_plus", blocks_per_stage=[2, 3, 16, 3], num_attention_heads_per_stage=[2, 4, 8, 16],
                    global_attention_blocks=[12, 16, 20], window_size_per_stage=[8, 4, 14, 7]),
    (144, 48): dict(name="large", blocks_per_stage=[2, 6, 36, 4], num_attention_heads_per_stage=[2, 4, 8, 16],
                    global_attention_blocks=[23, 33, 43], window_size_per_stage=[8, 4, 16, 8]),
}
TRUNK = "image_encoder.trunk."
# Renames applied in order to every key (regular expression -> replacement).
RENAMES = [
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
    (r"^obj_ptr_proj\.", "object_pointer_proj."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"^memory_encoder\.out_proj\.", "memory_encoder.projection."),
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.fuser\.", "memory_encoder.memory_fuser."),
    (r"\.dwconv\.", ".depthwise_conv."),
    (r"\.pwconv(\d)\.", r".pointwise_conv\1."),
    (r"\.gamma$", ".scale"),
    (r"\.out_proj\.", ".o_proj."),
    (r"\.norm(?=[\d_.])", ".layer_norm"),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
    (r"\.pe_layer\.positional_encoding_gaussian_matrix$", ".shared_embedding.positional_embedding"),
]
# MLPs: original `layers.i` of n layers -> proj_in, layers.0 .. layers.n-3, proj_out.
MLP = re.compile(r"^(.*(?:\.mlp|iou_prediction_head|output_hypernetworks_mlps\.\d+|pred_obj_score_head|"
                 r"object_pointer_proj))\.layers\.(\d+)\.(.*)$")
DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(.*)$")
POINT_EMBEDDING = re.compile(r"^prompt_encoder\.point_embeddings\.(\d+)\.weight$")


class Sam2CheckpointError(ValueError):
    """A single-file checkpoint that is not a SAM 2 / 2.1 model in the original layout."""


def read_state_dict(path: str | os.PathLike) -> dict:
    """The tensors of a .safetensors or .pt/.pth checkpoint (the .pt's {"model": ...} unwrapped), on the CPU."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(os.fspath(path))
        import torch

        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same readable error
        raise Sam2CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__}: {error}); "
                                  "re-download it") from error
    return state.get("model", state) if isinstance(state, dict) else {}


def hiera_variant(state: dict, where: str = "checkpoint") -> dict:
    """The HIERA entry of an original-layout state dict, or an error saying what the file is not."""
    if f"{TRUNK}patch_embed.proj.weight" not in state:
        sam3 = any(k.startswith(("detector.", "tracker.")) for k in state)
        kind = "a SAM 3 checkpoint (sam3.pt)" if sam3 else "not a SAM 2 checkpoint"
        raise Sam2CheckpointError(
            f"{where} is {kind}: only SAM 2 / 2.1 single files (sam2_hiera_*.pt, sam2.1_hiera_*.safetensors) are "
            "converted. For SAM 3 use the transformers folder of facebook/sam3 (picked by name: downloaded)."
        )
    width = int(state[f"{TRUNK}patch_embed.proj.weight"].shape[0])
    blocks = len({k.split(".")[3] for k in state if k.startswith(f"{TRUNK}blocks.")})
    if (width, blocks) not in HIERA:
        raise Sam2CheckpointError(f"{where}: a Hiera of width {width} with {blocks} blocks is not a known SAM 2 size "
                                  f"(tiny, small, base_plus, large)")
    return HIERA[(width, blocks)]


def sam2_config_for(state: dict, where: str = "checkpoint"):
    """The Sam2VideoConfig of an original-layout state dict."""
    from transformers import Sam2VideoConfig

    variant = hiera_variant(state, where)
    width = int(state[f"{TRUNK}patch_embed.proj.weight"].shape[0])
    dims = [width * 2**i for i in range(4)]
    background = list(state[f"{TRUNK}pos_embed"].shape[-2:])
    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=width, embed_dim_per_stage=dims,
                    num_attention_heads=variant["num_attention_heads_per_stage"][0],
                    window_positional_embedding_background_size=background,
                    **{k: v for k, v in variant.items() if k != "name"})
    vision = dict(model_type="sam2_vision_model", backbone_config=backbone, backbone_channel_list=dims[::-1])
    return Sam2VideoConfig(
        vision_config=vision,
        enable_temporal_pos_encoding_for_object_pointers="obj_ptr_tpos_proj.weight" in state,
        enable_occlusion_spatial_embedding="no_obj_embed_spatial" in state,
    )


def renamed(key: str) -> str:
    for pattern, replacement in RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def layer_key(key: str, mlp_layers: dict[str, int]) -> str:
    """A renamed key's numbered layers as transformers names them (MLP ends, the memory mask downsampler)."""
    found = MLP.match(key)
    if found:
        prefix, index, rest = found.group(1), int(found.group(2)), found.group(3)
        last = mlp_layers[prefix] - 1
        name = "proj_in" if index == 0 else "proj_out" if index == last else f"layers.{index - 1}"
        return f"{prefix}.{name}.{rest}"
    found = DOWNSAMPLER.match(key)
    if found:
        index, rest = int(found.group(1)), found.group(2)
        kind = "conv" if index % 3 == 0 else "layer_norm"
        return (f"memory_encoder.mask_downsampler.final_conv.{rest}" if index == 12
                else f"memory_encoder.mask_downsampler.layers.{index // 3}.{kind}.{rest}")
    return key


def to_transformers(state: dict) -> dict:
    """Original SAM 2 tensors under transformers' Sam2VideoModel names."""
    import torch

    named = {renamed(key): value for key, value in state.items()}
    mlp_layers: dict[str, int] = {}
    for key in named:
        found = MLP.match(key)
        if found:
            mlp_layers[found.group(1)] = max(mlp_layers.get(found.group(1), 0), int(found.group(2)) + 1)
    out = {layer_key(k, mlp_layers): v for k, v in named.items() if not POINT_EMBEDDING.match(k)}
    points = sorted((int(POINT_EMBEDDING.match(k).group(1)), v) for k, v in named.items() if POINT_EMBEDDING.match(k))
    out["prompt_encoder.point_embed.weight"] = torch.cat([v for _, v in points], dim=0)
    out["shared_image_embedding.positional_embedding"] = out["prompt_encoder.shared_embedding.positional_embedding"]
    return out


def load_sam2_checkpoint(path: str | os.PathLike):
    """A Sam2VideoModel (float32, CPU) with the weights of an original-layout SAM 2 / 2.1 checkpoint file."""
    from transformers import Sam2VideoModel

    state = read_state_dict(path)
    config = sam2_config_for(state, str(path))
    model = Sam2VideoModel(config)
    missing, unexpected = model.load_state_dict(to_transformers(state), strict=False)
    if missing or unexpected:
        raise Sam2CheckpointError(
            f"{path} does not fit SAM 2 {hiera_variant(state)['name']}: {len(missing)} missing tensors "
            f"({', '.join(missing[:3])}...) and {len(unexpected)} unexpected ({', '.join(unexpected[:3])}...)"
        )
    return model.eval()
