/* dequant.cuh: one element of a weight row of any type as the CPU's trn_dequantize_row computes it, bit for bit
 * (every step a correctly rounded IEEE operation, no contraction). Shared by the row lookup (gemv_float.cu's get_row)
 * and the fused first launch of a step that reads its token's embedding row itself (gemv_ternary.cu, input
 * EMBED_NORM_QUANT). Row layouts: the file's bytes (host/tensor_types.h); ternary rows the split layout of cuda_ops.h
 * (codes, and fp16 scales apart). */
#ifndef TRN_DEQUANT_CUH
#define TRN_DEQUANT_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>

#include "cuda_ops.h"
#include "device_math.cuh"

namespace trn_dq {

__host__ __device__ __forceinline__ float half_to_float(uint32_t h) { /* low 16 bits */
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half((unsigned short)h));
#else
    return trn_fp16_to_f32((trn_fp16)h);
#endif
}

__host__ __device__ __forceinline__ float bf16_to_float(uint32_t h) { /* low 16 bits */
#ifdef __CUDA_ARCH__
    return __uint_as_float(h << 16);
#else
    return trn_bf16_to_f32((trn_bf16)h);
#endif
}

/* Q4_K: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes, given as three little-endian words:
 *   bytes 0..3: sc[0..3] in bits 0..5, bits 6..7 = bits 4..5 of sc[4..7]
 *   bytes 4..7: m[0..3] likewise, bits 6..7 = bits 4..5 of m[4..7]
 *   bytes 8..11: low nibble = bits 0..3 of sc[4..7], high nibble = bits 0..3 of m[4..7]
 * Words rather than a byte array, so a lane-dependent j needs no local memory. */
__host__ __device__ __forceinline__ uint32_t byte_of(uint32_t w0, uint32_t w1, uint32_t w2, int i) {
    const uint32_t w = i < 4 ? w0 : (i < 8 ? w1 : w2);
    return (w >> (8 * (i & 3))) & 0xffu;
}

__host__ __device__ __forceinline__ void q4_k_scale_min(uint32_t w0, uint32_t w1, uint32_t w2, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = (int)(byte_of(w0, w1, w2, j) & 63);
        *m = (int)(byte_of(w0, w1, w2, j + 4) & 63);
    } else {
        *sc = (int)((byte_of(w0, w1, w2, j + 4) & 0x0f) | ((byte_of(w0, w1, w2, j - 4) >> 6) << 4));
        *m = (int)((byte_of(w0, w1, w2, j + 4) >> 4) | ((byte_of(w0, w1, w2, j) >> 6) << 4));
    }
}

/* Little-endian loads of any alignment (get_row reads bytes; rows are small). */
__device__ __forceinline__ uint32_t load_u16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

__device__ __forceinline__ uint32_t load_u32(const uint8_t *p) { return load_u16(p) | (load_u16(p + 2) << 16); }

/* ---- row lookup ---- */

/* Element i of a row of `type` as the CPU's trn_dequantize_row computes it. row: the row's bytes (ternary: its codes
 * in the split layout), d_row: the row's ternary scales. */
