#!/usr/bin/env bash
# test_cli.sh: the `trinity` command on bad input and on a few good ones.
#
#   bash tests/test_cli.sh TRINITY MAKE_TEST_MODELS
#
# Every bad input must give a non-zero exit below 128 (no signal, no hang: each command runs under
# `timeout 60`, or TRN_TEST_TIMEOUT seconds), the documented exit code (2 for bad usage, 1 for an error
# at run time), exactly one "error: " line on stderr, as its last line, preceded by nothing but progress
# lines (load:, device:, warning:, seed:, context:), a message naming the file, key or tensor at fault, nothing on
# stdout, and no file left behind in the working directory. No sanitizer report may appear anywhere.
# The good inputs must succeed with the expected output. Prints one line per case (ok, or FAIL with the
# details, or SKIPPED) and "test_cli: N passed, M failed, K skipped"; exits 1 if any case failed. Needs bash,
# coreutils and grep; python3, where present, checks the JSON of `bench --json` (grep does otherwise).
set -u

# shellcheck source=tests/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_setup test_cli 60 "$@"
if [ ! -x "$MAKE_MODELS" ]; then
    echo "test_cli: $MAKE_MODELS is not an executable" >&2
    exit 1
fi
# Before the error line, stderr may hold progress lines alone.
STDERR_BEFORE_ERROR='^(load|device|warning|seed|context):'

M=$TMP/models
mkdir -p "$M"
# make_test_models prints nothing when it succeeds (anything else, a sanitizer report say, is a failure).
if ! timeout 120 "$MAKE_MODELS" "$M" >"$TMP/make.log" 2>&1 || [ -s "$TMP/make.log" ]; then
    cli_abort make_test_models "$(head -c 2000 "$TMP/make.log")"
fi

# ---- broken model files: every command that loads a model ------------------------------------------------

declare -A PATTERN=(
    [truncated.gguf]='truncated'
    [truncated_meta.gguf]='truncated|||tokenizer\.ggml\.tokens|metadata'
    [bad_magic.gguf]='magic|not a GGUF'
    [bad_version.gguf]='version|||\b1\b'
    [bad_version4.gguf]='version|||\b4\b'
    [unknown_type.gguf]='blk\.0\.attn_q\.weight|||type|||\b99\b'
    [missing_tensor.gguf]='blk\.1\.ffn_down\.weight|||missing'
    [wrong_shape.gguf]='blk\.0\.attn_q\.weight|||shape'
    [bad_arch.gguf]='gpt2|||architecture'
    [huge_count.gguf]='1099511627776|||tensors'
    [vocab_mismatch.gguf]='token_embd\.weight|||vocabulary'
    [empty.gguf]='empty'
    [vocab_only.gguf]='missing'
)
# Files broken at the GGUF level: even `tokenize` (which needs no tensors) must refuse them.
declare -A GGUF_BROKEN=()
for file in truncated.gguf truncated_meta.gguf bad_magic.gguf bad_version.gguf bad_version4.gguf unknown_type.gguf \
    huge_count.gguf empty.gguf; do
    GGUF_BROKEN[$file]=1
done

for file in truncated.gguf truncated_meta.gguf bad_magic.gguf bad_version.gguf bad_version4.gguf \
    unknown_type.gguf missing_tensor.gguf wrong_shape.gguf bad_arch.gguf huge_count.gguf vocab_mismatch.gguf \
    empty.gguf vocab_only.gguf; do
    want="${file//./\\.}|||${PATTERN[$file]}" # the message names the file, and the problem
    expect_error "info -m $file" 1 "$want" -- "$TRINITY" info -m "$M/$file"
    expect_error "generate -m $file" 1 "$want" -- "$TRINITY" generate -m "$M/$file" -p hi -n 4
    expect_error "graph -m $file" 1 "$want" -- "$TRINITY" graph -m "$M/$file"
    expect_error "bench -m $file" 1 "$want" -- "$TRINITY" bench -m "$M/$file" --prompt-tokens 2 --decode-tokens 2
    if [ -n "${GGUF_BROKEN[$file]:-}" ]; then
        expect_error "tokenize -m $file" 1 "$want" -- "$TRINITY" tokenize -m "$M/$file" hi
    fi
