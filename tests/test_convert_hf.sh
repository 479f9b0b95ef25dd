#!/usr/bin/env bash
# test_convert_hf.sh: `trinity convert --from hf` end to end, against goldens made by implementations Trinity did
# not write (tests/golden/convert/, see convert_lib.sh), and the convert command's usage errors.
#
#   bash tests/test_convert_hf.sh TRINITY MAKE_TEST_MODELS      (env: TRN_SOURCE_DIR; optional)
#
#   conversions  hf_tiny with --type tq2_0, tq1_0, f16, f32, --ternary-rule seed, and --vocab: the top-1 id and
#           logit at every position from `trinity logits --top 1 --act f32` equal the golden's (argmax exactly,
#           logit within 3e-4; always runs), and with numpy the full logits' normalized squared error
#           sum (a-b)^2 / sum b^2 is at most 1e-6 (float-activation mode: exact math up to float rounding; the
#           manifest shows what the tolerance has to absorb: ~1e-13 between transformers and float64 NumPy, and
#           float16 scales are already in the golden). tokenize of three prompts equals SentencePiece's ids. A
#           second conversion writes the same bytes.
#   gguf-py (needs python3 with gguf and numpy) every converted file loads with gguf.GGUFReader, with the expected
#           tensors and types; a NumPy forward pass over gguf-py's dequantized tensors (GGUF RoPE convention)
#           matches the golden within 1e-6.
#   llama.cpp (optional, llama-cpp-python) loads the tq2_0 and f16 files; for tq2_0 its logits equal trinity's
#           int8-activation logits (but for int8 rounding-boundary flips) and stay near the float golden
#           (nmse <= 1e-2); for f16, within 1e-4 of the golden.
#   bad input: broken checkpoints made here from hf_tiny (gpt2 config, missing or truncated shard, I8 dtype, wrong
#           shape, config disagreeing with the tensors, bad JSON, NaN and infinity, no tokenizer, ...), an output
#           that is an input, a directory or a device: exit 1, exactly one "error: " line, as the last line of
#           stderr, naming the file (or tensor) at fault, nothing on stdout, and no output file nor temporary file
#           left behind. Bad usage of `convert`: exit 2.
#
# Prints one line per case (ok, FAIL with details, or SKIPPED) and "test_convert_hf: N passed, M failed, K skipped";
# exits 1 if any case failed, 77 if nothing could run (a build without cJSON). Needs bash, coreutils, grep, sed,
# awk, od; python3 only for the optional checks (each skips where its module is missing). Each command runs under
# `timeout 120` (TRN_TEST_TIMEOUT).
set -u

# shellcheck source=tests/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_setup test_convert_hf 120 "$@"
# shellcheck source=tests/convert_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/convert_lib.sh"
require_cjson

# ---- conversions ----------------------------------------------------------------------------------------------------

F=$CONV/hf_tq2_0/out.gguf
if convert "--from hf --type tq2_0" "$F" --from hf "$HF" --type tq2_0; then
    info_types "hf tq2_0" "$F" blk.0.attn_q.weight=tq2_0 blk.1.ffn_down.weight=tq2_0 output.weight=tq2_0 \
        token_embd.weight=f16 blk.0.attn_norm.weight=f32
    logits_checks "hf tq2_0" "$F" hf_tq2_0
    tokenize_matches "hf tq2_0" "$F"
    generate_runs "hf tq2_0" "$F"
    GGUF_CHECKS+=("$F|21|$TQ2_TYPES|$GOLD/hf_tq2_0_logits.npy")
    # the same input gives the same bytes
    F2=$CONV/hf_tq2_0_again/out.gguf
    if convert "--from hf --type tq2_0, again" "$F2" --from hf "$HF" --type tq2_0; then
        cmp -s "$F" "$F2"
        check "hf tq2_0: a second conversion writes the same bytes" "the two files differ" $?
    fi
fi

