#!/usr/bin/env bash
# gpu_check.sh OUT_DIR: the one prepared command for a GPU machine: a complete record in one run of at most
# GPU_CHECK_BUDGET_S seconds (default 540, 9 minutes). Every step's timeout comes out of what is left of that budget,
# the most important steps first, so a slow machine drops the least important ones (each named in the JSON).
#
# Owns: the build folder build-gpu (Release, CUDA for the GPU present, -lineinfo: line tables only, the same PTX,
# and Nsight Compute gets its source view), and OUT_DIR:
#   gpu_check.json  every item, null where it did not run with the reason in "not_run"; rewritten after every step,
#                   so it holds what was done even when the run is cut short;
#   the logs and outputs of every step (configure.log, build.log, ctest.log, sanitizer_*.log, bench_*.json, ...),
#   nsight/         profiling/nsight.sh's Nsight Compute part (a few launches of the ternary and attention kernels).
# A short summary goes to stdout.
#
# The steps, in order: commit, nvcc, driver, GPU and its clocks; the CUDA build; the GPU tests (test_cuda is the
# CUDA-vs-CPU parity test; test_cli and test_golden_text run --device cuda too); three runs of the default decode
# bench (median, min, max); the lean ternary kernel, the split attention of 32 positions, the L2 prefetch and the
# folded ends of a step (decode benches, then each against the default within one process by profiling/ab_lab, the
# lean kernel on TQ1_0 too; the lean kernel's greedy text against the classic kernel's); the batched prefill (512-token prompts, the text after a
# prompt, perplexity batched and token by token, the dense FP16 baseline); the GPU kernel lab (build-gpu/cuda_kernel_lab); the
# greedy text of the GPU against the CPU's (stories260K, and --synthetic tiny with --act f32); a long context (a
# 1,536-token prompt, decode positions 1,536 to 1,791); the weight modes compared (--compare-weights); --parallel 16;
# compute-sanitizer memcheck, synccheck and racecheck of test_cuda_ops, test_cuda_gemv and test_cuda_gemm; Nsight Compute; the
# switches that bisect the decode (no PDL, unfused, no graph, f32 activations, TQ1_0, the time per kind of launch)
# and the text of every weight mode; the clocks again.
# Without a GPU it stops at once with a JSON that says so (exit 2). Exit 0: built, and every test passed.
# Environment: GPU_CHECK_BUDGET_S; TRN_TESTDATA; TRN_COMMIT and TRN_DIRTY (true|false) where the tree is a copy
# without .git; GPU_CHECK_EMULATOR=1: a dry run of every step on the CUDA emulator (tests/cuda_emulator, build folder
# build-emu) with the 2-layer synthetic model and small sizes, budget 2400 s: it checks this script and the commands
# it runs, without a GPU (its figures are the emulator's; the JSON says "emulated": true).
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 1
cd "$(dirname "$0")/.." || exit 1
START=$(date +%s)
EMULATED=false
BUILD=build-gpu
# the model and sizes of the steps: Trinity-1.1B's shape on a GPU; on the emulator the 2-layer model, small sizes
MODEL=tinyllama MODEL_TQ1=tinyllama-tq1 DECODE=256 PROMPT=512 PROMPT_REPEATS=40 TEXT_LINES=200 PPL_CONTEXT=512
LONG_PROMPT=1536 LONG_DECODE=256 SHORT_DECODE=64 PARALLEL=16 HALF_LAYERS=11 CAP_SCALE=1 AB_ROUNDS=20 AB_STEPS=32
if [ "${GPU_CHECK_EMULATOR:-0}" = 1 ]; then # a dry run of this script on the CUDA emulator (tests/cuda_emulator)
    EMULATED=true BUILD=build-emu
    MODEL=tiny MODEL_TQ1=tiny DECODE=16 PROMPT=64 PROMPT_REPEATS=10 TEXT_LINES=20 PPL_CONTEXT=128
    LONG_PROMPT=160 LONG_DECODE=32 SHORT_DECODE=8 PARALLEL=4 HALF_LAYERS=1 CAP_SCALE=4 AB_ROUNDS=4 AB_STEPS=4
fi
BUDGET=${GPU_CHECK_BUDGET_S:-$([ $EMULATED = true ] && echo 2400 || echo 540)}
DEADLINE=$((START + BUDGET))
RESERVE=10 # seconds kept at the end for the clocks and the JSON
# Third-party test data: ../shared/testdata beside the checkout, or a copy in .testdata (for a machine that
# receives the checkout alone).
TESTDATA=${TRN_TESTDATA:-../shared/testdata}
[ -d "$TESTDATA" ] || TESTDATA=.testdata
TESTDATA=$(cd "$TESTDATA" 2>/dev/null && pwd || echo "$TESTDATA")
export TRN_TESTDATA=$TESTDATA
STORIES=$TESTDATA/stories260K/stories260K.gguf
TRN=./$BUILD/trinity
BENCH=("$TRN" bench --device cuda --json --prompt-tokens 32 --decode-tokens "$DECODE")

# ---- the record: every key null until its step fills it; the reason it is null in not_run ------------------------
declare -A VAL WHY
KEYS=(gpu gpu_name driver nvcc commit dirty clocks_before build_ok build_flags tests_passed tests_failed
    tests_skipped decode_tokens_per_s decode_tokens_per_s_min decode_tokens_per_s_max decode_tokens_per_s_runs
    ms_per_token achieved_gbs kernels_per_token bandwidth_gbs roofline_fraction device
    decode_tokens_per_s_lean decode_tokens_per_s_split32 decode_tokens_per_s_lean_split32 lean_text_identical
    decode_tokens_per_s_l2_prefetch decode_tokens_per_s_lean_l2_prefetch decode_tokens_per_s_fold_ends
    decode_tokens_per_s_lean_fold_ends kernels_per_token_fold_ends in_process_comparisons
    prefill_tokens_per_s prefill_token_by_token_tokens_per_s prefill_tokens_per_s_tq1_0 prefill_text_identical
    dense_f16_decode_tokens_per_s dense_f16_prefill_tokens_per_s
    perplexity_batched perplexity_token_by_token kernel_lab
    stories260K_text_identical_to_cpu tiny_f32_text_identical_to_cpu long_context streaming parallel sanitizer
    sanitizer_errors nsight_compute pascal_path decode_tokens_per_s_f32_act decode_tokens_per_s_no_pdl
    decode_tokens_per_s_unfused decode_tokens_per_s_no_graph decode_tokens_per_s_tq1_0 profile_per_launch_kind
    clocks_after)