done

expect_error "info -m nonexistent" 1 "does_not_exist\.gguf|||cannot open|No such file" -- \
    "$TRINITY" info -m "$M/does_not_exist.gguf"
expect_error "generate -m nonexistent" 1 "does_not_exist\.gguf" -- \
    "$TRINITY" generate -m "$M/does_not_exist.gguf" -p hi -n 4
expect_error "tokenize -m nonexistent" 1 "does_not_exist\.gguf" -- \
    "$TRINITY" tokenize -m "$M/does_not_exist.gguf" hi
expect_error "info -m DIRECTORY" 1 "models|||regular file|directory" -- "$TRINITY" info -m "$M"
expect_error "generate -m DIRECTORY" 1 "models|||regular file|directory" -- "$TRINITY" generate -m "$M" -p hi -n 4
expect_error "tokenize -m DIRECTORY" 1 "models|||regular file|directory" -- "$TRINITY" tokenize -m "$M" hi

# ---- bad usage: exit code 2 ------------------------------------------------------------------------------

G=$M/good.gguf
expect_error "generate --bogus" 2 "--bogus" -- "$TRINITY" generate --bogus
expect_error "generate -m good --bogus" 2 "--bogus" -- "$TRINITY" generate -m "$G" -p hi --bogus
expect_error "unknown command" 2 "frobnicate" -- "$TRINITY" frobnicate -m "$G"
expect_error "missing value: -n at the end" 2 "-n|||value" -- "$TRINITY" generate -m "$G" -p hi -n
expect_error "missing value: -m at the end" 2 "-m|||value" -- "$TRINITY" info -m
expect_error "missing value: -p at the end" 2 "-p|||value" -- "$TRINITY" generate -m "$G" -p
expect_error "-n -5" 2 "-n|||-5" -- "$TRINITY" generate -m "$G" -p hi -n -5
expect_error "-n abc" 2 "-n|||abc" -- "$TRINITY" generate -m "$G" -p hi -n abc
expect_error "-n 99999999999999999999" 2 "-n" -- "$TRINITY" generate -m "$G" -p hi -n 99999999999999999999
expect_error "-c 0" 2 "-c|||\b0\b" -- "$TRINITY" generate -m "$G" -p hi -c 0
expect_error "-c -3" 2 "-c" -- "$TRINITY" generate -m "$G" -p hi -c -3
expect_error "--top-p 2" 2 "--top-p|||\b2\b" -- "$TRINITY" generate -m "$G" -p hi --top-p 2
expect_error "--top-p 0" 2 "--top-p" -- "$TRINITY" generate -m "$G" -p hi --top-p 0
expect_error "--temp -1" 2 "--temp|||-1" -- "$TRINITY" generate -m "$G" -p hi --temp -1
expect_error "--temp nan" 2 "--temp|||nan" -- "$TRINITY" generate -m "$G" -p hi --temp nan
expect_error "--top-k -1" 2 "--top-k" -- "$TRINITY" generate -m "$G" -p hi --top-k -1
expect_error "--repeat-penalty 0" 2 "--repeat-penalty" -- "$TRINITY" generate -m "$G" -p hi --repeat-penalty 0
expect_error "--seed -1" 2 "--seed" -- "$TRINITY" generate -m "$G" -p hi --seed -1
expect_error "-t 0" 2 "-t|||\b0\b" -- "$TRINITY" generate -m "$G" -p hi -t 0
expect_error "--device tpu" 2 "--device|||tpu" -- "$TRINITY" generate -m "$G" -p hi --device tpu
expect_error "--synthetic nope" 2 "--synthetic|||nope" -- "$TRINITY" bench --synthetic nope
expect_error "--prompt-tokens 0" 2 "--prompt-tokens" -- "$TRINITY" bench --synthetic tiny --prompt-tokens 0
expect_error "generate without a model" 2 "model" -- "$TRINITY" generate -p hi
expect_error "tokenize without text" 2 "text" -- "$TRINITY" tokenize -m "$M/vocab_only.gguf"
expect_error "unexpected argument" 2 "extra" -- "$TRINITY" info -m "$G" extra

