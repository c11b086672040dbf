"""Key maps of the Wan2.1 VAE: original Wan-AI / ComfyUI layout <-> diffusers AutoencoderKLWan.

Layouts:
- "original": `Wan2.1_VAE.pth` (Wan-AI, a plain torch state dict of `wan.modules.vae2_1.WanVAE_`, fp32).
- "comfy": `vae/wan_2.1_vae.safetensors` (Comfy-Org). ComfyUI's `comfy.ldm.wan.vae.WanVAE` is a copy of the
  official module, so its keys are exactly the original's (only the container and dtype differ). Both layouts
  therefore share one map; `looks_like_comfy` and `looks_like_original` agree on every key set.
- "diffusers": `AutoencoderKLWan(...).state_dict()` names.

Every tensor is a pure rename (the RMS-norm gammas already have the same shapes on both sides). The only
structural difference: the original decoder keeps its residual blocks and upsamplers in one flat list
(`decoder.upsamples.{u}`), diffusers groups them per stage (`decoder.up_blocks.{i}.resnets.{r}` /
`.upsamplers.0`). The grouping is read from the keys themselves (a position holding `resample`/`time_conv`
weights closes a stage), so any `num_res_blocks` / `dim_mult` works, including the tiny test model.
The Wan2.2 VAE (48 latent channels, `decoder.upsamples.0.upsamples.0...`) is a different model and is rejected.
"""

from __future__ import annotations

from .plan import Plan, renamed
from .rules import Groups, KeyTable

LAYOUTS = ("original", "comfy")

_P = "{p:weight|bias}"
_RESBLOCK = [
    ("residual.0.gamma", "norm1.gamma"),
    (f"residual.2.{_P}", f"conv1.{_P}"),
    ("residual.3.gamma", "norm2.gamma"),
    (f"residual.6.{_P}", f"conv2.{_P}"),
    (f"shortcut.{_P}", f"conv_shortcut.{_P}"),
]
_ATTENTION = [("norm.gamma", "norm.gamma"), (f"to_qkv.{_P}", f"to_qkv.{_P}"), (f"proj.{_P}", f"proj.{_P}")]
_RESAMPLE = [(f"resample.1.{_P}", f"resample.1.{_P}"), (f"time_conv.{_P}", f"time_conv.{_P}")]


def _pairs() -> list[tuple[str, str]]:
    pairs = [(f"conv1.{_P}", f"quant_conv.{_P}"), (f"conv2.{_P}", f"post_quant_conv.{_P}")]
    for side in ("encoder", "decoder"):
        pairs += [
            (f"{side}.conv1.{_P}", f"{side}.conv_in.{_P}"),
            (f"{side}.head.0.gamma", f"{side}.norm_out.gamma"),
            (f"{side}.head.2.{_P}", f"{side}.conv_out.{_P}"),
        ]
        pairs += [(f"{side}.middle.0.{a}", f"{side}.mid_block.resnets.0.{b}") for a, b in _RESBLOCK]
        pairs += [(f"{side}.middle.1.{a}", f"{side}.mid_block.attentions.0.{b}") for a, b in _ATTENTION]
        pairs += [(f"{side}.middle.2.{a}", f"{side}.mid_block.resnets.1.{b}") for a, b in _RESBLOCK]
    pairs += [
        (f"encoder.downsamples.{{n}}.{a}", f"encoder.down_blocks.{{n}}.{b}")
        for a, b in _RESBLOCK + _ATTENTION + _RESAMPLE
    ]
    pairs += [(f"decoder.upsamples.{{u}}.{a}", f"decoder.up_blocks.{{i}}.resnets.{{r}}.{b}") for a, b in _RESBLOCK]
    pairs += [(f"decoder.upsamples.{{u}}.{a}", f"decoder.up_blocks.{{i}}.upsamplers.0.{b}") for a, b in _RESAMPLE]
    return pairs


_TABLE = KeyTable(_pairs())
_ORIGINAL_MARKER = "decoder.middle.0.residual.0.gamma"
_WAN22_MARKER = "decoder.upsamples.0.upsamples.0.residual.2.weight"


