"""Module configs: read from the checkpoint's config files when there are any, else derived from tensor shapes.

The transformer's config is inferred from shapes (every Animate hyper-parameter shows up in some weight shape; the
head count comes from the face adapter's per-head q-norm). Encoders and the VAE have fixed released sizes, so their
config is the released size whose parameter shapes match the file (the tiny test size only for files that say
they hold a tiny test model).
"""
from __future__ import annotations

import math
import re

from accelerate import init_empty_weights

from ..errors import ShapeMismatchError, WrongModelError
from ..keymaps import Plan, meta_shapes
from .detect import ANIMATE2, FAMILY_NAMES, Identified
from .test_sizes import TEST_CONFIGS

UMT5_XXL_CONFIG = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                       relative_attention_num_buckets=32, relative_attention_max_distance=128,
                       feed_forward_proj="gated-gelu", is_encoder_decoder=False, tie_word_embeddings=False,
                       layer_norm_epsilon=1e-6, dropout_rate=0.0)
CLIP_VIT_H_CONFIG = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                         image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5)
WAN21_VAE_CONFIG = dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                        temperal_downsample=[False, True, True])
ANIMATE_14B_CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36,
                          latent_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824,
                          num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                          image_dim=1280, added_kv_proj_dim=5120, rope_max_seq_len=1024, pos_embed_seq_len=None,
                          motion_encoder_channel_sizes=None, motion_encoder_size=512, motion_style_dim=512,
                          motion_dim=20, motion_encoder_dim=512, face_encoder_hidden_dim=1024,
                          face_encoder_num_heads=4, inject_face_latents_blocks=5, motion_encoder_batch_size=8)

RELEASED_CONFIGS = {  # the only sizes a file is matched against, unless it says it is a tiny test model
    "vae": {"Wan2.1 VAE": WAN21_VAE_CONFIG},
    "text_encoder": {"umT5-XXL": UMT5_XXL_CONFIG},
    "image_encoder": {"CLIP ViT-H/14": CLIP_VIT_H_CONFIG},
}
TRANSFORMER_CLASSES = {"animate": "WanAnimateTransformer3DModel", "animate2": "WanAnimate2Transformer3DModel"}


def component_config(component: str, part: Identified, plan: Plan, res) -> dict:
    """The module config for an identified file: the config.json found beside it (discovery.resolve.Resolved's
    configs / original_config) where it belongs to these weights, else derived from the planned tensor shapes."""
    where = ", ".join(part.files)
    # a Diffusers folder's own config.json wins (its encoders carry transformers names, detected as "comfy" keys)
    if component in res.configs and (part.layout == "diffusers" or component != "transformer"):
        cfg = dict(res.configs[component])
        cls = cfg.get("_class_name")
        want = TRANSFORMER_CLASSES[part.family]
        if component == "transformer" and cls and cls != want:
            raise WrongModelError(f"{where}: the config says {cls}, not {want}: this is not "
                                  f"{FAMILY_NAMES[part.family]}. Use its Diffusers release (e.g. "
                                  "Wan-AI/Wan2.2-Animate-14B-Diffusers or Wan-AI/Wan2.2-Animate-2-14B-Diffusers).")
        return cfg
    shapes = meta_shapes(plan, part.view)
    if component == "transformer" and part.family == "animate2":
        return infer_animate2_config(shapes, part.view.metadata, res.original_config or {})
    if component == "transformer":
        cfg = infer_transformer_config(shapes, hints_from_original_config(res.original_config or {}))
        if res.original_config:
            check_original_config(res.original_config, cfg, where)
        return cfg
    return match_known_config(component, shapes, where, part.test_model)


def module_class(component: str, config: dict | None = None):
    if component == "transformer":
        import diffusers
        return getattr(diffusers, (config or {}).get("_class_name") or TRANSFORMER_CLASSES["animate"])
    if component == "vae":
        from diffusers import AutoencoderKLWan
        return AutoencoderKLWan
    if component == "text_encoder":
        from transformers import UMT5EncoderModel
        return UMT5EncoderModel
    if component == "image_encoder":
        from transformers import CLIPVisionModel
        return CLIPVisionModel
    raise KeyError(component)


