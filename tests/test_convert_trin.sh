#!/usr/bin/env bash
# test_convert_trin.sh: `trinity convert --from trin` end to end, against goldens made by implementations Trinity
# did not write (tests/golden/convert/, see convert_lib.sh).
#
#   bash tests/test_convert_trin.sh TRINITY MAKE_TEST_MODELS      (env: TRN_SOURCE_DIR; optional)
#
#   conversions  trin_tiny.bin with --base hf_tiny, as tq2_0 and tq1_0: the tensor types `info` shows, the top-1
#           id and logit at every position equal the golden's (always runs) and, with numpy, the full logits
#           within 1e-6 normalized squared error (float-activation mode); tokenize equals SentencePiece's ids.
#   gguf-py (needs python3 with gguf and numpy) both files load with gguf.GGUFReader, with the expected tensors
#           and types, and a NumPy forward pass over gguf-py's dequantized tensors matches the golden within 1e-6.
#   llama.cpp (optional, llama-cpp-python) loads the tq2_0 file; its logits equal trinity's int8-activation logits
#           (but for int8 rounding-boundary flips) and stay near the float golden (nmse <= 1e-2).
#   bad input: broken TRIN files made here from the fixture (truncated, wrong byte count, code 3, trailing bytes,
#           bad magic, empty, a record missing), missing files, an output that is the input, and a conversion
#           interrupted by SIGTERM: exit 1, exactly one "error: " line, as the last line of stderr, naming the file
#           at fault, nothing on stdout, and no output file nor temporary file left behind. No --base: exit 2.
#
# Prints one line per case (ok, FAIL with details, or SKIPPED) and "test_convert_trin: N passed, M failed,
# K skipped"; exits 1 if any case failed, 77 if nothing could run (a build without cJSON). Needs bash, coreutils,
# grep, sed, awk, od; python3 and strace only for the optional checks. Each command runs under `timeout 120`
# (TRN_TEST_TIMEOUT).
set -u

# shellcheck source=tests/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_setup test_convert_trin 120 "$@"
# shellcheck source=tests/convert_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/convert_lib.sh"
require_cjson
T=$GOLD/trin_tiny.bin

# ---- conversions ----------------------------------------------------------------------------------------------------

F=$CONV/trin/out.gguf
if convert "--from trin --base hf_tiny" "$F" --from trin "$T" --base "$HF"; then
    info_types "trin" "$F" blk.0.attn_q.weight=tq2_0 output.weight=tq2_0 token_embd.weight=f16 \
        output_norm.weight=f32
    logits_checks "trin" "$F" trin_tq2_0
    tokenize_matches "trin" "$F"
    generate_runs "trin" "$F"
    GGUF_CHECKS+=("$F|21|$TQ2_TYPES|$GOLD/trin_tq2_0_logits.npy")
fi
F=$CONV/trin_tq1/out.gguf
if convert "--from trin --base hf_tiny --type tq1_0" "$F" --from trin "$T" --base "$HF" --type tq1_0; then
    logits_checks "trin tq1_0" "$F" trin_tq2_0
    GGUF_CHECKS+=("$F|21|${TQ2_TYPES//TQ2_0/TQ1_0}|$GOLD/trin_tq2_0_logits.npy")
fi

gguf_py_checks
llamacpp_checks "trin:trin_tq2_0"

# ---- bad input: broken files made from the fixture --------------------------------------------------------------

# the offset of each layer's record (u32 count, then the codes)
declare -a REC=()
off=4
while [ "$off" -lt "$(stat -c %s "$T")" ]; do
    REC+=("$off")
    off=$((off + 4 + $(u32_at "$T" "$off")))
