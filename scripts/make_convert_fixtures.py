#!/usr/bin/env python3
"""make_convert_fixtures.py: fixtures and outside-implementation goldens for `trinity convert` (tests/test_convert_*.sh).

What it makes, in tests/golden/convert/:
  hf_tiny/                     a small Hugging Face Llama checkpoint in the real on-disk layout:
      config.json              model_type llama, LlamaForCausalLM, hidden 256, intermediate 256, 2 layers, 4 heads,
                               2 KV heads (head size 64), vocab 512, context 256, RMS eps 1e-5, RoPE theta 10000,
                               untied LM head, torch_dtype bfloat16
      model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
                               BF16 weights in two shards (embeddings + block 0; block 1 + final norm + lm_head).
                               Safetensors layout written here byte by byte: u64 LE header length, compact JSON header
                               ("__metadata__": {"format": "pt"} first, then the tensors sorted by name with dtype,
                               shape, data_offsets), padded with spaces to a multiple of 8, then the data in header
                               order. Checked by loading it back with the `safetensors` package (and torch)
                               when present.
                               Weights: random normal, std 0.02 for embeddings and linear layers (HF's init)
                               except q_proj and k_proj (std 0.2, see below), norms
                               1 + 0.1 N(0,1) (so that the norm weights matter), rounded to BF16 (nearest even).
      tokenizer.model          SentencePiece ModelProto of stories260K's 512-token vocabulary (tok512.bin): pieces with
                               U+2581 for spaces, "<unk>" type UNKNOWN, "<s>" "</s>" CONTROL, "<0xNN>" BYTE, the rest
                               NORMAL, scores from tok512.bin; trainer_spec model_type BPE, byte_fallback, unk/bos/eos
                               0/1/2, pad -1; normalizer_spec "identity", add_dummy_prefix, no whitespace removal
                               (Llama's settings). Loaded with the `sentencepiece` package when present, and compared
                               with the vocabulary llama.cpp wrote into stories260K.gguf (gguf-py) when present.
  hf_tiny.ids                  the id sequence of every golden below (BOS + 20 ids: llama.cpp's tokenization of a
                               TinyStories sentence, the first 21 ids of tests/golden/eval/stories260K_logits.ids).
  hf_tq2_0_logits.npy          [21, 512] float32: teacher-forced logits of hf_tiny as `trinity convert --from hf
                               --type tq2_0` (absmean rule) must make it, computed by Hugging Face transformers'
                               LlamaForCausalLM (float32, attn_implementation="eager") on the UNPERMUTED HF weights
                               (rotate-half RoPE, so the converter's Q/K permutation is really tested). Weights: every
                               linear layer including lm_head ternarized per whole tensor, s = mean|w| (float64),
                               q = clip(round(w / s), -1, 1), w' = float16(s) * q: TQ2_0 and TQ1_0 store one float16
                               scale d per block of 256 (gguf-py's quantizer: d = float16(max|x|)), so float16(s) is
                               the scale any lossless TQ file of these weights holds; embeddings rounded to float16
                               (the default --embed-type f16); norms as float32.
  hf_tq2_0_top1.txt            per position: "pos<TAB>id<TAB>argmax<TAB>logit" of the same logits (logit %.6f): the
                               numpy-free check of tests/test_convert_*.sh (compared with `trinity logits --top 1`).
  hf_f16_logits.npy, hf_f16_top1.txt     the same for `--type f16`: linear layers and embeddings rounded to float16.
  hf_seed_top1.txt             the same (top-1 only, to keep the folder small) for `--type tq2_0 --ternary-rule seed`:
                               q = sign(w), s = std(w) / std(q) (population std, float64), w' = float16(s) * q.
  trin_tiny.bin                a TRIN file whose base is hf_tiny: b"TRIN", then for each linear layer in module order
                               (per block q, k, v, o, gate, up, down; then lm_head) a u32 LE byte count and the codes,
                               four per byte, first weight in the top two bits, code = sign(w) + 1 (0 -> -1, 1 -> 0,
                               2 -> +1); random codes (P = 0.35, 0.30, 0.35).
  trin_tq2_0_logits.npy, trin_tq2_0_top1.txt
                               golden of `--from trin trin_tiny.bin --base hf_tiny`: scale per layer = std(base weight)
                               / std(code - 1) (population std, float64, as the seed's loader computes it), weights
                               float16(scale) * (code - 1); embeddings float16, norms float32; same forward as above.
  tokenize.txt                 "prompt<TAB>ids" per line: SentencePiece's encoding (no BOS) of three prompts with
                               tokenizer.model (byte fallback included): `trinity tokenize` of a converted file must
                               give BOS + these ids.
  manifest.txt                 versions, seed, ids, what each file is, measured agreement, sha256 of every file.

Broken inputs for the bad-input tests are NOT stored: tests/test_convert_*.sh makes them at test time from these files
with coreutils (head -c, dd, printf, sed), to keep this folder under its 2.5 MB budget.

Weights of q_proj and k_proj are drawn with std 0.2 instead of 0.02: with 0.02 the attention scores are ~0.04 and
the attention is almost uniform, so RoPE barely matters and a converter that forgot the Q/K permutation would still
match the golden to nmse 3e-4 with the same argmax at 20 of 21 positions. With 0.2 the same mistake costs nmse ~0.8
and the argmax at most positions (the manifest records it for every golden).

Deviation from the requested shape: intermediate_size is 256, not 512: with 512 the BF16 checkpoint alone is 2.9 MB,
over the folder's 2.5 MB budget (the FFN width must stay a multiple of 256 for TQ2_0, so 256 is the next size down).

The reference forward pass: Hugging Face transformers (torch) when importable; a NumPy float64 forward pass written
here in the Hugging Face convention (rotate_half RoPE on the unpermuted weights) is always computed too, and the
manifest records their agreement. If torch/transformers are missing the NumPy pass is the golden and the manifest says
so.
Cross-check of the convention (when gguf-py and llama-cpp-python are importable): the hf_tq2_0 golden weights are
written with gguf-py to a temporary GGUF, Q/K rows permuted as llama.cpp's convert_hf_to_gguf.py does, once as F32
and once as TQ2_0, and llama.cpp's logits for them are compared with the golden (manifest: ~1e-13 for F32; ~1e-4 for
TQ2_0, whose kernel quantizes activations to int8).

Versions used to make the committed files: Python 3.11.7, numpy 2.4.6, torch 2.15.0+cu132 (CPU), transformers
5.24.0, safetensors 0.8.0, sentencepiece 0.2.3, gguf-py 0.19.0, llama-cpp-python 0.3.36; the manifest records the
versions of each run.

Deterministic and idempotent: a fixed NumPy seed, one torch thread, no timestamps; files are only rewritten when
their content changes.

Run from anywhere:  python3 scripts/make_convert_fixtures.py
(needs numpy and sentencepiece; for the goldens as committed:
 pip install numpy torch transformers safetensors sentencepiece gguf llama-cpp-python;
reads ../shared/testdata/stories260K/tok512.bin, and stories260K.gguf for the vocabulary check)
"""

