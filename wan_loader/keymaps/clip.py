"""Key maps of the CLIP ViT-H/14 image encoder: original Wan-AI / ComfyUI layouts <-> transformers CLIPVisionModel.

Layouts:
- "original": `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`, the state dict of Wan's
  `wan.modules.animate.clip.XLMRobertaCLIP` (fp32). Only the vision tower `visual.*` is used:
  `patch_embedding` (no bias), `cls_embedding` [1, 1, D], `pos_embedding` [1, 257, D], `pre_norm`,
  `transformer.{n}.{norm1, attn.to_qkv (fused q|k|v along dim 0), attn.proj, norm2, mlp.0, mlp.2}`, `post_norm`.
  Dropped on purpose (`ignored_original_keys`): the XLM-RoBERTa text tower `textual.*`, `log_scale`, and the
  image projection `visual.head` — Wan reads hidden states, never the projected embedding.
  Writing this layout gives the vision tower only: Wan's own `CLIPModel` loads it with `strict=False`.
  (open_clip's xlm-roberta-large-ViT-H-14 was trained with the LAION ViT-H/14 image tower frozen, which is why
  the common ViT-H/14 image encoder files below carry the same vision weights.)
- "comfy": `clip_vision/clip_vision_h.safetensors`, the transformers CLIPVisionModelWithProjection names
  (`vision_model.*`, `visual_projection.weight`), which ComfyUI's `comfy.clip_model.CLIPVisionModelProjection`
  also uses (it picks clip_vision_config_h.json from the 32-layer key). `visual_projection.weight` is not part
  of CLIPVisionModel: reading skips it; writing fills it with zeros ([1024, 1280] for ViT-H) so ComfyUI loads
  the file without a missing-key warning (only `image_embeds`, which Wan does not use, would come from it).
- "diffusers": `CLIPVisionModel.state_dict()` names as transformers 5 has them (no `vision_model.` prefix;
  transformers still reads old files that have it).

What Wan feeds the DiT (for the engine): the PENULTIMATE hidden state of all 257 tokens, i.e. the output of
block 31 of 32, before `post_layernorm` (Wan: `visual(x, use_31_block=True)`; transformers:
`image_encoder(pixel_values, output_hidden_states=True).hidden_states[-2]`; ComfyUI: `penultimate_hidden_states`).
Official preprocessing (`CLIPModel.visual`): the reference frame in [-1, 1] is resized to 224x224 with
`F.interpolate(mode="bicubic", align_corners=False)` — a squash to a square, no aspect-preserving resize, no center
crop, no antialias — then mapped to [0, 1] and normalised with mean (0.48145466, 0.4578275, 0.40821073) and std
(0.26862954, 0.26130258, 0.27577711). transformers' CLIPImageProcessor defaults (shortest-edge resize + center
crop) differ from this for non-square images, and ComfyUI's `clip_preprocess` squashes only with crop="none".
"""

from __future__ import annotations

import torch

from .plan import Plan, Recipe, renamed
from .rules import KeyTable, require

LAYOUTS = ("original", "comfy")

_P = "{p:weight|bias}"
_L = "encoder.layers.{n}"
_ORIGINAL_RENAMES = [
    ("visual.patch_embedding.weight", "embeddings.patch_embedding.weight"),
    (f"visual.pre_norm.{_P}", f"pre_layrnorm.{_P}"),
    (f"visual.transformer.{{n}}.norm1.{_P}", f"{_L}.layer_norm1.{_P}"),
    (f"visual.transformer.{{n}}.attn.proj.{_P}", f"{_L}.self_attn.out_proj.{_P}"),
    (f"visual.transformer.{{n}}.norm2.{_P}", f"{_L}.layer_norm2.{_P}"),
    (f"visual.transformer.{{n}}.mlp.0.{_P}", f"{_L}.mlp.fc1.{_P}"),
    (f"visual.transformer.{{n}}.mlp.2.{_P}", f"{_L}.mlp.fc2.{_P}"),
    (f"visual.post_norm.{_P}", f"post_layernorm.{_P}"),
]
_RESHAPED = {
    "visual.cls_embedding": "embeddings.class_embedding",
    "visual.pos_embedding": "embeddings.position_embedding.weight",
}
_FUSED_QKV = "visual.transformer.{n}.attn.to_qkv.{p}"
_SPLIT_QKV = ("q_proj", "k_proj", "v_proj")
_ORIGINAL = KeyTable(_ORIGINAL_RENAMES)

_COMFY_PREFIX = "vision_model."
_COMFY_PROJECTION = "visual_projection.weight"
_COMFY_EXTRA = ("vision_model.embeddings.position_ids",)
# projection width per tower width, as in ComfyUI's clip_vision_config_{vitl,h,g}.json
_PROJECTION_DIM = {1024: 768, 1280: 1024, 1664: 1280}
_DIFFUSERS_NAMES = (
    [d for _, d in _ORIGINAL_RENAMES]
    + list(_RESHAPED.values())
    + [f"{_L}.self_attn.{proj}.{_P}" for proj in _SPLIT_QKV]
)
_COMFY = KeyTable([(_COMFY_PREFIX + d, d) for d in _DIFFUSERS_NAMES])