done
N_REC=${#REC[@]}
if [ "$N_REC" -ne 15 ] || [ "$off" -ne "$(stat -c %s "$T")" ]; then
    not_ok "trin_tiny.bin layout" "$N_REC records ending at $off (expected 15 records to the end of the file)"
fi
head -c $((REC[3] + 4 + 100)) "$T" >"$BAD/trin_truncated.bin"
cp "$T" "$BAD/trin_bad_count.bin" &&
    patch "$BAD/trin_bad_count.bin" "${REC[1]}" "$(le32 $(($(u32_at "$T" "${REC[1]}") - 1)))"
cp "$T" "$BAD/trin_bad_code.bin" && patch "$BAD/trin_bad_code.bin" $((REC[0] + 4 + 10)) '\x1b' # codes 0 1 2 3
{ cat "$T" && printf 'garbage'; } >"$BAD/trin_trailing.bin"
cp "$T" "$BAD/trin_bad_magic.bin" && patch "$BAD/trin_bad_magic.bin" 0 'TRIM'
: >"$BAD/trin_empty.bin"
head -c "${REC[14]}" "$T" >"$BAD/trin_missing_layer.bin" # no lm_head record

expect_error "trin: truncated inside layer 3" 1 'trin_truncated\.bin' -- \
    "$TRINITY" convert --from trin "$BAD/trin_truncated.bin" --base "$HF" -o out.gguf
expect_error "trin: wrong byte count for layer 1" 1 'trin_bad_count\.bin|||byte|count|size' -- \
    "$TRINITY" convert --from trin "$BAD/trin_bad_count.bin" --base "$HF" -o out.gguf
expect_error "trin: invalid code 3" 1 'trin_bad_code\.bin|||code|\b3\b' -- \
    "$TRINITY" convert --from trin "$BAD/trin_bad_code.bin" --base "$HF" -o out.gguf
expect_error "trin: trailing bytes" 1 'trin_trailing\.bin|||trailing|extra|after|end|garbage' -- \
    "$TRINITY" convert --from trin "$BAD/trin_trailing.bin" --base "$HF" -o out.gguf
expect_error "trin: bad magic" 1 'trin_bad_magic\.bin|||magic|TRIN' -- \
    "$TRINITY" convert --from trin "$BAD/trin_bad_magic.bin" --base "$HF" -o out.gguf
expect_error "trin: empty file" 1 'trin_empty\.bin' -- \
    "$TRINITY" convert --from trin "$BAD/trin_empty.bin" --base "$HF" -o out.gguf
expect_error "trin: lm_head record missing" 1 'trin_missing_layer\.bin' -- \
    "$TRINITY" convert --from trin "$BAD/trin_missing_layer.bin" --base "$HF" -o out.gguf
expect_error "trin: nonexistent file" 1 'no_such\.bin' -- \
    "$TRINITY" convert --from trin "$BAD/no_such.bin" --base "$HF" -o out.gguf
expect_error "trin: nonexistent base" 1 'no_such_base' -- \
    "$TRINITY" convert --from trin "$T" --base "$BAD/no_such_base" -o out.gguf

# An output that is the input is refused before anything is written: the input unchanged.
cp "$T" "$BAD/trin_self.bin"
expect_error "trin: -o is the input" 1 'trin_self\.bin|||input' -- \
    "$TRINITY" convert --from trin "$BAD/trin_self.bin" --base "$HF" -o "$BAD/trin_self.bin"
cmp -s "$T" "$BAD/trin_self.bin"
check "trin: -o is the input: the input unchanged" "the TRIN file was overwritten" $?

# Interrupted: SIGTERM while the file is being written (strace holds the fsync before the rename for 3 s) leaves
# neither the output nor its temporary behind.
if command -v strace >/dev/null && strace -o /dev/null -e inject=fsync:delay_enter=1 true 2>/dev/null; then
    rm -rf "$BAD/interrupted" && mkdir -p "$BAD/interrupted"
    strace -f -o /dev/null -e trace=fsync -e inject=fsync:delay_enter=3000000 \
        "$TRINITY" convert --from trin "$T" --base "$HF" -o "$BAD/interrupted/out.gguf" >/dev/null 2>&1 &
    tracer=$!
    for _ in $(seq 1 100); do # until the temporary exists (at most 10 s)
        [ -n "$(find "$BAD/interrupted" -name '.out.gguf.*' -print -quit)" ] && break
        sleep 0.1
    done
    had_tmp=$(find "$BAD/interrupted" -name '.out.gguf.*' -printf '%f ')
    pid=$(pgrep -f -- "^$TRINITY convert --from trin .* -o $BAD/interrupted/out.gguf") # trinity, not strace
    [ -n "$pid" ] && kill -TERM $pid
    wait "$tracer" 2>/dev/null
    left=$(find "$BAD/interrupted" -mindepth 1 -printf '%f ')
    [ -n "$had_tmp" ] && [ -z "$left" ]
    check "convert interrupted by SIGTERM: nothing left behind" \
        "temporary seen: '${had_tmp}'; left in the folder: '${left}'" $?
else
    skip "convert interrupted by SIGTERM" "strace with fault injection not found"
fi

# ---- bad usage: exit 2 --------------------------------------------------------------------------------------------

expect_error "usage: --from trin without --base" 2 '--base' -- "$TRINITY" convert --from trin "$T" -o out.gguf

cli_finish
