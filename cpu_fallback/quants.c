/* quants.c: the scalar reference conversions between floats and the GGUF tensor types (see quants.h).
 *
 * This file owns the one plain-C definition of every block layout Trinity reads or writes: row
 * dequantization of F32, F16, BF16, Q8_0, Q4_K, Q6_K, TQ1_0 and TQ2_0, row quantization into F32, F16,
 * BF16, Q8_0, TQ1_0 and TQ2_0, and the ternary code extraction of TQ1_0 / TQ2_0 blocks. The SIMD and
 * CUDA kernels are tested against these loops, which are in turn tested (tests/test_quants.c) bit for bit
 * against llama.cpp's gguf-py on committed golden files. Clarity over speed: every block is copied into
 * a local struct first (so `src` / `dst` need no alignment) and each weight is computed on its own.
 *
 * Rounding notes, all chosen to match ggml's reference C (and gguf-py) bit for bit:
 *  - dequantization products are exact in float32 (an fp16 scale has 11 significant bits, the integer
 *    factors at most 7 + 5 more), so only Q4_K's final subtraction rounds: (d * sc) * q - (dmin * m);
 *  - quantizers multiply by the reciprocal id = 1 / d (0 when d == 0) rather than divide by d, and round
 *    half away from zero (roundf), as ggml's quantize_row_*_ref do;
 *  - fp16 / bf16 conversions are the round-to-nearest-even helpers of tensor_types.h.
 * Build with -ffp-contract=off so no multiply-add is fused. */
#include "quants.h"

#include <math.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------------------------------------ */

/* Largest |x[i]| over n floats (NaNs are skipped; they have no meaningful scale). */
static float max_abs(const float *x, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax)
            amax = a;
    }
    return amax;
}

/* roundf(v) (half away from zero) clamped to [lo, hi]; NaN maps to `nan_value`. */
static int round_clamp(float v, int lo, int hi, int nan_value) {
    if (isnan(v))
        return nan_value;
    float r = roundf(v);
    if (r < (float)lo)
        return lo;
    if (r > (float)hi)
        return hi;
    return (int)r;
}

/* 3^n for the base-3 digits of TQ1_0. */
static const uint8_t pow3[5] = {1, 3, 9, 27, 81};

/* TQ1_0 byte groups. Group g covers `count` bytes starting at byte `first_byte` of qs[48] ++ qh[4]; digit n
 * (n < digits) of byte first_byte + m is weight first_weight + count * n + m. Together: 32*5 + 16*5 + 4*4
 * = 256 weights. The qh bytes carry only four digits; their fifth (least significant) digit is 0. */
static const struct {
    int first_byte, count, first_weight, digits;
} tq1_groups[3] = {
    {0, 32, 0, 5},    /* qs[0..31]:  weights   0..159 */
    {32, 16, 160, 5}, /* qs[32..47]: weights 160..239 */
    {48, 4, 240, 4},  /* qh[0..3]:   weights 240..255 */
};

#define TQ1_QS_BYTES ((int)sizeof(((trn_block_tq1_0 *)0)->qs)) /* 48 */
#define TQ1_QH_BYTES ((int)sizeof(((trn_block_tq1_0 *)0)->qh)) /* 4 */
#define TQ1_CODE_BYTES (TQ1_QS_BYTES + TQ1_QH_BYTES)             /* 52 */

/* Digit n (0 = most significant) of a TQ1_0 byte q = ceil(256 * v / 243): multiplying by 3^n (mod 256)
 * shifts the base-3 fraction v / 243 left by n digits; the integer part of 3 * fraction is the digit. */
static uint8_t tq1_digit(uint8_t q, int n) {
    uint8_t shifted = (uint8_t)(q * pow3[n]); /* mod 256 */
    return (uint8_t)((shifted * 3) >> 8);     /* 0..2 for every byte value */
}

/* Q4_K: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
 *   bytes 0..3:  sc[0..3] in bits 0..5, bits 6..7 = bits 4..5 of sc[4..7]
 *   bytes 4..7:  m[0..3]  in bits 0..5, bits 6..7 = bits 4..5 of m[4..7]
 *   bytes 8..11: low nibble = bits 0..3 of sc[4..7], high nibble = bits 0..3 of m[4..7] */
static void q4_k_scale_min(const uint8_t scales[12], int j, int *sc, int *m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
        *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

/* ---- ternary codes --------------------------------------------------------------------------------------- */

void trn_tq2_0_block_codes(const trn_block_tq2_0 *block, uint8_t codes[256]) {
    /* qs[64] = two halves of 32 bytes; bits 2l..2l+1 of byte 32h + m are the code of weight
     * 128h + 32l + m. Code 3 is not a valid ternary code; it is returned as is (ggml decodes it as +2). */
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 4; l++)
            for (int m = 0; m < 32; m++)
                codes[128 * h + 32 * l + m] = (uint8_t)((block->qs[32 * h + m] >> (2 * l)) & 3);
}

