"""Write components in any layout (Diffusers folder, original Wan-AI release, ComfyUI single files), streaming.

A component to write is a `Weights`: its diffusers-named shapes and a getter (from a module in memory, or from a
file through its key map). Tensors are produced one at a time and written straight into the output file, whose
header is computed up front from shapes alone, so converting a 34 GB model never holds it in memory. Files are
written as `<name>.partial` and renamed when complete; a failed write removes what this call wrote.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .dtypes import dtype_name, is_fp8, parse_dtype
from .io.readers import SAFETENSORS_DTYPES, TEST_MODEL_KEY, TEST_MODEL_VALUE, is_test_model, tensor_bytes
from .keymaps import KEYMAPS, Plan, Recipe, keymap, meta_shapes
from .model.configs import TRANSFORMER_CLASSES, original_config_json
from .fp8 import dequantize, quantize_fp8
from .int8_convrot import dequantize_int8, read_config

_ST_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}
SHARD_BYTES = 10 * 1024 ** 3
COMFY_FOLDERS = {"transformer": "diffusion_models", "vae": "vae", "text_encoder": "text_encoders",
                 "image_encoder": "clip_vision"}
ORIGINAL_FILES = {"vae": "Wan2.1_VAE.pth", "text_encoder": "models_t5_umt5-xxl-enc-bf16.pth",
                  "image_encoder": "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"}
DIFFUSERS_CLASSES = {"transformer": ["diffusers", "WanAnimateTransformer3DModel"],
                     "vae": ["diffusers", "AutoencoderKLWan"], "text_encoder": ["transformers", "UMT5EncoderModel"],
                     "tokenizer": ["transformers", "T5TokenizerFast"],
                     "image_encoder": ["transformers", "CLIPVisionModel"],
                     "image_processor": ["transformers", "CLIPImageProcessor"],
                     "scheduler": ["diffusers", "UniPCMultistepScheduler"]}
# 2-D projection weights kept in fp8 in scaled files (as ComfyUI / Kijai quantize them)
_FP8_WEIGHT = re.compile(r"^(blocks\.|face_adapter\.|encoder\.block\.).*\.weight$")
_FP8_EXCLUDE = ("norm", "modulation", "relative_attention_bias", "embedding")


@dataclass
class Weights:
    """One component's tensors under diffusers names."""
    component: str
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, torch.dtype]
    get: Callable[[str], torch.Tensor]
    config: dict
    distilled: bool = False  # Wan-Animate-2's distilled variant: recorded in the files' metadata / index
    test_model: bool = False  # from the tiny test models: its files are marked as such (io.readers.TEST_MODEL_KEY)

    @property
    def family(self) -> str:
        return "animate2" if self.config.get("_class_name") == TRANSFORMER_CLASSES["animate2"] else "animate"

    @property
    def metadata(self) -> dict[str, str]:
        """What every file of these weights says about itself (the tiny test models' mark)."""
        return {TEST_MODEL_KEY: TEST_MODEL_VALUE} if self.test_model else {}


def weights_from_module(component: str, module: torch.nn.Module) -> Weights:
    sd = module.state_dict()
    seen, keep = set(), {}
    for k, v in sd.items():  # drop tied aliases (umT5 encoder.embed_tokens == shared)
        if v.data_ptr() in seen and v.numel():
            continue
        seen.add(v.data_ptr())
        keep[k] = v
    config = dict(module.config) if component in ("transformer", "vae") else module.config.to_dict()
    if component == "transformer":
        config["_class_name"] = type(module).__name__
    return Weights(component, {k: tuple(v.shape) for k, v in keep.items()}, {k: v.dtype for k, v in keep.items()},
                   lambda k: keep[k], config, test_model=getattr(module, TEST_MODEL_KEY, False))


