"""`inspect`: what a file or folder holds — layout, components found and missing, Animate or which other model."""
from __future__ import annotations

from pathlib import Path

from .discovery.resolve import prefer_dtype, resolve
from .dtypes import dominant_dtype
from .int8_convrot import has_int8_weights
from .model.components import COMPONENT_NAMES
from .model.detect import count_parameters


def inspect(path, files: dict | None = None, model: str | None = None) -> dict:
    """A JSON-able description of `path` (a file, folder or Hub repo id). Reads headers only.

    `family` says which model the transformer is: "animate" (Wan2.2-Animate-14B) or "animate2" (Wan-Animate-2,
    `distilled` for its few-step variant); model="animate2" reads an unmarked Wan2.1-I2V-shaped file as Animate-2."""
    res = resolve(str(path) if isinstance(path, Path) else path, files, model=model)
    prefer_dtype(res, "bf16")
    components = {}
    for name, part in res.parts.items():
        components[name] = {
            "model": part.model, "layout": part.layout, "files": part.files, "prefix": part.prefix,
            "dtype": dominant_dtype(part.view), "scaled_fp8": part.scaled_fp8 and not has_int8_weights(part.view),
            "int8": has_int8_weights(part.view),
            "parameters": count_parameters(part.view), "tensors": len(part.view.keys()),
        }
    if res.tokenizer_dirs or (res.parts.get("text_encoder") and "spiece_model" in res.parts["text_encoder"].view):
        components["tokenizer"] = {"files": res.tokenizer_dirs or ["spiece_model tensor in the text encoder"]}
    if res.image_processor_dir:
        components["image_processor"] = {"files": [res.image_processor_dir]}
    layouts = sorted({c["layout"] for c in components.values() if "layout" in c})
    if res.diffusers_root:
        layout = "diffusers"
    elif len(layouts) == 1:
        layout = layouts[0]
    elif "comfy" in layouts and set(layouts) <= {"comfy", "original"}:
        layout = "comfy"  # ComfyUI's VAE file keeps the original key names
    else:
        layout = "mixed" if layouts else "unknown"
    others = [{"file": f, "model": what} for f, what, _ in res.others]
    transformer = res.parts.get("transformer")
    wrong = [o for o, (_, _, comp) in zip(others, res.others) if comp == "transformer"]
    family = transformer.family if transformer is not None else None
    if transformer is not None:
        is_animate, model = True, transformer.model
    elif wrong:
        is_animate, model = False, wrong[0]["model"]
    else:
        is_animate = None  # no transformer here: nothing to say either way
        model = "no transformer found" if res.parts else (others[0]["model"] if others else "no weights found")
    present = [c for c in COMPONENT_NAMES if c in components]
    return {
        "path": str(path), "layout": layout, "model": model, "is_animate": is_animate, "family": family,
        "distilled": bool(transformer is not None and transformer.distilled),
        "dtype": components.get("transformer", next(iter(components.values()), {})).get("dtype"),
        "parameters": sum(c.get("parameters", 0) for c in components.values()),
        "components": components, "found": present,
        "missing": [c for c in COMPONENT_NAMES if c not in components and not (c == "image_processor" and
                                                                             "image_encoder" in components)],
        "looked": res.looked, "other_files": others,
    }


def format_report(info: dict) -> str:
    lines = [f"{info['path']}", f"  model:      {info['model']}", f"  is_animate: {info['is_animate']}",
             f"  family:     {info['family']}{' (distilled)' if info['distilled'] else ''}",
             f"  layout:     {info['layout']}", f"  dtype:      {info['dtype']}",
             f"  parameters: {_count(info['parameters'])}", "  components:"]
    for name, c in info["components"].items():
        if "model" in c:
            scaled = ", int8 (ComfyUI int8 / ConvRot)" if c["int8"] else ", scaled fp8" if c["scaled_fp8"] else ""
            lines.append(f"    {name:<15} {c['model']} [{c['layout']}, {c['dtype']}{scaled}, "
                         f"{_count(c['parameters'])}] {', '.join(c['files'])}")
        else:
            lines.append(f"    {name:<15} {', '.join(c['files'])}")
    lines.append("  missing:    " + (", ".join(info["missing"]) or "nothing"))
    lines.append("  looked in:  " + "; ".join(info["looked"]))
    for o in info["other_files"]:
        lines.append(f"  not used:   {o['file']}: {o['model']}")
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"