import hashlib
import importlib.metadata
import io
import json
import os
import platform
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "golden", "convert")
TESTDATA = os.environ.get("TRN_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))
TOK512 = os.path.join(TESTDATA, "stories260K", "tok512.bin")
STORIES_GGUF = os.path.join(TESTDATA, "stories260K", "stories260K.gguf")

SEED = 20250705
N_LAYER, N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_VOCAB, N_CTX = 2, 256, 256, 4, 2, 512, 256
HEAD_DIM = N_EMBD // N_HEAD
RMS_EPS, ROPE_THETA = 1e-5, 10000.0
# BOS + the first 20 ids of llama.cpp's tokenization of a TinyStories sentence
# (the start of tests/golden/eval/stories260K_logits.ids)
IDS = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337]
PROMPTS = [
    "Once upon a time, there was a little girl named Lily.",
    "Tom and Sue played in the park. They saw a big dog!",
    "Zo\u00eb's caf\u00e9 had 42 cakes \u2014 yum \U0001F600",
]
TRIN_CODE_P = [0.35, 0.30, 0.35]
LINEAR_STD, QK_STD = 0.02, 0.2  # see the docstring: attention must be far from uniform for RoPE to matter

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "head_dim": HEAD_DIM,
    "hidden_act": "silu",
    "hidden_size": N_EMBD,
    "initializer_range": 0.02,
    "intermediate_size": N_FF,
    "max_position_embeddings": N_CTX,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": N_HEAD,
    "num_hidden_layers": N_LAYER,
    "num_key_value_heads": N_HEAD_KV,
    "pretraining_tp": 1,
    "rms_norm_eps": RMS_EPS,
    "rope_scaling": None,
    "rope_theta": ROPE_THETA,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": N_VOCAB,
}

LINEAR_ORDER = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def linear_names():
    """The linear layers in TRIN module order."""
    names = []
    for i in range(N_LAYER):
        names += ["model.layers.%d.%s.weight" % (i, m) for m in LINEAR_ORDER]
    return names + ["lm_head.weight"]


