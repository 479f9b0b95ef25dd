#!/usr/bin/env bash
# nsight.sh OUT_DIR [MODEL [BENCH_OPTION...]]: `trinity bench --device cuda` under Nsight Systems and Nsight Compute,
# each where it is installed, and a summary of both in OUT_DIR/nsight_summary.txt.
#
# MODEL: a GGUF file, or the name of a built-in synthetic model (default tinyllama: --synthetic tinyllama); the
# BENCH_OPTIONs after it go to trinity bench (e.g. --act f32). Both profilers record only the timed decode steps:
# profiling/bench.c brackets them with cudaProfilerStart/Stop (cuda/profiler.cu).
#
# Owns: the build folder build-nsight (Release, CUDA, -lineinfo, for the GPU's architecture; only the trinity
# target), and in OUT_DIR:
#   trinity.nsys-rep, trinity_cuda_gpu_kern_sum.csv, trinity_nvtx_sum.csv, nsys_stats.txt
#       Nsight Systems: CUDA and NVTX trace with graph nodes traced one by one (--cuda-graph-trace=node), then
#       `nsys stats` of the kernels and of the NVTX ranges (CSV and text);
#   trinity.ncu-rep, ncu_details.csv, ncu_raw.csv, ncu_details.txt
#       Nsight Compute: the first NSIGHT_LAUNCHES launches of the kernels matching NSIGHT_KERNELS, graph nodes one
#       by one, sections SpeedOfLight, MemoryWorkloadAnalysis, WarpStateStats, InstructionStats, SourceCounters,
#       with the CUDA source imported;
#   nsight_summary.txt, nsight_summary.json
#       what ran (and what could not, in one line each), the top kernels by time, and per profiled launch its DRAM
#       throughput, warp instructions executed and issued and top stall reasons (profiling/nsight_summary.py);
#   *.log: every command's output.
# Environment: NSIGHT_BUDGET_S (seconds for everything, build included; each step's timeout comes out of what is
# left; default 600), NSIGHT_STEPS ("nsys ncu", space-separated; one of them to run only that), NSIGHT_LAUNCHES
# (default 8), NSIGHT_KERNELS (a regex; default ternary|attention: the fused ternary products and both attention
# kernels), NSIGHT_TRINITY (a CUDA build's trinity to use instead of building; scripts/gpu_check.sh passes its own).
# Exit status: 0 when every step that could run succeeded, 1 when one failed, 2 when nothing could run (no GPU,
# neither profiler installed). It never stops at the first missing tool: it says which, and does the rest.
set -uo pipefail
OUT=${1:?usage: profiling/nsight.sh OUT_DIR [MODEL [BENCH_OPTION...]]}
shift
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 1
MODEL=${1:-tinyllama}
[ $# -gt 0 ] && shift
absolute() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
if [ "$MODEL" = "--synthetic" ]; then # the flag spelled out: --synthetic NAME, -m FILE
    MODEL_ARGS=(--synthetic "${1:?--synthetic needs a name}")
    shift
elif [ "$MODEL" = "-m" ]; then
    MODEL_ARGS=(-m "$(absolute "${1:?-m needs a file}")")
    shift
elif [ -f "$MODEL" ]; then
    MODEL_ARGS=(-m "$(absolute "$MODEL")")
elif [[ $MODEL == *.gguf ]]; then
    echo "nsight: no such model file: $MODEL" >&2
    exit 1
else
    MODEL_ARGS=(--synthetic "$MODEL")
fi
EXTRA=("$@")
TRINITY=${NSIGHT_TRINITY:-}
[ -n "$TRINITY" ] && TRINITY=$(absolute "$TRINITY")
cd "$(dirname "$0")/.." || exit 1

BUDGET=${NSIGHT_BUDGET_S:-600}
DEADLINE=$(($(date +%s) + BUDGET))
STEPS=" ${NSIGHT_STEPS:-nsys ncu} "
LAUNCHES=${NSIGHT_LAUNCHES:-8}
KERNELS=${NSIGHT_KERNELS:-ternary|attention}
SUMMARY=$OUT/nsight_summary.txt
# what an earlier run left here, so that no summary reads it as this run's
(cd "$OUT" && rm -f trinity.nsys-rep trinity.qdrep trinity.sqlite trinity_*sum*.csv nsys_*.log nsys_stats.txt \
    trinity.ncu-rep ncu_*.csv ncu_*.log ncu_details.txt configure.log build.log nsight_summary.txt nsight_summary.json)
NOTES=()     # what ran and what did not, one line each: the head of the summary
FAILED=0     # a step that could run failed
PROFILED=0   # a profiler wrote a report
say() { echo "nsight: $*"; NOTES+=("$*"); }

# A tool on PATH, else the newest in the usual install folders of the CUDA toolkit and the Nsight packages.
find_tool() {
    local name=$1 hit
    hit=$(command -v "$name" 2>/dev/null) && { echo "$hit"; return 0; }
    hit=$(for c in "${CUDA_HOME:-/usr/local/cuda}/bin/$name" /usr/local/cuda*/bin/"$name" \
        /usr/local/cuda*/nsight-*/"$name" /usr/local/cuda*/nsight-*/bin/"$name" /opt/nvidia/nsight-*/*/"$name" \
        /opt/nvidia/nsight-*/*/bin/"$name"; do [ -x "$c" ] && echo "$c"; done | sort -V | tail -1)
    [ -n "$hit" ] && echo "$hit"
}

# bounded CAP LOG COMMAND...: COMMAND with its output in LOG and a timeout of CAP seconds or what is left of the
# budget, whichever is less. Status: the command's; 124 or 137 when it timed out; 125 when no time was left to start.
bounded() {
    local cap=$1 log=$2 left
    shift 2
    left=$((DEADLINE - $(date +%s)))
    [ "$left" -lt "$cap" ] && cap=$left
    if [ "$cap" -lt 10 ]; then
        echo "not run: the time budget (NSIGHT_BUDGET_S=$BUDGET) is spent" >"$log"
        return 125
    fi
    echo "\$ $*" >"$log"
    timeout -k 10 "$cap" "$@" >>"$log" 2>&1
}
upto() { # MAX KEEP: MAX seconds, or what is left of the budget less KEEP seconds for the steps after it
    local left=$((DEADLINE - $(date +%s) - $2))
    if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
why() { # a step's status in words
    case $1 in
        0) echo "ok" ;; 124 | 137) echo "timed out" ;; 125) echo "not run: no time left in the budget" ;;
        *) echo "failed (exit $1)" ;;
    esac
}

