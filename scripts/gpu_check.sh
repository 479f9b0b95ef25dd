#!/usr/bin/env bash
# gpu_check.sh OUT_DIR: the one prepared command for a GPU machine. Configures and builds with CUDA (for the GPU
# present, or sm_90 where it cannot be asked), runs every test (test_cuda is the CUDA-vs-CPU parity test), the
# decode benchmark on the GPU, and prints a short summary, also written as one JSON object to OUT_DIR/gpu_check.json.
# Logs go to OUT_DIR. Budget: under 8 minutes on a 16-core machine with one H100/H200.
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
START=$(date +%s)
# Third-party test data: ../shared/testdata beside the checkout, or a copy in .testdata (for a machine that
# receives the checkout alone).
TESTDATA=${TRN_TESTDATA:-../shared/testdata}
[ -d "$TESTDATA" ] || TESTDATA=.testdata
TESTDATA=$(cd "$TESTDATA" 2>/dev/null && pwd || echo "$TESTDATA")
export TRN_TESTDATA=$TESTDATA
STORIES=$TESTDATA/stories260K/stories260K.gguf

GPU=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>"$OUT/nvidia-smi.err" | head -1)
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
ARCH=${CAP:-90}
echo "gpu: ${GPU:-none found} (building for sm_$ARCH)"

cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTRN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -DTRN_TESTDATA="$TESTDATA" >"$OUT/configure.log" 2>&1
BUILD_RC=$?
if [ $BUILD_RC -eq 0 ]; then
    cmake --build build-gpu -j"$(nproc)" >"$OUT/build.log" 2>&1
    BUILD_RC=$?
fi