def weights_from_part(component: str, part, plan: Plan, config: dict) -> Weights:
    """A component read from files through its plan to diffusers names (fp8-scaled and ComfyUI int8 / ConvRot
    weights dequantized)."""
    view = part.view
    scale = getattr(view, "scale", lambda k: None)

    def quantized(k) -> bool:
        return is_fp8(view.dtype(k)) or (view.dtype(k) == torch.int8 and scale(k) is not None)

    def raw(k):
        t = view.get(k)
        if is_fp8(t.dtype):
            return dequantize(t, scale(k), torch.float32)
        if quantized(k):
            return dequantize_int8(t, scale(k), read_config(view.quant_marker(k)))
        return t

    shapes = meta_shapes(plan, view)
    dtypes = {}
    for t, r in plan.items():
        dtypes[t] = torch.float32 if any(quantized(k) for k in r.sources) else (
            view.dtype(r.sources[0]) if r.sources else torch.float32)
    return Weights(component, shapes, dtypes, lambda k: plan[k].build(raw), config, test_model=is_test_model(view))


def _out_plan(w: Weights, layout: str) -> Plan:
    if layout == "diffusers":
        return {k: Recipe((k,)) for k in w.shapes}
    return getattr(keymap(w.component, w.family), f"plan_diffusers_to_{layout}")(w.shapes)


def _is_fp8_weight(key: str, shape) -> bool:
    return len(shape) == 2 and bool(_FP8_WEIGHT.match(key)) and not any(x in key for x in _FP8_EXCLUDE)


def layout_tensors(w: Weights, layout: str, dtype: torch.dtype, prefix: str = "", per_channel: bool = False):
    """[(key, shape, dtype, produce)] for the component in `layout`; fp8 adds ComfyUI's scale_weight + marker."""
    plan = _out_plan(w, layout)

    def fake(k):
        return torch.empty(w.shapes[k], dtype=w.dtypes[k] if not is_fp8(w.dtypes[k]) else torch.float32,
                           device="meta")

    items = []
    for target, recipe in plan.items():
        meta = recipe.build(fake)
        shape = tuple(meta.shape)
        if not meta.dtype.is_floating_point:
            items.append((prefix + target, shape, meta.dtype, lambda r=recipe: r.build(w.get)))
            continue
        if is_fp8(dtype):
            if _is_fp8_weight(target, shape):
                cache: dict = {}

                def produce_q(r=recipe, cache=cache):
                    q, cache["s"] = quantize_fp8(r.build(w.get), per_channel, dtype)
                    return q

                items.append((prefix + target, shape, dtype, produce_q))
                stem = target[: -len("weight")]
                items.append((prefix + stem + "scale_weight", (shape[0],) if per_channel else (), torch.float32,
                              lambda cache=cache: cache.pop("s")))
                continue
            out_dtype = torch.bfloat16
        else:
            out_dtype = dtype
        items.append((prefix + target, shape, out_dtype, lambda r=recipe, d=out_dtype: r.build(w.get).to(d)))
    if is_fp8(dtype) and any(d == dtype for _, _, d, _ in items):
        items.append((prefix + "scaled_fp8", (0,), dtype, lambda: torch.empty(0, dtype=dtype)))
    return items


class Written:
    """Paths written by one call; removed again if the call fails."""

    def __init__(self):
        self.paths: list[Path] = []

    def add(self, p: Path) -> Path:
        self.paths.append(Path(p))
        return Path(p)

    def rollback(self) -> None:
        for p in reversed(self.paths):
            for q in (p, Path(str(p) + ".partial")):
                if q.is_file():
                    q.unlink()


