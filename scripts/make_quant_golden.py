#!/usr/bin/env python3
"""make_quant_golden.py: regenerate the golden files of tests/test_quants.c from llama.cpp's gguf-py.

What it makes (in tests/golden/quants/, about 120 KB in all; the files are committed, so CI runs the C test
without Python -- run this script only to regenerate them):

  dequantize_<type>.bin  for f32, f16, bf16, q8_0, q4_K, q6_K, tq1_0, tq2_0: random raw blocks and
                         gguf-py's float32 dequantization of them. Block scales (fp16 d / dmin) are
                         overwritten with sane values, uniform in +-[0.001, 2], so there is no NaN or Inf;
                         TQ2_0 codes are restricted to 0..2 (3 is not a valid code); every TQ1_0
                         byte decodes to base-3 digits 0..2, so its code bytes are plain random bytes.
  quantize_<type>.bin    for the types gguf-py can quantize that Trinity writes (f16, bf16, q8_0, tq1_0,
                         tq2_0): random floats, with edge-case blocks (all zero, rounding ties, exactly
                         ternary, values where x * (1 / d) and x / d round differently), and gguf-py's
                         quantized bytes, which trn_quantize_row must reproduce. (gguf-py 0.19 cannot
                         quantize Q4_K or Q6_K; Trinity does not write them either.)
  convert.bin            scalar fp16 / bf16 conversions: a list of float32 values (subnormals, ties,
                         overflow, NaN, random) with numpy's float16 (round to nearest even) and gguf-py's
                         bf16 encoding of each, plus FNV-1a hashes of exhaustive / swept conversions.
  manifest.txt           the gguf, numpy and Python versions used, the seed and the file list.

Binary formats (little-endian):
  dequantize_*.bin, quantize_*.bin: 32-byte header
      char magic[4] = "TRNQ"; u32 version = 1; u32 kind (1 = dequantize, 2 = quantize); u32 ggml type id;
      u64 n_elements; u64 n_bytes
    kind 1: u8 raw[n_bytes], then f32 expected[n_elements]
    kind 2: f32 input[n_elements], then u8 expected[n_bytes]
  convert.bin:
      char magic[4] = "TRNC"; u32 version = 1; u32 count
      count records of { u32 f32_bits; u16 fp16_bits (numpy astype float16); u16 bf16_bits (gguf-py) }
      u64 fnv_fp16_to_f32   FNV-1a 64 of the f32 bits (LE) of numpy's float32 of every half 0..65535
      u64 fnv_bf16_to_f32   same for gguf-py's dequantization of every bf16 0..65535
      u64 fnv_f32_to_fp16   FNV-1a 64 of the u16 results (LE) of numpy's float16 of the sweep below, each
                            NaN result replaced by 0x7e00 (NaN payloads are not compared)
      u64 fnv_f32_to_bf16   same for gguf-py's bf16 quantization of the sweep (NaNs kept as they are)
    The sweep: for hi in 0..65535, for each low in SWEEP_LOW + [(hi * 40503 + 12345) & 0xffff]:
    f32 bits = hi << 16 | low (786432 values: every sign, exponent and top 7 mantissa bits).

Run from anywhere (python3, needs numpy and gguf, e.g. `pip install gguf`):
    python3 scripts/make_quant_golden.py [output_dir]
"""

import importlib.metadata
import os
import platform
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 20240611
FILE_VERSION = 1
SWEEP_LOW = [0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x2FFF, 0x3000, 0x7FFF, 0x8000, 0x8001, 0xF000, 0xFFFF]

# name (as tensor_types.c spells it), type, elements per dequantize file
DEQUANT_TYPES = [
    ("f32", T.F32, 1024),
    ("f16", T.F16, 1024),
    ("bf16", T.BF16, 1024),
    ("q8_0", T.Q8_0, 2048),
    ("q4_K", T.Q4_K, 2048),
    ("q6_K", T.Q6_K, 2048),
    ("tq1_0", T.TQ1_0, 2048),
    ("tq2_0", T.TQ2_0, 2048),
]
QUANT_TYPES = [("f16", T.F16), ("bf16", T.BF16), ("q8_0", T.Q8_0), ("tq1_0", T.TQ1_0), ("tq2_0", T.TQ2_0)]

BLOCK = {T.F32: (1, 4), T.F16: (1, 2), T.BF16: (1, 2), T.Q8_0: (32, 34), T.Q4_K: (256, 144),
         T.Q6_K: (256, 210), T.TQ1_0: (256, 54), T.TQ2_0: (256, 66)}
# byte offsets of the fp16 scale fields inside one block
SCALE_OFFSETS = {T.Q8_0: [0], T.Q4_K: [0, 2], T.Q6_K: [208], T.TQ1_0: [52], T.TQ2_0: [64]}


def sane_halves(rng, count):
    """fp16 bits of values uniform in +-[0.001, 2]."""
    mag = rng.uniform(0.001, 2.0, count)
    sign = rng.choice([-1.0, 1.0], count)
    return (mag * sign).astype(np.float16).view(np.uint16)


