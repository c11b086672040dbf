"""Fast encode/decode through diffusers' AutoencoderKLWan (the Wan2.1 VAE): the same maths with less data movement.

diffusers runs the causal VAE chunk by chunk (pixel frames 1 + 4 + 4 ... to encode, one latent frame at a time to
decode). Before every causal 3x3x3 conv it copies the last two input frames for the next chunk, concatenates the
previous chunk's frames (a full copy) and zero-pads H, W and the front of T (a second full copy); its RMS norm runs
as five full passes (in fp32 for 16-bit inputs), its upsampling in fp32, and the chunk outputs are concatenated
onto a growing tensor (quadratic copies). This path computes the same function from the same module's weights:

- each causal conv's input is one buffer [cached frames; x]: the RMS norm and SiLU write straight into it (no
  concatenation), the spatial zero padding is the conv's own (no F.pad copy), only its last two frames are copied
  for the next chunk;
- activations in channels_last_3d (cuDNN's fast NDHWC kernels; the per-frame 2-D resampling becomes a view);
- 16-bit compute where it is safe: norm statistics and the encoder's and decoder's last convolutions stay fp32;
- `chunk` latent frames per causal chunk (the causal convs see the same frames in any chunking, so the result is
  the same; larger chunks mean fewer, larger kernels and more activation memory);
- chunk outputs are written into one preallocated tensor;
- optionally the residual blocks are compiled (torch.compile, regional), where a compiler backend exists.

Only the Wan2.1 layout (`is_residual=False`, no patching, SiLU) takes this path (`unsupported_reason`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DTYPES = {"auto": None, "bf16": torch.bfloat16, "fp32": torch.float32}
CACHE_T = 2  # frames a causal 3x3x3 conv carries from one chunk to the next (diffusers' CACHE_T)


@dataclass(frozen=True)
class VaeFastOptions:
    """How the fast path runs (LatentCodec `fast=`). Defaults: the fastest settings within the tested tolerance
    of diffusers' own fp32 path (tests/test_vae_fast.py)."""

    dtype: str = "auto"  # auto: bf16 on CUDA GPUs that have it, else the weights' dtype | bf16 | fp32
    channels_last: bool | None = None  # None: on CUDA (cuDNN's NDHWC kernels); CPU convs are faster without
    chunk: int = 1  # latent frames per causal chunk after the first: more is fewer launches and more memory
    compile: bool = False  # torch.compile the residual blocks (needs Triton on CUDA, a C++ compiler on CPU)

    def check(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"VAE dtype={self.dtype!r}: choose one of {', '.join(DTYPES)}.")
        if self.chunk < 1:
            raise ValueError(f"VAE chunk={self.chunk}: must be >= 1 latent frame.")

    def compute_dtype(self, device: torch.device, weights_dtype: torch.dtype) -> torch.dtype:
        chosen = DTYPES[self.dtype]
        if chosen is not None:
            return chosen
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return weights_dtype

    def memory_format(self, device: torch.device) -> torch.memory_format:
        on = self.channels_last if self.channels_last is not None else device.type == "cuda"
        return torch.channels_last_3d if on else torch.contiguous_format


DEFAULT_VAE_FAST = VaeFastOptions()  # frozen: safe to share as an argument default


def unsupported_reason(vae) -> str | None:
    """Why `vae` cannot take the fast path (None: it can)."""
    from diffusers import AutoencoderKLWan

    if not isinstance(vae, AutoencoderKLWan):
        return f"{type(vae).__name__} is not diffusers' AutoencoderKLWan"
    cfg = vae.config
    if cfg.is_residual or cfg.patch_size is not None:
        return "the Wan2.2 VAE layout (residual blocks, patching) runs through diffusers"
    if not isinstance(vae.encoder.nonlinearity, torch.nn.SiLU):
        return "only the SiLU activation is implemented"
    return None