def tensor_shapes():
    kv = N_HEAD_KV * HEAD_DIM
    shapes = {"model.embed_tokens.weight": (N_VOCAB, N_EMBD), "model.norm.weight": (N_EMBD,),
              "lm_head.weight": (N_VOCAB, N_EMBD)}
    for i in range(N_LAYER):
        p = "model.layers.%d." % i
        shapes.update({
            p + "input_layernorm.weight": (N_EMBD,),
            p + "post_attention_layernorm.weight": (N_EMBD,),
            p + "self_attn.q_proj.weight": (N_HEAD * HEAD_DIM, N_EMBD),
            p + "self_attn.k_proj.weight": (kv, N_EMBD),
            p + "self_attn.v_proj.weight": (kv, N_EMBD),
            p + "self_attn.o_proj.weight": (N_EMBD, N_HEAD * HEAD_DIM),
            p + "mlp.gate_proj.weight": (N_FF, N_EMBD),
            p + "mlp.up_proj.weight": (N_FF, N_EMBD),
            p + "mlp.down_proj.weight": (N_EMBD, N_FF),
        })
    return shapes


def shard_of(name):
    return 1 if name.startswith("model.embed_tokens") or name.startswith("model.layers.0.") else 2


SHARD_NAMES = {1: "model-00001-of-00002.safetensors", 2: "model-00002-of-00002.safetensors"}


# ---- numbers ----------------------------------------------------------------------------------------------------

def bf16_bits(x):
    """float32 array -> uint16 BF16 bits, round to nearest even (no NaNs here)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f16(x):
    """Round to float16 (nearest even) and back to float64."""
    return np.asarray(x, dtype=np.float64).astype(np.float16).astype(np.float64)


def f16_margin(s):
    """Relative distance of s from the nearest float16 rounding midpoint (a float32 s rounds the same way if large)."""
    h = np.float16(s)
    up = float(np.nextafter(h, np.float16(np.inf)))
    down = float(np.nextafter(h, np.float16(-np.inf)))
    mids = [(float(h) + up) / 2, (float(h) + down) / 2]
    return min(abs(s - m) for m in mids) / abs(s)


def nmse(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.sum((a - b) ** 2) / np.sum(b ** 2))


def ternarize_absmean(w):
    s = float(np.mean(np.abs(w)))
    r = w / s
    q = np.clip(np.round(r), -1, 1)
    # distance of |w/s| from the rounding threshold 0.5 (a float32 converter must land on the same side)
    margin = float(np.min(np.abs(np.abs(r) - 0.5)))
    return q, s, margin


def ternarize_seed(w):
    q = np.sign(w)
    s = float(np.std(w) / np.std(q))
    return q, s, None


# ---- files ------------------------------------------------------------------------------------------------------

def safetensors_bytes(tensors):
    """tensors: list of (name, dtype string, shape, raw bytes). Returns the file's bytes."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    body = []
    for name, dtype, shape, raw in sorted(tensors, key=lambda t: t[0]):
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        body.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-(8 + len(text))) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(body)


def read_tok512(path):
    with open(path, "rb") as f:
        data = f.read()
    off = 4
    pieces = []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append((data[off:off + n], score))
        off += n
    assert len(pieces) == N_VOCAB, len(pieces)
    return pieces


def spm_vocab(tok):
    """tok512 entries -> (piece str, score, type) as llama.cpp writes them into stories260K.gguf."""
    out = []
    for i, (raw, score) in enumerate(tok):
        if i == 0:
            out.append(("<unk>", score, 2))
        elif i == 1:
            out.append(("<s>", score, 3))
        elif i == 2:
            out.append(("</s>", score, 3))
        elif i < 259:
            piece = raw.decode()
            assert piece == "<0x%02X>" % (i - 3), piece
            out.append((piece, score, 6))
        else:
            out.append((raw.decode("utf-8").replace(" ", "\u2581"), score, 1))
    return out


def pb_varint(n):
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_key(field, wire):
    return pb_varint((field << 3) | wire)


def pb_bytes(field, data):
    return pb_key(field, 2) + pb_varint(len(data)) + data


def pb_int(field, value):
    return pb_key(field, 0) + pb_varint(value)


def pb_float(field, value):
    return pb_key(field, 5) + struct.pack("<f", value)


