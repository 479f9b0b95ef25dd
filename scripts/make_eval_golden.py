#!/usr/bin/env python3
"""make_eval_golden.py: golden files for tests/test_eval.c, made by implementations Trinity did not write.

What it makes, in tests/golden/eval/:
  tiny_ternary.gguf            a small random ternary Llama model written with gguf-py's GGUFWriter: 2 layers,
                               n_embd 256, n_ff 512, 4 heads, 2 KV heads (head size 64), context 128, RoPE base
                               10000, RMS eps 1e-5; every linear layer and output.weight TQ2_0 with weights exactly
                               {-1, 0, +1} x one float16 scale per 256-block (so TQ2_0 holds them losslessly),
                               token_embd F32, norms F32 near 1; a SentencePiece ("llama") vocabulary of <unk> <s>
                               </s>, the 256 <0xNN> byte pieces and U+2581-prefixed letter/word pieces.
  tiny_ternary.ids             the id sequence the tiny model's logits are computed for: llama.cpp's tokenization
                               (with BOS) of TINY_TEXT, which goes through byte fallback for capitals and '.'.
  logits_numpy_f32.npy         [n, vocab] float32: teacher-forced logits of the tiny model from a NumPy float64
                               forward pass over the weights as gguf-py dequantizes them (gguf.GGUFReader +
                               gguf.quants.dequantize): the model's exact math up to rounding. The reference for
                               Trinity's float-activation mode (TRN_ACT_F32).
  logits_llamacpp.npy          [n, vocab] float32: llama.cpp's logits for the same ids. llama.cpp's CPU TQ2_0 kernel
                               quantizes each activation vector to int8 per block of 256 (Q8_K), so this is the
                               reference for Trinity's int8 mode (TRN_ACT_INT8).
  stories260K_logits.ids       the ~40-id sequence of the stories260K logits (STORIES_LOGITS_TEXT with BOS).
  stories260K_logits_llamacpp.npy  [n, 512] float32: llama.cpp's teacher-forced logits of stories260K (F32) for it.
  stories_text.txt             a few KB of TinyStories-style English (plain ASCII, written for this test).
  stories_text.ids             llama.cpp's tokenization of stories_text.txt with BOS (to diagnose a mismatch).
  stories260K_ppl.txt          perplexity of stories_text.txt under stories260K from llama.cpp's logits, computed by
                               the method of host/eval.h (= llama.cpp's perplexity tool): tokenize once with BOS,
                               chunks of CTX = 64, first token of each chunk replaced by BOS, each chunk from
                               position 0, score j = 32..62 predicting token j + 1; ppl = exp(mean nll),
                               stderr = ppl * sqrt(var(nll) / (N - 1)).
  manifest.txt                 versions, sha256 of the inputs and outputs, the id sequences, and the measured
                               normalized MSE (sum (a-b)^2 / sum b^2) between the NumPy and llama.cpp logits.

llama.cpp settings, for every run: llama-cpp-python's Llama(..., logits_all=True, n_threads=1, n_threads_batch=1,
flash_attn=False, type_k=type_v=GGML_TYPE_F32). The float32 KV cache matters: with llama.cpp's default float16
cache, K, V, Q and the attention probabilities are rounded to float16 in the attention products. In float
arithmetic alone that costs ~1e-8 (normalized), but int8 rounding is discontinuous: a perturbation upstream of a
quantization flips values across rounding boundaries by whole steps and the flips cascade through later layers and
positions, so on the tiny model the float16 cache moves llama.cpp's logits by 3e-4, as much as the int8 effect
itself (the manifest records it). The manifest also records how sensitive the int8 logits are to rounding-sized
noise (NumPy with llama.cpp's Q8_K rule emulated) and how far another int8 rule lands, which is what
tests/test_eval.c's int8 bounds are chosen from. Self-checks: the NumPy forward pass reproduces llama.cpp's stories260K
logits (F32 weights, no quantization) to a normalized MSE below 1e-9 (so it is the same math), and the tiny model
round-trips through gguf-py losslessly (dequantized weights equal the ternary values written).

Versions used to make the committed files: Python 3.11.7, numpy 2.4.6, gguf-py 0.19.0, llama-cpp-python 0.3.36
(llama.cpp build commit 0c1e570); the manifest records the versions of each run.

Deterministic and idempotent: a fixed NumPy seed, one thread, no timestamps; rerunning rewrites the same bytes
(files are only rewritten when their content changes).

Run from anywhere:  python3 scripts/make_eval_golden.py
(needs: pip install numpy gguf llama-cpp-python; stories260K.gguf under ../shared/testdata, see its README.md)
"""