void trn_tq1_0_block_codes(const trn_block_tq1_0 *block, uint8_t codes[256]) {
    uint8_t bytes[TQ1_CODE_BYTES]; /* qs[48] ++ qh[4] */
    memcpy(bytes, block->qs, TQ1_QS_BYTES);
    memcpy(bytes + TQ1_QS_BYTES, block->qh, TQ1_QH_BYTES);
    for (int g = 0; g < 3; g++)
        for (int n = 0; n < tq1_groups[g].digits; n++)
            for (int m = 0; m < tq1_groups[g].count; m++) {
                uint8_t q = bytes[tq1_groups[g].first_byte + m];
                codes[tq1_groups[g].first_weight + tq1_groups[g].count * n + m] = tq1_digit(q, n);
            }
}

/* ---- dequantization ------------------------------------------------------------------------------------- */

/* One block each: raw bytes (any alignment) -> dst[block size]. */

static void dequant_q8_0(const uint8_t *raw, float *y) {
    trn_block_q8_0 b;
    memcpy(&b, raw, sizeof(b));
    float d = trn_fp16_to_f32(b.d);
    for (int i = 0; i < TRN_QK8_0; i++)
        y[i] = (float)b.qs[i] * d; /* exact: 8-bit times 11-bit significand */
}

static void dequant_q4_k(const uint8_t *raw, float *y) {
    trn_block_q4_k b;
    memcpy(&b, raw, sizeof(b));
    float d = trn_fp16_to_f32(b.d);
    float dmin = trn_fp16_to_f32(b.dmin);
    /* 8 sub-blocks j of 32 weights: sub-block j uses nibble (j % 2) of bytes qs[32 * (j / 2) + i]. */
    for (int j = 0; j < 8; j++) {
        int sc, m;
        q4_k_scale_min(b.scales, j, &sc, &m);
        float d1 = d * (float)sc;    /* exact */
        float m1 = dmin * (float)m;  /* exact */
        for (int i = 0; i < 32; i++) {
            int q = (b.qs[32 * (j / 2) + i] >> (4 * (j % 2))) & 0x0f;
            y[32 * j + i] = d1 * (float)q - m1; /* product exact, one rounding in the subtraction */
        }
    }
}

static void dequant_q6_k(const uint8_t *raw, float *y) {
    trn_block_q6_k b;
    memcpy(&b, raw, sizeof(b));
    float d = trn_fp16_to_f32(b.d);
    /* Two halves g of 128 weights; weight w = 128g + r (r < 128):
     *   low 4 bits:  nibble (r / 64) of ql[64g + r % 64]
     *   high 2 bits: bits 2 * (r / 32) .. +1 of qh[32g + r % 32]
     *   q = (low | high << 4) - 32 in -32..31, times d * scales[w / 16]. */
    for (int w = 0; w < TRN_QK_K; w++) {
        int g = w / 128, r = w % 128;
        int low = (b.ql[64 * g + r % 64] >> (4 * (r / 64))) & 0x0f;
        int high = (b.qh[32 * g + r % 32] >> (2 * (r / 32))) & 3;
        int q = (low | (high << 4)) - 32;
        y[w] = (d * (float)b.scales[w / 16]) * (float)q; /* exact: 11 + 7 + 5 significant bits */
    }
}

static void dequant_tq2_0(const uint8_t *raw, float *y) {
    trn_block_tq2_0 b;
    memcpy(&b, raw, sizeof(b));
    uint8_t codes[TRN_QK_K];
    trn_tq2_0_block_codes(&b, codes);
    float d = trn_fp16_to_f32(b.d);
    for (int i = 0; i < TRN_QK_K; i++)
        y[i] = (float)((int)codes[i] - 1) * d;
}

static void dequant_tq1_0(const uint8_t *raw, float *y) {
    trn_block_tq1_0 b;
    memcpy(&b, raw, sizeof(b));
    uint8_t codes[TRN_QK_K];
    trn_tq1_0_block_codes(&b, codes);
    float d = trn_fp16_to_f32(b.d);
    for (int i = 0; i < TRN_QK_K; i++)
        y[i] = (float)((int)codes[i] - 1) * d;
}

void trn_dequantize_row(trn_type type, const void *src, float *dst, int64_t n) {
    const uint8_t *bytes = src;
    const trn_type_traits *traits = trn_type_get(type);
    if (n <= 0)
        return;
    if (!traits || n % traits->block_size != 0) {
        /* A caller bug: make it visible rather than leave dst uninitialized. */
        for (int64_t i = 0; i < n; i++)
            dst[i] = NAN;
        return;
    }
    int64_t n_blocks = n / traits->block_size;
    for (int64_t i = 0; i < n_blocks; i++) {
        const uint8_t *raw = bytes + i * traits->block_bytes;
        float *y = dst + i * traits->block_size;
        switch (type) {
        case TRN_TYPE_F32:
            memcpy(y, raw, sizeof(float));
            break;
        case TRN_TYPE_F16: {
            trn_fp16 h;
            memcpy(&h, raw, sizeof(h));
            *y = trn_fp16_to_f32(h);
            break;
        }
        case TRN_TYPE_BF16: {
            trn_bf16 h;
            memcpy(&h, raw, sizeof(h));
            *y = trn_bf16_to_f32(h);
            break;
        }
        case TRN_TYPE_Q8_0: dequant_q8_0(raw, y); break;
        case TRN_TYPE_Q4_K: dequant_q4_k(raw, y); break;
        case TRN_TYPE_Q6_K: dequant_q6_k(raw, y); break;
        case TRN_TYPE_TQ1_0: dequant_tq1_0(raw, y); break;
        case TRN_TYPE_TQ2_0: dequant_tq2_0(raw, y); break;
        }
    }
}