def write_safetensors(path: Path, items, metadata: dict | None = None) -> int:
    """Stream [(key, shape, dtype, produce)] into one safetensors file; returns bytes written."""
    header, offset = {}, 0
    for key, shape, dtype, _ in items:
        n = dtype.itemsize
        for d in shape:
            n *= d
        header[key] = {"dtype": _ST_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = Path(str(path) + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for key, shape, dtype, produce in items:
            t = produce()
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise RuntimeError(f"{key}: produced {tuple(t.shape)} {t.dtype}, header says {shape} {dtype}")
            t = t.detach().to("cpu").contiguous()
            if t.numel():
                f.write(tensor_bytes(t))
    os.replace(tmp, path)
    return offset


def write_sharded(folder: Path, stem: str, items, written: Written, shard_bytes: int = SHARD_BYTES,
                  force_index: bool = False, metadata: dict | None = None) -> None:
    """`stem.safetensors`, or `stem-0000i-of-0000n.safetensors` + `stem.safetensors.index.json` when large."""
    shards, cur, size = [], [], 0
    for it in items:
        n = it[2].itemsize
        for d in it[1]:
            n *= d
        if cur and size + n > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += n
    shards.append(cur)
    if len(shards) == 1 and not force_index:
        write_safetensors(written.add(folder / f"{stem}.safetensors"), shards[0], metadata)
        return
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        name = f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        total += write_safetensors(written.add(folder / name), shard, metadata)
        weight_map.update({k: name for k, *_ in shard})
    index = written.add(folder / f"{stem}.safetensors.index.json")
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def write_torch(path: Path, items, written: Written, metadata: dict | None = None) -> None:
    """An original-release style .pth (a plain state dict; the original VAE/T5/CLIP files are .pth); `metadata`
    becomes string entries beside the tensors."""
    sd = {k: produce() for k, _, _, produce in items} | dict(metadata or {})
    tmp = Path(str(written.add(path)) + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, tmp)
    os.replace(tmp, path)


def save_config(w: Weights, folder: Path, written: Written) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in w.config.items() if not k.startswith("_") or k == "_class_name"}
    if w.component == "transformer":
        cfg["_class_name"] = TRANSFORMER_CLASSES[w.family]
    elif w.component == "vae":
        cfg["_class_name"] = "AutoencoderKLWan"
    else:
        from transformers import CLIPVisionConfig, UMT5Config
        conf_cls = UMT5Config if w.component == "text_encoder" else CLIPVisionConfig
        conf = conf_cls(**{k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version")})
        conf.architectures = [DIFFUSERS_CLASSES[w.component][1]]
        conf.save_pretrained(folder)
        written.add(folder / "config.json")
        return
    import diffusers
    cfg["_diffusers_version"] = diffusers.__version__
    written.add(folder / "config.json").write_text(json.dumps(cfg, indent=2, default=list))


def write_component(w: Weights, dst: Path, layout: str, dtype: torch.dtype, written: Written,
                    prefix: str = "", per_channel: bool = False) -> list[Path]:
    """Write one component in `layout` under the layout's conventional place in `dst`."""
    dst = Path(dst)
    if layout == "diffusers":
        if is_fp8(dtype):
            raise ValueError("the Diffusers layout has no fp8 format: use --to comfy for fp8 files")
        folder = dst / w.component
        save_config(w, folder, written)
        stem = "diffusion_pytorch_model" if w.component in ("transformer", "vae") else "model"
        write_sharded(folder, stem, layout_tensors(w, layout, dtype), written, metadata=w.metadata)
        return [folder]
    if layout == "comfy":
        name = {"transformer": "wan2.2_animate_14B", "vae": "wan_2.1_vae", "text_encoder": "umt5_xxl",
                "image_encoder": "clip_vision_h"}[w.component]
        metadata = dict(w.metadata)
        if w.component == "transformer" and w.family == "animate2":
            name = "wan_animate_2_distill" if w.distilled else "wan_animate_2"
            metadata.update(comfy_animate2_metadata(w))
        suffix = {"fp8_e4m3fn": "fp8_e4m3fn_scaled", "fp8_e5m2": "fp8_e5m2_scaled"}.get(dtype_name(dtype),
                                                                                       dtype_name(dtype))
        path = dst / COMFY_FOLDERS[w.component] / f"{name}_{suffix}.safetensors"
        pre = prefix if w.component == "transformer" else ""
        write_safetensors(written.add(path), layout_tensors(w, "comfy", dtype, pre, per_channel), metadata)
        return [path]
    if layout == "original":
        if w.component == "transformer":
            write_sharded(dst, "diffusion_pytorch_model", layout_tensors(w, "original", dtype), written,
                          force_index=True, metadata=w.metadata)
            config = original_config_json(w.config)
            if w.distilled:
                config["distilled"] = True
            written.add(dst / "config.json").write_text(json.dumps(config, indent=2))
            return [dst]
        path = dst / ORIGINAL_FILES[w.component]
        write_torch(path, layout_tensors(w, "original", dtype), written, w.metadata)
        return [path]
    raise ValueError(f"unknown layout {layout!r}: use diffusers, original or comfy")


def comfy_animate2_metadata(w: Weights) -> dict:
    """What Comfy-Org's Animate-2 files say about themselves: ComfyUI's `config` entry (model_type, and the head
    count, which no weight shape tells) and, for the distilled file, a title naming it."""
    config = {"transformer": {"model_type": "animate2", "num_heads": w.config["num_heads"]}}
    title = "Wan2.2-Animate-2-14B" + (" distill" if w.distilled else "")
    return {"config": json.dumps(config), "modelspec.title": title}


def write_modular_index(dst: Path, written: Written, distilled: bool, present) -> None:
    """modular_model_index.json of a Wan-Animate-2 Diffusers folder (components point at the local subfolders)."""
    import diffusers
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0) if distilled else DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++", use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=5.0)
    scheduler.save_pretrained(dst / "scheduler")
    written.add(dst / "scheduler")
    blocks = "WanAnimate2DistilledBlocks" if distilled else "WanAnimate2Blocks"
    index = {"_blocks_class_name": blocks, "_class_name": "WanAnimate2ModularPipeline",
             "_diffusers_version": diffusers.__version__}
    classes = {**DIFFUSERS_CLASSES, "transformer": ["diffusers", TRANSFORMER_CLASSES["animate2"]],
               "scheduler": ["diffusers", type(scheduler).__name__]}
    for name in ("image_encoder", "scheduler", "text_encoder", "tokenizer", "transformer", "vae"):
        if name in present or name == "scheduler":
            index[name] = [*classes[name], {"pretrained_model_name_or_path": ".", "subfolder": name,
                                            "type_hint": classes[name]}]
    written.add(dst / "modular_model_index.json").write_text(json.dumps(index, indent=2))


def write_extras(dst: Path, layout: str, tokenizer, image_processor, written: Written, components,
                 family: str = "animate", distilled: bool = False) -> None:
    """Tokenizer, image processor, scheduler and model_index.json where each layout keeps them."""
    dst = Path(dst)
    if layout == "diffusers" and family == "animate2":
        if tokenizer is not None:
            tokenizer.save_pretrained(dst / "tokenizer")
            written.add(dst / "tokenizer")
        write_modular_index(dst, written, distilled, [*components, *(["tokenizer"] if tokenizer is not None else [])])
    elif layout == "diffusers":
        from diffusers import UniPCMultistepScheduler
        import diffusers
        if tokenizer is not None:
            tokenizer.save_pretrained(dst / "tokenizer")
            written.add(dst / "tokenizer")
        if image_processor is not None:
            image_processor.save_pretrained(dst / "image_processor")
        UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0,
                                num_train_timesteps=1000).save_pretrained(dst / "scheduler")
        index = {"_class_name": "WanAnimatePipeline", "_diffusers_version": diffusers.__version__}
        for name in ("image_encoder", "image_processor", "scheduler", "text_encoder", "tokenizer", "transformer",
                     "vae"):
            present = name == "scheduler" or name in components or (name == "tokenizer" and tokenizer is not None) \
                or (name == "image_processor" and image_processor is not None)
            index[name] = DIFFUSERS_CLASSES[name] if present else [None, None]
        written.add(dst / "model_index.json").write_text(json.dumps(index, indent=2))
    elif layout == "original" and tokenizer is not None:
        tokenizer.save_pretrained(dst / "google" / "umt5-xxl")
    elif layout == "comfy" and tokenizer is not None:
        tokenizer.save_pretrained(dst / "text_encoders" / "umt5_tokenizer")


def write_components(components, dst, layout: str, dtype="fp32", prefix: str = "", per_channel: bool = False) -> Path:
    """Write in-memory WanAnimateComponents (e.g. the tiny ones) in `layout`."""
    dtype = parse_dtype(dtype)
    dst = Path(dst)
    written = Written()
    names = []
    try:
        for name in KEYMAPS:
            module = getattr(components, name)
            if module is None:
                continue
            names.append(name)
            weights = weights_from_module(name, module)
            weights.distilled = components.distilled
            write_component(weights, dst, layout, dtype, written, prefix, per_channel)
        write_extras(dst, layout, components.tokenizer, components.image_processor, written, names,
                     components.family, components.distilled)
    except BaseException:
        written.rollback()
        raise
    return dst