def tokenizer_model_bytes(vocab):
    out = bytearray()
    for piece, score, typ in vocab:  # ModelProto.pieces = 1: SentencePiece {piece 1, score 2, type 3}
        msg = pb_bytes(1, piece.encode()) + pb_float(2, score)
        if typ != 1:  # NORMAL is the default
            msg += pb_int(3, typ)
        out += pb_bytes(1, msg)
    trainer = (pb_int(3, 2)                # model_type BPE
               + pb_int(4, len(vocab))     # vocab_size
               + pb_int(35, 1)             # byte_fallback
               + pb_int(40, 0) + pb_int(41, 1) + pb_int(42, 2) + pb_int(43, -1))  # unk, bos, eos, pad ids
    normalizer = (pb_bytes(1, b"identity")
                  + pb_int(3, 1)           # add_dummy_prefix
                  + pb_int(4, 0)           # remove_extra_whitespaces off
                  + pb_int(5, 1))          # escape_whitespaces
    out += pb_bytes(2, trainer) + pb_bytes(3, normalizer)
    return bytes(out)


def trin_bytes(codes_by_layer):
    out = bytearray(b"TRIN")
    for codes in codes_by_layer:
        c = codes.reshape(-1).astype(np.uint8)
        assert c.size % 4 == 0
        c = c.reshape(-1, 4)
        packed = (c[:, 0] << 6) | (c[:, 1] << 4) | (c[:, 2] << 2) | c[:, 3]
        out += struct.pack("<I", packed.size) + packed.astype(np.uint8).tobytes()
    return bytes(out)


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


def write_if_changed(path, data, changed):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    changed.append(os.path.relpath(path, OUT_DIR))


def pkg_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


# ---- forward passes ---------------------------------------------------------------------------------------------

def unpermute_qk(w):
    """The weights w' for which forward_numpy(w') equals the GGUF-convention forward (RoPE on adjacent pairs) over w
    itself: the logits a converter that forgot llama.cpp's Q/K permutation would produce."""
    out = dict(w)
    for name, v in w.items():
        for suffix, heads in (("q_proj.weight", N_HEAD), ("k_proj.weight", N_HEAD_KV)):
            if name.endswith(suffix):  # inverse of convert_hf_to_gguf.py's permute
                out[name] = v.reshape(heads, HEAD_DIM // 2, 2, -1).swapaxes(1, 2).reshape(v.shape)
    return out


def forward_numpy(w, ids):
    """float64 Llama forward in the Hugging Face convention (rotate_half RoPE on unpermuted Q/K rows)."""
    n = len(ids)
    x = w["model.embed_tokens.weight"][ids].astype(np.float64)

    def rmsnorm(v, g):
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + RMS_EPS) * g

    inv_freq = 1.0 / ROPE_THETA ** (np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM)
    ang = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]
    ang = np.concatenate([ang, ang], axis=-1)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(t):  # t [n, heads, hd]
        half = HEAD_DIM // 2
        rot = np.concatenate([-t[..., half:], t[..., :half]], axis=-1)
        return t * cos + rot * sin

    mask = np.triu(np.full((n, n), -np.inf), 1)
    group = N_HEAD // N_HEAD_KV
    for i in range(N_LAYER):
        p = "model.layers.%d." % i
        h = rmsnorm(x, w[p + "input_layernorm.weight"])
        q = rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(n, N_HEAD, HEAD_DIM))
        k = rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(n, N_HEAD_KV, HEAD_DIM))
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(n, N_HEAD_KV, HEAD_DIM)
        att = np.zeros((n, N_HEAD, HEAD_DIM))
        for hh in range(N_HEAD):
            kv = hh // group
            s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(HEAD_DIM) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            att[:, hh, :] = s @ v[:, kv, :]
        x = x + att.reshape(n, -1) @ w[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"])
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, w["model.norm.weight"])
    return x @ w["lm_head.weight"].T


def transformers_available():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        return True
    except Exception:
        return False


def forward_transformers(w, ids):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = LlamaConfig(**{k: v for k, v in CONFIG.items() if k not in ("architectures", "torch_dtype")})
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    impl = getattr(model.config, "_attn_implementation", None)
    assert impl == "eager", impl
    state = {name: torch.tensor(np.asarray(v, np.float32)) for name, v in w.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all("rotary" in m for m in missing), missing
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].float().numpy()


