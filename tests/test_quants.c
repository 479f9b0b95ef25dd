/* test_quants.c: the scalar reference conversions of cpu_fallback/quants.c and the fp16 / bf16 helpers of
 * host/tensor_types.h, checked against llama.cpp's gguf-py.
 *
 * Golden files (tests/golden/quants/, written by scripts/make_quant_golden.py, format described there):
 *  - dequantize_<type>.bin: random raw blocks and gguf-py's float32 output. trn_dequantize_row must match
 *    bit for bit: every type's dequantization is a few float multiplies / one subtraction, done in the
 *    same order as ggml and gguf-py, so there is no reason for any tolerance.
 *  - quantize_<type>.bin: random floats (with tie and zero blocks) and gguf-py's bytes; trn_quantize_row
 *    must produce identical bytes.
 *  - convert.bin: fp16 (numpy) and bf16 (gguf-py) encodings of edge-case floats, and hashes of exhaustive
 *    half -> float and swept float -> half / bf16 conversions. Only NaN payloads of float -> fp16 are not
 *    compared (numpy keeps the payload's top bits; Trinity, like ggml's scalar code, returns 0x7e00).
 * Data-independent checks: exactly ternary rows survive TQ1_0 / TQ2_0 quantize -> dequantize unchanged, the
 * *_block_codes helpers agree with packing and with dequantization, every fp16 / bf16 value round-trips,
 * and bad types / lengths are refused. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_fallback/quants.h"
#include "test_util.h"

/* ---- helpers --------------------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static uint32_t read_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t read_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint64_t read_u64(const uint8_t *p) { return (uint64_t)read_u32(p) | (uint64_t)read_u32(p + 4) << 32; }

typedef struct {
    uint64_t h;
} fnv1a;

static void fnv_bytes(fnv1a *f, const void *data, size_t len) {
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        f->h = (f->h ^ p[i]) * 0x100000001b3ull;
}
static void fnv_u16(fnv1a *f, uint16_t v) {
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    fnv_bytes(f, b, 2);
}
static void fnv_u32(fnv1a *f, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    fnv_bytes(f, b, 4);
}

static int fp16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }
static int bf16_is_nan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0; }

/* ---- golden quantize / dequantize files ------------------------------------------------------------------ */

enum { KIND_DEQUANTIZE = 1, KIND_QUANTIZE = 2, HEADER_BYTES = 32 };

typedef struct {
    char *file;          /* whole file (free this) */
    uint32_t type;
    int64_t n;           /* elements */
    size_t n_bytes;      /* bytes of the quantized row */
    const uint8_t *raw;  /* quantized bytes */
    const uint8_t *f32;  /* n little-endian floats (unaligned) */
} golden;

static int golden_open(const char *name, uint32_t kind, uint32_t type, golden *g) {
    char relative[256];
    snprintf(relative, sizeof(relative), "tests/golden/quants/%s", name);
    size_t len = 0;
    memset(g, 0, sizeof(*g));
    g->file = test_read_file(test_source_path(relative), &len);
    CHECK_MSG(g->file != NULL, "cannot read %s (set TRN_SOURCE_DIR to the source tree)", relative);
    if (!g->file)
        return 0;
    const uint8_t *p = (const uint8_t *)g->file;
    int ok = len >= HEADER_BYTES && memcmp(p, "TRNQ", 4) == 0 && read_u32(p + 4) == 1 && read_u32(p + 8) == kind &&
             read_u32(p + 12) == type;
    if (ok) {
        g->type = type;
        g->n = (int64_t)read_u64(p + 16);
        g->n_bytes = (size_t)read_u64(p + 24);
        ok = g->n > 0 && len == HEADER_BYTES + g->n_bytes + (size_t)g->n * 4;
    }
    CHECK_MSG(ok, "%s: bad header or size", name);
    if (!ok) {
        free(g->file);
        g->file = NULL;
        return 0;
    }
    const uint8_t *body = p + HEADER_BYTES;
    if (kind == KIND_DEQUANTIZE) {
        g->raw = body;
        g->f32 = body + g->n_bytes;
    } else {
        g->f32 = body;
        g->raw = body + (size_t)g->n * 4;
    }
    return 1;
}

