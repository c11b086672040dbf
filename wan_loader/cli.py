"""`python -m wan_loader` (also the `wan-loader` script): inspect, convert, download, tiny."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .conversion import convert
from .discovery.hub import DIFFUSERS_REPO, download
from .dtypes import DTYPE_NAMES
from .errors import WanLoaderError
from .inspection import format_report, inspect
from .testing.int8_files import write_int8_convrot
from .testing.tiny import tiny_animate2_components, tiny_components
from .writers import write_components


def _inspect(args) -> int:
    info = inspect(args.path, model=args.model)
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    if info["is_animate"] is False:
        return 3  # another model than Wan2.2-Animate
    return 0 if info["found"] else 1  # 1: no weights found


def _convert(args) -> int:
    dst = convert(args.src, args.dst, args.to, args.dtype, prefix=args.prefix, per_channel=args.per_channel,
                  model=args.model)
    print(f"wrote {args.to} layout to {dst}")
    return 0


def _download(args) -> int:
    path = download(args.repo_id or DIFFUSERS_REPO, args.dir, args.components)
    print(path)
    return 0


def _tiny(args) -> int:
    if Path(args.dir).exists() and not Path(args.dir).is_dir():
        raise ValueError(f"{args.dir} is a file: give the folder to write the tiny model into (new or existing).")
    if args.model == "animate2":
        components = tiny_animate2_components(args.seed)
        components.distilled = args.distilled
        what = "Wan2.2-Animate-2" + (" distilled" if args.distilled else "")
    else:
        components, what = tiny_components(args.seed), "Wan2.2-Animate-14B"
    if args.int8_convrot and (args.model != "animate2" or args.layout != "comfy"):
        raise ValueError("--int8-convrot writes Comfy-Org's int8 ConvRot repack: use it with --model animate2 "
                         "--layout comfy.")
    dst = write_components(components, args.dir, args.layout, args.dtype,
                           prefix="model.diffusion_model." if args.prefix else "")
    if args.int8_convrot:
        source = next((Path(dst) / "diffusion_models").glob("wan_animate_2*.safetensors"))
        name = "wan_animate_2_distill_int8_convrot" if args.distilled else "wan_animate_2_int8_convrot"
        write_int8_convrot(source, source.with_name(f"{name}.safetensors"))
        source.unlink()
        what += " int8 ConvRot"
    print(f"wrote tiny random {what} ({args.layout}, {args.dtype}) to {dst}")
    return 0


ANIMATE2_HELP = "read an unmarked Wan2.1-I2V-shaped transformer as Wan-Animate-2 (same weights layout)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wan_loader",
                                description="Find, inspect, convert and download Wan2.2-Animate-14B weights.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("inspect", help="what a file/folder/repo holds (layout, components, Animate or not)")
    s.add_argument("path")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.add_argument("--model", choices=["animate2"], default=None, help=ANIMATE2_HELP)
    s.set_defaults(fn=_inspect)
    s = sub.add_parser("convert", help="write a copy in another layout/dtype")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("--to", required=True, choices=["diffusers", "comfy", "original"])
    s.add_argument("--dtype", choices=DTYPE_NAMES, default=None, help="default: the source's dtype")
    s.add_argument("--prefix", default="", help="comfy: key prefix of the transformer, e.g. model.diffusion_model.")
    s.add_argument("--per-channel", action="store_true", help="fp8: one scale per output channel")
    s.add_argument("--model", choices=["animate2"], default=None, help=ANIMATE2_HELP)
    s.set_defaults(fn=_convert)
    s = sub.add_parser("download", help="download the needed files of a Hub repo")
    s.add_argument("repo_id", nargs="?", default=None, help="default Wan-AI/Wan2.2-Animate-14B-Diffusers")
    s.add_argument("--dir", default=None, help="target folder (default: the Hugging Face cache)")
    s.add_argument("--components", nargs="*", default=None,
                   help="only these: transformer vae text_encoder tokenizer image_encoder image_processor")
    s.set_defaults(fn=_download)
    s = sub.add_parser("tiny", help="write a tiny random Wan2.2-Animate in a layout (tests, demos)")
    s.add_argument("dir")
    s.add_argument("--layout", required=True, choices=["diffusers", "original", "comfy"])
    s.add_argument("--dtype", choices=DTYPE_NAMES, default="fp32")
    s.add_argument("--prefix", action="store_true", help="comfy: keys under model.diffusion_model.")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--model", choices=["animate", "animate2"], default="animate",
                   help="animate: Wan2.2-Animate-14B; animate2: Wan2.2-Animate-2-14B")
    s.add_argument("--distilled", action="store_true", help="animate2: mark it as the distilled variant")
    s.add_argument("--int8-convrot", action="store_true",
                   help="animate2, comfy: the transformer as Comfy-Org's int8 ConvRot repack (block Linears in int8)")
    s.set_defaults(fn=_tiny)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (WanLoaderError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