import hashlib
import io
import os
import platform
import re
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter, TokenType

import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "golden", "eval")
STORIES_REL = "stories260K/stories260K.gguf"  # relative to the test data folder ($TRN_TESTDATA)
STORIES = os.path.join(ROOT, "..", "shared", "testdata", STORIES_REL)

SEED = 20250611
GGML_TYPE_F32 = 0

# tiny model
N_LAYER, N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_CTX = 2, 256, 512, 4, 2, 128
ROPE_BASE, RMS_EPS = 10000.0, 1e-5
TINY_TEXT = "Once upon a time there was a little girl named Lily. She saw a big red ball in the park."
WORDS = ["the", "and", "was", "she", "he", "a", "to", "time", "once", "upon", "there", "little", "girl", "named",
         "lily", "play", "park", "day", "big", "red", "ball", "said", "happy", "cat", "dog", "tom", "saw", "in"]

# stories260K
STORIES_LOGITS_TEXT = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the "
                       "park with her friend Tom.")
PPL_CTX = 64

# Written for this test in the style of TinyStories (plain ASCII); paragraphs joined by blank lines.
STORIES_PARAGRAPHS = [
    ('Once upon a time, there was a little girl named Lily. She lived in a small house with her mom and dad. Lily '
     'loved to play outside in the sun. One day, she saw a big red ball in the park. She ran to the ball and '
     'picked it up. It was soft and round.'),
    ('Lily wanted to play with the ball, but she did not have a friend to play with. She looked around and saw a '
     'boy named Tom. Tom was sitting on a bench. He looked sad. Lily walked to Tom and said, "Hi, Tom! Do you want'
     ' to play with my ball?" Tom smiled and said, "Yes, I want to play!"'),
    ('Lily and Tom played with the ball all day. They threw it high in the sky and ran after it. They laughed and '
     "had a lot of fun. When the sun went down, Lily's mom called her. \"Lily, it is time to come home,\" she said. "
     'Lily gave Tom a hug and said, "Thank you for playing with me. Can we play again tomorrow?" Tom nodded and '
     'waved goodbye.'),
    ('The next day, Lily went back to the park. She looked for Tom, but she could not find him. She was sad. Then '
     'she heard a voice. "Lily, I am here!" It was Tom. He was behind a big tree. Lily was happy to see him. They '
     'played with the ball again, and they were best friends.'),
    ('Once upon a time, there was a little dog named Max. Max liked to run and jump. He had a big bone that he '
     'loved very much. Every day, Max would take his bone to the garden and dig a hole. He wanted to keep his bone'
     ' safe.'),
    ('One day, a cat came to the garden. The cat saw Max dig the hole. When Max went inside, the cat dug up the '
     'bone and took it away. Max came back and looked in the hole. The bone was gone! Max was very sad. He barked '
     'and barked.'),
    ('A little bird heard Max. The bird flew down and said, "Do not be sad, Max. I saw the cat take your bone. I '
     'will help you find it." Max and the bird looked everywhere. They looked under the bed, behind the door and '
     'in the box. At last, they found the cat. The cat was sleeping next to the bone.'),
    ('Max did not get angry. He said, "Cat, that is my bone. Please give it back." The cat woke up and felt sorry.'
     ' "I am sorry, Max. I only wanted to play," said the cat. Max shared his bone with the cat, and they became '
     'good friends. The bird was happy too. From that day on, the dog, the cat and the bird played in the garden '
     'every day.'),
    ('Once upon a time, there was a girl named Sue. Sue had a pretty doll. The doll had a pink dress and long '
     'hair. Sue took the doll everywhere she went. One day, Sue and her mom went to the store. Sue put her doll on'
     ' a shelf while she looked at the toys. When it was time to go, Sue forgot her doll.'),
    ('At home, Sue looked for her doll. She could not find it. She started to cry. Her mom gave her a hug and '
     'said, "Do not cry, Sue. We will go back to the store and find your doll." They went back to the store. The '
     'kind lady at the store had the doll. She gave it to Sue. Sue said, "Thank you!" She held her doll tight and '
     'smiled. She said she would never forget her doll again.'),
]
STORIES_TEXT = "\n\n".join(STORIES_PARAGRAPHS) + "\n"