static float *golden_floats(const golden *g) {
    float *x = malloc((size_t)g->n * sizeof(float));
    for (int64_t i = 0; i < g->n; i++)
        x[i] = bits_f32(read_u32(g->f32 + 4 * i));
    return x;
}

/* Dequantize the golden raw row (also from a misaligned copy) and compare bitwise with gguf-py. */
static void test_dequantize_golden(const char *name, trn_type type) {
    char file[64];
    snprintf(file, sizeof(file), "dequantize_%s.bin", name);
    golden g;
    if (!golden_open(file, KIND_DEQUANTIZE, type, &g))
        return;
    CHECK_MSG(trn_row_bytes(type, g.n) == g.n_bytes, "%s: row bytes %zu, file has %zu", name,
              trn_row_bytes(type, g.n), g.n_bytes);

    float *expected = golden_floats(&g);
    float *got = malloc((size_t)g.n * sizeof(float));
    uint8_t *misaligned = malloc(g.n_bytes + 1);
    memcpy(misaligned + 1, g.raw, g.n_bytes);

    for (int pass = 0; pass < 2; pass++) {
        trn_dequantize_row(type, pass == 0 ? (const void *)g.raw : misaligned + 1, got, g.n);
        int64_t mismatches = 0;
        for (int64_t i = 0; i < g.n; i++) {
            if (f32_bits(got[i]) != f32_bits(expected[i])) {
                if (mismatches < 3)
                    fprintf(stderr, "  %s[%lld]: got %.9g (0x%08x), gguf-py %.9g (0x%08x)\n", name, (long long)i,
                            got[i], f32_bits(got[i]), expected[i], f32_bits(expected[i]));
                mismatches++;
            }
        }
        CHECK_MSG(mismatches == 0, "dequantize %s%s: %lld of %lld values differ from gguf-py", name,
                  pass ? " (misaligned source)" : "", (long long)mismatches, (long long)g.n);
    }
    free(misaligned);
    free(got);
    free(expected);
    free(g.file);
}

/* Quantize the golden floats (also into a misaligned buffer) and compare bytes with gguf-py. */
static void test_quantize_golden(const char *name, trn_type type) {
    char file[64];
    snprintf(file, sizeof(file), "quantize_%s.bin", name);
    golden g;
    if (!golden_open(file, KIND_QUANTIZE, type, &g))
        return;
    CHECK(trn_row_bytes(type, g.n) == g.n_bytes);

    float *x = golden_floats(&g);
    uint8_t *buffer = malloc(g.n_bytes + 1);
    const trn_type_traits *traits = trn_type_get(type);
    for (int pass = 0; pass < 2; pass++) {
        uint8_t *got = buffer + pass;
        int ok = trn_quantize_row(type, x, got, g.n);
        CHECK_MSG(ok == 1, "quantize %s returned %d", name, ok);
        int64_t mismatches = 0;
        for (size_t i = 0; i < g.n_bytes; i++) {
            if (got[i] != g.raw[i]) {
                if (mismatches < 3)
                    fprintf(stderr, "  %s byte %zu (block %zu, offset %zu): got 0x%02x, gguf-py 0x%02x\n", name, i,
                            i / (size_t)traits->block_bytes, i % (size_t)traits->block_bytes, got[i], g.raw[i]);
                mismatches++;
            }
        }
        CHECK_MSG(mismatches == 0, "quantize %s%s: %lld of %zu bytes differ from gguf-py", name,
                  pass ? " (misaligned destination)" : "", (long long)mismatches, g.n_bytes);
    }
    free(buffer);
    free(x);
    free(g.file);
}

/* ---- ternary round trip and code helpers ------------------------------------------------------------------ */

/* Codes of block b of a TQ row, via the type's helper. */
static void block_codes(trn_type type, const uint8_t *row, int64_t b, uint8_t codes[256]) {
    if (type == TRN_TYPE_TQ1_0) {
        trn_block_tq1_0 block;
        memcpy(&block, row + b * (int64_t)sizeof(block), sizeof(block));
        trn_tq1_0_block_codes(&block, codes);
    } else {
        trn_block_tq2_0 block;
        memcpy(&block, row + b * (int64_t)sizeof(block), sizeof(block));
        trn_tq2_0_block_codes(&block, codes);
    }
}