run "$TRINITY"
if [ "$RC" -eq 2 ] && [ ! -s "$OUT" ] && grep -q usage "$ERR" && [ -z "$(sanitizer_report)" ]; then
    ok "no arguments: usage on stderr, exit 2"
else
    not_ok "no arguments: usage on stderr, exit 2" "unexpected result"
fi

# ---- bad requests at run time: exit code 1 ----------------------------------------------------------------

LONG="hello world hello world hello world hello world hello world hello world hello world hello world"
expect_error "prompt longer than the context (-c 8)" 1 "prompt|||context" -- \
    "$TRINITY" generate -m "$G" -c 8 -p "$LONG" -n 1 --temp 0
expect_error "-n past the context (-c 16 -n 100)" 1 "-n|||100|||context" -- \
    "$TRINITY" generate -m "$G" -c 16 -p hi -n 100 --temp 0
expect_error "empty prompt with --no-bos" 1 "empty|||no-bos" -- \
    "$TRINITY" generate -m "$G" -p "" --no-bos -n 2 --temp 0

# ---- evaluation commands: perplexity and logits ----
TEXTS=$TMP/texts
mkdir -p "$TEXTS"
: >"$TEXTS/empty.txt"
printf 'a' >"$TEXTS/one.txt"
printf 'hello \xff\xfe world\n' >"$TEXTS/latin1.txt"
for i in $(seq 1 40); do printf 'hello world hi there a b c d e f g h. '; done >"$TEXTS/long.txt"
expect_error "perplexity: empty text" 1 "empty\.txt|||tokens" -- "$TRINITY" perplexity -m "$G" -f "$TEXTS/empty.txt" -c 16
expect_error "perplexity: one-token text" 1 "one\.txt|||tokens" -- "$TRINITY" perplexity -m "$G" -f "$TEXTS/one.txt" -c 16
expect_error "perplexity: not UTF-8" 1 "latin1\.txt|||UTF-8" -- "$TRINITY" perplexity -m "$G" -f "$TEXTS/latin1.txt" -c 16
expect_error "perplexity: -c past the model's context" 1 "-c|||context" -- \
    "$TRINITY" perplexity -m "$G" -f "$TEXTS/long.txt" -c 4096
expect_error "perplexity: missing file" 1 "nope\.txt" -- "$TRINITY" perplexity -m "$G" -f "$TEXTS/nope.txt"
expect_error "perplexity without -f" 2 "-f" -- "$TRINITY" perplexity -m "$G"
expect_error "logits: id out of range" 1 "99999|||vocabulary" -- "$TRINITY" logits -m "$G" --ids "1 99999" --top 2
expect_error "logits: negative id" 1 "-3|||vocabulary" -- "$TRINITY" logits -m "$G" --ids "1 -3" --top 2
expect_error "logits: ids not numbers" 2 "--ids" -- "$TRINITY" logits -m "$G" --ids "1 two" --top 2
expect_error "logits: neither -o nor --top" 2 "-o|||--top" -- "$TRINITY" logits -m "$G" --ids "1 2"
expect_error "logits: both -p and --ids" 2 "-p|||--ids" -- "$TRINITY" logits -m "$G" -p hi --ids "1 2" --top 1
expect_error "--act bogus" 2 "--act" -- "$TRINITY" logits -m "$G" --ids "1 2" --top 1 --act int4
expect_error "--kernels bogus" 2 "--kernels|||sse" -- "$TRINITY" generate -m "$G" -p hi -n 2 --kernels sse
expect_error "TRN_KERNELS=bogus" 1 "TRN_KERNELS|||bogus" -- \
    env TRN_KERNELS=bogus "$TRINITY" generate -m "$G" -p hi -n 2 --device cpu