def _original_decoder_slots(keys) -> dict[int, Groups]:
    """Flat decoder position -> {"i": stage, "r": resnet} or {"i": stage} for the stage's upsampler."""
    positions: dict[int, bool] = {}
    for key in keys:
        parts = key.split(".")
        if key.startswith("decoder.upsamples.") and parts[2].isdigit():
            u = int(parts[2])
            positions[u] = positions.get(u, False) or parts[3] in ("resample", "time_conv")
    slots, stage, resnet = {}, 0, 0
    for u in sorted(positions):
        if positions[u]:
            slots[u] = {"i": str(stage)}
            stage, resnet = stage + 1, 0
        else:
            slots[u] = {"i": str(stage), "r": str(resnet)}
            resnet += 1
    return slots


def _diffusers_decoder_slots(keys) -> dict[tuple[int, int | None], int]:
    """(stage, resnet) or (stage, None) for the upsampler -> flat decoder position."""
    found: set[tuple[int, int | None]] = set()
    for key in keys:
        parts = key.split(".")
        if key.startswith("decoder.up_blocks.") and parts[2].isdigit():
            if parts[3] == "resnets" and parts[4].isdigit():
                found.add((int(parts[2]), int(parts[4])))
            elif parts[3] == "upsamplers":
                found.add((int(parts[2]), None))
    order = sorted(found, key=lambda s: (s[0], s[1] is None, s[1] or 0))
    return {slot: u for u, slot in enumerate(order)}


def _plan_to_diffusers(shapes: dict[str, tuple], what: str) -> Plan:
    slots = _original_decoder_slots(shapes)

    def convert(groups: Groups) -> Groups:
        if "u" not in groups:
            return groups
        return {**{k: v for k, v in groups.items() if k != "u"}, **slots[int(groups["u"])]}

    return renamed(_TABLE.rename_all(shapes, True, what, convert))


def _plan_from_diffusers(shapes: dict[str, tuple], what: str) -> Plan:
    slots = _diffusers_decoder_slots(shapes)

    def convert(groups: Groups) -> Groups:
        if "i" not in groups:
            return groups
        slot = (int(groups["i"]), int(groups["r"]) if "r" in groups else None)
        rest = {k: v for k, v in groups.items() if k not in ("i", "r")}
        return {**rest, "u": str(slots[slot])}

    return renamed(_TABLE.rename_all(shapes, False, what, convert))


def plan_original_to_diffusers(shapes: dict[str, tuple]) -> Plan:
    return _plan_to_diffusers(shapes, "Wan2.1 VAE (original layout)")


def plan_diffusers_to_original(shapes: dict[str, tuple]) -> Plan:
    return _plan_from_diffusers(shapes, "Wan2.1 VAE (diffusers AutoencoderKLWan)")


def plan_comfy_to_diffusers(shapes: dict[str, tuple]) -> Plan:
    return _plan_to_diffusers(shapes, "Wan2.1 VAE (ComfyUI layout)")


def plan_diffusers_to_comfy(shapes: dict[str, tuple]) -> Plan:
    return _plan_from_diffusers(shapes, "Wan2.1 VAE (diffusers AutoencoderKLWan)")


def looks_like_original(keys) -> bool:
    """The official Wan2.1 VAE keys (also what Comfy-Org's wan_2.1_vae.safetensors holds)."""
    keys = set(keys)
    return _ORIGINAL_MARKER in keys and _WAN22_MARKER not in keys and "decoder.upsamples.0.residual.0.gamma" in keys


looks_like_comfy = looks_like_original


def looks_like_diffusers(keys) -> bool:
    keys = set(keys)
    return "decoder.mid_block.resnets.0.norm1.gamma" in keys and "decoder.up_blocks.0.resnets.0.norm1.gamma" in keys


def looks_like_wan22_vae(keys) -> bool:
    """The Wan2.2 (TI2V-5B) VAE: same key style, another model. Lets the loader say what the file is."""
    return _WAN22_MARKER in set(keys)


def ignored_original_keys(keys) -> list[str]:
    """Keys of the file that no plan uses on purpose: none for the VAE."""
    return []


ignored_comfy_keys = ignored_original_keys
