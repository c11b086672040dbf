"""Key maps of the VAE, umT5 and CLIP vision encoder (wan_loader/keymaps/{vae,t5,clip}.py).

1. Self-consistency: tiny random diffusers/transformers module -> plan to each layout -> plan back gives the
   bit-exact state dict, and every key is used on both sides (no leftovers beyond the documented ignored keys).
2. Independent implementations: the tiny weights converted to the "comfy" layout load strictly into ComfyUI's own
   classes (comfy.ldm.wan.vae.WanVAE, comfy.text_encoders.t5.T5, comfy.clip_model.CLIPVisionModelProjection)
   built with the same tiny config, and give the same outputs as the diffusers/transformers modules. The VAE's
   "original" layout is the same key set, so it is proven by the same test. At full size (meta device, no
   memory), ComfyUI's and diffusers' modules have exactly the key sets and shapes the plans produce, and the VAE
   plan agrees with diffusers' own single-file converter.
3. Wan's original T5/CLIP layouts have no ComfyUI class. During development (not committed: fetched code) the
   tiny weights converted by plan_diffusers_to_original were loaded with load_state_dict(strict=True) into the
   official Wan-Video/Wan2.2 (42bf4cf) modules built with the tiny configs: wan/modules/t5.py T5Encoder
   (shared_pos=False, per-layer pos_embedding) matched UMT5EncoderModel's last_hidden_state (max abs diff < 1e-5,
   with and without padding mask), and wan/modules/animate/clip.py VisionTransformer(pool_type='token',
   pre_norm=True, activation='gelu') with use_31_block=True matched CLIPVisionModel hidden_states[-2]
   (strict=False for the dropped head only); and wan/modules/vae2_1.py WanVAE_ loaded the tiny VAE strictly
   and encoded to the same mean as AutoencoderKLWan. The round trip of the official state dicts (CLIP with its
   head, text-tower and log_scale keys, which are reported as ignored) through plan_original_to_diffusers was
   bit-exact too.
"""

from __future__ import annotations

import sys

import pytest
import torch

from wan_loader.keymaps import Plan, execute, used_sources
from wan_loader.keymaps import clip as clip_map
from wan_loader.keymaps import t5 as t5_map
from wan_loader.keymaps import vae as vae_map
from wan_loader.testing.tiny import TINY_CLIP_CONFIG, TINY_UMT5_CONFIG, TINY_VAE_CONFIG

COMPONENTS = {"vae": (vae_map, "vae"), "t5": (t5_map, "text_encoder"), "clip": (clip_map, "image_encoder")}


