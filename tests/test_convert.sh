#!/usr/bin/env bash
# test_convert.sh: `trinity convert` end to end, against goldens made by implementations Trinity did not write.
#
#   bash tests/test_convert.sh TRINITY MAKE_TEST_MODELS      (env: TRN_SOURCE_DIR, TRN_TESTDATA; both optional)
#
# Fixtures and goldens: tests/golden/convert/ (made by scripts/make_convert_fixtures.py; see its manifest.txt):
# a tiny sharded BF16 Hugging Face Llama checkpoint (hf_tiny/), a TRIN file for it, and the teacher-forced logits of
# the converted weights computed by Hugging Face transformers on the unpermuted checkpoint.
#
#   hf      convert hf_tiny (--type tq2_0, tq1_0, f16, f32, --ternary-rule seed, --vocab): the top-1 id and logit
#           at every position from `trinity logits --top 1 --act f32` equal the golden's (argmax exactly, logit
#           within 3e-4; always runs), and with numpy the full logits' normalized squared error
#           sum (a-b)^2 / sum b^2 is at most 1e-6 (float-activation mode: exact math up to float rounding; the
#           manifest shows what the tolerance has to absorb: ~1e-13 between transformers and float64 NumPy, and
#           float16 scales are already in the golden). tokenize of three prompts equals SentencePiece's ids.
#   trin    convert trin_tiny.bin with --base hf_tiny: the same checks against its golden.
#   llama2c (needs $TRN_TESTDATA/stories260K) stories260K.bin + tok512.bin: greedy text of 200 tokens, logits and
#           tokenization equal, byte for byte, those of llama.cpp's stories260K.gguf beside them.
#   gguf-py (needs python3 with gguf and numpy) every converted file loads with gguf.GGUFReader, with the expected
#           tensors and types; a NumPy forward pass over gguf-py's dequantized tensors (GGUF RoPE convention)
#           matches the golden within 1e-6; the llama2c file's tensors equal stories260K.gguf's.
#   llama.cpp (optional, llama-cpp-python) loads the converted hf and trin files; for the ternary ones its logits
#           equal trinity's int8-activation logits of the same file (but for int8 rounding-boundary flips) and
#           stay near the float golden (nmse <= 1e-2); for f16, within 1e-4 of the golden.
#   bad input: broken TRIN and HF files made here from the fixtures (truncated, wrong byte count, code 3, trailing
#           bytes, gpt2 config, missing shard, I8 dtype, wrong shape, ...) and bad llama2c files: exit 1, exactly one
#           "error: " line, as the last line of stderr, naming the file (or tensor) at fault, nothing on stdout,
#           and no output file nor temporary file left behind. Bad usage: exit 2.
#
# Prints one line per case (ok, FAIL with details, or SKIPPED) and "test_convert: N passed, M failed, K skipped";
# exits 1 if any case failed, 77 if nothing could run. Needs bash, coreutils, grep, sed, awk, od; python3 only
# for the optional checks (each skips where its module is missing). Each command runs under `timeout 120`
# (TRN_TEST_TIMEOUT).
set -u