def llamacpp_cross_check(w, vocab, qtype):
    """Writes the golden weights as a GGUF with gguf-py (Q/K rows permuted as llama.cpp's convert_hf_to_gguf.py
    does) to a temporary file and returns llama.cpp's logits for IDS (float32 KV cache, one thread)."""
    import tempfile

    import gguf
    from llama_cpp import Llama

    def permute(v, n_head):  # convert_hf_to_gguf.py LlamaModel.permute
        return v.reshape(n_head, 2, v.shape[0] // n_head // 2, *v.shape[1:]).swapaxes(1, 2).reshape(v.shape)

    sub = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
           "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
           "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    lin = set(linear_names())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ref.gguf")
        wr = gguf.GGUFWriter(path, "llama")
        wr.add_block_count(N_LAYER)
        wr.add_context_length(N_CTX)
        wr.add_embedding_length(N_EMBD)
        wr.add_feed_forward_length(N_FF)
        wr.add_head_count(N_HEAD)
        wr.add_head_count_kv(N_HEAD_KV)
        wr.add_layer_norm_rms_eps(RMS_EPS)
        wr.add_rope_freq_base(ROPE_THETA)
        wr.add_rope_dimension_count(HEAD_DIM)
        wr.add_tokenizer_model("llama")
        wr.add_token_list([v[0] for v in vocab])
        wr.add_token_scores([v[1] for v in vocab])
        wr.add_token_types([v[2] for v in vocab])
        wr.add_bos_token_id(1)
        wr.add_eos_token_id(2)
        wr.add_unk_token_id(0)
        for name, v in sorted(w.items()):
            if name in top:
                gname = top[name]
            else:
                parts = name.split(".")
                gname = "blk.%s.%s.weight" % (parts[2], sub[".".join(parts[3:-1])])
            if name.endswith("q_proj.weight"):
                v = permute(v, N_HEAD)
            elif name.endswith("k_proj.weight"):
                v = permute(v, N_HEAD_KV)
            if name in lin and qtype != "F32":
                t = gguf.GGMLQuantizationType[qtype]
                wr.add_tensor(gname, gguf.quants.quantize(v.astype(np.float32), t), raw_dtype=t)
            else:
                wr.add_tensor(gname, v.astype(np.float32))
        wr.write_header_to_file()
        wr.write_kv_data_to_file()
        wr.write_tensors_to_file()
        wr.close()
        llm = Llama(model_path=path, n_ctx=64, logits_all=True, verbose=False, seed=0, n_threads=1,
                    n_threads_batch=1, flash_attn=False, type_k=0, type_v=0)
        llm.eval(IDS)
        out = np.array(llm.scores[:len(IDS)], dtype=np.float32, copy=True)
        del llm
        return out



def top1_text(logits, ids):
    lines = []
    for i, row in enumerate(np.asarray(logits, np.float32)):
        lines.append("%d\t%d\t%d\t%.6f" % (i, ids[i], int(np.argmax(row)), float(row.max())))
    return ("\n".join(lines) + "\n").encode()


def top1_margin(logits):
    """Smallest gap between the best and second-best logit over the positions (relative to the logit spread)."""
    gaps = []
    for row in np.asarray(logits, np.float64):
        s = np.sort(row)
        gaps.append((s[-1] - s[-2]) / (s[-1] - s[0]))
    return float(min(gaps))


# ---- main -------------------------------------------------------------------------------------------------------