static trn_fp16 block_scale(trn_type type, const uint8_t *row, int64_t b) {
    trn_fp16 d;
    if (type == TRN_TYPE_TQ1_0)
        memcpy(&d, row + b * (int64_t)sizeof(trn_block_tq1_0) + offsetof(trn_block_tq1_0, d), sizeof(d));
    else
        memcpy(&d, row + b * (int64_t)sizeof(trn_block_tq2_0) + offsetof(trn_block_tq2_0, d), sizeof(d));
    return d;
}

/* Weights {-1, 0, +1} times one fp16-exact scale per block: quantize -> dequantize must give back the
 * same floats bit for bit, the codes must be w + 1, and quantizing again must give the same bytes. */
static void test_ternary_round_trip(trn_type type) {
    enum { BLOCKS = 10, N = BLOCKS * TRN_QK_K };
    const char *name = trn_type_name(type);
    static const trn_fp16 scales[BLOCKS] = {
        0x3c00, /* 1.0 */       0x2a8f, /* ~0.05 */ 0x0001, /* 2^-24, smallest subnormal */
        0x03ff, /* largest subnormal */ 0x7bff, /* 65504 */ 0x1e14, /* ~0.0061 */
        0x3c00, 0x3555, 0x4900, 0x0400, /* smallest normal */
    };
    static float x[N], y[N];
    static int8_t w[N];
    static uint8_t row[BLOCKS * 66], row2[BLOCKS * 66];

    for (int b = 0; b < BLOCKS; b++) {
        float d = trn_fp16_to_f32(scales[b]);
        for (int i = 0; i < TRN_QK_K; i++) {
            int v = (int)(rng_next() % 3) - 1;
            if (b == 6)
                v = 0; /* all zero: d = 0 */
            if (b == 7)
                v = -(int)(i % 2); /* only -1 and 0 */
            if (b == 8)
                v = 1; /* all +1 */
            w[b * TRN_QK_K + i] = (int8_t)v;
            x[b * TRN_QK_K + i] = (float)v * d;
        }
    }
    CHECK(trn_quantize_row(type, x, row, N) == 1);
    trn_dequantize_row(type, row, y, N);
    int64_t lossy = 0;
    for (int i = 0; i < N; i++)
        lossy += f32_bits(x[i]) != f32_bits(y[i]);
    CHECK_MSG(lossy == 0, "%s: %lld of %d exactly ternary weights changed in a round trip", name, (long long)lossy, N);

    int64_t bad_codes = 0, bad_scales = 0;
    for (int b = 0; b < BLOCKS; b++) {
        uint8_t codes[256];
        block_codes(type, row, b, codes);
        for (int i = 0; i < TRN_QK_K; i++)
            bad_codes += codes[i] != w[b * TRN_QK_K + i] + 1;
        bad_scales += block_scale(type, row, b) != (b == 6 ? 0 : scales[b]);
    }
    CHECK_MSG(bad_codes == 0, "%s: %lld codes differ from w + 1", name, (long long)bad_codes);
    CHECK_MSG(bad_scales == 0, "%s: %lld block scales differ from max |x|", name, (long long)bad_scales);

    CHECK(trn_quantize_row(type, y, row2, N) == 1);
    CHECK_MSG(memcmp(row, row2, trn_row_bytes(type, N)) == 0, "%s: re-quantizing the dequantized row changed it", name);
}

