"""Public loading API: any layout in, the same diffusers/transformers modules out, in the precision asked for.

    load_components(source, components=None, device="cpu", weight_dtype="bf16", compute_dtype=None, files=None,
                    int8_weights="dequantize")
    load_transformer(source, device="cpu", weight_dtype="bf16", compute_dtype=None, int8_weights="dequantize")

`source`: a folder (Diffusers, original Wan-AI, a ComfyUI models folder or any folder of weight files), one file,
a Hub repo id, or a dict {component: path}. `files` adds or overrides single components. Each module is built on
the meta device from its config and filled tensor by tensor (io/stream.py); on any error everything loaded so far is
released and one WanLoaderError says what is wrong and what to do.
The tokenizer and image processor come from processors.py.
`int8_weights`: what happens to a transformer's int8 weights (Comfy-Org's int8 ConvRot repack): "dequantize" them to
the weight dtype at load, "keep" them int8 (int8_convrot.Int8Linear), or an int8_convrot.Int8Weights that the engine
chose for a device (wan_animate.engine.accel.choose_int8_weights: "auto" keeps them where a fast int8 kernel runs).
An fp8 weight_dtype re-quantises them to fp8 instead.
"""
from __future__ import annotations

import torch

from .discovery.resolve import Resolved, prefer_dtype, resolve
from .dtypes import is_fp8, parse_dtype
from .errors import MissingComponentError, WanLoaderError, WrongModelError, missing_component_message
from .io.stream import LoadStats, load_into, release
from .keymaps import KEYMAPS, ignorable_keys, plan_to_diffusers
from .model.components import COMPONENT_NAMES, WanAnimateComponents
from .model.configs import build_empty, component_config
from .model.detect import FAMILY_NAMES
from .fp8 import FP8_LINEAR_PREFIXES, fp8_linear_names, replace_linears
from .int8_convrot import Int8Weights, keep_int8_linears
from .processors import load_image_processor, load_tokenizer


def _dtypes_for(component: str, weight_dtype: torch.dtype, compute_dtype: torch.dtype, vae_dtype):
    if component == "vae":
        vd = vae_dtype or torch.float32
        return vd, vd
    if component == "image_encoder" and is_fp8(weight_dtype):
        return compute_dtype, compute_dtype
    return weight_dtype, compute_dtype


def load_part(res: Resolved, component: str, device="cpu", weight_dtype=torch.bfloat16, compute_dtype=None,
              per_channel: bool = False, vae_dtype=None, progress=None,
              int8_weights: Int8Weights | str = "dequantize") -> tuple[torch.nn.Module, LoadStats]:
    """One weights component from a resolved source, as its diffusers/transformers module."""
    int8 = Int8Weights.parse(int8_weights)
    weight_dtype = parse_dtype(weight_dtype)
    compute_dtype = parse_dtype(compute_dtype) if compute_dtype else (
        torch.bfloat16 if is_fp8(weight_dtype) else weight_dtype)
    part = res.parts[component]
    plan = plan_to_diffusers(component, part)
    config = component_config(component, part, plan, res)
    wdt, cdt = _dtypes_for(component, weight_dtype, compute_dtype, parse_dtype(vae_dtype) if vae_dtype else None)
    model = build_empty(component, config)
    if is_fp8(wdt) and component in FP8_LINEAR_PREFIXES:
        replace_linears(model, fp8_linear_names(model, component), wdt, cdt, per_channel)
    elif component == "transformer":  # the DiT is what Comfy-Org's int8 (ConvRot) repacks quantise
        keep_int8_linears(model, plan, part.view, int8, cdt, part.view.describe())
    stats = load_into(model, plan, part.view, device, wdt, cdt, per_channel, component,
                      ignorable=ignorable_keys(component, part).__contains__, progress=progress)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval().requires_grad_(False), stats


MODELS = (None, "animate", "animate2")
RELEASES = {"animate": "the Wan2.2-Animate-14B weights (e.g. Comfy-Org's wan2.2_animate_14B_bf16.safetensors or "
                       "Wan-AI/Wan2.2-Animate-14B)",
            "animate2": "the Wan2.2-Animate-2-14B weights (e.g. Comfy-Org's wan_animate_2_bf16.safetensors or "
                        "Wan-AI/Wan2.2-Animate-2-14B-Diffusers)"}


def check_family(res: Resolved, model: str | None) -> None:
    """Animate-2 weights where Animate-14B is required, or the reverse, is a WrongModelError naming both."""
    part = res.parts.get("transformer")
    if model is None or part is None or part.family == model:
        return
    raise WrongModelError(f"{', '.join(part.files)}: this is {part.model} ({FAMILY_NAMES[part.family]}), but "
                          f"{FAMILY_NAMES[model]} is required here. Use {RELEASES[model]}, or the nodes/command "
                          f"for {FAMILY_NAMES[part.family]}.")


