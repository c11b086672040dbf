"""Public loading API: any layout in, the same diffusers/transformers modules out, in the precision asked for.

    load_components(source, components=None, device="cpu", weight_dtype="bf16", compute_dtype=None, files=None)
    load_transformer(source, device="cpu", weight_dtype="bf16", compute_dtype=None)

`source`: a folder (Diffusers, original Wan-AI, a ComfyUI models folder or any folder of weight files), one file,
a Hub repo id, or a dict {component: path}. `files` adds or overrides single components. Each module is built on
the meta device from its config and filled tensor by tensor (stream.py); on any error everything loaded so far is
released and one WanLoaderError says what is wrong and what to do.

umT5 tokenizer, first found wins: files["tokenizer"]; the Diffusers folder's tokenizer/; a T5 tokenizer folder
inside the given folder (the original release's google/umt5-xxl/); the `spiece_model` tensor ComfyUI stores in
its text-encoder files; the Hugging Face cache (or Hub) copy of google/umt5-xxl.
"""
from __future__ import annotations

import torch

from .components import COMPONENT_NAMES, WanAnimateComponents
from .configs import (build_empty, check_original_config, clip_image_processor, hints_from_original_config,
                      infer_transformer_config, match_known_config)
from .detect import ANIMATE, Identified
from .errors import MissingComponentError, WanLoaderError, WrongModelError, missing_component_message
from .fp8 import FP8_DTYPES, fp8_linear_names, is_fp8, replace_linears
from .keymaps import Plan, clip as clip_map, renamed, t5 as t5_map, transformer as transformer_map, vae as vae_map
from .resolve import Resolved, prefer_dtype, resolve
from .stream import LoadStats, load_into, meta_shapes, release

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32, **FP8_DTYPES}
KEYMAPS = {"transformer": transformer_map, "vae": vae_map, "text_encoder": t5_map, "image_encoder": clip_map}
FP8_PREFIXES = {"transformer": ("blocks.", "face_adapter."), "text_encoder": ("encoder.block.",)}
# transformers' T5 FFN casts its input to `wo.weight.dtype` before `wo`: an fp8 `wo` would round activations to fp8
FP8_EXCLUDE_SUFFIXES = (".DenseReluDense.wo",)


def parse_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: use one of bf16, fp16, fp32, fp8_e4m3fn, fp8_e5m2") from None


def plan_to_diffusers(component: str, part: Identified) -> Plan:
    keymap = KEYMAPS[component]
    view = part.view
    if part.layout == "diffusers":
        return renamed({k: k for k in view.keys()})
    return getattr(keymap, f"plan_{part.layout}_to_diffusers")(view.shapes())


def ignorable_keys(component: str, part: Identified) -> set[str]:
    keys = part.view.keys()
    if component == "transformer":
        return {k for k in keys if transformer_map.is_ignorable_original_key(k)}
    fn = getattr(KEYMAPS[component], f"ignored_{part.layout}_keys", None)
    return set(fn(keys)) if fn else set()


def component_config(component: str, part: Identified, plan: Plan, res: Resolved) -> dict:
    where = ", ".join(part.files)
    # a Diffusers folder's own config.json wins (its encoders carry transformers names, detected as "comfy" keys)
    if component in res.configs and (part.layout == "diffusers" or component != "transformer"):
        cfg = dict(res.configs[component])
        cls = cfg.get("_class_name")
        if component == "transformer" and cls and cls != "WanAnimateTransformer3DModel":
            raise WrongModelError(f"{where}: the config says {cls}, not WanAnimateTransformer3DModel: this is not "
                                  f"{ANIMATE}. Use the Animate checkpoint (Wan-AI/Wan2.2-Animate-14B-Diffusers).")
        return cfg
    shapes = meta_shapes(plan, part.view)
    if component == "transformer":
        cfg = infer_transformer_config(shapes, hints_from_original_config(res.original_config or {}))
        if res.original_config:
            check_original_config(res.original_config, cfg, where)
        return cfg
    return match_known_config(component, shapes, where)


def _dtypes_for(component: str, weight_dtype: torch.dtype, compute_dtype: torch.dtype, vae_dtype):
    if component == "vae":
        vd = vae_dtype or torch.float32
        return vd, vd
    if component == "image_encoder" and is_fp8(weight_dtype):
        return compute_dtype, compute_dtype
    return weight_dtype, compute_dtype