expect_error "logits: unwritable output" 1 "no_such_dir" -- \
    "$TRINITY" logits -m "$G" --ids "1 2" -o "$TMP/no_such_dir/out.npy"
# Inputs checked before they are read: a file argument must be a regular file under its kind's size cap (a device or
# a directory is refused at once, not read toward the cap); text is UTF-8 in every command; an output is no input.
expect_error "perplexity -f a directory" 1 "$(basename "$TEXTS")|||directory" -- "$TRINITY" perplexity -m "$G" -f "$TEXTS"
expect_error "perplexity -f /dev/zero" 1 "/dev/zero|||not a regular file" -- \
    timeout 10 "$TRINITY" perplexity -m "$G" -f /dev/zero
expect_error "-m /dev/zero" 1 "/dev/zero|||not a regular file" -- "$TRINITY" generate -m /dev/zero -p hi
expect_error "-m a directory" 1 "directory" -- "$TRINITY" info -m "$M"
expect_error "generate -p not UTF-8" 1 "-p|||UTF-8|||offset 6" -- "$TRINITY" generate -m "$G" -p $'hello \xff' -n 1
expect_error "tokenize: text not UTF-8" 1 "UTF-8|||0xc3" -- "$TRINITY" tokenize -m "$G" $'caf\xc3'
expect_error "logits -p not UTF-8" 1 "UTF-8" -- "$TRINITY" logits -m "$G" -p $'\xed\xa0\x80' --top 1
cp "$G" "$TMP/model_copy.gguf"
expect_error "logits -o the model file" 1 "model_copy\.gguf|||input" -- \
    "$TRINITY" logits -m "$TMP/model_copy.gguf" --ids "1 2" -o "$TMP/model_copy.gguf"
if cmp -s "$G" "$TMP/model_copy.gguf"; then ok "logits -o the model file: the model unchanged"; else
    not_ok "logits -o the model file: the model unchanged" "the model file was overwritten"; fi
expect_error "logits -o /dev/null (not a regular file)" 1 "/dev/null|||regular" -- \
    "$TRINITY" logits -m "$G" --ids "1 2" -o /dev/null

# Context: one limit (2^20 positions) for files and -c; without -c a run gets the model's context up to 4096, said
# on stderr, so that a small file declaring a huge context does not allocate its whole KV cache.
expect_error "context_length past the limit" 1 "too_long_context\.gguf|||context_length|||1048576" -- \
    "$TRINITY" generate -m "$M/too_long_context.gguf" -p hi -n 2 --temp 0
expect_error "-c past the limit" 2 "-c|||1048576" -- "$TRINITY" generate -m "$G" -p hi -c 1048577
if expect_success "a declared context of 2^20: default context 4096" -- \
    "$TRINITY" generate -m "$M/long_context.gguf" -p hi -n 4 --temp 0 --device cpu; then
    grep -q '^context: 4096 positions (the model declares 1048576' "$ERR"
    check "a declared context of 2^20: default context 4096" "no 'context: 4096 positions' line on stderr" $?
fi
expect_error "a context that does not fit in memory" 1 "KV cache|||GB" -- \
    "$TRINITY" generate --synthetic tinyllama -p hi -n 4 --temp 0 --device cpu -c 1048576

if expect_success "perplexity --json" -- "$TRINITY" perplexity -m "$G" -f "$TEXTS/long.txt" -c 16 --json; then
    grep -q '"perplexity": [0-9]' "$OUT" && grep -q '"ctx": 16' "$OUT" && grep -q '"stderr"' "$OUT"
    check "perplexity --json" "JSON keys perplexity, stderr, ctx missing" $?
fi
if expect_success "logits -o npy" -- "$TRINITY" logits -m "$G" --ids "1 5 6 7" -o "$TMP/logits.npy" --act f32; then
    # header: magic, version 1.0, then the shape (4, vocab) and float32 data
    head -c 128 "$TMP/logits.npy" | grep -q "'shape': (4, " && [ "$(head -c 6 "$TMP/logits.npy" | tail -c 5)" = "NUMPY" ]
    check "logits -o npy" ".npy header wrong" $?
