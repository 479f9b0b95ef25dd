#!/usr/bin/env python3
"""Writes a Hugging Face checkpoint with TinyLlama-1.1B's shape and random weights, for trying
`trinity convert --from hf` (and then `generate` and `bench`) at full size without a download.

    python3 scripts/make_tinyllama_shaped_hf.py OUT_DIR      # about 2.2 GB of BF16 safetensors

OUT_DIR gets config.json (TinyLlama-1.1B's: 22 layers, hidden 2048, FFN 5632, 32 heads, 4 KV heads, vocab 32000)
and model.safetensors (BF16, normal(0, 0.02) linear weights, unit norms, a fixed seed). It has no tokenizer: give
the vocabulary with --vocab (e.g. ../shared/testdata/vocab/ggml-vocab-llama-spm.gguf, the 32000-token Llama one).
Needs numpy only.
"""
import json
import os
import struct
import sys

import numpy as np

CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632,
    "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
}


def shapes(c):
    h, f, kv = c["hidden_size"], c["intermediate_size"], c["hidden_size"] // c["num_attention_heads"] * c["num_key_value_heads"]
    yield "model.embed_tokens.weight", (c["vocab_size"], h)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (h,)
        yield p + "self_attn.q_proj.weight", (h, h)
        yield p + "self_attn.k_proj.weight", (kv, h)
        yield p + "self_attn.v_proj.weight", (kv, h)
        yield p + "self_attn.o_proj.weight", (h, h)
        yield p + "post_attention_layernorm.weight", (h,)
        yield p + "mlp.gate_proj.weight", (f, h)
        yield p + "mlp.up_proj.weight", (f, h)
        yield p + "mlp.down_proj.weight", (h, f)
    yield "model.norm.weight", (h,)
    yield "lm_head.weight", (c["vocab_size"], h)


def to_bf16(x):
    bits = x.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    rng = np.random.default_rng(20261126)
    header, offset, entries = {"__metadata__": {"format": "pt"}}, 0, list(shapes(CONFIG))
    for name, shape in entries:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = os.path.join(out, "model.safetensors.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for name, shape in entries:
            if len(shape) == 1:
                w = np.ones(shape, np.float32)
            else:
                w = rng.standard_normal(shape, dtype=np.float32) * 0.02
            f.write(to_bf16(w).tobytes())
            print(f"\r{name:<45}", end="", file=sys.stderr)
    os.replace(tmp, os.path.join(out, "model.safetensors"))
    print(f"\nwrote {out}/model.safetensors ({offset / 1e9:.2f} GB)", file=sys.stderr)


if __name__ == "__main__":
    main()