def load_part(res: Resolved, component: str, device="cpu", weight_dtype=torch.bfloat16, compute_dtype=None,
              per_channel: bool = False, vae_dtype=None, progress=None) -> tuple[torch.nn.Module, LoadStats]:
    """One weights component from a resolved source, as its diffusers/transformers module."""
    weight_dtype = parse_dtype(weight_dtype)
    compute_dtype = parse_dtype(compute_dtype) if compute_dtype else (
        torch.bfloat16 if is_fp8(weight_dtype) else weight_dtype)
    part = res.parts[component]
    plan = plan_to_diffusers(component, part)
    config = component_config(component, part, plan, res)
    wdt, cdt = _dtypes_for(component, weight_dtype, compute_dtype, parse_dtype(vae_dtype) if vae_dtype else None)
    model = build_empty(component, config)
    if is_fp8(wdt) and component in FP8_PREFIXES:
        names = [n for n in fp8_linear_names(model, FP8_PREFIXES[component]) if not n.endswith(FP8_EXCLUDE_SUFFIXES)]
        replace_linears(model, names, wdt, cdt, per_channel)
    stats = load_into(model, plan, part.view, device, wdt, cdt, per_channel, component,
                      ignorable=ignorable_keys(component, part).__contains__, progress=progress)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval().requires_grad_(False), stats


def load_tokenizer(res: Resolved):
    from transformers import AutoTokenizer, T5Tokenizer

    tried = []
    for d in res.tokenizer_dirs:
        try:
            return AutoTokenizer.from_pretrained(d), d
        except Exception as e:  # a broken folder: try the next candidate, report all
            tried.append(f"{d} ({type(e).__name__})")
    text = res.parts.get("text_encoder")
    if text is not None and "spiece_model" in text.view:
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_proto=text.view.get("spiece_model").numpy().tobytes())
        vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
        return T5Tokenizer(vocab=vocab, extra_ids=0), f"spiece_model in {text.files[0]}"
    tried.append("no spiece_model tensor in the text-encoder file")
    try:
        from .hub import UMT5_TOKENIZER_REPO, download
        d = download(UMT5_TOKENIZER_REPO, patterns=["*.json", "spiece.model", "*.txt"])
        return AutoTokenizer.from_pretrained(d), f"{UMT5_TOKENIZER_REPO} ({d})"
    except Exception as e:
        tried.append(f"Hugging Face cache/Hub google/umt5-xxl ({str(e).splitlines()[0][:120]})")
    raise MissingComponentError(
        "umT5 tokenizer not found. Looked in: " + "; ".join(tried) + ". Pass files={'tokenizer': FOLDER} with the "
        "google/umt5-xxl tokenizer, or run `python -m wan_loader download google/umt5-xxl` once with internet.",
        looked=tried, missing=["tokenizer"])


def load_image_processor(res: Resolved, image_encoder_config_size: int | None):
    from transformers import CLIPImageProcessor

    if res.image_processor_dir:
        return CLIPImageProcessor.from_pretrained(res.image_processor_dir), res.image_processor_dir
    size = image_encoder_config_size or 224
    return clip_image_processor(size), f"CLIPImageProcessor for {size}px (built in)"


def check_components(res: Resolved, wanted: list[str]) -> None:
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
        raise WrongModelError(f"{f}: this is {what}, not {ANIMATE}. Use the Wan2.2-Animate-14B weights "
                              "(e.g. Comfy-Org's wan2.2_animate_14B_bf16.safetensors or Wan-AI/Wan2.2-Animate-14B).")
    found = res.found()
    looked = res.looked + [f"{f}: {what}" for f, what, _ in res.others]
    raise MissingComponentError(missing_component_message(missing, found, looked), found, looked, missing)


def load_components(source=None, components=None, device="cpu", weight_dtype="bf16", compute_dtype=None,
                    files: dict | None = None, per_channel: bool = False, vae_dtype=None, progress=None,
                    dtype=None, **component_files) -> WanAnimateComponents:
    """Load the Wan2.2-Animate components from any supported source. See the module docstring.

    `dtype` is an alias of weight_dtype; component paths may also be given as keywords (vae=..., text_encoder=...).
    `progress(done, total)`: per weights component, bytes read so far of that component (a new total = a new part).
    """
    if dtype is not None:
        weight_dtype = dtype
    files = {**(files or {}), **{k: v for k, v in component_files.items() if v}}
    unknown = set(files) - set(COMPONENT_NAMES)
    if unknown:
        raise TypeError(f"unknown component(s) {sorted(unknown)}; known: {', '.join(COMPONENT_NAMES)}")
    wanted = list(components or COMPONENT_NAMES)
    res = resolve(source, files, wanted)
    prefer_dtype(res, parse_dtype(weight_dtype))
    check_components(res, wanted)
    out = WanAnimateComponents()
    loaded: list[torch.nn.Module] = []
    try:
        for name in wanted:
            if name in KEYMAPS:
                model, stats = load_part(res, name, device, weight_dtype, compute_dtype, per_channel, vae_dtype,
                                         progress)
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
                     files: dict | None = None, progress=None):
    """Only the WanAnimateTransformer3DModel (any layout), e.g. for benchmarks and tools."""
    res = resolve(source, files, ["transformer"])
    prefer_dtype(res, parse_dtype(weight_dtype))
    check_components(res, ["transformer"])
    model, _ = load_part(res, "transformer", device, weight_dtype, compute_dtype, per_channel, progress=progress)
    return model


__all__ = ["load_components", "load_transformer", "load_part", "parse_dtype", "WanLoaderError"]