PASSED=0; FAILED=0; SKIPPED=0; TOTAL=0
if [ $BUILD_RC -eq 0 ]; then
    # the GPU tests and the command-line ones (which run --device cuda too); the CPU-only tests run in CI. Serially:
    # the CPU backend's OpenMP threads of two tests at once slow both several times over.
    (cd build-gpu && timeout 300 ctest -V -R "test_cuda|test_cli|test_golden_text") >"$OUT/ctest.log" 2>&1
    # ctest ends with "N% tests passed, F tests failed out of T", or "100% tests passed out of T" when none failed
    TOTAL=$(grep -oE "tests (failed|passed) out of [0-9]+" "$OUT/ctest.log" | grep -oE "[0-9]+$" | tail -1)
    TOTAL=${TOTAL:-0}
    FAILED=$(grep -oE "[0-9]+ tests failed out of" "$OUT/ctest.log" | grep -oE "^[0-9]+" | tail -1)
    FAILED=${FAILED:-0}
    [ "$TOTAL" -gt 0 ] || FAILED=1 # no summary line: ctest did not finish
    SKIPPED=$(grep -c "(Skipped)" "$OUT/ctest.log" || true)
    PASSED=$((TOTAL - FAILED - SKIPPED))
    grep -E "nmse|bitwise|DIFFER|failed" "$OUT/ctest.log" >"$OUT/cuda_parity.txt" 2>/dev/null
    if command -v compute-sanitizer >/dev/null; then  # out-of-bounds and race checks on the one-op tests
        for t in test_cuda_ops test_cuda_gemv; do
            (cd build-gpu && timeout 90 compute-sanitizer --error-exitcode 3 ./tests/$t) >"$OUT/sanitizer_$t.log" 2>&1
            echo "compute-sanitizer $t: exit $?" >>"$OUT/sanitizer.txt"
        done
    fi
    # time per kind of launch (events between launches, without programmatic dependent launch)
    TRN_CUDA_PROFILE=1 timeout 60 ./build-gpu/trinity bench --synthetic tinyllama --device cuda --json \
        --prompt-tokens 32 --decode-tokens 256 >"$OUT/profile.json" 2>"$OUT/profile.txt"
    # decode: the default (fused kernels, programmatic dependent launch on sm_90) and the switches that bisect it
    BENCH="./build-gpu/trinity bench --device cuda --json --prompt-tokens 32 --decode-tokens 256"
    timeout 120 $BENCH --synthetic tinyllama >"$OUT/bench_int8.json" 2>"$OUT/bench_int8.err"
    TRN_CUDA_NO_PDL=1 timeout 120 $BENCH --synthetic tinyllama >"$OUT/bench_nopdl.json" 2>"$OUT/bench_nopdl.err"
    TRN_CUDA_NO_FUSION=1 timeout 120 $BENCH --synthetic tinyllama >"$OUT/bench_unfused.json" 2>"$OUT/bench_unfused.err"
    timeout 120 $BENCH --synthetic tinyllama --act f32 >"$OUT/bench_f32.json" 2>"$OUT/bench_f32.err"
    timeout 120 $BENCH --synthetic tinyllama-tq1 >"$OUT/bench_tq1.json" 2>"$OUT/bench_tq1.err"
    TRN_CUDA_NO_GRAPH=1 timeout 120 ./build-gpu/trinity bench --synthetic tinyllama --device cuda --json \
        --prompt-tokens 8 --decode-tokens 64 >"$OUT/bench_nograph.json" 2>"$OUT/bench_nograph.err"
    # weight residency: every mode in one run (table and JSON), and the greedy text of each mode
    timeout 120 ./build-gpu/trinity bench --synthetic tinyllama --device cuda --compare-weights --prompt-tokens 8 \
        --decode-tokens 64 >"$OUT/compare_weights.txt" 2>"$OUT/compare_weights.err"
    timeout 120 ./build-gpu/trinity bench --synthetic tinyllama --device cuda --compare-weights --json \
        --prompt-tokens 8 --decode-tokens 64 >"$OUT/compare_weights.json" 2>>"$OUT/compare_weights.err"
    timeout 60 ./build-gpu/trinity generate -m "$STORIES" -p "" -n 200 -c 512 \
        --temp 0 --device cuda >"$OUT/stories_cuda.txt" 2>"$OUT/stories_cuda.err"
    timeout 60 ./build-gpu/trinity generate -m "$STORIES" -p "" -n 200 -c 512 \
        --temp 0 --device cpu >"$OUT/stories_cpu.txt" 2>/dev/null
    TEXT_SAME=true
    for mode in "streaming" "streaming --resident-layers 2" "mapped"; do
        tag=$(echo "$mode" | tr -c 'a-z0-9\n' '_')
        timeout 60 ./build-gpu/trinity generate -m "$STORIES" -p "" -n 200 -c 512 --temp 0 --device cuda \
            --weights $mode >"$OUT/stories_$tag.txt" 2>>"$OUT/modes.err"
        cmp -s "$OUT/stories_$tag.txt" "$OUT/stories_cuda.txt" && [ -s "$OUT/stories_cuda.txt" ] || TEXT_SAME=false
    done
    timeout 60 ./build-gpu/trinity generate --synthetic tinyllama -p "Once upon a time" -n 48 --temp 0 \
        --device cuda >"$OUT/tl_resident.txt" 2>>"$OUT/modes.err"
    for mode in "streaming" "streaming --resident-layers 11" "mapped"; do
        tag=$(echo "$mode" | tr -c 'a-z0-9\n' '_')
        timeout 60 ./build-gpu/trinity generate --synthetic tinyllama -p "Once upon a time" -n 48 --temp 0 \
            --device cuda --weights $mode >"$OUT/tl_$tag.txt" 2>>"$OUT/modes.err"
        cmp -s "$OUT/tl_$tag.txt" "$OUT/tl_resident.txt" && [ -s "$OUT/tl_resident.txt" ] || TEXT_SAME=false
    done
fi