# ---- what is here ------------------------------------------------------------------------------------------------
GPU=$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -1)
NSYS=$(find_tool nsys) || NSYS=
NCU=$(find_tool ncu) || NCU=
NVCC=$(find_tool nvcc) || NVCC=
PYTHON=$(command -v python3) || PYTHON=
if [ -z "$GPU" ]; then
    if command -v nvidia-smi >/dev/null; then say "no GPU: nvidia-smi lists none; nothing to profile"
    else say "no GPU: nvidia-smi is not installed (no NVIDIA driver); nothing to profile"; fi
else
    say "gpu: $GPU"
fi
GET="from the CUDA toolkit's packages or developer.nvidia.com"
case $STEPS in *" nsys "*) [ -n "$NSYS" ] || say "nsys (Nsight Systems) is not installed: no timeline (get it $GET)" ;;
esac
case $STEPS in *" ncu "*) [ -n "$NCU" ] || say "ncu (Nsight Compute) is not installed: no kernel metrics" \
    "(get it $GET)" ;;
esac
[ -n "$TRINITY" ] || [ -n "$NVCC" ] || say "nvcc (the CUDA toolkit) is not installed: no CUDA build to profile"
[ -n "$PYTHON" ] || say "python3 is not installed: the summary lists the outputs without parsing them"
RUN_NSYS=; RUN_NCU=
case $STEPS in *" nsys "*) [ -n "$NSYS" ] && RUN_NSYS=1 ;; esac
case $STEPS in *" ncu "*) [ -n "$NCU" ] && RUN_NCU=1 ;; esac