F=$CONV/hf_tq1_0/out.gguf
if convert "--from hf --type tq1_0" "$F" --from hf "$HF" --type tq1_0; then
    # TQ1_0 holds the same ternary weights and float16 scales: the tq2_0 golden applies
    logits_checks "hf tq1_0" "$F" hf_tq2_0
    generate_runs "hf tq1_0" "$F"
    GGUF_CHECKS+=("$F|21|${TQ2_TYPES//TQ2_0/TQ1_0}|$GOLD/hf_tq2_0_logits.npy")
fi

F=$CONV/hf_f16/out.gguf
if convert "--from hf --type f16" "$F" --from hf "$HF" --type f16; then
    logits_checks "hf f16" "$F" hf_f16
    generate_runs "hf f16" "$F"
    types="blk.0.attn_q.weight=F16,output.weight=F16,token_embd.weight=F16,output_norm.weight=F32"
    GGUF_CHECKS+=("$F|21|$types|$GOLD/hf_f16_logits.npy")
fi

# f32 keeps the BF16 values exactly; they differ from the f16 golden only by float16 rounding of a few tiny weights
F=$CONV/hf_f32/out.gguf
if convert "--from hf --type f32 --embed-type f32" "$F" --from hf "$HF" --type f32 --embed-type f32; then
    logits_checks "hf f32" "$F" hf_f16
    GGUF_CHECKS+=("$F|21|blk.0.attn_q.weight=F32,output.weight=F32,token_embd.weight=F32|$GOLD/hf_f16_logits.npy")
fi

F=$CONV/hf_seed/out.gguf
if convert "--from hf --type tq2_0 --ternary-rule seed" "$F" --from hf "$HF" --type tq2_0 --ternary-rule seed; then
    logits_checks "hf seed" "$F" hf_seed
    generate_runs "hf seed" "$F"
    GGUF_CHECKS+=("$F|21|$TQ2_TYPES|-")
fi