# ---------------------------------------------------------------------------------------------- helpers

def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def write_if_changed(path, data, changed):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    changed.append(os.path.basename(path))


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


def nmse(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.sum((a - b) ** 2) / np.sum(b ** 2))


def llama_cpp_build_commit():
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(llama_cpp.__file__)))
    path = os.path.join(pkg, "lib", "cmake", "llama", "llama-config.cmake")
    try:
        with open(path, encoding="utf-8") as f:
            m = re.search(r"set\(LLAMA_BUILD_COMMIT\s+\"?([^\s\")]+)", f.read())
            return m.group(1) if m else "unknown"
    except OSError:
        return "unknown"


def ids_text(title, ids, text=None):
    """An ids file: '#' comment lines, an optional 'text: ' line (the text tokenized), then 'ids: ' and the ids."""
    out = "# %s\n# %d ids, BOS first\n" % (title, len(ids))
    if text is not None:
        assert "\n" not in text
        out += "text: " + text + "\n"
    return (out + "ids: " + " ".join(map(str, ids)) + "\n").encode("ascii")


# ---------------------------------------------------------------------------------------------- tiny model

def tiny_vocab():
    """<unk> <s> </s>, 256 byte pieces, then U+2581 and letter pieces, then word pieces with every prefix (so
    SentencePiece's merges can reach them left to right) and a few suffix pieces."""
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [TokenType.UNKNOWN, TokenType.CONTROL,
                                                                          TokenType.CONTROL]
    for b in range(256):
        tokens.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(TokenType.BYTE)
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for w in WORDS:
        for k in range(1, len(w) + 1):
            p = "\u2581" + w[:k]
            if p not in pieces:
                pieces.append(p)
    for s in ["ed", "er", "in", "ing", "ll", "ly", "nce", "ce", "nc", "en"]:
        if s not in pieces:
            pieces.append(s)
    for i, p in enumerate(pieces):
        tokens.append(p)
        scores.append(-float(i))
        types.append(TokenType.NORMAL)
    return tokens, scores, types


def ternary_matrix(rng, rows, cols):
    """{-1, 0, +1} (each with probability 1/3) times one float16 scale per 256-block, near 1/sqrt(cols * 2/3)."""
    assert cols % 256 == 0
    t = rng.integers(-1, 2, size=(rows, cols)).astype(np.float32)
    nb = cols // 256
    tb = t.reshape(rows, nb, 256)
    empty = ~np.any(tb != 0, axis=-1)
    tb[empty, 0] = 1.0  # every block needs a nonzero so that its max |w| is its scale
    base = 1.0 / np.sqrt(cols * 2.0 / 3.0)
    scale = (base * (1.0 + 0.1 * rng.standard_normal((rows, nb, 1)))).astype(np.float16).astype(np.float32)
    return (tb * scale).reshape(rows, cols)