/* The codes helpers must agree with dequantization (w = code - 1, times d) on the golden random blocks. */
static void test_codes_vs_dequantize(const char *name, trn_type type) {
    char file[64];
    snprintf(file, sizeof(file), "dequantize_%s.bin", name);
    golden g;
    if (!golden_open(file, KIND_DEQUANTIZE, type, &g))
        return;
    float *y = malloc((size_t)g.n * sizeof(float));
    trn_dequantize_row(type, g.raw, y, g.n);
    int64_t out_of_range = 0, mismatches = 0;
    for (int64_t b = 0; b < g.n / TRN_QK_K; b++) {
        uint8_t codes[256];
        block_codes(type, g.raw, b, codes);
        float d = trn_fp16_to_f32(block_scale(type, g.raw, b));
        for (int i = 0; i < TRN_QK_K; i++) {
            out_of_range += codes[i] > 2;
            mismatches += f32_bits((float)(codes[i] - 1) * d) != f32_bits(y[b * TRN_QK_K + i]);
        }
    }
    CHECK_MSG(out_of_range == 0, "%s: %lld codes outside 0..2", name, (long long)out_of_range);
    CHECK_MSG(mismatches == 0, "%s: %lld codes disagree with dequantization", name, (long long)mismatches);
    free(y);
    free(g.file);
}

/* TQ1_0 digit extraction on every valid byte: byte q = ceil(256 v / 243) must decode to the base-3 digits of
 * v (most significant first), at every byte position of the block; TQ2_0 bit pairs at every position. */
static void test_codes_exhaustive(void) {
    int64_t bad = 0;
    for (int start = 0; start < 243; start += 52) {
        int v_of_byte[52];
        uint8_t bytes[52]; /* qs[48] ++ qh[4] */
        for (int j = 0; j < 52; j++) {
            int v = (start + j) % 243;
            if (j >= 48)
                v = (v % 81) * 3; /* qh bytes: four digits, the fifth is 0 */
            v_of_byte[j] = v;
            bytes[j] = (uint8_t)((v * 256 + 242) / 243);
        }
        trn_block_tq1_0 block;
        memcpy(block.qs, bytes, 48);
        memcpy(block.qh, bytes + 48, 4);
        block.d = 0x3c00;
        uint8_t codes[256];
        trn_tq1_0_block_codes(&block, codes);
        for (int j = 0; j < 52; j++) {
            int digits = j < 48 ? 5 : 4;
            for (int n = 0; n < digits; n++) {
                int expected = v_of_byte[j];
                for (int k = n; k < 4; k++)
                    expected /= 3;
                expected %= 3;
                /* weight of digit n of byte j, written out from the layout in tensor_types.h */
                int weight = j < 32 ? 32 * n + j : j < 48 ? 160 + 16 * n + (j - 32) : 240 + 4 * n + (j - 48);
                bad += codes[weight] != expected;
            }
        }
    }
    CHECK_MSG(bad == 0, "tq1_0: %lld digits decoded wrongly", (long long)bad);

    bad = 0;
    for (int rep = 0; rep < 16; rep++) {
        trn_block_tq2_0 block;
        for (int j = 0; j < 64; j++)
            block.qs[j] = (uint8_t)rng_next();
        block.d = 0x3c00;
        uint8_t codes[256];
        trn_tq2_0_block_codes(&block, codes);
        for (int k = 0; k < 256; k++) { /* weight k = 128h + 32l + m sits in byte 32h + m, bits 2l */
            int h = k / 128, l = (k % 128) / 32, m = k % 32;
            bad += codes[k] != ((block.qs[32 * h + m] >> (2 * l)) & 3);
        }
    }
    CHECK_MSG(bad == 0, "tq2_0: %lld codes decoded wrongly", (long long)bad);
}

/* ---- fp16 / bf16 conversions ------------------------------------------------------------------------------- */