# --vocab: a checkpoint without tokenizer files takes its vocabulary from a GGUF file (the first conversion's)
if [ -f "$CONV/hf_tq2_0/out.gguf" ]; then
    mkdir -p "$BAD/hf_novocab" && cp "$HF"/*.json "$HF"/*.safetensors "$BAD/hf_novocab/"
    F=$CONV/hf_vocab/out.gguf
    if convert "--from hf --vocab FILE.gguf (no tokenizer.model)" "$F" --from hf "$BAD/hf_novocab" \
        --vocab "$CONV/hf_tq2_0/out.gguf"; then
        tokenize_matches "hf --vocab" "$F"
        top1_matches "hf --vocab: logits --top 1 --act f32 = golden top-1" "$F" "$GOLD/hf_tq2_0_top1.txt"
    fi
fi

gguf_py_checks
llamacpp_checks "hf_tq2_0:hf_tq2_0" "hf_f16:hf_f16"

# ---- bad input: copies of hf_tiny with one thing broken ---------------------------------------------------------

hf_copy() { rm -rf "$BAD/$1" && mkdir -p "$BAD/$1" && cp "$HF"/* "$BAD/$1/"; }
SHARD1=model-00001-of-00002.safetensors
SHARD2=model-00002-of-00002.safetensors

hf_copy hf_gpt2 && sed -i 's/"model_type": "llama"/"model_type": "gpt2"/' "$BAD/hf_gpt2/config.json"
expect_error "hf: config model_type gpt2" 1 'config\.json|hf_gpt2|||gpt2' -- \
    "$TRINITY" convert --from hf "$BAD/hf_gpt2" -o out.gguf

hf_copy hf_no_shard && rm "$BAD/hf_no_shard/$SHARD2"
expect_error "hf: missing shard" 1 "${SHARD2//./\\.}" -- "$TRINITY" convert --from hf "$BAD/hf_no_shard" -o out.gguf

# a single-file checkpoint whose one tensor is I8 (sizes consistent: only the dtype is wrong)
mkdir -p "$BAD/hf_i8" && cp "$HF/config.json" "$HF/tokenizer.model" "$BAD/hf_i8/"
hdr='{"__metadata__":{"format":"pt"},"model.norm.weight":{"dtype":"I8","shape":[256],"data_offsets":[0,256]}}'
while [ $(((${#hdr} + 8) % 8)) -ne 0 ]; do hdr="$hdr "; done
{ printf "$(le32 ${#hdr})\\x00\\x00\\x00\\x00" && printf '%s' "$hdr" && head -c 256 /dev/zero | tr '\0' '\1'; } \
    >"$BAD/hf_i8/model.safetensors"
expect_error "hf: tensor of dtype I8" 1 'I8|||hf_i8|model\.safetensors|model\.norm\.weight' -- \
    "$TRINITY" convert --from hf "$BAD/hf_i8" -o out.gguf

# q_proj's header says [512,128] (the same number of bytes) instead of [256,256]
hf_copy hf_shape
key='"model.layers.0.self_attn.q_proj.weight":{"dtype":"BF16","shape":['
at=$(grep -obUaF "$key" "$BAD/hf_shape/$SHARD1" | head -n 1 | cut -d: -f1)
if [ -n "$at" ]; then
    patch "$BAD/hf_shape/$SHARD1" $((at + ${#key})) '512,128'
    expect_error "hf: tensor of the wrong shape" 1 'q_proj|attn_q|||shape|512|128' -- \
        "$TRINITY" convert --from hf "$BAD/hf_shape" -o out.gguf
else
    not_ok "hf: tensor of the wrong shape" "q_proj's header entry not found in $SHARD1"
fi

hf_copy hf_hidden && sed -i 's/"hidden_size": 256/"hidden_size": 512/' "$BAD/hf_hidden/config.json"
expect_error "hf: config hidden_size disagrees with the tensors" 1 'shape|hidden|512' -- \
    "$TRINITY" convert --from hf "$BAD/hf_hidden" -o out.gguf

hf_copy hf_ffn && sed -i 's/"intermediate_size": 256/"intermediate_size": 512/' "$BAD/hf_ffn/config.json"
expect_error "hf: config intermediate_size disagrees with the tensors" 1 'gate_proj|ffn_gate|||shape' -- \
    "$TRINITY" convert --from hf "$BAD/hf_ffn" -o out.gguf

hf_copy hf_no_config && rm "$BAD/hf_no_config/config.json"
expect_error "hf: no config.json" 1 'config\.json' -- "$TRINITY" convert --from hf "$BAD/hf_no_config" -o out.gguf

hf_copy hf_bad_json && printf '{"model_type": "llama", "hidden_size": ' >"$BAD/hf_bad_json/config.json"
expect_error "hf: config.json is not JSON" 1 'config\.json' -- \
    "$TRINITY" convert --from hf "$BAD/hf_bad_json" -o out.gguf

expect_error "hf: nonexistent folder" 1 'no_such_dir' -- "$TRINITY" convert --from hf "$BAD/no_such_dir" -o out.gguf

hf_copy hf_cut_shard && head -c $(($(stat -c %s "$HF/$SHARD2") - 1000)) "$HF/$SHARD2" >"$BAD/hf_cut_shard/$SHARD2"
expect_error "hf: shard truncated" 1 "${SHARD2//./\\.}" -- "$TRINITY" convert --from hf "$BAD/hf_cut_shard" -o out.gguf

hf_copy hf_bad_header && patch "$BAD/hf_bad_header/$SHARD1" 0 '\x00\x00\x00\x00\x00\x01\x00\x00' # 2^40 bytes
expect_error "hf: header length past the end" 1 "${SHARD1//./\\.}|||header" -- \
    "$TRINITY" convert --from hf "$BAD/hf_bad_header" -o out.gguf

hf_copy hf_renamed
key='"lm_head.weight":{'
at=$(grep -obUaF "$key" "$BAD/hf_renamed/$SHARD2" | head -n 1 | cut -d: -f1)
if [ -n "$at" ]; then
    patch "$BAD/hf_renamed/$SHARD2" $((at + 14)) 'X' # "lm_head.weighX"
    expect_error "hf: lm_head.weight missing from its shard" 1 'lm_head\.weight' -- \
        "$TRINITY" convert --from hf "$BAD/hf_renamed" -o out.gguf
else
    not_ok "hf: lm_head.weight missing from its shard" "lm_head's header entry not found in $SHARD2"
fi

# a NaN (BF16 0x7fc0) as the first value of model.norm.weight, and an infinity (0x7f80) in a linear layer
for case in "hf_nan:model.norm.weight:\xc0\x7f" "hf_inf:model.layers.1.mlp.up_proj.weight:\x80\x7f"; do
    IFS=: read -r dir tensor value <<<"$case"
    hf_copy "$dir"
    header_len=$(od -An -tu8 -N8 "$HF/$SHARD2" | tr -d ' ')
    begin=$(grep -oaE "\"${tensor//./\\.}\":\\{[^}]*\\}" "$HF/$SHARD2" | sed -n 's/.*"data_offsets":\[\([0-9]*\),.*/\1/p')
    if [ -n "$begin" ] && [ -n "$header_len" ]; then
        patch "$BAD/$dir/$SHARD2" $((8 + header_len + begin + 2 * 100)) "$value" # element 100
        expect_error "hf: non-finite value in $tensor" 1 "${tensor//./\\.}|||finite|nan|inf" -- \
            "$TRINITY" convert --from hf "$BAD/$dir" -o out.gguf
    else
        not_ok "hf: non-finite value in $tensor" "its header entry was not found in $SHARD2"
    fi