field() { grep -oE "\"$2\": [^,}]+" "$1" 2>/dev/null | head -1 | sed 's/.*: //'; }
TPS=$(field "$OUT/bench_int8.json" decode_tokens_per_s)
MS=$(field "$OUT/bench_int8.json" decode_ms_per_token)
GBS=$(field "$OUT/bench_int8.json" achieved_gbs)
DEVICE=$(grep -oE '"device": "[^"]*"' "$OUT/bench_int8.json" 2>/dev/null | sed 's/"device": //')
KERNELS=$(echo "$DEVICE" | grep -oE "[0-9]+ kernels per token" | grep -oE "^[0-9]+")
TPS_F32=$(field "$OUT/bench_f32.json" decode_tokens_per_s)
TPS_NOGRAPH=$(field "$OUT/bench_nograph.json" decode_tokens_per_s)
TPS_NOPDL=$(field "$OUT/bench_nopdl.json" decode_tokens_per_s)
TPS_UNFUSED=$(field "$OUT/bench_unfused.json" decode_tokens_per_s)
TPS_TQ1=$(field "$OUT/bench_tq1.json" decode_tokens_per_s)
BW=$(field "$OUT/bench_int8.json" bandwidth_gbs)
ROOF=$(field "$OUT/bench_int8.json" roofline_fraction)
SAME_TEXT=false
if [ -s "$OUT/stories_cuda.txt" ] && cmp -s "$OUT/stories_cuda.txt" "$OUT/stories_cpu.txt"; then SAME_TEXT=true; fi
# the streaming mode's fraction of its bound: the second entry of the comparison's modes
H2D_FRACTION=$(grep -oE '"h2d_bound_fraction": [0-9.]+' "$OUT/compare_weights.json" 2>/dev/null | sed -n 2p | sed 's/.*: //')
COMPARE=$(cat "$OUT/compare_weights.json" 2>/dev/null | tr -d '\n')
STREAMING="{\"compare\": ${COMPARE:-null}, \"text_identical\": ${TEXT_SAME:-false}, \"h2d_bound_fraction\": ${H2D_FRACTION:-null}}"
ELAPSED=$(( $(date +%s) - START ))

cat >"$OUT/gpu_check.json" <<JSON
{"gpu": "${GPU:-none}", "build_ok": $([ $BUILD_RC -eq 0 ] && echo true || echo false), "tests_passed": ${PASSED:-0}, "tests_failed": ${FAILED:-0}, "tests_skipped": ${SKIPPED:-0}, "decode_tokens_per_s": ${TPS:-null}, "ms_per_token": ${MS:-null}, "achieved_gbs": ${GBS:-null}, "kernels_per_token": ${KERNELS:-null}, "bandwidth_gbs": ${BW:-null}, "roofline_fraction": ${ROOF:-null}, "decode_tokens_per_s_f32_act": ${TPS_F32:-null}, "decode_tokens_per_s_no_pdl": ${TPS_NOPDL:-null}, "decode_tokens_per_s_unfused": ${TPS_UNFUSED:-null}, "decode_tokens_per_s_no_graph": ${TPS_NOGRAPH:-null}, "decode_tokens_per_s_tq1_0": ${TPS_TQ1:-null}, "stories260K_text_identical_to_cpu": $SAME_TEXT, "streaming": $STREAMING, "device": ${DEVICE:-null}, "seconds": $ELAPSED}
JSON
echo "---- gpu_check summary ----"
echo "gpu:                 ${GPU:-none}"
echo "build:               $([ $BUILD_RC -eq 0 ] && echo ok || echo "FAILED (see $OUT/build.log)")"
echo "tests:               ${PASSED:-0} passed, ${FAILED:-0} failed, ${SKIPPED:-0} skipped (see $OUT/ctest.log)"
echo "decode (int8 act):   ${TPS:-n/a} tokens/s, ${MS:-n/a} ms/token, ${GBS:-n/a} GB/s, ${KERNELS:-n/a} kernels per token"
echo "memory bandwidth:    ${BW:-n/a} GB/s (device copy probe); decode at ${ROOF:-n/a} of it"
echo "switches:            no PDL ${TPS_NOPDL:-n/a}, unfused ${TPS_UNFUSED:-n/a}, no graph ${TPS_NOGRAPH:-n/a} tokens/s"
echo "other:               f32 act ${TPS_F32:-n/a}, TQ1_0 ${TPS_TQ1:-n/a} tokens/s"
echo "weights (--compare-weights; text of every mode identical: ${TEXT_SAME:-false}):"
cat "$OUT/compare_weights.txt" 2>/dev/null
grep "^profile" "$OUT/profile.txt" 2>/dev/null
echo "attention kernels (test_cuda_ops: the split kernel against the CPU, and both timed):"
grep -E "attention.*(worst|us)" "$OUT/ctest.log" 2>/dev/null | sed 's/^[0-9]*: /  /'
echo "stories260K text:    $([ "$SAME_TEXT" = true ] && echo "identical to the CPU's" || echo "DIFFERS or missing")"
echo "time:                ${ELAPSED} s; JSON: $OUT/gpu_check.json"
[ $BUILD_RC -eq 0 ] && [ "${FAILED:-1}" -eq 0 ]