def random_blocks(rng, qtype, n):
    block_size, block_bytes = BLOCK[qtype]
    n_blocks = n // block_size
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if qtype == T.TQ2_0:  # 4 codes of 0..2 per byte
        codes = rng.integers(0, 3, size=(n_blocks, 64, 4), dtype=np.uint8)
        raw[:, :64] = codes[..., 0] | codes[..., 1] << 2 | codes[..., 2] << 4 | codes[..., 3] << 6
    for off in SCALE_OFFSETS.get(qtype, []):
        raw[:, off:off + 2] = sane_halves(rng, n_blocks).reshape(n_blocks, 1).view(np.uint8)
    return raw.reshape(-1)


def write_record(path, kind, qtype, n, first, second):
    n_bytes = n // BLOCK[qtype][0] * BLOCK[qtype][1]
    with open(path, "wb") as f:
        f.write(b"TRNQ" + struct.pack("<IIIQQ", FILE_VERSION, kind, int(qtype), n, n_bytes))
        f.write(first.tobytes())
        f.write(second.tobytes())


def reciprocal_traps(rng, divisor, size):
    """A block of `size` floats whose quantization tells x * (1 / d) from x / d (ggml and gguf-py multiply
    by the reciprocal): max |x| = amax, d = amax / divisor, and the other values sit within a few ulps of a
    rounding tie (k + 0.5) * d, chosen where round(x * id) != round(x / d) in float32."""
    for _ in range(10000):
        amax = np.float32(rng.uniform(0.1, 10.0))
        d = np.float32(amax / np.float32(divisor))
        inv = np.float32(np.float32(1.0) / d)
        ties = ((np.arange(-divisor, divisor) + 0.5) * d).astype(np.float32)
        cand = np.concatenate([(ties.view(np.int32) + off).view(np.float32) for off in range(-8, 9)])
        cand = cand[np.abs(cand) <= amax]
        traps = cand[quants.np_roundf(cand * inv) != quants.np_roundf(cand / d)]
        if len(traps) >= 2:
            block = np.resize(traps, size).astype(np.float32)
            block[0] = amax
            return block
    raise RuntimeError("no reciprocal traps found")


