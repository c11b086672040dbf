"""SAM2 / SAM3-tracker video segmentation through transformers, one frame at a time with bounded memory.

Weights come from a transformers model folder or, for SAM 2 / 2.1, from an original single-file checkpoint
(sam2_checkpoint.py).

`SamVideoTracker` drives transformers' `Sam2VideoModel` (SAM 2 / 2.1) or `Sam3TrackerVideoModel` (SAM 3's tracker:
the same memory-attention tracker on SAM 3's 1008-px perception encoder) frame by frame. transformers' session keeps
every frame's pixels and every tracked frame's outputs (the 1024x1024 mask logits included, ~18 MB per frame at
fp32), so the official whole-chunk propagation holds gigabytes; here each step drops what the model can no longer
read: the frame's pixels, its full-size mask logits, tracked frames older than the memory window
(max(num_maskmem, max_object_pointers_in_encoder) frames) and conditioning frames beyond the MAX_PAST_PROMPTS nearest
behind the current frame. Memory is then constant in the number of frames.

transformers 5.x stores a prompted frame's object pointer as (1, 1, C) when the prompt has several points (no
multimask output), where tracked frames store (1, C), and the next tracked frame fails in torch.cat; the pointer is
flattened to (1, C) after each prompt (what the original SAM2 code keeps).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .sam2_checkpoint import load_sam2_checkpoint
from .segment_prompts import FramePrompt
from .segmenter import PersonSegmenter, SegmentOptions, TrackedMask
from .segmenter_files import DEFAULT_SEGMENTER, resolve_segmenter

OBJECT_ID = 1
MAX_PAST_PROMPTS = 2
PRECISIONS = ("auto", "bfloat16", "float16", "float32")  # auto: bfloat16 on CUDA, float32 on the CPU
# config.json model_type -> family; SAM 3 checkpoints (facebook/sam3) carry the tracker inside a sam3_video config.
FAMILIES = {
    "sam2_video": "sam2", "sam2": "sam2",
    "sam3_tracker_video": "sam3", "sam3_video": "sam3", "sam3_tracker": "sam3", "sam3": "sam3",
}


class SegmenterModelError(ValueError):
    """A segmentation model folder transformers cannot load as a SAM2 / SAM3 video tracker."""


def model_family(folder: str | os.PathLike) -> str:
    """'sam2' or 'sam3' from a transformers model folder's config.json; a clear error for anything else."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise SegmenterModelError(
            f"{folder} has no config.json: it is not a transformers model folder. Use a SAM2/SAM3 folder as the Hub "
            "has it (e.g. facebook/sam2.1-hiera-large, downloaded automatically when picked by name)."
        )
    try:
        model_type = json.loads(config.read_text()).get("model_type", "")
    except (OSError, ValueError) as error:
        raise SegmenterModelError(f"{config} is not readable JSON ({error}); re-download the model") from error
    if model_type not in FAMILIES:
        raise SegmenterModelError(
            f"{folder} holds a '{model_type}' model, not a SAM2 or SAM3 video segmenter (model_type one of "
            f"{', '.join(sorted(FAMILIES))}). Pick a SAM2/SAM3 model such as facebook/sam2.1-hiera-large."
        )
    return FAMILIES[model_type]


def sam2_processor(image_size: int = 1024):
    """SAM 2's processor (square resize, ImageNet mean/std) for weights that come without one (original files)."""
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    size = {"height": image_size, "width": image_size}
    return Sam2VideoProcessor(image_processor=Sam2ImageProcessor(size=size), video_processor=Sam2VideoVideoProcessor(size=size))


