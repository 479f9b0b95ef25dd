#!/usr/bin/env python3
"""make_golden_text.py: golden generation text for tests/test_golden_text.sh, made by llama.cpp, not by Trinity.

What it makes, in tests/golden/text/:
  NAME.txt      the exact bytes `trinity generate -m stories260K.gguf -p PROMPT -n N [-c CTX] --temp 0` must print
                on stdout: the prompt as SentencePiece decodes it, the generated text, then one "\n".
  NAME.ids      the token ids llama.cpp produced (prompt with BOS, then the generated ids), why generation
                stopped, and the smallest top-1/top-2 logit margin seen (a near tie is where two correct
                engines could legitimately part ways).
  manifest.txt  one tab-separated line per case (name, -n, -c or "default", prompt), and comment lines with
                the llama-cpp-python version, the llama.cpp build commit, the model's sha256 and each case's
                exact trinity command line.

How: llama-cpp-python (which wraps llama.cpp) loads ../shared/testdata/stories260K/stories260K.gguf
(the 260K-parameter TinyStories model, see ../shared/testdata/README.md), tokenizes the prompt with
add_bos=True, evaluates it, and then at each step this script takes the argmax of llama.cpp's logits itself
(no llama.cpp sampler: no temperature, no repetition penalty; ties go to the lowest id). Generation stops at
EOS (which is not printed) or after N new tokens, like `trinity generate`.

The text comes from llama.cpp's own C detokenizer, llama_detokenize(vocab, ids[1:], remove_special=False,
unparse_special=False), called once on the whole sequence without the BOS token (prompt ids then generated
ids). For this SPM vocabulary llama.cpp sets add_space_prefix, and llama_detokenize then strips one leading
space from the first piece, as SentencePiece's decoder drops the dummy-prefix space; the BOS itself is a
CONTROL token that prints nothing. (Passing the BOS to llama_detokenize would not do: the BOS would consume
the strip and the text would start with a space. llama-cpp-python's Python-side Llama.detokenize strips the
space itself in Python; it is not used here.) Byte-fallback pieces come out as raw bytes, so multi-byte
UTF-8 characters split over several tokens are reassembled by plain concatenation.

Case "empty" (empty prompt, -n 200, -c 512) must equal the llama2.c reference: run.c run as
`./run stories260K.bin -z tok512.bin -t 0.0 -n 200` prints test_all.py's expected_stdout (quoted below) plus a
final "\n"; the script checks this and fails if llama.cpp disagrees.

Deterministic and idempotent: one thread, greedy, fixed cases; rerunning rewrites the same bytes.

Run from anywhere:  python3 scripts/make_golden_text.py
"""

import ctypes
import hashlib
import os
import re
import sys

import numpy as np

import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_REL = "stories260K/stories260K.gguf"  # relative to the test data folder ($TRN_TESTDATA)
MODEL = os.path.join(ROOT, "..", "shared", "testdata", MODEL_REL)
OUT_DIR = os.path.join(ROOT, "tests", "golden", "text")

# (name, prompt, -n, -c or None for the model's own context length, 128 for this file)
CASES = [
    ("empty", "", 200, 512),
    ("once_upon", "Once upon a time", 100, None),
    ("lily_tom", "Lily and Tom went to the park. They saw", 80, None),
    ("cafe_zoe", "The caf\u00e9 had a dog named Zo\u00eb.", 40, None),  # é and ë go through byte fallback
]

# karpathy/llama2.c test_all.py, expected_stdout (200 tokens from BOS, greedy, run.c prints it then "\n").
LLAMA2C_EXPECTED = (
    b'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she '
    b'saw a big, red ball. She wanted to play with it, but it was too high.\nLily\'s mom said, "Lily, let\'s go to '
    b'the park." Lily was sad and didn\'t know what to do. She said, "I want to play with your ball, but I can\'t '
    b'find it."\nLily was sad and didn\'t know what to do. She said, "I\'m sorry, Lily. I didn\'t know what to '
    b'do."\nLily didn\'t want to help her mom, so she'
)


def llama_cpp_build_commit():
    """The build commit recorded by the installed package's CMake config, if any."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(llama_cpp.__file__)))
    path = os.path.join(pkg, "lib", "cmake", "llama", "llama-config.cmake")
    try:
        with open(path, encoding="utf-8") as f:
            m = re.search(r"set\(LLAMA_BUILD_COMMIT\s+\"?([^\s\")]+)", f.read())
            return m.group(1) if m else "unknown"
    except OSError:
        return "unknown"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detokenize(llm, ids):
    """llama.cpp's own detokenizer (C), no special tokens rendered."""
    if not ids:
        return b""
    arr = (llama_cpp.llama_token * len(ids))(*ids)
    cap = 64 + 32 * len(ids)
    buf = ctypes.create_string_buffer(cap)
    n = llama_cpp.llama_detokenize(llm._model.vocab, arr, len(ids), buf, cap, False, False)
    if n < 0:
        raise RuntimeError("llama_detokenize: buffer too small (%d needed)" % -n)
    return buf.raw[:n]


def last_logits(llm):
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32, copy=True)


