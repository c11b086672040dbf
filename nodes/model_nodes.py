"""Loading Wan2.2-Animate (from ComfyUI's model folders or a Hub id) and LoRAs, as ComfyUI nodes."""
from __future__ import annotations

from dataclasses import dataclass, field

import folder_paths
from comfy_api.latest import io, ui

from wan_animate.engine.accel import INT8_WEIGHT_CHOICES, AccelOptions, accelerate, choose_int8_weights
from wan_animate.engine.accel.attention import CHOICES as ATTENTION_CHOICES
from wan_animate.engine.memory import JobShape
from wan_animate.engine.placement import place_transformer, swapping
from wan_loader.discovery.folders import find_model_folder, model_folders
from wan_loader.discovery.hub import ANIMATE2_REPO, DIFFUSERS_REPO
from wan_loader.lora import LoraSpec

from .folders import full_path
from .io_types import CATEGORY, LorasSocket, ModelSocket
from .memory import ManagedModel
from .progress import NodeProgress, free_comfy_models, torch_device
from .validation import check_message

FROM_MODEL = "(from the model)"
HUB_PREFIX = "hub: "
DIFFUSERS_PREFIX = "diffusers/"
PRECISIONS = ["bf16", "fp16", "fp8_e4m3fn", "fp32"]
MEMORY_MODES = ["auto", "gpu", "offload_idle"]


@dataclass
class WanAnimateModel:
    """What flows along a WANANIMATE_MODEL wire: the loaded components and how to run them."""

    components: object  # wan_loader.WanAnimateComponents
    device: object
    dtype: str
    memory: str
    sources: dict = field(default_factory=dict)
    block_runner: object = None  # Animate-14B: the engine's fast path (attention kernel, compiled blocks, block swap)
    fast: object = None  # Wan-Animate-2: its fast path (engine.animate2.accel.Animate2FastPath: kernels, compiled
    # blocks, block swap)
    managed: object = None  # memory="auto" on a GPU: nodes.memory.ManagedModel, which places the weights for each job


def model_choices() -> list[str]:
    files = folder_paths.get_filename_list("diffusion_models")
    folders = model_folders(folder_paths.get_folder_paths("diffusers"))
    return [*files, *(DIFFUSERS_PREFIX + name for name in folders), HUB_PREFIX + DIFFUSERS_REPO,
            HUB_PREFIX + ANIMATE2_REPO]


def resolve_model(choice: str, hub_id: str) -> str:
    """Dropdown value (or a Hub id typed in `hub_id`) -> a path or a Hub repo id the loader understands."""
    if hub_id.strip():
        return hub_id.strip()
    if choice.startswith(HUB_PREFIX):
        return choice[len(HUB_PREFIX):]
    if choice.startswith(DIFFUSERS_PREFIX):
        return find_model_folder(choice[len(DIFFUSERS_PREFIX):], folder_paths.get_folder_paths("diffusers"))
    return full_path("diffusion_models", choice)


def part_choices(folder: str) -> list[str]:
    return [FROM_MODEL, *folder_paths.get_filename_list(folder)]


def resolve_part(folder: str, choice: str) -> str | None:
    return None if choice == FROM_MODEL else full_path(folder, choice)


def _check_accel(**values) -> None:
    AccelOptions(**values).check()


class WanAnimateModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimateModelLoader",
            display_name="Load Wan Animate Model",
            category=CATEGORY,
            description=(
                "Loads Wan2.2-Animate-14B or Wan-Animate-2 (full or distilled) in any released layout (ComfyUI single "
                "files bf16/fp8, the original Wan-AI release, the Diffusers folder, or a Hugging Face Hub id, "
                "downloaded with progress). The model and layout are detected from the files."
            ),
            inputs=[
                io.Combo.Input("model", options=model_choices(), tooltip="The diffusion model (Animate-14B or Wan-Animate-2, e.g. wan_animate_2_bf16.safetensors): a file in models/diffusion_models, a folder in models/diffusers, or a Hub repo (downloaded into the Hugging Face cache)."),
                io.Combo.Input("vae", options=part_choices("vae"), default=FROM_MODEL, tooltip="Wan2.1 VAE file from models/vae; '(from the model)' uses the VAE inside a model folder or Hub repo."),
                io.Combo.Input("text_encoder", options=part_choices("text_encoders"), default=FROM_MODEL, tooltip="umT5-XXL file from models/text_encoders (bf16 or fp8 scaled)."),
                io.Combo.Input("clip_vision", options=part_choices("clip_vision"), default=FROM_MODEL, tooltip="CLIP ViT-H/14 file from models/clip_vision (clip_vision_h)."),
                io.Combo.Input("precision", options=PRECISIONS, default="bf16", tooltip="How the transformer weights are kept in memory. fp8_e4m3fn halves memory; on Hopper/Ada GPUs the matmuls then run on fp8 tensor cores (faster), elsewhere they compute in bf16."),
                io.Combo.Input("memory", options=MEMORY_MODES, default="auto", tooltip="auto: planned from the free VRAM (and --lowvram/--novram/--reserve-vram) for each run: as many transformer blocks on the GPU as fit, the rest streamed from pinned CPU RAM, encoders streamed in when they do not fit, VAE tiled only when needed; ComfyUI can unload it when other nodes need VRAM. gpu: loaded straight onto the GPU and kept there (fastest, most VRAM). offload_idle: kept in CPU RAM and moved to the GPU for each run, back afterwards."),
                io.String.Input("hub_id", default="", optional=True, tooltip="Hugging Face repo id (or local path) to load instead of the dropdown, e.g. Wan-AI/Wan2.2-Animate-14B-Diffusers. Honors HF_HOME and HF_HUB_OFFLINE."),
                io.Combo.Input("attention", options=list(ATTENTION_CHOICES), default="auto", optional=True, tooltip="Attention kernel of the transformer. auto: the fastest kernel within 3 % of bf16 attention on this GPU (cuDNN's bf16 kernel on Hopper; int8 Q·K^T with fp16 P·V on Ampere, Ada and Blackwell; bf16 attention where it does not run). accurate: bf16 attention. int8 (fp8 P·V) and the all-fp8 kernels (fa3_fp8, cudnn_fp8, fp8) are faster on Hopper and 3-6 % less exact; cudnn/flash compute in bf16. sparse: comfy-kitchen's training-free sparse attention (Sol-Attn) for long and 720p videos, see sparse_tau; needs comfy-kitchen and an Ampere or newer GPU, else auto's kernel is used (the log says why)."),
                io.Boolean.Input("compile", default=False, optional=True, tooltip="torch.compile the repeated transformer blocks: faster steps after a first run that takes about a minute longer (cached on disk)."),
                io.Int.Input("blocks_on_cpu", default=0, min=0, max=64, optional=True, tooltip="Block swap: keep this many transformer blocks in CPU RAM and stream them to the GPU each step. Lowers VRAM by about 0.4 GB per block (fp8) at some speed; 0 keeps all on the GPU (memory=auto: 0 lets the plan choose)."),
                io.Combo.Input("int8_weights", options=list(INT8_WEIGHT_CHOICES), default="auto", optional=True, tooltip="Comfy-Org's int8 ConvRot files (wan_animate_2_int8_convrot): auto keeps the weights int8 (half the memory of bf16) and multiplies them with comfy-kitchen's int8 kernels on GPUs where those run (compute capability 7.5 and newer: RTX 20xx on), else converts them to the precision above at load and says why in the log. keep insists (an error names what to install where it cannot); dequantize always converts at load. precision fp8_e4m3fn re-quantises them to fp8 instead; other files are not affected."),
                io.Float.Input("sparse_tau", default=AccelOptions().sparse_tau, min=-10.0, max=10.0, step=0.1, optional=True, tooltip="attention=sparse only: how sparse. Each block of 64 tokens attends exactly the blocks that score more than this many standard deviations above average, the rest through one pooled term each. Higher: fewer exact blocks, faster, further from dense attention; 1 is comfy-kitchen's default. Sequences under ~12k tokens stay dense."),
            ],
            outputs=[ModelSocket.Output(display_name="model", tooltip="The loaded model: Animate-14B for Wan Animate Sampler, Wan-Animate-2 for Wan Animate 2 Sampler.")],
        )

    @classmethod
    def validate_inputs(cls, model=None, hub_id="", sparse_tau=None) -> bool | str:
        settings = check_message(_check_accel, sparse_tau=sparse_tau)
        if settings is not True or model is None or hub_id is None:  # linked: known only when the node runs
            return settings
        return check_message(resolve_model, choice=model, hub_id=hub_id)

    @classmethod
    def execute(cls, model, vae, text_encoder, clip_vision, precision, memory, hub_id="", attention="auto",
                compile=False, blocks_on_cpu=0, int8_weights="auto",
                sparse_tau=AccelOptions.sparse_tau) -> io.NodeOutput:
        from wan_animate.engine.animate2.accel import accelerate_animate2
        from wan_animate.engine.animate2.run import default_job_shape
        from wan_loader.errors import WanLoaderError
        from wan_loader.load import load_components

        source = resolve_model(model, hub_id)  # a Hub id is downloaded by the loader, with progress on the node
        parts = {
            "vae": resolve_part("vae", vae),
            "text_encoder": resolve_part("text_encoders", text_encoder),
            "image_encoder": resolve_part("clip_vision", clip_vision),
        }
        device = torch_device()
        auto = memory == "auto" and device.type == "cuda"
        if not auto:
            free_comfy_models()  # auto makes its room through ComfyUI's memory manager when it is placed
        try:
            components = load_components(
                # weights that may not all stay on the GPU are placed from the CPU: loading them onto the GPU first
                # would need the VRAM the placement saves
                source, device=device if memory == "gpu" and not blocks_on_cpu else "cpu", weight_dtype=precision,
                files={k: v for k, v in parts.items() if v}, progress=NodeProgress(),
                int8_weights=choose_int8_weights(device, int8_weights),
            )
        except WanLoaderError as error:
            picked = hub_id.strip() or model
            raise WanLoaderError(f"Could not load '{picked}' (model) with vae '{vae}', text_encoder '{text_encoder}', "
                                 f"clip_vision '{clip_vision}':\n{error}") from error
        loaded = WanAnimateModel(components, device, precision, memory, dict(components.sources))
        animate2 = components.family == "animate2"
        accelerated = accelerate_animate2 if animate2 else accelerate
        fast = accelerated(components.transformer, device,
                           AccelOptions(attention=attention, compile=compile, sparse_tau=sparse_tau))
        swap = None
        if auto:  # the plan decides the block swap per job (the sampler asks ManagedModel)
            job = default_job_shape() if animate2 else JobShape()
            loaded.managed = ManagedModel(components, device, fast.block_runner, job, blocks_on_cpu or None)
            loaded.managed.prepare(job)
        elif memory == "gpu" or blocks_on_cpu:
            # offload_idle without block swap leaves the transformer on the CPU: the sampler moves it per run
            swap = place_transformer(components.transformer, device, blocks_on_cpu)
        if animate2:
            loaded.fast = fast.with_swap(swap)
        else:
            loaded.block_runner = swapping(swap, fast.block_runner)
        if loaded.managed is not None:
            return io.NodeOutput(loaded, ui=ui.PreviewText(loaded.managed.plan.describe()))
        return io.NodeOutput(loaded)


