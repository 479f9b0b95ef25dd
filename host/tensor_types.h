/* tensor_types.h: the GGUF tensor types Trinity reads, their block layouts and scalar conversions.
 *
 * Type ids and block layouts are those of ggml (the GGUF file format fixes them). A tensor's row of
 * `n` elements occupies n / block_size blocks of block_bytes each. Dequantization and dot products
 * live in cpu_fallback/; this header only describes the bytes. */
#ifndef TRN_TENSOR_TYPES_H
#define TRN_TENSOR_TYPES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The same header serves the CUDA sources (C++): a static assertion in either language. */
#ifdef __cplusplus
#define TRN_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define TRN_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

typedef enum {
    TRN_TYPE_F32 = 0,
    TRN_TYPE_F16 = 1,
    TRN_TYPE_Q8_0 = 8,
    TRN_TYPE_Q4_K = 12,
    TRN_TYPE_Q6_K = 14,
    TRN_TYPE_BF16 = 30,
    TRN_TYPE_TQ1_0 = 34,
    TRN_TYPE_TQ2_0 = 35,
} trn_type;

#define TRN_QK_K 256 /* super-block size of the K and TQ types */
#define TRN_QK8_0 32

typedef uint16_t trn_fp16; /* IEEE half, stored bits */
typedef uint16_t trn_bf16; /* bfloat16, stored bits */

/* Q8_0: 32 weights = d * q[i] */
typedef struct {
    trn_fp16 d;
    int8_t qs[TRN_QK8_0];
} trn_block_q8_0;
TRN_STATIC_ASSERT(sizeof(trn_block_q8_0) == 34, "Q8_0 block is 34 bytes");

/* TQ2_0: 256 ternary weights, 2 bits each. Byte qs[j + m] (j in {0, 32}, m < 32) holds in bits 2l..2l+1
 * the code (w + 1) of weight 4j + 32l + m; w = code - 1 in {-1, 0, +1}, times d. */
typedef struct {
    uint8_t qs[TRN_QK_K / 4];
    trn_fp16 d;
} trn_block_tq2_0;
TRN_STATIC_ASSERT(sizeof(trn_block_tq2_0) == 66, "TQ2_0 block is 66 bytes");

/* TQ1_0: 256 ternary weights in base 3, five per byte (1.6875 bits per weight with the scale).
 * qs[0..31]: digit n of byte m is weight 32n + m (n < 5); qs[32..47]: digit n of byte 32+m is weight
 * 160 + 16n + m; qh[0..3]: digit n of byte j is weight 240 + 4n + j (n < 4). A byte q encodes digits
 * via q = ceil(256 * v / 243), v = sum code_n * 3^(4-n); digit n is ((q * 3^n mod 256) * 3) >> 8. */
typedef struct {
    uint8_t qs[(TRN_QK_K - 4 * TRN_QK_K / 64) / 5];
    uint8_t qh[TRN_QK_K / 64];
    trn_fp16 d;
} trn_block_tq1_0;
TRN_STATIC_ASSERT(sizeof(trn_block_tq1_0) == 54, "TQ1_0 block is 54 bytes");

/* Q4_K: 256 weights in 8 sub-blocks of 32, 6-bit sub-block scales and mins packed in scales[12]. */
typedef struct {
    trn_fp16 d;
    trn_fp16 dmin;
    uint8_t scales[12];
    uint8_t qs[TRN_QK_K / 2];
} trn_block_q4_k;
TRN_STATIC_ASSERT(sizeof(trn_block_q4_k) == 144, "Q4_K block is 144 bytes");

/* Q6_K: 256 weights in 16 sub-blocks of 16, 4 low bits in ql, 2 high bits in qh, int8 scales. */
typedef struct {
    uint8_t ql[TRN_QK_K / 2];
    uint8_t qh[TRN_QK_K / 4];
    int8_t scales[TRN_QK_K / 16];
    trn_fp16 d;
} trn_block_q6_k;
TRN_STATIC_ASSERT(sizeof(trn_block_q6_k) == 210, "Q6_K block is 210 bytes");

typedef struct {
    const char *name;  /* as llama.cpp prints it: "f32", "tq2_0", ... */
    int block_size;    /* elements per block */
    int block_bytes;   /* bytes per block */
    int is_ternary;    /* TQ1_0 / TQ2_0 */
} trn_type_traits;

#ifdef __cplusplus
extern "C" {
#endif
/* Traits of a type id, or NULL if Trinity does not know the type. */
const trn_type_traits *trn_type_get(uint32_t type);
const char *trn_type_name(uint32_t type); /* "type 99" style text for unknown ids */
/* Parses "f32", "tq2_0", ... (case-insensitive); returns -1 if unknown. */
int trn_type_from_name(const char *name);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block size. */
size_t trn_row_bytes(trn_type type, int64_t n);
#ifdef __cplusplus
}
#endif

static inline float trn_fp16_to_f32(trn_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* Round to nearest even, as F16C's vcvtps2ph with rounding mode 0. */
static inline trn_fp16 trn_f32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t abs = x & 0x7fffffff;
    if (abs >= 0x7f800000u) /* inf or nan */
        return (trn_fp16)(sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0));
    if (abs >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (trn_fp16)(sign | 0x7c00);
    if (abs < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (abs < 0x33000000u)
            return (trn_fp16)sign;
        uint32_t mant = (abs & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(abs >> 23); /* 14..24 */
        uint32_t h16 = mant >> shift;
        uint32_t rest = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (h16 & 1)))
            h16++;
        return (trn_fp16)(sign | h16);
    }
    uint32_t h16 = ((abs - 0x38000000u) >> 13);
    uint32_t rest = abs & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h16 & 1)))
        h16++;
    return (trn_fp16)(sign | h16);
}

static inline float trn_bf16_to_f32(trn_bf16 h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static inline trn_bf16 trn_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    if ((x & 0x7fffffff) > 0x7f800000u)
        return (trn_bf16)((x >> 16) | 64); /* quiet nan */
    return (trn_bf16)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

#endif