for k in "${KEYS[@]}"; do WHY[$k]="not reached: the run stopped before this step"; done
# KEY JSON-VALUE [REASON]: a value that is null (or empty) is recorded as not run, for REASON
put() {
    if [ -z "$2" ] || [ "$2" = null ]; then skip "$1" "${3:-not in the output of its step}"; else VAL[$1]=$2; unset "WHY[$1]"; fi
}
skip() { unset "VAL[$1]"; WHY[$1]=$2; } # KEY REASON
jstr() {
    local s=$1
    s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/}
    printf '"%s"' "$s"
}
num() { if [[ ${1:-} =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then echo "$1"; else echo null; fi; }
# FILE KEY: a number from one-line JSON (the first "KEY": value in FILE), or null
field() { num "$(grep -oE "\"$2\": [^,}]+" "$1" 2>/dev/null | head -1 | sed 's/.*: //')"; }
# FILE: its first line that is a JSON object (checked by python3 where there is one); fails where there is none
jfile() {
    local line
    line=$(grep -m1 '^{' "$1" 2>/dev/null) || return 1
    if command -v python3 >/dev/null; then
        printf '%s' "$line" | python3 -c 'import json, sys; json.load(sys.stdin)' 2>/dev/null || return 1
    fi
    printf '%s' "$line"
}
write_json() {
    local k sep="" json="{"
    for k in "${KEYS[@]}"; do json+="$sep\"$k\": ${VAL[$k]:-null}"; sep=", "; done
    json+=", \"emulated\": $EMULATED, \"seconds\": $(($(date +%s) - START)), \"budget_s\": $BUDGET, \"not_run\": {"
    sep=""
    for k in "${KEYS[@]}"; do
        [ -n "${VAL[$k]:-}" ] && continue
        json+="$sep\"$k\": $(jstr "${WHY[$k]:-not run}")"
        sep=", "
    done
    printf '%s}}\n' "$json" >"$OUT/gpu_check.json.tmp" && mv -f "$OUT/gpu_check.json.tmp" "$OUT/gpu_check.json"
}
# Every key still null gets REASON (the build failed, no GPU).
skip_rest() { for k in "${KEYS[@]}"; do [ -n "${VAL[$k]:-}" ] || WHY[$k]=$1; done; }
trap 'write_json; exit 130' INT TERM

# run CAP STDOUT STDERR COMMAND...: COMMAND with a timeout of CAP seconds or what is left of the budget, whichever
# is less (STDERR may be STDOUT). Status: the command's; 124 or 137 when it timed out; 125 when no time was left.
run() {
    local cap=$(($1 * CAP_SCALE)) out=$2 err=$3 left
    shift 3
    left=$((DEADLINE - RESERVE - $(date +%s)))
    [ "$left" -lt "$cap" ] && cap=$left
    if [ "$cap" -lt 5 ]; then # no output of an earlier run left behind to be read as this one's
        : >"$out"
        echo "not run: no time left in the budget (GPU_CHECK_BUDGET_S=$BUDGET)" >"$err"
        return 125
    fi
    if [ "$out" = "$err" ]; then timeout -k 5 "$cap" "$@" >"$out" 2>&1
    else timeout -k 5 "$cap" "$@" >"$out" 2>"$err"; fi
}
why() {
    case $1 in
        0) echo "ok" ;; 124 | 137) echo "timed out" ;; 125) echo "not run: no time left in the budget" ;;
        *) echo "failed (exit $1)" ;;
    esac
}
find_tool() { # on PATH, else in the CUDA toolkit's bin
    command -v "$1" 2>/dev/null && return 0
    local c
    for c in "${CUDA_HOME:-/usr/local/cuda}/bin/$1" /usr/local/cuda/bin/"$1"; do [ -x "$c" ] && echo "$c" && return 0; done
    return 1
}
clocks() { # the clocks, temperature and power now, as a JSON object
    local line sm mem max temp power
    line=$(nvidia-smi --query-gpu=clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw \
        --format=csv,noheader,nounits 2>/dev/null | head -1) || return 1
    [ -n "$line" ] || return 1
    IFS=', ' read -r sm mem max temp power <<<"$line"
    printf '{"sm_mhz": %s, "mem_mhz": %s, "max_sm_mhz": %s, "temperature_c": %s, "power_w": %s}' "$(num "$sm")" \
        "$(num "$mem")" "$(num "$max")" "$(num "$temp")" "$(num "$power")"
}
same_text() { if [ -s "$1" ] && cmp -s "$1" "$2"; then echo true; else echo false; fi; } # A B: A non-empty, equal to B

# ---- what is here ---------------------------------------------------------------------------------------------------
if COMMIT=$(git rev-parse HEAD 2>/dev/null); then
    put commit "$(jstr "$COMMIT")"
    if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then put dirty true; else put dirty false; fi
elif [ -n "${TRN_COMMIT:-}" ]; then # a copy of the tree without .git: the caller names the commit
    put commit "$(jstr "$TRN_COMMIT")"
    case ${TRN_DIRTY:-} in true | false) put dirty "$TRN_DIRTY" ;; *) skip dirty "not a git checkout; TRN_DIRTY not given" ;; esac
else
    skip commit "not a git checkout (TRN_COMMIT names it for a copy without .git)"; skip dirty "not a git checkout"
fi
if NVCC=$(find_tool nvcc); then
    put nvcc "$(jstr "$("$NVCC" --version | grep -oE 'release [0-9.]+, V[0-9.]+' | sed 's/.*, V//')")"
else
    skip nvcc "nvcc not found (CUDA toolkit not installed)"
fi
if [ $EMULATED = true ]; then
    GPU="CUDA emulator (tests/cuda_emulator: the emulator's figures and no GPU's), 9.0, none, host memory"
else
    GPU=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader \
        2>"$OUT/nvidia-smi.err" | head -1)
fi
if [ -z "$GPU" ]; then
    if command -v nvidia-smi >/dev/null; then NO_GPU="no GPU: nvidia-smi lists none ($(head -c 200 "$OUT/nvidia-smi.err"))"
    else NO_GPU="no GPU: nvidia-smi is not installed (no NVIDIA driver)"; fi
    put gpu '"none"'
    skip_rest "$NO_GPU"
    write_json
    echo "---- gpu_check summary ----"
    echo "gpu:                 none (${NO_GPU#no GPU: }); nothing built or run"
    echo "time:                $(($(date +%s) - START)) s; JSON: $OUT/gpu_check.json"
    exit 2