def make_tiny(path):
    """Writes the model to `path`; returns {tensor name: the float32 values written}."""
    rng = np.random.default_rng(SEED)
    tokens, scores, types = tiny_vocab()
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD
    w = GGUFWriter(path, "llama")
    w.add_name("tiny_ternary")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_block_count(N_LAYER)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(ROPE_BASE)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_TQ2_0)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    written = {}

    def f32(name, arr):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        written[name] = arr
        w.add_tensor(name, arr)

    def tq2(name, rows, cols):
        arr = ternary_matrix(rng, rows, cols)
        q = gguf.quants.quantize(arr, GGMLQuantizationType.TQ2_0)
        written[name] = arr
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.TQ2_0)

    def norm(name):
        f32(name, 1.0 + 0.1 * rng.standard_normal(N_EMBD))

    q_dim, kv_dim = N_HEAD * head_dim, N_HEAD_KV * head_dim
    f32("token_embd.weight", rng.standard_normal((n_vocab, N_EMBD)))
    for l in range(N_LAYER):
        p = "blk.%d." % l
        norm(p + "attn_norm.weight")
        tq2(p + "attn_q.weight", q_dim, N_EMBD)
        tq2(p + "attn_k.weight", kv_dim, N_EMBD)
        tq2(p + "attn_v.weight", kv_dim, N_EMBD)
        tq2(p + "attn_output.weight", N_EMBD, q_dim)
        norm(p + "ffn_norm.weight")
        tq2(p + "ffn_gate.weight", N_FF, N_EMBD)
        tq2(p + "ffn_up.weight", N_FF, N_EMBD)
        tq2(p + "ffn_down.weight", N_EMBD, N_FF)
    norm("output_norm.weight")
    tq2("output.weight", n_vocab, N_EMBD)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return written


# ---------------------------------------------------------------------------------------------- NumPy forward