def _third(index: int):
    def take(qkv: torch.Tensor) -> torch.Tensor:
        return qkv.chunk(3, dim=0)[index].contiguous()

    take.__name__ = f"{_SPLIT_QKV[index]}_of_qkv"
    return take


def _fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.cat([q, k, v], dim=0)


def _reshaper(shape: tuple[int, ...]):
    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(shape)

    reshape.__name__ = f"reshape_to_{'x'.join(map(str, shape))}"
    return reshape


def plan_original_to_diffusers(shapes: dict[str, tuple]) -> Plan:
    what = "CLIP vision tower (original Wan XLMRobertaCLIP layout)"
    ignored = set(ignored_original_keys(shapes))
    require(shapes, list(_RESHAPED), what)
    plan: Plan = {}
    plain = []
    for key, shape in shapes.items():
        if key in ignored:
            continue
        if key in _RESHAPED:
            shape = tuple(shape)
            plan[_RESHAPED[key]] = Recipe(
                (key,), _reshaper(shape[-1:] if key == "visual.cls_embedding" else shape[-2:])
            )
        elif key.split(".")[-2:-1] == ["to_qkv"] and key.startswith("visual.transformer."):
            rows = shape[0]
            if rows % 3:
                raise ValueError(f"{what}: {key} has {rows} rows, not 3 equal q|k|v parts")
            n, p = key.split(".")[2], key.split(".")[-1]
            for i, proj in enumerate(_SPLIT_QKV):
                plan[f"encoder.layers.{n}.self_attn.{proj}.{p}"] = Recipe((key,), _third(i))
        else:
            plain.append(key)
    plan.update(renamed(_ORIGINAL.rename_all(plain, True, what)))
    return plan


def plan_diffusers_to_original(shapes: dict[str, tuple]) -> Plan:
    what = "CLIP vision tower (transformers CLIPVisionModel)"
    require(shapes, list(_RESHAPED.values()), what)
    plan: Plan = {}
    plain = []
    inverse = {d: o for o, d in _RESHAPED.items()}
    for key, shape in shapes.items():
        parts = key.split(".")
        if key in inverse:
            lead = (1, 1) if key == "embeddings.class_embedding" else (1,)
            plan[inverse[key]] = Recipe((key,), _reshaper(lead + tuple(shape)))
        elif key.startswith("encoder.layers.") and parts[-2] in _SPLIT_QKV:
            n, p = parts[2], parts[-1]
            fused = _FUSED_QKV.format(n=n, p=p)
            if fused not in plan:
                sources = tuple(f"encoder.layers.{n}.self_attn.{proj}.{p}" for proj in _SPLIT_QKV)
                require(shapes, sources, what)
                plan[fused] = Recipe(sources, _fuse_qkv)
        else:
            plain.append(key)
    plan.update(renamed(_ORIGINAL.rename_all(plain, False, what)))
    return plan


def plan_comfy_to_diffusers(shapes: dict[str, tuple]) -> Plan:
    what = "CLIP vision tower (ComfyUI / transformers-with-projection layout)"
    weights = [k for k in shapes if k not in set(ignored_comfy_keys(shapes))]
    return renamed(_COMFY.rename_all(weights, True, what))


def plan_diffusers_to_comfy(shapes: dict[str, tuple]) -> Plan:
    what = "CLIP vision tower (transformers CLIPVisionModel)"
    require(shapes, ["embeddings.class_embedding"], what)
    plan = renamed(_COMFY.rename_all(shapes, False, what))
    width = shapes["embeddings.class_embedding"][-1]
    shape = (_PROJECTION_DIM.get(width, width), width)

    def zero_projection() -> torch.Tensor:
        return torch.zeros(shape)

    plan[_COMFY_PROJECTION] = Recipe((), zero_projection)
    return plan


def ignored_original_keys(keys) -> list[str]:
    """The text tower, the logit scale and the vision projection head: not part of the image encoder Wan uses."""
    return [k for k in keys if not k.startswith("visual.") or k == "visual.head"]


def ignored_comfy_keys(keys) -> list[str]:
    """The projection (not in CLIPVisionModel) and the position-id buffer some older exports carry."""
    return [k for k in keys if k == _COMFY_PROJECTION or k in _COMFY_EXTRA]


def looks_like_original(keys) -> bool:
    keys = set(keys)
    return "visual.transformer.0.attn.to_qkv.weight" in keys and "visual.cls_embedding" in keys


def looks_like_comfy(keys) -> bool:
    keys = set(keys)
    return (
        "vision_model.encoder.layers.0.self_attn.q_proj.weight" in keys
        and "vision_model.embeddings.class_embedding" in keys
    )


def looks_like_diffusers(keys) -> bool:
    keys = set(keys)
    return "encoder.layers.0.self_attn.q_proj.weight" in keys and "embeddings.class_embedding" in keys
