"""Key maps of the umT5-XXL text encoder: original Wan-AI / ComfyUI layouts <-> transformers UMT5EncoderModel.

Layouts:
- "original": `models_t5_umt5-xxl-enc-bf16.pth`, the state dict of Wan's own `wan.modules.t5.T5Encoder`
  (umt5_xxl(encoder_only=True), shared_pos=False): `token_embedding`, `blocks.{n}.{norm1,attn.{q,k,v,o},norm2,
  ffn.{gate.0,fc1,fc2},pos_embedding.embedding}`, `norm`. umT5 has one relative position embedding PER LAYER
  (`blocks.{n}.pos_embedding.embedding.weight`, [num_buckets, heads]); Wan's FFN computes fc1(x) * gelu(gate(x)),
  i.e. gate.0 is transformers' wi_0 (the activated branch) and fc1 is wi_1.
- "comfy": `text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors` and the bf16 file. ComfyUI's
  `comfy.text_encoders.t5.T5` uses the transformers names, so the weights map 1:1. The files may also hold
  entries that are not weights of the module, which the plans skip (`ignored_comfy_keys` lists them):
    `scaled_fp8` (marker: an empty tensor whose dtype is the fp8 storage type) and `<linear>.scale_weight` /
    `<linear>.scale_input` (per-tensor fp8 scales). The loader core (wan_loader/fp8.py) reads these: a plan maps
    `X.weight`, and `X.scale_weight` belongs to the same source module, under the same name prefix.
    `spiece_model`: the umT5 SentencePiece model as a uint8 tensor (ComfyUI builds its tokenizer from it).
    `encoder.embed_tokens.weight`, when present: a copy of `shared.weight` (used only if `shared.weight` is absent).
- "diffusers": `UMT5EncoderModel.state_dict()` names. `encoder.embed_tokens.weight` is tied to `shared.weight`
  (transformers `_tied_weights_keys`), so plans to diffusers produce `shared.weight` only: the loader ties
  the alias (`model.tie_weights()`) instead of materialising the 2 GB embedding twice; plans from diffusers
  read `shared.weight` and accept that `encoder.embed_tokens.weight` is left over.
"""

from __future__ import annotations

from .plan import Plan, renamed
from .rules import KeyTable, require

LAYOUTS = ("original", "comfy")
TIED_ALIASES = {"encoder.embed_tokens.weight": "shared.weight"}

_BLOCK = "encoder.block.{n}.layer"
_ORIGINAL_TO_DIFFUSERS = [
    ("token_embedding.weight", "shared.weight"),
    ("blocks.{n}.norm1.weight", f"{_BLOCK}.0.layer_norm.weight"),
    ("blocks.{n}.attn.{x:q|k|v|o}.weight", f"{_BLOCK}.0.SelfAttention.{{x:q|k|v|o}}.weight"),
    ("blocks.{n}.pos_embedding.embedding.weight", f"{_BLOCK}.0.SelfAttention.relative_attention_bias.weight"),
    ("blocks.{n}.norm2.weight", f"{_BLOCK}.1.layer_norm.weight"),
    ("blocks.{n}.ffn.gate.0.weight", f"{_BLOCK}.1.DenseReluDense.wi_0.weight"),
    ("blocks.{n}.ffn.fc1.weight", f"{_BLOCK}.1.DenseReluDense.wi_1.weight"),
    ("blocks.{n}.ffn.fc2.weight", f"{_BLOCK}.1.DenseReluDense.wo.weight"),
    ("norm.weight", "encoder.final_layer_norm.weight"),
]
_ORIGINAL = KeyTable(_ORIGINAL_TO_DIFFUSERS)
_COMFY = KeyTable([(d, d) for _, d in _ORIGINAL_TO_DIFFUSERS])

_COMFY_FP8_MARKER = "scaled_fp8"
_COMFY_TOKENIZER = "spiece_model"
_FP8_SUFFIXES = (".scale_weight", ".scale_input")


def _weights(shapes, ignored) -> list[str]:
    skip = set(ignored)
    return [k for k in shapes if k not in skip]


def plan_original_to_diffusers(shapes: dict[str, tuple]) -> Plan:
    what = "umT5 encoder (original Wan layout)"
    if "pos_embedding.embedding.weight" in shapes:
        raise ValueError(f"{what}: one shared position embedding; this is a T5 encoder, not umT5 (Wan uses umT5-XXL)")
    require(shapes, ["token_embedding.weight", "norm.weight"], what)
    return renamed(_ORIGINAL.rename_all(shapes, True, what))


def plan_diffusers_to_original(shapes: dict[str, tuple]) -> Plan:
    what = "umT5 encoder (transformers UMT5EncoderModel)"
    require(shapes, ["shared.weight"], what)
    return renamed(_ORIGINAL.rename_all(_weights(shapes, TIED_ALIASES), False, what))


def plan_comfy_to_diffusers(shapes: dict[str, tuple]) -> Plan:
    what = "umT5 encoder (ComfyUI layout)"
    weights = _weights(shapes, ignored_comfy_keys(shapes))
    names: dict[str, str] = {}
    if "shared.weight" not in shapes and "encoder.embed_tokens.weight" in shapes:
        weights.remove("encoder.embed_tokens.weight")
        names["shared.weight"] = "encoder.embed_tokens.weight"
    names.update(_COMFY.rename_all(weights, True, what))
    require(names, ["shared.weight", "encoder.final_layer_norm.weight"], what)
    return renamed(names)


def plan_diffusers_to_comfy(shapes: dict[str, tuple]) -> Plan:
    what = "umT5 encoder (transformers UMT5EncoderModel)"
    require(shapes, ["shared.weight"], what)
    return renamed(_COMFY.rename_all(_weights(shapes, TIED_ALIASES), False, what))


def ignored_original_keys(keys) -> list[str]:
    """Keys of an original file that no plan uses on purpose: none."""
    return []


def ignored_comfy_keys(keys) -> list[str]:
    """Non-weight entries of a ComfyUI text-encoder file: fp8 marker and scales (read by the loader core),
    the embedded tokenizer, and the tied embedding copy when `shared.weight` is there."""
    keys = list(keys)
    present = set(keys)
    return [
        k
        for k in keys
        if k in (_COMFY_FP8_MARKER, _COMFY_TOKENIZER)
        or k.endswith(_FP8_SUFFIXES)
        or (k in TIED_ALIASES and TIED_ALIASES[k] in present)
    ]


def _is_umt5(keys: set[str], attention_bias: str) -> bool:
    # umT5 has a relative attention bias in every layer; T5 v1.1 only in layer 0.
    return attention_bias.format(n=0) in keys and attention_bias.format(n=1) in keys


def looks_like_original(keys) -> bool:
    keys = set(keys)
    return "token_embedding.weight" in keys and _is_umt5(keys, "blocks.{n}.pos_embedding.embedding.weight")


def looks_like_comfy(keys) -> bool:
    """ComfyUI's umT5 files use the transformers names: this is also true for a transformers state dict."""
    keys = set(keys)
    bias = "encoder.block.{n}.layer.0.SelfAttention.relative_attention_bias.weight"
    return (
        "encoder.final_layer_norm.weight" in keys
        and _is_umt5(keys, bias)
        and "decoder.final_layer_norm.weight" not in keys
    )


looks_like_diffusers = looks_like_comfy


def is_scaled_fp8(keys) -> bool:
    """A ComfyUI scaled-fp8 text encoder (marker key present)."""
    return _COMFY_FP8_MARKER in set(keys)