fi
if expect_success "logits --top 3" -- "$TRINITY" logits -m "$G" -p "hello world" --top 3; then
    [ "$(wc -l <"$OUT")" -ge 3 ] && [ "$(head -1 "$OUT" | awk -F'\t' '{print NF}')" -eq 5 ]
    check "logits --top 3" "expected one line per token with 3 id:logit pairs" $?
fi

# This build has no CUDA backend: --device cuda must refuse with one line (a build with one may run).
run "$TRINITY" generate -m "$G" -p hi -n 2 --temp 0 --device cuda
if [ "$RC" -eq 0 ] && grep -qi '^backend: .*cuda' "$ERR"; then
    ok "--device cuda (skipped: this build has a CUDA backend)"
else
    expect_error "--device cuda" 1 "cuda" -- "$TRINITY" generate -m "$G" -p hi -n 2 --temp 0 --device cuda
fi

# GPU weight modes: flags checked before any model runs; on a machine without a GPU the comparison names why.
expect_error "--weights bogus" 2 "--weights" -- "$TRINITY" generate -m "$G" -p hi --weights disk
expect_error "--weights with --device cpu" 2 "--device cuda" -- \
    "$TRINITY" generate -m "$G" -p hi --weights streaming --device cpu
expect_error "--resident-layers with --weights mapped" 2 "--resident-layers" -- \
    "$TRINITY" generate -m "$G" -p hi --weights mapped --resident-layers 1
expect_error "--resident-layers -1" 2 "--resident-layers" -- "$TRINITY" generate -m "$G" -p hi --resident-layers -1
expect_error "--compare-weights outside bench" 2 "bench" -- "$TRINITY" generate -m "$G" -p hi --compare-weights
expect_error "--compare-weights with --weights" 2 "--compare-weights" -- \
    "$TRINITY" bench -m "$G" --compare-weights --weights mapped
expect_error "--dense with --device cpu" 2 "--device cuda" -- "$TRINITY" bench -m "$G" --dense f16 --device cpu
expect_error "--dense bogus" 2 "--dense" -- "$TRINITY" bench -m "$G" --dense f32 --device cuda
expect_error "--dense with --parallel" 2 "--parallel" -- "$TRINITY" bench -m "$G" --dense f16 --parallel 2
expect_error "--dense outside bench" 2 "bench" -- "$TRINITY" generate -m "$G" -p hi --dense f16
run "$TRINITY" bench -m "$G" --dense f16 --decode-tokens 4 --prompt-tokens 2
if [ "$RC" -eq 0 ]; then
    ok "bench --dense f16 on auto (skipped: this machine has a GPU)"
else
    expect_error "bench --dense f16 on auto without a GPU" 1 "CUDA baseline" -- \
        "$TRINITY" bench -m "$G" --dense f16 --decode-tokens 4 --prompt-tokens 2
fi
run "$TRINITY" bench -m "$G" --compare-weights --decode-tokens 4 --prompt-tokens 2
if [ "$RC" -eq 0 ]; then
    ok "bench --compare-weights (skipped: this machine has a GPU)"
else
    expect_error "bench --compare-weights without a GPU" 1 "cuda|driver|gpu|device" -- \
        "$TRINITY" bench -m "$G" --compare-weights --decode-tokens 4 --prompt-tokens 2
fi

# ---- good input --------------------------------------------------------------------------------------------

if expect_success "info -m good.gguf" -- "$TRINITY" info -m "$G"; then
    grep -q '^tensor ' "$OUT" && grep -q '^blk\.1\.ffn_down\.weight  *tq2_0 ' "$OUT" &&
        grep -q '^token_embd\.weight ' "$OUT" && grep -q '^layers  *2$' "$OUT"
    check "info -m good.gguf" "stdout lacks the tensor table or the hyperparameters" $?