def load_weights(path):
    """Every tensor of a GGUF file as float64 [ne1][ne0] (or [ne0]), dequantized by gguf-py; the hparams."""
    r = GGUFReader(path)
    t = {"__quantized__": set()}
    for tensor in r.tensors:
        if tensor.tensor_type not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16,
                                      GGMLQuantizationType.BF16):
            t["__quantized__"].add(tensor.name)
        a = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        t[tensor.name] = np.asarray(a, np.float64).reshape([int(x) for x in reversed(tensor.shape.tolist())]
                                                           if len(tensor.shape) > 1 else [int(tensor.shape[0])])

    def field(key, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()

    hp = dict(n_layer=int(field("llama.block_count")), n_embd=int(field("llama.embedding_length")),
              n_head=int(field("llama.attention.head_count")),
              n_head_kv=int(field("llama.attention.head_count_kv", field("llama.attention.head_count"))),
              rope_base=float(field("llama.rope.freq_base", 10000.0)),
              eps=float(field("llama.attention.layer_norm_rms_epsilon", 1e-5)))
    return t, hp


def q8k_emulated(x, rng=None, noise=0.0):
    """llama.cpp's quantize_row_q8_K_ref, in float32, then dequantized to float64: per block of 256, max = the
    element of largest |x| (signed), iscale = -127/max, q = min(127, round-half-even(iscale * x)), d = 1/iscale.
    With `noise`, x is first multiplied by (1 + noise * N(0, 1)): a stand-in for float rounding differences."""
    x = np.asarray(x, np.float64)
    if noise:
        x = x * (1.0 + noise * rng.standard_normal(x.shape))
    xb = x.astype(np.float32).reshape(-1, 256)
    idx = np.argmax(np.abs(xb), axis=-1)
    mx = xb[np.arange(xb.shape[0]), idx][:, None]
    with np.errstate(divide="ignore"):
        iscale = np.where(mx == 0, np.float32(0), np.float32(-127.0) / mx).astype(np.float32)
        d = np.where(iscale == 0, np.float32(0), np.float32(1.0) / iscale).astype(np.float32)
    q = np.minimum(np.float32(127), np.rint((iscale * xb).astype(np.float32)))
    return (q.astype(np.float64) * d.astype(np.float64)).reshape(x.shape)


def q8_other_rule(x):
    """An int8 rule that is not llama.cpp's: 128 levels (d = amax/128, clamped to [-128, 127]), for contrast."""
    xb = np.asarray(x, np.float32).reshape(-1, 256)
    d = np.abs(xb).max(axis=-1, keepdims=True) / np.float32(128.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(np.where(d == 0, 0, np.rint(xb / d)), -128, 127)
    return (q * d).astype(np.float64).reshape(np.shape(x))


def forward_numpy(t, hp, ids, act_quant=None):
    """Teacher-forced logits [n, vocab] in float64: Llama math, GGUF llama RoPE convention (adjacent pairs).
    act_quant (optional): applied to the input vector of every matrix product with a block-quantized weight
    (those with names in t["__quantized__"]), to emulate llama.cpp's int8 activations."""
    n = len(ids)
    quantized = t.get("__quantized__", set())

    def mm(x, name):
        if act_quant is not None and name in quantized:
            x = act_quant(x)
        return x @ t[name].T

    n_embd, n_head, n_kv = hp["n_embd"], hp["n_head"], hp["n_head_kv"]
    hd = n_embd // n_head
    eps = hp["eps"]

    def rmsnorm(x, wgt):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * wgt

    pos = np.arange(n, dtype=np.float64)[:, None]
    inv = hp["rope_base"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)  # base^(-2i/hd), i = 0..hd/2-1
    ang = pos * inv[None, :]  # [n, hd/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x, heads):  # x [n, heads*hd]: rotate (x[2i], x[2i+1]) of each head by pos * base^(-2i/hd)
        x = x.reshape(n, heads, hd // 2, 2)
        x0, x1 = x[..., 0], x[..., 1]
        return np.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1).reshape(n, heads * hd)

    mask = np.triu(np.full((n, n), -np.inf), k=1)
    x = t["token_embd.weight"][np.asarray(ids)]
    for l in range(hp["n_layer"]):
        p = "blk.%d." % l
        h = rmsnorm(x, t[p + "attn_norm.weight"])
        q = rope(mm(h, p + "attn_q.weight"), n_head).reshape(n, n_head, hd)
        k = rope(mm(h, p + "attn_k.weight"), n_kv).reshape(n, n_kv, hd)
        v = mm(h, p + "attn_v.weight").reshape(n, n_kv, hd)
        out = np.empty((n, n_head, hd))
        for head in range(n_head):
            kv = head // (n_head // n_kv)
            s = q[:, head, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            out[:, head, :] = s @ v[:, kv, :]
        x = x + mm(out.reshape(n, n_head * hd), p + "attn_output.weight")
        h = rmsnorm(x, t[p + "ffn_norm.weight"])
        g = mm(h, p + "ffn_gate.weight")
        u = mm(h, p + "ffn_up.weight")
        x = x + mm(g / (1.0 + np.exp(-g)) * u, p + "ffn_down.weight")
    h = rmsnorm(x, t["output_norm.weight"])
    return mm(h, "output.weight" if "output.weight" in t else "token_embd.weight")


# ---------------------------------------------------------------------------------------------- llama.cpp

def open_llama(path, n_ctx, f32_kv=True):
    kw = dict(model_path=path, n_ctx=n_ctx, logits_all=True, verbose=False, seed=0, n_threads=1,
              n_threads_batch=1, flash_attn=False)
    if f32_kv:
        kw.update(type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
    return Llama(**kw)


def llama_logits(llm, ids):
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32, copy=True)


def log_softmax64(logits):
    z = np.asarray(logits, np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def perplexity(llm, tokens, ctx):
    """host/eval.h's method (llama.cpp's perplexity tool)."""
    bos = llm.token_bos()
    n_chunks = len(tokens) // ctx
    first = ctx // 2
    nll = []
    for c in range(n_chunks):
        chunk = list(tokens[c * ctx:(c + 1) * ctx])
        chunk[0] = bos
        lp = log_softmax64(llama_logits(llm, chunk))
        for j in range(first, ctx - 1):
            nll.append(-lp[j, tokens[c * ctx + j + 1]])
    nll = np.asarray(nll, np.float64)
    mean = float(np.mean(nll))
    var = float(np.mean(nll * nll) - mean * mean)
    ppl = float(np.exp(mean))
    return dict(ctx=ctx, n_tokens=len(tokens), n_chunks=n_chunks, n_scored=len(nll), perplexity=ppl,
                stderr=ppl * np.sqrt(var / (len(nll) - 1)) if var > 0 else 0.0, mean_nll=mean)


# ---------------------------------------------------------------------------------------------- main

def main():
    if not os.path.exists(STORIES):
        sys.exit("model not found: %s (see ../shared/testdata/README.md)" % STORIES)
    os.makedirs(OUT_DIR, exist_ok=True)
    changed = []
    facts = []

    # --- a. the tiny ternary model
    tiny_path = os.path.join(OUT_DIR, "tiny_ternary.gguf")
    tmp = tiny_path + ".tmp"  # written beside, then compared: the file is only replaced when it changes
    written = make_tiny(tmp)
    with open(tmp, "rb") as f:
        tiny_bytes = f.read()
    os.remove(tmp)
    write_if_changed(tiny_path, tiny_bytes, changed)

    t, hp = load_weights(tiny_path)
    for name, arr in written.items():  # lossless: gguf-py gives back exactly what was written
        assert np.array_equal(t[name].astype(np.float32), arr), name
    n_vocab = t["token_embd.weight"].shape[0]

    llm = open_llama(tiny_path, N_CTX)
    assert llm.n_vocab() == n_vocab, (llm.n_vocab(), n_vocab)
    tiny_ids = llm.tokenize(TINY_TEXT.encode("ascii"), add_bos=True, special=False)
    assert tiny_ids[0] == 1 and 24 <= len(tiny_ids) <= 40 and len(tiny_ids) <= N_CTX, tiny_ids

    # --- b. logits two ways
    ref_np = forward_numpy(t, hp, tiny_ids).astype(np.float32)
    ref_cpp = llama_logits(llm, tiny_ids)
    del llm
    llm16 = open_llama(tiny_path, N_CTX, f32_kv=False)
    ref_cpp16 = llama_logits(llm16, tiny_ids)
    del llm16
    e_tiny = nmse(ref_cpp, ref_np)
    e_tiny16 = nmse(ref_cpp16, ref_cpp)
    e_tiny_pos = [nmse(ref_cpp[i], ref_np[i]) for i in range(len(tiny_ids))]
    agree = int(np.sum(np.argmax(ref_cpp, -1) == np.argmax(ref_np, -1)))
    write_if_changed(os.path.join(OUT_DIR, "tiny_ternary.ids"),
                     ids_text("llama.cpp's tokenization (add_bos) of the text below with tiny_ternary.gguf's "
                              "vocabulary", tiny_ids, TINY_TEXT), changed)
    write_if_changed(os.path.join(OUT_DIR, "logits_numpy_f32.npy"), npy_bytes(ref_np), changed)
    write_if_changed(os.path.join(OUT_DIR, "logits_llamacpp.npy"), npy_bytes(ref_cpp), changed)
    facts.append("tiny_ternary: nmse(llama.cpp int8 activations, NumPy f32) = %.4g over %d x %d logits; per "
                 "position min %.3g max %.3g; argmax agrees at %d of %d positions"
                 % (e_tiny, len(tiny_ids), n_vocab, min(e_tiny_pos), max(e_tiny_pos), agree, len(tiny_ids)))
    facts.append("tiny_ternary: nmse(llama.cpp with its default f16 KV cache, llama.cpp with f32 KV cache) = %.4g "
                 "(not a golden; why the goldens use an f32 cache)" % e_tiny16)
    # The (i)-(ii) difference is the int8 effect and nothing else: the NumPy pass with llama.cpp's Q8_K rule
    # emulated on the input of every TQ2_0 product lands on llama.cpp's logits.
    emu = forward_numpy(t, hp, tiny_ids, act_quant=q8k_emulated)
    e_emu = nmse(emu, ref_cpp)
    assert e_emu < 1e-6, "NumPy with emulated Q8_K disagrees with llama.cpp: nmse %g" % e_emu
    facts.append("tiny_ternary: nmse(NumPy float64 with llama.cpp's Q8_K activation rule emulated, llama.cpp) = "
                 "%.4g: the (i)-(ii) difference above is the int8 effect" % e_emu)
    # How far two correct int8 engines can drift apart: int8 rounding turns tiny float differences upstream of
    # a quantization into whole-step flips, so the same emulation with each quantized vector perturbed by
    # relative noise of float32 size (2^-24 * N(0,1)) gives the spread an engine whose float ops differ from
    # llama.cpp's only in rounding can expect.
    rng = np.random.default_rng(SEED + 1)
    spread = [nmse(forward_numpy(t, hp, tiny_ids, act_quant=lambda x: q8k_emulated(x, rng, 2.0 ** -24)), ref_cpp)
              for _ in range(8)]
    facts.append("tiny_ternary: the same with relative noise 2^-24 before each quantization, 8 draws: nmse to "
                 "llama.cpp from %.3g to %.3g (median %.3g)" % (min(spread), max(spread), float(np.median(spread))))
    # ... and a rule that is not llama.cpp's (128 levels instead of 127) is as far from it as the int8 effect.
    other = forward_numpy(t, hp, tiny_ids, act_quant=q8_other_rule)
    facts.append("tiny_ternary: NumPy with another int8 rule (d = amax/128, clamp to [-128, 127]): nmse to "
                 "llama.cpp %.3g" % nmse(other, ref_cpp))

    # --- c. stories260K
    llm = open_llama(STORIES, 128)
    st_ids = llm.tokenize(STORIES_LOGITS_TEXT.encode("ascii"), add_bos=True, special=False)
    assert st_ids[0] == 1 and 30 <= len(st_ids) <= 64, st_ids
    st_cpp = llama_logits(llm, st_ids)
    st_t, st_hp = load_weights(STORIES)
    st_np = forward_numpy(st_t, st_hp, st_ids)
    e_st = nmse(st_cpp, st_np)
    # the NumPy forward pass is the same math as llama.cpp's (F32 weights: only float rounding differs)
    assert e_st < 1e-9, "NumPy forward disagrees with llama.cpp on stories260K: nmse %g" % e_st
    facts.append("stories260K: nmse(llama.cpp, NumPy float64 forward) = %.4g over %d x %d logits (self-check of "
                 "the NumPy forward pass, must be < 1e-9)" % (e_st, len(st_ids), st_cpp.shape[1]))
    write_if_changed(os.path.join(OUT_DIR, "stories260K_logits.ids"),
                     ids_text("llama.cpp's tokenization (add_bos) of the text below with stories260K's vocabulary",
                              st_ids, STORIES_LOGITS_TEXT), changed)
    write_if_changed(os.path.join(OUT_DIR, "stories260K_logits_llamacpp.npy"), npy_bytes(st_cpp), changed)

    text_path = os.path.join(OUT_DIR, "stories_text.txt")
    text_bytes = STORIES_TEXT.encode("ascii")
    write_if_changed(text_path, text_bytes, changed)
    text_ids = llm.tokenize(text_bytes, add_bos=True, special=False)
    write_if_changed(os.path.join(OUT_DIR, "stories_text.ids"),
                     ids_text("llama.cpp's tokenization (add_bos) of stories_text.txt with stories260K's "
                              "vocabulary", text_ids), changed)
    ppl = perplexity(llm, text_ids, PPL_CTX)
    del llm
    ppl_text = ("# perplexity of stories_text.txt under stories260K, from llama.cpp's logits (see manifest.txt)\n"
                "ctx %d\nn_tokens %d\nn_chunks %d\nn_scored %d\nperplexity %.12g\nstderr %.12g\nmean_nll %.12g\n"
                % (ppl["ctx"], ppl["n_tokens"], ppl["n_chunks"], ppl["n_scored"], ppl["perplexity"], ppl["stderr"],
                   ppl["mean_nll"]))
    write_if_changed(os.path.join(OUT_DIR, "stories260K_ppl.txt"), ppl_text.encode("ascii"), changed)

    # --- d. manifest
    outputs = ["tiny_ternary.gguf", "tiny_ternary.ids", "logits_numpy_f32.npy", "logits_llamacpp.npy",
               "stories260K_logits.ids", "stories260K_logits_llamacpp.npy", "stories_text.txt", "stories_text.ids",
               "stories260K_ppl.txt"]
    lines = [
        "# Golden files for tests/test_eval.c, made by scripts/make_eval_golden.py (do not edit by hand).",
        "# Generator: Python %s, numpy %s, gguf-py %s, llama-cpp-python %s, llama.cpp build commit %s"
        % (platform.python_version(), np.__version__, getattr(gguf, "__version__", None) or gguf_version(),
           llama_cpp.__version__, llama_cpp_build_commit()),
        "# llama.cpp settings: logits_all, n_threads 1, flash_attn off, KV cache type f32 (K and V).",
        "# Input: $TRN_TESTDATA/%s sha256 %s" % (STORIES_REL, sha256(STORIES)),
        "# tiny_ternary.gguf: seed %d; %d layers, n_embd %d, n_ff %d, %d heads, %d KV heads, context %d, vocab %d,"
        % (SEED, N_LAYER, N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_CTX, n_vocab),
        "#   RoPE base %g, RMS eps %g; linear layers and output.weight TQ2_0 (lossless), token_embd and norms F32."
        % (ROPE_BASE, RMS_EPS),
        "#",
        "# Files:",
        "#   tiny_ternary.gguf: the model. tiny_ternary.ids: its id sequence (%d ids)." % len(tiny_ids),
        "#   logits_numpy_f32.npy [%d, %d]: NumPy float64 forward pass over gguf-py's dequantized weights (f32 mode "
        "reference)." % ref_np.shape,
        "#   logits_llamacpp.npy [%d, %d]: llama.cpp's logits, activations quantized to Q8_K by its TQ2_0 kernel "
        "(int8 mode reference)." % ref_cpp.shape,
        "#   stories260K_logits.ids (%d ids), stories260K_logits_llamacpp.npy [%d, %d]: llama.cpp, stories260K."
        % ((len(st_ids),) + st_cpp.shape),
        "#   stories_text.txt (%d bytes), stories_text.ids (%d ids with BOS), stories260K_ppl.txt: perplexity at "
        "ctx %d."
        % (len(text_bytes), len(text_ids), PPL_CTX),
        "#",
        "# Measured (nmse = sum (a-b)^2 / sum b^2):",
    ] + ["#   " + f for f in facts] + [
        "#   stories260K perplexity (ctx %d): %.10g +/- %.6g over %d scored tokens in %d chunks"
        % (PPL_CTX, ppl["perplexity"], ppl["stderr"], ppl["n_scored"], ppl["n_chunks"]),
        "#",
        "# Id sequences:",
        "tiny_ternary.ids\t" + " ".join(map(str, tiny_ids)),
        "stories260K_logits.ids\t" + " ".join(map(str, st_ids)),
        "#",
        "# sha256 of the outputs:",
    ]
    for name in outputs:
        lines.append("%s  %s" % (sha256(os.path.join(OUT_DIR, name)), name))
    write_if_changed(os.path.join(OUT_DIR, "manifest.txt"), ("\n".join(lines) + "\n").encode("utf-8"), changed)

    for f in facts:
        print(f)
    print("stories260K perplexity (ctx %d): %.10g +/- %.4g, %d scored, %d chunks, %d tokens"
          % (PPL_CTX, ppl["perplexity"], ppl["stderr"], ppl["n_scored"], ppl["n_chunks"], ppl["n_tokens"]))
    total = sum(os.path.getsize(os.path.join(OUT_DIR, n)) for n in os.listdir(OUT_DIR))
    print("tests/golden/eval: %d bytes in all" % total)
    print("wrote: " + (", ".join(changed) if changed else "nothing (all files already up to date)"))


def gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # noqa: BLE001
        return "unknown"


if __name__ == "__main__":
    main()