def main():
    changed = []
    notes = []
    rng = np.random.default_rng(SEED)
    shapes = tensor_shapes()

    # weights: BF16 bits, and their exact values as float64
    bits, base = {}, {}
    for name in sorted(shapes):
        shape = shapes[name]
        if len(shape) == 1:
            x = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith("q_proj.weight") or name.endswith("k_proj.weight"):
            x = QK_STD * rng.standard_normal(shape)
        else:
            x = LINEAR_STD * rng.standard_normal(shape)
        bits[name] = bf16_bits(x.astype(np.float32))
        base[name] = bf16_to_f32(bits[name]).astype(np.float64)

    hf_dir = os.path.join(OUT_DIR, "hf_tiny")
    write_if_changed(os.path.join(hf_dir, "config.json"), (json.dumps(CONFIG, indent=2) + "\n").encode(), changed)
    weight_map = {}
    total = 0
    for shard in (1, 2):
        tensors = []
        for name in sorted(shapes):
            if shard_of(name) == shard:
                raw = bits[name].astype("<u2").tobytes()
                tensors.append((name, "BF16", shapes[name], raw))
                weight_map[name] = SHARD_NAMES[shard]
                total += len(raw)
        write_if_changed(os.path.join(hf_dir, SHARD_NAMES[shard]), safetensors_bytes(tensors), changed)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    write_if_changed(os.path.join(hf_dir, "model.safetensors.index.json"),
                     (json.dumps(index, indent=2) + "\n").encode(), changed)

    # safetensors check with the package (and torch for BF16)
    try:
        import torch
        from safetensors.torch import load_file

        for shard in (1, 2):
            loaded = load_file(os.path.join(hf_dir, SHARD_NAMES[shard]))
            for name, t in loaded.items():
                assert t.dtype == torch.bfloat16 and tuple(t.shape) == shapes[name], name
                assert np.array_equal(t.float().numpy().astype(np.float64), base[name]), name
        import safetensors
        notes.append("safetensors %s (torch) loads both shards: every tensor's dtype, shape and values as written"
                     % safetensors.__version__)
    except ImportError as e:
        notes.append("safetensors check skipped (%s)" % e)

    # the checkpoint as transformers loads it (config.json, index, shards): its BF16 logits match the NumPy forward
    if transformers_available():
        import torch
        import transformers
        from transformers import LlamaForCausalLM

        transformers.utils.logging.disable_progress_bar()
        torch.set_num_threads(1)
        model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            got = model(torch.tensor([IDS]), use_cache=False).logits[0].numpy()
        e = nmse(got, forward_numpy(base, IDS))
        assert e < 1e-9, e
        notes.append("transformers' LlamaForCausalLM.from_pretrained(hf_tiny) loads config.json, the index and both "
                     "shards; its logits equal the NumPy forward over the BF16 weights (nmse %.2g)" % e)
        del model

    # vocabulary
    tok = read_tok512(TOK512)
    vocab = spm_vocab(tok)
    spm_path = os.path.join(hf_dir, "tokenizer.model")
    write_if_changed(spm_path, tokenizer_model_bytes(vocab), changed)
    tokenize_lines = []
    try:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=spm_path)
        assert sp.get_piece_size() == N_VOCAB
        for i, (piece, score, typ) in enumerate(vocab):
            assert sp.id_to_piece(i) == piece, i
            assert np.float32(sp.get_score(i)) == np.float32(score), i
        assert sp.bos_id() == 1 and sp.eos_id() == 2 and sp.unk_id() == 0
        assert sp.is_byte(3) and sp.is_control(1) and sp.is_unknown(0)
        for p in PROMPTS:
            tokenize_lines.append("%s\t%s" % (p, " ".join(str(i) for i in sp.encode(p))))
        # llama.cpp's tokenization of this text (tests/golden/eval/stories260K_logits.ids) starts with IDS[1:]
        text = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the "
                "park with her friend Tom.")
        enc = sp.encode(text)
        assert enc[:len(IDS) - 1] == IDS[1:], enc
        notes.append("sentencepiece %s loads tokenizer.model: 512 pieces, scores and types as written; it encodes "
                     "the TinyStories sentence of hf_tiny.ids as llama.cpp did" % spm.__version__)
    except ImportError:
        sys.exit("sentencepiece is needed for tokenize.txt: pip install sentencepiece")
    try:
        import gguf

        reader = gguf.GGUFReader(STORIES_GGUF)

        def field(key):
            f = reader.fields[key]
            return [f.parts[i] for i in f.data]

        toks = [bytes(p).decode() for p in field("tokenizer.ggml.tokens")]
        scores = [float(p[0]) for p in field("tokenizer.ggml.scores")]
        types = [int(p[0]) for p in field("tokenizer.ggml.token_type")]
        assert toks == [v[0] for v in vocab]
        assert scores == [float(np.float32(v[1])) for v in vocab]
        assert types == [v[2] for v in vocab]
        notes.append("the vocabulary equals tokenizer.ggml.tokens/scores/token_type of stories260K.gguf "
                     "(llama.cpp's conversion of tok512.bin), read with gguf-py %s" % pkg_version("gguf"))
    except (ImportError, FileNotFoundError) as e:
        notes.append("stories260K.gguf vocabulary comparison skipped (%s)" % e)
    write_if_changed(os.path.join(OUT_DIR, "tokenize.txt"), ("\n".join(tokenize_lines) + "\n").encode(), changed)

    write_if_changed(os.path.join(OUT_DIR, "hf_tiny.ids"), (" ".join(map(str, IDS)) + "\n").encode(), changed)

    # golden weight sets
    lin = set(linear_names())

    def golden_weights(kind, trin_codes=None):
        w = {}
        info = []
        for name in sorted(shapes):
            v = base[name]
            if name == "model.embed_tokens.weight":
                w[name] = f16(v)
            elif name not in lin:
                w[name] = v
            elif kind == "f16":
                w[name] = f16(v)
            else:
                if kind == "absmean":
                    q, s, margin = ternarize_absmean(v)
                elif kind == "seed":
                    q, s, margin = ternarize_seed(v)
                else:  # trin
                    q = trin_codes[name].astype(np.float64) - 1
                    s = float(np.std(v) / np.std(q))
                    margin = None
                info.append((name, s, margin, f16_margin(s)))
                w[name] = f16(s) * q
        return w, info

    use_tf = transformers_available()
    if use_tf:
        import torch
        import transformers

        reference = "transformers %s LlamaForCausalLM (torch %s, float32, eager attention, 1 thread)" % (
            transformers.__version__, torch.__version__)
    else:
        reference = "NumPy float64 forward pass in the Hugging Face convention (torch/transformers not importable)"

    measured = []

    def golden(label, w, info, store_logits):
        ref64 = forward_numpy(w, IDS)
        logits = forward_transformers(w, IDS) if use_tf else ref64.astype(np.float32)
        if use_tf:
            measured.append("%s: nmse(transformers float32, NumPy float64) = %.3g over %d x %d logits"
                            % (label, nmse(logits, ref64), len(IDS), N_VOCAB))
        assert np.array_equal(np.argmax(logits, axis=1), np.argmax(ref64, axis=1)), label
        m = top1_margin(logits)
        measured.append("%s: smallest top-1 gap / logit spread over the positions = %.3g" % (label, m))
        noperm = forward_numpy(unpermute_qk(w), IDS)
        e = nmse(noperm, ref64)
        flips = int(np.sum(noperm.argmax(1) != ref64.argmax(1)))
        measured.append("%s: without the Q/K permutation (RoPE on adjacent pairs of the HF rows) the logits would be "
                        "off by nmse %.3g, argmax different at %d of %d positions" % (label, e, flips, len(IDS)))
        assert e > 1e-2 and flips >= 5, (label, e, flips)
        assert m > 1e-4, (label, m)
        if info:
            tmargins = [x[2] for x in info if x[2] is not None]
            if tmargins:
                measured.append("%s: smallest | |w/s| - 0.5 | over every ternarized weight = %.3g (no weight near "
                                "the rounding threshold)" % (label, min(tmargins)))
                assert min(tmargins) > 1e-6, (label, min(tmargins))
            fm = min(x[3] for x in info)
            measured.append("%s: smallest relative distance of a scale from a float16 rounding midpoint = %.3g"
                            % (label, fm))
            assert fm > 1e-6, (label, fm)
            exact = {k: v for k, v in w.items()}
            for name, s, _, _ in info:
                exact[name] = w[name] / f16(s) * s
            measured.append("%s: nmse(logits with float16 scales, logits with exact float64 scales) = %.3g "
                            "(what storing the scales in float16 moves the logits)"
                            % (label, nmse(forward_numpy(exact, IDS), ref64)))
        if label == "hf_tq2_0":
            try:
                for qtype, why in (("F32", "float weights: float math"),
                                   ("TQ2_0", "its TQ2_0 kernel quantizes activations to int8")):
                    cpp = llamacpp_cross_check(w, vocab, qtype)
                    measured.append("%s: nmse(llama.cpp on a gguf-py %s file of these weights with llama.cpp's Q/K "
                                    "permutation, golden) = %.3g (%s); argmax equal at %d of %d positions"
                                    % (label, qtype, nmse(cpp, logits), why,
                                       int(np.sum(cpp.argmax(1) == logits.argmax(1))), len(IDS)))
            except ImportError as e:
                measured.append("%s: llama.cpp cross-check skipped (%s)" % (label, e))
        if store_logits:
            write_if_changed(os.path.join(OUT_DIR, "%s_logits.npy" % label), npy_bytes(logits), changed)
        write_if_changed(os.path.join(OUT_DIR, "%s_top1.txt" % label), top1_text(logits, IDS), changed)
        return info

    info_abs = golden("hf_tq2_0", *golden_weights("absmean"), True)
    golden("hf_f16", *golden_weights("f16"), True)
    golden("hf_seed", *golden_weights("seed"), False)

    # TRIN
    trin_codes = {}
    for name in linear_names():
        trin_codes[name] = rng.choice(3, size=shapes[name], p=TRIN_CODE_P).astype(np.uint8)
    write_if_changed(os.path.join(OUT_DIR, "trin_tiny.bin"),
                     trin_bytes([trin_codes[n] for n in linear_names()]), changed)
    info_trin = golden("trin_tq2_0", *golden_weights("trin", trin_codes), True)

    # manifest
    versions = ["Python %s" % platform.python_version(), "numpy %s" % np.__version__]
    for mod in ("torch", "transformers", "safetensors", "sentencepiece", "gguf", "llama_cpp_python"):
        versions.append("%s %s" % (mod if mod != "gguf" else "gguf-py", pkg_version(mod)))
    with open(TOK512, "rb") as f:
        tok_sha = sha256_bytes(f.read())
    lines = [
        "# Fixtures and goldens for tests/test_convert_*.sh, made by scripts/make_convert_fixtures.py (do not edit).",
        "# Generator: " + ", ".join(versions),
        "# Reference forward pass: " + reference,
        "# Input: $TRN_TESTDATA/stories260K/tok512.bin sha256 " + tok_sha,
        "# hf_tiny: seed %d; %d layers, hidden %d, intermediate %d (512 would not fit the 2.5 MB budget), %d heads, "
        "%d KV heads," % (SEED, N_LAYER, N_EMBD, N_FF, N_HEAD, N_HEAD_KV),
        "#   vocab %d, context %d, RMS eps %g, RoPE theta %g, untied lm_head; BF16, two shards + index."
        % (N_VOCAB, N_CTX, RMS_EPS, ROPE_THETA),
        "# Ternarization (whole tensor): absmean s = mean|w|, q = clip(round(w/s), -1, 1); seed q = sign(w),",
        "#   s = std(w)/std(q); TRIN s = std(base w)/std(code-1). Weights float16(s)*q (TQ2_0/TQ1_0 hold one float16",
        "#   scale per block of 256). Embeddings float16, norms float32. Q/K rows unpermuted (HF rotate_half RoPE).",
        "# Broken inputs are made by tests/test_convert_*.sh at test time (not stored).",
        "#",
        "# Files:",
        "#   hf_tiny/config.json, model-0000{1,2}-of-00002.safetensors, model.safetensors.index.json: the checkpoint.",
        "#   hf_tiny/tokenizer.model: SentencePiece ModelProto of tok512.bin's vocabulary.",
        "#   hf_tiny.ids: the id sequence of every golden (%d ids)." % len(IDS),
        "#   hf_tq2_0_logits.npy [%d, %d], hf_tq2_0_top1.txt: --from hf --type tq2_0 (absmean); also the reference "
        "for --type tq1_0." % (len(IDS), N_VOCAB),
        "#   hf_f16_logits.npy [%d, %d], hf_f16_top1.txt: --from hf --type f16." % (len(IDS), N_VOCAB),
        "#   hf_seed_top1.txt: --from hf --type tq2_0 --ternary-rule seed (top-1 only).",
        "#   trin_tiny.bin: TRIN codes for hf_tiny's 15 linear layers (P(code 0, 1, 2) = %s)." % TRIN_CODE_P,
        "#   trin_tq2_0_logits.npy [%d, %d], trin_tq2_0_top1.txt: --from trin trin_tiny.bin --base hf_tiny."
        % (len(IDS), N_VOCAB),
        "#   tokenize.txt: SentencePiece's ids (no BOS) of three prompts.",
        "#",
        "# Checks made while generating:",
    ]
    lines += ["#   " + n for n in notes]
    lines += ["#", "# Measured (nmse = sum (a-b)^2 / sum b^2):"]
    lines += ["#   " + m for m in measured]
    lines += ["#", "# Scales (float64, as the golden computes them before rounding to float16):"]
    for label, info in (("absmean", info_abs), ("trin", info_trin)):
        lines.append("#   %s: " % label + ", ".join("%s %.9g" % (n.replace("model.layers.", "L").replace(
            ".weight", ""), s) for n, s, _, _ in info))
    lines += ["#", "# Id sequence:", "hf_tiny.ids\t" + " ".join(map(str, IDS)), "#", "# sha256 of the files:"]
    for dirpath, _, files in sorted(os.walk(OUT_DIR)):
        for fn in sorted(files):
            if fn == "manifest.txt" or fn.endswith(".tmp"):
                continue
            path = os.path.join(dirpath, fn)
            with open(path, "rb") as f:
                lines.append("%s  %s" % (sha256_bytes(f.read()), os.path.relpath(path, OUT_DIR)))
    write_if_changed(os.path.join(OUT_DIR, "manifest.txt"), ("\n".join(lines) + "\n").encode(), changed)

    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT_DIR) for f in fs)
    print("tests/golden/convert: %d bytes in all; %s" % (size, "rewrote " + ", ".join(changed) if changed
                                                         else "nothing changed"))
    for m in measured:
        print("  " + m)


if __name__ == "__main__":
    main()