def build_empty(component: str, config: dict):
    """The module with parameters on the meta device (buffers real, on the CPU), in eval mode."""
    cls = module_class(component, config)
    with init_empty_weights(include_buffers=False):
        if component == "text_encoder":
            from transformers import UMT5Config
            model = cls(UMT5Config(**config))
        elif component == "image_encoder":
            from transformers import CLIPVisionConfig
            model = cls(CLIPVisionConfig(**config))
        else:
            model = cls.from_config(config)
    if hasattr(model, "tie_weights"):  # transformers ties shared/encoder.embed_tokens lazily; tie before loading
        model.tie_weights()
    return model.eval()


def expected_shapes(component: str, config: dict) -> dict[str, tuple[int, ...]]:
    model = build_empty(component, config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def match_known_config(component: str, shapes: dict[str, tuple[int, ...]], where: str,
                       test_model: bool = False) -> dict:
    """The released config (or, for a file marked as a tiny test model, the test config) whose module has exactly
    these parameter shapes."""
    candidates = {**RELEASED_CONFIGS[component], **(TEST_CONFIGS[component] if test_model else {})}
    tried = []
    for name, config in candidates.items():
        want = expected_shapes(component, config)
        common = set(want) & set(shapes)
        if common and all(want[k] == shapes[k] for k in common) and len(common) >= 0.9 * len(want):
            return dict(config)
        tried.append(name)
    raise ShapeMismatchError(
        f"{where}: the {component} weights match none of the known sizes ({', '.join(tried)}). The file is another "
        "model or damaged: check it with `python -m wan_loader inspect`.")


def _layer_count(shapes, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := rx.match(k))})