fi

if expect_success "generate --temp 0" -- "$TRINITY" generate -m "$G" -p "hello world" -n 5 --temp 0; then
    cp "$OUT" "$TMP/greedy1"
    [[ "$(head -c 11 "$OUT")" == "hello world" ]]
    check "generate --temp 0" "stdout does not start with 'hello world'" $?
fi
if expect_success "generate --temp 0, again" -- "$TRINITY" generate -m "$G" -p "hello world" -n 5 --temp 0; then
    cmp -s "$OUT" "$TMP/greedy1"
    check "generate --temp 0 is deterministic" "two greedy runs differ" $?
fi
if expect_success "generate --temp 0 -t 1 --device cpu" -- \
    "$TRINITY" generate -m "$G" -p "hello world" -n 5 --temp 0 -t 1 --device cpu; then
    cp "$OUT" "$TMP/greedy_cpu"
    cmp -s "$OUT" "$TMP/greedy1"
    check "generate --temp 0 -t 1 --device cpu matches the default threads" "output differs" $?
fi

# Every CPU kernel table gives the same greedy text (ternary products are bitwise equal; float ops differ only in
# the last bits) and says which it is; a table this CPU or build lacks is refused with one line instead. (--device
# cpu: on a machine with a GPU the default device is the GPU, which has no kernel tables.)
for kernels in scalar avx2 avx512 amx auto; do
    run "$TRINITY" generate -m "$G" -p "hello world" -n 5 --temp 0 --kernels "$kernels" --device cpu
    if [ "$RC" -eq 1 ] && [ "$kernels" != scalar ] && [ "$kernels" != auto ] &&
        [ "$(grep -c '^error: ' "$ERR")" -eq 1 ] && grep -q "kernels '$kernels' are not available" "$ERR"; then
        skip "generate --kernels $kernels" "refused: this CPU or build has no $kernels kernels"
    elif [ "$RC" -eq 0 ]; then
        want=$kernels
        [ "$kernels" = auto ] && want='[a-z0-9]+'
        cmp -s "$OUT" "$TMP/greedy_cpu" && grep -Eq "^backend: cpu \(${want} kernels" "$ERR"
        check "generate --kernels $kernels" "text differs from the default kernels' or the backend line lacks the name" $?
    else
        not_ok "generate --kernels $kernels" "failed"
    fi
done
# The AMX kernel on its tile emulator (TRN_KERNELS only: a table for tests): the same text where the build has it.
run env TRN_KERNELS=amx-emulated "$TRINITY" generate -m "$G" -p "hello world" -n 5 --temp 0 --device cpu
if [ "$RC" -eq 1 ] && [ "$(grep -c '^error: ' "$ERR")" -eq 1 ] && grep -q "kernels 'amx-emulated' (TRN_KERNELS) are not available" "$ERR"; then
    skip "TRN_KERNELS=amx-emulated generate" "refused: this build has no AMX kernel or this CPU no AVX-512 VNNI"
elif [ "$RC" -eq 0 ]; then
    cmp -s "$OUT" "$TMP/greedy_cpu" && grep -Eq "^backend: cpu \(amx-emulated kernels" "$ERR"
    check "TRN_KERNELS=amx-emulated generate" "text differs from the default kernels' or the backend line lacks the name" $?
else
    not_ok "TRN_KERNELS=amx-emulated generate" "failed"
fi

if expect_success "generate --seed 1 --temp 0.8" -- \
    "$TRINITY" generate -m "$G" -p "hello world" -n 5 --seed 1 --temp 0.8; then
    cp "$OUT" "$TMP/sampled1"
    if expect_success "generate --seed 1 --temp 0.8, again" -- \
        "$TRINITY" generate -m "$G" -p "hello world" -n 5 --seed 1 --temp 0.8; then
        [[ "$(head -c 11 "$OUT")" == "hello world" ]] && cmp -s "$OUT" "$TMP/sampled1"
        check "generate --seed 1 --temp 0.8 twice gives identical output" "outputs differ or lack the prompt" $?
    fi