def pick_device(device: str = "auto") -> str:
    """'auto' -> cuda when usable, else cpu; 'cuda...' without a usable GPU is an error that says so."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"segmenter device {device!r} asked for, but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return device


class SamVideoTracker:
    """The VideoTracker of PersonSegmenter on a transformers SAM2/SAM3 video model (see the module docstring)."""

    def __init__(self, model, processor, device: str = "cpu"):
        import torch

        self.model = model.eval()
        self.processor = processor
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype
        video = processor.video_processor
        self.size = (int(video.size["height"]), int(video.size["width"]))
        self.mean = torch.tensor(video.image_mean, device=self.device, dtype=torch.float32).view(3, 1, 1) * 255
        self.std = torch.tensor(video.image_std, device=self.device, dtype=torch.float32).view(3, 1, 1) * 255
        config = model.config
        self.memory_frames = max(int(config.num_maskmem), int(config.max_object_pointers_in_encoder))
        self.session = None
        self.frame_hw = (0, 0)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto", dtype: str = "auto") -> SamVideoTracker:
        """A tracker from a transformers SAM2/SAM3 folder or an original SAM 2 checkpoint file; dtype auto: bfloat16
        on CUDA, float32 on the CPU."""
        import torch

        if dtype not in PRECISIONS:
            raise ValueError(f"segmenter precision must be one of {PRECISIONS}, got {dtype!r}")
        device = pick_device(device)
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        if Path(path).is_file():
            model = load_sam2_checkpoint(path)
            return cls(model.to(device, getattr(torch, dtype)), sam2_processor(model.config.image_size), device)
        return cls(*cls._from_folder(path, getattr(torch, dtype), device), device)

    @staticmethod
    def _from_folder(folder: str | os.PathLike, dtype, device: str):
        from safetensors import SafetensorError
        from transformers import Sam2VideoModel, Sam2VideoProcessor, Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

        family = model_family(folder)
        model_cls, processor_cls = ((Sam2VideoModel, Sam2VideoProcessor) if family == "sam2"
                                    else (Sam3TrackerVideoModel, Sam3TrackerVideoProcessor))
        try:
            model = model_cls.from_pretrained(os.fspath(folder), dtype=dtype)
            processor = processor_cls.from_pretrained(os.fspath(folder))
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
            raise SegmenterModelError(
                f"{folder} could not be loaded as a {family.upper()} video segmenter ({type(error).__name__}: {error}). "
                "Re-download the folder (config.json, model.safetensors and the processor files)."
            ) from error
        return model.to(device), processor

    # ------------------------------------------------------------------------------------------- VideoTracker
    def start(self, height: int, width: int) -> None:
        self.frame_hw = (int(height), int(width))
        self.session = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype)
        self.session.video_height, self.session.video_width = self.frame_hw

    def finish(self) -> None:
        self.session = None

    def segment(self, index: int, frame: np.ndarray, prompt: FramePrompt | None = None,
                reverse: bool = False) -> TrackedMask:
        import torch

        session = self.session
        if session is None:
            raise RuntimeError("SamVideoTracker.segment before start()")
        if session.processed_frames is None or index not in session.processed_frames:
            session.add_new_frame(self.pixels(frame), index)
        if prompt is not None:
            self._forget(index)
            self.processor.add_inputs_to_inference_session(
                session, frame_idx=index, obj_ids=OBJECT_ID,
                input_points=[[prompt.points.tolist()]], input_labels=[[[1] * len(prompt.points)]],
                input_boxes=None if prompt.box is None else [[prompt.box.tolist()]],
            )
        with torch.inference_mode():
            out = self.model(inference_session=session, frame_idx=index, reverse=reverse)
            present = bool((out.object_score_logits.float() > 0).any())
            logits = torch.nn.functional.interpolate(out.pred_masks[:1].float(), size=self.frame_hw, mode="bilinear",
                                                     align_corners=False)
            mask = (logits[0, 0] > 0).cpu().numpy()
        self._tidy(index, reverse)
        return TrackedMask(mask, present)

    # ---------------------------------------------------------------------------------------------- helpers
    def pixels(self, frame: np.ndarray):
        """(H, W, 3) uint8 RGB -> the model's normalised (3, S, S) input, resized on the model's device."""
        import torch

        image = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1)[None].float()
        image = torch.nn.functional.interpolate(image, size=self.size, mode="bilinear", align_corners=False,
                                                antialias=True)[0]
        return ((image - self.mean) / self.std).to(self.dtype)

    def _outputs(self) -> dict:
        return self.session.output_dict_per_obj[self.session.obj_id_to_idx(OBJECT_ID)]

    def _forget(self, index: int) -> None:
        """Drop any earlier result for frame `index`, so a prompt there starts a fresh conditioning frame."""
        outputs = self._outputs()
        outputs["cond_frame_outputs"].pop(index, None)
        outputs["non_cond_frame_outputs"].pop(index, None)
        self.session.frames_tracked_per_obj[self.session.obj_id_to_idx(OBJECT_ID)].pop(index, None)

    def _tidy(self, index: int, reverse: bool) -> None:
        """Keep only what the next frames can read (see the module docstring)."""
        session = self.session
        session.processed_frames.pop(index, None)
        outputs = self._outputs()
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            stored = outputs[kind].get(index)
            if stored is not None:
                stored.pop("high_res_masks", None)
                pointer = stored.get("object_pointer")
                if pointer is not None and pointer.dim() > 2:
                    stored["object_pointer"] = pointer.reshape(-1, pointer.shape[-1])
        tracked = outputs["non_cond_frame_outputs"]
        for old in [i for i in tracked if abs(i - index) > self.memory_frames]:
            del tracked[old]
        prompts = outputs["cond_frame_outputs"]
        behind = sorted((i for i in prompts if (i > index if reverse else i < index)), key=lambda i: abs(i - index))
        for old in behind[MAX_PAST_PROMPTS:]:
            del prompts[old]

    def state_frames(self) -> dict[str, int]:
        """How many frames the session holds, per kind (what stays bounded)."""
        outputs = self._outputs() if self.session is not None and self.session.obj_ids else None
        return {
            "pixels": len(self.session.processed_frames or {}) if self.session is not None else 0,
            "tracked": len(outputs["non_cond_frame_outputs"]) if outputs else 0,
            "prompted": len(outputs["cond_frame_outputs"]) if outputs else 0,
        }


def load_segmenter(source: str | os.PathLike = DEFAULT_SEGMENTER, search_dirs: Sequence[str | os.PathLike] = (),
                   device: str = "auto", dtype: str = "auto", options: SegmentOptions | None = None,
                   allow_download: bool = True, progress=None) -> PersonSegmenter:
    """A PersonSegmenter on the SAM2/SAM3 model found for `source` (see segmenter_files.resolve_segmenter)."""
    folder = resolve_segmenter(source, search_dirs, allow_download, progress)
    return PersonSegmenter(SamVideoTracker.load(folder, device, dtype), options)
