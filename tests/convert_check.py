#!/usr/bin/env python3
"""convert_check.py: the NumPy, gguf-py and llama.cpp checks of the `trinity convert` tests (tests/convert_lib.sh).

  nmse GOT.npy GOLDEN.npy BOUND: the normalized squared error of two logits arrays is at most BOUND.
  gguf FILE N_TENSORS TYPES GOLDEN.npy|- IDS BOUND: gguf-py reads FILE with N_TENSORS tensors of the TYPES given
      (name=TYPE,... or -), and a float64 forward pass over its dequantized tensors is within BOUND of GOLDEN.
  same-tensors CONVERTED REFERENCE: CONVERTED holds every tensor of REFERENCE, with equal values.
  llamacpp FILE GOLDEN.npy TRINITY.npy|- IDS: llama.cpp (llama-cpp-python) loads FILE; its logits are near the
      golden and equal trinity's int8-activation logits (TRINITY.npy; - for F16 weights: the golden alone).

Exits 0 when the check holds, printing one line of what it found either way. Needs numpy (gguf and llama_cpp for
the commands that read with them).
"""
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