static void test_conversions(void) {
    size_t len = 0;
    char *file = test_read_file(test_source_path("tests/golden/quants/convert.bin"), &len);
    CHECK_MSG(file != NULL, "cannot read tests/golden/quants/convert.bin");
    if (!file)
        return;
    const uint8_t *p = (const uint8_t *)file;
    uint32_t count = len >= 12 ? read_u32(p + 8) : 0;
    int ok = len >= 12 && memcmp(p, "TRNC", 4) == 0 && read_u32(p + 4) == 1 && len == 12 + (size_t)count * 8 + 32;
    CHECK_MSG(ok, "convert.bin: bad header or size");
    if (!ok) {
        free(file);
        return;
    }

    /* Listed values: float -> fp16 as numpy (NaN: any NaN of the same sign), float -> bf16 as gguf-py. */
    int64_t bad16 = 0, bad_bf16 = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *r = p + 12 + 8 * (size_t)i;
        uint32_t bits = read_u32(r);
        uint16_t want16 = read_u16(r + 4), want_bf16 = read_u16(r + 6);
        float f = bits_f32(bits);
        trn_fp16 h = trn_f32_to_fp16(f);
        int good16 = fp16_is_nan(want16) ? fp16_is_nan(h) && (h & 0x8000) == (want16 & 0x8000) : h == want16;
        if (!good16 && bad16++ < 5)
            fprintf(stderr, "  fp16(%.9g = 0x%08x): got 0x%04x, numpy 0x%04x\n", f, bits, h, want16);
        trn_bf16 bh = trn_f32_to_bf16(f);
        if (bh != want_bf16 && bad_bf16++ < 5)
            fprintf(stderr, "  bf16(%.9g = 0x%08x): got 0x%04x, gguf-py 0x%04x\n", f, bits, bh, want_bf16);
    }
    CHECK_MSG(bad16 == 0, "f32 -> fp16: %lld of %u listed values differ from numpy", (long long)bad16, count);
    CHECK_MSG(bad_bf16 == 0, "f32 -> bf16: %lld of %u listed values differ from gguf-py", (long long)bad_bf16, count);

    const uint8_t *hashes = p + 12 + (size_t)count * 8;

    /* Every half and every bf16 -> float, hashed against numpy / gguf-py; and each one round-trips. */
    fnv1a hf = {0xcbf29ce484222325ull}, hb = {0xcbf29ce484222325ull};
    int64_t trip16 = 0, trip_bf16 = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        float f = trn_fp16_to_f32((trn_fp16)v);
        fnv_u32(&hf, f32_bits(f));
        trn_fp16 back = trn_f32_to_fp16(f);
        trip16 += fp16_is_nan((uint16_t)v) ? !fp16_is_nan(back) : back != v;
        float g = trn_bf16_to_f32((trn_bf16)v);
        fnv_u32(&hb, f32_bits(g));
        trn_bf16 back_bf16 = trn_f32_to_bf16(g);
        trip_bf16 += back_bf16 != (bf16_is_nan((uint16_t)v) ? (v | 0x40) : v); /* NaNs come back quiet */
    }
    CHECK_MSG(hf.h == read_u64(hashes), "fp16 -> f32 over all 65536 halves differs from numpy");
    CHECK_MSG(hb.h == read_u64(hashes + 8), "bf16 -> f32 over all 65536 values differs from gguf-py");
    CHECK_MSG(trip16 == 0, "%lld halves do not survive fp16 -> f32 -> fp16", (long long)trip16);
    CHECK_MSG(trip_bf16 == 0, "%lld bf16 values do not survive bf16 -> f32 -> bf16", (long long)trip_bf16);

    /* The sweep of make_quant_golden.py: bits = hi << 16 | low for every hi and a set of low halves. */
    static const uint16_t sweep_low[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x2fff,
                                         0x3000, 0x7fff, 0x8000, 0x8001, 0xf000, 0xffff};
    fnv1a hs16 = {0xcbf29ce484222325ull}, hs_bf16 = {0xcbf29ce484222325ull};
    for (uint32_t hi = 0; hi < 65536; hi++) {
        for (size_t k = 0; k <= sizeof(sweep_low) / sizeof(sweep_low[0]); k++) {
            uint32_t low = k < sizeof(sweep_low) / sizeof(sweep_low[0]) ? sweep_low[k] : (hi * 40503u + 12345u) & 0xffff;
            float f = bits_f32(hi << 16 | low);
            trn_fp16 h = trn_f32_to_fp16(f);
            fnv_u16(&hs16, fp16_is_nan(h) ? 0x7e00 : h);
            fnv_u16(&hs_bf16, trn_f32_to_bf16(f));
        }
    }
    CHECK_MSG(hs16.h == read_u64(hashes + 16), "f32 -> fp16 over the sweep differs from numpy");
    CHECK_MSG(hs_bf16.h == read_u64(hashes + 24), "f32 -> bf16 over the sweep differs from gguf-py");
    free(file);
}

