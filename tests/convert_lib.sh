# convert_lib.sh: what the `trinity convert` tests share (sourced after cli_lib.sh's cli_setup, not run).
#
# Fixtures and goldens: tests/golden/convert/ (made by scripts/make_convert_fixtures.py; see its manifest.txt): a
# tiny sharded BF16 Hugging Face Llama checkpoint (hf_tiny/), a TRIN file for it, and the teacher-forced logits of
# the converted weights computed by Hugging Face transformers on the unpermuted checkpoint. Sets SRC, GOLD, HF,
# STORIES (from $TRN_TESTDATA, default ../shared/testdata), IDS (the golden's token ids), CONV (converted files, one
# folder each), BAD (broken inputs), HAVE_NUMPY, HAVE_GGUF, HAVE_LLAMACPP; the Python checks are convert_check.py.
# A missing fixture fails the test at once.

SRC=${TRN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
GOLD=$SRC/tests/golden/convert
HF=$GOLD/hf_tiny
TESTDATA=${TRN_TESTDATA:-$SRC/../shared/testdata}
STORIES=$TESTDATA/stories260K
CHECK_PY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/convert_check.py
export LC_ALL=C

for f in hf_tiny/config.json hf_tiny/model.safetensors.index.json hf_tiny.ids trin_tiny.bin manifest.txt; do
    if [ ! -f "$GOLD/$f" ]; then
        cli_abort "fixtures" "$GOLD/$f missing (python3 scripts/make_convert_fixtures.py makes it)"
    fi
done
IDS=$(cat "$GOLD/hf_tiny.ids")
CONV=$TMP/conv
BAD=$TMP/bad
mkdir -p "$CONV" "$BAD"

# The types gguf-py must read in a tq2_0 conversion of hf_tiny (and of the TRIN file).
TQ2_TYPES="blk.0.attn_q.weight=TQ2_0,blk.1.ffn_down.weight=TQ2_0,output.weight=TQ2_0,token_embd.weight=F16"
TQ2_TYPES="$TQ2_TYPES,blk.0.attn_norm.weight=F32,output_norm.weight=F32"

HAVE_NUMPY=0
HAVE_GGUF=0
HAVE_LLAMACPP=0
if command -v python3 >/dev/null 2>&1; then
    python3 -c "import numpy" >/dev/null 2>&1 && HAVE_NUMPY=1
    python3 -c "import numpy, gguf" >/dev/null 2>&1 && HAVE_GGUF=1
    python3 -c "import numpy, llama_cpp" >/dev/null 2>&1 && HAVE_LLAMACPP=1
fi

# require_cjson: a build without cJSON has no hf/trin converters (they fail with a line saying so), so nothing of a
# test of them can compare: exit 77.
require_cjson() {
    if "$TRINITY" convert --from hf "$HF" -o "$TMP/probe.gguf" 2>&1 >/dev/null | grep -q "needs cJSON"; then
        echo "SKIPPED: this trinity was built without cJSON (libcjson-dev), so it has no hf or trin converter"
        exit 77
    fi
    rm -f "$TMP/probe.gguf"
}

# convert NAME OUT.gguf ARGS...: `trinity convert ARGS -o OUT`; OUT's folder must then hold OUT alone (no
# temporary file left). Returns 1 (after reporting) when the conversion failed.
convert() {
    local name=$1 out=$2
    shift 2
    rm -rf "$(dirname "$out")" && mkdir -p "$(dirname "$out")" || exit 1
    expect_success "convert $name" -- "$TRINITY" convert "$@" -o "$out" || return 1
    local left
    left=$(find "$(dirname "$out")" -mindepth 1 -maxdepth 1 ! -path "$out" -printf '%f ')
    if [ ! -s "$out" ]; then
        not_ok "convert $name" "exit 0 but $out is missing or empty"
        return 1
    elif [ -n "$left" ] || [ -n "$(find "$WORK" -mindepth 1 -print -quit)" ]; then
        not_ok "convert $name" "files left beside the output or in the working directory: $left"
        return 1
    fi
    ok "convert $name"
    return 0
}

# top1_matches NAME MODEL GOLDEN_TOP1: `trinity logits --top 1 --act f32` against "pos id argmax logit" lines.
top1_matches() {
    local name=$1 model=$2 golden=$3
    if expect_success "$name" -- "$TRINITY" logits -m "$model" --ids "$IDS" --top 1 --act f32; then
        local diff
        diff=$(awk -F'\t' -v tol=3e-4 '
            NR == FNR { want[$1] = $2 " " $3; val[$1] = $4; n++; next }
            {
                split($3, best, ":"); seen++
                if (!($1 in want)) { print "position " $1 " not in the golden"; bad = 1; next }
                if (($2 " " best[1]) != want[$1]) {
                    print "position " $1 ": id, argmax " $2 ", " best[1] " expected " want[$1]; bad = 1
                }
                d = best[2] - val[$1]; if (d < 0) d = -d
                if (d > tol) { print "position " $1 ": top logit " best[2] " expected " val[$1]; bad = 1 }
            }
            END { if (seen != n) { print seen " positions, expected " n; bad = 1 } exit bad }' "$golden" "$OUT")
        local status=$? # (before any other command substitution)
        check "$name" "top-1 differs from $(basename "$golden"): $(head -n 3 <<<"$diff" | tr '\n' ';')" "$status"
    fi
}

# nmse_check NAME GOT.npy GOLDEN.npy: the full-logits bound (numpy only).
nmse_check() {
    local name=$1 got=$2 golden=$3
    if [ "$HAVE_NUMPY" -eq 0 ]; then
        skip "$name" "python3 with numpy not found"
        return
    fi
    local msg
    msg=$(python3 "$CHECK_PY" nmse "$got" "$golden" 1e-6 2>&1)
    local status=$?
    if [ "$status" -eq 0 ]; then ok "$name: $msg"; else not_ok "$name" "$msg"; fi
}

# logits_checks LABEL MODEL GOLDEN_PREFIX: top-1 (always) and nmse (numpy) against tests/golden/convert/PREFIX_*.
logits_checks() {
    local label=$1 model=$2 prefix=$3
    top1_matches "$label: logits --top 1 --act f32 = golden top-1" "$model" "$GOLD/${prefix}_top1.txt"
    if [ -f "$GOLD/${prefix}_logits.npy" ]; then
        local npy=$TMP/logits_$label.npy
        npy=${npy// /_}
        if expect_success "$label: logits -o --act f32" -- \
            "$TRINITY" logits -m "$model" --ids "$IDS" -o "$npy" --act f32; then
            nmse_check "$label: nmse of the logits to the golden" "$npy" "$GOLD/${prefix}_logits.npy"
        fi
    fi
}

generate_runs() { # generate_runs LABEL MODEL: greedy text that starts with the prompt
    if expect_success "$1: generate -n 5" -- "$TRINITY" generate -m "$2" -p "Once upon a time" -n 5 --temp 0; then
        [[ "$(head -c 16 "$OUT")" == "Once upon a time" ]]
        check "$1: generate -n 5" "stdout does not start with the prompt" $?
    fi
}

tokenize_matches() { # tokenize_matches LABEL MODEL: the three prompts of tokenize.txt, BOS + SentencePiece's ids
    local label=$1 model=$2 prompt ids bad=""
    while IFS=$'\t' read -r prompt ids; do
        run "$TRINITY" tokenize -m "$model" "$prompt"
        if [ "$RC" -ne 0 ] || [ "$(cat "$OUT")" != "1 $ids" ]; then
            bad="'$prompt': got '$(head -c 200 "$OUT")', expected '1 $ids'"
            break
        fi
    done <"$GOLD/tokenize.txt"
    [ -z "$bad" ]
    check "$label: tokenize = SentencePiece (3 prompts)" "$bad" $?
}

# info_types LABEL MODEL NAME=TYPE...: the tensor table of `trinity info` gives these types.
info_types() {
    local label=$1 model=$2
    shift 2
    if expect_success "$label: info" -- "$TRINITY" info -m "$model"; then
        local item name bad=""
        for item in "$@"; do
            name=${item%%=*}
            grep -q -E "^${name//./\\.}[[:space:]]+${item#*=}[[:space:]]" "$OUT" || bad="$bad ${item}"
        done
        [ -z "$bad" ]
        check "$label: info shows the tensor types" "not found in the tensor table:$bad" $?
    fi
}

# gguf-py checks, run at the end by gguf_py_checks: "FILE|N_TENSORS|TYPES|GOLDEN" (a forward pass against GOLDEN,
# or - for none) or "FILE|same|REFERENCE.gguf" (the same tensors as REFERENCE).
declare -a GGUF_CHECKS=()

gguf_py_checks() {
    if [ "$HAVE_GGUF" -eq 0 ]; then
        skip "gguf-py checks" "python3 with gguf and numpy not found"
        return
    fi
    local entry file count types golden label msg status
    for entry in "${GGUF_CHECKS[@]}"; do
        IFS='|' read -r file count types golden <<<"$entry"
        label="gguf-py: ${file#"$CONV"/}"
        if [ "$count" = same ]; then
            msg=$(python3 "$CHECK_PY" same-tensors "$file" "$types" 2>&1)
        else
            msg=$(python3 "$CHECK_PY" gguf "$file" "$count" "$types" "$golden" "$IDS" 1e-6 2>&1)
        fi
        status=$?
        if [ "$status" -eq 0 ]; then ok "$label: $msg"; else not_ok "$label" "$(tail -n 3 <<<"$msg" | tr '\n' ' ')"; fi
    done
}

# llamacpp_checks CONV_FOLDER:GOLDEN_PREFIX...: llama.cpp loads each converted file that exists; for ternary files
# its logits equal trinity's int8-activation logits (but for rounding-boundary flips) and stay near the float
# golden; for hf_f16, within 1e-4 of the golden.
llamacpp_checks() {
    if [ "$HAVE_LLAMACPP" -eq 0 ]; then
        skip "llama.cpp checks" "python3 with llama_cpp (llama-cpp-python) not found"
        return
    fi
    local pair file int8 msg status
    for pair in "$@"; do
        file=$CONV/${pair%%:*}/out.gguf
        [ -f "$file" ] || continue
        int8=-
        if [ "${pair%%:*}" != hf_f16 ]; then
            int8=$TMP/int8.npy
            run "$TRINITY" logits -m "$file" --ids "$IDS" -o "$int8" # the default --act int8, as llama.cpp
        fi
        msg=$(python3 "$CHECK_PY" llamacpp "$file" "$GOLD/${pair#*:}_logits.npy" "$int8" "$IDS" 2>&1)
        status=$?
        if [ "$status" -eq 0 ]; then
            ok "llama.cpp loads ${pair%%:*}: $msg"
        else
            not_ok "llama.cpp loads ${pair%%:*}" "$(tail -n 3 <<<"$msg" | tr '\n' ' ')"
        fi
    done
}

# ---- patching files for the bad-input cases ----

le32() { # the escapes printf needs for a little-endian u32
    printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255))
}
patch() { # patch FILE OFFSET PRINTF-FORMAT: overwrite bytes in place
    # shellcheck disable=SC2059
    printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
u32_at() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
