#!/usr/bin/env bash
# test_golden_text.sh TRINITY MAKE_TEST_MODELS: greedy generation with the real stories260K model must print,
# byte for byte, the text llama.cpp produced for the same prompt (tests/golden/text/, made by
# scripts/make_golden_text.py; see its manifest.txt). Each case runs with -t 1, -t 2 and --scalar, and the
# prompt's tokenization is checked against llama.cpp's ids as well. MAKE_TEST_MODELS is unused.
# Needs $TRN_TESTDATA/stories260K/stories260K.gguf (default ../shared/testdata); exits 77 without it.
set -u

TRINITY=${1:?usage: test_golden_text.sh TRINITY [MAKE_TEST_MODELS]}
HERE=$(cd "$(dirname "$0")" && pwd)
GOLDEN=$HERE/golden/text
TESTDATA=${TRN_TESTDATA:-$HERE/../../shared/testdata}
MODEL=$TESTDATA/stories260K/stories260K.gguf

if [ ! -f "$MODEL" ]; then
    echo "SKIPPED: $MODEL not found (set TRN_TESTDATA; see ../shared/testdata/README.md)"
    exit 77
fi
if [ ! -f "$GOLDEN/manifest.txt" ]; then
    echo "FAIL: $GOLDEN/manifest.txt not found (python3 scripts/make_golden_text.py makes it)"
    exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0

# Explain a stdout mismatch: where the bytes part, and a line diff.
report_mismatch() { # GOLDEN_FILE ACTUAL_FILE
    echo "  first difference: $(cmp "$1" "$2" 2>&1 | head -n 1)"
    local pos
    pos=$(cmp "$1" "$2" 2>/dev/null | sed -n 's/.* byte \([0-9]*\),.*/\1/p')
    if [ -n "$pos" ]; then
        echo "  expected from byte $pos: $(tail -c +"$pos" "$1" | head -c 60 | od -An -c | tr -s ' ' | head -n 2)"
        echo "  actual   from byte $pos: $(tail -c +"$pos" "$2" | head -c 60 | od -An -c | tr -s ' ' | head -n 2)"
    else
        echo "  (one output is a prefix of the other: expected $(wc -c <"$1") bytes, got $(wc -c <"$2"))"
    fi
    echo "  diff (- golden, + trinity):"
    diff -u --label golden --label trinity "$1" "$2" | sed 's/^/    /'
}

while IFS=$'\t' read -r name n ctx prompt; do
    case $name in '' | '#'*) continue ;; esac
    golden=$GOLDEN/$name.txt
    ids=$GOLDEN/$name.ids
    if [ ! -f "$golden" ]; then
        echo "FAIL $name: $golden missing"
        failed=$((failed + 1))
        continue
    fi
    ctx_flags=()
    [ "$ctx" != default ] && ctx_flags=(-c "$ctx")

    # The prompt's tokens (with BOS) against llama.cpp's, so that a text mismatch can be placed.
    if [ -f "$ids" ]; then
        want=$(sed -n 's/^prompt: //p' "$ids")
        got=$("$TRINITY" tokenize -m "$MODEL" "$prompt" 2>"$TMP/err")
        if [ "$got" = "$want" ]; then
            passed=$((passed + 1))
        else
            echo "FAIL $name tokenize: trinity '$got', llama.cpp '$want' $(head -c 300 "$TMP/err")"
            failed=$((failed + 1))
        fi
    fi

    for run_flags in "-t 1" "-t 2" "--scalar"; do
        # shellcheck disable=SC2206 # split the flags on purpose
        flags=($run_flags)
        cmd=("$TRINITY" generate -m "$MODEL" -p "$prompt" -n "$n" "${ctx_flags[@]}" --temp 0 "${flags[@]}")
        "${cmd[@]}" >"$TMP/out" 2>"$TMP/err"
        rc=$?
        if [ $rc -ne 0 ]; then
            echo "FAIL $name ($run_flags): exit $rc: $(head -c 500 "$TMP/err")"
            failed=$((failed + 1))
        elif cmp -s "$golden" "$TMP/out"; then
            passed=$((passed + 1))
        else
            echo "FAIL $name ($run_flags): stdout differs from $golden"
            echo "  command: trinity generate -m \$TRN_TESTDATA/stories260K/stories260K.gguf -p '$prompt' -n $n ${ctx_flags[*]} --temp 0 $run_flags"
            report_mismatch "$golden" "$TMP/out"
            [ -f "$ids" ] && echo "  llama.cpp's ids: $ids"
            failed=$((failed + 1))
        fi
    done
done <"$GOLDEN/manifest.txt"

if [ $((passed + failed)) -eq 0 ]; then
    echo "FAIL: no cases in $GOLDEN/manifest.txt"
    failed=1
fi
echo "test_golden_text: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