write_summary() {
    {
        echo "nsight.sh $(date -u +%Y-%m-%dT%H:%M:%SZ):" \
            "trinity bench ${MODEL_ARGS[*]}${EXTRA[*]:+ ${EXTRA[*]}} --device cuda"
        printf '%s\n' "${NOTES[@]}"
        local parsed=
        [ -n "$PYTHON" ] && parsed=$("$PYTHON" profiling/nsight_summary.py "$OUT" 2>&1)
        [ -n "$parsed" ] && echo "$parsed"
        local files=()
        for f in "$OUT"/*; do
            case ${f##*/} in nsight_summary.* | "*") ;; *) files+=("${f##*/}") ;; esac
        done
        echo "files in $OUT: ${files[*]:-none}"
    } >"$SUMMARY"
}

if [ -z "$GPU" ] || { [ -z "$RUN_NSYS" ] && [ -z "$RUN_NCU" ]; } || { [ -z "$TRINITY" ] && [ -z "$NVCC" ]; }; then
    [ -n "$GPU" ] && [ -z "$RUN_NSYS" ] && [ -z "$RUN_NCU" ] &&
        say "no profiler of NSIGHT_STEPS (${STEPS# }) is installed: nothing to run"
    write_summary
    echo "nsight: nothing profiled; $SUMMARY"
    exit 2
fi

# ---- a CUDA build with line information (for the source view of Nsight Compute) ------------------------------------
if [ -z "$TRINITY" ]; then
    ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
    ARCH=${ARCH:-90}
    CONFIG=(-DCMAKE_BUILD_TYPE=Release -DTRN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCMAKE_CUDA_FLAGS=-lineinfo
        -DTRN_BUILD_TESTS=OFF)
    command -v nvcc >/dev/null || CONFIG+=(-DCMAKE_CUDA_COMPILER="$NVCC")
    bounded 120 "$OUT/configure.log" cmake -S . -B build-nsight "${CONFIG[@]}"
    rc=$?
    [ $rc -eq 0 ] && { bounded 480 "$OUT/build.log" cmake --build build-nsight -j"$(nproc)" --target trinity; rc=$?; }
    if [ $rc -ne 0 ]; then
        say "build (sm_$ARCH, -lineinfo): $(why $rc); see $OUT/build.log"
        write_summary
        exit 1
    fi
    say "build: build-nsight (sm_$ARCH, -lineinfo)"
    TRINITY=./build-nsight/trinity
fi

# ---- Nsight Systems: the timeline of the timed decode steps, then the kernel and NVTX summaries --------------------
if [ -n "$RUN_NSYS" ]; then
    KEEP=30 # nsys stats
    [ -n "$RUN_NCU" ] && KEEP=150
    bounded "$(upto 180 $KEEP)" "$OUT/nsys_profile.log" "$NSYS" profile -t cuda,nvtx --cuda-graph-trace=node \
        --sample=none --cpuctxsw=none --capture-range=cudaProfilerApi --capture-range-end=stop \
        --force-overwrite=true -o "$OUT/trinity" \
        "$TRINITY" bench "${MODEL_ARGS[@]}" --device cuda --prompt-tokens 32 --decode-tokens 128 "${EXTRA[@]}"
    rc=$?
    REP=
    for f in "$OUT"/trinity.nsys-rep "$OUT"/trinity.qdrep; do [ -f "$f" ] && REP=$f && break; done
    if [ -n "$REP" ]; then
        PROFILED=1
        # CSV for the summary (OUT/trinity_<report>.csv), text for reading; the older report names where these fail
        bounded 120 "$OUT/nsys_stats.log" "$NSYS" stats --force-export=true --report cuda_gpu_kern_sum \
            --report nvtx_sum --format csv --output "$OUT/trinity" "$REP"
        compgen -G "$OUT/trinity_*kern*sum*.csv" >/dev/null ||
            bounded 120 "$OUT/nsys_stats_old.log" "$NSYS" stats --report gpukernsum --report nvtxsum \
                --format csv --output "$OUT/trinity" "$REP"
        bounded 60 "$OUT/nsys_stats_text.log" "$NSYS" stats --report cuda_gpu_kern_sum --report nvtx_sum "$REP"
        cp "$OUT/nsys_stats_text.log" "$OUT/nsys_stats.txt"
        if compgen -G "$OUT/trinity_*kern*sum*.csv" >/dev/null; then
            say "nsys: $(why $rc); $(basename "$REP") of the timed decode steps, kernel and NVTX summaries" \
                "(nsys_stats.txt)"
        else
            say "nsys: $(why $rc); $(basename "$REP") written, but nsys stats gave no kernel summary" \
                "(see nsys_stats.log)"
            FAILED=1
        fi
    else
        say "nsys: $(why $rc), no report; see $OUT/nsys_profile.log"
        FAILED=1
    fi