fi

# "hi" is one token ("\u2581hi") without BOS: -n 63 fills the 64 positions exactly, -n 64 is one too many.
if expect_success "generate -c 64 -n 63 --no-bos (fills the context exactly)" -- \
    "$TRINITY" generate -m "$G" -p "hi" -n 63 --temp 0 -c 64 --no-bos; then
    [[ "$(head -c 2 "$OUT")" == "hi" ]]
    check "generate -c 64 -n 63 --no-bos (fills the context exactly)" "stdout does not start with 'hi'" $?
fi
expect_error "generate -c 64 -n 64 --no-bos (one position too many)" 1 "-n|||64|||context" -- \
    "$TRINITY" generate -m "$G" -p "hi" -n 64 --temp 0 -c 64 --no-bos

if expect_success "tokenize -m vocab_only.gguf" -- "$TRINITY" tokenize -m "$M/vocab_only.gguf" "hello"; then
    grep -Eq '^1( [0-9]+)+$' "$OUT" && [ "$(wc -l <"$OUT")" -eq 1 ]
    check "tokenize -m vocab_only.gguf" "stdout is not one line of ids starting with BOS (1)" $?
fi
if expect_success "tokenize -m good.gguf --no-bos" -- "$TRINITY" tokenize -m "$G" --no-bos "hello world"; then
    grep -Eq '^[0-9]+( [0-9]+)*$' "$OUT" && ! grep -Eq '^1( |$)' "$OUT"
    check "tokenize -m good.gguf --no-bos" "stdout is not one line of ids without BOS" $?
fi

if expect_success "graph -m good.gguf" -- "$TRINITY" graph -m "$G"; then
    grep -q 'matvec' "$OUT" && grep -q 'blk\.1\.ffn_down\.weight' "$OUT"
    check "graph -m good.gguf" "stdout lacks graph nodes" $?
fi

if expect_success "bench --synthetic tiny --json" -- \
    "$TRINITY" bench --synthetic tiny --json --decode-tokens 4 --prompt-tokens 4; then
    KEYS=(decode_tokens_per_s prefill_tokens_per_s weight_bytes_per_token bandwidth_gbs roofline_fraction
        device threads achieved_gbs prefill_token_by_token_tokens_per_s decode_tokens_per_s_1thread)
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$OUT" "${KEYS[@]}" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        obj = json.loads(f.read())
    assert isinstance(obj, dict), "not a JSON object"
    missing = [k for k in sys.argv[2:] if k not in obj]
    assert not missing, "missing keys: %s" % missing
    # the one-thread figures are the CPU backend's; a GPU run has none (null)
    on_gpu = isinstance(obj.get("device"), str) and obj["device"].startswith("cuda")
    for k in sys.argv[2:]:
        if k == "decode_tokens_per_s_1thread" and on_gpu:
            assert obj[k] is None, "%s should be null on the GPU" % k
        elif k != "device":
            assert isinstance(obj[k], (int, float)) and obj[k] >= 0, "%s is not a non-negative number" % k
    assert isinstance(obj["device"], str) and obj["device"], "device is not a non-empty string"
    assert obj["decode_tokens_per_s"] > 0 and obj["weight_bytes_per_token"] > 0, "zero rate or byte count"
    # the prefill's multiply-add bound: three positive numbers (CPU, SIMD kernels, ternary model) or three nulls
    bound = [obj.get(k, "absent") for k in ("prefill_peak_gmacs", "prefill_bound_tokens_per_s", "prefill_bound_fraction")]
    assert all(b is None for b in bound) or all(isinstance(b, (int, float)) and b > 0 for b in bound), \
        "prefill bound keys: %s" % bound
    # the batched kernel the bound belongs to: named wherever there is a bound
    kernel = obj.get("prefill_kernel", "absent")
    assert kernel is None or (isinstance(kernel, str) and kernel), "prefill_kernel: %r" % (kernel,)
    assert bound[0] is None or kernel is not None, "a prefill bound without its kernel"
    # how far apart two threads sit: a positive number of ns, or null (one thread, no OpenMP, a GPU run)
    latency = obj.get("core_latency_ns", "absent")
    assert latency is None or (isinstance(latency, (int, float)) and latency > 0), "core_latency_ns: %r" % (latency,)
    assert latency is None or obj["threads"] >= 2, "core_latency_ns at one thread"