fi
put gpu "$(jstr "$GPU")"
IFS=',' read -r GPU_NAME CAP DRIVER _ <<<"$GPU"
put gpu_name "$(jstr "${GPU_NAME# }")"
put driver "$(jstr "${DRIVER# }")"
if CLK=$(clocks); then put clocks_before "$CLK"; else skip clocks_before "nvidia-smi gave no clocks"; fi
ARCH=$(echo "$CAP" | tr -d '. ')
ARCH=${ARCH:-90}
echo "gpu: $GPU (building for sm_$ARCH; budget ${BUDGET} s)"
write_json

# ---- build ----------------------------------------------------------------------------------------------------------
if [ $EMULATED = true ]; then
    FLAGS=(-DCMAKE_BUILD_TYPE=Release -DTRN_CUDA_EMULATOR=ON -DTRN_TESTDATA="$TESTDATA")
else
    FLAGS=(-DCMAKE_BUILD_TYPE=Release -DTRN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCMAKE_CUDA_FLAGS=-lineinfo
        -DTRN_TESTDATA="$TESTDATA")
    [ -n "${NVCC:-}" ] && ! command -v nvcc >/dev/null && FLAGS+=(-DCMAKE_CUDA_COMPILER="$NVCC")
fi
put build_flags "$(jstr "${FLAGS[*]}")"
run 90 "$OUT/configure.log" "$OUT/configure.log" cmake -S . -B "$BUILD" "${FLAGS[@]}"
BUILD_RC=$?
[ $BUILD_RC -eq 0 ] && { run 360 "$OUT/build.log" "$OUT/build.log" cmake --build "$BUILD" -j"$(nproc)"; BUILD_RC=$?; }
if [ $BUILD_RC -ne 0 ]; then
    put build_ok false
    skip_rest "not run: the build $(why $BUILD_RC) (see build.log)"
fi
[ $BUILD_RC -eq 0 ] && put build_ok true
write_json

TESTS_OK=false
if [ $BUILD_RC -eq 0 ]; then
    # ---- tests: the GPU tests and the command-line ones (which run --device cuda too); the CPU-only tests run in CI.
    # Serially: the CPU backend's OpenMP threads of two tests at once slow both several times over.
    run 300 "$OUT/ctest.log" "$OUT/ctest.log" bash -c 'cd "$1" && ctest -V -R "test_cuda|test_cli|test_golden_text"' _ "$BUILD"
    RC=$?
    # ctest ends with "N% tests passed, F tests failed out of T", or "100% tests passed out of T" when none failed
    TOTAL=$(grep -oE "tests (failed|passed) out of [0-9]+" "$OUT/ctest.log" | grep -oE "[0-9]+$" | tail -1)
    if [ -n "$TOTAL" ]; then
        FAILED=$(grep -oE "[0-9]+ tests failed out of" "$OUT/ctest.log" | grep -oE "^[0-9]+" | tail -1)
        FAILED=${FAILED:-0}
        SKIPPED=$(grep -c "(Skipped)" "$OUT/ctest.log")
        put tests_passed $((TOTAL - FAILED - SKIPPED)); put tests_failed "$FAILED"; put tests_skipped "$SKIPPED"
        [ "$FAILED" -eq 0 ] && TESTS_OK=true
    else
        for k in tests_passed tests_failed tests_skipped; do skip $k "ctest $(why $RC) before its summary (ctest.log)"; done
    fi
    grep -E "nmse|bitwise|DIFFER|failed" "$OUT/ctest.log" >"$OUT/cuda_parity.txt" 2>/dev/null
    write_json

    # ---- decode: the default (fused kernels, programmatic dependent launch on sm_90), three runs --------------------
    RUNS=()
    for i in 1 2 3; do
        run 60 "$OUT/bench_int8_$i.json" "$OUT/bench_int8_$i.err" "${BENCH[@]}" --synthetic "$MODEL"
        v=$(field "$OUT/bench_int8_$i.json" decode_tokens_per_s)
        [ "$v" != null ] && RUNS+=("$v $OUT/bench_int8_$i.json")
    done
    if [ ${#RUNS[@]} -gt 0 ]; then
        mapfile -t SORTED < <(printf '%s\n' "${RUNS[@]}" | sort -g)
        MEDIAN_FILE=${SORTED[$((${#SORTED[@]} / 2))]#* }
        cp "$MEDIAN_FILE" "$OUT/bench_int8.json"
        put decode_tokens_per_s "$(field "$MEDIAN_FILE" decode_tokens_per_s)"
        put decode_tokens_per_s_min "${SORTED[0]%% *}"
        put decode_tokens_per_s_max "${SORTED[${#SORTED[@]} - 1]%% *}"
        put decode_tokens_per_s_runs "[$(printf '%s\n' "${RUNS[@]}" | cut -d' ' -f1 | paste -sd, | sed 's/,/, /g')]"
        put ms_per_token "$(field "$MEDIAN_FILE" decode_ms_per_token)"
        put achieved_gbs "$(field "$MEDIAN_FILE" achieved_gbs)"
        put bandwidth_gbs "$(field "$MEDIAN_FILE" bandwidth_gbs)"
        put roofline_fraction "$(field "$MEDIAN_FILE" roofline_fraction)"
        DEVICE=$(grep -oE '"device": "[^"]*"' "$MEDIAN_FILE" | head -1 | sed 's/"device": //')
        put device "${DEVICE:-null}"
        KERNELS=$(echo "$DEVICE" | grep -oE "[0-9]+ kernels per token" | grep -oE "^[0-9]+")
        put kernels_per_token "$(num "$KERNELS")" "the device string names no kernel count"
    else
        for k in decode_tokens_per_s decode_tokens_per_s_min decode_tokens_per_s_max decode_tokens_per_s_runs \
            ms_per_token achieved_gbs bandwidth_gbs roofline_fraction device kernels_per_token; do
            skip $k "no decode bench finished (bench_int8_*.err)"
        done
    fi
    write_json

    # ---- the lean ternary kernel (TRN_CUDA_TERNARY=lean; test_cuda above checked its logits bitwise against the
    # classic kernel's): decode speed, and the greedy text against the classic kernel's -----------------------------
    run 60 "$OUT/bench_lean.json" "$OUT/bench_lean.err" env TRN_CUDA_TERNARY=lean "${BENCH[@]}" --synthetic "$MODEL"
    run 60 "$OUT/bench_split32.json" "$OUT/bench_split32.err" env TRN_CUDA_ATTENTION_SPLIT=32 "${BENCH[@]}" --synthetic "$MODEL"
    run 60 "$OUT/bench_lean_split32.json" "$OUT/bench_lean_split32.err" env TRN_CUDA_TERNARY=lean \
        TRN_CUDA_ATTENTION_SPLIT=32 "${BENCH[@]}" --synthetic "$MODEL"
    # attention asking L2 for the next launches' weights (TRN_CUDA_L2_PREFETCH=1; test_cuda checked the same bits)
    run 60 "$OUT/bench_l2_prefetch.json" "$OUT/bench_l2_prefetch.err" env TRN_CUDA_L2_PREFETCH=1 "${BENCH[@]}" \
        --synthetic "$MODEL"
    run 60 "$OUT/bench_lean_l2_prefetch.json" "$OUT/bench_lean_l2_prefetch.err" env TRN_CUDA_TERNARY=lean \
        TRN_CUDA_L2_PREFETCH=1 "${BENCH[@]}" --synthetic "$MODEL"
    # the step's ends folded (TRN_CUDA_FOLD_ENDS=1: embedding row into the first launch, greedy argmax into the LM
    # head; test_cuda checked the same logits and tokens)
    run 60 "$OUT/bench_fold_ends.json" "$OUT/bench_fold_ends.err" env TRN_CUDA_FOLD_ENDS=1 "${BENCH[@]}" \
        --synthetic "$MODEL"
    run 60 "$OUT/bench_lean_fold_ends.json" "$OUT/bench_lean_fold_ends.err" env TRN_CUDA_TERNARY=lean \
        TRN_CUDA_FOLD_ENDS=1 "${BENCH[@]}" --synthetic "$MODEL"
    K=$(grep -oE '[0-9]+ kernels per token' "$OUT/bench_fold_ends.json" 2>/dev/null | head -1 | grep -oE '^[0-9]+')
    if [ -n "$K" ]; then put kernels_per_token_fold_ends "$K"
    else skip kernels_per_token_fold_ends "no device line in bench_fold_ends.json: $(head -c 200 "$OUT/bench_fold_ends.err")"; fi
    for pair in lean:lean split32:split32 lean_split32:lean_split32 l2_prefetch:l2_prefetch \
        lean_l2_prefetch:lean_l2_prefetch fold_ends:fold_ends lean_fold_ends:lean_fold_ends; do
        k=decode_tokens_per_s_${pair%%:*}
        v=$(field "$OUT/bench_${pair#*:}.json" decode_tokens_per_s)
        if [ "$v" != null ]; then put "$k" "$v"; else skip "$k" "$(head -c 200 "$OUT/bench_${pair#*:}.err")"; fi
    done
    # the same variants against the default within one process (profiling/ab_lab: two backends take turns in rounds
    # of AB_STEPS steps; "default_time_over_variant" above 1: the variant is faster), and whether their last logits
    # are bitwise the same
    AB_JSON="" sep=""
    for spec in "lean $MODEL TRN_CUDA_TERNARY=lean TRN_CUDA_TERNARY=classic" \
        "lean_tq1_0 $MODEL_TQ1 TRN_CUDA_TERNARY=lean TRN_CUDA_TERNARY=classic" \
        "fold_ends $MODEL TRN_CUDA_FOLD_ENDS=1 TRN_CUDA_FOLD_ENDS=0" \
        "lean_fold_ends $MODEL TRN_CUDA_TERNARY=lean,TRN_CUDA_FOLD_ENDS=1 TRN_CUDA_TERNARY=classic,TRN_CUDA_FOLD_ENDS=0" \
        "split32 $MODEL TRN_CUDA_ATTENTION_SPLIT=32 TRN_CUDA_ATTENTION_SPLIT=64" \
        "l2_prefetch $MODEL TRN_CUDA_L2_PREFETCH=1 TRN_CUDA_L2_PREFETCH=0"; do
        read -r name model a b <<<"$spec"
        run 40 "$OUT/ab_$name.txt" "$OUT/ab_$name.err" "./$BUILD/ab_lab" --synthetic "$model" --device cuda \
            --a "$a" --b "$b" --rounds "$AB_ROUNDS" --steps "$AB_STEPS"
        rc=$?
        r=$(grep -oE 'median [0-9.]+, quartiles [0-9.]+-[0-9.]+' "$OUT/ab_$name.txt" 2>/dev/null | head -1)
        if [ $rc -eq 0 ] && [ -n "$r" ]; then
            read -r _ med _ q <<<"${r//,/}"
            same=$(grep -q "last logits: identical" "$OUT/ab_$name.txt" && echo true || echo false)
            AB_JSON+="$sep\"$name\": {\"default_time_over_variant\": $(num "$med"), \"quartiles\": [$(num "${q%-*}"),"
            AB_JSON+=" $(num "${q#*-}")], \"logits_identical\": $same}"
        else
            AB_JSON+="$sep\"$name\": $(jstr "$(why $rc): $(head -c 200 "$OUT/ab_$name.err")")"
        fi
        sep=", "
    done
    put in_process_comparisons "{$AB_JSON}"
    write_json
    for k in classic lean; do
        run 60 "$OUT/tl_$k.txt" "$OUT/tl_$k.err" env TRN_CUDA_TERNARY=$k "$TRN" generate --synthetic "$MODEL" \
            -p "Once upon a time" -n 48 --temp 0 --device cuda
    done
    if [ -s "$OUT/tl_classic.txt" ]; then put lean_text_identical "$(same_text "$OUT/tl_lean.txt" "$OUT/tl_classic.txt")"
    else skip lean_text_identical "the classic kernel's generate gave no text: $(head -c 200 "$OUT/tl_classic.err")"; fi
    # ---- batched prefill (TRN_CUDA_PREFILL=batched): a 512-token prompt batched and token by token (TQ2_0, TQ1_0), the
    # greedy text after a prompt batched and token by token, perplexity of a ~10,000-token text both ways -----------
    PREFILL=("$TRN" bench --device cuda --json --prompt-tokens "$PROMPT" --decode-tokens 16)
    run 90 "$OUT/bench_prefill.json" "$OUT/bench_prefill.err" env TRN_CUDA_PREFILL=batched "${PREFILL[@]}" --synthetic "$MODEL"
    run 90 "$OUT/bench_prefill_tq1.json" "$OUT/bench_prefill_tq1.err" env TRN_CUDA_PREFILL=batched "${PREFILL[@]}" \
        --synthetic "$MODEL_TQ1"
    # the dense baseline: the same model with every ternary matrix expanded to FP16, in the same run
    run 90 "$OUT/bench_dense.json" "$OUT/bench_dense.err" env TRN_CUDA_PREFILL=batched "${PREFILL[@]}" \
        --synthetic "$MODEL" --dense f16
    for pair in prefill_tokens_per_s:prefill:prefill_tokens_per_s \
        prefill_token_by_token_tokens_per_s:prefill:prefill_token_by_token_tokens_per_s \
        prefill_tokens_per_s_tq1_0:prefill_tq1:prefill_tokens_per_s \
        dense_f16_decode_tokens_per_s:dense:decode_tokens_per_s dense_f16_prefill_tokens_per_s:dense:prefill_tokens_per_s; do
        IFS=: read -r k file key <<<"$pair"
        v=$(field "$OUT/bench_$file.json" "$key")
        if [ "$v" != null ]; then put "$k" "$v"; else skip "$k" "$(head -c 200 "$OUT/bench_$file.err")"; fi
    done
    for k in steps batched; do
        run 60 "$OUT/tl_prefill_$k.txt" "$OUT/tl_prefill_$k.err" env TRN_CUDA_PREFILL=$k "$TRN" generate \
            --synthetic "$MODEL" -p "$(printf 'Once upon a time %.0s' $(seq "$PROMPT_REPEATS"))" -n 32 --temp 0 --device cuda
    done
    if [ -s "$OUT/tl_prefill_steps.txt" ]; then
        put prefill_text_identical "$(same_text "$OUT/tl_prefill_batched.txt" "$OUT/tl_prefill_steps.txt")"
    else skip prefill_text_identical "generate gave no text: $(head -c 200 "$OUT/tl_prefill_steps.err")"; fi
    for i in $(seq "$TEXT_LINES"); do echo "Once upon a time there was a little robot who liked to count the stars."; done \
        >"$OUT/perplexity_text.txt"
    for k in batched steps; do
        run 60 "$OUT/perplexity_$k.json" "$OUT/perplexity_$k.err" env TRN_CUDA_PREFILL=$k "$TRN" perplexity \
            --synthetic "$MODEL" -f "$OUT/perplexity_text.txt" -c "$PPL_CONTEXT" --device cuda --json
        RC=$?
        if J=$(jfile "$OUT/perplexity_$k.json"); then put "perplexity_$( [ $k = steps ] && echo token_by_token || echo batched)" "$J"
        else skip "perplexity_$( [ $k = steps ] && echo token_by_token || echo batched)" "perplexity $(why $RC) (perplexity_$k.err)"; fi
    done
    write_json

    # ---- the GPU kernel lab: every launch kind and ternary kernel variant, timed alone and checked ----------------------
    if [ $EMULATED = true ]; then # its launches have Trinity-1.1B's shapes: hours on the emulator
        skip kernel_lab "not run on the emulator (Trinity-1.1B's shapes)"
    else
        run 120 "$OUT/kernel_lab.txt" "$OUT/kernel_lab.txt" "./$BUILD/cuda_kernel_lab" --reps 20 --json "$OUT/kernel_lab.json"
        RC=$?
        if [ -s "$OUT/kernel_lab.json" ] && J=$(tr -d '\n' <"$OUT/kernel_lab.json") && [ -n "$J" ]; then put kernel_lab "$J"
        else skip kernel_lab "cuda_kernel_lab $(why $RC) (kernel_lab.txt)"; fi
    fi
    write_json

    # ---- greedy text, GPU against CPU: stories260K (f32 weights) and a ternary model with exact float activations --
    # KEY NAME GENERATE-OPTION...: the text on the GPU and on the CPU, identical or not
    compare_text() {
        local key=$1 name=$2 dev rc=0
        shift 2
        for dev in cuda cpu; do
            run 60 "$OUT/${name}_$dev.txt" "$OUT/${name}_$dev.err" "$TRN" generate "$@" --temp 0 --device $dev || rc=$?
        done
        if [ $rc -eq 125 ]; then skip "$key" "not run: no time left in the budget"
        else put "$key" "$(same_text "$OUT/${name}_cuda.txt" "$OUT/${name}_cpu.txt")"; fi
    }
    if [ -f "$STORIES" ]; then
        compare_text stories260K_text_identical_to_cpu stories -m "$STORIES" -p "" -n 200 -c 512
    else
        skip stories260K_text_identical_to_cpu "no $STORIES (TRN_TESTDATA)"
    fi
    compare_text tiny_f32_text_identical_to_cpu tiny_f32 --synthetic tiny -p "Once upon a time" -n 32 --act f32
    write_json

    # ---- a long context: decode positions past 1,500 (bench sizes its context: prompt + decode + 8) ------------------
    run 120 "$OUT/bench_long.json" "$OUT/bench_long.err" "$TRN" bench --synthetic "$MODEL" --device cuda --json \
        --prompt-tokens "$LONG_PROMPT" --decode-tokens "$LONG_DECODE"
    RC=$?
    if J=$(jfile "$OUT/bench_long.json"); then put long_context "$J"
    else skip long_context "bench $(why $RC) (bench_long.err)"; fi
    write_json

    # ---- weight residency: every mode in one run --------------------------------------------------------------------
    run 150 "$OUT/compare_weights.json" "$OUT/compare_weights.err" "$TRN" bench --synthetic "$MODEL" --device cuda \
        --compare-weights --json --prompt-tokens 8 --decode-tokens "$SHORT_DECODE"
    RC=$?
    if COMPARE=$(jfile "$OUT/compare_weights.json"); then
        COMPARE_WHY=
    else
        COMPARE=null
        COMPARE_WHY="bench --compare-weights $(why $RC): $(head -c 200 "$OUT/compare_weights.err")"
        COMPARE_WHY=", \"compare_not_run\": $(jstr "$COMPARE_WHY")"
    fi
    # the streaming mode's fraction of its bound: the second entry of the comparison's modes
    H2D_FRACTION=$(grep -oE '"h2d_bound_fraction": [0-9.]+' "$OUT/compare_weights.json" 2>/dev/null | sed -n 2p |
        sed 's/.*: //')
    STREAMING_OPEN="{\"compare\": $COMPARE$COMPARE_WHY, \"h2d_bound_fraction\": $(num "$H2D_FRACTION")"
    put streaming "$STREAMING_OPEN, \"text_identical\": null}"
    write_json

    # ---- sequences decoded together (the CUDA backend runs them slot by slot for now) ---------------------------------
    run 150 "$OUT/parallel.json" "$OUT/parallel.err" "$TRN" bench --synthetic "$MODEL" --parallel "$PARALLEL" --device cuda --json
    RC=$?
    if J=$(jfile "$OUT/parallel.json"); then put parallel "$J"
    else skip parallel "bench --parallel $(why $RC) (parallel.err)"; fi
    write_json

    # ---- compute-sanitizer on the one-op tests: out-of-bounds, shared-memory races, barriers --------------------------
    if [ $EMULATED = true ]; then
        skip sanitizer "compute-sanitizer does not run on the emulator"; skip sanitizer_errors "emulated"
    elif SANITIZER=$(find_tool compute-sanitizer); then
        # its share: what is left but the Nsight Compute step's; each tool on both tests before the next, the
        # slowest (racecheck) last
        SHARE=$((DEADLINE - RESERVE - $(date +%s) - 130))
        [ $SHARE -gt 180 ] && SHARE=180
        SAN_END=$(($(date +%s) + SHARE))
        SAN="{" SEP="" ERRORS=0 COUNTED=0
        rm -f "$OUT/sanitizer.txt"
        for tool in memcheck synccheck racecheck; do
            SAN+="$SEP\"$tool\": {"
            SEP2=""
            for t in test_cuda_ops test_cuda_gemv test_cuda_gemm; do
                LOG=$OUT/sanitizer_${tool}_$t.log
                CAP=$((SAN_END - $(date +%s)))
                [ $CAP -gt 60 ] && CAP=60
                if [ $CAP -lt 5 ]; then
                    STATUS="not run: the sanitizers' share of the budget is spent"; N=null
                else
                    run $CAP "$LOG" "$LOG" "$SANITIZER" --tool $tool --error-exitcode 3 "./$BUILD/tests/$t"
                    RC=$?
                    # memcheck and synccheck: "ERROR SUMMARY: N errors"; racecheck: "(N errors, M warnings)"
                    N=$(num "$(grep -oE "ERROR SUMMARY: [0-9]+ error|\([0-9]+ errors?," "$LOG" | grep -oE "[0-9]+" | tail -1)")
                    case $RC in
                        0) STATUS=ok ;; 3) STATUS=errors ;; 77) STATUS="skipped (the test found no GPU)" ;;
                        *) STATUS=$(why $RC) ;;
                    esac
                    if [ "$N" != null ]; then ERRORS=$((ERRORS + N)); COUNTED=1
                    elif [ $RC -eq 3 ]; then ERRORS=$((ERRORS + 1)); COUNTED=1; fi
                fi
                SAN+="$SEP2\"$t\": {\"status\": $(jstr "$STATUS"), \"errors\": $N}"
                SEP2=", "
                echo "compute-sanitizer --tool $tool $t: $STATUS, errors $N" >>"$OUT/sanitizer.txt"
            done
            SAN+="}"
            SEP=", "
        done
        put sanitizer "$SAN}"
        if [ $COUNTED -eq 1 ]; then put sanitizer_errors $ERRORS; else skip sanitizer_errors "no sanitizer run finished"; fi
    else
        skip sanitizer "compute-sanitizer not found"; skip sanitizer_errors "compute-sanitizer not found"
    fi
    write_json

    # ---- Nsight Compute: a few launches of the ternary and attention kernels (profiling/nsight.sh's ncu part) --------
    SHARE=$((DEADLINE - RESERVE - $(date +%s) - 20))
    [ $SHARE -gt 150 ] && SHARE=150
    if [ $EMULATED = true ]; then
        skip nsight_compute "Nsight Compute does not run on the emulator"
    elif [ $SHARE -ge 40 ]; then
        run $((SHARE + 15)) "$OUT/nsight.log" "$OUT/nsight.log" env NSIGHT_STEPS=ncu NSIGHT_TRINITY="$TRN" \
            NSIGHT_BUDGET_S=$SHARE NSIGHT_LAUNCHES=6 profiling/nsight.sh "$OUT/nsight"
        RC=$?
        LINE=$(grep -m1 "^nsight: ncu" "$OUT/nsight.log" | sed 's/^nsight: //')
        PARSED=$(jfile "$OUT/nsight/nsight_summary.json") || PARSED=null
        NS="{\"exit\": $RC, \"status\": $(jstr "${LINE:-$(why $RC)}"), \"summary\": \"nsight/nsight_summary.txt\""
        put nsight_compute "$NS, \"parsed\": $PARSED}"
    else
        skip nsight_compute "not run: under 40 s left in the budget"
    fi
    write_json

    # ---- the Pascal code path (TRN_CUDA_PASCAL: no programmatic dependent launch) built and tested on this GPU ---------
    # shellcheck disable=SC2016 # expanded by the inner shell, from its arguments
    run 240 "$OUT/pascal_build.log" "$OUT/pascal_build.log" bash -c 'cmake -S . -B "$0" "$@" -DTRN_CUDA_PASCAL=ON &&
        cmake --build "$0" -j"$(nproc)" --target test_cuda test_cuda_ops test_cuda_gemv test_cuda_gemm trinity make_test_models' \
        "$BUILD-pascal" "${FLAGS[@]}"
    RC=$?
    if [ $RC -eq 0 ]; then
        run 150 "$OUT/pascal_ctest.log" "$OUT/pascal_ctest.log" bash -c 'cd "$1" && ctest -V -R "^test_cuda(_ops|_gemv|_gemm)?$"' _ \
            "$BUILD-pascal"
        RC=$?
        PASCAL_TOTAL=$(grep -oE "tests (failed|passed) out of [0-9]+" "$OUT/pascal_ctest.log" | grep -oE "[0-9]+$" | tail -1)
        PASCAL_FAILED=$(grep -oE "[0-9]+ tests failed out of" "$OUT/pascal_ctest.log" | grep -oE "^[0-9]+" | tail -1)
        if [ -n "$PASCAL_TOTAL" ]; then
            put pascal_path "{\"tests\": $PASCAL_TOTAL, \"failed\": ${PASCAL_FAILED:-0}, \"described\": $(jstr "$(grep -m1 -o 'Pascal code path' "$OUT/pascal_ctest.log")")}"
        else
            skip pascal_path "Pascal-mode ctest $(why $RC) (pascal_ctest.log)"
        fi
    else
        skip pascal_path "Pascal-mode build $(why $RC) (pascal_build.log)"
    fi
    write_json

    # ---- the switches that bisect the decode, and the time per kind of launch ------------------------------------------
    SHORT=("$TRN" bench --synthetic "$MODEL" --device cuda --json --prompt-tokens 8 --decode-tokens "$SHORT_DECODE")
    run 60 "$OUT/bench_nopdl.json" "$OUT/bench_nopdl.err" env TRN_CUDA_NO_PDL=1 "${BENCH[@]}" --synthetic "$MODEL"
    run 60 "$OUT/bench_unfused.json" "$OUT/bench_unfused.err" env TRN_CUDA_NO_FUSION=1 "${BENCH[@]}" --synthetic "$MODEL"
    run 60 "$OUT/bench_nograph.json" "$OUT/bench_nograph.err" env TRN_CUDA_NO_GRAPH=1 "${SHORT[@]}"
    run 60 "$OUT/bench_f32.json" "$OUT/bench_f32.err" "${BENCH[@]}" --synthetic "$MODEL" --act f32
    run 60 "$OUT/bench_tq1.json" "$OUT/bench_tq1.err" "${BENCH[@]}" --synthetic "$MODEL_TQ1"
    for pair in no_pdl:nopdl unfused:unfused no_graph:nograph f32_act:f32 tq1_0:tq1; do
        k=decode_tokens_per_s_${pair%%:*}
        v=$(field "$OUT/bench_${pair#*:}.json" decode_tokens_per_s)
        if [ "$v" != null ]; then put "$k" "$v"; else skip "$k" "$(head -c 200 "$OUT/bench_${pair#*:}.err")"; fi
    done
    # events between launches (without programmatic dependent launch), printed when the backend is freed
    run 60 "$OUT/profile.json" "$OUT/profile.txt" env TRN_CUDA_PROFILE=1 "$TRN" bench --synthetic "$MODEL" \
        --device cuda --json --prompt-tokens 32 --decode-tokens "$DECODE"
    RC=$?
    if grep -q "^profile" "$OUT/profile.txt"; then
        put profile_per_launch_kind "$(jstr "$(grep "^profile" "$OUT/profile.txt")")"
    else
        skip profile_per_launch_kind "TRN_CUDA_PROFILE bench $(why $RC) (profile.txt)"
    fi
    write_json

    # ---- the greedy text of every weight mode against resident --------------------------------------------------------
    TEXT_SAME=true
    if [ -s "$OUT/stories_cuda.txt" ]; then
        for mode in "streaming" "streaming --resident-layers 2" "mapped"; do
            tag=$(echo "$mode" | tr -c 'a-z0-9\n' '_')
            # shellcheck disable=SC2086 # the mode is its flags, split on purpose
            run 60 "$OUT/stories_$tag.txt" "$OUT/modes_stories_$tag.err" "$TRN" generate -m "$STORIES" -p "" \
                -n 200 -c 512 --temp 0 --device cuda --weights $mode
            [ "$(same_text "$OUT/stories_$tag.txt" "$OUT/stories_cuda.txt")" = true ] || TEXT_SAME=false
        done
    fi
    run 60 "$OUT/tl_resident.txt" "$OUT/modes_tl_resident.err" "$TRN" generate --synthetic "$MODEL" \
        -p "Once upon a time" -n 48 --temp 0 --device cuda
    for mode in "streaming" "streaming --resident-layers $HALF_LAYERS" "mapped"; do
        tag=$(echo "$mode" | tr -c 'a-z0-9\n' '_')
        # shellcheck disable=SC2086
        run 60 "$OUT/tl_$tag.txt" "$OUT/modes_tl_$tag.err" "$TRN" generate --synthetic "$MODEL" \
            -p "Once upon a time" -n 48 --temp 0 --device cuda --weights $mode
        [ "$(same_text "$OUT/tl_$tag.txt" "$OUT/tl_resident.txt")" = true ] || TEXT_SAME=false
    done
    if grep -q "not run: no time left" "$OUT"/modes_*.err 2>/dev/null; then
        put streaming "$STREAMING_OPEN, \"text_identical\": null, \"text_not_compared\": \"no time left in the budget\"}"
    else
        put streaming "$STREAMING_OPEN, \"text_identical\": $TEXT_SAME}"
    fi
    write_json
fi

if CLK=$(clocks); then put clocks_after "$CLK"; else skip clocks_after "nvidia-smi gave no clocks"; fi
write_json

# ---- summary ------------------------------------------------------------------------------------------------------
v() { local x=${VAL[$1]:-}; if [ -n "$x" ] && [ "$x" != null ]; then echo "$x"; else echo "n/a"; fi; }
fv() { local x; x=$(field "$@"); if [ "$x" != null ]; then echo "$x"; else echo "n/a"; fi; } # FILE KEY, or n/a
ELAPSED=$(($(date +%s) - START))
echo "---- gpu_check summary ----"
echo "gpu:                 $GPU"
echo "commit:              $(v commit | tr -d '"') (dirty: $(v dirty)); nvcc $(v nvcc | tr -d '"')"
echo "clocks before/after: $(v clocks_before) / $(v clocks_after)"
echo "build:               $([ $BUILD_RC -eq 0 ] && echo ok || echo "FAILED: $(why $BUILD_RC) (see $OUT/build.log)")"
echo "tests:               $(v tests_passed) passed, $(v tests_failed) failed, $(v tests_skipped) skipped (see $OUT/ctest.log)"
if [ $BUILD_RC -eq 0 ]; then
    echo "decode (int8 act):   $(v decode_tokens_per_s) tokens/s median of $(v decode_tokens_per_s_runs)" \
        "(min $(v decode_tokens_per_s_min), max $(v decode_tokens_per_s_max)), $(v ms_per_token) ms/token," \
        "$(v achieved_gbs) GB/s, $(v kernels_per_token) kernels per token"
    echo "memory bandwidth:    $(v bandwidth_gbs) GB/s (device copy probe); decode at $(v roofline_fraction) of it"
    echo "long context:        $(fv "$OUT/bench_long.json" decode_tokens_per_s) tokens/s decoding positions" \
        "$LONG_PROMPT-$((LONG_PROMPT + LONG_DECODE - 1)) ($(fv "$OUT/bench_long.json" decode_ms_per_token) ms/token)"
    echo "switches:            no PDL $(v decode_tokens_per_s_no_pdl), unfused $(v decode_tokens_per_s_unfused)," \
        "no graph $(v decode_tokens_per_s_no_graph) tokens/s"
    echo "other:               f32 act $(v decode_tokens_per_s_f32_act), TQ1_0 $(v decode_tokens_per_s_tq1_0) tokens/s"
    echo "lean ternary kernel: $(v decode_tokens_per_s_lean) tokens/s (TRN_CUDA_TERNARY=lean);" \
        "greedy text identical to the classic kernel's: $(v lean_text_identical)"
    echo "attention split 32:  $(v decode_tokens_per_s_split32) tokens/s (TRN_CUDA_ATTENTION_SPLIT=32)," \
        "with the lean kernel $(v decode_tokens_per_s_lean_split32)"
    echo "L2 prefetch:         $(v decode_tokens_per_s_l2_prefetch) tokens/s (TRN_CUDA_L2_PREFETCH=1)," \
        "with the lean kernel $(v decode_tokens_per_s_lean_l2_prefetch)"
    echo "ends folded:         $(v decode_tokens_per_s_fold_ends) tokens/s (TRN_CUDA_FOLD_ENDS=1," \
        "$(v kernels_per_token_fold_ends) kernels per token), with the lean kernel $(v decode_tokens_per_s_lean_fold_ends)"
    AB=$(v in_process_comparisons | grep -oE '"[a-z0-9_]+": \{"default_time_over_variant": [0-9.]+' |
        sed -E 's/"([a-z0-9_]+)".*: ([0-9.]+)/\1 \2/' | paste -sd',' | sed 's/,/, /g')
    echo "in one process:      ${AB:-n/a} (ab_lab: default time / variant time, above 1 the variant is faster)"
    echo "batched prefill:     $(v prefill_tokens_per_s) tokens/s for a $PROMPT-token prompt (TQ2_0; token by token" \
        "$(v prefill_token_by_token_tokens_per_s)), TQ1_0 $(v prefill_tokens_per_s_tq1_0); text after a batched prompt" \
        "identical: $(v prefill_text_identical)"
    echo "dense f16 baseline:  decode $(v dense_f16_decode_tokens_per_s) tokens/s, prefill ($PROMPT tokens, batched)" \
        "$(v dense_f16_prefill_tokens_per_s) tokens/s (bench --dense f16)"
    PPL_B=$(v perplexity_batched | grep -oE '"(perplexity|tokens|tokens_per_s)": [0-9.]+' | paste -sd' ')
    PPL_S=$(v perplexity_token_by_token | grep -oE '"(perplexity|tokens_per_s)": [0-9.]+' | paste -sd' ')
    echo "perplexity:          batched ${PPL_B:-n/a}; token by token ${PPL_S:-n/a}"
    echo "kernel lab (us per launch with PDL where sm_90; $BUILD/cuda_kernel_lab, $OUT/kernel_lab.txt):"
    grep -E "^(ternary|lm_head|attention|sampler)" "$OUT/kernel_lab.txt" 2>/dev/null | sed 's/^/  /'
    SAME_MODES=$(v streaming | grep -oE '"text_identical": [a-z]+' | sed 's/.*: //')
    echo "weights (--compare-weights; text of every mode identical: ${SAME_MODES:-n/a}):"
    grep -oE '\{"weights": "[^"]*"[^}]*\}' "$OUT/compare_weights.json" 2>/dev/null |
        sed -E 's/^\{"weights": "([^"]*)".*"decode_tokens_per_s": ([0-9.]+).*"h2d_bound_fraction": ([0-9.]+).*/'\
'  \1: \2 tokens\/s, \3 of the bus bound/'
    PAR=$(grep -oE '"sequences": [0-9]+, "ms_per_step": [0-9.]+, "tokens_per_s": [0-9.]+' "$OUT/parallel.json" 2>/dev/null |
        sed -E 's/"sequences": ([0-9]+).*"tokens_per_s": ([0-9.]+)/\1: \2/' | paste -sd';' | sed 's/;/; /g')
    echo "parallel:            ${PAR:-n/a} (sequences: aggregate tokens/s)"
    grep "^profile" "$OUT/profile.txt" 2>/dev/null
    echo "attention kernels (test_cuda_ops: the split kernel against the CPU, and both timed):"
    grep -E "attention.*(worst|us)" "$OUT/ctest.log" 2>/dev/null | sed 's/^[0-9]*: /  /'
    PASCAL=$(v pascal_path | grep -oE '"(tests|failed)": [0-9]+' | sed 's/"//g' | paste -sd' ')
    echo "pascal code path:    ${PASCAL:-n/a} (TRN_CUDA_PASCAL=ON: test_cuda, _ops, _gemv, _gemm on this GPU)"
    echo "stories260K text:    $(v stories260K_text_identical_to_cpu) (identical to the CPU's);" \
        "tiny --act f32: $(v tiny_f32_text_identical_to_cpu)"
    echo "compute-sanitizer:   $(v sanitizer_errors) errors${WHY[sanitizer]:+ (${WHY[sanitizer]})}"
    sed 's/^compute-sanitizer /  /' "$OUT/sanitizer.txt" 2>/dev/null
    if [ -n "${VAL[nsight_compute]:-}" ]; then
        echo "nsight compute:      $(grep -m1 "^nsight: ncu" "$OUT/nsight.log" | sed 's/^nsight: ncu: //')" \
            "($OUT/nsight/nsight_summary.txt)"
    else
        echo "nsight compute:      ${WHY[nsight_compute]:-n/a}"
    fi
fi
NOT_RUN=$(for k in "${KEYS[@]}"; do [ -n "${VAL[$k]:-}" ] || echo "$k"; done | paste -sd' ')
echo "not run:             ${NOT_RUN:-nothing} (reasons in the JSON's not_run)"
echo "time:                ${ELAPSED} s of ${BUDGET}; JSON: $OUT/gpu_check.json"
[ $BUILD_RC -eq 0 ] && [ "$TESTS_OK" = true ]