done

hf_copy hf_no_tokenizer && rm "$BAD/hf_no_tokenizer/tokenizer.model"
expect_error "hf: no tokenizer files and no --vocab" 1 'tokenizer|vocab' -- \
    "$TRINITY" convert --from hf "$BAD/hf_no_tokenizer" -o out.gguf
expect_error "hf: --vocab nonexistent" 1 'no_such_vocab\.gguf' -- \
    "$TRINITY" convert --from hf "$HF" --vocab "$BAD/no_such_vocab.gguf" -o out.gguf
expect_error "hf: output folder does not exist" 1 'no_such_outdir' -- \
    "$TRINITY" convert --from hf "$HF" -o "$BAD/no_such_outdir/out.gguf"

# An output that is an input is refused before anything is written (the input unchanged), also a file of the
# checkpoint folder; a directory or a device as the output, and a device as an input, are refused with one line.
hf_copy hf_self
expect_error "hf: -o is a shard of the checkpoint" 1 "${SHARD1//./\\.}|||input" -- \
    "$TRINITY" convert --from hf "$BAD/hf_self" -o "$BAD/hf_self/$SHARD1"
cmp -s "$HF/$SHARD1" "$BAD/hf_self/$SHARD1"
check "hf: -o is a shard of the checkpoint: the shard unchanged" "the shard was overwritten" $?
expect_error "hf: -o is a directory" 1 'directory' -- "$TRINITY" convert --from hf "$HF" -o "$BAD"
expect_error "hf: --vocab /dev/zero" 1 '/dev/zero|||regular' -- \
    "$TRINITY" convert --from hf "$HF" --vocab /dev/zero -o out.gguf

# ---- bad usage of `convert`: exit 2 ---------------------------------------------------------------------------------

expect_error "usage: --from onnx" 2 '--from|||onnx' -- "$TRINITY" convert --from onnx "$HF" -o out.gguf
expect_error "usage: no -o" 2 '-o' -- "$TRINITY" convert --from hf "$HF"
expect_error "usage: no --from" 2 '--from' -- "$TRINITY" convert "$HF" -o out.gguf
expect_error "usage: no input" 2 'input' -- "$TRINITY" convert --from hf -o out.gguf
expect_error "usage: --type q4_k" 2 '--type|||q4_k' -- "$TRINITY" convert --from hf "$HF" --type q4_k -o out.gguf
expect_error "usage: --embed-type tq2_0" 2 '--embed-type|||tq2_0' -- \
    "$TRINITY" convert --from hf "$HF" --embed-type tq2_0 -o out.gguf
expect_error "usage: --ternary-rule bogus" 2 '--ternary-rule|||bogus' -- \
    "$TRINITY" convert --from hf "$HF" --ternary-rule bogus -o out.gguf
expect_error "usage: -o without a value" 2 '-o' -- "$TRINITY" convert --from hf "$HF" -o

cli_finish
