#!/usr/bin/env bash
# Build FlashAttention-3 (flash-attention's hopper/ package: flash_attn_interface + flash_attn_3) for Hopper GPUs
# (H100/H200) and install it into this Python environment. Wan Animate's attention="auto" then uses its fp8 kernel,
# the fastest self-attention measured on an H100 (891-900 TFLOP/s vs 815-843 for cuDNN's fp8 kernel).
#
#   bash scripts/build_fa3.sh          # ~3 min on 16 cores, ~10 min on 2; needs gcc/g++, git and network
#
# Only what Wan needs is compiled: forward pass, head dim 128, bf16 and fp8 e4m3, sm_90a (4 source files instead of
# ~450). Environment:
#   PYTHON     the environment's interpreter (default python3; ComfyUI's own python for a ComfyUI install)
#   CUDA_HOME  an existing CUDA >= 12.3 toolkit; when unset and torch is a CUDA 13 build, the compiler comes from the
#              nvidia-cuda-nvcc/-nvvm/-runtime/-cccl/-crt wheels of torch's CUDA version (unpacked in WORK)
#   FA3_SRC    an existing flash-attention checkout with its csrc/cutlass submodule (default: fetched at FA3_COMMIT)
#   FA3_COMMIT flash-attention commit to fetch (default: the one this package was measured with)
#   MAX_JOBS   parallel compiles (default: the CPU count, at most one per 5 GB of RAM)
#   WORK       scratch folder (default: a new temporary folder, removed afterwards)
set -euo pipefail
PY=${PYTHON:-python3}
FA3_COMMIT=${FA3_COMMIT:-0251105a2fb19d2957484b7f023cd8c115286ced}
KEEP_WORK=${WORK:+1}
WORK=${WORK:-$(mktemp -d)}
[ -n "$KEEP_WORK" ] || trap 'rm -rf "$WORK"' EXIT
say() { echo "build_fa3: $*"; }
die() { echo "build_fa3: error: $*" >&2; exit 1; }

torch_cuda=$("$PY" -c "import torch; print(torch.version.cuda or '')") || die "$PY cannot import torch"
[ -n "$torch_cuda" ] || die "torch in $PY is a CPU build: FlashAttention-3 needs a CUDA build of torch"
command -v g++ >/dev/null && command -v gcc >/dev/null || die "gcc/g++ are needed (apt-get install build-essential)"
"$PY" -m pip install -q ninja packaging setuptools wheel

if [ -z "${CUDA_HOME:-}" ] || [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  [ "${torch_cuda%%.*}" = 13 ] || die "torch uses CUDA $torch_cuda: install a CUDA $torch_cuda toolkit and set CUDA_HOME"
  say "CUDA $torch_cuda compiler from PyPI wheels into $WORK/cuda"
  "$PY" -m pip download -q --no-deps -d "$WORK/wheels" "nvidia-cuda-nvcc==$torch_cuda.*" "nvidia-nvvm==$torch_cuda.*" \
    "nvidia-cuda-runtime==$torch_cuda.*" "nvidia-cuda-cccl==$torch_cuda.*" "nvidia-cuda-crt==$torch_cuda.*"
  # The five wheels share one nvidia/cu13 folder, which `pip install --target` would not merge: unzip them instead.
  "$PY" - "$WORK/wheels" "$WORK/unpacked" <<'EOF'
import os, sys, zipfile
for name in sorted(os.listdir(sys.argv[1])):
    with zipfile.ZipFile(os.path.join(sys.argv[1], name)) as wheel:
        for info in wheel.infolist():
            path = wheel.extract(info, sys.argv[2])
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode | 0o200)
EOF
  CUDA_HOME=$WORK/cuda
  mv "$WORK/unpacked/nvidia/cu${torch_cuda%%.*}" "$CUDA_HOME"
  chmod +x "$CUDA_HOME"/bin/* "$CUDA_HOME"/nvvm/bin/*
  ln -sfn lib "$CUDA_HOME/lib64"
  [ -e "$CUDA_HOME/lib/libcudart.so" ] || ln -s "$(basename "$(ls "$CUDA_HOME"/lib/libcudart.so.* | head -1)")" "$CUDA_HOME/lib/libcudart.so"
  mkdir -p "$CUDA_HOME/targets/x86_64-linux"
  ln -sfn ../../include "$CUDA_HOME/targets/x86_64-linux/include"
  ln -sfn ../../lib "$CUDA_HOME/targets/x86_64-linux/lib"
fi
export CUDA_HOME PATH=$CUDA_HOME/bin:$PATH
say "nvcc: $(nvcc --version | tail -1)"

if [ -z "${FA3_SRC:-}" ]; then
  FA3_SRC=$WORK/flash-attention
  say "fetching flash-attention $FA3_COMMIT"
  git init -q "$FA3_SRC"
  git -C "$FA3_SRC" fetch -q --depth 1 https://github.com/Dao-AILab/flash-attention.git "$FA3_COMMIT"
  git -C "$FA3_SRC" checkout -q FETCH_HEAD
  git -C "$FA3_SRC" submodule update -q --init --depth 1 csrc/cutlass
fi
[ -f "$FA3_SRC/hopper/setup.py" ] && [ -d "$FA3_SRC/csrc/cutlass/include" ] \
  || die "$FA3_SRC is not a flash-attention checkout with its csrc/cutlass submodule"

for part in BACKWARD SPLIT PAGEDKV APPENDKV LOCAL SOFTCAP PACKGQA FP16 VARLEN SM80 HDIM64 HDIM96 HDIM192 HDIM256 \
            HDIMDIFF64 HDIMDIFF192; do
  export "FLASH_ATTENTION_DISABLE_$part=TRUE"
done
ram_jobs=$(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) / (5 * 1024 * 1024) ))
jobs=$(nproc); [ "$ram_jobs" -lt "$jobs" ] && jobs=$(( ram_jobs > 0 ? ram_jobs : 1 ))
export FLASH_ATTENTION_FORCE_BUILD=TRUE TORCH_CUDA_ARCH_LIST=9.0a MAX_JOBS=${MAX_JOBS:-$jobs} NVCC_THREADS=${NVCC_THREADS:-2}
say "compiling (forward, head dim 128, bf16 + fp8, sm_90a) with $MAX_JOBS jobs"
(cd "$FA3_SRC/hopper" && "$PY" -m pip install --no-build-isolation --no-deps -q .)

"$PY" - "$(cd "$(dirname "$0")/.." && pwd)" <<'EOF'
import sys

import torch

sys.path.insert(0, sys.argv[1])  # this package, for its availability probe
import flash_attn_interface  # noqa: F401  (the installed package imports)
if torch.cuda.is_available():
    from wan_animate.engine.accel import fa3_attention
    reason = fa3_attention.unavailable_reason("cuda")
    print(f"build_fa3: {reason}" if reason else "build_fa3: FlashAttention-3 fp8 attention runs on this GPU")
else:
    print("build_fa3: installed (no GPU here to try it on)")
EOF