__device__ inline float dequant_one(trn_type type, const uint8_t *__restrict__ row, const uint16_t *__restrict__ d_row,
                                    int64_t i) {
    switch (type) {
    case TRN_TYPE_F32:
        return reinterpret_cast<const float *>(row)[i];
    case TRN_TYPE_F16:
        return half_to_float(load_u16(row + 2 * i));
    case TRN_TYPE_BF16:
        return bf16_to_float(load_u16(row + 2 * i));
    case TRN_TYPE_Q8_0: {
        const uint8_t *blk = row + (i / TRN_QK8_0) * (int64_t)sizeof(trn_block_q8_0);
        return mul_rn((float)(int8_t)blk[2 + i % TRN_QK8_0], half_to_float(load_u16(blk)));
    }
    case TRN_TYPE_Q4_K: {
        const uint8_t *blk = row + (i / TRN_QK_K) * (int64_t)sizeof(trn_block_q4_k);
        const int w = (int)(i % TRN_QK_K), j = w / 32;
        int sc, m;
        q4_k_scale_min(load_u32(blk + 4), load_u32(blk + 8), load_u32(blk + 12), j, &sc, &m);
        const float d1 = mul_rn(half_to_float(load_u16(blk)), (float)sc);
        const float m1 = mul_rn(half_to_float(load_u16(blk + 2)), (float)m);
        const int q = (blk[16 + 32 * (j / 2) + w % 32] >> (4 * (j % 2))) & 0x0f;
        return sub_rn(mul_rn(d1, (float)q), m1);
    }
    case TRN_TYPE_Q6_K: {
        /* ql[128] at 0, qh[64] at 128, scales[16] at 192, d at 208; weight w = 128 g + r */
        const uint8_t *blk = row + (i / TRN_QK_K) * (int64_t)sizeof(trn_block_q6_k);
        const int w = (int)(i % TRN_QK_K), g = w / 128, r = w % 128;
        const int low = (blk[64 * g + r % 64] >> (4 * (r / 64))) & 0x0f;
        const int high = (blk[128 + 32 * g + r % 32] >> (2 * (r / 32))) & 3;
        const float dsc = mul_rn(half_to_float(load_u16(blk + 208)), (float)(int8_t)blk[192 + w / 16]);
        return mul_rn(dsc, (float)((low | (high << 4)) - 32));
    }
    case TRN_TYPE_TQ2_0: {
        /* byte 32 h + m of the block's 64 holds in bits 2 l, 2 l + 1 the code of weight 128 h + 32 l + m */
        const int64_t b = i / TRN_QK_K;
        const int w = (int)(i % TRN_QK_K);
        const int code = (row[b * (TRN_QK_K / 4) + 32 * (w / 128) + w % 32] >> (2 * ((w % 128) / 32))) & 3;
        return mul_rn((float)(code - 1), half_to_float(d_row[b]));
    }
    case TRN_TYPE_TQ1_0: {
        /* 52 code bytes per block: qs[0..31] digit n of byte m = weight 32 n + m; qs[32..47]: 160 + 16 n + m;
         * qh[0..3]: 240 + 4 n + m. Digit n of byte q: ((q * 3^n mod 256) * 3) >> 8. */
        const int64_t b = i / TRN_QK_K;
        const int w = (int)(i % TRN_QK_K);
        int byte, n;
        if (w < 160) {
            byte = w % 32;
            n = w / 32;
        } else if (w < 240) {
            byte = 32 + (w - 160) % 16;
            n = (w - 160) / 16;
        } else {
            byte = 48 + (w - 240) % 4;
            n = (w - 240) / 4;
        }
        const uint32_t pow3 = n == 0 ? 1u : n == 1 ? 3u : n == 2 ? 9u : n == 3 ? 27u : 81u;
        const uint32_t shifted = (row[b * 52 + byte] * pow3) & 0xffu;
        const int code = (int)((shifted * 3u) >> 8);
        return mul_rn((float)(code - 1), half_to_float(d_row[b]));
    }
    }
    return NAN;
}

/* Whether trn_cuda_get_row and the EMBED_NORM_QUANT input can read rows of w: cudaSuccess, or the error a launcher
 * returns (a type without a row lookup, rows shorter than the type needs, F32 rows not 4-byte aligned). */
inline cudaError_t check_row_lookup(const trn_cuda_matrix *w) {
    const trn_type_traits *traits = trn_type_get((uint32_t)w->type);
    if (!w->qs || !traits || w->rows < 0 || w->cols < 0 || w->cols % traits->block_size != 0 ||
        (traits->is_ternary && !w->d))
        return cudaErrorInvalidValue;
    const size_t min_row_bytes = traits->is_ternary ? (size_t)(w->cols / TRN_QK_K) * (w->type == TRN_TYPE_TQ2_0 ? 64 : 52)
                                                    : trn_row_bytes(w->type, w->cols);
    if (w->row_bytes < min_row_bytes)
        return cudaErrorInvalidValue;
    if (w->type == TRN_TYPE_F32 && ((reinterpret_cast<uintptr_t>(w->qs) & 3) != 0 || w->row_bytes % 4 != 0))
        return cudaErrorMisalignedAddress;
    return cudaSuccess;
}

} // namespace trn_dq

#endif