def check_components(res: Resolved, wanted: list[str], model: str | None = None) -> None:
    """Raise one clear error when a wanted weights component is missing or only another model was found."""
    weights = [c for c in wanted if c in KEYMAPS]
    missing = [c for c in weights if c not in res.parts]
    if not missing:
        return
    wrong = [(f, what) for f, what, comp in res.others if comp in missing]
    if not wrong and not res.parts and "transformer" in missing:  # only unrecognised files, e.g. a FLUX model
        wrong = [(f, what) for f, what, comp in res.others if comp == "unknown"]
    if wrong:
        f, what = wrong[0]
        family = model or "animate"
        raise WrongModelError(f"{f}: this is {what}, not {FAMILY_NAMES[family]}. Use {RELEASES[family]}.")
    found = res.found()
    looked = res.looked + [f"{f}: {what}" for f, what, _ in res.others]
    raise MissingComponentError(missing_component_message(missing, found, looked), found, looked, missing)


def load_components(source=None, components=None, device="cpu", weight_dtype="bf16", compute_dtype=None,
                    files: dict | None = None, per_channel: bool = False, vae_dtype=None, progress=None,
                    dtype=None, model: str | None = None, int8_weights: Int8Weights | str = "dequantize",
                    **component_files) -> WanAnimateComponents:
    """Load the Wan2.2-Animate components from any supported source. See the module docstring.

    `dtype` is an alias of weight_dtype; component paths may also be given as keywords (vae=..., text_encoder=...).
    `model`: None takes what the weights are (Animate-14B or Wan-Animate-2); "animate" / "animate2" requires that
    one (WrongModelError otherwise); "animate2" also takes an unmarked Wan2.1-I2V-shaped file as Animate-2.
    `progress(done, total)`: a Hub download when `source` is a repo id, then per weights component, bytes read so far
    of that component (a new total = a new part).
    `int8_weights`: see the module docstring.
    """
    int8_weights = Int8Weights.parse(int8_weights)
    if dtype is not None:
        weight_dtype = dtype
    files = {**(files or {}), **{k: v for k, v in component_files.items() if v}}
    unknown = set(files) - set(COMPONENT_NAMES)
    if unknown:
        raise TypeError(f"unknown component(s) {sorted(unknown)}; known: {', '.join(COMPONENT_NAMES)}")
    if model not in MODELS:
        raise ValueError(f"model={model!r}: use None (whatever the weights are), 'animate' or 'animate2'.")
    wanted = list(components or COMPONENT_NAMES)
    res = resolve(source, files, wanted, model, progress)
    prefer_dtype(res, parse_dtype(weight_dtype))
    check_components(res, wanted, model)
    check_family(res, model)
    out = WanAnimateComponents(distilled=bool(res.parts.get("transformer") and res.parts["transformer"].distilled))
    loaded: list[torch.nn.Module] = []
    try:
        for name in wanted:
            if name in KEYMAPS:
                model, stats = load_part(res, name, device, weight_dtype, compute_dtype, per_channel, vae_dtype,
                                         progress, int8_weights)
                loaded.append(model)
                setattr(out, name, model)
                out.sources[name] = f"{res.parts[name].model}, {res.parts[name].layout} layout: " + \
                    ", ".join(res.parts[name].files)
            elif name == "tokenizer":
                out.tokenizer, out.sources["tokenizer"] = load_tokenizer(res)
            elif name == "image_processor":
                size = getattr(getattr(out.image_encoder, "config", None), "image_size", None)
                if size is None and "image_encoder" in res.parts:
                    size = res.configs.get("image_encoder", {}).get("image_size")
                out.image_processor, out.sources["image_processor"] = load_image_processor(res, size)
    except BaseException:
        for model in loaded:
            release(model)
        raise
    return out


def load_transformer(source, device="cpu", weight_dtype="bf16", compute_dtype=None, per_channel: bool = False,
                     files: dict | None = None, progress=None, model: str | None = None,
                     int8_weights: Int8Weights | str = "dequantize"):
    """Only the transformer (any layout), e.g. for benchmarks and tools; `model` as in load_components."""
    res = resolve(source, files, ["transformer"], model)
    prefer_dtype(res, parse_dtype(weight_dtype))
    check_components(res, ["transformer"], model)
    check_family(res, model)
    model, _ = load_part(res, "transformer", device, weight_dtype, compute_dtype, per_channel, progress=progress,
                         int8_weights=int8_weights)
    return model


__all__ = ["load_components", "load_transformer", "load_part", "WanLoaderError"]