def compile_unavailable(device: torch.device, platform: str | None = None) -> str | None:
    """Why torch.compile cannot run here (None: it can): Inductor needs Triton for CUDA kernels and a C++ compiler
    for CPU ones; Windows installs usually have neither (no MSVC on PATH, no Triton wheel)."""
    from torch.utils._triton import has_triton

    platform = platform or sys.platform
    if device.type == "cuda" and not has_triton():
        return "Triton is not installed (needed by torch.compile for CUDA)"
    if platform == "win32" and not has_triton():
        return "Windows without Triton/a C++ compiler: torch.compile is unavailable"
    if device.type == "cpu" and platform == "win32":
        return "torch.compile for CPU needs MSVC on Windows"
    return None


class _Weights:
    """The module's parameters in the compute dtype and memory format, made once per encode/decode call."""

    def __init__(self, vae, device, dtype, fmt):
        self.dtype, self.fmt, self.device = dtype, fmt, device
        self._table: dict = {}
        self._fp32: dict = {}

    def conv(self, module, fp32: bool = False):
        table = self._fp32 if fp32 else self._table
        found = table.get(module)
        if found is None:
            dtype = torch.float32 if fp32 else self.dtype
            w = module.weight
            fmt = self.fmt if w.dim() == 5 else (torch.channels_last if self.fmt == torch.channels_last_3d
                                                 else torch.contiguous_format)
            w = w.to(device=self.device, dtype=dtype).contiguous(memory_format=fmt)
            b = None if module.bias is None else module.bias.to(device=self.device, dtype=dtype)
            found = table[module] = (w, b)
        return found

    def gamma(self, norm):
        found = self._table.get(norm)
        if found is None:
            bias = norm.bias if isinstance(norm.bias, torch.Tensor) else None
            found = self._table[norm] = (norm.gamma.to(self.device, self.dtype).view(-1, 1, 1, 1),
                                         None if bias is None else bias.to(self.device, self.dtype).view(-1, 1, 1, 1))
        return found


