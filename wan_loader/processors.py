"""The two non-weight components: the umT5 tokenizer and the CLIP image processor, found beside the weights or built.

umT5 tokenizer, first found wins: files["tokenizer"]; the Diffusers folder's tokenizer/; a T5 tokenizer folder
inside the given folder (the original release's google/umt5-xxl/); one kept beside a text-encoder file given on its
own (umt5_tokenizer/, umt5-xxl/, google/umt5-xxl/); the `spiece_model` tensor ComfyUI stores in its text-encoder
files; the Hugging Face cache (or Hub) copy of google/umt5-xxl.
"""
from __future__ import annotations

from .discovery.hub import UMT5_TOKENIZER_REPO, download
from .discovery.resolve import Resolved
from .errors import MissingComponentError
from .model.configs import clip_image_processor


def load_tokenizer(res: Resolved):
    """The umT5 tokenizer and where it came from (order in the module docstring); one clear error if none."""
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
        d = download(UMT5_TOKENIZER_REPO, patterns=["*.json", "spiece.model", "*.txt"])
        return AutoTokenizer.from_pretrained(d), f"{UMT5_TOKENIZER_REPO} ({d})"
    except Exception as e:
        tried.append(f"Hugging Face cache/Hub google/umt5-xxl ({str(e).splitlines()[0][:120]})")
    raise MissingComponentError(
        "umT5 tokenizer not found. Looked in: " + "; ".join(tried) + ". Pass files={'tokenizer': FOLDER} with the "
        "google/umt5-xxl tokenizer, or run `python -m wan_loader download google/umt5-xxl` once with internet.",
        looked=tried, missing=["tokenizer"])


def load_image_processor(res: Resolved, image_encoder_config_size: int | None):
    """The CLIP image processor found beside the weights, else the standard one for the encoder's image size."""
    from transformers import CLIPImageProcessor

    if res.image_processor_dir:
        return CLIPImageProcessor.from_pretrained(res.image_processor_dir), res.image_processor_dir
    size = image_encoder_config_size or 224
    return clip_image_processor(size), f"CLIPImageProcessor for {size}px (built in)"