/* ---- refused inputs ------------------------------------------------------------------------------------------ */

static void test_refusals(void) {
    static float x[512];
    static uint8_t out[1024];
    static float y[64];
    struct {
        uint32_t type;
        int64_t n;
    } bad[] = {
        {TRN_TYPE_Q4_K, 256}, {TRN_TYPE_Q6_K, 256}, {99, 256},          {TRN_TYPE_Q8_0, 48},
        {TRN_TYPE_TQ1_0, 255}, {TRN_TYPE_TQ2_0, 384}, {TRN_TYPE_F32, 0}, {TRN_TYPE_TQ2_0, -256},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(out, 0xa5, sizeof(out));
        int rc = trn_quantize_row((trn_type)bad[i].type, x, out, bad[i].n);
        int untouched = 1;
        for (size_t j = 0; j < sizeof(out); j++)
            untouched &= out[j] == 0xa5;
        CHECK_MSG(rc == 0 && untouched, "quantize type %u, n %lld: returned %d, output %s", bad[i].type,
                  (long long)bad[i].n, rc, untouched ? "untouched" : "written");
    }
    /* F32 "quantization" is a bit copy (block size 1: any n > 0), NaN payloads and -0 included. */
    static const uint32_t f32_cases[7] = {0x3f800000, 0x80000000, 0x7fe00001, 0xff800000, 0x00000001, 0xc2f6e979, 0x7f7fffff};
    for (int i = 0; i < 7; i++)
        x[i] = bits_f32(f32_cases[i]);
    CHECK(trn_quantize_row(TRN_TYPE_F32, x, out, 7) == 1);
    CHECK(memcmp(out, x, sizeof(f32_cases)) == 0);

    /* Dequantizing a bad length or unknown type fills dst with NaN (documented in quants.c). */
    trn_dequantize_row(TRN_TYPE_Q8_0, out, y, 48);
    int all_nan = 1;
    for (int i = 0; i < 48; i++)
        all_nan &= isnan(y[i]) != 0;
    CHECK(all_nan);
    trn_dequantize_row((trn_type)99, out, y, 4);
    CHECK(isnan(y[0]) && isnan(y[3]));
}

int main(void) {
    static const struct {
        const char *name;
        trn_type type;
    } dequant[] = {
        {"f32", TRN_TYPE_F32},   {"f16", TRN_TYPE_F16},     {"bf16", TRN_TYPE_BF16},   {"q8_0", TRN_TYPE_Q8_0},
        {"q4_K", TRN_TYPE_Q4_K}, {"q6_K", TRN_TYPE_Q6_K},   {"tq1_0", TRN_TYPE_TQ1_0}, {"tq2_0", TRN_TYPE_TQ2_0},
    };
    for (size_t i = 0; i < sizeof(dequant) / sizeof(dequant[0]); i++)
        test_dequantize_golden(dequant[i].name, dequant[i].type);

    static const struct {
        const char *name;
        trn_type type;
    } quant[] = {
        {"f16", TRN_TYPE_F16}, {"bf16", TRN_TYPE_BF16}, {"q8_0", TRN_TYPE_Q8_0},
        {"tq1_0", TRN_TYPE_TQ1_0}, {"tq2_0", TRN_TYPE_TQ2_0},
    };
    for (size_t i = 0; i < sizeof(quant) / sizeof(quant[0]); i++)
        test_quantize_golden(quant[i].name, quant[i].type);

    test_ternary_round_trip(TRN_TYPE_TQ1_0);
    test_ternary_round_trip(TRN_TYPE_TQ2_0);
    test_codes_vs_dequantize("tq1_0", TRN_TYPE_TQ1_0);
    test_codes_vs_dequantize("tq2_0", TRN_TYPE_TQ2_0);
    test_codes_exhaustive();
    test_conversions();
    test_refusals();
    return test_finish("test_quants");
}
