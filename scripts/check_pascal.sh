#!/usr/bin/env bash
# check_pascal.sh [WORK_DIR]: proves that the CUDA backend's Pascal code path (TRN_CUDA_PASCAL) assembles for sm_61,
# the GTX 1080 Ti generation, on a machine whose CUDA 13 cannot target it.
#
# Every cuda/*.cu is compiled to PTX by this machine's nvcc for its lowest target (compute_75) with TRN_CUDA_PASCAL
# defined; the PTX is retargeted (.target sm_61, .version 8.8) and assembled by CUDA 12.9's ptxas (PyPI's
# nvidia-cuda-nvcc-cu12, installed into WORK_DIR), which still knows sm_61: any instruction Pascal lacks fails there.
# A control shows the check bites: the ternary kernel compiled for compute_90 without TRN_CUDA_PASCAL (programmatic
# dependent launch) must fail to assemble for sm_61.
#
# Prints one line per file and a summary; exits 0 when all assemble and the control fails, 1 otherwise, 77 (with a
# line saying why) where nvcc is absent or ptxas 12.9 cannot be installed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
WORK=${1:-build-pascal}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

if ! command -v nvcc >/dev/null; then
    echo "check_pascal: SKIPPED: no nvcc on this machine"
    exit 77
fi
PTXAS=$WORK/nvcc12/nvidia/cuda_nvcc/bin/ptxas
if [ ! -x "$PTXAS" ]; then
    if ! python3 -m pip install -q --target "$WORK/nvcc12" "nvidia-cuda-nvcc-cu12==12.9.*" >"$WORK/pip.log" 2>&1; then
        echo "check_pascal: SKIPPED: could not install nvidia-cuda-nvcc-cu12 (CUDA 12.9's ptxas): $(tail -1 "$WORK/pip.log")"
        exit 77
    fi
fi
if [ ! -x "$PTXAS" ]; then
    PTXAS=$(find "$WORK/nvcc12" -name ptxas -type f -perm -u+x | head -1)
fi
if [ -z "$PTXAS" ] || ! "$PTXAS" --version >/dev/null 2>&1; then
    echo "check_pascal: SKIPPED: no runnable ptxas in $WORK/nvcc12"
    exit 77
fi
echo "check_pascal: $(nvcc --version | grep -o 'release [0-9.]*' | head -1) for PTX, ptxas $("$PTXAS" --version | grep -o 'release [0-9.]*' | head -1) for sm_61"

# assemble SOURCE ARCH DEFINES...: PTX of SOURCE for ARCH, retargeted to sm_61 and assembled; returns ptxas's status.
assemble() {
    local src=$1 arch=$2 name
    shift 2
    name=$(basename "$src" .cu)-$arch
    if ! nvcc -std=c++17 -ptx -arch="$arch" -I. -DTRN_HAVE_CUDA=1 "$@" -o "$WORK/$name.ptx" "$src" \
        >"$WORK/$name.nvcc.log" 2>&1; then
        echo "nvcc failed on $src ($arch): $(head -3 "$WORK/$name.nvcc.log" | tr '\n' ' ')"
        return 2
    fi
    sed -e 's/^\.target sm_[0-9a-z]*/.target sm_61/' -e 's/^\.version [0-9.]*/.version 8.8/' \
        "$WORK/$name.ptx" >"$WORK/$name.sm_61.ptx"
    "$PTXAS" -arch=sm_61 "$WORK/$name.sm_61.ptx" -o "$WORK/$name.sm_61.cubin" >"$WORK/$name.ptxas.log" 2>&1
}

passed=0
failed=0
for src in cuda/*.cu; do
    if assemble "$src" compute_75 -DTRN_CUDA_PASCAL=1; then
        echo "ok   $src assembles for sm_61"
        passed=$((passed + 1))
    else
        echo "FAIL $src does not assemble for sm_61: $(grep -m2 -i 'error' "$WORK/$(basename "$src" .cu)-compute_75.ptxas.log" 2>/dev/null | tr '\n' ' ')"
        failed=$((failed + 1))
    fi
done
if assemble cuda/gemv_ternary.cu compute_90; then
    echo "FAIL control: the sm_90 build (programmatic dependent launch) assembled for sm_61: the check does not bite"
    failed=$((failed + 1))
elif grep -q -i 'griddepcontrol\|not supported' "$WORK/gemv_ternary-compute_90.ptxas.log"; then
    echo "ok   control: the sm_90 build without TRN_CUDA_PASCAL is refused for sm_61 ($(grep -m1 -i 'error' \
        "$WORK/gemv_ternary-compute_90.ptxas.log" | cut -c1-100))"
    passed=$((passed + 1))
else
    echo "FAIL control: refused for another reason: $(head -2 "$WORK/gemv_ternary-compute_90.ptxas.log" | tr '\n' ' ')"
    failed=$((failed + 1))
fi
echo "check_pascal: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