except Exception as e:
    print("    json check: %s" % (e,))
    sys.exit(1)
EOF
    else
        result=0
        grep -q '^{.*}$' "$OUT" || result=1
        for key in "${KEYS[@]}"; do grep -q "\"$key\":" "$OUT" || result=1; done
        [ "$result" -eq 0 ]
    fi
    check "bench --synthetic tiny --json" "stdout is not a JSON object with the expected keys" $?
fi

# bench --parallel: one point per sequence count (1, 4, then the asked 6), positive figures, the 1-sequence speedup 1.
if expect_success "bench --parallel 6 --json" -- \
    "$TRINITY" bench --synthetic tiny --parallel 6 --json --decode-tokens 3 --prompt-tokens 4 -t 1; then
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$OUT" <<'EOF'
import json, sys
try:
    obj = json.load(open(sys.argv[1]))
    points = obj["parallel"]
    assert [p["sequences"] for p in points] == [1, 4, 6], "sequence counts %s" % [p["sequences"] for p in points]
    for p in points:
        assert all(p[k] > 0 for k in ("ms_per_step", "tokens_per_s", "speedup", "first_token_ms")), p
    assert abs(points[0]["speedup"] - 1.0) < 1e-9, points[0]
except Exception as e:
    print("    json check: %s" % (e,))
    sys.exit(1)
EOF
    else
        grep -q '"sequences": 6' "$OUT"
    fi
    check "bench --parallel 6 --json" "not one point per sequence count with positive figures" $?
fi
expect_error "bench --parallel 0" 2 "--parallel" -- "$TRINITY" bench --synthetic tiny --parallel 0
expect_error "bench --parallel with --compare-weights" 2 "--parallel" -- \
    "$TRINITY" bench --synthetic tiny --parallel 2 --compare-weights

run "$TRINITY" --help
if [ "$RC" -eq 0 ] && grep -q '^usage: trinity' "$OUT" && [ -z "$(sanitizer_report)" ]; then
    ok "--help"
else
    not_ok "--help" "expected usage on stdout and exit 0"
fi

# A command's own help: its flags with their defaults, on stdout, exit 0 (also as `trinity help COMMAND`).
for form in "generate --help" "help generate"; do
    run "$TRINITY" $form
    [ "$RC" -eq 0 ] && grep -q '^usage: trinity generate' "$OUT" && grep -q -- '--temp T .*default 0\.8' "$OUT" &&
        grep -q -- '--threads' "$OUT" && [ -z "$(sanitizer_report)" ]
    check "trinity $form" "expected generate's flags with defaults on stdout, exit 0" $?
done
run "$TRINITY" convert --help
[ "$RC" -eq 0 ] && grep -q -- '--from hf|trin|llama2c' "$OUT" && grep -q 'f32 (default)' "$OUT" &&
    ! grep -q -- '--threads' "$OUT"
check "trinity convert --help" "expected convert's flags (and no run flags) on stdout, exit 0" $?

# More threads than processors: allowed, with a warning; the new-token count is what -n asked for.
T_OVER=$(($(getconf _NPROCESSORS_ONLN) + 1))
if expect_success "generate -t $T_OVER -n 4" -- "$TRINITY" generate -m "$G" -p hi -n 4 --temp 0 -t "$T_OVER" --device cpu
then
    grep -q "^warning: -t $T_OVER is more threads than the" "$ERR" && grep -q '^generate: 4 new tokens; 3 decode steps' "$ERR"
    check "generate -t $T_OVER -n 4" "no -t warning or no 'generate: 4 new tokens; 3 decode steps' line" $?
fi

cli_finish
