"""The segmentation model for replace mode: SAM2 / SAM3 video, prompted automatically from the pose (no clicks)."""
from __future__ import annotations

from comfy_api.latest import io

from wan_animate.preprocess.sam_tracker import PRECISIONS
from wan_animate.preprocess.segment_prompts import OFFICIAL_CHUNK_FRAMES
from wan_animate.preprocess.segmenter import SegmentOptions
from wan_animate.preprocess.segmenter_files import (
    DEFAULT_SEGMENTER,
    KNOWN_SEGMENTERS,
    check_segmenter_source,
    list_model_folders,
)

from .folders import SEGMENTER_FOLDERS, folder_paths_for
from .io_types import CATEGORY, SegmenterSocket
from .progress import NodeProgress, torch_device
from .validation import check_message

PROMPTS = ("box+points", "points")


def segmenter_dirs() -> list[str]:
    return [d for name in SEGMENTER_FOLDERS for d in folder_paths_for(name)]


def segmenter_choices() -> list[str]:
    """Model folders and SAM 2 files in models/sam2, models/sam3 and models/sams, then the known Hub models."""
    folders = list_model_folders(segmenter_dirs())
    return folders + [name for name in KNOWN_SEGMENTERS if name not in folders]


class WanAnimateSegmenterLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimateSegmenterLoader",
            display_name="Load Wan Animate Segmenter (SAM2/SAM3)",
            category=CATEGORY,
            description=(
                "Loads a SAM2 or SAM3 video segmentation model (SAM 2 files, transformers folders). Given to Wan "
                "Animate Preprocess in replace mode, it segments the chosen person through the whole video, prompted "
                "automatically from the pose (the official recipe: body keypoints at key frames, 400-frame chunks), "
                "and prompts again where tracking is lost. No points to click."
            ),
            inputs=[
                io.Combo.Input("model", options=segmenter_choices(), default=DEFAULT_SEGMENTER, tooltip="From models/sam2, models/sam3 or models/sams: a SAM 2 / 2.1 file in the original layout (sam2.1_hiera_large.safetensors as other packs keep it, the official sam2_hiera_large.pt) or a transformers SAM2/SAM3 folder; or a Hub model, downloaded into the Hugging Face cache when picked (facebook/sam3 is gated: accept its licence and log in first)."),
                io.Combo.Input("device", options=["auto", "cuda", "cpu"], default="auto", tooltip="auto: ComfyUI's device."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="auto", tooltip="auto: bfloat16 on the GPU, float32 on the CPU."),
                io.Int.Input("chunk_frames", default=OFFICIAL_CHUNK_FRAMES, min=1, max=100000, tooltip="Frames per tracking session (official 400). Memory grows with this, not with the video's length."),
                io.Combo.Input("prompt", options=list(PROMPTS), default="box+points", tooltip="box+points: the official 8 body keypoints plus the person's box (whole person, not a part). points: the official prompt as it is."),
            ],
            outputs=[SegmenterSocket.Output(display_name="segmenter", tooltip="For Wan Animate Preprocess' segmenter input (replace mode).")],
        )

    @classmethod
    def validate_inputs(cls, model=None) -> bool | str:
        return check_message(check_segmenter_source, source=model, search_dirs=segmenter_dirs())

    @classmethod
    def execute(cls, model, device, precision, chunk_frames, prompt) -> io.NodeOutput:
        from wan_animate.preprocess.sam_tracker import load_segmenter

        options = SegmentOptions(chunk_frames=chunk_frames, use_box=prompt == "box+points")
        return io.NodeOutput(load_segmenter(
            model, segmenter_dirs(), device=str(torch_device()) if device == "auto" else device, dtype=precision,
            options=options, progress=NodeProgress(),
        ))


NODES = [WanAnimateSegmenterLoader]