def run_case(prompt, n_predict, n_ctx):
    llm = Llama(model_path=MODEL, n_ctx=n_ctx, logits_all=False, verbose=False, seed=0, n_threads=1,
                n_threads_batch=1)
    # llama.cpp may round its KV cache up (to 256 cells here); the unused cells are masked out and change
    # nothing. The -n limit below is checked against CTX itself, as trinity does.
    assert llm.n_ctx() >= n_ctx, (llm.n_ctx(), n_ctx)
    bos, eos = llm.token_bos(), llm.token_eos()
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
    assert ids and ids[0] == bos, ids
    if len(ids) + n_predict > n_ctx:
        raise SystemExit("case needs %d positions, more than -c %d" % (len(ids) + n_predict, n_ctx))

    llm.reset()
    llm.eval(ids)
    generated, margins, stop = [], [], "n_predict"
    for produced in range(n_predict):
        logits = last_logits(llm)
        nxt = int(np.argmax(logits))  # first maximum: ties go to the lowest id
        top2 = np.partition(logits, -2)[-2:]
        margins.append(float(top2[1] - top2[0]))
        if nxt == eos:
            stop = "eos"
            break
        generated.append(nxt)
        if produced + 1 == n_predict:
            break
        llm.eval([nxt])

    prompt_text = detokenize(llm, ids[1:])
    text = detokenize(llm, ids[1:] + generated)
    assert text.startswith(prompt_text), (prompt_text, text)
    del llm
    return ids, generated, stop, margins, text + b"\n"


def write_if_changed(path, data):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except OSError:
        pass
    with open(path, "wb") as f:
        f.write(data)
    return True


def main():
    if not os.path.exists(MODEL):
        sys.exit("model not found: %s (see ../shared/testdata/README.md)" % MODEL)
    os.makedirs(OUT_DIR, exist_ok=True)
    model_sha = sha256(MODEL)
    default_ctx = None
    manifest = [
        "# Golden text for tests/test_golden_text.sh, made by scripts/make_golden_text.py (do not edit by hand).",
        "# Generator: llama-cpp-python %s, llama.cpp build commit %s (LLAMA_BUILD_COMMIT in the installed"
        % (llama_cpp.__version__, llama_cpp_build_commit()),
        "#   package's lib/cmake/llama/llama-config.cmake); greedy argmax of llama.cpp's logits, 1 thread;",
        "#   text = llama_detokenize(ids without BOS, remove_special=false, unparse_special=false) + \"\\n\".",
        "# Model: $TRN_TESTDATA/%s sha256 %s" % (MODEL_REL, model_sha),
        "# Format: one case per line, tab-separated: NAME, -n, -c (or 'default' for the model's context length),",
        "#   PROMPT (raw UTF-8, rest of the line). Golden stdout in NAME.txt, llama.cpp's ids in NAME.ids.",
    ]
    changed = []
    for name, prompt, n_predict, n_ctx in CASES:
        assert not any(c in prompt for c in "\t\n\r"), "prompts must fit on one manifest line"
        ctx = n_ctx
        if ctx is None:
            if default_ctx is None:
                probe = Llama(model_path=MODEL, n_ctx=16, verbose=False, n_threads=1)
                default_ctx = int(probe.metadata["llama.context_length"])  # what trinity uses without -c
                del probe
            ctx = default_ctx
        ids, generated, stop, margins, golden = run_case(prompt, n_predict, ctx)
        if name == "empty" and golden != LLAMA2C_EXPECTED + b"\n":
            sys.exit("case empty: llama.cpp's text differs from llama2.c's expected_stdout:\n%r" % golden)
        step = int(np.argmin(margins))
        flags = "-p %s -n %d%s" % (shell_quote(prompt), n_predict, "" if n_ctx is None else " -c %d" % n_ctx)
        manifest.append("# %s: trinity generate -m $TRN_TESTDATA/%s %s --temp 0" % (name, MODEL_REL, flags))
        manifest.append("%s\t%d\t%s\t%s" % (name, n_predict, "default" if n_ctx is None else n_ctx, prompt))
        sidecar = "\n".join([
            "# llama.cpp token ids for case %s (see manifest.txt); CTX %d" % (name, ctx),
            "prompt: " + " ".join(map(str, ids)),
            "generated: " + " ".join(map(str, generated)),
            "count: %d prompt, %d generated" % (len(ids), len(generated)),
            "stop: " + stop,
            "min_margin: %.6g at step %d (top-1 minus top-2 logit; step 0 is the first generated token)"
            % (margins[step], step),
        ]) + "\n"
        if write_if_changed(os.path.join(OUT_DIR, name + ".txt"), golden):
            changed.append(name + ".txt")
        if write_if_changed(os.path.join(OUT_DIR, name + ".ids"), sidecar.encode("utf-8")):
            changed.append(name + ".ids")
        print("%-10s %3d prompt + %3d generated tokens, stop=%s, min margin %.4g at step %d" %
              (name, len(ids), len(generated), stop, margins[step], step))
    if write_if_changed(os.path.join(OUT_DIR, "manifest.txt"), ("\n".join(manifest) + "\n").encode("utf-8")):
        changed.append("manifest.txt")
    print("wrote: " + (", ".join(changed) if changed else "nothing (all files already up to date)"))


def shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


if __name__ == "__main__":
    main()