class _Run:
    """One encode or decode: the weights in use and every causal conv's carried frames, keyed by module."""

    def __init__(self, weights: _Weights, resblock=None):
        self.w = weights
        self.state: dict = {}
        self.resblock = resblock  # None: eager, writing into the conv buffers; else compiled _residual_tensors

    # -- building blocks ------------------------------------------------------------------------------------
    def empty(self, shape) -> torch.Tensor:
        return torch.empty(shape, device=self.w.device, dtype=self.w.dtype, memory_format=self.w.fmt)

    def conv_input(self, conv, x_shape) -> tuple[torch.Tensor, torch.Tensor]:
        """The buffer [carried frames; x] for a causal conv and the view x goes into; the carried frames (zeros on
        the first chunk, as diffusers' causal zero padding) are filled in."""
        front = conv._padding[4]
        b, c, t, h, w = x_shape
        buf = self.empty((b, c, front + t, h, w))
        carried = self.state.get(conv)
        if carried is None:
            buf[:, :, :front].zero_()
        else:
            buf[:, :, :front].copy_(carried)
        return buf, buf[:, :, front:]

    def conv_run(self, conv, buf: torch.Tensor, fp32: bool = False) -> torch.Tensor:
        """Run a causal conv on its filled buffer and keep its last frames for the next chunk."""
        front = conv._padding[4]
        if front:
            self.state[conv] = buf[:, :, -front:].clone()
        weight, bias = self.w.conv(conv, fp32)
        pad = (0, conv._padding[2], conv._padding[0])
        return F.conv3d(buf.float() if fp32 else buf, weight, bias, conv.stride, pad)

    def causal_conv(self, conv, x: torch.Tensor, fp32: bool = False) -> torch.Tensor:
        if not conv._padding[4]:
            weight, bias = self.w.conv(conv, fp32)
            return F.conv3d(x.float() if fp32 else x, weight, bias, conv.stride,
                            (0, conv._padding[2], conv._padding[0]))
        buf, into = self.conv_input(conv, x.shape)
        into.copy_(x)
        return self.conv_run(conv, buf, fp32)

    def norm_silu_into(self, norm, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """diffusers' WanRMS_norm then SiLU, written into `out`: x / ||x||_C * sqrt(C) * gamma (+ bias), the norm
        taken in fp32; three passes instead of diffusers' six."""
        gamma, bias = self.w.gamma(norm)
        length = torch.linalg.vector_norm(x, dim=1, keepdim=True, dtype=torch.float32)
        torch.mul(x, norm.scale / length.clamp_min_(1e-12), out=out)
        out.mul_(gamma)
        if bias is not None:
            out.add_(bias)
        return F.silu(out, inplace=True)

    def norm_silu_conv(self, norm, conv, x: torch.Tensor, fp32: bool = False) -> torch.Tensor:
        buf, into = self.conv_input(conv, x.shape)
        self.norm_silu_into(norm, x, into)
        return self.conv_run(conv, buf, fp32)

    def residual(self, block, x: torch.Tensor) -> torch.Tensor:
        """WanResidualBlock: shortcut + conv2(silu(norm2(conv1(silu(norm1(x))))))."""
        if self.resblock is not None:
            return self.residual_compiled(block, x)
        shortcut = x if isinstance(block.conv_shortcut, torch.nn.Identity) else self.causal_conv(block.conv_shortcut, x)
        h = self.norm_silu_conv(block.norm1, block.conv1, x)
        h = self.norm_silu_conv(block.norm2, block.conv2, h)
        return h.add_(shortcut)

    def residual_compiled(self, block, x: torch.Tensor) -> torch.Tensor:
        w = self.w
        (w1, b1), (w2, b2) = w.conv(block.conv1), w.conv(block.conv2)
        (g1, _), (g2, _) = w.gamma(block.norm1), w.gamma(block.norm2)
        ws, bs = (None, None) if isinstance(block.conv_shortcut, torch.nn.Identity) else w.conv(block.conv_shortcut)
        shape = (x.shape[0], x.shape[1], CACHE_T) + x.shape[3:]
        c1 = self.state.get(block.conv1)
        c2 = self.state.get(block.conv2)
        c1 = x.new_zeros(shape) if c1 is None else c1
        c2 = x.new_zeros((shape[0], w1.shape[0]) + shape[2:]) if c2 is None else c2
        out, self.state[block.conv1], self.state[block.conv2] = self.resblock(
            x, c1, c2, w1, b1, w2, b2, g1, g2, block.norm1.scale, block.norm2.scale, ws, bs)
        return out

    def per_frame(self, x: torch.Tensor, fn) -> torch.Tensor:
        """A 2-D op on every frame: (B, C, T, H, W) -> (B*T, C, H, W), a view in channels_last_3d."""
        b, c, t, h, w = x.shape
        y = fn(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return y.view(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)

    def conv2d(self, conv, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.w.conv(conv)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding)

    def attention(self, block, x: torch.Tensor) -> torch.Tensor:
        """WanAttentionBlock: single-head attention over each frame's pixels, residual."""
        def frame_attention(f):
            n, c, h, w = f.shape
            gamma, _ = self.w.gamma(block.norm)
            length = torch.linalg.vector_norm(f, dim=1, keepdim=True, dtype=torch.float32)
            normed = (f * (block.norm.scale / length.clamp_min_(1e-12))).to(f.dtype) * gamma[:, 0]
            qkv = self.conv2d(block.to_qkv, normed).reshape(n, 1, c * 3, h * w).transpose(2, 3)
            q, k, v = qkv.chunk(3, dim=-1)
            out = F.scaled_dot_product_attention(q, k, v)
            return self.conv2d(block.proj, out.squeeze(1).transpose(1, 2).reshape(n, c, h, w))

        return self.per_frame(x, frame_attention).add_(x)

    def resample(self, block, x: torch.Tensor) -> torch.Tensor:
        """WanResample: 2-D up/downsampling per frame, with the causal time conv of the 3-D modes."""
        mode = block.mode
        if mode == "upsample3d":
            x = self.time_upsample(block.time_conv, x)
        if mode.startswith("upsample"):
            conv = block.resample[1]
            x = self.per_frame(x, lambda f: self.conv2d(conv, F.interpolate(f, scale_factor=2.0, mode="nearest-exact")))
        elif mode.startswith("downsample"):
            conv = block.resample[1]
            x = self.per_frame(x, lambda f: self.conv2d(conv, F.pad(f, (0, 1, 0, 1))))
        if mode == "downsample3d":
            x = self.time_downsample(block.time_conv, x)
        return x

    def time_upsample(self, conv, x: torch.Tensor) -> torch.Tensor:
        """The decoder's temporal 2x: skipped on the first chunk (diffusers' "Rep"), then a causal conv to 2C
        channels whose halves become the even and odd frames."""
        if ("started", conv) not in self.state:
            self.state[("started", conv)] = True
            return x
        y = self.causal_conv(conv, x)
        b, c2, t, h, w = y.shape
        c = c2 // 2
        out = torch.empty((b, t, 2, h, w, c), device=y.device, dtype=y.dtype)
        if self.w.fmt == torch.channels_last_3d:
            out.permute(0, 2, 5, 1, 3, 4).copy_(y.reshape(b, 2, c, t, h, w))
            return out.view(b, 2 * t, h, w, c).permute(0, 4, 1, 2, 3)
        return torch.stack((y[:, :c], y[:, c:]), 3).reshape(b, c, 2 * t, h, w)

    def time_downsample(self, conv, x: torch.Tensor) -> torch.Tensor:
        """The encoder's temporal /2: the first chunk's frame passes through; later chunks run a stride-2 conv over
        [the previous chunk's last frame; x]."""
        carried = self.state.get(conv)
        self.state[conv] = x[:, :, -1:].clone()
        if carried is None:
            return x
        b, c, t, h, w = x.shape
        buf = self.empty((b, c, t + 1, h, w))
        buf[:, :, :1].copy_(carried)
        buf[:, :, 1:].copy_(x)
        weight, bias = self.w.conv(conv)
        return F.conv3d(buf, weight, bias, conv.stride)

    def blocks(self, layers, x: torch.Tensor) -> torch.Tensor:
        from diffusers.models.autoencoders.autoencoder_kl_wan import (WanAttentionBlock, WanResample,
                                                                      WanResidualBlock, WanUpBlock)
        for layer in layers:
            if isinstance(layer, WanResidualBlock):
                x = self.residual(layer, x)
            elif isinstance(layer, WanAttentionBlock):
                x = self.attention(layer, x)
            elif isinstance(layer, WanResample):
                x = self.resample(layer, x)
            elif isinstance(layer, WanUpBlock):
                x = self.blocks(list(layer.resnets) + list(layer.upsamplers or ()), x)
            else:
                raise TypeError(f"unexpected VAE layer {type(layer).__name__}")
        return x

    def mid(self, mid, x: torch.Tensor) -> torch.Tensor:
        x = self.residual(mid.resnets[0], x)
        for attn, resnet in zip(mid.attentions, mid.resnets[1:]):
            x = self.residual(resnet, self.attention(attn, x))
        return x

    # -- the two networks, one chunk at a time -----------------------------------------------------------------
    def encoder(self, enc, x: torch.Tensor) -> torch.Tensor:
        x = self.causal_conv(enc.conv_in, x)
        x = self.mid(enc.mid_block, self.blocks(enc.down_blocks, x))
        return self.norm_silu_conv(enc.norm_out, enc.conv_out, x, fp32=True)

    def decoder(self, dec, x: torch.Tensor) -> torch.Tensor:
        x = self.causal_conv(dec.conv_in, x)
        x = self.blocks(dec.up_blocks, self.mid(dec.mid_block, x))
        return self.norm_silu_conv(dec.norm_out, dec.conv_out, x, fp32=True)


def _chunks(frames: int, first: int, per_chunk: int):
    """(start, end) of the first chunk (`first` frames) and then chunks of `per_chunk` frames."""
    yield 0, min(first, frames)
    for start in range(first, frames, per_chunk):
        yield start, min(start + per_chunk, frames)


class FastWanVae:
    """encode/decode of one AutoencoderKLWan with `VaeFastOptions`; results match `vae.encode(...).mode()` and
    `vae.decode(...)` (within bf16 rounding when computing in bf16)."""

    def __init__(self, vae, options: VaeFastOptions | None = None, platform: str | None = None):
        """platform: sys.platform unless given (tests force Windows' path with it)."""
        reason = unsupported_reason(vae)
        if reason:
            raise ValueError(f"The VAE fast path cannot run this VAE: {reason}.")
        self.vae = vae
        self.options = options or DEFAULT_VAE_FAST
        self.options.check()
        self._resblock = None
        if self.options.compile:
            device = next(vae.parameters()).device
            reason = compile_unavailable(device, platform)
            if reason is None:
                self._resblock = compiled_residual()
            else:
                self.compile_skipped = reason

    compile_skipped: str | None = None

    @property
    def compiled(self) -> bool:
        return self._resblock is not None

    def _run(self, device) -> _Run:
        weights_dtype = next(self.vae.parameters()).dtype
        dtype = self.options.compute_dtype(device, weights_dtype)
        return _Run(_Weights(self.vae, device, dtype, self.options.memory_format(device)), self._resblock)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) pixels in [-1, 1] -> the posterior mean (B, z, (T - 1) / 4 + 1, H / 8, W / 8), fp32."""
        vae, run = self.vae, self._run(pixels.device)
        b, _, frames, h, w = pixels.shape
        scale_t = vae.config.scale_factor_temporal or 4
        z = vae.config.z_dim
        out = torch.empty((b, z, (frames - 1) // scale_t + 1, h // 8, w // 8), device=pixels.device,
                          dtype=torch.float32)
        done = 0
        for start, end in _chunks(frames, 1, scale_t * self.options.chunk):
            chunk = run.encoder(vae.encoder, pixels[:, :, start:end])
            weight, bias = run.w.conv(vae.quant_conv, fp32=True)
            mean = F.conv3d(chunk, weight[:z], None if bias is None else bias[:z])
            out[:, :, done:done + mean.shape[2]] = mean
            done += mean.shape[2]
        return out

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unnormalised latents (B, z, t, h, w) -> pixels (B, 3, (t - 1) * 4 + 1, 8h, 8w) in [-1, 1], fp32."""
        vae, run = self.vae, self._run(latents.device)
        b, _, t, h, w = latents.shape
        scale_t = vae.config.scale_factor_temporal or 4
        out = torch.empty((b, 3, (t - 1) * scale_t + 1, h * 8, w * 8), device=latents.device, dtype=torch.float32)
        weight, bias = run.w.conv(vae.post_quant_conv, fp32=True)
        done = 0
        for start, end in _chunks(t, 1, self.options.chunk):
            x = F.conv3d(latents[:, :, start:end].float(), weight, bias).to(run.w.dtype)
            frames = run.decoder(vae.decoder, x)
            out[:, :, done:done + frames.shape[2]] = frames.clamp_(-1.0, 1.0)
            done += frames.shape[2]
        return out


def _residual_tensors(x, c1, c2, w1, b1, w2, b2, g1, g2, s1: float, s2: float, ws, bs):
    """A residual block as a function of tensors only (the compiled region: the norms, SiLUs and causal conv
    inputs fuse into a few kernels around the convs). Returns the output and the two convs' carried frames."""
    def norm_silu(t, g, s):
        length = torch.linalg.vector_norm(t, dim=1, keepdim=True, dtype=torch.float32).clamp_min(1e-12)
        return F.silu((t * (s / length)).to(t.dtype) * g)

    shortcut = x if ws is None else F.conv3d(x, ws, bs)
    h = torch.cat([c1, norm_silu(x, g1, s1)], dim=2)
    n1 = h[:, :, -CACHE_T:].clone()
    h = F.conv3d(h, w1, b1, padding=(0, 1, 1))
    h = torch.cat([c2, norm_silu(h, g2, s2)], dim=2)
    n2 = h[:, :, -CACHE_T:].clone()
    return F.conv3d(h, w2, b2, padding=(0, 1, 1)) + shortcut, n1, n2


_COMPILED: dict[str, object] = {}  # backend -> the compiled _residual_tensors (one per process: Dynamo's caches)


def compiled_residual(backend: str = "inductor"):
    """`_residual_tensors` compiled with `backend`: one graph per distinct shape, shared by all blocks."""
    if backend not in _COMPILED:
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        _COMPILED[backend] = torch.compile(_residual_tensors, dynamic=False, backend=backend)
    return _COMPILED[backend]