def infer_transformer_config(shapes: dict[str, tuple[int, ...]], hints: dict | None = None) -> dict:
    """WanAnimateTransformer3DModel config from diffusers-named shapes (+ hints from an original config.json)."""
    hints = hints or {}
    s = shapes
    inner, in_ch = s["patch_embedding.weight"][:2]
    patch = tuple(s["patch_embedding.weight"][2:])
    cfg = dict(ANIMATE_14B_CONFIG)
    cfg.update(patch_size=patch, in_channels=in_ch, latent_channels=s["pose_patch_embedding.weight"][1],
               out_channels=s["proj_out.weight"][0] // math.prod(patch),
               text_dim=s["condition_embedder.text_embedder.linear_1.weight"][1],
               freq_dim=s["condition_embedder.time_embedder.linear_1.weight"][1],
               ffn_dim=s["blocks.0.ffn.net.0.proj.weight"][0],
               num_layers=_layer_count(s, r"blocks\.(\d+)\."))
    cfg["image_dim"] = s.get("condition_embedder.image_embedder.norm1.weight", (None,))[0]
    cfg["added_kv_proj_dim"] = s.get("blocks.0.attn2.add_k_proj.weight", (None, None))[1]
    pos = s.get("condition_embedder.image_embedder.pos_embed")
    cfg["pos_embed_seq_len"] = pos[1] if pos else None
    if "face_adapter.0.norm_q.weight" in s:
        head_dim = s["face_adapter.0.norm_q.weight"][0]
    else:
        head_dim = inner // hints.get("num_heads", max(inner // 128, 1))
    cfg.update(attention_head_dim=head_dim, num_attention_heads=inner // head_dim)
    n_face = _layer_count(s, r"face_adapter\.(\d+)\.")
    cfg["inject_face_latents_blocks"] = cfg["num_layers"] // n_face if n_face else cfg["num_layers"] + 1
    # motion encoder: size from the number of down-sampling res blocks, channels from their widths
    n_res = _layer_count(s, r"motion_encoder\.res_blocks\.(\d+)\.")
    log_size = n_res + 2
    size = 2 ** log_size
    channels = {str(size): s["motion_encoder.conv_in.weight"][0]}
    for i in range(n_res):
        channels[str(2 ** (log_size - 1 - i))] = s[f"motion_encoder.res_blocks.{i}.conv2.weight"][0]
    default = {k: v for k, v in {"4": 512, "8": 512, "16": 512, "32": 512, "64": 256, "128": 128, "256": 64,
                                 "512": 32, "1024": 16}.items() if k in channels}
    cfg["motion_encoder_channel_sizes"] = None if channels == default and size == 512 else channels
    cfg.update(motion_encoder_size=size, motion_style_dim=s["motion_encoder.conv_out.weight"][0],
               motion_dim=s["motion_encoder.motion_synthesis_weight"][1],
               motion_encoder_dim=s["motion_encoder.motion_synthesis_weight"][0])
    hidden = s["face_encoder.conv2.weight"][0]
    cfg.update(face_encoder_hidden_dim=hidden, face_encoder_num_heads=s["face_encoder.conv1_local.weight"][0] // hidden)
    for key in ("rope_max_seq_len", "eps", "motion_encoder_batch_size"):
        if key in hints:
            cfg[key] = hints[key]
    return cfg


def infer_animate2_config(shapes: dict[str, tuple[int, ...]], metadata: dict, original: dict) -> dict:
    """WanAnimate2Transformer3DModel config from diffusers-named shapes. The head count is not in any shape: it comes
    from ComfyUI's `config` metadata or an original config.json when they give it, else 128-wide heads (14B: 40)."""
    import json

    s = shapes
    dim, in_dim = s["patch_embedding.weight"][:2]
    patch = tuple(s["patch_embedding.weight"][2:])
    try:
        given = json.loads(metadata.get("config") or "{}").get("transformer") or {}
    except (json.JSONDecodeError, AttributeError):
        given = {}
    heads = int(given.get("num_heads") or original.get("num_heads") or max(dim // 128, 1))
    if dim % heads:
        raise ShapeMismatchError(f"{ANIMATE2}: model width {dim} does not split into {heads} heads; the file's "
                                 "metadata or config.json is wrong.")
    return {"_class_name": TRANSFORMER_CLASSES["animate2"], "patch_size": patch, "in_dim": in_dim, "dim": dim,
            "ffn_dim": s["blocks.0.ffn.0.weight"][0], "freq_dim": s["time_embedding.0.weight"][1],
            "text_dim": s["text_embedding.0.weight"][1], "out_dim": s["head.head.weight"][0] // math.prod(patch),
            "num_heads": heads, "num_layers": _layer_count(s, r"blocks\.(\d+)\."),
            "use_img_emb": "img_emb.proj.0.weight" in s, "eps": float(given.get("eps") or original.get("eps") or 1e-6)}


def hints_from_original_config(config: dict) -> dict:
    """The few values of an original Wan-AI config.json that shapes cannot tell (head count, eps)."""
    out = {}
    if "num_heads" in config:
        out["num_heads"] = int(config["num_heads"])
    if "eps" in config:
        out["eps"] = float(config["eps"])
    return out


def original_config_json(cfg: dict) -> dict:
    """An original-layout config.json (as in Wan-AI/Wan2.2-Animate-14B) for a diffusers transformer config."""
    if cfg.get("_class_name") == TRANSFORMER_CLASSES["animate2"]:
        keys = ("patch_size", "in_dim", "dim", "ffn_dim", "freq_dim", "text_dim", "out_dim", "num_heads", "num_layers",
                "eps", "text_len")
        return {"_class_name": "WanModel", "model_type": "animate2", **{k: cfg[k] for k in keys if k in cfg}}
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    return {"_class_name": "WanAnimateModel", "_diffusers_version": "0.33.0", "patch_size": list(cfg["patch_size"]),
            "in_dim": cfg["in_channels"], "dim": inner, "ffn_dim": cfg["ffn_dim"], "freq_dim": cfg["freq_dim"],
            "text_dim": cfg["text_dim"], "out_dim": cfg["out_channels"], "num_heads": cfg["num_attention_heads"],
            "num_layers": cfg["num_layers"], "eps": cfg["eps"], "text_len": 512,
            "motion_encoder_dim": cfg["motion_encoder_dim"], "model_type": "animate"}


def check_original_config(config: dict, cfg: dict, where: str) -> None:
    """An original config.json that contradicts the weights is a mismatch the user must fix."""
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    pairs = {"dim": inner, "num_layers": cfg["num_layers"], "ffn_dim": cfg["ffn_dim"], "in_dim": cfg["in_channels"],
             "num_heads": cfg["num_attention_heads"]}
    bad = [f"{k}={config[k]} (weights say {v})" for k, v in pairs.items() if k in config and config[k] != v]
    if bad:
        raise ShapeMismatchError(f"{where}: config.json does not match the weights: {', '.join(bad)}. The config "
                                 "belongs to another model: replace it with the one released with these weights.")


def clip_image_processor(image_size: int):
    from transformers import CLIPImageProcessor
    return CLIPImageProcessor(size={"shortest_edge": image_size},
                              crop_size={"height": image_size, "width": image_size})

