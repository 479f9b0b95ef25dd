#!/usr/bin/env bash
# run_fuzzers.sh: runs the libFuzzer targets of a TRN_FUZZ=ON build, one after the other, each for SECONDS.
#
#   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS [TARGET...]     (TARGET: gguf, tokenizer, llama2c, spm_model,
#                                                                safetensors, trin, tokenizer_json, server; default
#                                                                all built)
#
# Each target starts from a writable copy of its committed corpus (tests/fuzz/corpus/NAME) in a temporary
# directory, so the repository is never modified; new inputs and crash files stay in that directory
# ($FUZZ_WORK_DIR, default a fresh mktemp -d, kept when anything was found and printed at the end).
# Prints one line per target: "fuzz NAME: N execs, cov C, ft F, corpus K" (from libFuzzer's final stats), and
# exits 1 with the crash file's path when a target found a crash, a leak, a timeout or a sanitizer error (UBSan
# reports are made fatal here). Extra libFuzzer flags: $FUZZ_FLAGS (e.g. FUZZ_FLAGS="-jobs=2").
set -u

if [ $# -lt 2 ]; then
    echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
    exit 2
fi
BUILD=$1
SECONDS_EACH=$2
shift 2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CORPUS=$SRC/tests/fuzz/corpus
ALL="gguf tokenizer llama2c spm_model safetensors trin tokenizer_json server"
TARGETS=${*:-$ALL}

# Longest input per target: a little above the largest seed of each format.
max_len() {
    case $1 in
        gguf) echo 65536 ;;
        llama2c) echo 16384 ;;
        safetensors|tokenizer_json|server) echo 8192 ;;
        trin|spm_model) echo 4096 ;;
        tokenizer) echo 2048 ;;
        *) echo 4096 ;;
    esac
}

WORK=${FUZZ_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/trn-fuzz-run-XXXXXX")}
mkdir -p "$WORK"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}

status=0
ran=0
for name in $TARGETS; do
    exe=$BUILD/tests/fuzz/fuzz_$name
    if [ ! -x "$exe" ]; then
        if [ $# -gt 0 ]; then
            echo "fuzz $name: $exe not built (configure with -DTRN_FUZZ=ON and clang)" >&2
            status=1
        fi
        continue # a target left out of this build (no cJSON) is skipped when running all
    fi
    ran=$((ran + 1))
    dir=$WORK/$name
    mkdir -p "$dir/corpus" "$dir/artifacts"
    if [ -d "$CORPUS/$name" ]; then
        cp -n "$CORPUS/$name"/* "$dir/corpus/" 2>/dev/null
    fi
    log=$dir/fuzz.log
    # shellcheck disable=SC2086
    "$exe" "$dir/corpus" -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$name")" -timeout=20 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" ${FUZZ_FLAGS:-} >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # the last status line: "#N  DONE/pulse/NEW  cov: C ft: F corp: K/..."
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    echo "fuzz $name: ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
    crash=$(ls "$dir/artifacts"/* 2>/dev/null | head -1)
    if [ $rc -ne 0 ] || [ -n "$crash" ] ||
        grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
        reason=$(grep -m1 -E 'ERROR: |runtime error:|SUMMARY: ' "$log")
        echo "fuzz $name: FOUND (exit $rc): ${reason:-see the log}" >&2
        echo "fuzz $name: reproducer: ${crash:-none written}; log: $log" >&2
        status=1
    fi
done
if [ $ran -eq 0 ]; then
    echo "run_fuzzers: no fuzz_* executables in $BUILD/tests/fuzz (configure with -DTRN_FUZZ=ON and clang)" >&2
    exit 1
fi
if [ $status -eq 0 ] && [ -z "${FUZZ_WORK_DIR:-}" ]; then
    rm -rf "$WORK"
else
    echo "run_fuzzers: inputs, logs and artifacts in $WORK" >&2
fi
exit $status