if [ $# -ne 2 ]; then
    echo "usage: bash tests/test_convert.sh TRINITY MAKE_TEST_MODELS" >&2
    exit 2
fi
TRINITY=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
if [ ! -x "$TRINITY" ]; then
    echo "test_convert: $TRINITY is not an executable" >&2
    exit 1
fi
# MAKE_TEST_MODELS is not needed here (the fixtures are committed files).
SRC=${TRN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
GOLD=$SRC/tests/golden/convert
TESTDATA=${TRN_TESTDATA:-$SRC/../shared/testdata}
STORIES=$TESTDATA/stories260K
LIMIT=${TRN_TEST_TIMEOUT:-120}
export LC_ALL=C

for f in hf_tiny/config.json hf_tiny/model.safetensors.index.json hf_tiny.ids trin_tiny.bin manifest.txt; do
    if [ ! -f "$GOLD/$f" ]; then
        echo "test_convert: $GOLD/$f missing (python3 scripts/make_convert_fixtures.py makes it)"
        echo "test_convert: 0 passed, 1 failed, 0 skipped"
        exit 1
    fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/trinity_test_convert.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
WORK=$TMP/work   # working directory of every command: a failed conversion must leave it empty
CONV=$TMP/conv   # converted files, one folder each
BAD=$TMP/bad     # broken inputs
mkdir -p "$WORK" "$CONV" "$BAD"
OUT=$TMP/stdout
ERR=$TMP/stderr
IDS=$(cat "$GOLD/hf_tiny.ids")

PASSED=0
FAILED=0
SKIPPED=0
RC=0

# ---- helpers (as in test_cli.sh) ----------------------------------------------------------------------------------

# shellcheck source=tests/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

# expect_error NAME WANT_RC PATTERNS -- CMD...
#   WANT_RC 1 (run time) or 2 (usage). PATTERNS: extended regular expressions separated by '|||', all of which
#   the error line must match (case-insensitive). The command runs in an empty $WORK (failed conversions write
#   -o out.gguf there), which must still be empty afterwards: no output, no temporary file.
expect_error() {
    local name=$1 want_rc=$2 patterns=$3
    shift 4
    run "$@"
    local problem="" report
    report=$(sanitizer_report)
    if [ "$RC" -eq 124 ]; then
        problem="timed out after $LIMIT s (hang?)"
    elif [ "$RC" -ge 128 ]; then
        problem="killed by signal $((RC - 128))"
    elif [ -n "$report" ]; then
        problem="sanitizer or crash report on stderr: $report"
    elif [ "$RC" -eq 0 ]; then
        problem="exit code 0 on bad input"
    elif [ "$RC" -ne "$want_rc" ]; then
        problem="exit code $RC, expected $want_rc"
    fi
    local lines=()
    mapfile -t lines <"$ERR"
    local n=${#lines[@]} n_errors
    n_errors=$(grep -c '^error: ' "$ERR")
    if [ -z "$problem" ]; then
        if [ "$n" -eq 0 ]; then
            problem="nothing on stderr"
        elif [ "$n_errors" -ne 1 ]; then
            problem="$n_errors lines start with 'error: ' on stderr, expected exactly 1"
        elif [[ "${lines[n - 1]}" != "error: "* ]]; then
            problem="the last line of stderr does not start with 'error: '"
        fi
    fi
    if [ -z "$problem" ]; then
        local message=${lines[n - 1]} pattern rest=$patterns
        while [ -n "$rest" ]; do
            pattern=${rest%%|||*}
            if [ "$pattern" = "$rest" ]; then rest=""; else rest=${rest#*|||}; fi
            if ! grep -q -i -E -e "$pattern" <<<"$message"; then
                problem="the message does not match /$pattern/"
                break
            fi
        done
    fi
    if [ -z "$problem" ] && [ -s "$OUT" ]; then
        problem="output on stdout"
    fi
    if [ -z "$problem" ] && [ -n "$(find "$WORK" -mindepth 1 -print -quit)" ]; then
        problem="files left behind: $(find "$WORK" -mindepth 1 -maxdepth 1 -printf '%f ')"
    fi
    if [ -n "$problem" ]; then not_ok "$name" "$problem"; else ok "$name"; fi
}

# expect_success NAME -- CMD...: exit 0, no error line, no sanitizer report; returns 1 (after reporting) otherwise.
expect_success() {
    local name=$1
    shift 2
    run "$@"
    local report
    report=$(sanitizer_report)
    if [ "$RC" -eq 124 ]; then
        not_ok "$name" "timed out after $LIMIT s (hang?)"
    elif [ "$RC" -ge 128 ]; then
        not_ok "$name" "killed by signal $((RC - 128))"
    elif [ -n "$report" ]; then
        not_ok "$name" "sanitizer or crash report on stderr: $report"
    elif [ "$RC" -ne 0 ]; then
        not_ok "$name" "exit code $RC"
    elif grep -q '^error' "$ERR"; then
        not_ok "$name" "an error line on stderr"
    else
        return 0
    fi
    return 1
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

# A build without cJSON has no hf/trin converters (they fail with a line saying so): nothing here can compare.
if "$TRINITY" convert --from hf "$GOLD/hf_tiny" -o "$TMP/probe.gguf" 2>&1 >/dev/null | grep -q "needs cJSON"; then
    echo "SKIPPED: this trinity was built without cJSON (libcjson-dev), so it has no hf or trin converter"
    exit 77
fi
rm -f "$TMP/probe.gguf"

HAVE_NUMPY=0
HAVE_GGUF=0
HAVE_LLAMACPP=0
if command -v python3 >/dev/null 2>&1; then
    python3 -c "import numpy" >/dev/null 2>&1 && HAVE_NUMPY=1
    python3 -c "import numpy, gguf" >/dev/null 2>&1 && HAVE_GGUF=1
    python3 -c "import numpy, llama_cpp" >/dev/null 2>&1 && HAVE_LLAMACPP=1
fi

CHECK_PY=$TMP/check.py
cat >"$CHECK_PY" <<'EOF'
import sys
import numpy as np


def nmse(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.sum((a - b) ** 2) / np.sum(b ** 2))


def load_gguf(path):
    import gguf
    r = gguf.GGUFReader(path)
    t, types = {}, {}
    for tensor in r.tensors:
        a = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        shape = [int(x) for x in reversed(tensor.shape.tolist())]
        t[tensor.name] = np.asarray(a, np.float64).reshape(shape)
        types[tensor.name] = tensor.tensor_type.name
    return r, t, types


def field(r, key, default=None):
    f = r.fields.get(key)
    return default if f is None else f.contents()


def forward(r, t, ids):
    """float64 Llama forward, GGUF llama RoPE convention (adjacent pairs of each head)."""
    n_layer = int(field(r, "llama.block_count"))
    n_embd = int(field(r, "llama.embedding_length"))
    n_head = int(field(r, "llama.attention.head_count"))
    n_kv = int(field(r, "llama.attention.head_count_kv", n_head))
    base = float(field(r, "llama.rope.freq_base", 10000.0))
    eps = float(field(r, "llama.attention.layer_norm_rms_epsilon", 1e-5))
    hd = n_embd // n_head
    n = len(ids)

    def rmsnorm(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    ang = np.arange(n, dtype=np.float64)[:, None] * base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x, heads):
        x = x.reshape(n, heads, hd // 2, 2)
        x0, x1 = x[..., 0], x[..., 1]
        return np.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1).reshape(n, heads, hd)

    mask = np.triu(np.full((n, n), -np.inf), 1)
    x = t["token_embd.weight"][np.asarray(ids)]
    for l in range(n_layer):
        p = "blk.%d." % l
        h = rmsnorm(x, t[p + "attn_norm.weight"])
        q = rope(h @ t[p + "attn_q.weight"].T, n_head)
        k = rope(h @ t[p + "attn_k.weight"].T, n_kv)
        v = (h @ t[p + "attn_v.weight"].T).reshape(n, n_kv, hd)
        out = np.empty((n, n_head, hd))
        for head in range(n_head):
            kv = head // (n_head // n_kv)
            s = q[:, head, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            out[:, head, :] = s @ v[:, kv, :]
        x = x + out.reshape(n, -1) @ t[p + "attn_output.weight"].T
        h = rmsnorm(x, t[p + "ffn_norm.weight"])
        g = h @ t[p + "ffn_gate.weight"].T
        u = h @ t[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ t[p + "ffn_down.weight"].T
    h = rmsnorm(x, t["output_norm.weight"])
    return h @ t["output.weight" if "output.weight" in t else "token_embd.weight"].T


def main():
    cmd = sys.argv[1]
    if cmd == "nmse":  # nmse GOT.npy GOLDEN.npy BOUND
        a, b, bound = np.load(sys.argv[2]), np.load(sys.argv[3]), float(sys.argv[4])
        if a.shape != b.shape:
            print("shape %s, expected %s" % (a.shape, b.shape))
            return 1
        e = nmse(a, b)
        print("nmse %.3g (bound %g), argmax equal at %d of %d positions"
              % (e, bound, int(np.sum(a.argmax(1) == b.argmax(1))), a.shape[0]))
        return 0 if e <= bound else 1
    if cmd == "gguf":  # gguf FILE N_TENSORS TYPES(name=type,...|-) GOLDEN.npy|- IDS BOUND
        path, n_tensors, types_spec, golden, ids, bound = sys.argv[2:8]
        r, t, types = load_gguf(path)
        problems = []
        if len(t) != int(n_tensors):
            problems.append("%d tensors, expected %s" % (len(t), n_tensors))
        if field(r, "general.architecture") != "llama":
            problems.append("general.architecture %r" % field(r, "general.architecture"))
        if types_spec != "-":
            for item in types_spec.split(","):
                name, want = item.split("=")
                if types.get(name) != want:
                    problems.append("%s is %s, expected %s" % (name, types.get(name), want))
        msg = "%d tensors" % len(t)
        if golden != "-" and not problems:
            e = nmse(forward(r, t, [int(i) for i in ids.split()]), np.load(golden))
            msg += ", NumPy forward over gguf-py's tensors: nmse %.3g to the golden (bound %s)" % (e, bound)
            if not e <= float(bound):
                problems.append(msg)
        print("; ".join(problems) if problems else msg)
        return 1 if problems else 0
    if cmd == "same-tensors":  # same-tensors CONVERTED REFERENCE: every tensor of REFERENCE, equal values
        r1, t1, _ = load_gguf(sys.argv[2])
        r2, t2, _ = load_gguf(sys.argv[3])
        problems = []
        for name, v in t2.items():
            if name not in t1:
                if name == "output.weight" and np.array_equal(v, t2["token_embd.weight"]):
                    continue  # a tied head may be left out
                problems.append("%s missing" % name)
            elif t1[name].shape != v.shape or not np.array_equal(t1[name], v):
                problems.append("%s differs" % name)
        extra = sorted(set(t1) - set(t2))
        if extra:
            problems.append("extra tensors %s" % extra)
        print("; ".join(problems) if problems else "%d tensors, equal to the reference's" % len(t1))
        return 1 if problems else 0
    if cmd == "llamacpp":  # llamacpp FILE GOLDEN.npy TRINITY.npy|- IDS: llama.cpp loads the file; its logits
        from llama_cpp import Llama
        llm = Llama(model_path=sys.argv[2], n_ctx=64, logits_all=True, verbose=False, seed=0, n_threads=1,
                    n_threads_batch=1, flash_attn=False, type_k=0, type_v=0)
        ids = [int(i) for i in sys.argv[5].split()]
        llm.eval(ids)
        got = np.array(llm.scores[:len(ids)], dtype=np.float32)
        e_gold = nmse(got, np.load(sys.argv[3]))
        if sys.argv[4] == "-":  # F16 weights: llama.cpp rounds the activations to float16 in F16 products
            print("llama.cpp: nmse %.3g to the golden (bound 1e-4: float16 activations)" % e_gold)
            return 0 if e_gold <= 1e-4 else 1
        # ternary weights: llama.cpp's TQ kernels quantize activations to int8 as trinity's default mode does; the
        # two agree to float rounding except where a value lies on an int8 rounding boundary (a flip moves that
        # position by ~1e-5)
        int8 = np.load(sys.argv[4])
        per = [nmse(got[i], int8[i]) for i in range(len(ids))]
        exact = sum(e <= 1e-10 for e in per)
        print("llama.cpp: nmse %.3g to the golden (bound 1e-2: int8 activations); equal to trinity's int8 logits "
              "(nmse <= 1e-10) at %d of %d positions (bound %d), the others within %.3g (bound 1e-3)"
              % (e_gold, exact, len(ids), len(ids) - 2, max(per)))
        return 0 if e_gold <= 1e-2 and exact >= len(ids) - 2 and max(per) <= 1e-3 else 1
    raise SystemExit("unknown command " + cmd)


sys.exit(main())
EOF

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

generate_runs() { # generate_runs LABEL MODEL
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

declare -a GGUF_CHECKS=() # "FILE|N_TENSORS|TYPES|GOLDEN|BOUND" for the gguf-py part

# ---- hf -----------------------------------------------------------------------------------------------------------

HF=$GOLD/hf_tiny
TQ2_TYPES="blk.0.attn_q.weight=TQ2_0,blk.1.ffn_down.weight=TQ2_0,output.weight=TQ2_0,token_embd.weight=F16"
TQ2_TYPES="$TQ2_TYPES,blk.0.attn_norm.weight=F32,output_norm.weight=F32"

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

# ---- trin ---------------------------------------------------------------------------------------------------------

F=$CONV/trin/out.gguf
if convert "--from trin --base hf_tiny" "$F" --from trin "$GOLD/trin_tiny.bin" --base "$HF"; then
    info_types "trin" "$F" blk.0.attn_q.weight=tq2_0 output.weight=tq2_0 token_embd.weight=f16 \
        output_norm.weight=f32
    logits_checks "trin" "$F" trin_tq2_0
    tokenize_matches "trin" "$F"
    generate_runs "trin" "$F"
    GGUF_CHECKS+=("$F|21|$TQ2_TYPES|$GOLD/trin_tq2_0_logits.npy")
fi
F=$CONV/trin_tq1/out.gguf
if convert "--from trin --base hf_tiny --type tq1_0" "$F" --from trin "$GOLD/trin_tiny.bin" --base "$HF" \
    --type tq1_0; then
    logits_checks "trin tq1_0" "$F" trin_tq2_0
    GGUF_CHECKS+=("$F|21|${TQ2_TYPES//TQ2_0/TQ1_0}|$GOLD/trin_tq2_0_logits.npy")
fi

# ---- llama2c ------------------------------------------------------------------------------------------------------

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
        if expect_success "llama2c f16: generate -n 5" -- \
            "$TRINITY" generate -m "$F" -p "Once upon a time" -n 5 --temp 0; then
            [[ "$(head -c 16 "$OUT")" == "Once upon a time" ]]
            check "llama2c f16: generate -n 5" "stdout does not start with the prompt" $?
        fi
    fi
else
    skip "llama2c conversions" "$STORIES/stories260K.bin, tok512.bin or stories260K.gguf not found (set TRN_TESTDATA)"
fi

# ---- gguf-py ------------------------------------------------------------------------------------------------------

if [ "$HAVE_GGUF" -eq 1 ]; then
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
else
    skip "gguf-py checks" "python3 with gguf and numpy not found"
fi

if [ "$HAVE_LLAMACPP" -eq 1 ]; then
    for pair in "hf_tq2_0:hf_tq2_0" "hf_f16:hf_f16" "trin:trin_tq2_0"; do
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
else
    skip "llama.cpp checks" "python3 with llama_cpp (llama-cpp-python) not found"
fi

# ---- bad input: broken files made from the fixtures -------------------------------------------------------------

le32() { # the escapes printf needs for a little-endian u32
    printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255))
}
patch() { # patch FILE OFFSET PRINTF-FORMAT: overwrite bytes in place
    # shellcheck disable=SC2059
    printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
u32_at() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }

# TRIN: the offset of each layer's record (u32 count, then the codes)
T=$GOLD/trin_tiny.bin
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

# HF checkpoints: copies of hf_tiny with one thing broken
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
cp "$T" "$BAD/trin_self.bin"
expect_error "trin: -o is the input" 1 'trin_self\.bin|||input' -- \
    "$TRINITY" convert --from trin "$BAD/trin_self.bin" --base "$HF" -o "$BAD/trin_self.bin"
cmp -s "$T" "$BAD/trin_self.bin"
check "trin: -o is the input: the input unchanged" "the TRIN file was overwritten" $?
hf_copy hf_self
expect_error "hf: -o is a shard of the checkpoint" 1 "${SHARD1//./\\.}|||input" -- \
    "$TRINITY" convert --from hf "$BAD/hf_self" -o "$BAD/hf_self/$SHARD1"
cmp -s "$HF/$SHARD1" "$BAD/hf_self/$SHARD1"
check "hf: -o is a shard of the checkpoint: the shard unchanged" "the shard was overwritten" $?
expect_error "hf: -o is a directory" 1 'directory' -- "$TRINITY" convert --from hf "$HF" -o "$BAD"
expect_error "hf: --vocab /dev/zero" 1 '/dev/zero|||regular' -- \
    "$TRINITY" convert --from hf "$HF" --vocab /dev/zero -o out.gguf

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

expect_error "usage: --from onnx" 2 '--from|||onnx' -- "$TRINITY" convert --from onnx "$HF" -o out.gguf
expect_error "usage: no -o" 2 '-o' -- "$TRINITY" convert --from hf "$HF"
expect_error "usage: no --from" 2 '--from' -- "$TRINITY" convert "$HF" -o out.gguf
expect_error "usage: no input" 2 'input' -- "$TRINITY" convert --from hf -o out.gguf
expect_error "usage: --type q4_k" 2 '--type|||q4_k' -- "$TRINITY" convert --from hf "$HF" --type q4_k -o out.gguf
expect_error "usage: --embed-type tq2_0" 2 '--embed-type|||tq2_0' -- \
    "$TRINITY" convert --from hf "$HF" --embed-type tq2_0 -o out.gguf
expect_error "usage: --ternary-rule bogus" 2 '--ternary-rule|||bogus' -- \
    "$TRINITY" convert --from hf "$HF" --ternary-rule bogus -o out.gguf
expect_error "usage: --from trin without --base" 2 '--base' -- "$TRINITY" convert --from trin "$T" -o out.gguf
expect_error "usage: --from llama2c without --tokenizer" 2 '--tokenizer' -- \
    "$TRINITY" convert --from llama2c "$BAD/any.bin" -o out.gguf
expect_error "usage: -o without a value" 2 '-o' -- "$TRINITY" convert --from hf "$HF" -o

echo "test_convert: $PASSED passed, $FAILED failed, $SKIPPED skipped"
if [ "$FAILED" -gt 0 ]; then exit 1; fi
if [ "$PASSED" -eq 0 ]; then exit 77; fi
exit 0
