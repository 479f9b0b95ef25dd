#!/usr/bin/env python3
"""make_fuzz_corpus.py: the seed corpora of the fuzz targets (tests/fuzz/), written to tests/fuzz/corpus/<target>/.

    python3 scripts/make_fuzz_corpus.py [OUT_DIR]      (default: tests/fuzz/corpus beside this script's repository)

Python 3 standard library only. Deterministic: the same files byte for byte on every run (a fixed xorshift32 stream,
no clock, no dict-order surprises), so the committed corpora can be regenerated and compared. Each target's
directory is emptied of *.bin / *.gguf / ... files it wrote before and rewritten. For every format a few valid
minimal files (so that fuzzing starts deep inside the parsers) and a few broken variants (truncated, huge counts,
wrong types). Files stay small (the largest, a GGUF with every quantized tensor type, about 60 KB).

Targets and their input layouts (see each tests/fuzz/fuzz_NAME.c):
  gguf            a GGUF file (llama model with a vocabulary): F32 untied, F16/BF16 tied (version 2), a 256-wide
                  model with Q8_0, Q4_K, Q6_K, TQ1_0 and TQ2_0 tensors; broken ones
  tokenizer       flags byte (bit 0 add BOS, bits 1-4 decode capacity) + text
  safetensors     one .safetensors file (u64 header length, JSON header, data)
  llama2c         the harness's split format: flags byte; RAW (odd flags): u16 checkpoint length, checkpoint,
                  tokenizer.bin; STRUCTURED (even): 7 header selector bytes, u16 weight byte count, weight bytes,
                  tokenizer.bin
  trin            flags byte; RAW (odd): the TRIN file as is; STRUCTURED: 2 count-perturbation bytes + code bytes
                  (the harness writes magic and byte counts for its built-in 1-layer base)
  spm_model       a SentencePiece tokenizer.model (protobuf ModelProto)
  tokenizer_json  a Hugging Face tokenizer.json
"""
import json
import os
import struct
import sys

# ---- deterministic bytes --------------------------------------------------------------------------------------