fi

# ---- Nsight Compute: a few launches of the ternary and attention kernels ----------------------------------------
if [ -n "$RUN_NCU" ]; then
    bounded "$(upto 300 30)" "$OUT/ncu_profile.log" "$NCU" --graph-profiling node --profile-from-start off \
        --kernel-name "regex:$KERNELS" --launch-count "$LAUNCHES" \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
        --section InstructionStats --section SourceCounters --import-source yes \
        --force-overwrite --export "$OUT/trinity" \
        "$TRINITY" bench "${MODEL_ARGS[@]}" --device cuda --prompt-tokens 8 --decode-tokens 8 "${EXTRA[@]}"
    rc=$?
    if grep -q "ERR_NVGPUCTRPERM" "$OUT/ncu_profile.log"; then
        PERM=NVreg_RestrictProfilingToAdminUsers=0
        say "ncu: no permission to read the GPU's performance counters (ERR_NVGPUCTRPERM): run it as root, or let" \
            "every user read them: \`sudo modprobe nvidia $PERM\` as the driver loads (to keep it: 'options nvidia" \
            "$PERM' in a file under /etc/modprobe.d/, then reboot)"
        FAILED=1
    elif [ -s "$OUT/trinity.ncu-rep" ]; then
        PROFILED=1
        # --print-units base: no auto-scaled units in the CSV (the summary scales what an older ncu still scales)
        for page in details raw; do
            bounded 60 "$OUT/ncu_$page.csv" "$NCU" --import "$OUT/trinity.ncu-rep" --page $page --csv \
                --print-units base ||
                bounded 60 "$OUT/ncu_$page.csv" "$NCU" --import "$OUT/trinity.ncu-rep" --page $page --csv
            sed -i '1{/^\$ /d}' "$OUT/ncu_$page.csv" # bounded's first line: the command
        done
        bounded 60 "$OUT/ncu_details.txt" "$NCU" --import "$OUT/trinity.ncu-rep" --page details
        n=$(grep -c '^"[0-9]' "$OUT/ncu_raw.csv" 2>/dev/null)
        say "ncu: $(why $rc); trinity.ncu-rep with ${n:-0} launches of regex:$KERNELS" \
            "(open it in ncu-ui for the source view)"
        [ "${n:-0}" -gt 0 ] || FAILED=1
    else
        if grep -q "No kernels were profiled" "$OUT/ncu_profile.log"; then
            say "ncu: $(why $rc), no kernel matched regex:$KERNELS inside the capture range; see $OUT/ncu_profile.log"
        else
            say "ncu: $(why $rc), no report; see $OUT/ncu_profile.log"
        fi
        FAILED=1
    fi
fi

write_summary
echo "nsight: summary in $SUMMARY"
[ "$FAILED" -eq 0 ] || exit 1
[ "$PROFILED" -eq 1 ] || exit 2
exit 0
