#!/usr/bin/env bash
# test_convert_llama2c.sh: `trinity convert --from llama2c` end to end, against llama.cpp's conversion of the same
# checkpoint.
#
#   bash tests/test_convert_llama2c.sh TRINITY MAKE_TEST_MODELS      (env: TRN_SOURCE_DIR, TRN_TESTDATA; optional)
#
#   conversions (need $TRN_TESTDATA/stories260K) stories260K.bin + tok512.bin: greedy text of 200 tokens, logits
#           and tokenization equal, byte for byte, those of llama.cpp's stories260K.gguf beside them; --type f16
#           generates text that starts with the prompt.
#   gguf-py (needs python3 with gguf and numpy) the converted file's tensors equal stories260K.gguf's.
#   bad input: a checkpoint one byte short, a type its rows cannot hold, missing, device and truncated tokenizers:
#           exit 1, exactly one "error: " line, as the last line of stderr, naming the file (or tensor) at fault,
#           nothing on stdout, and no output file nor temporary file left behind. No --tokenizer: exit 2.
#
# Prints one line per case (ok, FAIL with details, or SKIPPED) and "test_convert_llama2c: N passed, M failed,
# K skipped"; exits 1 if any case failed, 77 if nothing could run. The llama2.c converter needs no cJSON. Needs
# bash, coreutils, grep; python3 only for the gguf-py check. Each command runs under `timeout 120`
# (TRN_TEST_TIMEOUT).
set -u

# shellcheck source=tests/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_setup test_convert_llama2c 120 "$@"
# shellcheck source=tests/convert_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/convert_lib.sh"

# ---- conversions ----------------------------------------------------------------------------------------------------

LLAMA2C_OK=0
if [ -f "$STORIES/stories260K.bin" ] && [ -f "$STORIES/tok512.bin" ] && [ -f "$STORIES/stories260K.gguf" ]; then
    LLAMA2C_OK=1
    REF=$STORIES/stories260K.gguf
    F=$CONV/llama2c/out.gguf
    if convert "--from llama2c stories260K" "$F" --from llama2c "$STORIES/stories260K.bin" \
        --tokenizer "$STORIES/tok512.bin"; then
        GGUF_CHECKS+=("$F|same|$REF")
        if expect_success "llama2c: generate -p '' -n 200 -c 512 --temp 0 (reference)" -- \
            "$TRINITY" generate -m "$REF" -p "" -n 200 -c 512 --temp 0; then
            cp "$OUT" "$TMP/text_ref"
            if expect_success "llama2c: generate -p '' -n 200 -c 512 --temp 0" -- \
                "$TRINITY" generate -m "$F" -p "" -n 200 -c 512 --temp 0; then
                [ -s "$OUT" ] && cmp -s "$OUT" "$TMP/text_ref"
                status=$?
                check "llama2c: greedy text = stories260K.gguf's, byte for byte ($(wc -c <"$TMP/text_ref") bytes)" \
                    "$(cmp "$OUT" "$TMP/text_ref" 2>&1 | head -n 1)" "$status"
            fi
        fi
        if expect_success "llama2c: logits (reference)" -- \
            "$TRINITY" logits -m "$REF" --ids "$IDS" -o "$TMP/l2c_ref.npy"; then
            if expect_success "llama2c: logits" -- "$TRINITY" logits -m "$F" --ids "$IDS" -o "$TMP/l2c.npy"; then
                cmp -s "$TMP/l2c.npy" "$TMP/l2c_ref.npy"
                check "llama2c: logits = stories260K.gguf's, bit for bit" "the .npy files differ" $?
            fi
        fi
        bad=""
        for prompt in "Once upon a time, there was a little girl named Lily." \
            "Tom and Sue played in the park. They saw a big dog!" $'Zo\xc3\xab\'s caf\xc3\xa9 had 42 cakes'; do
            want=$("$TRINITY" tokenize -m "$REF" "$prompt" 2>/dev/null)
            run "$TRINITY" tokenize -m "$F" "$prompt"
            if [ "$RC" -ne 0 ] || [ -z "$want" ] || [ "$(cat "$OUT")" != "$want" ]; then
                bad="'$prompt': got '$(cat "$OUT")', expected '$want'"
                break
            fi
        done
        [ -z "$bad" ]
        check "llama2c: tokenize = stories260K.gguf's (3 prompts)" "$bad" $?
    fi
    F=$CONV/llama2c_f16/out.gguf
    if convert "--from llama2c --type f16" "$F" --from llama2c "$STORIES/stories260K.bin" \
        --tokenizer "$STORIES/tok512.bin" --type f16; then
        generate_runs "llama2c f16" "$F"
    fi
    gguf_py_checks
else
    skip "llama2c conversions" "$STORIES/stories260K.bin, tok512.bin or stories260K.gguf not found (set TRN_TESTDATA)"
fi

# ---- bad input ------------------------------------------------------------------------------------------------------

if [ "$LLAMA2C_OK" -eq 1 ]; then
    head -c $(($(stat -c %s "$STORIES/stories260K.bin") - 1)) "$STORIES/stories260K.bin" >"$BAD/stories260K_cut.bin"
    expect_error "llama2c: checkpoint one byte short" 1 'stories260K_cut\.bin' -- \
        "$TRINITY" convert --from llama2c "$BAD/stories260K_cut.bin" --tokenizer "$STORIES/tok512.bin" -o out.gguf
    expect_error "llama2c: --type tq2_0 (rows of 64)" 1 'stories260K\.bin|blk\.|wq|attn|tensor|||tq2_0|256' -- \
        "$TRINITY" convert --from llama2c "$STORIES/stories260K.bin" --tokenizer "$STORIES/tok512.bin" --type tq2_0 \
        -o out.gguf
    expect_error "llama2c: nonexistent tokenizer" 1 'no_such_tok\.bin' -- \
        "$TRINITY" convert --from llama2c "$STORIES/stories260K.bin" --tokenizer "$BAD/no_such_tok.bin" -o out.gguf
    expect_error "llama2c: --tokenizer /dev/zero" 1 '/dev/zero|||regular' -- timeout 10 \
        "$TRINITY" convert --from llama2c "$STORIES/stories260K.bin" --tokenizer /dev/zero -o out.gguf
    head -c 3000 "$STORIES/tok512.bin" >"$BAD/tok_cut.bin"
    expect_error "llama2c: tokenizer truncated" 1 'tok_cut\.bin' -- \
        "$TRINITY" convert --from llama2c "$STORIES/stories260K.bin" --tokenizer "$BAD/tok_cut.bin" -o out.gguf
else
    skip "llama2c bad input" "stories260K not found"
fi

# ---- bad usage: exit 2 --------------------------------------------------------------------------------------------

expect_error "usage: --from llama2c without --tokenizer" 2 '--tokenizer' -- \
    "$TRINITY" convert --from llama2c "$BAD/any.bin" -o out.gguf

cli_finish