class Rng:
    """xorshift32: the same stream on every Python version."""

    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF or 1

    def u32(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def bytes(self, n):
        return bytes(self.u32() & 0xFF for _ in range(n))

    def small_float(self, scale=0.1):
        return ((self.u32() % 20001) / 10000.0 - 1.0) * scale


def f16(x):
    return struct.pack("<e", x)


def bf16(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return struct.pack("<H", bits & 0xFFFF)


# ---- GGUF -----------------------------------------------------------------------------------------------------

GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_U64 = 4, 5, 6, 7, 8, 9, 10
T_F32, T_F16, T_Q8_0, T_Q4_K, T_Q6_K, T_BF16, T_TQ1_0, T_TQ2_0 = 0, 1, 8, 12, 14, 30, 34, 35
# elements per block, bytes per block
BLOCKS = {T_F32: (1, 4), T_F16: (1, 2), T_BF16: (1, 2), T_Q8_0: (32, 34), T_Q4_K: (256, 144), T_Q6_K: (256, 210),
          T_TQ1_0: (256, 54), T_TQ2_0: (256, 66)}


def gguf_str(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, value):
    if vtype == GGUF_U32:
        return struct.pack("<I", value)
    if vtype == GGUF_I32:
        return struct.pack("<i", value)
    if vtype == GGUF_F32:
        return struct.pack("<f", value)
    if vtype == GGUF_BOOL:
        return struct.pack("<B", 1 if value else 0)
    if vtype == GGUF_STRING:
        return gguf_str(value)
    if vtype == GGUF_U64:
        return struct.pack("<Q", value)
    raise ValueError(vtype)


def gguf_kv(key, vtype, value, elem_type=None):
    out = gguf_str(key) + struct.pack("<I", vtype)
    if vtype == GGUF_ARRAY:
        out += struct.pack("<IQ", elem_type, len(value)) + b"".join(gguf_value(elem_type, v) for v in value)
    else:
        out += gguf_value(vtype, value)
    return out


def tensor_data(rng, ttype, ne0, ne1, norm=False):
    """Plausible data of a tensor [ne1 rows][ne0]: finite values, sane block scales."""
    n = ne0 * ne1
    if ttype == T_F32:
        return b"".join(struct.pack("<f", (1.0 + rng.small_float()) if norm else rng.small_float()) for _ in range(n))
    if ttype == T_F16:
        return b"".join(f16((1.0 + rng.small_float()) if norm else rng.small_float()) for _ in range(n))
    if ttype == T_BF16:
        return b"".join(bf16((1.0 + rng.small_float()) if norm else rng.small_float()) for _ in range(n))
    per, _ = BLOCKS[ttype]
    out = bytearray()
    for _ in range(n // per):
        if ttype == T_Q8_0:
            out += f16(0.004) + rng.bytes(32)
        elif ttype == T_Q4_K:
            out += f16(0.01) + f16(0.005) + bytes(rng.u32() & 0x3F for _ in range(12)) + rng.bytes(128)
        elif ttype == T_Q6_K:
            out += rng.bytes(128) + rng.bytes(64) + bytes((rng.u32() % 32) for _ in range(16)) + f16(0.002)
        elif ttype == T_TQ1_0:
            out += bytes((rng.u32() % 243) for _ in range(52)) + f16(0.05)
        elif ttype == T_TQ2_0:
            # codes 0..2 only (3 is a code the quantizer never writes)
            out += bytes(sum((rng.u32() % 3) << (2 * k) for k in range(4)) for _ in range(64)) + f16(0.05)
    return bytes(out)


def gguf_file(kvs, tensors, version=3, alignment=32):
    """kvs: list of encoded kv bytes; tensors: list of (name, [ne...], type, data)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    infos, blobs, offset = b"", [], 0
    for name, ne, ttype, data in tensors:
        offset = (offset + alignment - 1) // alignment * alignment
        infos += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", ttype, offset)
        blobs.append((offset, data))
        offset += len(data)
    out = bytearray(head + infos)
    out += b"\0" * ((-len(out)) % alignment)
    base = len(out)
    for off, data in blobs:
        out += b"\0" * (base + off - len(out))
        out += data
    return bytes(out)


SPACE = "\u2581"
# A small Llama vocabulary: specials, the byte pieces the fixed text needs, characters and merged pieces.
GGUF_VOCAB = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
GGUF_VOCAB += [("<0x%02X>" % b, 0.0, 6) for b in (0x0A, 0x21, 0x2C, 0x3C, 0x41, 0xA9, 0xC3)]
GGUF_VOCAB += [(p, -float(i), 1) for i, p in enumerate(
    [SPACE, "H", "e", "l", "o", "w", "r", "d", "t", "ll", "llo", SPACE + "w", "or", "ld", SPACE + "Hello",
     SPACE + "world"])]


def llama_kvs(n_layer, n_embd, n_ff, n_head, n_head_kv, vocab, name, extra=()):
    kvs = [
        gguf_kv("general.architecture", GGUF_STRING, "llama"),
        gguf_kv("general.name", GGUF_STRING, name),
        gguf_kv("llama.block_count", GGUF_U32, n_layer),
        gguf_kv("llama.context_length", GGUF_U32, 64),
        gguf_kv("llama.embedding_length", GGUF_U32, n_embd),
        gguf_kv("llama.feed_forward_length", GGUF_U32, n_ff),
        gguf_kv("llama.attention.head_count", GGUF_U32, n_head),
        gguf_kv("llama.attention.head_count_kv", GGUF_U32, n_head_kv),
        gguf_kv("llama.rope.freq_base", GGUF_F32, 10000.0),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", GGUF_F32, 1e-5),
        gguf_kv("tokenizer.ggml.model", GGUF_STRING, "llama"),
        gguf_kv("tokenizer.ggml.tokens", GGUF_ARRAY, [p for p, _, _ in vocab], GGUF_STRING),
        gguf_kv("tokenizer.ggml.scores", GGUF_ARRAY, [s for _, s, _ in vocab], GGUF_F32),
        gguf_kv("tokenizer.ggml.token_type", GGUF_ARRAY, [t for _, _, t in vocab], GGUF_I32),
        gguf_kv("tokenizer.ggml.bos_token_id", GGUF_U32, 1),
        gguf_kv("tokenizer.ggml.eos_token_id", GGUF_U32, 2),
        gguf_kv("tokenizer.ggml.unknown_token_id", GGUF_U32, 0),
    ]
    return kvs + list(extra)


def llama_tensors(rng, n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab, types, tied=False, norm_type=T_F32):
    """types: dict of 'embd', 'output', 'q', 'k', 'v', 'o', 'gate', 'up', 'down' -> tensor type."""
    kv_dim = n_embd // n_head * n_head_kv
    t = []

    def add(name, ne0, ne1, ttype, norm=False):
        ne = [ne0] if norm else [ne0, ne1]
        t.append((name, ne, ttype, tensor_data(rng, ttype, ne0, ne1, norm)))

    add("token_embd.weight", n_embd, n_vocab, types["embd"])
    add("output_norm.weight", n_embd, 1, norm_type, norm=True)
    if not tied:
        add("output.weight", n_embd, n_vocab, types["output"])
    for layer in range(n_layer):
        p = "blk.%d." % layer
        add(p + "attn_norm.weight", n_embd, 1, norm_type, norm=True)
        add(p + "attn_q.weight", n_embd, n_embd, types["q"])
        add(p + "attn_k.weight", n_embd, kv_dim, types["k"])
        add(p + "attn_v.weight", n_embd, kv_dim, types["v"])
        add(p + "attn_output.weight", n_embd, n_embd, types["o"])
        add(p + "ffn_norm.weight", n_embd, 1, norm_type, norm=True)
        add(p + "ffn_gate.weight", n_embd, n_ff, types["gate"])
        add(p + "ffn_up.weight", n_embd, n_ff, types["up"])
        add(p + "ffn_down.weight", n_ff, n_embd, types["down"])
    return t


def gguf_seeds():
    rng = Rng(0x6775)
    nv = len(GGUF_VOCAB)
    out = {}
    all_f32 = {k: T_F32 for k in ("embd", "output", "q", "k", "v", "o", "gate", "up", "down")}
    kvs = llama_kvs(1, 8, 16, 2, 1, GGUF_VOCAB, "fuzz-f32")
    tensors = llama_tensors(rng, 1, 8, 16, 2, 1, nv, all_f32)
    f32 = gguf_file(kvs, tensors)
    out["valid_f32_untied.gguf"] = f32

    all_f16 = {k: T_F16 for k in all_f32}
    kvs = llama_kvs(2, 8, 12, 4, 2, GGUF_VOCAB, "fuzz-f16", extra=[
        gguf_kv("general.alignment", GGUF_U32, 64),
        gguf_kv("tokenizer.ggml.add_space_prefix", GGUF_BOOL, False)])
    out["valid_f16_tied_v2.gguf"] = gguf_file(
        kvs, llama_tensors(rng, 2, 8, 12, 4, 2, nv, all_f16, tied=True, norm_type=T_BF16), version=2, alignment=64)

    mix = {"embd": T_Q8_0, "output": T_Q6_K, "q": T_TQ1_0, "k": T_Q4_K, "v": T_TQ1_0, "o": T_TQ1_0, "gate": T_TQ2_0,
           "up": T_TQ1_0, "down": T_Q8_0}
    kvs = llama_kvs(1, 256, 32, 8, 1, GGUF_VOCAB, "fuzz-quant-mix")
    out["valid_quant_mix.gguf"] = gguf_file(kvs, llama_tensors(rng, 1, 256, 32, 8, 1, nv, mix))

    # broken variants of the F32 model
    out["bad_truncated.gguf"] = f32[: len(f32) * 2 // 3]
    out["bad_header_only.gguf"] = f32[:24]
    out["bad_huge_counts.gguf"] = f32[:8] + struct.pack("<QQ", 1 << 60, 1 << 61) + f32[24:]
    wrong_type = llama_kvs(1, 8, 16, 2, 1, GGUF_VOCAB, "fuzz-wrong-type")
    wrong_type[2] = gguf_kv("llama.block_count", GGUF_STRING, "one")
    out["bad_wrong_type.gguf"] = gguf_file(wrong_type, tensors)
    short_vocab = llama_kvs(1, 8, 16, 2, 1, GGUF_VOCAB[:-1], "fuzz-short-vocab")
    out["bad_vocab_mismatch.gguf"] = gguf_file(short_vocab, tensors)
    # a string array whose count runs past the file
    huge_array = gguf_kv("tokenizer.ggml.tokens", GGUF_ARRAY, ["a"], GGUF_STRING)
    huge_array = huge_array[: -(8 + 1 + 8)] + struct.pack("<Q", 1 << 40) + struct.pack("<Q", 1) + b"a"
    out["bad_huge_array.gguf"] = gguf_file(llama_kvs(1, 8, 16, 2, 1, GGUF_VOCAB, "x")[:11] + [huge_array], [])
    misaligned = bytearray(f32)
    # the second tensor's offset field: find it by name and bump the u64 after the type
    name = gguf_str("output_norm.weight") + struct.pack("<IQ", 1, 8)
    at = bytes(misaligned).find(name) + len(name) + 4
    misaligned[at:at + 8] = struct.pack("<Q", struct.unpack("<Q", misaligned[at:at + 8])[0] + 4)
    out["bad_misaligned_offset.gguf"] = bytes(misaligned)
    return out


# ---- tokenizer (fixed vocabulary) -----------------------------------------------------------------------------

def tokenizer_seeds():
    texts = [
        (1, b"Hello world"),
        (0, b"Hello world"),
        (3, "The quick brown fox, \u00e9t\u00e9 na\u00efve caf\u00e9.".encode()),
        (9, "\u65e5\u672c\u8a9e \U0001f600 \u2581 tabs\tand\nnewlines".encode()),
        (1, b"\xff\xfe invalid \xc3 utf-8 \xe2\x82 cut \xf0\x9f\x98"),
        (31, b"   leading and  double  spaces   "),
        (1, b""),
        (5, b"<s></s><unk><0x41> specials as text"),
        (1, bytes(range(1, 128))),
        (1, b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" * 8),
    ]
    return {"text_%02d.bin" % i: bytes([flags]) + t for i, (flags, t) in enumerate(texts)}


# ---- safetensors ----------------------------------------------------------------------------------------------

def safetensors_file(entries, metadata=True, pad=True):
    """entries: list of (name, dtype, shape, data bytes); header in that order (json.dumps keeps it)."""
    header, offset, data = {}, 0, b""
    if metadata:
        header["__metadata__"] = {"format": "pt"}
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        data += blob
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((-len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data


def st_values(rng, dtype, n):
    if dtype == "F32":
        return b"".join(struct.pack("<f", rng.small_float()) for _ in range(n))
    if dtype == "F16":
        return b"".join(f16(rng.small_float()) for _ in range(n))
    return b"".join(bf16(rng.small_float()) for _ in range(n))


def safetensors_seeds():
    rng = Rng(0x5354)
    out = {}
    out["valid_mixed.safetensors"] = safetensors_file([
        ("model.embed_tokens.weight", "BF16", [8, 4], st_values(rng, "BF16", 32)),
        ("model.norm.weight", "F32", [4], st_values(rng, "F32", 4)),
        ("lm_head.weight", "F16", [8, 4], st_values(rng, "F16", 32)),
    ])
    out["valid_shapes.safetensors"] = safetensors_file([
        ("four_d", "F32", [2, 1, 3, 2], st_values(rng, "F32", 12)),
        ("empty", "F16", [0], b""),
        ("scalar_like", "BF16", [1], st_values(rng, "BF16", 1)),
    ], metadata=False, pad=False)
    special = struct.pack("<4f", float("inf"), float("-inf"), float("nan"), -0.0)
    out["valid_special_values.safetensors"] = safetensors_file([
        ("special", "F32", [4], special),
        ("subnormal_f16", "F16", [4], struct.pack("<4H", 0x0001, 0x03FF, 0x7C00, 0xFE00)),
    ])
    good = out["valid_mixed.safetensors"]
    out["bad_truncated.safetensors"] = good[: len(good) - 10]
    out["bad_header_len.safetensors"] = struct.pack("<Q", 1 << 40) + good[8:]
    out["bad_dtype_i8.safetensors"] = safetensors_file([("w", "I8", [4], b"\1\2\3\4")])
    out["bad_offsets.safetensors"] = (lambda h: struct.pack("<Q", len(h)) + h + b"\0" * 8)(
        b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}')
    out["bad_not_object.safetensors"] = (lambda h: struct.pack("<Q", len(h)) + h)(b'[1, 2, 3]')
    out["bad_dims.safetensors"] = (lambda h: struct.pack("<Q", len(h)) + h + b"\0" * 4)(
        b'{"w":{"dtype":"F32","shape":[1,1,1,1,1],"data_offsets":[0,4]},"v":{"dtype":"F32","shape":[-1],'
        b'"data_offsets":[4,0]}}')
    # regressions: no tensors at all (a lookup once handed bsearch a NULL array); a shape whose bytes wrap 2^64
    out["regress_no_tensors.safetensors"] = struct.pack("<Q", 2) + b"{}"
    out["regress_wrap.safetensors"] = (lambda h: struct.pack("<Q", len(h)) + h)(
        b'{"w":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}}')
    return out


# ---- llama2.c (the harness's split format) --------------------------------------------------------------------

def llama2c_tokenizer(pieces, max_len=None):
    out = struct.pack("<i", max_len if max_len is not None else max(len(p) for p, _ in pieces))
    for text, score in pieces:
        b = text.encode()
        out += struct.pack("<fi", score, len(b)) + b
    return out


def llama2c_pieces(n):
    base = ["<unk>", "<s>", "</s>", "<0x0A>", " ", "e", "t", "a", " t", "he", " the", "o", "n", "s", " a", "in"]
    base += ["x%d" % i for i in range(len(base), n)]
    return [(p, -float(i)) for i, p in enumerate(base[:n])]


def llama2c_structured(flags, sel, weights, tokenizer):
    return bytes([flags]) + bytes(sel) + struct.pack("<H", len(weights)) + weights + tokenizer


def llama2c_checkpoint(rng, dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared=True):
    hs = dim // heads
    kv = hs * kv_heads
    floats = (vocab * dim + layers * dim + layers * dim * dim * 2 + 2 * layers * kv * dim + layers * dim +
              3 * layers * hidden * dim + dim + 2 * seq_len * (hs // 2) + (0 if shared else vocab * dim))
    header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if shared else -vocab, seq_len)
    return header + b"".join(struct.pack("<f", rng.small_float()) for _ in range(floats))


def llama2c_seeds():
    rng = Rng(0x6C32)
    out = {}
    tok16 = llama2c_tokenizer(llama2c_pieces(16))
    # selectors: head_size 2*(1+s0%4), hidden 1+s1%64, layers 1+s2%3, n_heads n_kv*(1+s3%4), n_kv 1+s4%2,
    # vocab 1+s5%64, seq_len 1+s6%64
    out["valid_small.bin"] = llama2c_structured(0x08, [1, 15, 0, 1, 0, 15, 7], rng.bytes(64), tok16)
    out["valid_classifier_f16.bin"] = llama2c_structured(0x08 | 0x04 | 0x20 | 0x80, [3, 23, 1, 3, 1, 15, 15],
                                                         rng.bytes(48), tok16)
    out["valid_raw_float_bits.bin"] = llama2c_structured(0x18, [0, 7, 0, 0, 0, 15, 3],
                                                         b"".join(struct.pack("<f", rng.small_float())
                                                                  for _ in range(16)), tok16)
    out["valid_zero_padded_3_layers.bin"] = llama2c_structured(0x00, [2, 31, 2, 2, 1, 15, 63], rng.bytes(200), tok16)
    out["ternary_refused.bin"] = llama2c_structured(0x48, [1, 15, 0, 1, 0, 15, 7], rng.bytes(16), tok16)
    out["literal_bad_heads.bin"] = llama2c_structured(0x0A, [7, 15, 0, 2, 1, 15, 7], rng.bytes(16), tok16)
    out["short_tokenizer.bin"] = llama2c_structured(0x08, [1, 15, 0, 1, 0, 15, 7], rng.bytes(16), tok16[:100])
    ckpt = llama2c_checkpoint(rng, 8, 16, 1, 2, 1, 16, 8)
    out["raw_valid.bin"] = b"\x01" + struct.pack("<H", len(ckpt)) + ckpt + tok16
    out["raw_wrong_size.bin"] = b"\x01" + struct.pack("<H", len(ckpt) - 4) + ckpt[:-4] + tok16
    ak42 = struct.pack("<I", 0x616B3432) + ckpt[4:64]
    out["raw_magic_ak42.bin"] = b"\x01" + struct.pack("<H", len(ak42)) + ak42 + tok16
    neg = struct.pack("<7i", 8, 16, -1, 2, 1, -(1 << 31), 8)
    out["raw_negative_header.bin"] = b"\x01" + struct.pack("<H", len(neg)) + neg + tok16
    bad_tok = struct.pack("<i", 4) + struct.pack("<fi", 0.0, 1 << 30) + b"abc"
    out["raw_bad_tokenizer.bin"] = b"\x01" + struct.pack("<H", len(ckpt)) + ckpt + bad_tok
    return out


# ---- TRIN (against the harness's built-in base: hidden 8, FFN 16, 1 KV head of 4, vocab 8) -----------------------

TRIN_SHAPES = [(8, 8), (4, 8), (4, 8), (8, 8), (16, 8), (16, 8), (8, 16), (8, 8)]


def trin_codes(rng, n_bytes):
    return bytes(sum((rng.u32() % 3) << (2 * k) for k in range(4)) for _ in range(n_bytes))


def trin_seeds():
    rng = Rng(0x5452)
    out = {}
    total = sum((r * c + 3) // 4 for r, c in TRIN_SHAPES)
    codes = trin_codes(rng, total)
    out["valid_untied.bin"] = b"\x08\0\0" + codes
    out["valid_tied_head.bin"] = b"\x0a\0\0" + trin_codes(rng, 96)
    out["valid_tied_no_head_f16.bin"] = b"\x0e\0\0" + trin_codes(rng, 40)
    out["valid_f16_types.bin"] = bytes([0x08 | 0x20 | 0x40, 0, 0]) + trin_codes(rng, 64)
    out["code3_unsanitized.bin"] = b"\x00\0\0" + b"\xff" * 16
    out["count_off_by_one.bin"] = b"\x18\x03\x01" + codes
    out["trailing_byte.bin"] = b"\x88\0\0" + codes
    out["untied_no_head.bin"] = b"\x0c\0\0" + codes
    raw = b"TRIN"
    for (r, c) in TRIN_SHAPES:
        n = (r * c + 3) // 4
        raw += struct.pack("<I", n) + trin_codes(rng, n)
    out["raw_valid_untied.bin"] = b"\x01" + raw
    out["raw_truncated.bin"] = b"\x01" + raw[: len(raw) // 2]
    out["raw_bad_magic.bin"] = b"\x01" + b"NIRT" + raw[4:]
    out["raw_huge_count.bin"] = b"\x01TRIN" + struct.pack("<I", 0xFFFFFFFF) + codes[:16]
    return out


# ---- SentencePiece tokenizer.model ----------------------------------------------------------------------------

def pb_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_len(field, payload):
    return pb_varint(field << 3 | 2) + pb_varint(len(payload)) + payload


def pb_piece(text, score, ptype=None):
    b = text.encode() if isinstance(text, str) else text
    msg = pb_len(1, b) + pb_varint(2 << 3 | 5) + struct.pack("<f", score)
    if ptype is not None:
        msg += pb_varint(3 << 3 | 0) + pb_varint(ptype)
    return pb_len(1, msg)


def spm_model(pieces, trainer=None, normalizer=True):
    out = b"".join(pb_piece(*p) for p in pieces)
    if trainer is not None:
        out += pb_len(2, trainer)
    if normalizer:
        out += pb_len(3, pb_len(1, b"identity") + pb_varint(3 << 3 | 0) + pb_varint(1))
    return out


def spm_seeds():
    out = {}
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [("<0x%02X>" % b, 0.0, 6) for b in (0x0A, 0x20, 0x41)]
    pieces += [(SPACE + "t", -1.0, None), ("he", -2.0, 1), (SPACE + "the", -3.0, None), ("a", -4.0, None),
               ("b", -5.0, 1), ("<user>", 0.0, 4), ("<unused>", 0.0, 5)]
    trainer = (pb_varint(1 << 3 | 2) + pb_varint(5) + b"input" + pb_varint(3 << 3 | 0) + pb_varint(1) +
               pb_len(45, b"<unk>") + pb_len(46, b"<s>") + pb_len(47, b"</s>") +
               pb_varint(40 << 3 | 5) + struct.pack("<f", 0.5) + pb_varint(41 << 3 | 1) + struct.pack("<d", 1.0))
    good = spm_model(pieces, trainer)
    out["valid.model"] = good
    out["valid_no_trainer.model"] = spm_model(pieces[:8], None, normalizer=False)
    out["valid_renamed_specials.model"] = spm_model(
        [("[UNK]", 0.0, 2), ("[BOS]", 0.0, 3), ("[EOS]", 0.0, 3), ("x", -1.0, 1)],
        pb_len(45, b"[UNK]") + pb_len(46, b"[BOS]") + pb_len(47, b"[EOS]"))
    out["bad_truncated.model"] = good[: len(good) - 7]
    out["bad_group_wire.model"] = good[:20] + pb_varint(9 << 3 | 3) + good[20:]
    out["bad_piece_type.model"] = spm_model([("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 9)])
    out["bad_nul_piece.model"] = spm_model([("<unk>", 0.0, 2), ("<s>", 0.0, 3), (b"a\0b", 0.0, 1)])
    out["bad_long_varint.model"] = pb_varint(1 << 3 | 2) + b"\xff" * 11 + b"\x01"
    out["bad_huge_length.model"] = pb_varint(1 << 3 | 2) + pb_varint(1 << 62) + b"abc"
    out["bad_one_piece.model"] = spm_model([("<unk>", 0.0, 2)])
    return out


# ---- tokenizer.json -------------------------------------------------------------------------------------------

def hf_tokenizer_json(vocab, merges, added, pre_type="Metaspace", model_type="BPE"):
    doc = {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE}, {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]},
        "pre_tokenizer": {"type": pre_type} if pre_type else None,
        "model": {"type": model_type, "dropout": None, "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab, "merges": merges},
    }
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()


def tokenizer_json_seeds():
    out = {}
    pieces = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", SPACE, "t", "h", "e", "a", "b", "th", "he", SPACE + "t",
              SPACE + "th", "the", SPACE + "the", "ab", "<extra>"]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = ["t h", "h e", SPACE + " t", SPACE + "t h", "th e", [SPACE + "th", "e"], ["a", "b"]]
    added = [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
             {"id": 2, "content": "</s>", "special": True}, {"id": 19, "content": "<added>", "special": False},
             {"id": 18, "content": "<extra>", "special": False}]
    out["valid.json"] = hf_tokenizer_json(vocab, merges, added)
    out["valid_minimal.json"] = json.dumps(
        {"model": {"vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "x": 3}}}, separators=(",", ":")).encode()
    out["valid_no_added_null_pre.json"] = hf_tokenizer_json(vocab, merges[:3], None, pre_type=None)
    out["bad_bytelevel.json"] = hf_tokenizer_json(vocab, merges, added, pre_type="ByteLevel")
    out["bad_unigram.json"] = hf_tokenizer_json(vocab, merges, added, model_type="Unigram")
    holes = dict(vocab)
    holes["far"] = 40
    out["bad_id_hole.json"] = hf_tokenizer_json(holes, merges, added)
    out["bad_merge_unknown_piece.json"] = hf_tokenizer_json(vocab, ["q z"], added)
    out["bad_merge_makes_unknown.json"] = hf_tokenizer_json(vocab, ["a h"], added)
    out["bad_added_conflict.json"] = hf_tokenizer_json(vocab, merges, [{"id": 3, "content": "zzz", "special": True}])
    out["bad_not_json.json"] = b'{"model": {"vocab": {"a": 0, '
    out["bad_float_id.json"] = b'{"model": {"vocab": {"<unk>": 0, "<s>": 1.5, "</s>": 1e300}}}'
    return out


# ---- trinity serve: a request body and a completion's token ids (fuzz_server.c) -----------------------------------

# The tiny synthetic vocabulary's ids of "Hello world, stop here. \u00e9\u6f22\U0001F600" (`trinity tokenize --synthetic
# tiny --no-bos`): words, punctuation, and byte tokens that spell multi-byte characters.
TINY_IDS = [259, 75, 542, 912, 305, 288, 294, 890, 47, 297, 298, 288, 290, 275, 554, 268, 49, 259, 198, 172, 233, 191,
            165, 243, 162, 155, 131]


def server_input(body, ids=(), chat=False, chat_format=0, ctx_shift=5):
    body = body.encode() if isinstance(body, str) else body
    flags = (1 if chat else 0) | chat_format << 1 | ctx_shift << 3
    return bytes([flags]) + struct.pack("<H", len(body)) + body + b"".join(struct.pack("<H", i) for i in ids)


def server_seeds():
    rng = Rng(0x5356)
    out = {}
    out["completion.bin"] = server_input('{"prompt": "Once upon a time", "max_tokens": 8}', TINY_IDS)
    out["completion_stop.bin"] = server_input('{"prompt": "Hi", "stop": ["stop", "re."], "stream": true}', TINY_IDS)
    out["completion_stop_emoji.bin"] = server_input('{"prompt": ["Hi"], "stop": "\\ud83d\\ude00"}', TINY_IDS)
    out["completion_stop_split.bin"] = server_input('{"prompt": "x", "stop": ["world, s", "ld"]}', TINY_IDS)
    out["chat_zephyr.bin"] = server_input(
        '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}], '
        '"temperature": 0, "seed": -3, "stop": ["\\u00e9"]}', TINY_IDS, chat=True, chat_format=1)
    out["chat_parts.bin"] = server_input(
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], '
        '"top_k": 5, "top_p": 0.5, "repeat_penalty": 1.1}', TINY_IDS[:9], chat=True, chat_format=2)
    out["chat_llama2.bin"] = server_input(
        '{"messages": [{"role": "user", "content": "</s>[INST]"}, {"role": "assistant", "content": "ok"}, '
        '{"role": "user", "content": "more"}]}', [rng.u32() % 1000 for _ in range(40)], chat=True)
    out["long_prompt.bin"] = server_input('{"prompt": "%s"}' % ("word " * 60), TINY_IDS, ctx_shift=0)
    out["bad_json.bin"] = server_input('{"prompt": "a",}')
    out["bad_role.bin"] = server_input('{"messages": [{"role": "a%s", "content": "x"}]}' % ("\u00e9" * 30),
                                       chat=True)
    out["bad_role_raw.bin"] = server_input(b'{"messages": [{"role": "as\xff\nstant", "content": "x"}]}', chat=True)
    out["nul_escape.bin"] = server_input(r'{"prompt": "a\u0000b"}')
    out["backslash_u0000.bin"] = server_input(r'{"prompt": "a\\u0000b", "stop": "\\"}', TINY_IDS)
    out["bad_fields.bin"] = server_input('{"prompt": "a", "n": 2, "logprobs": 1, "top_p": 0}')
    out["bad_stop.bin"] = server_input('{"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}')
    out["bad_utf8.bin"] = server_input(b'{"prompt": "\xff\xfe", "stop": "\xc3"}')
    out["random_ids.bin"] = server_input('{"prompt": "a", "stop": [" ", "e"]}',
                                         [rng.u32() % 65536 for _ in range(200)])
    return out


# ---- main -----------------------------------------------------------------------------------------------------

TARGETS = {
    "gguf": gguf_seeds,
    "tokenizer": tokenizer_seeds,
    "safetensors": safetensors_seeds,
    "llama2c": llama2c_seeds,
    "trin": trin_seeds,
    "spm_model": spm_seeds,
    "tokenizer_json": tokenizer_json_seeds,
    "server": server_seeds,
}


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fuzz", "corpus")
    total_bytes, total_files = 0, 0
    for target, make in TARGETS.items():
        files = make()
        d = os.path.join(out_dir, target)
        os.makedirs(d, exist_ok=True)
        for old in os.listdir(d):  # only this script writes here: start from an empty directory
            os.remove(os.path.join(d, old))
        for name in sorted(files):
            data = files[name]
            assert len(data) < 64 * 1024, (target, name, len(data))
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            total_bytes += len(data)
            total_files += 1
        print("%-15s %2d files, %6d bytes" % (target, len(files), sum(len(v) for v in files.values())))
    print("total: %d files, %d bytes in %s" % (total_files, total_bytes, out_dir))


if __name__ == "__main__":
    main()