def shapes_of(sd: dict[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def run(plan: Plan, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(execute(plan, sd.__getitem__))


def to_layout(module, layout: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return run(getattr(module, f"plan_diffusers_to_{layout}")(shapes_of(sd)), sd)


def weights_of(module, model) -> dict[str, torch.Tensor]:
    """The module's state dict without tied aliases (those are tied by the loader, not read)."""
    aliases = getattr(module, "TIED_ALIASES", {})
    return {k: v for k, v in model.state_dict().items() if k not in aliases}


@pytest.mark.parametrize("layout", ["original", "comfy"])
@pytest.mark.parametrize("component", list(COMPONENTS))
def test_round_trip_is_bit_exact_and_uses_every_key(tiny, component, layout):
    module, attr = COMPONENTS[component]
    expected = weights_of(module, getattr(tiny, attr))

    there = to_layout(module, layout, expected)
    assert getattr(module, f"looks_like_{layout}")(there)
    assert not module.looks_like_diffusers(there) or component == "t5"  # comfy umT5 uses the transformers names
    assert module.looks_like_diffusers(expected)

    back_plan = getattr(module, f"plan_{layout}_to_diffusers")(shapes_of(there))
    ignored = set(getattr(module, f"ignored_{layout}_keys")(there))
    assert set(back_plan) == set(expected)
    assert used_sources(back_plan) | ignored == set(there)
    assert not used_sources(back_plan) & ignored
    back = run(back_plan, there)
    for key, tensor in expected.items():
        assert back[key].shape == tensor.shape and torch.equal(back[key], tensor), key


@pytest.mark.parametrize("component", list(COMPONENTS))
def test_layouts_are_told_apart_by_keys(tiny, component):
    module, attr = COMPONENTS[component]
    sd = weights_of(module, getattr(tiny, attr))
    others = [m for name, (m, _) in COMPONENTS.items() if name != component]
    for layout in ("original", "comfy"):
        keys = set(to_layout(module, layout, sd))
        for other in others:
            assert not any(getattr(other, f"looks_like_{lay}")(keys) for lay in ("original", "comfy", "diffusers"))
    if component == "vae":
        assert vae_map.looks_like_comfy(to_layout(vae_map, "original", sd))  # same keys by design
    else:
        assert not module.looks_like_comfy(to_layout(module, "original", sd))
        assert not module.looks_like_original(to_layout(module, "comfy", sd))


def test_unknown_or_missing_keys_are_named(tiny):
    sd = weights_of(clip_map, tiny.image_encoder)
    original = to_layout(clip_map, "original", sd)
    shapes = shapes_of(original)
    with pytest.raises(ValueError, match="visual.cls_embedding"):
        clip_map.plan_original_to_diffusers({k: v for k, v in shapes.items() if k != "visual.cls_embedding"})
    with pytest.raises(ValueError, match="not part of this component.*visual.transformer.0.attn.extra"):
        clip_map.plan_original_to_diffusers({**shapes, "visual.transformer.0.attn.extra.weight": (1,)})
    for proj in ("q_proj", "k_proj"):
        with pytest.raises(ValueError, match=proj):
            clip_map.plan_diffusers_to_original(
                {k: v for k, v in shapes_of(sd).items() if f"0.self_attn.{proj}.w" not in k}
            )
    t5_original = shapes_of(to_layout(t5_map, "original", weights_of(t5_map, tiny.text_encoder)))
    with pytest.raises(ValueError, match="not umT5"):
        t5_map.plan_original_to_diffusers({**t5_original, "pos_embedding.embedding.weight": (32, 4)})
    vae_shapes = shapes_of(to_layout(vae_map, "comfy", weights_of(vae_map, tiny.vae)))
    with pytest.raises(ValueError, match="decoder.upsamples.0.attn"):
        vae_map.plan_comfy_to_diffusers({**vae_shapes, "decoder.upsamples.0.attn.weight": (1,)})


def test_comfy_t5_extras_are_skipped(tiny):
    """Scaled-fp8 marker and scales (for the loader core), the embedded tokenizer and the tied copy."""
    sd = weights_of(t5_map, tiny.text_encoder)
    comfy = shapes_of(to_layout(t5_map, "comfy", sd))
    q = "encoder.block.0.layer.0.SelfAttention.q"
    extras = {
        "scaled_fp8": (0,),
        "spiece_model": (1234,),
        f"{q}.scale_weight": (),
        f"{q}.scale_input": (),
        "encoder.embed_tokens.weight": comfy["shared.weight"],
    }
    assert t5_map.is_scaled_fp8({**comfy, **extras}) and not t5_map.is_scaled_fp8(comfy)
    plan = t5_map.plan_comfy_to_diffusers({**comfy, **extras})
    assert set(plan) == set(sd) and plan["shared.weight"].sources == ("shared.weight",)
    assert set(t5_map.ignored_comfy_keys({**comfy, **extras})) == set(extras)
    only_copy = {k: v for k, v in {**comfy, **extras}.items() if k != "shared.weight"}
    assert t5_map.plan_comfy_to_diffusers(only_copy)["shared.weight"].sources == ("encoder.embed_tokens.weight",)


def test_clip_comfy_projection_is_zeros_and_hub_files_read(tiny):
    sd = weights_of(clip_map, tiny.image_encoder)
    comfy = to_layout(clip_map, "comfy", sd)
    hidden = TINY_CLIP_CONFIG["hidden_size"]
    assert comfy["visual_projection.weight"].shape == (hidden, hidden)
    assert not comfy["visual_projection.weight"].any()
    hub_file = {"vision_model." + k: v for k, v in shapes_of(sd).items()}  # transformers 4 saves this prefix
    hub_file["vision_model.embeddings.position_ids"] = (1, 5)
    assert set(clip_map.plan_comfy_to_diffusers(hub_file)) == set(sd)
    vit_h = {"embeddings.class_embedding": (1280,)}
    assert clip_map.plan_diffusers_to_comfy(vit_h)["visual_projection.weight"].build(None).shape == (1024, 1280)


# ---- ComfyUI's own classes: independent implementations of the "comfy" (= original VAE) layouts ----


@pytest.fixture(scope="module")
def comfy(comfyui_source):
    """ComfyUI's modules, imported from COMFYUI_DIR on the CPU (skips loudly when there is no ComfyUI source)."""
    if str(comfyui_source) not in sys.path:
        sys.path.append(str(comfyui_source))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.clip_model
    import comfy.ldm.wan.vae
    import comfy.ops
    import comfy.text_encoders.t5

    return comfy


def _comfy_vae_config(diffusers_config: dict) -> dict:
    return {
        "dim": diffusers_config.get("base_dim", 96),
        "z_dim": diffusers_config.get("z_dim", 16),
        "dim_mult": list(diffusers_config.get("dim_mult", [1, 2, 4, 4])),
        "num_res_blocks": diffusers_config.get("num_res_blocks", 2),
        "attn_scales": [],
        "temperal_downsample": list(diffusers_config.get("temperal_downsample", [False, True, True])),
    }


def _comfy_t5_config(config: dict) -> dict:
    return dict(config, dense_act_fn="gelu_pytorch_tanh", is_gated_act=True, model_type="umt5")


def _comfy_clip_config(config: dict, projection_dim: int) -> dict:
    return dict(config, num_channels=3, model_type="clip_vision_model", projection_dim=projection_dim)


def test_comfy_vae_gives_the_same_latents_and_frames(tiny, comfy):
    sd = to_layout(vae_map, "comfy", weights_of(vae_map, tiny.vae))
    theirs = comfy.ldm.wan.vae.WanVAE(**_comfy_vae_config(TINY_VAE_CONFIG)).eval()
    theirs.load_state_dict(sd, strict=True)

    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ours_mu = tiny.vae.encode(video).latent_dist.mean
        assert torch.allclose(theirs.encode(video), ours_mu, atol=1e-5, rtol=1e-4)
        frames = tiny.vae.decode(ours_mu).sample
        their_frames = theirs.decode(ours_mu).clamp(-1, 1)  # diffusers clamps its output, ComfyUI later
    assert frames.shape == their_frames.shape == video.shape
    assert torch.allclose(their_frames, frames, atol=1e-5, rtol=1e-4)
    assert (frames.abs() < 1).float().mean() > 0.2, "outputs saturated: the comparison would prove little"


def test_comfy_umt5_gives_the_same_hidden_states(comfy):
    from transformers import UMT5Config, UMT5EncoderModel

    # ComfyUI hard-codes T5's 32 buckets / max distance 128 (the real umT5-XXL values); the tiny config uses
    # fewer, so this comparison builds the tiny model with the real bucket settings.
    config = dict(TINY_UMT5_CONFIG, relative_attention_num_buckets=32, relative_attention_max_distance=128)
    torch.manual_seed(5)
    ours = UMT5EncoderModel(UMT5Config(**config)).eval()
    sd = to_layout(t5_map, "comfy", weights_of(t5_map, ours))
    theirs = comfy.text_encoders.t5.T5(_comfy_t5_config(config), torch.float32, "cpu", comfy.ops.manual_cast).eval()
    theirs.load_state_dict(sd, strict=True)

    ids = torch.randint(0, config["vocab_size"], (2, 150), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 90:] = 0
    with torch.no_grad():
        expected = ours(input_ids=ids, attention_mask=mask).last_hidden_state
        got, _ = theirs(ids, mask, dtype=torch.float32)
    keep = mask.bool()
    assert torch.allclose(got[keep], expected[keep], atol=1e-5, rtol=1e-4)


def test_comfy_clip_vision_gives_the_same_penultimate_state(tiny, comfy):
    sd = to_layout(clip_map, "comfy", weights_of(clip_map, tiny.image_encoder))
    projection_dim = sd["visual_projection.weight"].shape[0]
    theirs = comfy.clip_model.CLIPVisionModelProjection(
        _comfy_clip_config(TINY_CLIP_CONFIG, projection_dim), torch.float32, "cpu", comfy.ops.manual_cast
    ).eval()
    theirs.load_state_dict(sd, strict=True)

    size = TINY_CLIP_CONFIG["image_size"]
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = tiny.image_encoder(pixel_values=pixels, output_hidden_states=True)
        last, penultimate, projected, _ = theirs(pixel_values=pixels, intermediate_output=-2)
        pooled = theirs.vision_model(pixels)[2]
    assert torch.allclose(penultimate, out.hidden_states[-2], atol=1e-5, rtol=1e-4)
    assert torch.allclose(last, out.last_hidden_state, atol=1e-5, rtol=1e-4)
    assert torch.allclose(pooled, out.pooler_output, atol=1e-5, rtol=1e-4)
    assert not projected.any()  # the zero projection written for ComfyUI


def _meta_shapes(build) -> dict[str, tuple]:
    with torch.device("meta"):
        return shapes_of(build().state_dict())


def _planned_shapes(plan: Plan, source: dict[str, tuple]) -> dict[str, tuple]:
    """The shapes a plan produces, computed on meta tensors (no memory)."""
    meta = {k: torch.empty(shape, device="meta") for k, shape in source.items()}
    return {key: tuple(recipe.build(meta.__getitem__).shape) for key, recipe in plan.items()}


def _assert_plan_matches(plan: Plan, source: dict[str, tuple], target: dict[str, tuple], ignored=()):
    assert _planned_shapes(plan, source) == {k: v for k, v in target.items() if k not in ignored}


def test_full_size_key_sets_match_comfyui_and_diffusers(comfy):
    """Real Wan2.1 VAE / umT5-XXL / ViT-H sizes on the meta device: plans cover both sides exactly, shapes agree."""
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    vae_d = _meta_shapes(lambda: AutoencoderKLWan(base_dim=96, z_dim=16))
    vae_c = _meta_shapes(lambda: comfy.ldm.wan.vae.WanVAE(**_comfy_vae_config({})))
    _assert_plan_matches(vae_map.plan_comfy_to_diffusers(vae_c), vae_c, vae_d)
    _assert_plan_matches(vae_map.plan_diffusers_to_comfy(vae_d), vae_d, vae_c)
    theirs = convert_wan_vae_to_diffusers({k: k for k in vae_c})  # diffusers' own single-file converter
    import comfy.ldm.wan.vae2_2

    wan22 = _meta_shapes(lambda: comfy.ldm.wan.vae2_2.WanVAE(z_dim=48))
    assert vae_map.looks_like_wan22_vae(wan22) and not vae_map.looks_like_original(wan22)
    assert vae_map.looks_like_original(vae_c) and not vae_map.looks_like_wan22_vae(vae_c)
    assert {t: r.sources[0] for t, r in vae_map.plan_original_to_diffusers(vae_c).items()} == theirs

    umt5_xxl = {
        "vocab_size": 256384,
        "d_model": 4096,
        "d_kv": 64,
        "d_ff": 10240,
        "num_layers": 24,
        "num_heads": 64,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": False,
    }
    t5_d = _meta_shapes(lambda: UMT5EncoderModel(UMT5Config(**umt5_xxl)))
    t5_c = _meta_shapes(
        lambda: comfy.text_encoders.t5.T5(_comfy_t5_config(umt5_xxl), None, "meta", comfy.ops.manual_cast)
    )
    _assert_plan_matches(t5_map.plan_comfy_to_diffusers(t5_c), t5_c, t5_d, ignored=t5_map.TIED_ALIASES)
    _assert_plan_matches(t5_map.plan_diffusers_to_comfy(t5_d), t5_d, t5_c)

    vit_h = {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "hidden_act": "gelu",
        "projection_dim": 1024,
    }
    clip_d = _meta_shapes(lambda: CLIPVisionModel(CLIPVisionConfig(**vit_h)))
    clip_c = _meta_shapes(
        lambda: comfy.clip_model.CLIPVisionModelProjection(
            _comfy_clip_config(vit_h, 1024), None, "meta", comfy.ops.manual_cast
        )
    )
    _assert_plan_matches(clip_map.plan_comfy_to_diffusers(clip_c), clip_c, clip_d)
    _assert_plan_matches(clip_map.plan_diffusers_to_comfy(clip_d), clip_d, clip_c)
    original = _planned_shapes(clip_map.plan_diffusers_to_original(clip_d), clip_d)
    assert original["visual.cls_embedding"] == (1, 1, 1280) and original["visual.pos_embedding"] == (1, 257, 1280)
    assert original["visual.transformer.31.attn.to_qkv.weight"] == (3840, 1280)
    _assert_plan_matches(clip_map.plan_original_to_diffusers(original), original, clip_d)