/* ---- quantization --------------------------------------------------------------------------------------- */

/* One block each: x[block size] -> raw bytes (any alignment). */

static void quant_q8_0(const float *x, uint8_t *raw) {
    trn_block_q8_0 b;
    float d = max_abs(x, TRN_QK8_0) / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = trn_f32_to_fp16(d);
    for (int i = 0; i < TRN_QK8_0; i++)
        b.qs[i] = (int8_t)round_clamp(x[i] * id, -127, 127, 0);
    memcpy(raw, &b, sizeof(b));
}

/* Ternary codes of one block of 256: d = max|x|, code = round(x / d) + 1 in {0, 1, 2}. Returns d. */
static float ternary_codes(const float *x, uint8_t codes[TRN_QK_K]) {
    float d = max_abs(x, TRN_QK_K);
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < TRN_QK_K; i++)
        codes[i] = (uint8_t)(round_clamp(x[i] * id, -1, 1, 0) + 1);
    return d;
}

void trn_tq2_0_block_from_codes(const uint8_t codes[256], trn_fp16 d, trn_block_tq2_0 *block) {
    block->d = d;
    /* Byte 32h + m holds weights 128h + 32l + m (l = 0..3) in bits 2l..2l+1. */
    for (int h = 0; h < 2; h++)
        for (int m = 0; m < 32; m++) {
            uint8_t byte = 0;
            for (int l = 0; l < 4; l++)
                byte |= (uint8_t)(codes[128 * h + 32 * l + m] << (2 * l));
            block->qs[32 * h + m] = byte;
        }
}

static void quant_tq2_0(const float *x, uint8_t *raw) {
    trn_block_tq2_0 b;
    uint8_t codes[TRN_QK_K];
    const trn_fp16 d = trn_f32_to_fp16(ternary_codes(x, codes));
    trn_tq2_0_block_from_codes(codes, d, &b);
    memcpy(raw, &b, sizeof(b));
}

static void quant_tq1_0(const float *x, uint8_t *raw) {
    trn_block_tq1_0 b;
    uint8_t codes[TRN_QK_K];
    b.d = trn_f32_to_fp16(ternary_codes(x, codes));
    /* Each byte: v = sum over its digits n of code * 3^(4 - n) (v <= 242), stored as
     * ceil(256 * v / 243) = (256 * v + 242) / 243 (<= 255). */
    uint8_t bytes[TQ1_CODE_BYTES]; /* qs[48] ++ qh[4] */
    for (int g = 0; g < 3; g++)
        for (int m = 0; m < tq1_groups[g].count; m++) {
            int v = 0;
            for (int n = 0; n < tq1_groups[g].digits; n++)
                v += codes[tq1_groups[g].first_weight + tq1_groups[g].count * n + m] * pow3[4 - n];
            bytes[tq1_groups[g].first_byte + m] = (uint8_t)((v * 256 + 242) / 243);
        }
    memcpy(b.qs, bytes, TQ1_QS_BYTES);
    memcpy(b.qh, bytes + TQ1_QS_BYTES, TQ1_QH_BYTES);
    memcpy(raw, &b, sizeof(b));
}

int trn_quantize_row(trn_type type, const float *src, void *dst, int64_t n) {
    uint8_t *bytes = dst;
    const trn_type_traits *traits = trn_type_get(type);
    if (!traits || type == TRN_TYPE_Q4_K || type == TRN_TYPE_Q6_K)
        return 0;
    if (n <= 0 || n % traits->block_size != 0)
        return 0;
    int64_t n_blocks = n / traits->block_size;
    for (int64_t i = 0; i < n_blocks; i++) {
        const float *x = src + i * traits->block_size;
        uint8_t *raw = bytes + i * traits->block_bytes;
        switch (type) {
        case TRN_TYPE_F32:
            memcpy(raw, x, sizeof(float));
            break;
        case TRN_TYPE_F16: {
            trn_fp16 h = trn_f32_to_fp16(*x);
            memcpy(raw, &h, sizeof(h));
            break;
        }
        case TRN_TYPE_BF16: {
            trn_bf16 h = trn_f32_to_bf16(*x);
            memcpy(raw, &h, sizeof(h));
            break;
        }
        case TRN_TYPE_Q8_0: quant_q8_0(x, raw); break;
        case TRN_TYPE_TQ1_0: quant_tq1_0(x, raw); break;
        case TRN_TYPE_TQ2_0: quant_tq2_0(x, raw); break;
        case TRN_TYPE_Q4_K:
        case TRN_TYPE_Q6_K:
            return 0; /* unreachable: rejected above */
        }
    }
    return 1;
}
