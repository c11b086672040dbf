"""The VAE fast path (wan_animate.engine.vae_fast) against diffusers' AutoencoderKLWan on tiny random VAEs (CPU).

Tolerances: in fp32 the fast path computes the same function in another order (relative error < 1e-5 on encode
and decode); in bf16 it is no further from diffusers' fp32 result than diffusers' own bf16 VAE is (the way
ComfyUI runs the Wan VAE), and within 3 % (encode) / 5 % (decode) relative.
"""
from __future__ import annotations

import copy

import pytest
import torch

from wan_animate.engine.conditioning import LatentCodec
from wan_animate.engine.vae_fast import (FastWanVae, VaeFastOptions, compile_unavailable, compiled_residual,
                                         unsupported_reason)
from wan_loader.model.test_sizes import TINY_VAE_CONFIG


def relative(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.fixture(scope="module")
def vae():
    """The tiny Wan2.1-layout VAE with every parameter perturbed (no all-ones gammas, no zero biases)."""
    from wan_loader.testing.tiny import tiny_vae

    model = tiny_vae(seed=5)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def data(vae):
    torch.manual_seed(1)
    pixels = torch.rand(1, 3, 17, 16, 24) * 2 - 1  # 5 latent frames: a partial last chunk when chunk=3
    latents = torch.randn(1, 16, 5, 2, 3)
    return pixels, latents, vae.encode(pixels).latent_dist.mode(), vae.decode(latents).sample


@pytest.mark.parametrize("options", [VaeFastOptions(), VaeFastOptions(chunk=3, channels_last=True)],
                         ids=["chunk1", "chunk3-channels-last"])
def test_fp32_fast_path_equals_diffusers(vae, data, options):
    pixels, latents, ref_latents, ref_pixels = data
    fast = FastWanVae(vae, options)
    encoded, decoded = fast.encode(pixels), fast.decode(latents)
    assert encoded.shape == ref_latents.shape and decoded.shape == ref_pixels.shape
    assert relative(encoded, ref_latents) < 1e-5
    assert relative(decoded, ref_pixels) < 1e-5
    assert decoded.abs().max() <= 1.0


def test_bf16_fast_path_is_as_close_as_diffusers_bf16(vae, data):
    pixels, latents, ref_latents, ref_pixels = data
    fast = FastWanVae(vae, VaeFastOptions(dtype="bf16", channels_last=True, chunk=2))
    enc_error, dec_error = relative(fast.encode(pixels), ref_latents), relative(fast.decode(latents), ref_pixels)
    half = copy.deepcopy(vae).to(torch.bfloat16)
    half_enc = relative(half.encode(pixels.bfloat16()).latent_dist.mode(), ref_latents)
    half_dec = relative(half.decode(latents.bfloat16()).sample, ref_pixels)
    assert enc_error < 0.03 and dec_error < 0.05
    assert enc_error <= 1.1 * half_enc and dec_error <= 1.1 * half_dec


def test_compiled_residual_blocks_compute_the_same(vae, data):
    """The compiled region's graph (captured by Dynamo, run by AOT autograd's eager backend: Inductor's code
    generation takes minutes on this CPU) gives the eager path's results."""
    pixels, latents, ref_latents, ref_pixels = data
    fast = FastWanVae(vae, VaeFastOptions(chunk=2))
    fast._resblock = compiled_residual("aot_eager")
    assert fast.compiled
    assert relative(fast.encode(pixels), ref_latents) < 1e-5
    assert relative(fast.decode(latents), ref_pixels) < 1e-5


def test_compile_is_skipped_on_windows_without_a_compiler(vae, data, monkeypatch):
    """Windows' path, forced: no Triton and no MSVC, so compile=True runs eagerly and says why."""
    import torch.utils._triton as triton_probe

    monkeypatch.setattr(triton_probe, "has_triton", lambda: False)
    cpu = torch.device("cpu")
    assert "Windows" in compile_unavailable(cpu, "win32")
    assert "Triton" in compile_unavailable(torch.device("cuda"), "win32")
    fast = FastWanVae(vae, VaeFastOptions(compile=True), platform="win32")
    assert not fast.compiled and "Windows" in fast.compile_skipped
    pixels, latents, ref_latents, _ = data
    assert relative(fast.encode(pixels), ref_latents) < 1e-5
    codec = LatentCodec(vae, fast=VaeFastOptions(compile=True))
    if compile_unavailable(cpu) is None:  # Linux with a compiler: the codec says it compiles
        assert codec.describe()["compiled"]


def test_other_vaes_and_tiling_use_diffusers():
    from diffusers import AutoencoderKLWan

    wan22 = AutoencoderKLWan(**{**TINY_VAE_CONFIG, "is_residual": True}).eval()
    assert "Wan2.2" in unsupported_reason(wan22)
    with pytest.raises(ValueError, match="cannot run this VAE"):
        FastWanVae(wan22)
    assert LatentCodec(wan22).describe()["path"] == "diffusers"
    wan21 = AutoencoderKLWan(**TINY_VAE_CONFIG).eval()
    assert LatentCodec(wan21).describe()["path"] == "fast"
    assert LatentCodec(wan21, tiled=True).describe()["path"] == "diffusers"
    assert LatentCodec(wan21, fast=None).describe()["path"] == "diffusers"
    with pytest.raises(ValueError, match="chunk"):
        VaeFastOptions(chunk=0).check()


def test_zero_video_latents_are_remembered_until_the_weights_change():
    from wan_loader.testing.tiny import tiny_vae

    vae = tiny_vae(seed=7)
    codec = LatentCodec(vae)
    first = codec.encode_zeros(9, 16, 16, "cpu")
    assert torch.equal(first, codec.encode(torch.zeros(1, 3, 9, 16, 16)))
    assert LatentCodec(vae).encode_zeros(9, 16, 16, "cpu") is first  # a later job: no encode
    with torch.no_grad():
        vae.encoder.conv_in.bias.add_(0.5)
    changed = LatentCodec(vae).encode_zeros(9, 16, 16, "cpu")
    assert not torch.equal(changed, first)
    assert torch.equal(changed, codec.encode(torch.zeros(1, 3, 9, 16, 16)))


def test_zero_video_latents_of_a_vae_loaded_under_inference_mode():
    """ComfyUI runs nodes under torch.inference_mode: weights created there have no version counter."""
    from wan_loader.testing.tiny import tiny_vae

    with torch.inference_mode():
        vae = tiny_vae(seed=7)
        assert all(p.is_inference() for p in vae.parameters())
        first = LatentCodec(vae).encode_zeros(9, 16, 16, "cpu")
        assert LatentCodec(vae).encode_zeros(9, 16, 16, "cpu") is first
        assert torch.equal(first, LatentCodec(vae).encode(torch.zeros(1, 3, 9, 16, 16)))
        for parameter in vae.parameters():  # replaced weights: encoded again
            parameter.data = parameter.data * 1.5
        again = LatentCodec(vae).encode_zeros(9, 16, 16, "cpu")
    assert not torch.equal(again, first)