def quant_input(rng, qtype, n):
    """Floats to quantize: random data plus edge-case blocks."""
    if qtype == T.F16:  # magnitudes 2^-27 .. 2^17: zero, subnormal, normal and overflow to inf
        x = np.exp2(rng.uniform(-27, 17, n)) * rng.choice([-1.0, 1.0], n)
        x = x.astype(np.float32)
        x[:4] = [0.0, -0.0, np.inf, -np.inf]
        return x
    if qtype == T.BF16:  # any bits: NaNs (gguf-py and Trinity quiet them the same way), inf, subnormals
        return rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    if qtype == T.Q8_0:  # blocks of 32 with their own scale
        blocks = rng.standard_normal((n // 32, 32)) * np.exp2(rng.uniform(-10, 6, (n // 32, 1)))
        blocks[0] = 0.0                                   # d = 0
        blocks[1] = np.arange(32) - 15.5                  # evenly spaced, max |x| = 16.5
        blocks[2] = (np.arange(32) - 16) + 0.5            # halves -15.5 .. 15.5, and with
        blocks[2, 0] = 127.0                              # d = 1, id = 1: x * id = k + 0.5, exact ties
        blocks[3] = 0.0
        blocks[3, 7] = -3.0                               # one negative value: q = -127
        blocks[4] = reciprocal_traps(rng, 127, 32)        # x * id and x / d round differently
        return blocks.astype(np.float32).reshape(-1)
    # TQ1_0 / TQ2_0: blocks of 256
    nb = n // 256
    blocks = rng.standard_normal((nb, 256)) * np.exp2(rng.uniform(-8, 2, (nb, 1)))
    blocks[0] = 0.0                                                            # d = 0
    blocks[1] = rng.integers(-1, 2, 256) * 0.0137                              # exactly ternary
    blocks[2] = rng.choice([-0.5, 0.5, 0.49999997, -0.50000006, 0.0], 256)    # ties at d = 1
    blocks[2, 0] = 1.0
    blocks[3] = rng.uniform(-1, 1, 256) * 3.5                                  # dense uniform
    blocks[4] = rng.integers(-1, 2, 256) * 0.02 + rng.normal(0, 0.002, 256)    # noisy ternary
    blocks[5] = reciprocal_traps(rng, 1, 256)                                  # x * id vs x / d
    return blocks.astype(np.float32).reshape(-1)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def conversion_values(rng):
    """f32 bit patterns that exercise fp16 and bf16 rounding: ties, carries, subnormals, overflow, NaN."""
    values = set()
    for exp in list(range(98, 146)) + [0, 1, 2, 126, 127, 128, 200, 253, 254, 255]:
        # bits below the fp16 mantissa for this exponent (13 for normal halves, more for subnormals)
        drop16 = min(13 + max(0, 113 - exp), 24)
        mants = {0, 1, 0x7FFFFF, 0x400000, 0x3FFFFF}
        for drop in (drop16, 16):
            tie = 1 << (drop - 1)
            for kept_lsb in (0, 1 << drop):
                for delta in (-1, 0, 1):
                    mants.add((tie + kept_lsb + delta) & 0x7FFFFF)
            mants.add(((1 << drop) - 1) | (0x7FFFFF & ~((1 << drop) - 1)))  # all ones: carry out
        mants.add(int(rng.integers(0, 1 << 23)))
        for mant in mants:
            for sign in (0, 1):
                values.add(sign << 31 | exp << 23 | mant)
    # named edges: max half, the overflow tie, min normal / subnormal halves, the underflow tie
    for f in [65504.0, 65519.0, 65520.0, 65535.0, 65536.0, 2.0**-14, 2.0**-24, 2.0**-25, 1.5 * 2.0**-24,
              2.5 * 2.0**-24, 3.0 * 2.0**-25, 1.0, 1.0 / 3.0, 0.1, 3.4028235e38]:
        values.add(struct.unpack("<I", struct.pack("<f", f))[0])
    for bits in [0x7FC00000, 0x7F800001, 0x7FA00000, 0xFFFFFFFF, 0x7FFFE000, 0x7F802000]:  # NaNs
        values.add(bits)
    values.update(int(b) for b in rng.integers(0, 2**32, 500, dtype=np.uint64))
    return np.array(sorted(values), dtype=np.uint32)


def to_fp16(f32):
    with np.errstate(over="ignore", invalid="ignore"):
        return f32.view(np.float32).astype(np.float16).view(np.uint16)


def to_bf16(f32):
    return quants.quantize(f32.view(np.float32), T.BF16).view(np.uint16)


def write_conversions(path, rng):
    bits = conversion_values(rng)
    records = np.zeros(len(bits), dtype=[("f32", "<u4"), ("fp16", "<u2"), ("bf16", "<u2")])
    records["f32"] = bits
    records["fp16"] = to_fp16(bits)
    records["bf16"] = to_bf16(bits)

    every_half = np.arange(65536, dtype=np.uint16)
    fp16_to_f32 = every_half.view(np.float16).astype(np.float32).view("<u4")
    bf16_to_f32 = quants.dequantize(every_half.view(np.uint8), T.BF16).view("<u4")

    hi = np.arange(65536, dtype=np.uint32)
    lows = [np.full(65536, low, dtype=np.uint32) for low in SWEEP_LOW] + [(hi * 40503 + 12345) & 0xFFFF]
    sweep = (hi[:, None] << 16 | np.stack(lows, axis=1)).reshape(-1).astype(np.uint32)
    sweep_fp16 = to_fp16(sweep).copy()
    sweep_fp16[((sweep_fp16 & 0x7C00) == 0x7C00) & ((sweep_fp16 & 0x3FF) != 0)] = 0x7E00
    sweep_bf16 = to_bf16(sweep)

    with open(path, "wb") as f:
        f.write(b"TRNC" + struct.pack("<II", FILE_VERSION, len(bits)))
        f.write(records.tobytes())
        for arr in (fp16_to_f32, bf16_to_f32, sweep_fp16.astype("<u2"), sweep_bf16.astype("<u2")):
            f.write(struct.pack("<Q", fnv1a64(arr.tobytes())))
    return len(bits)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "golden", "quants")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    files = []

    for name, qtype, n in DEQUANT_TYPES:
        raw = random_blocks(rng, qtype, n)
        expected = np.asarray(quants.dequantize(raw, qtype), dtype=np.float32).reshape(-1)
        assert expected.size == n
        path = os.path.join(out, f"dequantize_{name}.bin")
        write_record(path, 1, qtype, n, raw, expected)
        files.append(path)

    for name, qtype in QUANT_TYPES:
        n = 1536 if qtype in (T.TQ1_0, T.TQ2_0) else 1024
        x = quant_input(rng, qtype, n)
        with np.errstate(over="ignore"):
            expected = np.asarray(quants.quantize(x, qtype)).view(np.uint8).reshape(-1)
        path = os.path.join(out, f"quantize_{name}.bin")
        write_record(path, 2, qtype, n, x, expected)
        files.append(path)

    path = os.path.join(out, "convert.bin")
    count = write_conversions(path, rng)
    files.append(path)

    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("Golden files of tests/test_quants.c, written by scripts/make_quant_golden.py (do not edit).\n")
        f.write(f"gguf {importlib.metadata.version('gguf')}\n")
        f.write(f"numpy {np.__version__}\n")
        f.write(f"python {platform.python_version()}\n")
        f.write(f"seed {SEED}\n")
        f.write(f"convert.bin records {count}\n")
        for p in files:
            f.write(f"{os.path.basename(p)} {os.path.getsize(p)}\n")
    total = sum(os.path.getsize(p) for p in files)
    print(f"wrote {len(files)} files ({total} bytes) to {out}")


if __name__ == "__main__":
    main()