class WanAnimateLoraSelect(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimateLoraSelect",
            display_name="Wan Animate LoRA",
            category=CATEGORY,
            description=(
                "Adds a LoRA (relighting for replace mode, lightx2v step-distill for 4-6 steps, ...) to the list the "
                "sampler applies. Chain several; ComfyUI, Kijai and original PEFT key layouts are recognised."
            ),
            inputs=[
                io.Combo.Input("lora", options=folder_paths.get_filename_list("loras"), tooltip="LoRA file from models/loras."),
                io.Float.Input("strength", default=1.0, min=-4.0, max=4.0, step=0.05, tooltip="Multiplier of the LoRA's change to the weights (0 turns it off)."),
                LorasSocket.Input("loras", optional=True, tooltip="LoRAs chosen so far (from another Wan Animate LoRA node)."),
            ],
            outputs=[LorasSocket.Output(display_name="loras", tooltip="The LoRA list, for Wan Animate Sampler or another Wan Animate LoRA node.")],
        )

    @classmethod
    def validate_inputs(cls, lora=None) -> bool | str:
        return lora is None or check_message(full_path, folder="loras", filename=lora)

    @classmethod
    def execute(cls, lora, strength, loras=()) -> io.NodeOutput:
        return io.NodeOutput((*loras, LoraSpec(full_path("loras", lora), float(strength))))


NODES = [WanAnimateModelLoader, WanAnimateLoraSelect]
